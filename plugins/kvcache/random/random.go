// Package random is the random-eviction KV-cache baseline: every token
// gets a score drawn from a seeded hash of (seed, layer, KV head,
// position), so a run is reproducible and a token's score never changes
// between compressions.
package random

import (
	"context"

	"github.com/longctx/longctx/engine/kvpolicy"
	"github.com/longctx/longctx/plugins/sdk"
)

// Version is the plugin's version.
const Version = "0.1.0"

// Scorer scores tokens with a seeded hash.
type Scorer struct{ Seed uint64 }

// Score returns a uniform pseudo-random score in [0, 1) per token.
func (s Scorer) Score(_ context.Context, in *kvpolicy.ScoreInput) ([][]float32, error) {
	out := make([][]float32, len(in.Pos))
	for g, pos := range in.Pos {
		sc := make([]float32, len(pos))
		for i, p := range pos {
			sc[i] = unit(mix(s.Seed ^ mix(uint64(in.Layer)<<40^uint64(g)<<24^uint64(p))))
		}
		out[g] = sc
	}
	return out, nil
}

// mix is the splitmix64 finaliser.
func mix(z uint64) uint64 {
	z += 0x9E3779B97F4A7C15
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// unit maps the top 24 bits to [0, 1): exactly representable in float32.
func unit(z uint64) float32 { return float32(z>>40) / (1 << 24) }

// Plugin returns the plugin's declaration for sdk.Serve.
func Plugin() *sdk.KVCache {
	opts := append(sdk.PolicyOptions(sdk.PolicyDefaults{Ratio: 0.5}),
		sdk.Option{Name: "seed", Type: sdk.Int, Default: "0", Min: sdk.Bound(0), Help: "seed of the random scores"})
	return &sdk.KVCache{
		Info: sdk.Info{
			Name: "random", Version: Version, Summary: "evicts tokens at random (seeded): the floor any method must beat",
			Capabilities: sdk.Capabilities{DTypes: []string{"f32"}, GQA: true, Causal: true, SlidingWindow: true, Devices: []string{"cpu"}},
		},
		Options: opts,
		Prepare: func(_ context.Context, req *sdk.PrepareRequest) (*sdk.KVPlan, error) {
			p, err := sdk.PolicyFrom(req.Options, req.Model)
			if err != nil {
				return nil, err
			}
			return &sdk.KVPlan{Policy: p, Scorer: Scorer{Seed: uint64(req.Options.Int("seed"))}}, nil
		},
	}
}
