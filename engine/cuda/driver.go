// Package cuda is a thin binding to the CUDA driver API and NVRTC, opened at
// run time with dlopen (through purego, so no cgo, headers or CUDA libraries
// are needed to build). A machine without a driver gets ErrNoDriver.
//
// CUDA keeps the current context per OS thread while Go moves goroutines
// between threads: a goroutine that uses a Context must call
// runtime.LockOSThread (Context.Bind does both).
package cuda

import (
	"errors"
	"fmt"
	"runtime"
	"time"
	"unsafe"
)

// ErrNoDriver is returned by Open when libcuda.so.1 cannot be loaded.
var ErrNoDriver = errors.New("no CUDA driver found: libcuda.so.1 could not be loaded")

// DefaultDriverLibrary is the driver's soname, installed by the NVIDIA driver
// package (not the toolkit).
const DefaultDriverLibrary = "libcuda.so.1"

// abiVersion is the CUDA version whose function ABI we ask cuGetProcAddress
// for: 12.0 gives the _v2 memory functions and is served by CUDA 12 and 13
// drivers alike.
const abiVersion = 12000

// Error is a failed CUDA driver call.
type Error struct {
	Func string // the driver function, e.g. "cuMemAlloc"
	Code int    // the CUresult
	Name string // cuGetErrorName, e.g. "CUDA_ERROR_OUT_OF_MEMORY"
	Text string // cuGetErrorString
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s (%d): %s", e.Func, e.Name, e.Code, e.Text)
}

// cudaErrorOutOfMemory is CUDA_ERROR_OUT_OF_MEMORY.
const cudaErrorOutOfMemory = 2

// IsOutOfMemory reports whether err is (or wraps) a CUDA out-of-memory error,
// which the harness records as a result rather than a failure.
func IsOutOfMemory(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == cudaErrorOutOfMemory
}

type (
	// Device is a CUdevice ordinal handle.
	Device int32
	// Context is a CUcontext.
	Context uintptr
	// DevicePtr is a CUdeviceptr.
	DevicePtr uint64
	// Stream is a CUstream; 0 is the legacy default stream.
	Stream uintptr
	// Event is a CUevent.
	Event uintptr
	// Module is a CUmodule.
	Module uintptr
	// Function is a CUfunction.
	Function uintptr
)

// Dim3 is a grid or block shape.
type Dim3 struct{ X, Y, Z uint32 }

// driverFuncs holds the entry points, resolved once in Open.
type driverFuncs struct {
	init, driverGetVersion, getErrorName, getErrorString                                        uintptr
	deviceGetCount, deviceGet, deviceGetName, deviceGetAttribute, deviceTotalMem, deviceGetUUID uintptr
	primaryCtxRetain, primaryCtxRelease, primaryCtxReset, ctxSetCurrent, ctxSynchronize         uintptr
	memGetInfo, memAlloc, memFree, memcpyHtoD, memcpyDtoH, memsetD8                             uintptr
	streamCreate, streamSynchronize, streamDestroy                                              uintptr
	eventCreate, eventRecord, eventSynchronize, eventElapsedTime, eventDestroy                  uintptr
	moduleLoadData, moduleUnload, moduleGetFunction, launchKernel                               uintptr
	memcpyHtoDAsync, memcpyDtoHAsync, memcpyDtoDAsync, memcpyDtoD                               uintptr
	memsetD8Async, memsetD32Async, memHostAlloc, memFreeHost                                    uintptr
	streamBeginCapture, streamEndCapture, graphInstantiate, graphLaunch                         uintptr
	graphExecDestroy, graphDestroy, funcSetAttribute, occupancyMaxActiveBlocks                  uintptr
	// Optional entry points (bindOptional): zero where the driver lacks
	// them.
	launchKernelEx uintptr
}

// Driver is an opened libcuda with cuInit done.
type Driver struct {
	lib *library
	f   driverFuncs
}

// Options selects what Open loads; the zero value loads libcuda.so.1.
type Options struct {
	// Library overrides the driver library name or path (tests point it at
	// a name that does not exist).
	Library string
}

// Open loads the CUDA driver and initialises it.
func Open() (*Driver, error) { return OpenWith(Options{}) }

