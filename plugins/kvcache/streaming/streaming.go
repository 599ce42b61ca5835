// Package streaming is the StreamingLLM KV-cache policy (Xiao et al.,
// 2023): keep a few attention-sink tokens at the start and the most recent
// tokens. Its score is the token's position, so the policy's top-k keeps
// the newest tokens and the sink option protects the first ones.
//
// On CUDA the score is streaming.cu's kernel (role kv.score), which writes
// the same float32 positions.
package streaming

import (
	"context"
	_ "embed"
	"fmt"

	"github.com/longctx/longctx/engine/kvpolicy"
	"github.com/longctx/longctx/plugins/sdk"
)

// Version is the plugin's version.
const Version = "0.2.0"

//go:embed streaming.cu
var cudaSource string

// tileKV is STREAMING_TILE in streaming.cu: cached rows per block.
const tileKV = 256

// Kernels returns the kv.score kernel; it reads positions only, so any
// dtype will do.
func Kernels() []sdk.Kernel {
	return []sdk.Kernel{{
		Role: sdk.RoleKVScore, ABIVersion: 2, CUDASource: cudaSource, Entry: "streaming_score",
		Launch:         sdk.Launch{Grid: sdk.GridKVTilesKVHeadsSeqs, BlockX: tileKV, BlockY: 1, BlockZ: 1, TileKV: tileKV},
		CompileOptions: []string{fmt.Sprintf("--define-macro=STREAMING_EXPECT_TILE=%d", tileKV)},
	}}
}

// Score returns each token's position: newer is better.
func Score(_ context.Context, in *kvpolicy.ScoreInput) ([][]float32, error) {
	out := make([][]float32, len(in.Pos))
	for g, pos := range in.Pos {
		s := make([]float32, len(pos))
		for i, p := range pos {
			s[i] = float32(p)
		}
		out[g] = s
	}
	return out, nil
}

// Plugin returns the plugin's declaration for sdk.Serve.
func Plugin() *sdk.KVCache {
	return &sdk.KVCache{
		Info: sdk.Info{
			Name: "streaming", Version: Version,
			Summary:      "StreamingLLM: attention sinks plus the most recent tokens (Xiao et al., 2023)",
			Capabilities: sdk.Capabilities{DTypes: []string{"f32", "bf16"}, GQA: true, Causal: true, SlidingWindow: true, Devices: []string{"cpu", "cuda"}},
		},
		Options: sdk.PolicyOptions(sdk.PolicyDefaults{Ratio: 0.5, Sink: 4}),
		Prepare: func(_ context.Context, req *sdk.PrepareRequest) (*sdk.KVPlan, error) {
			p, err := sdk.PolicyFrom(req.Options, req.Model)
			if err != nil {
				return nil, err
			}
			plan := &sdk.KVPlan{Policy: p, Scorer: kvpolicy.ScorerFunc(Score)}
			if req.Device.Kind == "cuda" {
				plan.Kernels = Kernels()
			}
			return plan, nil
		},
	}
}
