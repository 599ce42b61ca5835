package cuda

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unsafe"
)

func newStream(t testing.TB, g *gpuEnv) Stream {
	t.Helper()
	s, err := g.d.StreamCreate(StreamNonBlocking)
	must(t, err)
	t.Cleanup(func() { must(t, g.d.StreamDestroy(s)) })
	return s
}

func alloc(t testing.TB, g *gpuEnv, n uint64) DevicePtr {
	t.Helper()
	p, err := g.d.MemAlloc(n)
	must(t, err)
	t.Cleanup(func() { must(t, g.d.MemFree(p)) })
	return p
}

func pinned(t testing.TB, g *gpuEnv, n uint64) []byte {
	t.Helper()
	b, err := g.d.MemHostAlloc(n, 0)
	must(t, err)
	t.Cleanup(func() { must(t, g.d.MemFreeHost(b)) })
	return b
}

// loadImage loads a compiled image and returns the named kernel.
func loadImage(t testing.TB, g *gpuEnv, img []byte, kernel string) Function {
	t.Helper()
	m, err := g.d.ModuleLoadData(img)
	must(t, err)
	t.Cleanup(func() { must(t, g.d.ModuleUnload(m)) })
	f, err := g.d.ModuleFunction(m, kernel)
	must(t, err)
	return f
}

func TestGPUAsyncCopyRoundTrip(t *testing.T) {
	g := openGPU(t)
	s := newStream(t, g)
	const n = 1<<22 + 12 // a multiple of 4 for the 32-bit memset, not of anything larger
	src := pinned(t, g, n)
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range src {
		src[i] = byte(rng.Uint32())
	}
	a, b := alloc(t, g, n), alloc(t, g, n)
	viaPinned := pinned(t, g, n)
	viaPageable := make([]byte, n)

	must(t, g.d.MemcpyHtoDAsync(a, src, s))
	must(t, g.d.MemcpyDtoDAsync(b, a, n, s))
	must(t, g.d.MemsetD8Async(a, 0x5A, n, s)) // ordered after the copy out of a
	must(t, g.d.MemcpyDtoHAsync(viaPinned, b, s))
	must(t, g.d.MemcpyDtoHAsync(viaPageable, a, s))
	must(t, g.d.StreamSynchronize(s))
	if !bytes.Equal(viaPinned, src) {
		t.Fatal("host -> device -> device -> host (async, pinned) changed the data")
	}
	if !bytes.Equal(viaPageable, bytes.Repeat([]byte{0x5A}, n)) {
		t.Fatal("MemsetD8Async then MemcpyDtoHAsync into pageable memory: wrong bytes")
	}

	const word = 0x01020304
	must(t, g.d.MemsetD32Async(a, word, n/4, s))
	must(t, g.d.StreamSynchronize(s))
	must(t, g.d.MemcpyDtoD(b, a, n))
	must(t, g.d.MemcpyDtoH(viaPageable, b))
	for i := 0; i < n; i += 4 {
		if got := binary.LittleEndian.Uint32(viaPageable[i:]); got != word {
			t.Fatalf("word %d after MemsetD32Async + MemcpyDtoD = %#x; want %#x", i/4, got, word)
		}
	}
}

const incrSource = `
extern "C" __global__ void incr(int* p, int n) {
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n) p[i] += 1;
}
extern "C" __global__ void empty() {}
`

// A few launches captured once and replayed N times must run N times, and
// capturing must not run them.
func TestGPUGraphCaptureReplay(t *testing.T) {
	g := openGPU(t)
	nv := openTestNVRTC(t)
	f := loadKernel(t, g, nv, incrSource, "incr.cu", "incr")
	s := newStream(t, g)
	const n, perGraph, replays = 10000, 3, 10
	buf := alloc(t, g, 4*n)
	must(t, g.d.MemsetD32Async(buf, 0, n, s))
	must(t, g.d.StreamSynchronize(s))

	if err := g.d.StreamBeginCapture(0, CaptureModeThreadLocal); err == nil {
		t.Fatal("capturing the legacy default stream was accepted")
	}
	nn := int32(n)
	exec := captureGraph(t, g, s, func() {
		for i := 0; i < perGraph; i++ {
			must(t, g.d.Launch(f, Dim3{(n + 255) / 256, 1, 1}, Dim3{256, 1, 1}, 0, s, unsafe.Pointer(&buf), unsafe.Pointer(&nn)))
		}
	})

	out := make([]byte, 4*n)
	must(t, g.d.MemcpyDtoH(out, buf))
	if !bytes.Equal(out, make([]byte, 4*n)) {
		t.Fatal("capturing ran the kernels")
	}
	for i := 0; i < replays; i++ {
		must(t, g.d.GraphLaunch(exec, s))
	}
	must(t, g.d.StreamSynchronize(s))
	must(t, g.d.MemcpyDtoH(out, buf))
	for i := 0; i < n; i++ {
		if got := int32(binary.LittleEndian.Uint32(out[4*i:])); got != perGraph*replays {
			t.Fatalf("p[%d] = %d after %d replays of %d launches; want %d", i, got, replays, perGraph, perGraph*replays)
		}
	}
}

