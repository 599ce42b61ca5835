// Package tiled is the reference form of tiled attention shared by the
// flash and flex plugins: the FlashAttention-2 loop (query tiles × KV
// tiles with an online softmax) over a block mask that classifies each
// tile as empty, full or partial, with optional mask and score hooks.
// It runs on the CPU in fp32 and states, in plain Go, what the GPU kernels
// of those plugins compute.
package tiled

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/longctx/longctx/engine/attention"
	"github.com/longctx/longctx/engine/vec"
)

// Mask decides whether query head h at position q sees the key at
// position kv. Nil means the problem's own mask (attention.Visible with
// its sliding window).
type Mask func(h, q, kv int) (bool, error)

// ScoreMod rewrites a visible score ((q·k)·scale) of query head h at
// position q for the key at position kv. Nil means the identity.
type ScoreMod func(h, q, kv int, score float32) (float32, error)

// Config configures Attend.
type Config struct {
	// BlockQ and BlockKV are the tile sizes in query rows and keys.
	BlockQ, BlockKV int
	// Workers bounds the goroutines; 0 means GOMAXPROCS.
	Workers int
	Mask    Mask
	Score   ScoreMod
}

// Stats counts the tiles of each kind one Attend call met, summed over
// query heads: empty tiles are skipped, full tiles need no mask.
type Stats struct {
	Empty, Partial, Full int64
}

// TileKind classifies a (query tile, key tile) pair for one head.
type TileKind int

// Tile kinds.
const (
	Empty TileKind = iota
	Partial
	Full
)

// Attend computes p.Out tile by tile. A query row that sees no key gets
// zeros, as attention.Eager does.
func Attend(ctx context.Context, p *attention.Problem, c Config) (Stats, error) {
	if err := p.Validate(); err != nil {
		return Stats{}, err
	}
	if c.BlockQ <= 0 || c.BlockKV <= 0 {
		return Stats{}, fmt.Errorf("tiled attention: block sizes %d×%d must be positive", c.BlockQ, c.BlockKV)
	}
	mask := c.Mask
	if mask == nil {
		w := p.SlidingWindow
		mask = func(_, q, kv int) (bool, error) { return attention.Visible(q, kv, w), nil }
	}
	qTiles := (p.NumQ() + c.BlockQ - 1) / c.BlockQ
	items := qTiles * p.NumHeads
	workers := c.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = max(1, min(workers, items))

	var (
		next              atomic.Int64
		wg                sync.WaitGroup
		mu                sync.Mutex
		firstErr          error
		empty, part, full atomic.Int64
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	failed := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return firstErr != nil
	}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := newWorker(p, c)
			for {
				it := int(next.Add(1)) - 1
				if it >= items || failed() {
					return
				}
				if err := ctx.Err(); err != nil {
					fail(fmt.Errorf("attention layer %d: %w", p.Layer, err))
					return
				}
				st, err := w.item(p, it/p.NumHeads, it%p.NumHeads, mask, c.Score)
				if err != nil {
					fail(fmt.Errorf("attention layer %d head %d: %w", p.Layer, it%p.NumHeads, err))
					return
				}
				empty.Add(st.Empty)
				part.Add(st.Partial)
				full.Add(st.Full)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return Stats{}, firstErr
	}
	return Stats{Empty: empty.Load(), Partial: part.Load(), Full: full.Load()}, nil
}

// worker holds one goroutine's scratch: per-row running max, sum and
// accumulator, the tile's visibility and scores.
type worker struct {
	bq, bk int
	m, l   []float32
	acc    []float32 // [bq][headDim]
	vis    []bool    // [bq][bk]
	s      []float32 // [bk]
}

func newWorker(p *attention.Problem, c Config) *worker {
	return &worker{
		bq: c.BlockQ, bk: c.BlockKV,
		m: make([]float32, c.BlockQ), l: make([]float32, c.BlockQ),
		acc: make([]float32, c.BlockQ*p.HeadDim),
		vis: make([]bool, c.BlockQ*c.BlockKV), s: make([]float32, c.BlockKV),
	}
}

