package cuda

import (
	"errors"
	"fmt"
	"unsafe"
)

// MemcpyHtoDAsync enqueues a copy of src to device memory at dst on s.
//
// Host memory given to the Async copies must stay valid and unchanged
// until the stream has reached the copy (StreamSynchronize, an event, or a
// later synchronous call); keep a Go slice reachable (runtime.KeepAlive)
// until then. Go-allocated (pageable) memory works: the driver stages a
// pageable host-to-device copy before returning and performs a pageable
// device-to-host copy synchronously, so such a copy does not overlap with
// the host. Memory from MemHostAlloc is pinned: its copies really overlap,
// and only pinned memory may be used in copies captured into a graph,
// which are replayed long after the call.
func (d *Driver) MemcpyHtoDAsync(dst DevicePtr, src []byte, s Stream) error {
	if len(src) == 0 {
		return nil
	}
	err := d.check("cuMemcpyHtoDAsync", call(d.f.memcpyHtoDAsync, uintptr(dst), uintptr(unsafe.Pointer(&src[0])), uintptr(len(src)), uintptr(s)))
	if err != nil {
		return fmt.Errorf("copying %d bytes to the device: %w", len(src), err)
	}
	return nil
}

// MemcpyDtoHAsync enqueues a copy of len(dst) bytes from device memory at
// src into dst on s; dst must stay valid until s reaches the copy (see
// MemcpyHtoDAsync).
func (d *Driver) MemcpyDtoHAsync(dst []byte, src DevicePtr, s Stream) error {
	if len(dst) == 0 {
		return nil
	}
	err := d.check("cuMemcpyDtoHAsync", call(d.f.memcpyDtoHAsync, uintptr(unsafe.Pointer(&dst[0])), uintptr(src), uintptr(len(dst)), uintptr(s)))
	if err != nil {
		return fmt.Errorf("copying %d bytes from the device: %w", len(dst), err)
	}
	return nil
}

// MemcpyDtoDAsync enqueues a copy of n bytes between device buffers on s.
func (d *Driver) MemcpyDtoDAsync(dst, src DevicePtr, n uint64, s Stream) error {
	if n == 0 {
		return nil
	}
	if err := d.check("cuMemcpyDtoDAsync", call(d.f.memcpyDtoDAsync, uintptr(dst), uintptr(src), uintptr(n), uintptr(s))); err != nil {
		return fmt.Errorf("copying %d bytes on the device: %w", n, err)
	}
	return nil
}

// MemcpyDtoD copies n bytes between device buffers; it returns when the
// copy is done.
func (d *Driver) MemcpyDtoD(dst, src DevicePtr, n uint64) error {
	if n == 0 {
		return nil
	}
	if err := d.check("cuMemcpyDtoD", call(d.f.memcpyDtoD, uintptr(dst), uintptr(src), uintptr(n))); err != nil {
		return fmt.Errorf("copying %d bytes on the device: %w", n, err)
	}
	return nil
}

// MemsetD8Async enqueues setting n bytes at p to v on s.
func (d *Driver) MemsetD8Async(p DevicePtr, v byte, n uint64, s Stream) error {
	return d.check("cuMemsetD8Async", call(d.f.memsetD8Async, uintptr(p), uintptr(v), uintptr(n), uintptr(s)))
}

// MemsetD32Async enqueues setting n 32-bit words at p (4-byte aligned) to v
// on s; e.g. v = math.Float32bits(1) fills floats with 1.
func (d *Driver) MemsetD32Async(p DevicePtr, v uint32, n uint64, s Stream) error {
	return d.check("cuMemsetD32Async", call(d.f.memsetD32Async, uintptr(p), uintptr(v), uintptr(n), uintptr(s)))
}

// cuMemHostAlloc flags.
const (
	HostAllocPortable      = 1 // CU_MEMHOSTALLOC_PORTABLE: pinned for every context
	HostAllocDeviceMap     = 2 // CU_MEMHOSTALLOC_DEVICEMAP: also mapped into the device's address space
	HostAllocWriteCombined = 4 // CU_MEMHOSTALLOC_WRITECOMBINED: fast host writes and PCIe reads, slow host reads
)

// MemHostAlloc allocates n bytes of page-locked host memory, the staging
// memory that lets async copies overlap. The slice is C memory: the Go
// garbage collector neither moves nor frees it; release it with
// MemFreeHost, after which it must not be touched.
func (d *Driver) MemHostAlloc(n uint64, flags uint32) ([]byte, error) {
	if n == 0 {
		return nil, errors.New("cuMemHostAlloc: zero bytes requested")
	}
	var p unsafe.Pointer
	if err := d.check("cuMemHostAlloc", call(d.f.memHostAlloc, uintptr(unsafe.Pointer(&p)), uintptr(n), uintptr(flags))); err != nil {
		return nil, fmt.Errorf("pinning %d bytes of host memory: %w", n, err)
	}
	return unsafe.Slice((*byte)(p), n), nil
}

// MemFreeHost frees memory from MemHostAlloc.
func (d *Driver) MemFreeHost(b []byte) error {
	if len(b) == 0 {
		return errors.New("cuMemFreeHost: empty slice")
	}
	return d.check("cuMemFreeHost", call(d.f.memFreeHost, uintptr(unsafe.Pointer(&b[0]))))
}