// OpenWith is Open with options.
func OpenWith(opt Options) (*Driver, error) {
	name := opt.Library
	if name == "" {
		name = DefaultDriverLibrary
	}
	lib, err := openFirst([]string{name}, nil)
	if err != nil {
		return nil, fmt.Errorf("%w (%v)", ErrNoDriver, err)
	}
	d := &Driver{lib: lib}
	if err := d.bind(); err != nil {
		lib.close()
		return nil, err
	}
	if err := d.check("cuInit", call(d.f.init, 0)); err != nil {
		lib.close()
		return nil, err
	}
	return d, nil
}

// Path is the file the driver library was loaded from, when known.
func (d *Driver) Path() string { return d.lib.path }

// Close unloads the driver library. Nothing obtained from d may be used after.
func (d *Driver) Close() { d.lib.close() }

// bind resolves every entry point. cuGetProcAddress_v2 (CUDA 12+) gives the
// version of each function that matches abiVersion, so a base name like
// cuMemAlloc yields cuMemAlloc_v2 on every driver; older drivers fall back to
// the explicitly versioned exported names.
func (d *Driver) bind() error {
	getProc, _ := d.lib.sym("cuGetProcAddress_v2")
	table := []struct {
		dst      *uintptr
		name     string
		fallback []string
	}{
		{&d.f.init, "cuInit", nil},
		{&d.f.driverGetVersion, "cuDriverGetVersion", nil},
		{&d.f.getErrorName, "cuGetErrorName", nil},
		{&d.f.getErrorString, "cuGetErrorString", nil},
		{&d.f.deviceGetCount, "cuDeviceGetCount", nil},
		{&d.f.deviceGet, "cuDeviceGet", nil},
		{&d.f.deviceGetName, "cuDeviceGetName", nil},
		{&d.f.deviceGetAttribute, "cuDeviceGetAttribute", nil},
		{&d.f.deviceTotalMem, "cuDeviceTotalMem", []string{"cuDeviceTotalMem_v2"}},
		{&d.f.deviceGetUUID, "cuDeviceGetUuid", []string{"cuDeviceGetUuid_v2", "cuDeviceGetUuid"}},
		{&d.f.primaryCtxRetain, "cuDevicePrimaryCtxRetain", nil},
		{&d.f.primaryCtxRelease, "cuDevicePrimaryCtxRelease", []string{"cuDevicePrimaryCtxRelease_v2"}},
		{&d.f.primaryCtxReset, "cuDevicePrimaryCtxReset", []string{"cuDevicePrimaryCtxReset_v2"}},
		{&d.f.ctxSetCurrent, "cuCtxSetCurrent", nil},
		{&d.f.ctxSynchronize, "cuCtxSynchronize", nil},
		{&d.f.memGetInfo, "cuMemGetInfo", []string{"cuMemGetInfo_v2"}},
		{&d.f.memAlloc, "cuMemAlloc", []string{"cuMemAlloc_v2"}},
		{&d.f.memFree, "cuMemFree", []string{"cuMemFree_v2"}},
		{&d.f.memcpyHtoD, "cuMemcpyHtoD", []string{"cuMemcpyHtoD_v2"}},
		{&d.f.memcpyDtoH, "cuMemcpyDtoH", []string{"cuMemcpyDtoH_v2"}},
		{&d.f.memsetD8, "cuMemsetD8", []string{"cuMemsetD8_v2"}},
		{&d.f.streamCreate, "cuStreamCreate", nil},
		{&d.f.streamSynchronize, "cuStreamSynchronize", nil},
		{&d.f.streamDestroy, "cuStreamDestroy", []string{"cuStreamDestroy_v2"}},
		{&d.f.eventCreate, "cuEventCreate", nil},
		{&d.f.eventRecord, "cuEventRecord", nil},
		{&d.f.eventSynchronize, "cuEventSynchronize", nil},
		{&d.f.eventElapsedTime, "cuEventElapsedTime", []string{"cuEventElapsedTime_v2"}},
		{&d.f.eventDestroy, "cuEventDestroy", []string{"cuEventDestroy_v2"}},
		{&d.f.moduleLoadData, "cuModuleLoadData", nil},
		{&d.f.moduleUnload, "cuModuleUnload", nil},
		{&d.f.moduleGetFunction, "cuModuleGetFunction", nil},
		{&d.f.launchKernel, "cuLaunchKernel", nil},
		{&d.f.memcpyHtoDAsync, "cuMemcpyHtoDAsync", []string{"cuMemcpyHtoDAsync_v2"}},
		{&d.f.memcpyDtoHAsync, "cuMemcpyDtoHAsync", []string{"cuMemcpyDtoHAsync_v2"}},
		{&d.f.memcpyDtoDAsync, "cuMemcpyDtoDAsync", []string{"cuMemcpyDtoDAsync_v2"}},
		{&d.f.memcpyDtoD, "cuMemcpyDtoD", []string{"cuMemcpyDtoD_v2"}},
		{&d.f.memsetD8Async, "cuMemsetD8Async", nil},
		{&d.f.memsetD32Async, "cuMemsetD32Async", nil},
		{&d.f.memHostAlloc, "cuMemHostAlloc", nil},
		{&d.f.memFreeHost, "cuMemFreeHost", nil},
		// cuStreamBeginCapture without _v2 (CUDA 10.0) takes no mode.
		{&d.f.streamBeginCapture, "cuStreamBeginCapture", []string{"cuStreamBeginCapture_v2"}},
		{&d.f.streamEndCapture, "cuStreamEndCapture", nil},
		// Named explicitly: CUDA 12's cuGraphInstantiate is a macro for
		// this function, while the exported cuGraphInstantiate symbol is
		// the CUDA 11 one with an error-log signature.
		{&d.f.graphInstantiate, "cuGraphInstantiateWithFlags", nil},
		{&d.f.graphLaunch, "cuGraphLaunch", nil},
		{&d.f.graphExecDestroy, "cuGraphExecDestroy", nil},
		{&d.f.graphDestroy, "cuGraphDestroy", nil},
		{&d.f.funcSetAttribute, "cuFuncSetAttribute", nil},
		{&d.f.occupancyMaxActiveBlocks, "cuOccupancyMaxActiveBlocksPerMultiprocessor", nil},
	}
	const legacyStream = 1 // CU_GET_PROC_ADDRESS_LEGACY_STREAM
	for _, e := range table {
		if getProc != 0 {
			name := cString(e.name)
			var pfn uintptr
			var status int32
			r := call(getProc, uintptr(unsafe.Pointer(&name[0])), uintptr(unsafe.Pointer(&pfn)),
				abiVersion, legacyStream, uintptr(unsafe.Pointer(&status)))
			if r == 0 && status == 0 && pfn != 0 {
				*e.dst = pfn
				continue
			}
		}
		var errs []error
		for _, n := range append(append([]string(nil), e.fallback...), e.name) {
			p, err := d.lib.sym(n)
			if err == nil {
				*e.dst = p
				break
			}
			errs = append(errs, err)
		}
		if *e.dst == 0 {
			return fmt.Errorf("binding CUDA driver function %s: %w", e.name, errors.Join(errs...))
		}
	}
	d.bindOptional()
	return nil
}

