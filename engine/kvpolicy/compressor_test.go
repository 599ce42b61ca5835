package kvpolicy

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/longctx/longctx/engine/kvcache"
)

// fill appends n tokens to every layer of a fresh cache. Each key's first
// element encodes (layer, head, position) so tests can see which token
// survived where.
func fill(t *testing.T, layers, heads, dim, n int) *kvcache.Cache {
	t.Helper()
	c, err := kvcache.New(layers, heads, dim)
	if err != nil {
		t.Fatal(err)
	}
	appendTokens(t, c, 0, n)
	return c
}

func appendTokens(t *testing.T, c *kvcache.Cache, from, n int) {
	t.Helper()
	heads, dim := c.KVHeads(), c.HeadDim()
	pos := make([]int, n)
	for i := range pos {
		pos[i] = from + i
	}
	for l := range c.Layers() {
		k := make([]float32, n*heads*dim)
		v := make([]float32, n*heads*dim)
		for i := range n {
			for g := range heads {
				off := (i*heads + g) * dim
				k[off] = float32(l*10000 + g*1000 + from + i)
				v[off] = -k[off]
			}
		}
		if err := c.Append(l, k, v, pos); err != nil {
			t.Fatal(err)
		}
	}
}

// hashScorer gives each token a pseudo-random score derived from its
// layer, head and position, so selection differs per head.
var hashScorer = ScorerFunc(func(_ context.Context, in *ScoreInput) ([][]float32, error) {
	out := make([][]float32, len(in.Pos))
	for g, pos := range in.Pos {
		out[g] = make([]float32, len(pos))
		for i, p := range pos {
			if in.K[g][i*in.HeadDim] != float32(in.Layer*10000+g*1000+p) {
				return nil, errors.New("scorer input does not match the cache")
			}
			out[g][i] = hashScore(in.Layer, g, p)
		}
	}
	return out, nil
})

func hashScore(l, g, p int) float32 {
	x := uint64(l*131071+g*8191+p) * 0x9E3779B97F4A7C15
	x ^= x >> 29
	return float32(x%100003) / 100003
}

// wantKeep computes the kept positions from the definition, independently
// of Select: the target highest-scoring positions.
func wantKeep(l, g int, pos []int, target int) []int {
	ranked := slices.Clone(pos)
	slices.SortStableFunc(ranked, func(a, b int) int {
		sa, sb := hashScore(l, g, a), hashScore(l, g, b)
		switch {
		case sa > sb:
			return -1
		case sa < sb:
			return 1
		}
		return 0
	})
	keep := ranked[:target]
	slices.Sort(keep)
	return keep
}

func TestCompressorPrefill(t *testing.T) {
	for _, ratio := range []float64{0.25, 0.5, 0.75} {
		for _, skip := range [][]int{nil, {0, 1}} {
			c := fill(t, 4, 2, 4, 48)
			before := c.Bytes()
			comp, err := NewCompressor(Policy{When: Prefill, Ratio: ratio, SkipLayers: skip}, hashScorer)
			if err != nil {
				t.Fatal(err)
			}
			if err := comp.AfterPrefill(context.Background(), c); err != nil {
				t.Fatal(err)
			}
			kept := int(math.Floor(48 * (1 - ratio)))
			var wantTokens int64
			for l := range 4 {
				view := c.View(l)
				for g := range 2 {
					var want []int
					if slices.Contains(skip, l) {
						want = identity(48)
					} else {
						want = wantKeep(l, g, identity(48), kept)
					}
					wantTokens += int64(len(want))
					if !slices.Equal(view.Pos[g], want) {
						t.Fatalf("ratio %v skip %v layer %d head %d: kept %v, want %v", ratio, skip, l, g, view.Pos[g], want)
					}
					for i, p := range view.Pos[g] {
						if view.K[g][i*4] != float32(l*10000+g*1000+p) || view.V[g][i*4] != -view.K[g][i*4] {
							t.Fatalf("layer %d head %d: key/value of position %d moved", l, g, p)
						}
					}
				}
			}
			if c.Tokens() != wantTokens || c.Bytes() != wantTokens*kvcache.TokenBytes(4, 4) || c.Bytes() >= before {
				t.Fatalf("ratio %v: %d tokens, %d bytes (before %d)", ratio, c.Tokens(), c.Bytes(), before)
			}
			if comp.Evicted() != 4*2*48-wantTokens {
				t.Fatalf("Evicted %d, want %d", comp.Evicted(), 4*2*48-wantTokens)
			}
			if c.NextPosition() != 48 {
				t.Fatalf("NextPosition %d after compaction, want 48", c.NextPosition())
			}
			// AfterStep does nothing for a prefill policy.
			appendTokens(t, c, 48, 1)
			tokens := c.Tokens()
			if err := comp.AfterStep(context.Background(), c); err != nil || c.Tokens() != tokens {
				t.Fatalf("AfterStep changed a prefill-compressed cache: %v", err)
			}
		}
	}
}

