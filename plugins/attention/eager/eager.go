// Package eager is the eager attention plugin: it materialises each
// query's full score row, masks it and takes the softmax, like
// transformers' eager attention. Its reference implementation is the
// engine's own attention.Eager, so this plugin is also the baseline that
// the plugin path (process, gRPC, codec) is checked against.
package eager

import (
	"context"

	"github.com/longctx/longctx/engine/attention"
	"github.com/longctx/longctx/plugins/sdk"
)

// Version is the plugin's version.
const Version = "0.1.0"

// Plugin returns the plugin's declaration for sdk.Serve.
func Plugin() *sdk.Attention {
	return &sdk.Attention{
		Info: sdk.Info{
			Name:    "eager",
			Version: Version,
			Summary: "materialises the full score matrix, like transformers' eager attention",
			Capabilities: sdk.Capabilities{
				DTypes: []string{"f32"}, GQA: true, Causal: true, SlidingWindow: true,
				Devices: []string{"cpu"},
			},
		},
		Options: []sdk.Option{
			{Name: "workers", Type: sdk.Int, Default: "0", Min: sdk.Bound(0), Help: "goroutines of the reference implementation; 0 means all CPUs"},
		},
		Prepare: func(_ context.Context, req *sdk.PrepareRequest) (*sdk.AttentionPlan, error) {
			return &sdk.AttentionPlan{Reference: attention.Eager{Workers: req.Options.Int("workers")}}, nil
		},
	}
}