// check turns a CUresult into an *Error naming the function.
func (d *Driver) check(fn string, r uintptr) error {
	// CUresult is a 32-bit enum: the upper half of the return register is
	// not defined by the C ABI.
	if uint32(r) == 0 {
		return nil
	}
	r = uintptr(uint32(r))
	e := &Error{Func: fn, Code: int(int32(r)), Name: "unknown CUresult", Text: "no description"}
	var p uintptr
	if call(d.f.getErrorName, r, uintptr(unsafe.Pointer(&p))) == 0 {
		e.Name = goString(p)
	}
	p = 0
	if call(d.f.getErrorString, r, uintptr(unsafe.Pointer(&p))) == 0 {
		e.Text = goString(p)
	}
	return e
}

// DriverVersion is the CUDA version the driver supports, e.g. 13000 for 13.0.
func (d *Driver) DriverVersion() (int, error) {
	var v int32
	err := d.check("cuDriverGetVersion", call(d.f.driverGetVersion, uintptr(unsafe.Pointer(&v))))
	return int(v), err
}

// DeviceCount is the number of CUDA devices visible.
func (d *Driver) DeviceCount() (int, error) {
	var n int32
	err := d.check("cuDeviceGetCount", call(d.f.deviceGetCount, uintptr(unsafe.Pointer(&n))))
	return int(n), err
}

