package model

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/longctx/longctx/engine/attention"
	"github.com/longctx/longctx/engine/kvcache"
	"github.com/longctx/longctx/engine/model/rope"
)

// Sequence is one token stream being processed: its KV cache and scratch
// buffers. Sequences of one Model are independent; a Sequence itself is not
// safe for concurrent use.
type Sequence struct {
	m     *Model
	cache *kvcache.Cache
	buf   buffers
	// err is set when a forward pass stopped between layers: the cache then
	// holds a chunk in some layers only, and the sequence cannot continue.
	err error
}

// buffers are the activations of one forward pass, grown as needed.
type buffers struct {
	x, h, o   []float32 // [n][hidden]: residual stream, normed input, projection output
	q, att    []float32 // [n][heads·headDim]: queries, attention output
	k, v      []float32 // [n][kvHeads·headDim]
	gate, up  []float32 // [n][intermediate]
	positions []int
}

func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

func (b *buffers) size(c Config, n int) {
	h, q, kv := c.HiddenSize, c.NumHeads*c.HeadDim, c.NumKVHeads*c.HeadDim
	b.x, b.h, b.o = grow(b.x, n*h), grow(b.h, n*h), grow(b.o, n*h)
	b.q, b.att = grow(b.q, n*q), grow(b.att, n*q)
	b.k, b.v = grow(b.k, n*kv), grow(b.v, n*kv)
	b.gate, b.up = grow(b.gate, n*c.IntermediateSize), grow(b.up, n*c.IntermediateSize)
	if cap(b.positions) < n {
		b.positions = make([]int, n)
	}
	b.positions = b.positions[:n]
}

// NewSequence starts an empty sequence.
func (m *Model) NewSequence() (*Sequence, error) {
	c, err := kvcache.New(m.cfg.NumLayers, m.cfg.NumKVHeads, m.cfg.HeadDim)
	if err != nil {
		return nil, err
	}
	return &Sequence{m: m, cache: c}, nil
}

// Cache returns the sequence's KV cache, for inspection and compaction
// between forward passes.
func (s *Sequence) Cache() *kvcache.Cache { return s.cache }

// Len returns the number of positions consumed so far (evicted ones included).
func (s *Sequence) Len() int { return s.cache.NextPosition() }

// Prefill feeds tokens in chunks of chunkSize (0: all at once) and returns
// the logits at the last position. Chunking changes memory use and speed,
// not results: every row goes through the same arithmetic either way.
func (s *Sequence) Prefill(ctx context.Context, tokens []int, chunkSize int) ([]float32, error) {
	if len(tokens) == 0 {
		return nil, errors.New("prefill: no tokens")
	}
	if chunkSize <= 0 || chunkSize > len(tokens) {
		chunkSize = len(tokens)
	}
	var logits []float32
	for start := 0; start < len(tokens); start += chunkSize {
		end := min(start+chunkSize, len(tokens))
		var err error
		if logits, err = s.forward(ctx, tokens[start:end], end == len(tokens)); err != nil {
			return nil, err
		}
	}
	return logits, nil
}

// Decode feeds one token and returns the logits for the next.
func (s *Sequence) Decode(ctx context.Context, token int) ([]float32, error) {
	return s.forward(ctx, []int{token}, true)
}

