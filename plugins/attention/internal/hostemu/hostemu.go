// Package hostemu compiles an attention plugin's CUDA kernels with the
// host C++ compiler against a CPU emulation of the CUDA they use
// (emu_cuda.h: threads, barriers, shuffles, cp.async, ldmatrix, mma.sync;
// mma.h: WMMA; cuda_bf16.h), so that the kernels' logic is tested where CI
// has no GPU. The GPU tests check the real thing.
package hostemu

import (
	"embed"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/longctx/longctx/kernels/abi"
)

//go:embed emu_cuda.h mma.h cuda_bf16.h
var headers embed.FS

// Dir is a folder holding the emulation headers, the ABI headers (as
// longctx/abi/...) and a kernel source rewritten for the emulation.
type Dir struct {
	Path string
	cxx  string
}

// Prepare writes the headers and source into a fresh temporary folder as
// kernel_emu.cu, which a test's driver program #includes. __shared__
// variables become static (the emulation runs one block at a time) and
// the dynamic shared array an extern the driver defines. It skips the test
// without a C++ compiler, or with -short: the emulation takes a while.
func Prepare(t *testing.T, source string) *Dir {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: the emulation takes a while")
	}
	cxx, err := exec.LookPath("c++")
	if err != nil {
		t.Skip("no C++ compiler on PATH")
	}
	dir := t.TempDir()
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
	}{{headers, dir}, {abi.Headers, filepath.Join(dir, "longctx", "abi")}} {
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
	write(filepath.Join(dir, "kernel_emu.cu"), []byte(src))
	return &Dir{Path: dir, cxx: cxx}
}

// Build compiles the driver program at driver (a test's testdata file)
// with the kernel's compile options (NVRTC --define-macro=X become -DX)
// into an executable named name and returns its path.
func (d *Dir) Build(t *testing.T, driver, name string, compileOptions []string) string {
	t.Helper()
	args := []string{"-std=c++17", "-O2", "-ffp-contract=off", "-pthread", "-w", "-I", d.Path, "-DLONGCTX_DTYPE=2"}
	for _, o := range compileOptions {
		if def, ok := strings.CutPrefix(o, "--define-macro="); ok {
			args = append(args, "-D"+def)
		}
	}
	abs, err := filepath.Abs(driver)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(d.Path, name)
	if out, err := exec.Command(d.cxx, append(args, "-o", bin, abs)...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", d.cxx, err, out)
	}
	return bin
}

// Run runs a built driver, logs its output and fails the test when it
// exits non-zero (the driver prints which case disagreed).
func Run(t *testing.T, bin string) {
	t.Helper()
	out, err := exec.Command(bin).CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("emulated kernels disagree with the reference: %v", err)
	}
}
