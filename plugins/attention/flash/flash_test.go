package flash

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/longctx/longctx/engine/attention"
	"github.com/longctx/longctx/plugins/attention/internal/attntest"
	"github.com/longctx/longctx/plugins/sdk"
)

// TestEqualsEager compares the tiled online softmax with the engine's
// eager reference on random problems, for tile sizes that divide the
// problem, that do not, and that exceed it.
func TestEqualsEager(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	ctx := context.Background()
	for si, s := range attntest.Shapes {
		p := attntest.Problem(rng, s)
		want := attntest.Clone(p)
		if err := (attention.Eager{}).Attend(ctx, want); err != nil {
			t.Fatal(err)
		}
		for _, blocks := range [][2]int{{64, 64}, {1, 1}, {5, 7}, {16, 3}, {256, 512}} {
			got := attntest.Clone(p)
			if err := (Backend{BlockQ: blocks[0], BlockKV: blocks[1]}).Attend(ctx, got); err != nil {
				t.Fatal(err)
			}
			// fp32 rounding of a reordered sum of O(100) terms of size O(1).
			if d := attntest.MaxDiff(got.Out, want.Out); d > 2e-6 {
				t.Errorf("shape %d %+v blocks %v: max |flash − eager| = %g", si, s, blocks, d)
			}
		}
	}
}

func TestRejectsBadProblem(t *testing.T) {
	p := &attention.Problem{NumHeads: 3, NumKVHeads: 2, HeadDim: 4}
	if err := (Backend{BlockQ: 4, BlockKV: 4}).Attend(context.Background(), p); err == nil {
		t.Fatal("accepted 3 heads over 2 KV heads")
	}
	ok := attntest.Problem(rand.New(rand.NewPCG(1, 1)), attntest.Shapes[0])
	if err := (Backend{}).Attend(context.Background(), ok); err == nil {
		t.Fatal("accepted zero block sizes")
	}
}

func TestCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p := attntest.Problem(rand.New(rand.NewPCG(1, 1)), attntest.Shapes[1])
	if err := (Backend{BlockQ: 8, BlockKV: 8}).Attend(ctx, p); err == nil {
		t.Fatal("cancelled context ignored")
	}
}

