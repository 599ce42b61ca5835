package cuda

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unsafe"

	"github.com/ebitengine/purego"
)

// library is one shared object opened with dlopen.
type library struct {
	handle uintptr
	name   string // the name that dlopen accepted
	path   string // the file it resolved to, read back from /proc/self/maps; "" if unknown
}

// openFirst tries each name in names, first as given (so the loader's own
// search path and ldconfig apply), then inside each of dirs. It returns the
// first library that opens, or an error listing every attempt.
func openFirst(names, dirs []string) (*library, error) {
	var tried []string
	for _, name := range names {
		candidates := []string{name}
		if !strings.Contains(name, "/") {
			for _, d := range dirs {
				candidates = append(candidates, filepath.Join(d, name))
			}
		}
		for _, c := range candidates {
			if strings.Contains(c, "/") {
				if _, err := os.Stat(c); err != nil {
					continue
				}
			}
			h, err := dlopen(c)
			if err != nil {
				tried = append(tried, fmt.Sprintf("%s (%v)", c, err))
				continue
			}
			return &library{handle: h, name: c, path: loadedPath(filepath.Base(c))}, nil
		}
	}
	if len(tried) == 0 {
		return nil, errors.New("tried " + strings.Join(names, ", "))
	}
	return nil, errors.New("tried " + strings.Join(tried, "; "))
}

func (l *library) close() {
	if l != nil && l.handle != 0 {
		dlclose(l.handle)
		l.handle = 0
	}
}

// sym looks up a symbol, wrapping the error with the library name.
func (l *library) sym(name string) (uintptr, error) {
	p, err := dlsym(l.handle, name)
	if err != nil {
		return 0, fmt.Errorf("%s: symbol %s: %w", l.name, name, err)
	}
	return p, nil
}

// loadedPath finds the file a shared object was mapped from. dlopen does not
// tell, and dladdr is not reachable without cgo, but the kernel lists every
// mapping of the process.
func loadedPath(soname string) string {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return ""
	}
	defer f.Close()
	return findMapping(f, soname)
}

// findMapping returns the first mapped file in a /proc/<pid>/maps listing
// that is soname or another version of the same library: the soname is
// usually a link to a fully versioned file (libnvrtc.so.13 ->
// libnvrtc.so.13.0.88, libcuda.so.1 -> libcuda.so.580.159.04).
func findMapping(r io.Reader, soname string) string {
	stem, _, ok := strings.Cut(soname, ".so")
	if !ok {
		stem = soname
	}
	exact, versioned := "", ""
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 {
			continue
		}
		p := fields[len(fields)-1]
		base := filepath.Base(p)
		switch {
		case base == soname && exact == "":
			exact = p
		case strings.HasPrefix(base, stem+".so.") && versioned == "":
			versioned = p
		}
	}
	if exact != "" {
		return exact
	}
	return versioned
}

// goString copies a NUL-terminated C string owned by a library.
func goString(p uintptr) string {
	if p == 0 {
		return ""
	}
	// Converting through a pointer-to-uintptr keeps go vet's unsafeptr check
	// quiet: the memory belongs to C and never moves.
	base := *(*unsafe.Pointer)(unsafe.Pointer(&p))
	n := 0
	for *(*byte)(unsafe.Add(base, n)) != 0 {
		n++
	}
	return string(unsafe.Slice((*byte)(base), n))
}

// cString returns a NUL-terminated copy of s.
func cString(s string) []byte {
	b := make([]byte, len(s)+1)
	copy(b, s)
	return b
}

// call invokes a C function. The pragma makes every object whose address is
// converted to uintptr in a caller's argument list escape to the heap, so a
// goroutine stack move cannot invalidate it during the call.
//
//go:uintptrescapes
func call(fn uintptr, args ...uintptr) uintptr {
	r, _, _ := purego.SyscallN(fn, args...)
	return r
}

// libraryDirs lists folders where CUDA libraries live when they are not on
// the loader's search path: the toolkit (CUDA_HOME, CUDA_PATH,
// /usr/local/cuda, then versioned /usr/local/cuda-X.Y installs, newest
// first) and the pip "nvidia-*" wheels of the active Python environment
// (VIRTUAL_ENV).
func libraryDirs(getenv func(string) string) []string {
	var dirs []string
	for _, v := range []string{"CUDA_HOME", "CUDA_PATH"} {
		if root := getenv(v); root != "" {
			dirs = append(dirs, filepath.Join(root, "lib64"), filepath.Join(root, "lib"))
		}
	}
	dirs = append(dirs, "/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib")
	// A machine without the /usr/local/cuda link (several toolkits, or a
	// runtime-only install) still has /usr/local/cuda-13.0/targets/...
	versioned, _ := filepath.Glob("/usr/local/cuda-*")
	sort.Sort(sort.Reverse(sort.StringSlice(versioned)))
	for _, root := range versioned {
		dirs = append(dirs, filepath.Join(root, "targets", "x86_64-linux", "lib"), filepath.Join(root, "lib64"))
	}
	for _, site := range sitePackages(getenv) {
		for _, sub := range []string{"cu13/lib", "cu12/lib", "cuda_nvrtc/lib", "cublas/lib"} {
			dirs = append(dirs, filepath.Join(site, "nvidia", sub))
		}
	}
	return dirs
}

// sitePackages lists Python site-packages folders that may hold NVIDIA's pip
// wheels.
func sitePackages(getenv func(string) string) []string {
	var pats []string
	if v := getenv("VIRTUAL_ENV"); v != "" {
		pats = append(pats, filepath.Join(v, "lib", "python3*", "site-packages"))
	}
	pats = append(pats, "/usr/local/lib/python3*/dist-packages", "/usr/lib/python3*/site-packages", "/usr/local/lib/python3*/site-packages")
	var out []string
	for _, p := range pats {
		m, _ := filepath.Glob(p)
		out = append(out, m...)
	}
	return out
}
