// Package hostemu compiles an attention plugin's CUDA kernels with the
// host C++ compiler against a CPU emulation of the CUDA they use
// (emu_cuda.h: threads, barriers, shuffles, cp.async, ldmatrix, mma.sync;
// mma.h: WMMA; cuda_bf16.h), so that the kernels' logic is tested where CI
// has no GPU; emu_attention.h holds the problems and checks that every
// attention plugin's driver shares. The GPU tests check the real thing.
package hostemu

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/longctx/longctx/kernels/abi"
	"github.com/longctx/longctx/plugins/sdk"
)

//go:embed emu_cuda.h mma.h cuda_bf16.h emu_attention.h
var headers embed.FS

// dir is a folder holding the emulation headers, the ABI headers (as
// longctx/abi/...) and a kernel source rewritten for the emulation.
type dir struct {
	path string
	cxx  string
}

// prepare writes the headers and source into a fresh temporary folder as
// kernel_emu.cu, which a test's driver program #includes. __shared__
// variables become static (the emulation runs one block at a time) and
// the dynamic shared array an extern the driver defines. It skips the test
// without a C++ compiler, or with -short: the emulation takes a while.
func prepare(t *testing.T, source string) *dir {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: the emulation takes a while")
	}
	cxx, err := exec.LookPath("c++")
	if err != nil {
		t.Skip("no C++ compiler on PATH")
	}
	tmp := t.TempDir()
	write := func(path string, b []byte) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, fsys := range []struct {
		fs  embed.FS
		dir string
	}{{headers, tmp}, {abi.Headers, filepath.Join(tmp, "longctx", "abi")}} {
		err := fs.WalkDir(fsys.fs, ".", func(path string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return err
			}
			b, err := fsys.fs.ReadFile(path)
			if err == nil {
				write(filepath.Join(fsys.dir, path), b)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	src := strings.ReplaceAll(source, "extern __shared__", "extern")
	src = strings.ReplaceAll(src, "__shared__", "static")
	write(filepath.Join(tmp, "kernel_emu.cu"), []byte(src))
	return &dir{path: tmp, cxx: cxx}
}

// build compiles the driver program at driver (a test's testdata file)
// with the kernel's compile options (NVRTC --define-macro=X become -DX)
// into an executable named name and returns its path.
func (d *dir) build(t *testing.T, driver, name string, compileOptions []string) string {
	t.Helper()
	args := []string{"-std=c++17", "-O2", "-ffp-contract=off", "-pthread", "-w", "-I", d.path, "-DLONGCTX_DTYPE=2"}
	for _, o := range compileOptions {
		if def, ok := strings.CutPrefix(o, "--define-macro="); ok {
			args = append(args, "-D"+def)
		}
	}
	abs, err := filepath.Abs(driver)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(d.path, name)
	if out, err := exec.Command(d.cxx, append(args, "-o", bin, abs)...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", d.cxx, err, out)
	}
	return bin
}

// run runs a built driver, logs its output and fails the test when it
// exits non-zero (the driver prints which case disagreed).
func run(t *testing.T, bin string) {
	t.Helper()
	out, err := exec.Command(bin).CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("emulated kernels disagree with the reference: %v", err)
	}
}

// RunShapes builds the driver once per model shape, with the compile
// options of the kernels the plugin returns for it (the first kernel's:
// a plugin's kernels share them), and runs the builds in parallel.
func RunShapes(t *testing.T, source, driver string, shapes []sdk.ModelShape, kernels func(sdk.ModelShape) ([]sdk.Kernel, error)) {
	d := prepare(t, source)
	for _, m := range shapes {
		ks, err := kernels(m)
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("d%dg%d", m.HeadDim, m.NumHeads/m.NumKVHeads)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			run(t, d.build(t, driver, name, ks[0].CompileOptions))
		})
	}
}
