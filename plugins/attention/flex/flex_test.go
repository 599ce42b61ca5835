package flex

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/longctx/longctx/engine/attention"
	"github.com/longctx/longctx/plugins/attention/internal/attntest"
	"github.com/longctx/longctx/plugins/attention/internal/tiled"
)

// dense is a direct masked softmax written from the definition, with a
// Go mask and score function: the oracle for flex's expressions.
func dense(p *attention.Problem, mask func(h, q, kv int) bool, score func(h, q, kv int, s float64) float64) []float32 {
	d := p.HeadDim
	out := make([]float32, len(p.Q))
	for i, qp := range p.QPos {
		for h := range p.NumHeads {
			g := h / (p.NumHeads / p.NumKVHeads)
			q := p.Q[(i*p.NumHeads+h)*d : (i*p.NumHeads+h+1)*d]
			var s []float64
			var idx []int
			for j, kp := range p.KPos[g] {
				if !mask(h, qp, kp) {
					continue
				}
				var dot float64
				for x := range d {
					dot += float64(q[x]) * float64(p.K[g][j*d+x])
				}
				s = append(s, score(h, qp, kp, dot*float64(p.Scale)))
				idx = append(idx, j)
			}
			if len(s) == 0 {
				continue
			}
			m := math.Inf(-1)
			for _, v := range s {
				m = math.Max(m, v)
			}
			var sum float64
			for k := range s {
				s[k] = math.Exp(s[k] - m)
				sum += s[k]
			}
			o := out[(i*p.NumHeads+h)*d : (i*p.NumHeads+h+1)*d]
			for k, j := range idx {
				for x := range d {
					o[x] += float32(s[k] / sum * float64(p.V[g][j*d+x]))
				}
			}
		}
	}
	return out
}

func identity(_, _, _ int, s float64) float64 { return s }

func TestDefaultEqualsEager(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for si, s := range attntest.Shapes {
		p := attntest.Problem(rng, s)
		want := attntest.Clone(p)
		if err := (attention.Eager{}).Attend(context.Background(), want); err != nil {
			t.Fatal(err)
		}
		b, err := New(DefaultMask, DefaultScore, 8, 5, 0)
		if err != nil {
			t.Fatal(err)
		}
		got := attntest.Clone(p)
		if err := b.Attend(context.Background(), got); err != nil {
			t.Fatal(err)
		}
		if d := attntest.MaxDiff(got.Out, want.Out); d > 2e-6 {
			t.Errorf("shape %d: max |flex − eager| = %g", si, d)
		}
	}
}

// TestExpressions checks masks and score modifications against the dense
// oracle with hand-written Go functions.
func TestExpressions(t *testing.T) {
	alibiSlope := func(h, n int) float64 { return math.Pow(2, -8*float64(h+1)/float64(n)) } // n is a power of two here
	tests := []struct {
		mask, score string
		m           func(h, q, kv int) bool
		s           func(h, q, kv int, s float64) float64
	}{
		{"causal", "score", func(_, q, kv int) bool { return kv <= q }, identity},
		{"sliding_window(9)", "score", func(_, q, kv int) bool { return kv <= q && q-kv < 9 }, identity},
		{"prefix_lm(20)", "score", func(_, q, kv int) bool { return kv <= q || kv < 20 }, identity},
		{"chunked(16)", "score", func(_, q, kv int) bool { return kv <= q && q/16 == kv/16 }, identity},
		{"causal && (kv % 3 != 1 || h == 2)", "score", func(h, q, kv int) bool { return kv <= q && (kv%3 != 1 || h == 2) }, identity},
		{"causal", "softcap(0.5)", func(_, q, kv int) bool { return kv <= q }, func(_, _, _ int, s float64) float64 { return 0.5 * math.Tanh(s/0.5) }},
		{"causal", "alibi", func(_, q, kv int) bool { return kv <= q }, func(h, q, kv int, s float64) float64 { return s + alibiSlope(h, 4)*float64(kv-q) }},
		{"true", "score * 0.5", func(_, _, _ int) bool { return true }, func(_, _, _ int, s float64) float64 { return s * 0.5 }},
		{"kv > q + 1000", "score", func(_, q, kv int) bool { return kv > q+1000 }, identity}, // nothing visible: zeros
	}
	rng := rand.New(rand.NewPCG(5, 6))
	shapes := []attntest.Shape{
		{NumHeads: 4, NumKVHeads: 2, HeadDim: 8, NumQ: 50, SeqLen: 50},
		{NumHeads: 4, NumKVHeads: 1, HeadDim: 16, NumQ: 3, SeqLen: 70, Evict: 0.4},
	}
	for _, tt := range tests {
		for _, s := range shapes {
			p := attntest.Problem(rng, s)
			b, err := New(tt.mask, tt.score, 7, 16, 0)
			if err != nil {
				t.Fatal(err)
			}
			got := attntest.Clone(p)
			if err := b.Attend(context.Background(), got); err != nil {
				t.Fatal(err)
			}
			want := dense(p, tt.m, tt.s)
			if d := attntest.MaxDiff(got.Out, want); d > 2e-6 {
				t.Errorf("mask %q score %q shape %+v: max |flex − dense| = %g", tt.mask, tt.score, s, d)
			}
		}
	}
}

