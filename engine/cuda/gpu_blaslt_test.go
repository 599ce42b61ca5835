package cuda

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// bf16 helpers: round to nearest even, as the GPU converts.
func toBF16(f float32) uint16 {
	b := math.Float32bits(f)
	b += 0x7FFF + (b>>16)&1
	return uint16(b >> 16)
}

func fromBF16(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

func bf16Bytes(v []uint16) []byte {
	b := make([]byte, 2*len(v))
	for i, h := range v {
		binary.LittleEndian.PutUint16(b[2*i:], h)
	}
	return b
}

func bytesBF16(b []byte) []uint16 {
	v := make([]uint16, len(b)/2)
	for i := range v {
		v[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return v
}

const (
	bf16NaN      = 0x7FC0
	bf16Sentinel = 0x4242 // 48.5: marks padding that must stay untouched
)

// randomMatrix is rows×ld bf16 with the logical rows×cols part N(0, scale²)
// and the padding set to pad.
func randomMatrix(rng *rand.Rand, rows, cols, ld int, scale float64, pad uint16) []uint16 {
	m := make([]uint16, rows*ld)
	for r := 0; r < rows; r++ {
		for c := 0; c < ld; c++ {
			if c < cols {
				m[r*ld+c] = toBF16(float32(rng.NormFloat64() * scale))
			} else {
				m[r*ld+c] = pad
			}
		}
	}
	return m
}

const testWorkspaceBytes = 32 << 20

func openTestBlasLt(t testing.TB, g *gpuEnv) *BlasLt {
	t.Helper()
	ws := alloc(t, g, testWorkspaceBytes) // freed after Close, which runs first
	lt, err := OpenBlasLt()
	must(t, err)
	t.Cleanup(func() { must(t, lt.Close()) })
	must(t, lt.SetWorkspace(ws, testWorkspaceBytes))
	t.Logf("cuBLASLt %s at %s", lt.Version(), lt.Path())
	return lt
}

// gemmCase holds one GEMM's host data and device buffers.
type gemmCase struct {
	g          GemmShape // normalized
	x, w, y0   []uint16
	bias       []uint16
	dx, dw, dy DevicePtr
	dbias      DevicePtr
}

func newGemmCase(t testing.TB, env *gpuEnv, rng *rand.Rand, spec GemmShape) *gemmCase {
	t.Helper()
	g, err := spec.normalized()
	must(t, err)
	c := &gemmCase{g: g}
	// NaN padding in the inputs: an algorithm that reads past a row's
	// logical end poisons the result.
	c.x = randomMatrix(rng, g.M, g.K, g.LdX, 1, bf16NaN)
	c.w = randomMatrix(rng, g.N, g.K, g.LdW, 1, bf16NaN)
	c.y0 = randomMatrix(rng, g.M, g.N, g.LdY, 8, bf16Sentinel)
	c.dx = alloc(t, env, uint64(2*len(c.x)))
	c.dw = alloc(t, env, uint64(2*len(c.w)))
	c.dy = alloc(t, env, uint64(2*len(c.y0)))
	must(t, env.d.MemcpyHtoD(c.dx, bf16Bytes(c.x)))
	must(t, env.d.MemcpyHtoD(c.dw, bf16Bytes(c.w)))
	must(t, env.d.MemcpyHtoD(c.dy, bf16Bytes(c.y0)))
	if g.Bias {
		c.bias = randomMatrix(rng, 1, g.N, g.N, 4, 0)
		c.dbias = alloc(t, env, uint64(2*len(c.bias)))
		must(t, env.d.MemcpyHtoD(c.dbias, bf16Bytes(c.bias)))
	}
	// A pageable cuMemcpyHtoD may return before its DMA lands, and the
	// GEMM runs on a non-blocking stream that does not wait for it.
	must(t, env.d.Synchronize())
	return c
}

// check compares the device Y with an fp64 reference over the bf16
// inputs: the error must stay within 1% of the largest |y| (bf16 output
// rounding alone is 0.4% relative), and the padding must be untouched.
func (c *gemmCase) check(t testing.TB, env *gpuEnv) {
	t.Helper()
	g := c.g
	out := make([]byte, 2*len(c.y0))
	must(t, env.d.MemcpyDtoH(out, c.dy))
	got := bytesBF16(out)
	want := make([]float64, g.M*g.N)
	maxAbs := 0.0
	for i := 0; i < g.M; i++ {
		for j := 0; j < g.N; j++ {
			var s float64
			for k := 0; k < g.K; k++ {
				s += float64(fromBF16(c.x[i*g.LdX+k])) * float64(fromBF16(c.w[j*g.LdW+k]))
			}
			if g.Bias {
				s += float64(fromBF16(c.bias[j]))
			}
			if g.Accumulate {
				s += float64(fromBF16(c.y0[i*g.LdY+j]))
			}
			want[i*g.N+j] = s
			maxAbs = math.Max(maxAbs, math.Abs(s))
		}
	}
	if maxAbs == 0 {
		t.Fatal("reference is all zeros; the test data is broken")
	}
	tol := 1e-2 * maxAbs
	worst := 0.0
	for i := 0; i < g.M; i++ {
		for j := 0; j < g.LdY; j++ {
			v := got[i*g.LdY+j]
			if j >= g.N {
				if v != bf16Sentinel {
					t.Fatalf("%v: padding Y[%d][%d] = %#04x; want untouched %#04x", g, i, j, v, bf16Sentinel)
				}
				continue
			}
			d := math.Abs(float64(fromBF16(v)) - want[i*g.N+j])
			if !(d <= tol) { // also catches NaN
				t.Fatalf("%v: Y[%d][%d] = %v; want %v (|diff| %.4g > tol %.4g)", g, i, j, fromBF16(v), want[i*g.N+j], d, tol)
			}
			worst = math.Max(worst, d)
		}
	}
	t.Logf("%v: max |y| %.4g, max |diff| %.4g (%.2e relative)", g, maxAbs, worst, worst/maxAbs)
}

func TestGPUGemmBF16(t *testing.T) {
	g := openGPU(t)
	h := openTestBlasLt(t, g)
	s := newStream(t, g)
	rng := rand.New(rand.NewPCG(11, 12))
	tests := []GemmShape{
		{M: 1, N: 4096, K: 4096},
		{M: 1, N: 4096, K: 4096, Bias: true},
		{M: 7, N: 64, K: 64},
		{M: 33, N: 96, K: 64, Bias: true},
		{M: 33, N: 96, K: 64, LdY: 104, Bias: true},
		{M: 33, N: 96, K: 64, LdY: 104, Accumulate: true},
		{M: 5, N: 128, K: 256, LdX: 272, LdW: 264, LdY: 136, Bias: true, Accumulate: true},
		{M: 130, N: 200, K: 72, LdX: 80},
	}
	// No subtests: t.Run starts a goroutine on another OS thread, where the
	// context bound by openGPU is not current.
	for _, spec := range tests {
		c := newGemmCase(t, g, rng, spec)
		must(t, h.GemmBF16(s, spec, c.dy, c.dx, c.dw, c.dbias))
		must(t, g.d.StreamSynchronize(s))
		c.check(t, g)
	}
	// Each spec is one plan (its buffers are fresh allocations, 256-byte
	// aligned); running one again must reuse it.
	plans := h.Plans()
	c := newGemmCase(t, g, rng, tests[2])
	must(t, h.GemmBF16(s, tests[2], c.dy, c.dx, c.dw, 0))
	must(t, g.d.StreamSynchronize(s))
	c.check(t, g)
	if h.Plans() != plans {
		t.Errorf("repeating a shape made a new plan: %d -> %d", plans, h.Plans())
	}
	if plans != len(tests) {
		t.Errorf("%d plans for %d distinct shapes", plans, len(tests))
	}

	// A new workspace size invalidates the plans chosen for the old one.
	ws2 := alloc(t, g, testWorkspaceBytes/2)
	must(t, h.SetWorkspace(ws2, testWorkspaceBytes/2))
	if h.Plans() != 0 {
		t.Errorf("%d plans survived a workspace change", h.Plans())
	}
	must(t, h.GemmBF16(s, tests[2], c.dy, c.dx, c.dw, 0))
	must(t, g.d.StreamSynchronize(s))
	c.check(t, g)
	if h.Plans() != 1 {
		t.Errorf("%d plans after one shape with the new workspace; want 1", h.Plans())
	}

	if err := h.GemmBF16(s, GemmShape{M: 4, N: 8, K: 8, LdY: 4}, c.dy, c.dx, c.dw, 0); err == nil {
		t.Error("ldY < N was accepted")
	}
	if err := h.GemmBF16(s, GemmShape{M: 4, N: 8, K: 8, Bias: true}, c.dy, c.dx, c.dw, 0); err == nil {
		t.Error("Bias without a bias pointer was accepted")
	}
}

// A GEMM captured into a graph reads its inputs when replayed.
func TestGPUGemmInGraph(t *testing.T) {
	g := openGPU(t)
	h := openTestBlasLt(t, g)
	s := newStream(t, g)
	rng := rand.New(rand.NewPCG(13, 14))
	spec := GemmShape{M: 4, N: 256, K: 128, Bias: true}
	c := newGemmCase(t, g, rng, spec)
	must(t, h.Prepare(spec, c.dy, c.dx, c.dw, c.dbias)) // plans outside the capture
	if h.Plans() != 1 {
		t.Fatalf("Prepare left %d plans; want 1", h.Plans())
	}
	// A warm-up run loads cuBLASLt's kernel (CUDA loads modules lazily)
	// before the capture, as an engine's first, uncaptured step does.
	must(t, h.GemmBF16(s, spec, c.dy, c.dx, c.dw, c.dbias))
	must(t, g.d.StreamSynchronize(s))
	c.check(t, g)
	must(t, g.d.MemcpyHtoD(c.dy, bf16Bytes(c.y0))) // so that only the replay can make Y right
	must(t, g.d.Synchronize())

	exec := captureGraph(t, g, s, func() { must(t, h.GemmBF16(s, spec, c.dy, c.dx, c.dw, c.dbias)) })
	if h.Plans() != 1 {
		t.Fatalf("the captured Matmul made a new plan (%d plans)", h.Plans())
	}

	must(t, g.d.GraphLaunch(exec, s))
	must(t, g.d.StreamSynchronize(s))
	c.check(t, g)

	c.x = randomMatrix(rng, spec.M, spec.K, c.g.LdX, 1, bf16NaN)
	must(t, g.d.MemcpyHtoD(c.dx, bf16Bytes(c.x)))
	must(t, g.d.Synchronize())
	must(t, g.d.GraphLaunch(exec, s))
	must(t, g.d.StreamSynchronize(s))
	c.check(t, g)
}

// fillRandomBF16 fills n bf16 values at p with magnitudes in [2^-7, 2)
// and random signs, tiling a 1 Mi-element random block (random bits keep
// the tensor cores' power draw realistic; constants would flatter them).
func fillRandomBF16(t testing.TB, env *gpuEnv, p DevicePtr, n int, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed+1))
	block := make([]uint16, min(n, 1<<20))
	for i := range block {
		block[i] = 0x3C00 | uint16(rng.Uint32())&0x83FF
	}
	raw := bf16Bytes(block)
	for off := 0; off < n; off += len(block) {
		m := min(len(block), n-off)
		must(t, env.d.MemcpyHtoD(p+DevicePtr(2*off), raw[:2*m]))
	}
	must(t, env.d.Synchronize())
}

// BenchmarkGemmBF16 times cuBLASLt bf16 GEMMs with GPU events: a large
// square one (compute-bound, TFLOP/s) and a decode-step GEMV (bandwidth-
// bound, µs and GB/s; it cycles through 8 weight matrices, 256 MiB in all,
// so the weights come from HBM rather than the 50 MiB L2).
func BenchmarkGemmBF16(b *testing.B) {
	for _, bc := range []struct {
		m, n, k int
		weights int
	}{
		{8192, 8192, 8192, 1},
		{1, 4096, 4096, 8},
	} {
		b.Run(fmt.Sprintf("M%d_N%d_K%d", bc.m, bc.n, bc.k), func(b *testing.B) {
			g := openGPU(b)
			h := openTestBlasLt(b, g)
			s := newStream(b, g)
			spec := GemmShape{M: bc.m, N: bc.n, K: bc.k}
			x := alloc(b, g, uint64(2*bc.m*bc.k))
			y := alloc(b, g, uint64(2*bc.m*bc.n))
			fillRandomBF16(b, g, x, bc.m*bc.k, 1)
			ws := make([]DevicePtr, bc.weights)
			for i := range ws {
				ws[i] = alloc(b, g, uint64(2*bc.n*bc.k))
				fillRandomBF16(b, g, ws[i], bc.n*bc.k, uint64(10+i))
			}
			for _, w := range ws { // plan and warm up
				must(b, h.GemmBF16(s, spec, y, x, w, 0))
			}
			el := gpuTime(b, g, s, b.N, func(i int) error { return h.GemmBF16(s, spec, y, x, ws[i%len(ws)], 0) })
			per := el.Seconds()
			flops := 2 * float64(bc.m) * float64(bc.n) * float64(bc.k)
			bytes := 2 * float64(bc.m*bc.k+bc.n*bc.k+bc.m*bc.n)
			b.ReportMetric(per*1e6, "us/gemm")
			b.ReportMetric(flops/per/1e12, "TFLOP/s")
			b.ReportMetric(bytes/per/1e9, "GB/s")
		})
	}
}
