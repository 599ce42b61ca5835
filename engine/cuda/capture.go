package cuda

import (
	"errors"
	"fmt"
	"unsafe"
)

// CUstreamCaptureStatus values.
const (
	captureStatusNone = 0 // CU_STREAM_CAPTURE_STATUS_NONE
)

// StreamIsCapturing reports whether s is recording into a graph
// (cuStreamIsCapturing). An invalidated capture counts as capturing: the
// stream refuses work until StreamEndCapture. For the legacy default stream
// the driver answers with an error (CUDA_ERROR_STREAM_CAPTURE_IMPLICIT)
// while another blocking stream captures, since work there would join it.
//
// The entry point is looked up on each call rather than in Open's table:
// the callers ask once per GEMM plan, not per launch.
func (d *Driver) StreamIsCapturing(s Stream) (bool, error) {
	fn, err := d.proc("cuStreamIsCapturing")
	if err != nil {
		return false, err
	}
	var status int32 // CUstreamCaptureStatus, a C enum
	if err := d.check("cuStreamIsCapturing", call(fn, uintptr(s), uintptr(unsafe.Pointer(&status)))); err != nil {
		return false, err
	}
	return status != captureStatusNone, nil
}

// proc resolves one driver entry point the way bind does: through
// cuGetProcAddress_v2 for the abiVersion ABI with legacy default-stream
// semantics, else by its exported name.
func (d *Driver) proc(name string, fallback ...string) (uintptr, error) {
	if getProc, _ := d.lib.sym("cuGetProcAddress_v2"); getProc != 0 {
		const legacyStream = 1 // CU_GET_PROC_ADDRESS_LEGACY_STREAM
		cname := cString(name)
		var pfn uintptr
		var status int32
		r := call(getProc, uintptr(unsafe.Pointer(&cname[0])), uintptr(unsafe.Pointer(&pfn)),
			abiVersion, legacyStream, uintptr(unsafe.Pointer(&status)))
		if uint32(r) == 0 && status == 0 && pfn != 0 {
			return pfn, nil
		}
	}
	var errs []error
	for _, n := range append(append([]string(nil), fallback...), name) {
		p, err := d.lib.sym(n)
		if err == nil {
			return p, nil
		}
		errs = append(errs, err)
	}
	return 0, fmt.Errorf("binding CUDA driver function %s: %w", name, errors.Join(errs...))
}
