package ops

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/longctx/longctx/engine/cuda"
)

// gemvReference is Y = X·Wᵀ (+ bias) over the bf16 inputs in float64,
// before the output's bf16 rounding.
func gemvReference(x []uint16, ldx int, w []uint16, ldw int, bias []uint16, M, N, K int) []float64 {
	y := make([]float64, M*N)
	for m := range M {
		for n := range N {
			var s float64
			for k := range K {
				s += float64(F32(x[m*ldx+k])) * float64(F32(w[n*ldw+k]))
			}
			if bias != nil {
				s += float64(F32(bias[n]))
			}
			y[m*N+n] = s
		}
	}
	return y
}

// halfULPBF16 is half the spacing of bf16 values (8 significant bits) at
// |r|: the most a correct rounding moves r.
func halfULPBF16(r float64) float64 {
	if r == 0 {
		return 0
	}
	_, e := math.Frexp(math.Abs(r)) // |r| = f·2^e, f in [0.5, 1)
	return math.Ldexp(1, e-1-8)
}

// TestGPUGEMV: each output is the exact product rounded once to bf16, up
// to the fp32 accumulation's error (a few units of 2⁻²⁴·Σ|x·w|); padding
// of Y rows stays untouched.
func TestGPUGEMV(t *testing.T) {
	g := openGPU(t)
	rng := rand.New(rand.NewPCG(9, 9))
	for _, c := range []struct{ M, N, K, pad int }{
		{1, 4096, 4096, 0}, {1, 6144, 4096, 0}, {3, 1000, 4096, 8}, {8, 333, 14336, 0}, {2, 64, 64, 8}, {1, 7, 8, 0}, {5, 129, 200, 16},
	} {
		for _, withBias := range []bool{false, true} {
			g.run(t, fmt.Sprintf("M=%d/N=%d/K=%d/pad=%d/bias=%v", c.M, c.N, c.K, c.pad, withBias), func(t *testing.T) {
				ldx, ldw, ldy := c.K+c.pad, c.K+c.pad, c.N+c.pad
				x := randBF16(rng, c.M*ldx, 1)
				w := randBF16(rng, c.N*ldw, 1)
				var bias []uint16
				var dbias cuda.DevicePtr
				if withBias {
					bias = randBF16(rng, c.N, 1)
					dbias = g.put(t, u16Bytes(bias), 0)
				}
				dx, dw := g.put(t, u16Bytes(x), 0), g.put(t, u16Bytes(w), 0)
				ref := gemvReference(x, ldx, w, ldw, bias, c.M, c.N, c.K)
				// 0: the split GEMV chooses; then every split it may use.
				for _, split := range []int{0, 1, 2, 4, 8} {
					dy := g.alloc(t, 2*c.M*ldy)
					if split == 0 {
						must(t, g.k.GEMV(0, dx, ldx, dw, ldw, dbias, dy, ldy, c.M, c.N, c.K))
					} else {
						must(t, g.k.gemv(0, dx, ldx, dw, ldw, dbias, dy, ldy, c.M, c.N, c.K, split))
					}
					got := bytesU16(g.get(t, dy, 2*c.M*ldy))
					worst := 0.0
					for m := range c.M {
						for n := range ldy {
							v := got[m*ldy+n]
							if n >= c.N {
								if v != 0xffff {
									t.Fatalf("row %d padding %d written: %#x", m, n, v)
								}
								continue
							}
							var mag float64
							for k := range c.K {
								mag += math.Abs(float64(F32(x[m*ldx+k])) * float64(F32(w[n*ldw+k])))
							}
							r := ref[m*c.N+n]
							// One bf16 rounding (half an ulp of |r|) plus fp32
							// accumulation error over K terms.
							tol := halfULPBF16(r) + 1e-6*mag + 1e-30
							d := math.Abs(float64(F32(v)) - r)
							worst = max(worst, d/tol)
							if !(d <= tol) {
								t.Fatalf("split %d: y[%d][%d] = %v, exact %v (tolerance %.3g)", split, m, n, F32(v), r, tol)
							}
						}
					}
					t.Logf("split %d: worst error %.2f of the tolerance", split, worst)
				}
			})
		}
	}
}

// BenchmarkGPUGEMV reports the weight-read bandwidth of the decode
// projections of Llama-3-8B shapes at batch 1 and 2, for each column split
// (the split GEMV picks is marked "chosen"). Eight weight matrices are
// cycled so that the reads come from HBM, not the 50 MB L2.
func BenchmarkGPUGEMV(b *testing.B) {
	g := openGPU(b)
	const copies = 8
	for _, c := range []struct{ N, K int }{{6144, 4096}, {4096, 4096}, {28672, 4096}, {4096, 14336}, {128256, 4096}} {
		ws := make([]cuda.DevicePtr, copies)
		for i := range ws {
			ws[i] = g.alloc(b, 2*c.N*c.K)
			must(b, g.d.MemsetD8(ws[i], 0, uint64(2*c.N*c.K)))
		}
		for _, M := range []int{1, 2} {
			x := g.alloc(b, 2*M*c.K)
			must(b, g.d.MemsetD8(x, 0, uint64(2*M*c.K)))
			y := g.alloc(b, 2*M*c.N)
			for _, split := range []int{1, 2, 4, 8} {
				name := fmt.Sprintf("M%d_N%d_K%d_split%d", M, c.N, c.K, split)
				if split == gemvSplit(c.K) {
					name += "_chosen"
				}
				b.Run(name, func(b *testing.B) {
					unbind, err := g.d.Bind(g.ctx)
					must(b, err)
					defer unbind()
					must(b, g.k.gemv(0, x, c.K, ws[0], c.K, 0, y, c.N, M, c.N, c.K, split))
					must(b, g.d.Synchronize())
					start := time.Now()
					for i := range b.N {
						must(b, g.k.gemv(0, x, c.K, ws[i%copies], c.K, 0, y, c.N, M, c.N, c.K, split))
					}
					must(b, g.d.Synchronize())
					per := time.Since(start).Seconds() / float64(b.N)
					b.ReportMetric(per*1e6, "us/gemv")
					b.ReportMetric(float64(2*c.N*c.K)/per/1e9, "GB/s")
				})
			}
		}
	}
}