// Device returns the handle of device ordinal i.
func (d *Driver) Device(i int) (Device, error) {
	var dev int32
	if err := d.check("cuDeviceGet", call(d.f.deviceGet, uintptr(unsafe.Pointer(&dev)), uintptr(i))); err != nil {
		return 0, fmt.Errorf("device %d: %w", i, err)
	}
	return Device(dev), nil
}

// Device attributes (CUdevice_attribute values).
const (
	AttrMultiprocessorCount          = 16
	AttrL2CacheSize                  = 38
	AttrComputeCapabilityMajor       = 75
	AttrComputeCapabilityMinor       = 76
	AttrMaxSharedMemoryPerBlockOptin = 97
)

// Attribute reads one device attribute.
func (d *Driver) Attribute(dev Device, attr int) (int, error) {
	var v int32
	err := d.check("cuDeviceGetAttribute", call(d.f.deviceGetAttribute, uintptr(unsafe.Pointer(&v)), uintptr(attr), uintptr(dev)))
	if err != nil {
		return 0, fmt.Errorf("device %d attribute %d: %w", dev, attr, err)
	}
	return int(v), nil
}

// DeviceInfo describes one GPU.
type DeviceInfo struct {
	Ordinal         int
	Name            string
	UUID            string // "GPU-xxxxxxxx-xxxx-..." as nvidia-smi prints it
	Major, Minor    int    // compute capability
	TotalMemory     uint64 // bytes
	Multiprocessors int
	L2Bytes         int
}

// Arch is the NVRTC target for the device. Hopper (9.0) gets sm_90a so that
// wgmma and setmaxnreg are available; the "a" targets run only on exactly
// that architecture, which is what JIT compilation for the present GPU wants.
func (i DeviceInfo) Arch() string {
	if i.Major >= 9 {
		return fmt.Sprintf("sm_%d%da", i.Major, i.Minor)
	}
	return fmt.Sprintf("sm_%d%d", i.Major, i.Minor)
}

// DeviceInfo reads name, UUID, compute capability and memory of ordinal i.
func (d *Driver) DeviceInfo(i int) (DeviceInfo, error) {
	dev, err := d.Device(i)
	if err != nil {
		return DeviceInfo{}, err
	}
	info := DeviceInfo{Ordinal: i}
	name := make([]byte, 256)
	if err := d.check("cuDeviceGetName", call(d.f.deviceGetName, uintptr(unsafe.Pointer(&name[0])), uintptr(len(name)), uintptr(dev))); err != nil {
		return info, fmt.Errorf("device %d: %w", i, err)
	}
	for n, c := range name {
		if c == 0 {
			name = name[:n]
			break
		}
	}
	info.Name = string(name)
	var uuid [16]byte
	if err := d.check("cuDeviceGetUuid", call(d.f.deviceGetUUID, uintptr(unsafe.Pointer(&uuid[0])), uintptr(dev))); err != nil {
		return info, fmt.Errorf("device %d: %w", i, err)
	}
	info.UUID = fmt.Sprintf("GPU-%x-%x-%x-%x-%x", uuid[0:4], uuid[4:6], uuid[6:8], uuid[8:10], uuid[10:16])
	var total uint64
	if err := d.check("cuDeviceTotalMem", call(d.f.deviceTotalMem, uintptr(unsafe.Pointer(&total)), uintptr(dev))); err != nil {
		return info, fmt.Errorf("device %d: %w", i, err)
	}
	info.TotalMemory = total
	for _, a := range []struct {
		dst  *int
		attr int
	}{
		{&info.Major, AttrComputeCapabilityMajor},
		{&info.Minor, AttrComputeCapabilityMinor},
		{&info.Multiprocessors, AttrMultiprocessorCount},
		{&info.L2Bytes, AttrL2CacheSize},
	} {
		if *a.dst, err = d.Attribute(dev, a.attr); err != nil {
			return info, err
		}
	}
	return info, nil
}

// RetainPrimaryContext retains the device's primary context, the one the
// CUDA runtime and other libraries share; using it avoids cuCtxCreate, whose
// signature changed in CUDA 13 (cuCtxCreate_v4).
func (d *Driver) RetainPrimaryContext(dev Device) (Context, error) {
	var c uintptr
	if err := d.check("cuDevicePrimaryCtxRetain", call(d.f.primaryCtxRetain, uintptr(unsafe.Pointer(&c)), uintptr(dev))); err != nil {
		return 0, fmt.Errorf("device %d: %w", dev, err)
	}
	return Context(c), nil
}

