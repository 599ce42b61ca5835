// Package attention defines the seam between the engine and attention
// implementations: one layer's attention for one sequence, posed as a
// Problem over explicit token positions, and the Backend interface that
// solves it. The engine's built-in Eager backend is the fp32 reference the
// plugin backends (eager, flash, flex) and GPU kernels are checked against;
// EagerBF16 is its twin with the bf16 roundings of the GPU eager kernels.
package attention

import (
	"context"
	"fmt"
	"math"
)

// Problem is one layer's attention for one sequence: NumQ query rows
// against the cached keys and values of each KV head.
//
// Keys carry explicit positions rather than being assumed to sit at
// 0..n-1: after KV compaction the kept tokens keep their original positions,
// and the lengths of the KV heads may differ. Grouped-query attention is
// expressed without expanding K and V: query head h reads KV head
// h / (NumHeads / NumKVHeads).
type Problem struct {
	NumHeads, NumKVHeads, HeadDim int
	// Scale multiplies q·k before the softmax (1/sqrt(HeadDim) for the
	// families the engine runs).
	Scale float32
	// Q is [NumQ][NumHeads][HeadDim], row-major: the layout of the q
	// projection's output, so no transpose is needed.
	Q []float32
	// QPos is the absolute position of each query row; NumQ = len(QPos).
	QPos []int
	// K and V hold, per KV head, [Len(kvh)][HeadDim] row-major.
	K, V [][]float32
	// KPos holds, per KV head, the absolute position of each cached token.
	KPos [][]int
	// SlidingWindow, when positive, limits each query to keys less than
	// SlidingWindow positions behind it; 0 means no window.
	SlidingWindow int
	// Layer is the decoder layer index, for backends that keep per-layer state
	// or report per-layer statistics.
	Layer int
	// Out is [NumQ][NumHeads][HeadDim], written by the backend: the layout the
	// output projection reads.
	Out []float32
}

// Backend computes attention. Implementations must write every element of
// p.Out and must not retain p's slices after Attend returns: they alias the
// engine's KV cache and scratch buffers.
type Backend interface {
	Name() string
	Attend(ctx context.Context, p *Problem) error
}

// NumQ returns the number of query rows.
func (p *Problem) NumQ() int { return len(p.QPos) }

// Visible reports whether a key at position kPos is visible to a query at
// position qPos: causal by position, and within the sliding window if there
// is one. This is the mask every backend must implement. It matches
// transformers' causal_mask_function (kv_idx <= q_idx) combined with
// sliding_window_overlay (kv_idx > q_idx - sliding_window).
func Visible(qPos, kPos, slidingWindow int) bool {
	return kPos <= qPos && (slidingWindow <= 0 || qPos-kPos < slidingWindow)
}

// Validate checks that the shapes in p are consistent, so a backend never
// indexes out of range on a malformed problem (for instance one decoded
// from a plugin's RPC).
func (p *Problem) Validate() error {
	switch {
	case p.NumHeads <= 0 || p.NumKVHeads <= 0 || p.HeadDim <= 0:
		return fmt.Errorf("attention problem (layer %d): heads %d, kv heads %d, head dim %d must be positive", p.Layer, p.NumHeads, p.NumKVHeads, p.HeadDim)
	case p.NumHeads%p.NumKVHeads != 0:
		return fmt.Errorf("attention problem (layer %d): %d heads not a multiple of %d kv heads", p.Layer, p.NumHeads, p.NumKVHeads)
	case p.SlidingWindow < 0:
		return fmt.Errorf("attention problem (layer %d): negative sliding window %d", p.Layer, p.SlidingWindow)
	case math.IsNaN(float64(p.Scale)) || math.IsInf(float64(p.Scale), 0):
		return fmt.Errorf("attention problem (layer %d): scale %v is not finite", p.Layer, p.Scale)
	}
	row := p.NumHeads * p.HeadDim
	if len(p.Q) != p.NumQ()*row {
		return fmt.Errorf("attention problem (layer %d): Q has %d values, want %d query rows × %d heads × %d", p.Layer, len(p.Q), p.NumQ(), p.NumHeads, p.HeadDim)
	}
	if len(p.Out) != len(p.Q) {
		return fmt.Errorf("attention problem (layer %d): Out has %d values, want %d", p.Layer, len(p.Out), len(p.Q))
	}
	if len(p.K) != p.NumKVHeads || len(p.V) != p.NumKVHeads || len(p.KPos) != p.NumKVHeads {
		return fmt.Errorf("attention problem (layer %d): K, V, KPos have %d, %d, %d heads, want %d", p.Layer, len(p.K), len(p.V), len(p.KPos), p.NumKVHeads)
	}
	for h := range p.NumKVHeads {
		n := len(p.KPos[h])
		if len(p.K[h]) != n*p.HeadDim || len(p.V[h]) != n*p.HeadDim {
			return fmt.Errorf("attention problem (layer %d): kv head %d: K has %d values, V %d, want %d positions × %d", p.Layer, h, len(p.K[h]), len(p.V[h]), n, p.HeadDim)
		}
	}
	return nil
}