// forward runs tokens through the model at the next positions, appending
// their keys and values to the cache, and returns the logits of the last
// token when wantLogits is set.
func (s *Sequence) forward(ctx context.Context, tokens []int, wantLogits bool) ([]float32, error) {
	if s.err != nil {
		return nil, s.err
	}
	m, c := s.m, s.m.cfg
	for i, t := range tokens {
		if t < 0 || t >= c.VocabSize {
			return nil, fmt.Errorf("token %d (at %d) is outside the vocabulary [0,%d)", t, i, c.VocabSize)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	n := len(tokens)
	hidden := c.HiddenSize
	eps := float32(c.RMSNormEps)
	b := &s.buf
	b.size(c, n)
	start := s.cache.NextPosition()
	for i := range b.positions {
		b.positions[i] = start + i
	}
	angles := rope.NewTable(m.invFreq, b.positions)

	// With NumericsBF16 the embedding rows are bf16 already (the weights
	// are), as core_embed copies them: no rounding needed.
	for i, t := range tokens {
		m.w.embed.ReadRow(b.x[i*hidden:(i+1)*hidden], t)
	}
	for li := range m.w.layers {
		if li > 0 { // the first layer starts after the check above
			if err := ctx.Err(); err != nil {
				s.err = fmt.Errorf("sequence unusable: forward pass interrupted at layer %d: %w", li, err)
				return nil, err
			}
		}
		if err := s.layer(ctx, li, n, eps, angles); err != nil {
			s.err = fmt.Errorf("sequence unusable: forward pass failed at layer %d: %w", li, err)
			return nil, fmt.Errorf("layer %d: %w", li, err)
		}
	}
	if !wantLogits {
		return nil, nil
	}
	last := b.x[(n-1)*hidden : n*hidden]
	normed := b.h[:hidden]
	m.ar.rmsNorm(normed, last, m.w.norm, eps)
	logits := make([]float32, c.VocabSize)
	m.mul(m.w.lmHead, logits, normed, 1, nil) // bf16: the lm_head GEMM writes bf16 logits
	return logits, nil
}

// layer runs decoder layer li over the n rows of the residual stream b.x.
// The arithmetic (m.ar) is fp32, or bf16 with a rounding wherever the GPU
// engine's layer (engine/gpu/forward.go) stores a bf16 tensor; see
// bf16Arith for which kernel each rounding mirrors.
func (s *Sequence) layer(ctx context.Context, li, n int, eps float32, angles rope.Table) error {
	m, c, b := s.m, s.m.cfg, &s.buf
	w := &m.w.layers[li]
	d := c.HeadDim

	m.ar.rmsNorm(b.h, b.x, w.inNorm, eps)
	m.mul(w.q, b.q, b.h, n, w.qBias)
	m.mul(w.k, b.k, b.h, n, w.kBias)
	m.mul(w.v, b.v, b.h, n, w.vBias)
	if c.QKNorm {
		// Each head's vector is normalised on its own: rows of head_dim.
		m.ar.rmsNorm(b.q, b.q, w.qNorm, eps)
		m.ar.rmsNorm(b.k, b.k, w.kNorm, eps)
	}
	for i := range n {
		for h := range c.NumHeads {
			m.ar.rotate(angles, b.q[(i*c.NumHeads+h)*d:], i)
		}
		for h := range c.NumKVHeads {
			m.ar.rotate(angles, b.k[(i*c.NumKVHeads+h)*d:], i)
		}
	}
	// bf16: the cache receives bf16 values, the rotated keys and the v
	// projection's output, as core_qkv_rope_append writes them to the
	// GPU's bf16 cache.
	if err := s.cache.Append(li, b.k, b.v, b.positions); err != nil {
		return err
	}
	view := s.cache.View(li)
	p := &attention.Problem{
		NumHeads:      c.NumHeads,
		NumKVHeads:    c.NumKVHeads,
		HeadDim:       d,
		Scale:         float32(1 / math.Sqrt(float64(d))),
		Q:             b.q,
		QPos:          b.positions,
		K:             view.K,
		V:             view.V,
		KPos:          view.Pos,
		SlidingWindow: c.Window(li),
		Layer:         li,
		Out:           b.att,
	}
	if err := m.attn.Attend(ctx, p); err != nil {
		return fmt.Errorf("attention (%s): %w", m.attn.Name(), err)
	}
	m.mul(w.o, b.o, b.att, n, w.oBias)
	m.ar.residual(b.x, b.o)

	m.ar.rmsNorm(b.h, b.x, w.postNorm, eps)
	m.mul(w.gate, b.gate, b.h, n, w.gateBias)
	m.mul(w.up, b.up, b.h, n, w.upBias)
	m.ar.swiGLU(b.gate, b.up)
	m.mul(w.down, b.o, b.gate, n, w.downBias)
	m.ar.residual(b.x, b.o)
	return nil
}