// ReleasePrimaryContext drops one reference taken by RetainPrimaryContext.
func (d *Driver) ReleasePrimaryContext(dev Device) error {
	if err := d.check("cuDevicePrimaryCtxRelease", call(d.f.primaryCtxRelease, uintptr(dev))); err != nil {
		return fmt.Errorf("device %d: %w", dev, err)
	}
	return nil
}

// ResetPrimaryContext destroys every allocation and all state of dev's
// primary context. A kernel fault (an illegal address, say) leaves the
// context unusable for the rest of the process ("sticky" errors); a reset
// is the only way to get a working context again, so an engine that saw
// one resets before it goes, and the next engine starts clean.
func (d *Driver) ResetPrimaryContext(dev Device) error {
	if err := d.check("cuDevicePrimaryCtxReset", call(d.f.primaryCtxReset, uintptr(dev))); err != nil {
		return fmt.Errorf("device %d: %w", dev, err)
	}
	return nil
}

// SetCurrent makes c the current context of the calling OS thread.
func (d *Driver) SetCurrent(c Context) error {
	return d.check("cuCtxSetCurrent", call(d.f.ctxSetCurrent, uintptr(c)))
}

// Bind locks the calling goroutine to its OS thread and makes c current
// there. The returned function unlocks the thread.
func (d *Driver) Bind(c Context) (unbind func(), err error) {
	runtime.LockOSThread()
	if err := d.SetCurrent(c); err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	return runtime.UnlockOSThread, nil
}

// Synchronize waits for all work of the current context.
func (d *Driver) Synchronize() error {
	return d.check("cuCtxSynchronize", call(d.f.ctxSynchronize))
}

// MemGetInfo returns free and total device memory of the current context's
// device, in bytes.
func (d *Driver) MemGetInfo() (free, total uint64, err error) {
	err = d.check("cuMemGetInfo", call(d.f.memGetInfo, uintptr(unsafe.Pointer(&free)), uintptr(unsafe.Pointer(&total))))
	return free, total, err
}

// MemAlloc allocates n bytes of device memory.
func (d *Driver) MemAlloc(n uint64) (DevicePtr, error) {
	var p uint64
	if err := d.check("cuMemAlloc", call(d.f.memAlloc, uintptr(unsafe.Pointer(&p)), uintptr(n))); err != nil {
		return 0, fmt.Errorf("allocating %d bytes: %w", n, err)
	}
	return DevicePtr(p), nil
}

// MemFree frees memory from MemAlloc.
func (d *Driver) MemFree(p DevicePtr) error {
	return d.check("cuMemFree", call(d.f.memFree, uintptr(p)))
}

// MemsetD8 sets n bytes at p to v (synchronously with the host for
// pageable semantics, like cuMemsetD8).
func (d *Driver) MemsetD8(p DevicePtr, v byte, n uint64) error {
	return d.check("cuMemsetD8", call(d.f.memsetD8, uintptr(p), uintptr(v), uintptr(n)))
}

// MemcpyHtoD copies src to device memory at dst.
func (d *Driver) MemcpyHtoD(dst DevicePtr, src []byte) error {
	if len(src) == 0 {
		return nil
	}
	return d.check("cuMemcpyHtoD", call(d.f.memcpyHtoD, uintptr(dst), uintptr(unsafe.Pointer(&src[0])), uintptr(len(src))))
}

// MemcpyDtoH copies len(dst) bytes from device memory at src into dst.
func (d *Driver) MemcpyDtoH(dst []byte, src DevicePtr) error {
	if len(dst) == 0 {
		return nil
	}
	return d.check("cuMemcpyDtoH", call(d.f.memcpyDtoH, uintptr(unsafe.Pointer(&dst[0])), uintptr(src), uintptr(len(dst))))
}

// StreamNonBlocking is CU_STREAM_NON_BLOCKING: the stream does not
// synchronise with the legacy default stream.
const StreamNonBlocking = 1

