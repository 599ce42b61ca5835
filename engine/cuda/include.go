package cuda

import (
	"os"
	"path/filepath"
	"runtime"
	"sort"
)

// FindIncludeDirs returns the folders holding CUDA's own headers
// (cuda_bf16.h and friends), which NVRTC does not find by itself: from
// CUDA_HOME / CUDA_PATH, /usr/local/cuda, and beside the loaded libnvrtc
// (toolkit layout lib64/../include, pip layouts nvidia/cu13/include and
// nvidia/cuda_runtime/include). Only folders that hold cuda_fp16.h are kept,
// each once, in that order.
func FindIncludeDirs(getenv func(string) string, nvrtcPath string) []string {
	var cands []string
	for _, v := range []string{"CUDA_HOME", "CUDA_PATH"} {
		if root := getenv(v); root != "" {
			cands = append(cands, filepath.Join(root, "include"))
		}
	}
	cands = append(cands, "/usr/local/cuda/include")
	if nvrtcPath != "" {
		libDir := filepath.Dir(nvrtcPath)
		cands = append(cands,
			filepath.Join(libDir, "..", "include"),                       // toolkit: lib64/../include; pip cu13: nvidia/cu13/lib/../include
			filepath.Join(libDir, "..", "..", "include"),                 // toolkit: targets/x86_64-linux/lib/../../include
			filepath.Join(libDir, "..", "..", "cuda_runtime", "include"), // pip cu12: nvidia/cuda_nvrtc/lib -> nvidia/cuda_runtime/include
		)
	}
	seen := map[string]bool{}
	var out []string
	for _, c := range cands {
		// /usr/local/cuda/include is often a link into
		// /usr/local/cuda-13.0/targets/...; list each real folder once.
		real, err := filepath.EvalSymlinks(filepath.Clean(c))
		if err != nil || seen[real] {
			continue
		}
		seen[real] = true
		if _, err := os.Stat(filepath.Join(real, "cuda_fp16.h")); err == nil {
			out = append(out, filepath.Clean(c))
		}
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func keepAlive(x any) { runtime.KeepAlive(x) }
