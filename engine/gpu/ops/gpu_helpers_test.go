package ops

import (
	"encoding/binary"
	"math"
	"os"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/longctx/longctx/engine/cuda"
)

// gpuEnv is device 0 with kernels/core loaded. GPU tests run only with
// LONGCTX_GPU=1.
type gpuEnv struct {
	d    *cuda.Driver
	ctx  cuda.Context
	info cuda.DeviceInfo
	k    *Kernels
	libm cuda.Function
}

// libmSource evaluates the device's fp32 functions that are not correctly
// rounded, so references can use the very values the kernels see.
const libmSource = `
extern "C" __global__ void libm_eval(const float *x, float *y, int n, int fn) {
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= n) return;
	float v = x[i];
	y[i] = fn == 0 ? rsqrtf(v) : fn == 1 ? expf(v) : fn == 2 ? cosf(v) : sinf(v);
}
`

func openGPU(tb testing.TB) *gpuEnv {
	tb.Helper()
	if os.Getenv("LONGCTX_GPU") != "1" {
		tb.Skip("set LONGCTX_GPU=1 to run GPU tests")
	}
	d, err := cuda.Open()
	must(tb, err)
	tb.Cleanup(d.Close)
	info, err := d.DeviceInfo(0)
	must(tb, err)
	dev, err := d.Device(0)
	must(tb, err)
	ctx, err := d.RetainPrimaryContext(dev)
	must(tb, err)
	unbind, err := d.Bind(ctx)
	must(tb, err)
	tb.Cleanup(func() {
		unbind()
		if err := d.ReleasePrimaryContext(dev); err != nil {
			tb.Error(err)
		}
	})
	nv, err := cuda.OpenNVRTC()
	must(tb, err)
	tb.Cleanup(nv.Close)
	start := time.Now()
	k, err := Load(d, nv, &cuda.Cache{Dir: tb.TempDir()}, info.Arch())
	must(tb, err)
	tb.Logf("kernels/core compiled for %s (%s, NVRTC %s) in %v", info.Arch(), info.Name, nv.VersionString(), time.Since(start))
	tb.Cleanup(func() { must(tb, k.Close()) })
	img, _, err := nv.Compile(libmSource, "libm.cu", cuda.CompileOptions{Arch: info.Arch()})
	must(tb, err)
	mod, err := d.ModuleLoadData(img)
	must(tb, err)
	tb.Cleanup(func() { must(tb, d.ModuleUnload(mod)) })
	f, err := d.ModuleFunction(mod, "libm_eval")
	must(tb, err)
	return &gpuEnv{d: d, ctx: ctx, info: info, k: k, libm: f}
}

// run runs a subtest with the context bound to the subtest's own thread.
func (g *gpuEnv) run(t *testing.T, name string, f func(t *testing.T)) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		unbind, err := g.d.Bind(g.ctx)
		must(t, err)
		t.Cleanup(unbind)
		f(t)
	})
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// alloc returns n bytes of device memory filled with 0xFF, freed when the
// test ends.
func (g *gpuEnv) alloc(tb testing.TB, n int) cuda.DevicePtr {
	tb.Helper()
	p, err := g.d.MemAlloc(uint64(max(n, 1)))
	must(tb, err)
	tb.Cleanup(func() { must(tb, g.d.MemFree(p)) })
	must(tb, g.d.MemsetD8(p, 0xff, uint64(max(n, 1))))
	return p
}

// put copies b into new device memory with room for extra poisoned bytes.
func (g *gpuEnv) put(tb testing.TB, b []byte, extra int) cuda.DevicePtr {
	tb.Helper()
	p := g.alloc(tb, len(b)+extra)
	if len(b) > 0 {
		must(tb, g.d.MemcpyHtoD(p, b))
	}
	return p
}

// get waits for the device and copies n bytes back.
func (g *gpuEnv) get(tb testing.TB, p cuda.DevicePtr, n int) []byte {
	tb.Helper()
	must(tb, g.d.Synchronize())
	b := make([]byte, n)
	if n > 0 {
		must(tb, g.d.MemcpyDtoH(b, p))
	}
	return b
}

func u16Bytes(v []uint16) []byte {
	b := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(b[2*i:], x)
	}
	return b
}

func bytesU16(b []byte) []uint16 {
	v := make([]uint16, len(b)/2)
	for i := range v {
		v[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return v
}

func i32Bytes(v []int32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(x))
	}
	return b
}

