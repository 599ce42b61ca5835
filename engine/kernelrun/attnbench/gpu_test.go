package attnbench_test

import (
	"testing"
	"time"

	"github.com/longctx/longctx/engine/kernelrun/attnbench"
	"github.com/longctx/longctx/engine/kernelrun/gputest"
	"github.com/longctx/longctx/plugins/attention/eager"
	"github.com/longctx/longctx/plugins/sdk"
)

// TestGPUEagerSweep times the eager plugin's kernels on a few small shapes
// and the copy bandwidth: every figure positive and plausible for a GPU,
// an impossible shape an "oom" row, and the device memory given back.
func TestGPUEagerSweep(t *testing.T) {
	env := gputest.Open(t)
	ks, err := eager.Kernels(sdk.ModelShape{NumLayers: 1, NumHeads: 32, NumKVHeads: 8, HeadDim: 128}, "bf16")
	if err != nil {
		t.Fatal(err)
	}
	roles := map[attnbench.Phase]attnbench.Launcher{
		attnbench.Prefill: env.Role("eager", ks, sdk.RoleAttentionPrefill),
		attnbench.Decode:  env.Role("eager", ks, sdk.RoleAttentionDecode),
	}
	opts := attnbench.Options{MinTime: 10 * time.Millisecond, Repeats: 3}
	free0, _, err := env.D.MemGetInfo()
	if err != nil {
		t.Fatal(err)
	}
	cp, err := attnbench.CopyBandwidth(env.D, env.Stream, 1<<30, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("copy bandwidth %.0f GB/s (%d copies of 1 GiB per measurement)", cp.GBps, cp.Iters)
	if cp.GBps < 100 || cp.GBps > 20000 {
		t.Errorf("copy bandwidth %.0f GB/s is implausible", cp.GBps)
	}
	for _, sh := range []attnbench.Shape{
		{Phase: attnbench.Prefill, Batch: 1, N: 1024},
		{Phase: attnbench.Prefill, Batch: 2, N: 777},
		{Phase: attnbench.Decode, Batch: 1, N: 4096},
		{Phase: attnbench.Decode, Batch: 8, N: 4096, MaxKV: 8192},
	} {
		sh.Heads, sh.KVHeads, sh.HeadDim = 32, 8, 128
		r := attnbench.Run(env.D, env.Stream, roles[sh.Phase], sh, opts)
		if r.Status != attnbench.StatusOK {
			t.Fatalf("%v: %s: %v", sh, r.Status, r.Err)
		}
		t.Logf("%v: %.4f ms, %.1f TFLOP/s, %.0f GB/s (%d launches × %d, graph %v)", sh, r.MS, r.TFLOPS, r.GBps, r.Iters, r.Repeats, r.Graph)
		if !(r.MS > 0) || r.MinMS > r.MS || !(r.TFLOPS > 0) || r.TFLOPS > 5000 {
			t.Errorf("%v: implausible %+v", sh, r)
		}
	}
	// Cold L2: 4k decode reads 8 MiB, so it rotates through sets that
	// together hold 4× the L2, and no launch finds its K/V there: never
	// faster than warm by more than noise.
	dec := attnbench.Shape{Phase: attnbench.Decode, Batch: 1, N: 4096, Heads: 32, KVHeads: 8, HeadDim: 128}
	warm := attnbench.Run(env.D, env.Stream, roles[attnbench.Decode], dec, opts)
	coldOpts := opts
	coldOpts.ColdL2, coldOpts.L2Bytes = true, int64(env.Info.L2Bytes)
	cold := attnbench.Run(env.D, env.Stream, roles[attnbench.Decode], dec, coldOpts)
	wantSets, err := attnbench.ColdSets(dec, int64(env.Info.L2Bytes))
	if err != nil {
		t.Fatal(err)
	}
	if warm.Status != attnbench.StatusOK || cold.Status != attnbench.StatusOK || cold.InputSets != wantSets || cold.Note != "" {
		t.Fatalf("%v: warm %s (%v), cold %s (%v) with %d sets (want %d) %s", dec, warm.Status, warm.Err, cold.Status, cold.Err, cold.InputSets, wantSets, cold.Note)
	}
	t.Logf("%v: warm %.4f ms, cold %.4f ms (%d sets of %d bytes, %d MiB L2, graph %v)", dec, warm.MS, cold.MS, cold.InputSets, cold.InputSetBytes, env.Info.L2Bytes>>20, cold.Graph)
	if cold.MS < 0.9*warm.MS {
		t.Errorf("%v: cold L2 %.4f ms, faster than warm %.4f ms", dec, cold.MS, warm.MS)
	}
	// Eager prefill's score matrix at 256k tokens is petabytes.
	huge := attnbench.Shape{Phase: attnbench.Prefill, Batch: 1, N: 256 << 10, Heads: 32, KVHeads: 8, HeadDim: 128}
	if r := attnbench.Run(env.D, env.Stream, roles[attnbench.Prefill], huge, opts); r.Status != attnbench.StatusOOM {
		t.Errorf("%v: %s (%v), want oom", huge, r.Status, r.Err)
	}
	free1, _, err := env.D.MemGetInfo()
	if err != nil {
		t.Fatal(err)
	}
	if free1+64<<20 < free0 {
		t.Errorf("%d MiB less free device memory after the sweep", (free0-free1)>>20)
	}
}
