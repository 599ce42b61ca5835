package cuda

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// gpuEnv opens the driver and binds device 0's primary context to the test's
// OS thread. GPU tests run only with LONGCTX_GPU=1.
type gpuEnv struct {
	d    *Driver
	info DeviceInfo
}

// captureGraph records the work enqueue puts on s into an executable
// graph, destroyed when the test ends (the graph itself at once: the
// executable one keeps its own copy).
func captureGraph(tb testing.TB, g *gpuEnv, s Stream, enqueue func()) GraphExec {
	tb.Helper()
	must(tb, g.d.StreamBeginCapture(s, CaptureModeThreadLocal))
	enqueue()
	graph, err := g.d.StreamEndCapture(s)
	must(tb, err)
	exec, err := g.d.GraphInstantiate(graph)
	must(tb, err)
	must(tb, g.d.GraphDestroy(graph))
	tb.Cleanup(func() { must(tb, g.d.GraphExecDestroy(exec)) })
	return exec
}

func openGPU(t testing.TB) *gpuEnv {
	t.Helper()
	if os.Getenv("LONGCTX_GPU") != "1" {
		t.Skip("GPU test: set LONGCTX_GPU=1 on a machine with an NVIDIA GPU to run it")
	}
	d, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	info, err := d.DeviceInfo(0)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := d.Device(0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := d.RetainPrimaryContext(dev)
	if err != nil {
		t.Fatal(err)
	}
	unbind, err := d.Bind(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unbind()
		if err := d.ReleasePrimaryContext(dev); err != nil {
			t.Error(err)
		}
	})
	return &gpuEnv{d: d, info: info}
}