func bytesI32(b []byte) []int32 {
	v := make([]int32, len(b)/4)
	for i := range v {
		v[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

func f32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func bytesF32(b []byte) []float32 {
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

// kvHeadABI mirrors longctx_kv_head (kernels/abi/common.h): 24 bytes.
type kvHeadABI struct {
	Data, Pos      uint64
	Len, RowStride int32
}

func init() {
	if unsafe.Sizeof(kvHeadABI{}) != 24 {
		panic("kvHeadABI is not 24 bytes")
	}
}

func kvHeadBytes(h []kvHeadABI) []byte {
	b := make([]byte, 24*len(h))
	for i, x := range h {
		binary.LittleEndian.PutUint64(b[24*i:], x.Data)
		binary.LittleEndian.PutUint64(b[24*i+8:], x.Pos)
		binary.LittleEndian.PutUint32(b[24*i+16:], uint32(x.Len))
		binary.LittleEndian.PutUint32(b[24*i+20:], uint32(x.RowStride))
	}
	return b
}

func bytesKVHead(b []byte) []kvHeadABI {
	h := make([]kvHeadABI, len(b)/24)
	for i := range h {
		h[i] = kvHeadABI{
			Data: binary.LittleEndian.Uint64(b[24*i:]), Pos: binary.LittleEndian.Uint64(b[24*i+8:]),
			Len: int32(binary.LittleEndian.Uint32(b[24*i+16:])), RowStride: int32(binary.LittleEndian.Uint32(b[24*i+20:])),
		}
	}
	return h
}

// f32ULP is the distance of two finite float32 values in units in the
// last place.
func f32ULP(a, b float32) int64 {
	key := func(x float32) int64 {
		u := math.Float32bits(x)
		if u&0x80000000 != 0 {
			return -int64(u & 0x7fffffff)
		}
		return int64(u)
	}
	d := key(a) - key(b)
	if d < 0 {
		d = -d
	}
	return d
}

// deviceLibm runs reference once with recording functions, evaluates
// every argument it used on the device, checks those values against the
// host's (CUDA documents at most 2 ulp of error for rsqrtf, expf, cosf and
// sinf) and returns a Libm that answers with the device's values. run must
// not keep its outputs: it is called with a recording Libm only.
func (g *gpuEnv) deviceLibm(tb testing.TB, run func(Libm)) Libm {
	tb.Helper()
	host := HostLibm()
	hostFns := []func(float32) float32{host.Rsqrt, host.Exp, host.Cos, host.Sin}
	names := []string{"rsqrtf", "expf", "cosf", "sinf"}
	var args [4]map[uint32]bool
	rec := func(fn int) func(float32) float32 {
		args[fn] = map[uint32]bool{}
		return func(x float32) float32 {
			args[fn][math.Float32bits(x)] = true
			return hostFns[fn](x)
		}
	}
	run(Libm{Rsqrt: rec(0), Exp: rec(1), Cos: rec(2), Sin: rec(3)})
	var vals [4]map[uint32]float32
	for fn := range 4 {
		vals[fn] = map[uint32]float32{}
		if len(args[fn]) == 0 {
			continue
		}
		xs := make([]float32, 0, len(args[fn]))
		for b := range args[fn] {
			xs = append(xs, math.Float32frombits(b))
		}
		n := len(xs)
		px := g.put(tb, f32Bytes(xs), 0)
		py := g.alloc(tb, 4*n)
		nn, f := int32(n), int32(fn)
		must(tb, g.d.Launch(g.libm, cuda.Dim3{X: uint32((n + 255) / 256), Y: 1, Z: 1}, cuda.Dim3{X: 256, Y: 1, Z: 1}, 0, 0,
			unsafe.Pointer(&px), unsafe.Pointer(&py), unsafe.Pointer(&nn), unsafe.Pointer(&f)))
		ys := bytesF32(g.get(tb, py, 4*n))
		var worst int64
		for i, x := range xs {
			h := hostFns[fn](x)
			if d := f32ULP(ys[i], h); d > worst {
				worst = d
			}
			if d := f32ULP(ys[i], h); d > 3 || math.IsNaN(float64(ys[i])) != math.IsNaN(float64(h)) {
				tb.Errorf("device %s(%v) = %v, host %v: %d ulp apart", names[fn], x, ys[i], h, d)
			}
			vals[fn][math.Float32bits(x)] = ys[i]
		}
		tb.Logf("%s: %d arguments, device at most %d ulp from the host", names[fn], n, worst)
	}
	look := func(fn int) func(float32) float32 {
		return func(x float32) float32 {
			v, ok := vals[fn][math.Float32bits(x)]
			if !ok {
				panic("deviceLibm: " + names[fn] + " argument not recorded")
			}
			return v
		}
	}
	return Libm{Rsqrt: look(0), Exp: look(1), Cos: look(2), Sin: look(3)}
}

// sameU16 fails the test at the first differing element, reporting how
// many differ.
func sameU16(tb testing.TB, what string, got, want []uint16) {
	tb.Helper()
	if len(got) != len(want) {
		tb.Fatalf("%s: %d elements, want %d", what, len(got), len(want))
	}
	first, n := -1, 0
	for i := range got {
		if got[i] != want[i] {
			if first < 0 {
				first = i
			}
			n++
		}
	}
	if n > 0 {
		tb.Fatalf("%s: %d of %d elements differ; first [%d] = %#04x (%v), want %#04x (%v)",
			what, n, len(got), first, got[first], F32(got[first]), want[first], F32(want[first]))
	}
}

func sameI32(tb testing.TB, what string, got, want []int32) {
	tb.Helper()
	if !slices.Equal(got, want) {
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				tb.Fatalf("%s: [%d] = %d, want %d (lengths %d, %d)", what, i, got[i], want[i], len(got), len(want))
			}
		}
		tb.Fatalf("%s: %d elements, want %d", what, len(got), len(want))
	}
}

// ulpStats logs how far got is from a reference computed with the host's
// correctly rounded functions, in bf16 ulps.
func ulpStats(tb testing.TB, what string, got, hostRef []uint16) {
	tb.Helper()
	hist := map[int]int{}
	for i := range got {
		hist[min(ulpDiff(got[i], hostRef[i]), 3)]++
	}
	tb.Logf("%s against host libm: %d equal, %d at 1 ulp, %d at 2, %d at 3+", what, hist[0], hist[1], hist[2], hist[3])
}

func filled16(n int, v uint16) []uint16 {
	s := make([]uint16, n)
	for i := range s {
		s[i] = v
	}
	return s
}

func filled32(n int, v int32) []int32 {
	s := make([]int32, n)
	for i := range s {
		s[i] = v
	}
	return s
}
