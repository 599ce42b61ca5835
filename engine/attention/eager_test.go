package attention

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// naive computes attention the slow, obvious way in float64: K and V are
// expanded to one copy per query head, the mask is a dense matrix, and the
// softmax is a textbook one. It shares no code with Eager.
func naive(p *Problem) []float64 {
	d := p.HeadDim
	group := p.NumHeads / p.NumKVHeads
	out := make([]float64, len(p.Q))
	for i, qpos := range p.QPos {
		for h := range p.NumHeads {
			g := h / group
			n := len(p.KPos[g])
			mask := make([]bool, n)
			logits := make([]float64, n)
			best := math.Inf(-1)
			for j := range n {
				kpos := p.KPos[g][j]
				// transformers: causal (kv <= q) and sliding overlay (kv > q - window).
				mask[j] = kpos <= qpos && (p.SlidingWindow == 0 || kpos > qpos-p.SlidingWindow)
				if !mask[j] {
					continue
				}
				var s float64
				for c := range d {
					s += float64(p.Q[(i*p.NumHeads+h)*d+c]) * float64(p.K[g][j*d+c])
				}
				logits[j] = s * float64(p.Scale)
				best = math.Max(best, logits[j])
			}
			var z float64
			for j := range n {
				if mask[j] {
					z += math.Exp(logits[j] - best)
				}
			}
			for j := range n {
				if !mask[j] {
					continue
				}
				w := math.Exp(logits[j]-best) / z
				for c := range d {
					out[(i*p.NumHeads+h)*d+c] += w * float64(p.V[g][j*d+c])
				}
			}
		}
	}
	return out
}

func randomSlice(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(rng.NormFloat64())
	}
	return s
}

// problem builds a random problem whose KV head g holds the tokens at kpos[g].
func problem(rng *rand.Rand, heads, kvHeads, d int, qpos []int, kpos [][]int, window int) *Problem {
	p := &Problem{
		NumHeads: heads, NumKVHeads: kvHeads, HeadDim: d,
		Scale:         float32(1 / math.Sqrt(float64(d))),
		Q:             randomSlice(rng, len(qpos)*heads*d),
		QPos:          qpos,
		KPos:          kpos,
		SlidingWindow: window,
		Out:           make([]float32, len(qpos)*heads*d),
	}
	for _, pos := range kpos {
		p.K = append(p.K, randomSlice(rng, len(pos)*d))
		p.V = append(p.V, randomSlice(rng, len(pos)*d))
	}
	return p
}

func span(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

func repeat(pos []int, n int) [][]int {
	out := make([][]int, n)
	for i := range out {
		out[i] = pos
	}
	return out
}

// naiveCases are the attention problems both Eager and EagerBF16 are
// checked on against their naive references.
var naiveCases = []struct {
	name           string
	heads, kvHeads int
	d              int
	qpos           []int
	kpos           [][]int
	window         int
}{
	{"mha prefill", 4, 4, 16, span(0, 9), repeat(span(0, 9), 4), 0},
	{"gqa prefill", 8, 2, 16, span(0, 13), repeat(span(0, 13), 2), 0},
	{"mqa decode", 6, 1, 8, []int{20}, repeat(span(0, 21), 1), 0},
	{"chunk after cache", 4, 2, 16, span(10, 15), repeat(span(0, 15), 2), 0},
	{"sliding window prefill", 4, 2, 16, span(0, 20), repeat(span(0, 20), 2), 5},
	{"sliding window decode", 4, 2, 16, []int{40}, repeat(span(0, 41), 2), 7},
	{"window one", 2, 1, 4, span(0, 6), repeat(span(0, 6), 1), 1},
	{"odd head dim", 3, 3, 7, span(0, 5), repeat(span(0, 5), 3), 0},
	{
		"compacted heads of different lengths", 4, 2, 16,
		[]int{30, 31},
		[][]int{{0, 1, 7, 19, 28, 30, 31}, {2, 3, 29, 30, 31}},
		0,
	},
	{"no visible key", 2, 1, 4, []int{5, 12}, [][]int{{10, 11, 12}}, 0},
	{
		"compacted with window", 4, 2, 8,
		[]int{30},
		[][]int{{0, 1, 25, 27, 30}, {2, 26, 28, 29, 30}},
		4,
	},
}

func TestEagerMatchesNaive(t *testing.T) {
	tests := naiveCases
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(len(tc.name))))
			p := problem(rng, tc.heads, tc.kvHeads, tc.d, tc.qpos, tc.kpos, tc.window)
			if err := (Eager{}).Attend(context.Background(), p); err != nil {
				t.Fatal(err)
			}
			want := naive(p)
			for i, w := range want {
				if diff := math.Abs(float64(p.Out[i]) - w); diff > 1e-5*(1+math.Abs(w)) {
					t.Fatalf("Out[%d] = %v, want %v (diff %g)", i, p.Out[i], w, diff)
				}
			}
		})
	}
}

