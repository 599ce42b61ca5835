package cuda

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"
)

// The heuristic result is filled in by cuBLASLt: a wrong size or offset
// would corrupt memory or read a garbage algorithm.
func TestBlasLtABISizes(t *testing.T) {
	var r ltHeuristicResult
	tests := []struct {
		name      string
		got, want uintptr
	}{
		{"sizeof(cublasLtMatmulHeuristicResult_t)", unsafe.Sizeof(r), 96},
		{"sizeof(cublasLtMatmulAlgo_t)", unsafe.Sizeof(r.algo), 64},
		{"offsetof(workspaceSize)", unsafe.Offsetof(r.workspaceSize), 64},
		{"offsetof(state)", unsafe.Offsetof(r.state), 72},
		{"offsetof(wavesCount)", unsafe.Offsetof(r.wavesCount), 76},
		{"offsetof(reserved)", unsafe.Offsetof(r.reserved), 80},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s = %d; want %d", tc.name, tc.got, tc.want)
		}
	}
}

func TestOpenMissingBlasLt(t *testing.T) {
	const name = "libcublasLt-longctx-test-missing.so.13"
	_, err := OpenBlasLtWith(BlasLtOptions{Libraries: []string{name}, Getenv: func(string) string { return "" }})
	if !errors.Is(err, ErrNoBlasLt) {
		t.Fatalf("err = %v; want ErrNoBlasLt", err)
	}
	if !strings.Contains(err.Error(), "no cuBLASLt found") || !strings.Contains(err.Error(), name) {
		t.Fatalf("error %q does not say what is missing", err)
	}
}

// A library found in CUDA_HOME that does not load is named by its full
// path, so the user sees which file is broken.
func TestOpenBlasLtNamesFileInCUDAHome(t *testing.T) {
	const name = "libcublasLt-longctx-test-broken.so.13"
	home := t.TempDir()
	lib := filepath.Join(home, "lib64", name)
	if err := os.MkdirAll(filepath.Dir(lib), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lib, []byte("not an ELF file"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"CUDA_HOME": home}
	_, err := OpenBlasLtWith(BlasLtOptions{Libraries: []string{name}, Getenv: func(k string) string { return env[k] }})
	if !errors.Is(err, ErrNoBlasLt) {
		t.Fatalf("err = %v; want ErrNoBlasLt", err)
	}
	if !strings.Contains(err.Error(), lib) {
		t.Fatalf("error %q does not name %s", err, lib)
	}
}

func TestLibraryDirsOrder(t *testing.T) {
	env := map[string]string{"CUDA_HOME": "/opt/home-cuda", "CUDA_PATH": "/opt/path-cuda"}
	dirs := libraryDirs(func(k string) string { return env[k] })
	want := []string{"/opt/home-cuda/lib64", "/opt/home-cuda/lib", "/opt/path-cuda/lib64", "/opt/path-cuda/lib",
		"/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"}
	if len(dirs) < len(want) {
		t.Fatalf("libraryDirs = %q", dirs)
	}
	for i, w := range want {
		if dirs[i] != w {
			t.Fatalf("libraryDirs[%d] = %s; want %s (all: %q)", i, dirs[i], w, dirs)
		}
	}
}

func TestBlasVersionString(t *testing.T) {
	tests := []struct {
		v    uint64
		want string
	}{
		{130001, "13.0.1"},
		{120405, "12.4.5"},
		{131100, "13.11.0"},
	}
	for _, tc := range tests {
		if got := blasVersionString(tc.v); got != tc.want {
			t.Errorf("blasVersionString(%d) = %s; want %s", tc.v, got, tc.want)
		}
	}
}

func TestGemmNormalized(t *testing.T) {
	tests := []struct {
		name    string
		in      GemmShape
		want    GemmShape
		wantErr bool
	}{
		{"packed defaults", GemmShape{M: 7, N: 64, K: 32}, GemmShape{M: 7, N: 64, K: 32, LdX: 32, LdW: 32, LdY: 64}, false},
		{"strided kept", GemmShape{M: 1, N: 8, K: 4, LdX: 16, LdW: 4, LdY: 24, Bias: true}, GemmShape{M: 1, N: 8, K: 4, LdX: 16, LdW: 4, LdY: 24, Bias: true}, false},
		{"zero M", GemmShape{M: 0, N: 8, K: 8}, GemmShape{}, true},
		{"negative K", GemmShape{M: 1, N: 8, K: -1}, GemmShape{}, true},
		{"ldY below N", GemmShape{M: 2, N: 8, K: 8, LdY: 7}, GemmShape{}, true},
		{"ldX below K", GemmShape{M: 2, N: 8, K: 8, LdX: 4}, GemmShape{}, true},
		{"ldW below K", GemmShape{M: 2, N: 8, K: 8, LdW: 4}, GemmShape{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.in.normalized()
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v; wantErr %v", err, tc.wantErr)
			}
			if err == nil && got != tc.want {
				t.Fatalf("normalized = %+v; want %+v", got, tc.want)
			}
		})
	}
}

// The row-major to column-major mapping: A is W stored K×N (transposed by
// the op), B is X stored K×M, D is Yᵀ, N×M, each with the row-major stride
// as its leading dimension.
func TestGemmOperands(t *testing.T) {
	g, err := GemmShape{M: 33, N: 96, K: 64, LdX: 80, LdY: 104}.normalized()
	if err != nil {
		t.Fatal(err)
	}
	a, b, d := g.ltOperands()
	if want := (ltLayout{rows: 64, cols: 96, ld: 64}); a != want {
		t.Errorf("A (W) layout = %+v; want %+v", a, want)
	}
	if want := (ltLayout{rows: 64, cols: 33, ld: 80}); b != want {
		t.Errorf("B (X) layout = %+v; want %+v", b, want)
	}
	if want := (ltLayout{rows: 96, cols: 33, ld: 104}); d != want {
		t.Errorf("D (Y) layout = %+v; want %+v", d, want)
	}
}

func TestAlignment(t *testing.T) {
	tests := []struct {
		p    DevicePtr
		want uint32
	}{
		{0x7f0000000000, 256},
		{0x7f0000000100, 256},
		{0x7f0000000080, 128},
		{0x7f0000000002, 2},
		{0x7f0000000001, 1},
		{0x7f0000000010, 16},
	}
	for _, tc := range tests {
		if got := alignment(tc.p); got != tc.want {
			t.Errorf("alignment(%#x) = %d; want %d", tc.p, got, tc.want)
		}
	}
}

func TestGemmString(t *testing.T) {
	s := GemmShape{M: 1, N: 4096, K: 4096, LdX: 4096, LdW: 4096, LdY: 4096, Bias: true, Accumulate: true}.String()
	for _, part := range []string{"M=1", "N=4096", "K=4096", "+bias", "+=Y"} {
		if !strings.Contains(s, part) {
			t.Errorf("%q lacks %q", s, part)
		}
	}
}