const abiHeaderV1 = `#pragma once
#include "longctx/abi/test_base.h"
#define LONGCTX_TEST_VALUE 42
`
const abiBaseHeader = `#pragma once
struct TestArgs { int* out; int n; };
`
const abiUserSource = `
#include "longctx/abi/test.h"
extern "C" __global__ void fill_abi(TestArgs args) {
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	if (i < args.n) args.out[i] = LONGCTX_TEST_VALUE + i;
}
`

// In-memory headers, one including the other, are found by NVRTC; a struct
// declared there is passed by value; editing a header misses the cache.
func TestGPUCompileWithInMemoryHeaders(t *testing.T) {
	g := openGPU(t)
	nv := openTestNVRTC(t)
	c := &Cache{Dir: t.TempDir()}
	headers := map[string]string{"longctx/abi/test.h": abiHeaderV1, "longctx/abi/test_base.h": abiBaseHeader}

	if _, _, err := nv.Compile(abiUserSource, "abi_user.cu", CompileOptions{Arch: g.info.Arch()}); err == nil ||
		!strings.Contains(err.Error(), "longctx/abi/test.h") {
		t.Fatalf("compiling without the headers: err = %v; want a missing-include error naming the header", err)
	}

	const n = 1000
	out := alloc(t, g, 4*n)
	run := func(img []byte, want int32) {
		t.Helper()
		f := loadImage(t, g, img, "fill_abi")
		// struct TestArgs { int* out; int n; } is 16 bytes with padding.
		args := struct {
			out uint64
			n   int32
			_   int32
		}{out: uint64(out), n: n}
		must(t, g.d.Launch(f, Dim3{(n + 127) / 128, 1, 1}, Dim3{128, 1, 1}, 0, 0, unsafe.Pointer(&args)))
		must(t, g.d.Synchronize())
		host := make([]byte, 4*n)
		must(t, g.d.MemcpyDtoH(host, out))
		for i := 0; i < n; i++ {
			if got := int32(binary.LittleEndian.Uint32(host[4*i:])); got != want+int32(i) {
				t.Fatalf("out[%d] = %d; want %d", i, got, want+int32(i))
			}
		}
	}

	opts := CompileOptions{Arch: g.info.Arch(), Headers: headers}
	img, hit, err := CompileCached(nv, c, abiUserSource, "abi_user.cu", opts)
	must(t, err)
	if hit {
		t.Fatal("first compile was a cache hit")
	}
	run(img, 42)
	if _, hit, err = CompileCached(nv, c, abiUserSource, "abi_user.cu", opts); err != nil || !hit {
		t.Fatalf("second compile: hit=%v err=%v; want a hit", hit, err)
	}

	edited := map[string]string{"longctx/abi/test.h": strings.Replace(abiHeaderV1, "42", "43", 1), "longctx/abi/test_base.h": abiBaseHeader}
	img, hit, err = CompileCached(nv, c, abiUserSource, "abi_user.cu", CompileOptions{Arch: g.info.Arch(), Headers: edited})
	must(t, err)
	if hit {
		t.Fatal("editing a header still hit the cache")
	}
	run(img, 43)
}

const bigSharedSource = `
extern "C" __global__ void big_shared(int* out, int n) {
	extern __shared__ int sm[];
	for (int i = threadIdx.x; i < n; i += blockDim.x) sm[i] = i;
	__syncthreads();
	if (threadIdx.x == 0) {
		int s = 0;
		for (int i = 0; i < n; i++) s += sm[i];
		out[0] = s;
	}
}
`

// More than 48 KiB of dynamic shared memory needs the attribute raised.
func TestGPUFuncSetAttributeSharedMemory(t *testing.T) {
	g := openGPU(t)
	nv := openTestNVRTC(t)
	f := loadKernel(t, g, nv, bigSharedSource, "big_shared.cu", "big_shared")
	dev, err := g.d.Device(0)
	must(t, err)
	optin, err := g.d.Attribute(dev, AttrMaxSharedMemoryPerBlockOptin)
	must(t, err)
	const shm = 96 << 10
	if optin < shm {
		t.Skipf("device allows %d bytes of shared memory per block; the test needs %d", optin, shm)
	}
	out := alloc(t, g, 4)
	n := int32(shm / 4)
	launch := func() error {
		return g.d.Launch(f, Dim3{1, 1, 1}, Dim3{256, 1, 1}, shm, 0, unsafe.Pointer(&out), unsafe.Pointer(&n))
	}
	if err := launch(); err == nil {
		must(t, g.d.Synchronize())
		t.Fatal("launch with 96 KiB of dynamic shared memory succeeded before the attribute was raised")
	}
	must(t, g.d.FuncSetAttribute(f, FuncAttrMaxDynamicSharedSizeBytes, shm))
	must(t, launch())
	must(t, g.d.Synchronize())
	host := make([]byte, 4)
	must(t, g.d.MemcpyDtoH(host, out))
	if got, want := int32(binary.LittleEndian.Uint32(host)), n*(n-1)/2; got != want {
		t.Fatalf("sum over shared memory = %d; want %d", got, want)
	}
	t.Logf("optin shared memory per block: %d bytes", optin)
}

