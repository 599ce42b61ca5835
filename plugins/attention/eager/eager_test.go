package eager

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/longctx/longctx/engine/attention"
	"github.com/longctx/longctx/plugins/sdk"
)

func TestPlugin(t *testing.T) {
	p := Plugin()
	if err := sdk.Check(p); err != nil {
		t.Fatal(err)
	}
	o, err := sdk.ResolveOptions(p.Options, map[string]string{"workers": "3"})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := p.Prepare(context.Background(), &sdk.PrepareRequest{Options: o, Device: sdk.CPU})
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := plan.Reference.(attention.Eager); !ok || e.Workers != 3 {
		t.Fatalf("reference %#v", plan.Reference)
	}
	if len(plan.Kernels) != 0 {
		t.Fatalf("%d kernels on the CPU", len(plan.Kernels))
	}
}

var llama8B = sdk.ModelShape{Family: "llama", NumLayers: 32, NumHeads: 32, NumKVHeads: 8, HeadDim: 128, HiddenSize: 4096, MaxSeqLen: 32768}

func prepareCUDA(t *testing.T, m sdk.ModelShape, dtype string) (*sdk.AttentionPlan, error) {
	t.Helper()
	p := Plugin()
	o, err := sdk.ResolveOptions(p.Options, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p.Prepare(context.Background(), &sdk.PrepareRequest{Model: m, Device: sdk.Device{Kind: "cuda", Arch: "sm_90a", DType: dtype}, Options: o})
}

// TestPrepareCUDA: on a GPU in bf16 the plan has both roles' kernels, in
// launch order, with launch geometry the kernels agree with.
func TestPrepareCUDA(t *testing.T) {
	for _, m := range []sdk.ModelShape{
		llama8B,
		{NumLayers: 2, NumHeads: 4, NumKVHeads: 2, HeadDim: 16},
		{NumLayers: 2, NumHeads: 4, NumKVHeads: 4, HeadDim: 32},
	} {
		plan, err := prepareCUDA(t, m, "bf16")
		if err != nil {
			t.Fatal(err)
		}
		if plan.Reference == nil {
			t.Fatal("no reference on CUDA")
		}
		var entries []string
		for _, k := range plan.Kernels {
			entries = append(entries, k.Role+":"+k.Entry)
			if err := k.Validate(sdk.KindAttention); err != nil {
				t.Errorf("%s: %v", k.Entry, err)
			}
			if k.CUDASource != cudaSource || k.ABIVersion != 2 {
				t.Errorf("%s: source or ABI version", k.Entry)
			}
			if !regexp.MustCompile(`extern "C" __global__ void __launch_bounds__\(\w+\) ` + k.Entry + `\(longctx_attention_params p\)`).MatchString(cudaSource) {
				t.Errorf("eager.cu has no kernel %s(longctx_attention_params)", k.Entry)
			}
			threads := k.Launch.BlockX * k.Launch.BlockY * k.Launch.BlockZ
			if threads%32 != 0 || threads > 1024 || k.Launch.SharedMemBytes > 227<<10 {
				t.Errorf("%s: block %+v", k.Entry, k.Launch)
			}
			joined := strings.Join(k.CompileOptions, " ")
			for _, want := range []string{"EAGER_HEAD_DIM=" + strconv.Itoa(m.HeadDim), "EAGER_GROUP=" + strconv.Itoa(m.NumHeads/m.NumKVHeads)} {
				if !strings.Contains(joined, want) {
					t.Errorf("%s: options %q lack %s", k.Entry, joined, want)
				}
			}
		}
		want := "attention.prefill:eager_qk attention.prefill:eager_softmax attention.prefill:eager_pv " +
			"attention.decode:eager_decode_qk attention.decode:eager_decode_pv attention.decode:eager_decode_combine"
		if got := strings.Join(entries, " "); got != want {
			t.Errorf("kernels %s\nwant %s", got, want)
		}
	}
}

// TestWorkspaceMatchesTransformers: the prefill workspace is 8 bytes per
// score, so Llama-3-8B shapes need 17 GB at 8k and 68.7 GB at 16k
// unchunked, which is why eager runs out of memory at 16k on an 80 GB card.
func TestWorkspaceMatchesTransformers(t *testing.T) {
	plan, err := prepareCUDA(t, llama8B, "bf16")
	if err != nil {
		t.Fatal(err)
	}
	need := func(role string, seqs, q, kv int64) int64 {
		var n int64
		for _, k := range plan.Kernels {
			if k.Role == role {
				n = max(n, k.Workspace(seqs*32*q, kv))
			}
		}
		return n
	}
	if got := need(sdk.RoleAttentionPrefill, 1, 16384, 16384); got != 8*32*16384*16384 || got < 68_700_000_000 {
		t.Errorf("prefill workspace at 16k: %d bytes", got)
	}
	// Decode at batch 8 against a 32k cache: the scores plus per-tile
	// statistics and partial outputs, far below the KV cache's 4.3 GB.
	dec := need(sdk.RoleAttentionDecode, 8, 1, 32768)
	rows, tiles := int64(8*32), int64(32768/decodeTileKV)
	if min := 8*rows*32768 + rows*tiles*(8+4*128); dec < min || dec > 100<<20 {
		t.Errorf("decode workspace %d, want at least %d and under 100 MiB", dec, min)
	}
	// Small caches: a partial tile's statistics still fit.
	for _, kv := range []int64{1, 7, 255, 257, 1000} {
		tilesKV := (kv + decodeTileKV - 1) / decodeTileKV
		layout := (8*rows*kv+15)&^15 + 8*rows*tilesKV
		layout = (layout+15)&^15 + 4*128*rows*tilesKV
		if got := need(sdk.RoleAttentionDecode, 8, 1, kv); got < layout {
			t.Errorf("decode workspace at %d keys: %d < %d the kernels use", kv, got, layout)
		}
	}
}

func TestPrepareCUDARefuses(t *testing.T) {
	for _, tt := range []struct {
		m     sdk.ModelShape
		dtype string
		err   string
	}{
		{llama8B, "f32", "bf16"},
		{sdk.ModelShape{NumLayers: 1, NumHeads: 4, NumKVHeads: 2, HeadDim: 80}, "bf16", "head dim"},
		{sdk.ModelShape{NumLayers: 1, NumHeads: 4, NumKVHeads: 2, HeadDim: 8}, "bf16", "head dim"},
	} {
		if _, err := prepareCUDA(t, tt.m, tt.dtype); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%+v %s: error %v, want %q", tt.m, tt.dtype, err, tt.err)
		}
	}
}

func TestSharedMemory(t *testing.T) {
	// Only eager_qk at head dim 128 and above needs the 48 KiB opt-in.
	for d, want := range map[int][2]int{16: {24064, 12544}, 64: {36352, 18688}, 128: {52736, 34048}, 256: {85504, 66816}} {
		if got := [2]int{qkSharedMem(d), pvSharedMem(d)}; got != want {
			t.Errorf("head dim %d: shared memory %v, want %v", d, got, want)
		}
	}
}
