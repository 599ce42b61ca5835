package cuda

import (
	"encoding/binary"
	"testing"
	"time"
	"unsafe"
)

const pdlSource = `
// Adds 1 to every element of p, which the launch before wrote too: a
// launch that overlaps the one before waits for it before touching p, then
// lets the next launch start while it works.
extern "C" __global__ void pdl_incr(int* p, int n) {
#if __CUDA_ARCH__ >= 900
	asm volatile("griddepcontrol.wait;" ::: "memory");
	asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
	for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) p[i] += 1;
}
`

// TestGPULaunchEx: kernels launched through cuLaunchKernelEx, overlapping
// the launch before them (programmatic) or not, mixed with cuLaunchKernel,
// on a stream and replayed from a captured graph, each add 1 to every
// element of a buffer the launch before them also wrote: with
// griddepcontrol.wait first, no increment is lost.
func TestGPULaunchEx(t *testing.T) {
	g := openGPU(t)
	overlap := g.d.CanOverlapLaunch(g.info)
	if want := g.info.Major >= 9; overlap != want {
		t.Fatalf("CanOverlapLaunch = %v on compute capability %d.%d with a CUDA 12+ driver", overlap, g.info.Major, g.info.Minor)
	}
	t.Logf("compute capability %d.%d: launches overlap: %v", g.info.Major, g.info.Minor, overlap)
	nv := openTestNVRTC(t)
	f := loadKernel(t, g, nv, pdlSource, "pdl.cu", "pdl_incr")
	s := newStream(t, g)
	const n = 1 << 24
	buf := alloc(t, g, 4*n)
	must(t, g.d.MemsetD32Async(buf, 0, n, s))
	nn := int32(n)
	grid, block := Dim3{uint32(2 * g.info.Multiprocessors), 1, 1}, Dim3{256, 1, 1}
	// cuLaunchKernel, then programmatic after it, after itself and after
	// a cuLaunchKernelEx launch that is not.
	kinds := []string{"plain", "overlap", "overlap", "ex", "overlap", "plain"}
	launch := func() {
		t.Helper()
		for _, k := range kinds {
			args := []unsafe.Pointer{unsafe.Pointer(&buf), unsafe.Pointer(&nn)}
			if k == "plain" {
				must(t, g.d.Launch(f, grid, block, 0, s, args...))
			} else {
				must(t, g.d.LaunchEx(f, grid, block, 0, s, k == "overlap" && overlap, args...))
			}
		}
	}
	check := func(want int32) {
		t.Helper()
		out := make([]byte, 4*n)
		must(t, g.d.MemcpyDtoHAsync(out, buf, s))
		must(t, g.d.StreamSynchronize(s))
		for i := range n {
			if got := int32(binary.LittleEndian.Uint32(out[4*i:])); got != want {
				t.Fatalf("p[%d] = %d; want %d", i, got, want)
			}
		}
	}
	launch()
	check(int32(len(kinds)))

	exec := captureGraph(t, g, s, launch)
	const replays = 5
	for range replays {
		must(t, g.d.GraphLaunch(exec, s))
	}
	check(int32(len(kinds) * (1 + replays)))

	if overlap {
		logOverlapGain(t, g, f, s, buf)
	}
}

// logOverlapGain logs what overlapping saves per launch of a short kernel:
// the same chain of launches with and without the programmatic attribute.
func logOverlapGain(t *testing.T, g *gpuEnv, f Function, s Stream, buf DevicePtr) {
	const n, launches = 1 << 16, 200
	nn := int32(n)
	grid, block := Dim3{uint32(g.info.Multiprocessors), 1, 1}, Dim3{256, 1, 1}
	per := func(programmatic bool) time.Duration {
		return gpuTime(t, g, s, launches, func(int) error {
			return g.d.LaunchEx(f, grid, block, 0, s, programmatic, unsafe.Pointer(&buf), unsafe.Pointer(&nn))
		})
	}
	per(false) // warm-up
	in, over := per(false), per(true)
	t.Logf("%d launches of a %d-element increment on %d blocks: %v per launch in order, %v overlapping", launches, n, grid.X, in, over)
}
