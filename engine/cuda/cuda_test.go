package cuda

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestOpenMissingDriver(t *testing.T) {
	_, err := OpenWith(Options{Library: "libcuda-longctx-test-missing.so.1"})
	if !errors.Is(err, ErrNoDriver) {
		t.Fatalf("err = %v; want ErrNoDriver", err)
	}
	if !strings.Contains(err.Error(), "no CUDA driver found") || !strings.Contains(err.Error(), "libcuda-longctx-test-missing.so.1") {
		t.Fatalf("error %q does not say what is missing", err)
	}
}

func TestOpenMissingNVRTC(t *testing.T) {
	_, err := OpenNVRTCWith(NVRTCOptions{
		Libraries: []string{"libnvrtc-longctx-test-missing.so.13"},
		Getenv:    func(string) string { return "" },
	})
	if !errors.Is(err, ErrNoNVRTC) {
		t.Fatalf("err = %v; want ErrNoNVRTC", err)
	}
}

func TestArch(t *testing.T) {
	tests := []struct {
		major, minor int
		want         string
	}{
		{8, 0, "sm_80"},
		{8, 9, "sm_89"},
		{9, 0, "sm_90a"},
		{10, 0, "sm_100a"},
	}
	for _, tc := range tests {
		if got := (DeviceInfo{Major: tc.major, Minor: tc.minor}).Arch(); got != tc.want {
			t.Errorf("Arch(%d.%d) = %s; want %s", tc.major, tc.minor, got, tc.want)
		}
	}
}

func TestIsOutOfMemory(t *testing.T) {
	oom := &Error{Func: "cuMemAlloc", Code: cudaErrorOutOfMemory}
	other := &Error{Func: "cuMemAlloc", Code: 1}
	tests := []struct {
		err  error
		want bool
	}{
		{oom, true},
		{errors.Join(errors.New("allocating KV"), oom), true},
		{other, false},
		{errors.New("plain"), false},
		{nil, false},
	}
	for _, tc := range tests {
		if got := IsOutOfMemory(tc.err); got != tc.want {
			t.Errorf("IsOutOfMemory(%v) = %v; want %v", tc.err, got, tc.want)
		}
	}
}

func TestArgsOrder(t *testing.T) {
	n := &NVRTC{includeDirs: []string{"/found/include"}}
	got := n.Args(CompileOptions{
		Arch:        "sm_90a",
		IncludeDirs: []string{"/mine"},
		Defines:     map[string]string{"ZED": "1", "ALPHA": "", "MID": "x"},
		Extra:       []string{"-lineinfo"},
	})
	want := []string{
		"--gpu-architecture=sm_90a", "--std=c++17",
		"--include-path=/mine", "--include-path=/found/include",
		"--define-macro=ALPHA", "--define-macro=MID=x", "--define-macro=ZED=1",
		"-lineinfo",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Args =\n%q\nwant\n%q", got, want)
	}
}

