// Package attntest builds random attention problems for the tests of the
// attention plugins, including the shapes KV compaction produces (KV heads
// of different lengths, gaps in positions).
package attntest

import (
	"math"
	"math/rand/v2"

	"github.com/longctx/longctx/engine/attention"
)

// Shape describes a random problem.
type Shape struct {
	NumHeads, NumKVHeads, HeadDim int
	// NumQ query rows at the last NumQ positions of a sequence of SeqLen.
	NumQ, SeqLen  int
	SlidingWindow int
	// Evict, in [0, 1), drops that fraction of cached tokens per KV head at
	// random (the query rows' own positions stay), as compaction would.
	Evict float64
}

// Problem returns a random problem of the shape with Out allocated.
func Problem(rng *rand.Rand, s Shape) *attention.Problem {
	p := &attention.Problem{
		NumHeads: s.NumHeads, NumKVHeads: s.NumKVHeads, HeadDim: s.HeadDim,
		Scale: float32(1 / math.Sqrt(float64(s.HeadDim))), SlidingWindow: s.SlidingWindow,
	}
	first := s.SeqLen - s.NumQ
	for i := range s.NumQ {
		p.QPos = append(p.QPos, first+i)
	}
	p.Q = normals(rng, s.NumQ*s.NumHeads*s.HeadDim, 1.5)
	p.Out = make([]float32, len(p.Q))
	for range s.NumKVHeads {
		var pos []int
		for t := range s.SeqLen {
			if t < first && rng.Float64() < s.Evict {
				continue
			}
			pos = append(pos, t)
		}
		p.KPos = append(p.KPos, pos)
		p.K = append(p.K, normals(rng, len(pos)*s.HeadDim, 1.5))
		p.V = append(p.V, normals(rng, len(pos)*s.HeadDim, 1))
	}
	return p
}

func normals(rng *rand.Rand, n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * scale)
	}
	return v
}

// Clone returns a copy of p with a fresh, zeroed Out.
func Clone(p *attention.Problem) *attention.Problem {
	c := *p
	c.Out = make([]float32, len(p.Out))
	return &c
}

// MaxDiff returns the largest absolute difference between a and b.
func MaxDiff(a, b []float32) float64 {
	var worst float64
	for i := range a {
		worst = max(worst, math.Abs(float64(a[i])-float64(b[i])))
	}
	return worst
}

// Shapes are the shapes the plugin tests run: MHA and GQA, prefill and
// decode, sliding windows, compacted caches, head dims that are not
// multiples of 4 or of the tile size.
var Shapes = []Shape{
	{NumHeads: 4, NumKVHeads: 4, HeadDim: 16, NumQ: 37, SeqLen: 37},
	{NumHeads: 8, NumKVHeads: 2, HeadDim: 32, NumQ: 50, SeqLen: 70},
	{NumHeads: 4, NumKVHeads: 2, HeadDim: 7, NumQ: 1, SeqLen: 129},
	{NumHeads: 4, NumKVHeads: 1, HeadDim: 16, NumQ: 40, SeqLen: 90, SlidingWindow: 16},
	{NumHeads: 6, NumKVHeads: 3, HeadDim: 8, NumQ: 1, SeqLen: 200, SlidingWindow: 33},
	{NumHeads: 4, NumKVHeads: 2, HeadDim: 16, NumQ: 12, SeqLen: 100, Evict: 0.6},
	{NumHeads: 2, NumKVHeads: 2, HeadDim: 4, NumQ: 3, SeqLen: 60, SlidingWindow: 5, Evict: 0.9},
}
