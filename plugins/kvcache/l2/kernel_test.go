package l2

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/longctx/longctx/engine/kernelrun/gputest"
	"github.com/longctx/longctx/engine/kvpolicy"
	"github.com/longctx/longctx/plugins/sdk"
)

func prepare(t *testing.T, dev sdk.Device) (*sdk.KVPlan, error) {
	t.Helper()
	o, err := sdk.ResolveOptions(Plugin().Options, nil)
	if err != nil {
		t.Fatal(err)
	}
	return Plugin().Prepare(context.Background(), &sdk.PrepareRequest{
		Model:  sdk.ModelShape{NumLayers: 4, NumHeads: 32, NumKVHeads: 8, HeadDim: 128},
		Device: dev, Options: o,
	})
}

// TestPrepareKernels: on CUDA the plan carries the kv.score kernel with a
// launch the kernel agrees with; on the CPU none.
func TestPrepareKernels(t *testing.T) {
	plan, err := prepare(t, sdk.CPU)
	if err != nil || len(plan.Kernels) != 0 {
		t.Fatalf("cpu: %d kernels, %v", len(plan.Kernels), err)
	}
	for _, dtype := range []string{"bf16", "f32"} {
		plan, err := prepare(t, sdk.Device{Kind: "cuda", Arch: "sm_90a", DType: dtype})
		if err != nil {
			t.Fatal(err)
		}
		if len(plan.Kernels) != 1 {
			t.Fatalf("%s: %d kernels", dtype, len(plan.Kernels))
		}
		k := plan.Kernels[0]
		if err := k.Validate(sdk.KindKVCache); err != nil {
			t.Fatal(err)
		}
		if k.Role != sdk.RoleKVScore || k.Entry != "l2_score" || k.Launch.Grid != sdk.GridKVTilesKVHeadsSeqs ||
			k.Launch.BlockX != k.Launch.TileKV || k.Launch.TileKV != tileKV || plan.Scorer == nil {
			t.Errorf("%s: kernel %+v", dtype, k)
		}
		if !strings.Contains(k.CUDASource, "#define L2_TILE 128") ||
			!regexp.MustCompile(`extern "C" __global__ void __launch_bounds__\(L2_TILE\) l2_score\(longctx_kv_score_params p\)`).MatchString(k.CUDASource) {
			t.Error("l2.cu does not declare l2_score(longctx_kv_score_params) with 128 rows per block")
		}
	}
	if _, err := prepare(t, sdk.Device{Kind: "cuda", Arch: "sm_90a", DType: "f16"}); err == nil {
		t.Error("f16 accepted")
	}
}

// TestGPUScore: the kernel's scores equal Score's on random bf16 keys.
func TestGPUScore(t *testing.T) {
	env := gputest.Open(t)
	plan, err := prepare(t, env.Device())
	if err != nil {
		t.Fatal(err)
	}
	role := env.Role("l2", plan.Kernels, sdk.RoleKVScore)
	for i, c := range []gputest.KVScoreCase{
		{Name: "8 heads d128 batch 1", KVHeads: 8, HeadDim: 128, Lens: [][]int{{1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000}}},
		{Name: "2 heads d16 batch 3 uneven", KVHeads: 2, HeadDim: 16, Lens: [][]int{{1, 129}, {0, 300}, {128, 127}}, Gaps: true, Capacity: 50},
		{Name: "4 heads d64 odd stride", KVHeads: 4, HeadDim: 64, Lens: [][]int{{257, 3, 77, 0}}, RowPad: 3},
		{Name: "2 heads d32 padded stride", KVHeads: 2, HeadDim: 32, Lens: [][]int{{33, 4097}}, RowPad: 8},
	} {
		env.CheckKVScore(role, c, uint64(i+1), kvpolicy.ScorerFunc(Score), 1e-5)
	}
}
