package cuda

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"unsafe"
)

// nvrtcLibraries are the sonames tried, newest first.
var nvrtcLibraries = []string{"libnvrtc.so.13", "libnvrtc.so.12"}

// ErrNoNVRTC is returned by OpenNVRTC when no libnvrtc can be loaded.
var ErrNoNVRTC = errors.New("no NVRTC found: libnvrtc.so.13 or libnvrtc.so.12 could not be loaded")

// NVRTC is an opened runtime-compilation library.
type NVRTC struct {
	lib          *library
	major, minor int
	includeDirs  []string
	f            struct {
		version, createProgram, compileProgram, destroyProgram, getErrorString uintptr
		getCUBINSize, getCUBIN, getPTXSize, getPTX, getLogSize, getLog         uintptr
	}
}

// NVRTCOptions selects what OpenNVRTCWith loads; the zero value searches the
// usual places.
type NVRTCOptions struct {
	Libraries []string            // sonames or paths to try instead of the defaults
	Getenv    func(string) string // environment lookup; nil means os.Getenv
}

// OpenNVRTC loads libnvrtc (13, else 12) from the loader's path, the CUDA
// toolkit folders or NVIDIA's pip wheels, and finds the toolkit headers.
func OpenNVRTC() (*NVRTC, error) { return OpenNVRTCWith(NVRTCOptions{}) }

// OpenNVRTCWith is OpenNVRTC with options.
func OpenNVRTCWith(opt NVRTCOptions) (*NVRTC, error) {
	getenv := opt.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	names := opt.Libraries
	if len(names) == 0 {
		names = nvrtcLibraries
	}
	lib, err := openFirst(names, libraryDirs(getenv))
	if err != nil {
		return nil, fmt.Errorf("%w (%v)", ErrNoNVRTC, err)
	}
	n := &NVRTC{lib: lib}
	for _, e := range []struct {
		dst  *uintptr
		name string
	}{
		{&n.f.version, "nvrtcVersion"},
		{&n.f.createProgram, "nvrtcCreateProgram"},
		{&n.f.compileProgram, "nvrtcCompileProgram"},
		{&n.f.destroyProgram, "nvrtcDestroyProgram"},
		{&n.f.getErrorString, "nvrtcGetErrorString"},
		{&n.f.getCUBINSize, "nvrtcGetCUBINSize"},
		{&n.f.getCUBIN, "nvrtcGetCUBIN"},
		{&n.f.getPTXSize, "nvrtcGetPTXSize"},
		{&n.f.getPTX, "nvrtcGetPTX"},
		{&n.f.getLogSize, "nvrtcGetProgramLogSize"},
		{&n.f.getLog, "nvrtcGetProgramLog"},
	} {
		if *e.dst, err = lib.sym(e.name); err != nil {
			lib.close()
			return nil, err
		}
	}
	var major, minor int32
	if err := n.check("nvrtcVersion", call(n.f.version, uintptr(unsafe.Pointer(&major)), uintptr(unsafe.Pointer(&minor)))); err != nil {
		lib.close()
		return nil, err
	}
	n.major, n.minor = int(major), int(minor)
	n.includeDirs = FindIncludeDirs(getenv, n.Path())
	return n, nil
}

// Close unloads the library.
func (n *NVRTC) Close() { n.lib.close() }

// Version is NVRTC's major and minor version.
func (n *NVRTC) Version() (major, minor int) { return n.major, n.minor }

// VersionString is "major.minor".
func (n *NVRTC) VersionString() string { return fmt.Sprintf("%d.%d", n.major, n.minor) }

// Path is the file libnvrtc was loaded from, when known.
func (n *NVRTC) Path() string { return n.lib.path }

// IncludeDirs are the toolkit header folders found when NVRTC was opened;
// Compile passes them after CompileOptions.IncludeDirs.
func (n *NVRTC) IncludeDirs() []string { return append([]string(nil), n.includeDirs...) }

func (n *NVRTC) check(fn string, r uintptr) error {
	if r == 0 {
		return nil
	}
	return fmt.Errorf("%s: %s (nvrtcResult %d)", fn, goString(call(n.f.getErrorString, r)), int32(r))
}

// CompileOptions are the inputs of one compilation besides the source.
type CompileOptions struct {
	// Arch is the target: "sm_90a" yields a cubin, "compute_90a" PTX.
	Arch        string
	IncludeDirs []string
	Defines     map[string]string // NAME -> value ("" defines NAME alone)
	Extra       []string          // further nvrtc options, e.g. "-lineinfo"
	// Headers are in-memory headers, include name -> content (e.g.
	// "longctx/abi/attention.h"): `#include "longctx/abi/attention.h"`
	// finds them before any folder. They take part in the cache key.
	Headers map[string]string
}

