package attention

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/longctx/longctx/engine/vec"
)

// Eager is the reference attention backend. Like transformers'
// eager_attention_forward it materialises each query's full score row
// ((q·k) × Scale), masks it, takes a max-subtracted softmax in fp32 and
// multiplies the probabilities by V. It runs on the CPU, parallel over
// (query row, KV head) pairs.
//
// A query row that sees no key at all (possible only after KV compaction or
// with a position-less query) gets an all-zero output; transformers has no
// such case, and zeros keep the output finite and deterministic.
type Eager struct {
	// Workers bounds the goroutines used; 0 means runtime.GOMAXPROCS(0).
	Workers int
}

var _ Backend = Eager{}

// Name returns "eager".
func (Eager) Name() string { return "eager" }

// Attend computes p.Out.
func (e Eager) Attend(ctx context.Context, p *Problem) error {
	return attendParallel(ctx, p, e.Workers, attendGroup)
}

// groupFunc computes query row i for every query head that reads KV head
// g, with scores as scratch of at least the longest KV head's length.
type groupFunc func(p *Problem, i, g int, scores []float32)

// attendParallel validates p and runs group over every (query row, KV
// head) pair on up to workers goroutines (<= 0: GOMAXPROCS).
func attendParallel(ctx context.Context, p *Problem, workers int, group groupFunc) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	items := p.NumQ() * p.NumKVHeads
	if items == 0 {
		return nil
	}
	maxLen := 0
	for _, pos := range p.KPos {
		maxLen = max(maxLen, len(pos))
	}
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, items)

	// Items are handed out in small batches so that uneven work (queries
	// late in a causal prefill see more keys) still spreads over workers.
	const batch = 4
	var next atomic.Int64
	var wg sync.WaitGroup
	var cancelled atomic.Bool
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			scores := make([]float32, maxLen)
			for {
				start := int(next.Add(batch)) - batch
				if start >= items || cancelled.Load() {
					return
				}
				if ctx.Err() != nil {
					cancelled.Store(true)
					return
				}
				for it := start; it < min(start+batch, items); it++ {
					group(p, it/p.NumKVHeads, it%p.NumKVHeads, scores)
				}
			}
		}()
	}
	wg.Wait()
	if cancelled.Load() {
		return fmt.Errorf("attention layer %d: %w", p.Layer, ctx.Err())
	}
	return nil
}

// attendGroup computes query row i for every query head that reads KV head g.
func attendGroup(p *Problem, i, g int, scores []float32) { attendRows(p, i, g, scores, false) }

// attendGroupBF16 is attendGroup with EagerBF16's roundings.
func attendGroupBF16(p *Problem, i, g int, scores []float32) { attendRows(p, i, g, scores, true) }

// attendRows computes query row i for every query head that reads KV head
// g, in fp32 or, with bf16, rounding S, P and the output as EagerBF16
// describes. The switch is a branch per key, not a call: the fp32 path
// stays as fast as it was.
func attendRows(p *Problem, i, g int, scores []float32, bf16 bool) {
	d := p.HeadDim
	group := p.NumHeads / p.NumKVHeads
	keys, values, kpos := p.K[g], p.V[g], p.KPos[g]
	qpos := p.QPos[i]
	scores = scores[:len(kpos)]
	for h := g * group; h < (g+1)*group; h++ {
		off := (i*p.NumHeads + h) * d
		q := p.Q[off : off+d]
		out := p.Out[off : off+d]
		clear(out)

		maxScore := float32(math.Inf(-1))
		visible := false
		for j, kp := range kpos {
			if !Visible(qpos, kp, p.SlidingWindow) {
				scores[j] = float32(math.Inf(-1))
				continue
			}
			s := vec.Dot(q, keys[j*d:(j+1)*d])
			if bf16 {
				// The matmul stores bf16, "* scaling" rounds again.
				s = vec.RoundBF16(vec.RoundBF16(s) * p.Scale)
			} else {
				s *= p.Scale
			}
			scores[j] = s
			if !visible || s > maxScore {
				maxScore = s
			}
			visible = true
		}
		if !visible {
			continue
		}
		var sum float32
		for j, s := range scores {
			if math.IsInf(float64(s), -1) {
				scores[j] = 0
				continue
			}
			e := float32(math.Exp(float64(s - maxScore)))
			scores[j] = e
			sum += e
		}
		// Normalise first and then weight V, as softmax followed by a matmul does.
		inv := 1 / sum
		for j, e := range scores {
			if e == 0 {
				continue
			}
			w := e * inv
			if bf16 {
				// P = bf16(exp / sum), dividing as the plugin's softmax
				// kernel does (the reciprocal's product can differ in the
				// last fp32 bit, and so in the rounding).
				w = vec.RoundBF16(e / sum)
			}
			vec.Axpy(out, w, values[j*d:(j+1)*d])
		}
		if bf16 {
			vec.RoundBF16s(out) // the matmul stores O in bf16
		}
	}
}
