package kvpolicy

import (
	"context"
	"fmt"

	"github.com/longctx/longctx/engine/kvcache"
)

// ScoreInput is one layer's cache as a scorer sees it: per KV head, keys
// and values [Len][HeadDim] and positions. The slices alias the cache and
// must not be modified or retained.
type ScoreInput struct {
	Layer, HeadDim int
	K, V           [][]float32
	Pos            [][]int
}

// Scorer scores cached tokens: per KV head, one score per token, higher
// meaning more worth keeping. A KV-cache compression method is a Scorer
// plus a Policy.
type Scorer interface {
	Score(ctx context.Context, in *ScoreInput) ([][]float32, error)
}

// ScorerFunc adapts a function to the Scorer interface.
type ScorerFunc func(ctx context.Context, in *ScoreInput) ([][]float32, error)

// Score calls f.
func (f ScorerFunc) Score(ctx context.Context, in *ScoreInput) ([][]float32, error) {
	return f(ctx, in)
}

// Compressor applies a Policy to a sequence's KV cache with the scores of
// a Scorer. The engine calls AfterPrefill once the prompt is in the cache
// and AfterStep after each decode step; both compact the cache in place,
// releasing the evicted tokens' memory.
type Compressor struct {
	policy  Policy
	scorer  Scorer
	evicted int64
}

// NewCompressor checks the policy and returns a compressor.
func NewCompressor(p Policy, s Scorer) (*Compressor, error) {
	if err := p.Validate(0); err != nil {
		return nil, err
	}
	if s == nil && !p.Inactive() {
		return nil, fmt.Errorf("kv compressor: policy %s needs a scorer", p)
	}
	return &Compressor{policy: p, scorer: s}, nil
}

// Policy returns the compressor's policy.
func (c *Compressor) Policy() Policy { return c.policy }

// Evicted returns the number of (layer, head, token) entries evicted so far.
func (c *Compressor) Evicted() int64 { return c.evicted }

// AfterPrefill compresses the prefilled cache: to floor(n·(1−Ratio)) per
// head for a Prefill policy, to the budget for a Decode policy.
func (c *Compressor) AfterPrefill(ctx context.Context, cache *kvcache.Cache) error {
	return c.compress(ctx, cache)
}

// AfterStep enforces a Decode policy's budget after a decode step; for a
// Prefill policy it does nothing.
func (c *Compressor) AfterStep(ctx context.Context, cache *kvcache.Cache) error {
	if c.policy.When != Decode {
		return nil
	}
	return c.compress(ctx, cache)
}

func (c *Compressor) compress(ctx context.Context, cache *kvcache.Cache) error {
	if c.policy.Inactive() {
		return nil
	}
	if err := c.policy.Validate(cache.Layers()); err != nil {
		return err
	}
	for layer := range cache.Layers() {
		if c.policy.Skips(layer) {
			continue
		}
		if err := c.compressLayer(ctx, cache, layer); err != nil {
			return fmt.Errorf("kv compression layer %d: %w", layer, err)
		}
	}
	return nil
}

func (c *Compressor) compressLayer(ctx context.Context, cache *kvcache.Cache, layer int) error {
	heads := cache.KVHeads()
	due := false
	for g := range heads {
		n := cache.Len(layer, g)
		if c.policy.Target(n) < n {
			due = true
			break
		}
	}
	if !due {
		return nil
	}
	view := cache.View(layer)
	in := &ScoreInput{Layer: layer, HeadDim: cache.HeadDim(), K: view.K, V: view.V, Pos: view.Pos}
	scores, err := c.scorer.Score(ctx, in)
	if err != nil {
		return fmt.Errorf("score: %w", err)
	}
	if len(scores) != heads {
		return fmt.Errorf("scorer returned %d score lists for %d KV heads", len(scores), heads)
	}
	keep := make([][]int, heads)
	var evicted int64
	for g := range heads {
		n := len(view.Pos[g])
		if len(scores[g]) != n {
			return fmt.Errorf("kv head %d: scorer returned %d scores for %d tokens", g, len(scores[g]), n)
		}
		if keep[g], err = Select(scores[g], c.policy.Target(n), c.policy.Sink, c.policy.Window); err != nil {
			return fmt.Errorf("kv head %d: %w", g, err)
		}
		evicted += int64(n - len(keep[g]))
	}
	if err := cache.Compact(layer, keep); err != nil {
		return err
	}
	c.evicted += evicted
	return nil
}