func TestCompressorDecodeBudget(t *testing.T) {
	c := fill(t, 2, 2, 4, 20)
	comp, err := NewCompressor(Policy{When: Decode, Budget: 8, Sink: 2, Window: 1, SkipLayers: []int{1}}, hashScorer)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := comp.AfterPrefill(ctx, c); err != nil {
		t.Fatal(err)
	}
	// Simulate the budget one step at a time and compare with the cache.
	want := [2][]int{identity(20), identity(20)}
	evictOver := func(g int) {
		pos := want[g]
		n := len(pos)
		if n <= 8 {
			return
		}
		free := slices.Clone(pos[2 : n-1])
		keepFree := wantKeep(0, g, free, 8-3)
		want[g] = append(append(slices.Clone(pos[:2]), keepFree...), pos[n-1])
	}
	evictOver(0)
	evictOver(1)
	for step := range 6 {
		for g := range 2 {
			if got := c.View(0).Pos[g]; !slices.Equal(got, want[g]) {
				t.Fatalf("step %d head %d: kept %v, want %v", step, g, got, want[g])
			}
			if c.Len(1, g) != 20+step {
				t.Fatalf("skipped layer 1 head %d holds %d tokens, want %d", g, c.Len(1, g), 20+step)
			}
		}
		appendTokens(t, c, 20+step, 1)
		for g := range 2 {
			want[g] = append(want[g], 20+step)
			evictOver(g)
		}
		if err := comp.AfterStep(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCompressorInactive(t *testing.T) {
	c := fill(t, 2, 2, 4, 10)
	comp, err := NewCompressor(Policy{When: Prefill}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := comp.AfterPrefill(context.Background(), c); err != nil || c.Tokens() != 40 {
		t.Fatalf("inactive policy: %v, %d tokens", err, c.Tokens())
	}
	if _, err := NewCompressor(Policy{When: Prefill, Ratio: 0.5}, nil); err == nil {
		t.Fatal("active policy without scorer accepted")
	}
	if _, err := NewCompressor(Policy{When: Decode}, hashScorer); err == nil {
		t.Fatal("invalid policy accepted")
	}
}

func TestCompressorScorerFaults(t *testing.T) {
	tests := []struct {
		name   string
		scorer ScorerFunc
		err    string
	}{
		{"error", func(context.Context, *ScoreInput) ([][]float32, error) { return nil, errors.New("boom") }, "layer 0: score: boom"},
		{"too few heads", func(context.Context, *ScoreInput) ([][]float32, error) { return [][]float32{{1}}, nil }, "1 score lists for 2 KV heads"},
		{"short head", func(_ context.Context, in *ScoreInput) ([][]float32, error) {
			return [][]float32{make([]float32, len(in.Pos[0])), {1, 2}}, nil
		}, "kv head 1: scorer returned 2 scores for 10 tokens"},
		{"nan", func(_ context.Context, in *ScoreInput) ([][]float32, error) {
			s := [][]float32{make([]float32, 10), make([]float32, 10)}
			s[1][3] = float32(math.NaN())
			return s, nil
		}, "kv head 1: kv select: score of token 3 is NaN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fill(t, 2, 2, 4, 10)
			comp, err := NewCompressor(Policy{When: Prefill, Ratio: 0.5}, tt.scorer)
			if err != nil {
				t.Fatal(err)
			}
			err = comp.AfterPrefill(context.Background(), c)
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("error %v, want one containing %q", err, tt.err)
			}
			if c.Tokens() != 40 {
				t.Fatalf("a failed compression changed the cache: %d tokens", c.Tokens())
			}
		})
	}
}

func TestCompressorSkipLayersOutOfRange(t *testing.T) {
	c := fill(t, 2, 1, 4, 4)
	comp, err := NewCompressor(Policy{When: Prefill, Ratio: 0.5, SkipLayers: []int{5}}, hashScorer)
	if err != nil {
		t.Fatal(err)
	}
	if err := comp.AfterPrefill(context.Background(), c); err == nil || !strings.Contains(err.Error(), "skip_layers[0] = 5 out of range [0,2)") {
		t.Fatalf("error %v", err)
	}
}
