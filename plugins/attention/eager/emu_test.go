package eager

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/longctx/longctx/kernels/abi"
	"github.com/longctx/longctx/plugins/sdk"
)

// TestKernelsOnHostEmulator compiles eager.cu with the host C++ compiler
// against testdata/hostemu, a CPU emulation of the CUDA it uses (threads,
// barriers, shuffles, WMMA, bf16), and runs the prefill and decode kernels
// on random problems against a reference that rounds as they should. It
// checks the kernels' logic where CI has no GPU; the GPU tests check the
// real thing.
func TestKernelsOnHostEmulator(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the emulation takes a while")
	}
	cxx, err := exec.LookPath("c++")
	if err != nil {
		t.Skip("no C++ compiler on PATH")
	}
	// The emulation is copied (not included from testdata) so that go
	// test sees the files it depends on.
	dir := t.TempDir()
	emu := filepath.Join(dir, "hostemu")
	if err := os.CopyFS(emu, os.DirFS(filepath.Join("testdata", "hostemu"))); err != nil {
		t.Fatal(err)
	}
	inc := filepath.Join(dir, "inc", "longctx", "abi")
	if err := os.MkdirAll(inc, 0o755); err != nil {
		t.Fatal(err)
	}
	err = fs.WalkDir(abi.Headers, ".", func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := abi.Headers.ReadFile(path)
		if err == nil {
			err = os.WriteFile(filepath.Join(inc, path), b, 0o644)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Shared memory becomes the block's: static locals, and a global array
	// for the dynamic part (run.cpp defines it).
	src := strings.ReplaceAll(cudaSource, "extern __shared__", "extern")
	src = strings.ReplaceAll(src, "__shared__", "static")
	if err := os.WriteFile(filepath.Join(dir, "eager_emu.cu"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, m := range []sdk.ModelShape{
		{NumLayers: 1, NumHeads: 4, NumKVHeads: 2, HeadDim: 16},
		{NumLayers: 1, NumHeads: 2, NumKVHeads: 2, HeadDim: 32},
		{NumLayers: 1, NumHeads: 8, NumKVHeads: 2, HeadDim: 128},
		{NumLayers: 1, NumHeads: 24, NumKVHeads: 2, HeadDim: 16}, // 12 heads per KV head: two register passes
		{NumLayers: 1, NumHeads: 4, NumKVHeads: 2, HeadDim: 256},
	} {
		ks, err := Kernels(m, "bf16")
		if err != nil {
			t.Fatal(err)
		}
		args := []string{"-std=c++17", "-O2", "-ffp-contract=off", "-pthread", "-w", "-I", dir, "-I", emu, "-I", filepath.Join(dir, "inc"), "-DLONGCTX_DTYPE=2"}
		for _, o := range ks[0].CompileOptions {
			args = append(args, "-D"+strings.TrimPrefix(o, "--define-macro="))
		}
		name := filepath.Base(strings.Join([]string{"d", strconv.Itoa(m.HeadDim), "g", strconv.Itoa(m.NumHeads / m.NumKVHeads)}, ""))
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			bin := filepath.Join(dir, name)
			if out, err := exec.Command(cxx, append(args, "-o", bin, filepath.Join(emu, "run.cpp"))...).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", cxx, err, out)
			}
			out, err := exec.Command(bin).CombinedOutput()
			t.Logf("%s", out)
			if err != nil {
				t.Fatalf("emulated kernels disagree with the reference: %v", err)
			}
		})
	}
}