func TestFindIncludeDirs(t *testing.T) {
	root := t.TempDir()
	mk := func(dir string, withHeader bool) string {
		p := filepath.Join(root, dir)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if withHeader {
			if err := os.WriteFile(filepath.Join(p, "cuda_fp16.h"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	home := mk("toolkit/include", true)
	mk("toolkit/lib64", false)
	cu13 := mk("site/nvidia/cu13/include", true)
	mk("site/nvidia/cu13/lib", false)
	cu12rt := mk("site12/nvidia/cuda_runtime/include", true)
	mk("site12/nvidia/cuda_nvrtc/lib", false)
	mk("empty/include", false)
	mk("empty/lib", false)

	env := func(vals map[string]string) func(string) string {
		return func(k string) string { return vals[k] }
	}
	// /usr/local/cuda/include may exist on the machine running the test.
	system := FindIncludeDirs(env(nil), "")
	tests := []struct {
		name  string
		env   map[string]string
		nvrtc string
		want  []string
	}{
		{"CUDA_HOME", map[string]string{"CUDA_HOME": filepath.Join(root, "toolkit")}, "", []string{home}},
		{"CUDA_PATH and library beside it, once", map[string]string{"CUDA_PATH": filepath.Join(root, "toolkit")}, filepath.Join(root, "toolkit/lib64/libnvrtc.so.13"), []string{home}},
		{"pip cu13", nil, filepath.Join(root, "site/nvidia/cu13/lib/libnvrtc.so.13"), []string{cu13}},
		{"pip cu12", nil, filepath.Join(root, "site12/nvidia/cuda_nvrtc/lib/libnvrtc.so.12"), []string{cu12rt}},
		{"folder without headers", map[string]string{"CUDA_HOME": filepath.Join(root, "empty")}, filepath.Join(root, "empty/lib/libnvrtc.so.13"), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := FindIncludeDirs(env(tc.env), tc.nvrtc)
			want := append([]string(nil), tc.want...)
			// The system folder sits after the environment's and before the library's.
			if len(system) > 0 {
				if tc.env != nil && len(tc.want) > 0 {
					want = append(want, system...)
				} else {
					want = append(system, want...)
				}
			}
			if !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
				t.Fatalf("FindIncludeDirs = %q; want %q", got, want)
			}
		})
	}
}

func TestDoctorReports(t *testing.T) {
	var buf bytes.Buffer
	if err := Doctor(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, line := range []string{"driver:", "nvrtc:", "cublasLt:", "cache:"} {
		if !strings.Contains(out, line) {
			t.Errorf("report lacks %q:\n%s", line, out)
		}
	}
	t.Logf("doctor report:\n%s", out)
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestDoctorWriteError(t *testing.T) {
	if err := Doctor(failingWriter{}); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("err = %v; want the writer's error", err)
	}
}

func TestFindMapping(t *testing.T) {
	maps := `7f00-7f10 r--p 00000000 00:1a 100 /usr/local/nvidia/lib64/libcuda.so.580.159.04
7f20-7f30 r--p 00000000 00:1a 101 /usr/local/cuda-13.0/targets/x86_64-linux/lib/libnvrtc-builtins.so.13.0.88
7f40-7f50 r--p 00000000 00:1a 102 /usr/local/cuda-13.0/targets/x86_64-linux/lib/libnvrtc.so.13.0.88
7f60-7f70 r--p 00000000 00:1a 103 /opt/lib/libexact.so.2
7f80-7f90 r--p 00000000 00:1a 104 /opt/lib/libexact.so.2.0.1
7fa0-7fb0 rw-p 00000000 00:00 0
bad line
`
	tests := []struct{ soname, want string }{
		{"libcuda.so.1", "/usr/local/nvidia/lib64/libcuda.so.580.159.04"},
		{"libnvrtc.so.13", "/usr/local/cuda-13.0/targets/x86_64-linux/lib/libnvrtc.so.13.0.88"},
		{"libexact.so.2", "/opt/lib/libexact.so.2"},
		{"libcublasLt.so.13", ""},
	}
	for _, tc := range tests {
		if got := findMapping(strings.NewReader(maps), tc.soname); got != tc.want {
			t.Errorf("findMapping(%s) = %q; want %q", tc.soname, got, tc.want)
		}
	}
}

// FuzzFindMapping feeds arbitrary /proc/self/maps text: it must never panic
// and may only return a path that appears in the input.
func FuzzFindMapping(f *testing.F) {
	f.Add("7f00-7f10 r--p 00000000 00:1a 100 /usr/lib/libcuda.so.580.1\n", "libcuda.so.1")
	f.Add("a b c d e /x/libnvrtc.so.13\n\n   \n", "libnvrtc.so.13")
	f.Add("", "")
	f.Add("1 2 3 4 5 .so.\n", ".so")
	f.Fuzz(func(t *testing.T, maps, soname string) {
		got := findMapping(strings.NewReader(maps), soname)
		if got != "" && !strings.Contains(maps, got) {
			t.Fatalf("findMapping returned %q, not in the input", got)
		}
	})
}
