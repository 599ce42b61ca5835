// Package gputest is the common ground of GPU tests for kernels launched
// through kernelrun: it opens device 0 (only with LONGCTX_GPU=1, else the
// test is skipped), compiles a plugin's kernels for it, and moves bf16,
// fp32 and int32 data to and from device buffers that are freed when the
// test ends.
package gputest

import (
	"encoding/binary"
	"math"
	"os"
	"testing"

	"github.com/longctx/longctx/engine/cuda"
	"github.com/longctx/longctx/engine/kernelrun"
	"github.com/longctx/longctx/engine/weights"
	"github.com/longctx/longctx/plugins/sdk"
)

// Env is an opened GPU: the driver with device 0's primary context bound
// to the test's OS thread, NVRTC, a kernel cache and a stream.
type Env struct {
	TB     testing.TB
	D      *cuda.Driver
	Info   cuda.DeviceInfo
	NVRTC  *cuda.NVRTC
	Cache  *cuda.Cache
	Stream cuda.Stream
	ctx    cuda.Context
}

// Enabled reports whether GPU tests were asked for (LONGCTX_GPU=1).
func Enabled() bool { return os.Getenv("LONGCTX_GPU") == "1" }

// Open opens the GPU or skips tb. The kernel cache is a fresh folder unless
// LONGCTX_KERNEL_CACHE names one.
func Open(tb testing.TB) *Env {
	tb.Helper()
	if !Enabled() {
		tb.Skip("GPU test: set LONGCTX_GPU=1 on a machine with an NVIDIA GPU to run it")
	}
	d, err := cuda.Open()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(d.Close)
	info, err := d.DeviceInfo(0)
	if err != nil {
		tb.Fatal(err)
	}
	dev, err := d.Device(0)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, err := d.RetainPrimaryContext(dev)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := d.ReleasePrimaryContext(dev); err != nil {
			tb.Error(err)
		}
	})
	e := &Env{TB: tb, D: d, Info: info, ctx: ctx}
	e.Bind(tb)
	if e.NVRTC, err = cuda.OpenNVRTC(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(e.NVRTC.Close)
	dir := os.Getenv("LONGCTX_KERNEL_CACHE")
	if dir == "" {
		dir = tb.TempDir()
	}
	e.Cache = &cuda.Cache{Dir: dir}
	if e.Stream, err = d.StreamCreate(cuda.StreamNonBlocking); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := d.StreamDestroy(e.Stream); err != nil {
			tb.Error(err)
		}
	})
	return e
}

// Bind makes the context current on the calling goroutine's OS thread
// until tb ends.
func (e *Env) Bind(tb testing.TB) {
	tb.Helper()
	unbind, err := e.D.Bind(e.ctx)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(unbind)
}

// For is e for a subtest or sub-benchmark, which runs on a goroutine of
// its own: the context is bound there, and failures and cleanups are tb's.
func (e *Env) For(tb testing.TB) *Env {
	tb.Helper()
	sub := *e
	sub.TB = tb
	sub.Bind(tb)
	return &sub
}

// Device is the sdk.Device a plugin prepares for: this GPU, in bf16.
func (e *Env) Device() sdk.Device {
	return sdk.Device{Kind: "cuda", Arch: e.Info.Arch(), DType: "bf16", MemoryBytes: int64(e.Info.TotalMemory)}
}

// Role compiles and loads the kernels of one role from a plugin's plan,
// for bf16; it fails the test when the plan has none.
func (e *Env) Role(plugin string, kernels []sdk.Kernel, role string) *kernelrun.Role {
	e.TB.Helper()
	r, err := kernelrun.NewRoleOf(e.D, kernels, role, kernelrun.Config{
		Plugin: plugin, Arch: e.Info.Arch(), DType: "bf16", Compile: kernelrun.NVRTC(e.NVRTC, e.Cache),
		Multiprocessors: e.Info.Multiprocessors, OverlapLaunch: e.D.CanOverlapLaunch(e.Info),
	})
	if err != nil {
		e.TB.Fatalf("plugin %s: %v", plugin, err)
	}
	e.TB.Cleanup(func() {
		if err := r.Close(); err != nil {
			e.TB.Error(err)
		}
	})
	return r
}