func TestEagerWorkerCountDoesNotChangeResult(t *testing.T) {
	for _, tc := range []struct {
		name    string
		backend func(workers int) Backend
	}{
		{"fp32", func(w int) Backend { return Eager{Workers: w} }},
		{"bf16", func(w int) Backend { return EagerBF16{Workers: w} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(2, 2))
			base := problem(rng, 8, 2, 16, span(0, 17), repeat(span(0, 17), 2), 0)
			var ref []float32
			for _, workers := range []int{1, 2, 3, 16} {
				p := *base
				p.Out = make([]float32, len(base.Out))
				if err := tc.backend(workers).Attend(context.Background(), &p); err != nil {
					t.Fatal(err)
				}
				if ref == nil {
					ref = p.Out
					continue
				}
				for i := range ref {
					if math.Float32bits(p.Out[i]) != math.Float32bits(ref[i]) {
						t.Fatalf("workers=%d: Out[%d] = %v, want %v (bitwise, as with 1 worker)", workers, i, p.Out[i], ref[i])
					}
				}
			}
		})
	}
}

func TestEagerQueryWithoutVisibleKeysIsZero(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	// Query at position 5 while every key sits later: nothing is visible.
	p := problem(rng, 2, 1, 4, []int{5, 12}, [][]int{{10, 11, 12}}, 0)
	for i := range p.Out {
		p.Out[i] = float32(math.NaN()) // must be overwritten
	}
	if err := (Eager{}).Attend(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	for i := range 2 * 4 {
		if p.Out[i] != 0 {
			t.Fatalf("Out[%d] = %v for a query with no visible key, want 0", i, p.Out[i])
		}
	}
	want := naive(p)
	for i := 8; i < 16; i++ {
		if math.Abs(float64(p.Out[i])-want[i]) > 1e-5 {
			t.Fatalf("Out[%d] = %v, want %v", i, p.Out[i], want[i])
		}
	}
}

func TestEagerSingleVisibleKeyReturnsItsValue(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	p := problem(rng, 2, 2, 8, []int{0}, [][]int{{0}, {0}}, 0)
	if err := (Eager{}).Attend(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	for h := range 2 {
		for c := range 8 {
			if p.Out[h*8+c] != p.V[h][c] {
				t.Fatalf("head %d: Out[%d] = %v, want V = %v", h, c, p.Out[h*8+c], p.V[h][c])
			}
		}
	}
}

func TestVisibleMatchesTransformersMask(t *testing.T) {
	for _, window := range []int{0, 1, 2, 5} {
		for q := range 12 {
			for k := range 12 {
				want := k <= q
				if window > 0 {
					want = want && k > q-window
				}
				if got := Visible(q, k, window); got != want {
					t.Errorf("Visible(q=%d, k=%d, window=%d) = %v, want %v", q, k, window, got, want)
				}
			}
		}
	}
}

func TestEagerCancelled(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	p := problem(rng, 2, 1, 4, span(0, 3), repeat(span(0, 3), 1), 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := (Eager{}).Attend(ctx, p); !errors.Is(err, context.Canceled) {
		t.Fatalf("Attend with a cancelled context: %v, want context.Canceled", err)
	}
}

func TestValidate(t *testing.T) {
	ok := func() *Problem {
		return problem(rand.New(rand.NewPCG(6, 6)), 4, 2, 4, span(0, 3), repeat(span(0, 3), 2), 0)
	}
	tests := []struct {
		name   string
		mutate func(p *Problem)
		want   string
	}{
		{"zero heads", func(p *Problem) { p.NumHeads = 0 }, "must be positive"},
		{"heads not multiple", func(p *Problem) { p.NumKVHeads = 3 }, "not a multiple"},
		{"negative window", func(p *Problem) { p.SlidingWindow = -1 }, "negative sliding window"},
		{"nan scale", func(p *Problem) { p.Scale = float32(math.NaN()) }, "not finite"},
		{"short Q", func(p *Problem) { p.Q = p.Q[1:] }, "Q has"},
		{"short Out", func(p *Problem) { p.Out = p.Out[1:] }, "Out has"},
		{"missing kv head", func(p *Problem) { p.K = p.K[:1] }, "heads, want 2"},
		{"K/KPos length mismatch", func(p *Problem) { p.KPos = [][]int{{0, 1}, {0, 1, 2}} }, "kv head 0"},
		{"V short", func(p *Problem) { p.V[1] = p.V[1][:4] }, "kv head 1"},
	}
	if err := ok().Validate(); err != nil {
		t.Fatalf("valid problem: %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := ok()
			tc.mutate(p)
			err := p.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tc.want)
			}
			if err := (Eager{}).Attend(context.Background(), p); err == nil {
				t.Fatal("Attend accepted an invalid problem")
			}
		})
	}
}