// TestKernelsPicksPrefill checks which prefill kernel Kernels delivers for
// a device, head dim and prefill_kernel choice, with its launch geometry,
// and that impossible choices are refused by name.
func TestKernelsPicksPrefill(t *testing.T) {
	hopper := sdk.Device{Kind: "cuda", Arch: "sm_90a", DType: "bf16"}
	ampere := sdk.Device{Kind: "cuda", Arch: "sm_80", DType: "bf16"}
	blackwell := sdk.Device{Kind: "cuda", Arch: "sm_100a", DType: "bf16"}
	cases := []struct {
		name    string
		dev     sdk.Device
		d       int
		choice  string
		entry   string
		threads int
		smem    int
		err     string
	}{
		{"hopper d128 auto", hopper, 128, PrefillAuto, "flash_prefill_sm90ws", 384, 128*128*2 + 8*64*128*2 + 1024, ""},
		{"hopper d64 auto", hopper, 64, "", "flash_prefill_sm90ws", 384, 128*64*2 + 8*64*64*2 + 1024, ""},
		{"hopper d32 auto", hopper, 32, PrefillAuto, "flash_prefill", 128, (128 + 2*64) * (32 + 8) * 2, ""},
		{"hopper d128 mma.sync", hopper, 128, PrefillMMA, "flash_prefill", 128, (128 + 2*64) * (128 + 8) * 2, ""},
		{"hopper d128 wgmma", hopper, 128, PrefillWGMMA, "flash_prefill_sm90ws", 384, 128*128*2 + 8*64*128*2 + 1024, ""},
		{"ampere d128 auto", ampere, 128, PrefillAuto, "flash_prefill", 128, (128 + 2*64) * (128 + 8) * 2, ""},
		{"blackwell d128 auto", blackwell, 128, PrefillAuto, "flash_prefill", 128, (128 + 2*64) * (128 + 8) * 2, ""},
		{"ampere wgmma", ampere, 128, PrefillWGMMA, "", 0, 0, `needs an sm_90a GPU (Hopper), this one is "sm_80"`},
		{"hopper d32 wgmma", hopper, 32, PrefillWGMMA, "", 0, 0, "takes head dims 64 and 128, not 32"},
		{"unknown choice", hopper, 128, "tma", "", 0, 0, `prefill_kernel "tma"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ks, err := Kernels(sdk.ModelShape{NumLayers: 1, NumHeads: 32, NumKVHeads: 8, HeadDim: c.d}, c.dev, c.choice)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one containing %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var prefill *sdk.Kernel
			for i := range ks {
				if ks[i].Role == sdk.RoleAttentionPrefill {
					prefill = &ks[i]
				}
			}
			if prefill == nil {
				t.Fatal("no prefill kernel")
			}
			if prefill.Entry != c.entry || prefill.Launch.BlockX != c.threads || prefill.Launch.SharedMemBytes != c.smem || prefill.Launch.TileQ != 128 {
				t.Errorf("prefill %s, %d threads, %d bytes of shared memory, tile %d; want %s, %d, %d, 128",
					prefill.Entry, prefill.Launch.BlockX, prefill.Launch.SharedMemBytes, prefill.Launch.TileQ, c.entry, c.threads, c.smem)
			}
			wantSM90 := c.entry == "flash_prefill_sm90ws"
			if got := slices.Contains(prefill.CompileOptions, "--define-macro=FLASH_SM90=1"); got != wantSM90 {
				t.Errorf("FLASH_SM90 defined: %v, want %v", got, wantSM90)
			}
		})
	}
}

// TestKernelsDecodeFitsSharedMemory: the decode block Kernels delivers fits
// the target's shared memory per block (99 KiB on sm_86/89/120, 163 KiB on
// sm_80, 227 KiB on sm_90 and sm_100), at every head dim.
func TestKernelsDecodeFitsSharedMemory(t *testing.T) {
	for _, c := range []struct {
		arch  string
		limit int
		warps int
	}{
		{"sm_80", 163 << 10, 8},
		{"sm_86", 99 << 10, 4},
		{"sm_89", 99 << 10, 4},
		{"sm_90a", 227 << 10, 8},
		{"sm_100a", 227 << 10, 8},
		{"sm_120", 99 << 10, 4},
	} {
		for _, d := range []int{16, 32, 64, 128} {
			ks, err := Kernels(sdk.ModelShape{NumLayers: 1, NumHeads: 32, NumKVHeads: 8, HeadDim: d}, sdk.Device{Kind: "cuda", Arch: c.arch, DType: "bf16"}, PrefillAuto)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range ks {
				if k.Launch.SharedMemBytes > c.limit {
					t.Errorf("%s d%d %s: %d bytes of shared memory, the target allows %d", c.arch, d, k.Entry, k.Launch.SharedMemBytes, c.limit)
				}
				if k.Entry == "flash_decode" && k.Launch.BlockX != 32*c.warps {
					t.Errorf("%s d%d: decode block of %d threads, want %d warps", c.arch, d, k.Launch.BlockX, c.warps)
				}
			}
		}
	}
}

// TestHopperPrefillFitsSharedMemory: every wgmma prefill build fits sm_90a's
// 227 KiB a block, taking the default 4 stages where they fit and fewer
// where not, and a build asked for more stages than fit is refused.
func TestHopperPrefillFitsSharedMemory(t *testing.T) {
	for _, c := range []struct {
		d, bn, stages, wantStages int
		wantErr                   bool
	}{
		{d: 64, bn: 64, wantStages: 4},
		{d: 128, bn: 64, wantStages: 4},
		{d: 64, bn: 128, wantStages: 4},
		{d: 128, bn: 128, wantStages: 3},
		{d: 128, bn: 64, stages: 2, wantStages: 2},
		{d: 128, bn: 128, stages: 4, wantErr: true},
	} {
		geo := defaultGeometry
		geo.sm90BN, geo.sm90Stages = c.bn, c.stages
		ks, err := kernels(sdk.ModelShape{NumLayers: 1, NumHeads: 32, NumKVHeads: 8, HeadDim: c.d}, "bf16", geo)
		if c.wantErr {
			if err == nil {
				t.Errorf("d%d bn%d stages %d: no error, want one (%d bytes)", c.d, c.bn, c.stages, sm90WSSharedMem(c.d, c.bn, c.stages))
			}
			continue
		}
		if err != nil {
			t.Fatalf("d%d bn%d stages %d: %v", c.d, c.bn, c.stages, err)
		}
		k := ks[0]
		if k.Entry != "flash_prefill_sm90ws" || k.Launch.SharedMemBytes > 227<<10 {
			t.Errorf("d%d bn%d: %s with %d bytes of shared memory", c.d, c.bn, k.Entry, k.Launch.SharedMemBytes)
		}
		want := fmt.Sprintf("--define-macro=FLASH_SM90_STAGES=%d", c.wantStages)
		if !slices.Contains(k.CompileOptions, want) || k.Launch.SharedMemBytes != sm90WSSharedMem(c.d, c.bn, c.wantStages) {
			t.Errorf("d%d bn%d stages %d: options %v, %d bytes; want %s", c.d, c.bn, c.stages, k.CompileOptions, k.Launch.SharedMemBytes, want)
		}
	}
}