// StreamCreate creates a stream with the given flags.
func (d *Driver) StreamCreate(flags uint32) (Stream, error) {
	var s uintptr
	err := d.check("cuStreamCreate", call(d.f.streamCreate, uintptr(unsafe.Pointer(&s)), uintptr(flags)))
	return Stream(s), err
}

// StreamSynchronize waits for the stream's work.
func (d *Driver) StreamSynchronize(s Stream) error {
	return d.check("cuStreamSynchronize", call(d.f.streamSynchronize, uintptr(s)))
}

// StreamDestroy destroys a stream.
func (d *Driver) StreamDestroy(s Stream) error {
	return d.check("cuStreamDestroy", call(d.f.streamDestroy, uintptr(s)))
}

// EventCreate creates an event (flags 0: timing enabled).
func (d *Driver) EventCreate(flags uint32) (Event, error) {
	var e uintptr
	err := d.check("cuEventCreate", call(d.f.eventCreate, uintptr(unsafe.Pointer(&e)), uintptr(flags)))
	return Event(e), err
}

// EventRecord records e on stream s.
func (d *Driver) EventRecord(e Event, s Stream) error {
	return d.check("cuEventRecord", call(d.f.eventRecord, uintptr(e), uintptr(s)))
}

// EventSynchronize waits until e has completed.
func (d *Driver) EventSynchronize(e Event) error {
	return d.check("cuEventSynchronize", call(d.f.eventSynchronize, uintptr(e)))
}

// EventElapsed is the GPU time between two completed events.
func (d *Driver) EventElapsed(start, end Event) (time.Duration, error) {
	var ms float32
	if err := d.check("cuEventElapsedTime", call(d.f.eventElapsedTime, uintptr(unsafe.Pointer(&ms)), uintptr(start), uintptr(end))); err != nil {
		return 0, err
	}
	return time.Duration(float64(ms) * float64(time.Millisecond)), nil
}

// EventDestroy destroys an event.
func (d *Driver) EventDestroy(e Event) error {
	return d.check("cuEventDestroy", call(d.f.eventDestroy, uintptr(e)))
}

// ModuleLoadData loads a cubin, fatbin or NUL-terminated PTX image.
func (d *Driver) ModuleLoadData(image []byte) (Module, error) {
	if len(image) == 0 {
		return 0, errors.New("cuModuleLoadData: empty image")
	}
	var m uintptr
	err := d.check("cuModuleLoadData", call(d.f.moduleLoadData, uintptr(unsafe.Pointer(&m)), uintptr(unsafe.Pointer(&image[0]))))
	runtime.KeepAlive(image)
	return Module(m), err
}

// ModuleUnload unloads a module.
func (d *Driver) ModuleUnload(m Module) error {
	return d.check("cuModuleUnload", call(d.f.moduleUnload, uintptr(m)))
}

// ModuleFunction finds a kernel by its (extern "C") name.
func (d *Driver) ModuleFunction(m Module, name string) (Function, error) {
	var f uintptr
	cname := cString(name)
	if err := d.check("cuModuleGetFunction", call(d.f.moduleGetFunction, uintptr(unsafe.Pointer(&f)), uintptr(m), uintptr(unsafe.Pointer(&cname[0])))); err != nil {
		return 0, fmt.Errorf("kernel %q: %w", name, err)
	}
	return Function(f), nil
}

// Launch enqueues a kernel on stream s. Each element of args points to one
// kernel parameter's value, in order (as cuLaunchKernel's kernelParams).
func (d *Driver) Launch(f Function, grid, block Dim3, sharedMem uint32, s Stream, args ...unsafe.Pointer) error {
	if len(args) == 0 {
		args = []unsafe.Pointer{nil} // cuLaunchKernel reads no parameters; keeps one call path
	}
	// The address is converted inside the call's argument list so that
	// call's go:uintptrescapes moves args to the heap before the call.
	r := call(d.f.launchKernel, uintptr(f),
		uintptr(grid.X), uintptr(grid.Y), uintptr(grid.Z),
		uintptr(block.X), uintptr(block.Y), uintptr(block.Z),
		uintptr(sharedMem), uintptr(s), uintptr(unsafe.Pointer(&args[0])), 0)
	runtime.KeepAlive(args)
	return d.check("cuLaunchKernel", r)
}
