package cuda

import (
	"errors"
	"runtime"
	"unsafe"
)

// bindOptional resolves the entry points Open does without; their users
// check for zero. cuLaunchKernelEx came with CUDA 11.8: on an older driver
// every kernel goes through cuLaunchKernel and none overlaps another.
func (d *Driver) bindOptional() {
	for _, e := range []struct {
		dst  *uintptr
		name string
	}{
		{&d.f.launchKernelEx, "cuLaunchKernelEx"},
	} {
		if p, err := d.proc(e.name); err == nil {
			*e.dst = p
		}
	}
}

// launchAttrProgrammaticStreamSerialization is
// CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION.
const launchAttrProgrammaticStreamSerialization = 6

// launchAttribute mirrors CUlaunchAttribute (cuda.h, CUDA 12 and 13): a
// 4-byte CUlaunchAttributeID, 4 bytes of padding, then the 64-byte
// CUlaunchAttributeValue union, whose members hold pointers and so align
// it to 8: 72 bytes in all.
type launchAttribute struct {
	_     [0]uint64 // the union's alignment
	id    uint32
	_     [4]byte
	value [16]int32 // every member used here is an int at the union's start
}

// launchConfig mirrors CUlaunchConfig on 64-bit targets: seven unsigned
// ints, hStream at offset 32 after 4 bytes of padding, the attribute
// array and its length; 56 bytes.
type launchConfig struct {
	gridDimX, gridDimY, gridDimZ    uint32
	blockDimX, blockDimY, blockDimZ uint32
	sharedMemBytes                  uint32
	_                               uint32
	hStream                         Stream
	attrs                           *launchAttribute
	numAttrs                        uint32
	_                               uint32
}

// launchEx is everything one cuLaunchKernelEx call reads besides the
// kernel's arguments, in one object so that a call allocates it once.
type launchEx struct {
	config launchConfig
	attr   launchAttribute
}

// CanOverlapLaunch reports whether LaunchEx with programmatic set
// overlaps kernels on a device like info: the driver has cuLaunchKernelEx
// and the device is of compute capability 9.0 or newer, where
// programmatic dependent launch and griddepcontrol exist.
func (d *Driver) CanOverlapLaunch(info DeviceInfo) bool {
	return d.f.launchKernelEx != 0 && info.Major >= 9
}

// LaunchEx enqueues a kernel on stream s as Launch does, through
// cuLaunchKernelEx. With programmatic set, the kernel may start while the
// kernel before it on s is still running (programmatic dependent launch,
// CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION): it must execute
// griddepcontrol.wait (cudaGridDependencySynchronize) before it touches
// memory the earlier kernel writes, and the earlier kernel may execute
// griddepcontrol.launch_dependents to let it start sooner. Stream capture
// records the overlap as a programmatic edge of the graph. Ask
// CanOverlapLaunch before setting programmatic; LaunchEx fails where the
// driver lacks cuLaunchKernelEx.
func (d *Driver) LaunchEx(f Function, grid, block Dim3, sharedMem uint32, s Stream, programmatic bool, args ...unsafe.Pointer) error {
	if d.f.launchKernelEx == 0 {
		return errors.New("cuLaunchKernelEx: not in this CUDA driver (CUDA 11.8 and newer have it)")
	}
	if len(args) == 0 {
		args = []unsafe.Pointer{nil} // as in Launch
	}
	l := &launchEx{config: launchConfig{
		gridDimX: grid.X, gridDimY: grid.Y, gridDimZ: grid.Z,
		blockDimX: block.X, blockDimY: block.Y, blockDimZ: block.Z,
		sharedMemBytes: sharedMem, hStream: s,
	}}
	if programmatic {
		l.attr.id = launchAttrProgrammaticStreamSerialization
		l.attr.value[0] = 1 // programmaticStreamSerializationAllowed
		l.config.attrs, l.config.numAttrs = &l.attr, 1
	}
	// As in Launch, the addresses are converted in call's argument list so
	// that l and args live on the heap, where they do not move, during
	// the call; l.config.attrs points into l.
	r := call(d.f.launchKernelEx, uintptr(unsafe.Pointer(&l.config)), uintptr(f), uintptr(unsafe.Pointer(&args[0])), 0)
	runtime.KeepAlive(l)
	runtime.KeepAlive(args)
	return d.check("cuLaunchKernelEx", r)
}
