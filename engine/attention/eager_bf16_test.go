package attention

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/longctx/longctx/engine/weights"
)

// toBF16 rounds through the weights package's converter, an implementation
// independent of vec.RoundBF16 (which EagerBF16 uses).
func toBF16(x float32) float32 {
	return math.Float32frombits(uint32(weights.Float32ToBF16(x)) << 16)
}

// naiveBF16 is eager.cu's materialisation written out the obvious way, as
// naive does for Eager: K and V expanded per query head, a dense mask,
//
//	S = bf16(bf16(q·k)·scale), P = bf16(exp(S − max) / Σ exp(S − max)), O = bf16(P·V).
//
// The dot products run in float64; the tests choose Q and K on a coarse
// grid, so that they are exact in any order and fp32 gives the same. The
// two fp32 sums over keys (Σ exp and P·V) run in key order, the order
// EagerBF16 documents, so the results must agree bit for bit.
func naiveBF16(p *Problem) []float32 {
	d := p.HeadDim
	group := p.NumHeads / p.NumKVHeads
	out := make([]float32, len(p.Q))
	for i, qpos := range p.QPos {
		for h := range p.NumHeads {
			g := h / group
			n := len(p.KPos[g])
			mask := make([]bool, n)
			s := make([]float32, n)
			best := float32(math.Inf(-1))
			for j := range n {
				kpos := p.KPos[g][j]
				mask[j] = kpos <= qpos && (p.SlidingWindow == 0 || kpos > qpos-p.SlidingWindow)
				if !mask[j] {
					continue
				}
				var dot float64
				for c := range d {
					dot += float64(p.Q[(i*p.NumHeads+h)*d+c]) * float64(p.K[g][j*d+c])
				}
				s[j] = toBF16(toBF16(float32(dot)) * p.Scale)
				best = max(best, s[j])
			}
			var z float32
			for j := range n {
				if mask[j] {
					z += float32(math.Exp(float64(s[j] - best)))
				}
			}
			o := out[(i*p.NumHeads+h)*d : (i*p.NumHeads+h+1)*d]
			for j := range n {
				if !mask[j] {
					continue
				}
				w := toBF16(float32(math.Exp(float64(s[j]-best))) / z)
				for c := range d {
					o[c] += w * p.V[g][j*d+c]
				}
			}
			for c := range o {
				o[c] = toBF16(o[c])
			}
		}
	}
	return out
}

// gridSlice holds multiples of 1/8 in [-2, 2]: bf16 values whose products
// and sums over a head are exact in fp32.
func gridSlice(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(rng.IntN(33)-16) / 8
	}
	return s
}

// gridProblem is problem with Q, K and V on the grid.
func gridProblem(rng *rand.Rand, heads, kvHeads, d int, qpos []int, kpos [][]int, window int) *Problem {
	p := problem(rng, heads, kvHeads, d, qpos, kpos, window)
	p.Q = gridSlice(rng, len(p.Q))
	for g := range p.K {
		p.K[g] = gridSlice(rng, len(p.K[g]))
		p.V[g] = gridSlice(rng, len(p.V[g]))
	}
	return p
}

func TestEagerBF16MatchesNaive(t *testing.T) {
	tests := naiveCases
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(7, uint64(len(tc.name))))
			p := gridProblem(rng, tc.heads, tc.kvHeads, tc.d, tc.qpos, tc.kpos, tc.window)
			for i := range p.Out {
				p.Out[i] = float32(math.NaN()) // must be overwritten
			}
			if err := (EagerBF16{}).Attend(context.Background(), p); err != nil {
				t.Fatal(err)
			}
			want := naiveBF16(p)
			for i, w := range want {
				if math.Float32bits(p.Out[i]) != math.Float32bits(w) {
					t.Fatalf("Out[%d] = %v, want %v (bitwise)", i, p.Out[i], w)
				}
			}
		})
	}
}

// The roundings must actually happen: on the same problem EagerBF16 parts
// from Eager, and every output is a bf16 value.
func TestEagerBF16RoundsWhereEagerDoesNot(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	p := gridProblem(rng, 8, 2, 16, span(0, 17), repeat(span(0, 17), 2), 0)
	if err := (EagerBF16{}).Attend(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	got := append([]float32(nil), p.Out...)
	if err := (Eager{}).Attend(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	differ := 0
	for i, v := range got {
		if toBF16(v) != v {
			t.Fatalf("Out[%d] = %v is not a bf16 value", i, v)
		}
		if v != p.Out[i] {
			differ++
		}
	}
	if differ == 0 {
		t.Fatal("EagerBF16 gave exactly Eager's fp32 results: no rounding took place")
	}
}

func TestEagerBF16RejectsInvalidProblem(t *testing.T) {
	p := problem(rand.New(rand.NewPCG(10, 10)), 4, 2, 4, span(0, 3), repeat(span(0, 3), 2), 0)
	p.NumKVHeads = 3
	if err := (EagerBF16{}).Attend(context.Background(), p); err == nil {
		t.Fatal("Attend accepted an invalid problem")
	}
}