type (
	// Graph is a CUgraph: work recorded by stream capture.
	Graph uintptr
	// GraphExec is a CUgraphExec: an instantiated graph that can be
	// launched many times.
	GraphExec uintptr
)

// Stream capture modes (CUstreamCaptureMode): which calls made during a
// capture are refused because they would not be recorded (e.g. cuMemAlloc,
// a synchronous copy).
const (
	// CaptureModeGlobal refuses such calls from every thread.
	CaptureModeGlobal = 0
	// CaptureModeThreadLocal refuses them only from the capturing thread,
	// which is what an engine that captures on a bound thread wants.
	CaptureModeThreadLocal = 1
	// CaptureModeRelaxed refuses nothing.
	CaptureModeRelaxed = 2
)

// StreamBeginCapture starts recording the work enqueued on s into a graph
// instead of running it. s must not be the legacy default stream (create it
// with StreamNonBlocking); every kernel launch, copy and cuBLASLt call made
// on s until StreamEndCapture becomes a graph node.
func (d *Driver) StreamBeginCapture(s Stream, mode int) error {
	if s == 0 {
		return errors.New("cuStreamBeginCapture: the legacy default stream cannot be captured; use a stream from StreamCreate")
	}
	return d.check("cuStreamBeginCapture", call(d.f.streamBeginCapture, uintptr(s), uintptr(mode)))
}

// StreamEndCapture ends a capture started on s and returns the graph. A
// capture invalidated by an illegal call in between reports the error here.
func (d *Driver) StreamEndCapture(s Stream) (Graph, error) {
	var g uintptr
	err := d.check("cuStreamEndCapture", call(d.f.streamEndCapture, uintptr(s), uintptr(unsafe.Pointer(&g))))
	return Graph(g), err
}

// GraphInstantiate turns a graph into an executable one (flags 0). The
// graph may be destroyed afterwards; the executable graph keeps its own copy.
func (d *Driver) GraphInstantiate(g Graph) (GraphExec, error) {
	var e uintptr
	err := d.check("cuGraphInstantiateWithFlags", call(d.f.graphInstantiate, uintptr(unsafe.Pointer(&e)), uintptr(g), 0))
	return GraphExec(e), err
}

// GraphLaunch enqueues one replay of an executable graph on s. Kernel
// arguments are the values captured; buffers are read at replay time.
func (d *Driver) GraphLaunch(e GraphExec, s Stream) error {
	return d.check("cuGraphLaunch", call(d.f.graphLaunch, uintptr(e), uintptr(s)))
}

// GraphExecDestroy destroys an executable graph.
func (d *Driver) GraphExecDestroy(e GraphExec) error {
	return d.check("cuGraphExecDestroy", call(d.f.graphExecDestroy, uintptr(e)))
}

// GraphDestroy destroys a graph.
func (d *Driver) GraphDestroy(g Graph) error {
	return d.check("cuGraphDestroy", call(d.f.graphDestroy, uintptr(g)))
}

// Function attributes (CUfunction_attribute values) for FuncSetAttribute.
const (
	// FuncAttrMaxDynamicSharedSizeBytes is
	// CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES: a kernel may launch
	// with more than 48 KiB of dynamic shared memory only after this is
	// raised, up to AttrMaxSharedMemoryPerBlockOptin less its static
	// shared memory.
	FuncAttrMaxDynamicSharedSizeBytes = 8
	// FuncAttrPreferredSharedMemoryCarveout is
	// CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT, a percentage of
	// the L1/shared split.
	FuncAttrPreferredSharedMemoryCarveout = 9
)

// FuncSetAttribute sets an attribute of a kernel.
func (d *Driver) FuncSetAttribute(f Function, attr, value int) error {
	if err := d.check("cuFuncSetAttribute", call(d.f.funcSetAttribute, uintptr(f), uintptr(attr), uintptr(value))); err != nil {
		return fmt.Errorf("kernel attribute %d = %d: %w", attr, value, err)
	}
	return nil
}

// OccupancyMaxActiveBlocksPerMultiprocessor is how many blocks of f, of
// blockSize threads with dynamicSharedMem bytes of dynamic shared memory
// each, one multiprocessor holds at once
// (cuOccupancyMaxActiveBlocksPerMultiprocessor); 0 when none fits. Times
// DeviceInfo.Multiprocessors it is how many blocks of f the device runs
// in one wave. Dynamic shared memory above 48 KiB counts only after
// FuncSetAttribute raised FuncAttrMaxDynamicSharedSizeBytes.
func (d *Driver) OccupancyMaxActiveBlocksPerMultiprocessor(f Function, blockSize, dynamicSharedMem int) (int, error) {
	var n int32
	err := d.check("cuOccupancyMaxActiveBlocksPerMultiprocessor", call(d.f.occupancyMaxActiveBlocks,
		uintptr(unsafe.Pointer(&n)), uintptr(f), uintptr(blockSize), uintptr(dynamicSharedMem)))
	if err != nil {
		return 0, fmt.Errorf("occupancy of a kernel with %d threads and %d bytes of dynamic shared memory: %w", blockSize, dynamicSharedMem, err)
	}
	return int(n), nil
}