// TestSlidingWindowMatchesBuiltIn: an explicit window mask equals the
// engine's built-in sliding window of the same width (how Mistral runs).
func TestSlidingWindowMatchesBuiltIn(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	for _, w := range []int{1, 16, 64} {
		p := attntest.Problem(rng, attntest.Shape{NumHeads: 4, NumKVHeads: 2, HeadDim: 16, NumQ: 90, SeqLen: 100})
		want := attntest.Clone(p)
		want.SlidingWindow = w
		if err := (attention.Eager{}).Attend(context.Background(), want); err != nil {
			t.Fatal(err)
		}
		b, err := New(fmt.Sprintf("sliding_window(%d)", w), DefaultScore, 64, 64, 0)
		if err != nil {
			t.Fatal(err)
		}
		got := attntest.Clone(p)
		if err := b.Attend(context.Background(), got); err != nil {
			t.Fatal(err)
		}
		if d := attntest.MaxDiff(got.Out, want.Out); d > 2e-6 {
			t.Errorf("window %d: max diff %g", w, d)
		}
	}
}

// TestBlockSparsity checks the tile classification against a brute-force
// count: a causal prefill of 64 tokens in 8×8 tiles has, per head, 28
// empty tiles above the diagonal, 8 partial ones on it and 28 full ones
// below; a sliding window adds empty tiles far below the diagonal.
func TestBlockSparsity(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	p := attntest.Problem(rng, attntest.Shape{NumHeads: 2, NumKVHeads: 1, HeadDim: 4, NumQ: 64, SeqLen: 64})
	for _, tt := range []struct {
		mask string
		vis  func(q, kv int) bool
	}{
		{"causal", func(q, kv int) bool { return kv <= q }},
		{"sliding_window(12)", func(q, kv int) bool { return kv <= q && q-kv < 12 }},
		{"chunked(16)", func(q, kv int) bool { return kv <= q && q/16 == kv/16 }},
	} {
		var want tiled.Stats
		for qt := 0; qt < 64; qt += 8 {
			for kt := 0; kt < 64; kt += 8 {
				n := 0
				for q := qt; q < qt+8; q++ {
					for kv := kt; kv < kt+8; kv++ {
						if tt.vis(q, kv) {
							n++
						}
					}
				}
				switch n {
				case 0:
					want.Empty += 2
				case 64:
					want.Full += 2
				default:
					want.Partial += 2
				}
			}
		}
		b, err := New(tt.mask, DefaultScore, 8, 8, 1)
		if err != nil {
			t.Fatal(err)
		}
		got, err := b.AttendStats(context.Background(), attntest.Clone(p))
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s: tiles %+v, want %+v", tt.mask, got, want)
		}
		if tt.mask == "causal" && (want.Empty != 56 || want.Partial != 16 || want.Full != 56) {
			t.Errorf("causal brute force gave %+v", want)
		}
	}
}

func TestErrors(t *testing.T) {
	if _, err := New("q >", DefaultScore, 8, 8, 0); err == nil || !strings.Contains(err.Error(), "mask:1:4") {
		t.Errorf("bad mask: %v", err)
	}
	if _, err := New("causal", "softcap", 8, 8, 0); err == nil || !strings.Contains(err.Error(), "softcap needs 1 argument") {
		t.Errorf("bad score: %v", err)
	}
	if _, err := New("causal", "score", 0, 8, 0); err == nil {
		t.Error("zero block accepted")
	}
	b, err := New("q / (kv - 5) >= 0", DefaultScore, 8, 8, 0)
	if err != nil {
		t.Fatal(err)
	}
	p := attntest.Problem(rand.New(rand.NewPCG(1, 1)), attntest.Shapes[0])
	if err := b.Attend(context.Background(), p); err == nil || !strings.Contains(err.Error(), "integer division by zero") {
		t.Errorf("division by zero: %v", err)
	}
}
