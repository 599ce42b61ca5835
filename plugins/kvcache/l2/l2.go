// Package l2 is the L2-norm KV-cache compression method (Devoto et al.,
// 2024, "A Simple and Effective L2 Norm-Based Strategy for KV Cache
// Compression"; kvpress's KnormPress): keys with a low L2 norm attract
// attention, so each head keeps its lowest-norm keys. The score of a token
// is −‖k‖₂, computed in fp32 on the post-RoPE key as the cache stores it.
//
// On CUDA the score is l2.cu's kernel (role kv.score), which sums the
// squares in the same order with unfused operations and so equals Score bit
// for bit on the same (bf16 or fp32) keys.
package l2

import (
	"context"
	_ "embed"
	"fmt"
	"math"

	"github.com/longctx/longctx/engine/kvpolicy"
	"github.com/longctx/longctx/plugins/sdk"
)

// Version is the plugin's version.
const Version = "0.2.0"

//go:embed l2.cu
var cudaSource string

// tileKV is L2_TILE in l2.cu: cached rows per block, one per thread.
const tileKV = 128

// Kernels returns the kv.score kernel for keys of dtype ("bf16" or "f32").
func Kernels(dtype string) ([]sdk.Kernel, error) {
	if dtype != "bf16" && dtype != "f32" {
		return nil, fmt.Errorf("l2: the CUDA kernel reads bf16 or f32 keys, not %s", dtype)
	}
	return []sdk.Kernel{{
		Role: sdk.RoleKVScore, ABIVersion: 2, CUDASource: cudaSource, Entry: "l2_score",
		Launch:         sdk.Launch{Grid: sdk.GridKVTilesKVHeadsSeqs, BlockX: tileKV, BlockY: 1, BlockZ: 1, TileKV: tileKV},
		CompileOptions: []string{fmt.Sprintf("--define-macro=L2_EXPECT_TILE=%d", tileKV)},
	}}, nil
}

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
			Capabilities: sdk.Capabilities{DTypes: []string{"f32", "bf16"}, GQA: true, Causal: true, SlidingWindow: true, Devices: []string{"cpu", "cuda"}},
		},
		Options: sdk.PolicyOptions(sdk.PolicyDefaults{Ratio: 0.5}),
		Prepare: func(_ context.Context, req *sdk.PrepareRequest) (*sdk.KVPlan, error) {
			p, err := sdk.PolicyFrom(req.Options, req.Model)
			if err != nil {
				return nil, err
			}
			plan := &sdk.KVPlan{Policy: p, Scorer: kvpolicy.ScorerFunc(Score)}
			if req.Device.Kind == "cuda" {
				if plan.Kernels, err = Kernels(req.Device.DType); err != nil {
					return nil, err
				}
			}
			return plan, nil
		},
	}
}