// Args is the full NVRTC option list for opts, in a fixed order (defines
// sorted by name) so that equal options give equal cache keys.
func (n *NVRTC) Args(opts CompileOptions) []string {
	args := []string{"--gpu-architecture=" + opts.Arch, "--std=c++17"}
	for _, d := range opts.IncludeDirs {
		args = append(args, "--include-path="+d)
	}
	for _, d := range n.includeDirs {
		args = append(args, "--include-path="+d)
	}
	for _, k := range sortedKeys(opts.Defines) {
		if v := opts.Defines[k]; v != "" {
			args = append(args, "--define-macro="+k+"="+v)
		} else {
			args = append(args, "--define-macro="+k)
		}
	}
	return append(args, opts.Extra...)
}

// Compile compiles CUDA C++ source. name is the program's file name used in
// diagnostics (e.g. "rmsnorm.cu"); kernels should be extern "C" so that
// ModuleFunction finds them by their plain names. The image is a cubin for
// an sm_ target and NUL-terminated PTX for a compute_ target. log is NVRTC's
// log, also on success (warnings); a failed compilation's error includes it.
func (n *NVRTC) Compile(src, name string, opts CompileOptions) (image []byte, log string, err error) {
	if !strings.HasPrefix(opts.Arch, "sm_") && !strings.HasPrefix(opts.Arch, "compute_") {
		return nil, "", fmt.Errorf("compiling %s: arch %q is neither sm_XX nor compute_XX", name, opts.Arch)
	}
	args := n.Args(opts)
	cargs := make([][]byte, len(args))
	ptrs := make([]uintptr, len(args)+1) // +1: never index an empty slice
	for i, a := range args {
		cargs[i] = cString(a)
		ptrs[i] = uintptr(unsafe.Pointer(&cargs[i][0]))
	}
	csrc, cname := cString(src), cString(name)
	// Sorted, so that a program's diagnostics do not depend on map order.
	hnames := sortedKeys(opts.Headers)
	hbufs := make([][]byte, 0, 2*len(hnames))
	hcontents := make([]uintptr, len(hnames)+1) // +1: never index an empty slice
	hincludes := make([]uintptr, len(hnames)+1)
	for i, h := range hnames {
		c, in := cString(opts.Headers[h]), cString(h)
		hbufs = append(hbufs, c, in)
		hcontents[i] = uintptr(unsafe.Pointer(&c[0]))
		hincludes[i] = uintptr(unsafe.Pointer(&in[0]))
	}
	var prog uintptr
	cr := call(n.f.createProgram, uintptr(unsafe.Pointer(&prog)),
		uintptr(unsafe.Pointer(&csrc[0])), uintptr(unsafe.Pointer(&cname[0])),
		uintptr(len(hnames)), uintptr(unsafe.Pointer(&hcontents[0])), uintptr(unsafe.Pointer(&hincludes[0])))
	if err := n.check("nvrtcCreateProgram", cr); err != nil {
		return nil, "", fmt.Errorf("compiling %s: %w", name, err)
	}
	defer call(n.f.destroyProgram, uintptr(unsafe.Pointer(&prog)))
	r := call(n.f.compileProgram, prog, uintptr(len(args)), uintptr(unsafe.Pointer(&ptrs[0])))
	// cargs and hbufs are heap-allocated; ptrs, hcontents and hincludes
	// hold their addresses as integers, which the collector does not see.
	// NVRTC documents no copy of the headers, so keep them all reachable
	// until the compilation that reads them is over.
	keepAlive(cargs)
	keepAlive(csrc)
	keepAlive(hbufs)
	keepAlive(hcontents)
	keepAlive(hincludes)
	log = n.programLog(prog)
	if err := n.check("nvrtcCompileProgram", r); err != nil {
		return nil, log, fmt.Errorf("compiling %s for %s: %w\n%s", name, opts.Arch, err, log)
	}
	sizeFn, getFn, what := n.f.getCUBINSize, n.f.getCUBIN, "CUBIN"
	if strings.HasPrefix(opts.Arch, "compute_") {
		sizeFn, getFn, what = n.f.getPTXSize, n.f.getPTX, "PTX"
	}
	var size uint64
	if err := n.check("nvrtcGet"+what+"Size", call(sizeFn, prog, uintptr(unsafe.Pointer(&size)))); err != nil {
		return nil, log, fmt.Errorf("compiling %s: %w", name, err)
	}
	if size == 0 {
		return nil, log, fmt.Errorf("compiling %s: NVRTC produced an empty %s", name, what)
	}
	image = make([]byte, size)
	if err := n.check("nvrtcGet"+what, call(getFn, prog, uintptr(unsafe.Pointer(&image[0])))); err != nil {
		return nil, log, fmt.Errorf("compiling %s: %w", name, err)
	}
	return image, log, nil
}

func (n *NVRTC) programLog(prog uintptr) string {
	var size uint64
	if call(n.f.getLogSize, prog, uintptr(unsafe.Pointer(&size))) != 0 || size <= 1 {
		return ""
	}
	buf := make([]byte, size)
	if call(n.f.getLog, prog, uintptr(unsafe.Pointer(&buf[0]))) != 0 {
		return ""
	}
	return strings.TrimRight(string(buf), "\x00\n")
}
