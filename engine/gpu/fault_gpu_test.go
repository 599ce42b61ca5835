package gpu

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/longctx/longctx/engine/model"
	"github.com/longctx/longctx/engine/safetensors"
	"github.com/longctx/longctx/kernels/abi"
	"github.com/longctx/longctx/plugins/sdk"
)

// faultChildEnv marks the child process TestGPUFaultyKernelIsAnError runs
// in.
const faultChildEnv = "LONGCTX_GPU_FAULT_CHILD"

// faultySource is an attention kernel that writes to an invalid address:
// what a buggy third-party plugin can deliver.
const faultySource = `#include "longctx/abi/attention.h"
extern "C" __global__ void faulty_attention(longctx_attention_params p) {
    *(volatile int *)0x10 = p.layer;
}
`

// TestGPUFaultyKernelIsAnError: a plugin kernel that faults makes
// Generate fail with the CUDA error, and Close reports the failed context
// and resets it. CUDA cannot recover from such a ("sticky") error inside
// the process, even after a reset, so the harness runs every GPU cell in a
// process of its own (harness/cellproc.go) and a faulting plugin fails
// only its cell; harness's TestGPUFaultyPluginFailsOnlyItsCell checks that.
// For the same reason the test runs itself in a child process, so that the
// tests after it keep a working GPU.
func TestGPUFaultyKernelIsAnError(t *testing.T) {
	needGPU(t)
	if os.Getenv(faultChildEnv) != "1" {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestGPUFaultyKernelIsAnError$", "-test.v")
		cmd.Env = append(os.Environ(), faultChildEnv+"=1")
		out, err := cmd.CombinedOutput()
		t.Logf("child process:\n%s", out)
		if err != nil || !strings.Contains(string(out), "--- PASS: TestGPUFaultyKernelIsAnError") {
			t.Fatalf("the test in its own process: %v", err)
		}
		return
	}
	dir := tinyDir("llama3")
	cfg, err := model.LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	var kernels []sdk.Kernel
	for _, role := range []string{sdk.RoleAttentionPrefill, sdk.RoleAttentionDecode} {
		kernels = append(kernels, sdk.Kernel{
			Role: role, ABIVersion: abi.Version, CUDASource: faultySource, Entry: "faulty_attention",
			Launch: sdk.Launch{Grid: sdk.GridHeadsSeqs, BlockX: 32, BlockY: 1, BlockZ: 1},
		})
	}
	src, err := safetensors.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	bad, err := Load(cfg, src, dir, Options{Attention: kernels, CacheDir: t.TempDir()})
	src.Close()
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = bad.Generate(context.Background(), []Request{{Prompt: []int{5, 17, 42}, MaxNewTokens: 2}}, GenerateOptions{})
	if err == nil || !strings.Contains(err.Error(), "CUDA_ERROR_ILLEGAL_ADDRESS") {
		t.Fatalf("a faulting attention kernel: error %v, want CUDA_ERROR_ILLEGAL_ADDRESS", err)
	}
	err = bad.Close()
	if err == nil || !strings.Contains(err.Error(), "reset") {
		t.Fatalf("closing the poisoned engine: %v, want the failed context reported", err)
	}
}