// item computes query tile qt of query head h.
func (w *worker) item(p *attention.Problem, qt, h int, mask Mask, score ScoreMod) (Stats, error) {
	var st Stats
	d := p.HeadDim
	g := h / (p.NumHeads / p.NumKVHeads)
	keys, values, kpos := p.K[g], p.V[g], p.KPos[g]
	r0, r1 := qt*w.bq, min((qt+1)*w.bq, p.NumQ())
	rows := r1 - r0
	negInf := float32(math.Inf(-1))
	for r := range rows {
		w.m[r], w.l[r] = negInf, 0
	}
	clear(w.acc[:rows*d])

	for c0 := 0; c0 < len(kpos); c0 += w.bk {
		c1 := min(c0+w.bk, len(kpos))
		cols := c1 - c0
		kind, err := w.classify(p, h, r0, rows, kpos[c0:c1], mask)
		if err != nil {
			return st, err
		}
		switch kind {
		case Empty:
			st.Empty++
			continue
		case Full:
			st.Full++
		case Partial:
			st.Partial++
		}
		for r := range rows {
			i := r0 + r
			q := p.Q[(i*p.NumHeads+h)*d : (i*p.NumHeads+h+1)*d]
			rowMax := negInf
			hit := false
			for c := range cols {
				if kind == Partial && !w.vis[r*w.bk+c] {
					continue
				}
				s := vec.Dot(q, keys[(c0+c)*d:(c0+c+1)*d]) * p.Scale
				if score != nil {
					if s, err = score(h, p.QPos[i], kpos[c0+c], s); err != nil {
						return st, err
					}
				}
				w.s[c] = s
				if !hit || s > rowMax {
					rowMax = s
				}
				hit = true
			}
			if !hit {
				continue
			}
			mNew := max(w.m[r], rowMax)
			if math.IsInf(float64(mNew), -1) {
				continue // every score so far is −inf: nothing to weight yet
			}
			acc := w.acc[r*d : (r+1)*d]
			if alpha := expf(w.m[r] - mNew); alpha != 1 {
				w.l[r] *= alpha
				for x := range acc {
					acc[x] *= alpha
				}
			}
			for c := range cols {
				if kind == Partial && !w.vis[r*w.bk+c] {
					continue
				}
				e := expf(w.s[c] - mNew)
				if e == 0 {
					continue
				}
				w.l[r] += e
				v := values[(c0+c)*d : (c0+c+1)*d]
				for x := range acc {
					acc[x] += e * v[x]
				}
			}
			w.m[r] = mNew
		}
	}
	for r := range rows {
		i := r0 + r
		out := p.Out[(i*p.NumHeads+h)*d : (i*p.NumHeads+h+1)*d]
		if w.l[r] == 0 {
			clear(out)
			continue
		}
		inv := 1 / w.l[r]
		acc := w.acc[r*d : (r+1)*d]
		for x := range out {
			out[x] = acc[x] * inv
		}
	}
	return st, nil
}

// classify evaluates the mask over a tile, leaving the visibility of each
// (row, key) in w.vis, and returns the tile's kind.
func (w *worker) classify(p *attention.Problem, h, r0, rows int, kpos []int, mask Mask) (TileKind, error) {
	seen := 0
	for r := range rows {
		q := p.QPos[r0+r]
		for c, kv := range kpos {
			v, err := mask(h, q, kv)
			if err != nil {
				return Empty, err
			}
			w.vis[r*w.bk+c] = v
			if v {
				seen++
			}
		}
	}
	switch seen {
	case 0:
		return Empty, nil
	case rows * len(kpos):
		return Full, nil
	}
	return Partial, nil
}

func expf(x float32) float32 { return float32(math.Exp(float64(x))) }