func openTestNVRTC(t testing.TB) *NVRTC {
	t.Helper()
	n, err := OpenNVRTC()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	t.Logf("NVRTC %s at %s, include dirs %q", n.VersionString(), n.Path(), n.IncludeDirs())
	return n
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestGPUDevices(t *testing.T) {
	g := openGPU(t)
	v, err := g.d.DriverVersion()
	must(t, err)
	n, err := g.d.DeviceCount()
	must(t, err)
	if n < 1 {
		t.Fatalf("DeviceCount = %d", n)
	}
	t.Logf("driver %s, CUDA %d, %d device(s)", g.d.Path(), v, n)
	for i := 0; i < n; i++ {
		info, err := g.d.DeviceInfo(i)
		must(t, err)
		if info.Name == "" || info.TotalMemory == 0 || info.Major == 0 || info.Multiprocessors == 0 || !strings.HasPrefix(info.UUID, "GPU-") {
			t.Errorf("device %d: implausible %+v", i, info)
		}
		t.Logf("device %d: %+v arch %s", i, info, info.Arch())
	}
}

func TestGPUMemoryRoundTrip(t *testing.T) {
	g := openGPU(t)
	const n = 64<<20 + 7 // odd size: no alignment luck
	src := make([]byte, n)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range src {
		src[i] = byte(rng.Uint32())
	}
	p, err := g.d.MemAlloc(n)
	must(t, err)
	defer func() { must(t, g.d.MemFree(p)) }()
	must(t, g.d.MemcpyHtoD(p, src))
	dst := make([]byte, n)
	must(t, g.d.MemcpyDtoH(dst, p))
	if !bytes.Equal(src, dst) {
		t.Fatal("device round trip changed the data")
	}
	must(t, g.d.MemsetD8(p, 0xAB, n))
	must(t, g.d.MemcpyDtoH(dst, p))
	if !bytes.Equal(dst, bytes.Repeat([]byte{0xAB}, n)) {
		t.Fatal("MemsetD8 did not set every byte")
	}
}

func TestGPUMemGetInfo(t *testing.T) {
	g := openGPU(t)
	const size = 4 << 30
	free0, total, err := g.d.MemGetInfo()
	must(t, err)
	if free0 > total || total != g.info.TotalMemory {
		t.Fatalf("MemGetInfo free %d total %d; device total %d", free0, total, g.info.TotalMemory)
	}
	p, err := g.d.MemAlloc(size)
	must(t, err)
	free1, _, err := g.d.MemGetInfo()
	must(t, err)
	must(t, g.d.MemFree(p))
	free2, _, err := g.d.MemGetInfo()
	must(t, err)
	t.Logf("free: before %d, with 4 GiB allocated %d, after free %d", free0, free1, free2)
	if free0-free1 < size {
		t.Errorf("free memory fell by %d bytes for a %d-byte allocation", free0-free1, size)
	}
	if free2-free1 < size {
		t.Errorf("free memory rose by %d bytes after freeing %d", free2-free1, size)
	}
	_, err = g.d.MemAlloc(total * 2)
	if !IsOutOfMemory(err) {
		t.Errorf("allocating twice the device memory: err = %v; want out of memory", err)
	}
}

const axpbSource = `
extern "C" __global__ void axpb(float* y, const float* x, float a, float b, int n) {
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	// Unfused multiply and add, so the Go reference can round the same way.
	if (i < n) y[i] = __fadd_rn(__fmul_rn(a, x[i]), b);
}
extern "C" __global__ void empty() {}
`

const bf16Source = `
#include <cuda_bf16.h>
extern "C" __global__ void round_bf16(float* y, const float* x, int n) {
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n) y[i] = __bfloat162float(__float2bfloat16_rn(x[i]));
}
`

func floatsToBytes(f []float32) []byte {
	b := make([]byte, 4*len(f))
	for i, v := range f {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

func bytesToFloats(b []byte) []float32 {
	f := make([]float32, len(b)/4)
	for i := range f {
		f[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return f
}

// roundBF16 rounds a finite float32 to the nearest bfloat16, ties to even.
func roundBF16(v float32) float32 {
	b := math.Float32bits(v)
	b += 0x7FFF + (b>>16)&1
	return math.Float32frombits(b &^ 0xFFFF)
}

func loadKernel(t testing.TB, g *gpuEnv, n *NVRTC, src, file, kernel string) Function {
	t.Helper()
	start := time.Now()
	img, log, err := n.Compile(src, file, CompileOptions{Arch: g.info.Arch()})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("compiled %s for %s in %v (%d-byte cubin)%s", file, g.info.Arch(), time.Since(start), len(img), log)
	m, err := g.d.ModuleLoadData(img)
	must(t, err)
	t.Cleanup(func() { must(t, g.d.ModuleUnload(m)) })
	f, err := g.d.ModuleFunction(m, kernel)
	must(t, err)
	return f
}

func TestGPUCompileAndLaunch(t *testing.T) {
	g := openGPU(t)
	nv := openTestNVRTC(t)
	f := loadKernel(t, g, nv, axpbSource, "axpb.cu", "axpb")

	const n = 1<<24 + 3
	rng := rand.New(rand.NewPCG(3, 4))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	a, b := float32(1.7), float32(-0.3)
	dx, err := g.d.MemAlloc(4 * n)
	must(t, err)
	defer g.d.MemFree(dx)
	dy, err := g.d.MemAlloc(4 * n)
	must(t, err)
	defer g.d.MemFree(dy)
	must(t, g.d.MemcpyHtoD(dx, floatsToBytes(x)))

	s, err := g.d.StreamCreate(StreamNonBlocking)
	must(t, err)
	defer g.d.StreamDestroy(s)

	nn := int32(n)
	grid, block := Dim3{(n + 255) / 256, 1, 1}, Dim3{256, 1, 1}
	launch := func(int) error {
		return g.d.Launch(f, grid, block, 0, s, unsafe.Pointer(&dy), unsafe.Pointer(&dx), unsafe.Pointer(&a), unsafe.Pointer(&b), unsafe.Pointer(&nn))
	}
	must(t, launch(0)) // warm-up
	per := gpuTime(t, g, s, 20, launch)
	if per <= 0 {
		t.Fatalf("elapsed %v per launch", per)
	}
	t.Logf("axpb over %d floats: %v per launch, %.0f GB/s (read+write)", n, per, 8*float64(n)/per.Seconds()/1e9)
	must(t, g.d.StreamSynchronize(s))

	out := make([]byte, 4*n)
	must(t, g.d.MemcpyDtoH(out, dy))
	y := bytesToFloats(out)
	for i := range x {
		want := float32(a*x[i]) + b // the conversion forbids fusing into an FMA
		if y[i] != want {
			t.Fatalf("y[%d] = %v; want %v (x = %v)", i, y[i], want, x[i])
		}
	}
}

func TestGPUCompileWithCUDAHeader(t *testing.T) {
	g := openGPU(t)
	nv := openTestNVRTC(t)
	f := loadKernel(t, g, nv, bf16Source, "round_bf16.cu", "round_bf16")
	const n = 1<<20 + 1
	rng := rand.New(rand.NewPCG(5, 6))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * math.Pow(2, float64(rng.IntN(40)-20)))
	}
	x[0], x[1] = 1+1.0/256, 1+3.0/256 // exact ties: to even rounds down, then up
	dx, err := g.d.MemAlloc(4 * n)
	must(t, err)
	defer g.d.MemFree(dx)
	dy, err := g.d.MemAlloc(4 * n)
	must(t, err)
	defer g.d.MemFree(dy)
	must(t, g.d.MemcpyHtoD(dx, floatsToBytes(x)))
	nn := int32(n)
	must(t, g.d.Launch(f, Dim3{(n + 255) / 256, 1, 1}, Dim3{256, 1, 1}, 0, 0, unsafe.Pointer(&dy), unsafe.Pointer(&dx), unsafe.Pointer(&nn)))
	must(t, g.d.Synchronize())
	out := make([]byte, 4*n)
	must(t, g.d.MemcpyDtoH(out, dy))
	y := bytesToFloats(out)
	for i := range x {
		if want := roundBF16(x[i]); y[i] != want {
			t.Fatalf("bf16(%v) = %v; want %v", x[i], y[i], want)
		}
	}
}

func TestGPUCompileError(t *testing.T) {
	g := openGPU(t)
	nv := openTestNVRTC(t)
	_, log, err := nv.Compile("extern \"C\" __global__ void broken() { undeclared_thing = 1; }", "broken.cu", CompileOptions{Arch: g.info.Arch()})
	if err == nil {
		t.Fatal("broken source compiled")
	}
	if !strings.Contains(err.Error(), "broken.cu") || !strings.Contains(log, "undeclared_thing") || !strings.Contains(err.Error(), "undeclared_thing") {
		t.Fatalf("error does not carry the file name and NVRTC log:\nerr: %v\nlog: %s", err, log)
	}
}

func TestGPUPTXAndCache(t *testing.T) {
	g := openGPU(t)
	nv := openTestNVRTC(t)
	c := &Cache{Dir: t.TempDir()}
	arch := "compute_" + strings.TrimPrefix(g.info.Arch(), "sm_")
	opts := CompileOptions{Arch: arch, Defines: map[string]string{"UNUSED": "1"}}
	start := time.Now()
	img, hit, err := CompileCached(nv, c, axpbSource, "axpb.cu", opts)
	must(t, err)
	cold := time.Since(start)
	if hit || !bytes.Contains(img, []byte(".entry axpb")) {
		t.Fatalf("first compile: hit=%v, PTX has no axpb entry", hit)
	}
	start = time.Now()
	img2, hit, err := CompileCached(nv, c, axpbSource, "axpb.cu", opts)
	must(t, err)
	t.Logf("PTX for %s: compile %v, cache hit %v", arch, cold, time.Since(start))
	if !hit || !bytes.Equal(img, img2) {
		t.Fatalf("second compile: hit=%v, same image %v", hit, bytes.Equal(img, img2))
	}
	m, err := g.d.ModuleLoadData(img) // PTX is NUL-terminated, as cuModuleLoadData wants
	must(t, err)
	defer g.d.ModuleUnload(m)
	_, err = g.d.ModuleFunction(m, "axpb")
	must(t, err)
	if _, err := g.d.ModuleFunction(m, "no_such_kernel"); err == nil || !strings.Contains(err.Error(), "CUDA_ERROR_NOT_FOUND") {
		t.Fatalf("missing kernel: err = %v; want CUDA_ERROR_NOT_FOUND", err)
	}
}

// TestGPULaunchOverhead measures what one launch costs on the host through
// purego: an empty kernel enqueued 10,000 times, and a trivial driver call
// for the bare call path.
func TestGPULaunchOverhead(t *testing.T) {
	g := openGPU(t)
	nv := openTestNVRTC(t)
	f := loadKernel(t, g, nv, axpbSource, "axpb.cu", "empty")
	s, err := g.d.StreamCreate(StreamNonBlocking)
	must(t, err)
	defer g.d.StreamDestroy(s)
	one := Dim3{1, 1, 1}
	for i := 0; i < 100; i++ {
		must(t, g.d.Launch(f, one, one, 0, s))
	}
	must(t, g.d.StreamSynchronize(s))

	const launches = 10000
	start := time.Now()
	for i := 0; i < launches; i++ {
		if err := g.d.Launch(f, one, one, 0, s); err != nil {
			t.Fatal(err)
		}
	}
	enqueue := time.Since(start)
	must(t, g.d.StreamSynchronize(s))
	total := time.Since(start)

	const calls = 100000
	start = time.Now()
	for i := 0; i < calls; i++ {
		if _, err := g.d.DriverVersion(); err != nil {
			t.Fatal(err)
		}
	}
	call := time.Since(start)
	t.Logf("empty kernel: %.2f µs per launch enqueued, %.2f µs per launch until done; cuDriverGetVersion through purego: %.3f µs per call",
		float64(enqueue.Microseconds())/launches, float64(total.Microseconds())/launches, float64(call.Nanoseconds())/calls/1e3)
}

// gpuTime is the GPU time per call of op(i), i = 0 .. n-1, enqueued on s
// between two events once s is idle. A benchmark's timer runs around the
// enqueued calls only.
func gpuTime(tb testing.TB, g *gpuEnv, s Stream, n int, op func(i int) error) time.Duration {
	tb.Helper()
	start, err := g.d.EventCreate(0)
	must(tb, err)
	defer g.d.EventDestroy(start)
	end, err := g.d.EventCreate(0)
	must(tb, err)
	defer g.d.EventDestroy(end)
	must(tb, g.d.StreamSynchronize(s))

	if b, ok := tb.(*testing.B); ok {
		b.ResetTimer()
		defer b.StopTimer()
	}
	must(tb, g.d.EventRecord(start, s))
	for i := 0; i < n; i++ {
		if err := op(i); err != nil {
			tb.Fatal(err)
		}
	}
	must(tb, g.d.EventRecord(end, s))
	must(tb, g.d.EventSynchronize(end))
	el, err := g.d.EventElapsed(start, end)
	must(tb, err)
	return el / time.Duration(n)
}
