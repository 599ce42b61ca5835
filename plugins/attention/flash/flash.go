// Package flash is the FlashAttention-2 plugin. Its reference
// implementation walks query tiles × key tiles with an online softmax
// (running max and sum per row, the accumulator rescaled as the max
// grows), never materialising a score row; it equals eager attention
// within fp32 rounding.
package flash

import (
	"context"

	"github.com/longctx/longctx/engine/attention"
	"github.com/longctx/longctx/plugins/attention/internal/tiled"
	"github.com/longctx/longctx/plugins/sdk"
)

// Version is the plugin's version.
const Version = "0.1.0"

// Backend is the reference implementation.
type Backend struct {
	BlockQ, BlockKV, Workers int
}

var _ attention.Backend = Backend{}

// Name returns "flash".
func (Backend) Name() string { return "flash" }

// Attend computes p.Out with the tiled online softmax.
func (b Backend) Attend(ctx context.Context, p *attention.Problem) error {
	_, err := tiled.Attend(ctx, p, tiled.Config{BlockQ: b.BlockQ, BlockKV: b.BlockKV, Workers: b.Workers})
	return err
}

// Plugin returns the plugin's declaration for sdk.Serve.
func Plugin() *sdk.Attention {
	return &sdk.Attention{
		Info: sdk.Info{
			Name:    "flash",
			Version: Version,
			Summary: "tiled online-softmax attention (FlashAttention-2 algorithm)",
			Capabilities: sdk.Capabilities{
				DTypes: []string{"f32"}, GQA: true, Causal: true, SlidingWindow: true,
				Devices: []string{"cpu"},
			},
		},
		Options: []sdk.Option{
			{Name: "block_q", Type: sdk.Int, Default: "64", Min: sdk.Bound(1), Max: sdk.Bound(1024), Help: "query rows per tile"},
			{Name: "block_kv", Type: sdk.Int, Default: "64", Min: sdk.Bound(1), Max: sdk.Bound(1024), Help: "keys per tile"},
			{Name: "workers", Type: sdk.Int, Default: "0", Min: sdk.Bound(0), Help: "goroutines of the reference implementation; 0 means all CPUs"},
		},
		Prepare: func(_ context.Context, req *sdk.PrepareRequest) (*sdk.AttentionPlan, error) {
			o := req.Options
			return &sdk.AttentionPlan{Reference: Backend{BlockQ: o.Int("block_q"), BlockKV: o.Int("block_kv"), Workers: o.Int("workers")}}, nil
		},
	}
}
