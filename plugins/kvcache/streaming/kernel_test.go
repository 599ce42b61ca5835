package streaming

import (
	"context"
	"testing"

	"github.com/longctx/longctx/engine/kernelrun/gputest"
	"github.com/longctx/longctx/engine/kvpolicy"
	"github.com/longctx/longctx/plugins/sdk"
)

func prepare(t *testing.T, dev sdk.Device) *sdk.KVPlan {
	t.Helper()
	o, err := sdk.ResolveOptions(Plugin().Options, nil)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := Plugin().Prepare(context.Background(), &sdk.PrepareRequest{
		Model:  sdk.ModelShape{NumLayers: 4, NumHeads: 32, NumKVHeads: 8, HeadDim: 128},
		Device: dev, Options: o,
	})
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

func TestPrepareKernels(t *testing.T) {
	if plan := prepare(t, sdk.CPU); len(plan.Kernels) != 0 {
		t.Fatalf("cpu: %d kernels", len(plan.Kernels))
	}
	plan := prepare(t, sdk.Device{Kind: "cuda", Arch: "sm_90a", DType: "bf16"})
	if len(plan.Kernels) != 1 {
		t.Fatalf("%d kernels", len(plan.Kernels))
	}
	k := plan.Kernels[0]
	if err := k.Validate(sdk.KindKVCache); err != nil {
		t.Fatal(err)
	}
	if k.Entry != "streaming_score" || k.Launch.Grid != sdk.GridKVTilesKVHeadsSeqs || k.Launch.BlockX != tileKV || k.Launch.TileKV != tileKV {
		t.Errorf("kernel %+v", k)
	}
}

// TestGPUScore: the kernel's scores are Score's: the positions.
func TestGPUScore(t *testing.T) {
	env := gputest.Open(t)
	role := env.Role("streaming", prepare(t, env.Device()).Kernels, sdk.RoleKVScore)
	for i, c := range []gputest.KVScoreCase{
		{Name: "8 heads batch 1", KVHeads: 8, HeadDim: 128, Lens: [][]int{{1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000}}},
		{Name: "2 heads batch 3 gaps", KVHeads: 2, HeadDim: 16, Lens: [][]int{{1, 257}, {0, 300}, {256, 255}}, Gaps: true, Capacity: 50},
	} {
		env.CheckKVScore(role, c, uint64(i+1), kvpolicy.ScorerFunc(Score), 0)
	}
}
