// Package full is the KV-cache plugin that compresses nothing: the
// baseline every compression method is measured against.
package full

import (
	"context"

	"github.com/longctx/longctx/engine/kvpolicy"
	"github.com/longctx/longctx/plugins/sdk"
)

// Version is the plugin's version.
const Version = "0.1.0"

// Plugin returns the plugin's declaration for sdk.Serve.
func Plugin() *sdk.KVCache {
	return &sdk.KVCache{
		Info: sdk.Info{
			Name: "full", Version: Version, Summary: "no compression: every token stays in the cache",
			// It needs no kernel: nothing is scored, so it runs on any device.
			Capabilities: sdk.Capabilities{DTypes: []string{"f32", "bf16"}, GQA: true, Causal: true, SlidingWindow: true, Devices: []string{"cpu", "cuda"}},
		},
		Prepare: func(context.Context, *sdk.PrepareRequest) (*sdk.KVPlan, error) {
			return &sdk.KVPlan{Policy: kvpolicy.Policy{When: kvpolicy.Prefill, Ratio: 0}}, nil
		},
	}
}