// The occupancy query answers blocks per SM that fit the thread limit
// and, once the attribute is raised, more than 48 KiB of dynamic shared
// memory; for an impossible block size it answers none.
func TestGPUOccupancy(t *testing.T) {
	g := openGPU(t)
	nv := openTestNVRTC(t)
	empty := loadKernel(t, g, nv, incrSource, "incr.cu", "empty")
	small, err := g.d.OccupancyMaxActiveBlocksPerMultiprocessor(empty, 32, 0)
	must(t, err)
	large, err := g.d.OccupancyMaxActiveBlocksPerMultiprocessor(empty, 1024, 0)
	must(t, err)
	// Every architecture since Volta holds 1024 to 2048 threads per SM.
	if large < 1 || large*1024 > 2048 || small < large {
		t.Errorf("blocks per SM: %d of 32 threads, %d of 1024 threads", small, large)
	}
	// A block larger than any SM holds: none fits (the driver answers 0
	// rather than an error).
	if n, err := g.d.OccupancyMaxActiveBlocksPerMultiprocessor(empty, 4096, 0); n != 0 || (err != nil && !strings.Contains(err.Error(), "cuOccupancyMaxActiveBlocksPerMultiprocessor")) {
		t.Errorf("4096-thread blocks: %d per SM, %v", n, err)
	}
	f := loadKernel(t, g, nv, bigSharedSource, "big_shared.cu", "big_shared")
	const shm = 96 << 10
	dev, err := g.d.Device(0)
	must(t, err)
	if optin, err := g.d.Attribute(dev, AttrMaxSharedMemoryPerBlockOptin); err != nil || optin < shm {
		t.Skipf("device allows %d bytes of shared memory per block (%v); the test needs %d", optin, err, shm)
	}
	must(t, g.d.FuncSetAttribute(f, FuncAttrMaxDynamicSharedSizeBytes, shm))
	big, err := g.d.OccupancyMaxActiveBlocksPerMultiprocessor(f, 256, shm)
	must(t, err)
	if big < 1 || big > 2 { // no SM has 288 KiB of shared memory yet
		t.Errorf("blocks per SM with %d bytes of shared memory: %d", shm, big)
	}
	t.Logf("%d SMs; blocks per SM: %d of 32 threads, %d of 1024, %d of 256 threads with 96 KiB", g.info.Multiprocessors, small, large, big)
}

// BenchmarkLaunchOverhead compares launching 1000 empty kernels one by one
// with replaying them as one captured graph; the metric is µs per kernel.
func BenchmarkLaunchOverhead(b *testing.B) {
	const launches = 1000
	one := Dim3{1, 1, 1}
	b.Run("direct", func(b *testing.B) {
		g := openGPU(b)
		f := loadKernel(b, g, openTestNVRTC(b), incrSource, "incr.cu", "empty")
		s := newStream(b, g)
		b.ResetTimer()
		start := time.Now()
		for i := 0; i < b.N; i++ {
			for j := 0; j < launches; j++ {
				if err := g.d.Launch(f, one, one, 0, s); err != nil {
					b.Fatal(err)
				}
			}
		}
		must(b, g.d.StreamSynchronize(s))
		b.ReportMetric(float64(time.Since(start).Nanoseconds())/1e3/float64(b.N*launches), "us/launch")
	})
	b.Run("graph", func(b *testing.B) {
		g := openGPU(b)
		f := loadKernel(b, g, openTestNVRTC(b), incrSource, "incr.cu", "empty")
		s := newStream(b, g)
		exec := captureGraph(b, g, s, func() {
			for j := 0; j < launches; j++ {
				must(b, g.d.Launch(f, one, one, 0, s))
			}
		})
		must(b, g.d.GraphLaunch(exec, s)) // the first launch uploads the graph
		must(b, g.d.StreamSynchronize(s))
		b.ResetTimer()
		start := time.Now()
		for i := 0; i < b.N; i++ {
			if err := g.d.GraphLaunch(exec, s); err != nil {
				b.Fatal(err)
			}
		}
		must(b, g.d.StreamSynchronize(s))
		b.ReportMetric(float64(time.Since(start).Nanoseconds())/1e3/float64(b.N*launches), "us/launch")
	})
}