// Alloc allocates n bytes (at least 1) freed when the test ends.
func (e *Env) Alloc(n int64) cuda.DevicePtr {
	e.TB.Helper()
	p, err := e.D.MemAlloc(uint64(max(n, 1)))
	if err != nil {
		e.TB.Fatal(err)
	}
	e.TB.Cleanup(func() {
		if err := e.D.MemFree(p); err != nil {
			e.TB.Error(err)
		}
	})
	return p
}

// Copies and fills go on the test's stream, which does not synchronise
// with the legacy default stream, so that they are ordered with the
// kernels launched there.

// Upload copies b into a new buffer.
func (e *Env) Upload(b []byte) cuda.DevicePtr {
	e.TB.Helper()
	p := e.Alloc(int64(len(b)))
	e.Write(p, b)
	return p
}

// Write copies b to p.
func (e *Env) Write(p cuda.DevicePtr, b []byte) {
	e.TB.Helper()
	if err := e.D.MemcpyHtoDAsync(p, b, e.Stream); err != nil {
		e.TB.Fatal(err)
	}
	e.Sync() // b may change once Write returns
}

// Download copies n bytes from p once the stream's work is done.
func (e *Env) Download(p cuda.DevicePtr, n int) []byte {
	e.TB.Helper()
	b := make([]byte, n)
	if err := e.D.MemcpyDtoHAsync(b, p, e.Stream); err != nil {
		e.TB.Fatal(err)
	}
	e.Sync()
	return b
}

// Poison fills n bytes at p with 0xFF: NaN as bf16 and fp32, so an element
// a kernel should have written and did not shows up.
func (e *Env) Poison(p cuda.DevicePtr, n int64) {
	e.TB.Helper()
	if err := e.D.MemsetD8Async(p, 0xFF, uint64(n), e.Stream); err != nil {
		e.TB.Fatal(err)
	}
}

// Graph captures what enqueue puts on the stream into a CUDA graph and
// returns it instantiated, destroyed when the test ends.
func (e *Env) Graph(enqueue func() error) cuda.GraphExec {
	e.TB.Helper()
	if err := e.D.StreamBeginCapture(e.Stream, cuda.CaptureModeThreadLocal); err != nil {
		e.TB.Fatal(err)
	}
	if err := enqueue(); err != nil {
		e.D.StreamEndCapture(e.Stream)
		e.TB.Fatal(err)
	}
	g, err := e.D.StreamEndCapture(e.Stream)
	if err != nil {
		e.TB.Fatal(err)
	}
	e.TB.Cleanup(func() { e.D.GraphDestroy(g) })
	exec, err := e.D.GraphInstantiate(g)
	if err != nil {
		e.TB.Fatal(err)
	}
	e.TB.Cleanup(func() { e.D.GraphExecDestroy(exec) })
	return exec
}

// Sync waits for the stream.
func (e *Env) Sync() {
	e.TB.Helper()
	if err := e.D.StreamSynchronize(e.Stream); err != nil {
		e.TB.Fatal(err)
	}
}

// RoundBF16 rounds to the nearest bf16 (ties to even), kept as fp32.
func RoundBF16(x float32) float32 {
	return math.Float32frombits(uint32(weights.Float32ToBF16(x)) << 16)
}

// BF16 encodes values as little-endian bf16, rounding to nearest even.
func BF16(x []float32) []byte {
	b := make([]byte, 2*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint16(b[2*i:], weights.Float32ToBF16(v))
	}
	return b
}

// FromBF16 decodes little-endian bf16.
func FromBF16(b []byte) []float32 {
	out := make([]float32, len(b)/2)
	weights.BF16ToFloat32(out, b)
	return out
}

// F32 encodes little-endian fp32.
func F32(x []float32) []byte {
	b := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

// FromF32 decodes little-endian fp32.
func FromF32(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// I32 encodes little-endian int32.
func I32(x []int32) []byte {
	b := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(v))
	}
	return b
}

// U64 encodes little-endian uint64 (device pointer arrays).
func U64(x []uint64) []byte {
	b := make([]byte, 8*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint64(b[8*i:], v)
	}
	return b
}
