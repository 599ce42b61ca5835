// Package flex is programmable attention in the spirit of PyTorch
// FlexAttention: a mask expression decides which keys each query sees and
// a score expression rewrites each visible score, both in Go syntax over
// b, h, q, kv (and score), with presets (causal, model, sliding_window(W),
// prefix_lm(P), chunked(C), alibi, softcap(c)); see package expr.
//
// The reference implementation is block-sparse FlashAttention-2: each
// (query tile, key tile) pair is classified from the mask as empty
// (skipped), full (no mask evaluated while attending) or partial, as
// FlexAttention's BlockMask does; the CUDA translation of the expressions
// comes with the GPU kernels.
package flex

import (
	"context"
	"fmt"

	"github.com/longctx/longctx/engine/attention"
	"github.com/longctx/longctx/plugins/attention/flex/expr"
	"github.com/longctx/longctx/plugins/attention/internal/tiled"
	"github.com/longctx/longctx/plugins/sdk"
)

// Version is the plugin's version.
const Version = "0.1.0"

// Default expressions: the model's own mask, scores unchanged.
const (
	DefaultMask  = "model"
	DefaultScore = "score"
)

// Backend is the reference implementation of one mask and score.
type Backend struct {
	mask, score              *expr.Program
	blockQ, blockKV, workers int
}

var _ attention.Backend = (*Backend)(nil)

// New compiles the expressions. Tile sizes must be positive.
func New(mask, score string, blockQ, blockKV, workers int) (*Backend, error) {
	m, err := expr.Compile(expr.MaskExpr, mask)
	if err != nil {
		return nil, err
	}
	s, err := expr.Compile(expr.ScoreExpr, score)
	if err != nil {
		return nil, err
	}
	if blockQ <= 0 || blockKV <= 0 {
		return nil, fmt.Errorf("flex: block sizes %d×%d must be positive", blockQ, blockKV)
	}
	return &Backend{mask: m, score: s, blockQ: blockQ, blockKV: blockKV, workers: workers}, nil
}

// Name returns "flex".
func (*Backend) Name() string { return "flex" }

// Attend computes p.Out.
func (b *Backend) Attend(ctx context.Context, p *attention.Problem) error {
	_, err := b.AttendStats(ctx, p)
	return err
}

// AttendStats computes p.Out and reports how many tiles were empty,
// partial and full.
func (b *Backend) AttendStats(ctx context.Context, p *attention.Problem) (tiled.Stats, error) {
	window, heads := int64(p.SlidingWindow), int64(p.NumHeads)
	mask := func(h, q, kv int) (bool, error) {
		return b.mask.EvalBool(expr.Vars{H: int64(h), Q: int64(q), KV: int64(kv), Window: window, NumHeads: heads})
	}
	var score tiled.ScoreMod
	if b.score.Source() != DefaultScore {
		score = func(h, q, kv int, s float32) (float32, error) {
			v, err := b.score.EvalFloat(expr.Vars{H: int64(h), Q: int64(q), KV: int64(kv), Score: float64(s), Window: window, NumHeads: heads})
			return float32(v), err
		}
	}
	return tiled.Attend(ctx, p, tiled.Config{BlockQ: b.blockQ, BlockKV: b.blockKV, Workers: b.workers, Mask: mask, Score: score})
}

// Plugin returns the plugin's declaration for sdk.Serve.
func Plugin() *sdk.Attention {
	return &sdk.Attention{
		Info: sdk.Info{
			Name:    "flex",
			Version: Version,
			Summary: "programmable attention: mask and score expressions over b, h, q, kv, score, block-sparse",
			Capabilities: sdk.Capabilities{
				DTypes: []string{"f32"}, GQA: true, Causal: true, SlidingWindow: true,
				Devices: []string{"cpu"},
			},
		},
		Options: []sdk.Option{
			{Name: "mask", Type: sdk.String, Default: DefaultMask,
				Help: "which keys a query sees: Go expression over b, h, q, kv or a preset: model (the model's own mask), causal, sliding_window(W), prefix_lm(P), chunked(C)"},
			{Name: "score", Type: sdk.String, Default: DefaultScore,
				Help: "rewrites the scaled score: Go expression over b, h, q, kv, score or a preset: alibi, softcap(c)"},
			{Name: "block_q", Type: sdk.Int, Default: "64", Min: sdk.Bound(1), Max: sdk.Bound(1024), Help: "query rows per tile"},
			{Name: "block_kv", Type: sdk.Int, Default: "64", Min: sdk.Bound(1), Max: sdk.Bound(1024), Help: "keys per tile"},
			{Name: "workers", Type: sdk.Int, Default: "0", Min: sdk.Bound(0), Help: "goroutines of the reference implementation; 0 means all CPUs"},
		},
		Prepare: func(_ context.Context, req *sdk.PrepareRequest) (*sdk.AttentionPlan, error) {
			o := req.Options
			b, err := New(o.String("mask"), o.String("score"), o.Int("block_q"), o.Int("block_kv"), o.Int("workers"))
			if err != nil {
				return nil, err
			}
			return &sdk.AttentionPlan{Reference: b}, nil
		},
	}
}
