// Command badkernel is an attention plugin whose GPU kernels write to an
// invalid address: a buggy third-party plugin, for the harness's test that
// such a kernel fails its own cell and not the sweep. On the CPU it is the
// eager reference.
package main

import (
	"context"

	"github.com/longctx/longctx/engine/attention"
	"github.com/longctx/longctx/kernels/abi"
	"github.com/longctx/longctx/plugins/sdk"
)

const source = `#include "longctx/abi/attention.h"
extern "C" __global__ void bad_attention(longctx_attention_params p) {
    *(volatile int *)0x10 = p.layer;
}
`

func main() {
	sdk.Serve(&sdk.Attention{
		Info: sdk.Info{
			Name: "badkernel", Version: "0.0.1", Summary: "faults on the GPU (test plugin)",
			Capabilities: sdk.Capabilities{DTypes: []string{"f32", "bf16"}, GQA: true, Causal: true, Devices: []string{"cpu", "cuda"}},
		},
		Prepare: func(_ context.Context, req *sdk.PrepareRequest) (*sdk.AttentionPlan, error) {
			plan := &sdk.AttentionPlan{Reference: attention.Eager{}}
			if req.Device.Kind == "cuda" {
				for _, role := range []string{sdk.RoleAttentionPrefill, sdk.RoleAttentionDecode} {
					plan.Kernels = append(plan.Kernels, sdk.Kernel{
						Role: role, ABIVersion: abi.Version, CUDASource: source, Entry: "bad_attention",
						Launch: sdk.Launch{Grid: sdk.GridHeadsSeqs, BlockX: 32, BlockY: 1, BlockZ: 1},
					})
				}
			}
			return plan, nil
		},
	})
}
