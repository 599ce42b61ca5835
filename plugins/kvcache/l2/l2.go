// Package l2 is the L2-norm KV-cache compression method (Devoto et al.,
// 2024, "A Simple and Effective L2 Norm-Based Strategy for KV Cache
// Compression"; kvpress's KnormPress): keys with a low L2 norm attract
// attention, so each head keeps its lowest-norm keys. The score of a token
// is −‖k‖₂, computed in fp32 on the post-RoPE key as the cache stores it.
package l2

import (
	"context"
	"math"

	"github.com/longctx/longctx/engine/kvpolicy"
	"github.com/longctx/longctx/plugins/sdk"
)

// Version is the plugin's version.
const Version = "0.1.0"

// Score returns −‖k‖₂ of every cached key, accumulated in fp32.
func Score(_ context.Context, in *kvpolicy.ScoreInput) ([][]float32, error) {
	d := in.HeadDim
	out := make([][]float32, len(in.K))
	for g, keys := range in.K {
		n := len(keys) / d
		s := make([]float32, n)
		for i := range n {
			var sum float32
			for _, x := range keys[i*d : (i+1)*d] {
				sum += x * x
			}
			s[i] = -float32(math.Sqrt(float64(sum)))
		}
		out[g] = s
	}
	return out, nil
}

// Plugin returns the plugin's declaration for sdk.Serve.
func Plugin() *sdk.KVCache {
	return &sdk.KVCache{
		Info: sdk.Info{
			Name: "l2", Version: Version,
			Summary:      "keeps the keys with the lowest L2 norm (Devoto et al., 2024; kvpress KnormPress)",
			Capabilities: sdk.Capabilities{DTypes: []string{"f32"}, GQA: true, Causal: true, SlidingWindow: true, Devices: []string{"cpu"}},
		},
		Options: sdk.PolicyOptions(sdk.PolicyDefaults{Ratio: 0.5}),
		Prepare: func(_ context.Context, req *sdk.PrepareRequest) (*sdk.KVPlan, error) {
			p, err := sdk.PolicyFrom(req.Options, req.Model)
			if err != nil {
				return nil, err
			}
			return &sdk.KVPlan{Policy: p, Scorer: kvpolicy.ScorerFunc(Score)}, nil
		},
	}
}
