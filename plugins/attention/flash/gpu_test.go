package flash

import (
	"fmt"
	"testing"

	"github.com/longctx/longctx/engine/kernelrun"
	"github.com/longctx/longctx/engine/kernelrun/gputest"
	"github.com/longctx/longctx/plugins/attention/internal/attngpu"
	"github.com/longctx/longctx/plugins/sdk"
)

// The flash kernels keep scores and the softmax in fp32, so the reference
// does not round them (attngpu.Problem.Reference).
var flashSuite = attngpu.Suite{Roles: attngpu.PluginRoles(Plugin())}

var prefillCases = []attngpu.Case{
	{Name: "4/2 d16 q17", Heads: 4, KVHeads: 2, D: 16, NumQ: 17, Lens: attngpu.Uniform(2, 17)},
	{Name: "4/2 d32 q100 padded rows", Heads: 4, KVHeads: 2, D: 32, NumQ: 100, Lens: attngpu.Uniform(2, 100), QPad: 8, KVPad: 8},
	{Name: "32/8 d64 q300", Heads: 32, KVHeads: 8, D: 64, NumQ: 300, Lens: attngpu.Uniform(8, 300)},
	{Name: "32/8 d128 q300 kv301", Heads: 32, KVHeads: 8, D: 128, NumQ: 300, Lens: attngpu.Uniform(8, 301)},
	{Name: "4/2 d128 q1", Heads: 4, KVHeads: 2, D: 128, NumQ: 1, Lens: attngpu.Uniform(2, 1)},
	{Name: "32/8 d128 chunk q100 kv357", Heads: 32, KVHeads: 8, D: 128, NumQ: 100, Lens: attngpu.Uniform(8, 357)},
	{Name: "4/2 d64 q65 per-head lens gaps odd strides", Heads: 4, KVHeads: 2, D: 64, NumQ: 65, Lens: [][]int{{131, 77}}, Gaps: true, QPad: 3, KVPad: 3},
	{Name: "4/2 d32 two seqs window 24", Heads: 4, KVHeads: 2, D: 32, NumQ: 40, Lens: [][]int{{150, 150}, {90, 60}}, Window: 24},
	{Name: "32/8 d16 q300 window 100", Heads: 32, KVHeads: 8, D: 16, NumQ: 300, Lens: attngpu.Uniform(8, 300), Window: 100},
	{Name: "4/2 d128 chunk q17 kv1000", Heads: 4, KVHeads: 2, D: 128, NumQ: 17, Lens: attngpu.Uniform(2, 1000)},
	{Name: "32/8 d32 q1 kv513", Heads: 32, KVHeads: 8, D: 32, NumQ: 1, Lens: attngpu.Uniform(8, 513)},
	{Name: "32/8 d128 q300 varied lens", Heads: 32, KVHeads: 8, D: 128, NumQ: 300, Lens: attngpu.Varied(8, 333), Gaps: true},
	{Name: "8/2 d128 q2049 kv2049", Heads: 8, KVHeads: 2, D: 128, NumQ: 2049, Lens: attngpu.Uniform(8, 2049)},
	{Name: "8/2 d128 chunk q1000 kv3001 window 700", Heads: 8, KVHeads: 2, D: 128, NumQ: 1000, Lens: attngpu.Uniform(2, 3001), Window: 700},
	{Name: "64/4 d64 q777 two seqs", Heads: 64, KVHeads: 4, D: 64, NumQ: 777, Lens: [][]int{{900, 900, 900, 900}, {777, 777, 777, 777}}},
}

var decodeCases = []attngpu.Case{
	{Name: "32/8 d128 batch 3 varied", Heads: 32, KVHeads: 8, D: 128, NumQ: 1, Lens: attngpu.Varied(8, 300, 1000, 5), Capacity: 37},
	{Name: "4/2 d16 batch 3 incl. empty head", Heads: 4, KVHeads: 2, D: 16, NumQ: 1, Lens: [][]int{{300, 280}, {1, 17}, {513, 0}}, Capacity: 37},
	{Name: "32/8 d64 batch 1 kv5000 cap 8192", Heads: 32, KVHeads: 8, D: 64, NumQ: 1, Lens: attngpu.Uniform(8, 5000), Capacity: 8192 - 5000},
	{Name: "4/2 d32 batch 2 window 100", Heads: 4, KVHeads: 2, D: 32, NumQ: 1, Lens: [][]int{{600, 400}, {257, 256}}, Window: 100},
	{Name: "32/8 d128 gaps odd strides", Heads: 32, KVHeads: 8, D: 128, NumQ: 1, Lens: attngpu.Varied(8, 2049), Gaps: true, QPad: 3, KVPad: 3, Capacity: 300},
	{Name: "32/4 d128 batch 3", Heads: 32, KVHeads: 4, D: 128, NumQ: 1, Lens: attngpu.Varied(4, 256, 257, 4000)},
	{Name: "4/2 d128 batch 1 kv1", Heads: 4, KVHeads: 2, D: 128, NumQ: 1, Lens: attngpu.Uniform(2, 1)},
	{Name: "32/32 d128 batch 2 kv20000", Heads: 32, KVHeads: 32, D: 128, NumQ: 1, Lens: attngpu.Varied(32, 20000, 777)},
	{Name: "32/2 d64 batch 4 window 1000", Heads: 32, KVHeads: 2, D: 64, NumQ: 1, Lens: attngpu.Varied(2, 5000, 999, 1001, 64), Window: 1000},
}

// TestGPUFlashPrefill and TestGPUFlashDecode compare the kernels with exact
// attention on fresh random bf16 inputs: relative error at most 1e-2,
// every output element written, nothing past the workspace.
func TestGPUFlashPrefill(t *testing.T) { flashSuite.Run(t, prefillCases, false) }

func TestGPUFlashDecode(t *testing.T) { flashSuite.Run(t, decodeCases, true) }

func TestGPUFlashDecodeGraph(t *testing.T) { flashSuite.DecodeGraph(t) }

func BenchmarkGPUFlashPrefill(b *testing.B) { flashSuite.BenchPrefill(b, 8192, 16384, 32768) }

func BenchmarkGPUFlashDecode(b *testing.B) { flashSuite.BenchDecode(b) }

// geometryRoles loads the kernels built with geometry geo instead of the
// default one.
func geometryRoles(geo geometry) func(tb testing.TB, env *gputest.Env, c attngpu.Case) (prefill, decode *kernelrun.Role) {
	return func(tb testing.TB, env *gputest.Env, c attngpu.Case) (prefill, decode *kernelrun.Role) {
		tb.Helper()
		g := geo // per case: a case wgmma cannot run must not change the next one's build
		if g.sm90BN > 0 && (env.Device().Arch != "sm_90a" || (c.D != 64 && c.D != 128)) {
			g.sm90BN = 0 // the mma.sync kernel where wgmma cannot run
		}
		if g.decodeBulk && env.Device().Arch != "sm_90a" {
			g.decodeBulk = false // cp.async where bulk copies are not built
		}
		ks, err := kernels(sdk.ModelShape{NumLayers: 1, NumHeads: c.Heads, NumKVHeads: c.KVHeads, HeadDim: c.D}, "bf16", g)
		if err != nil {
			tb.Fatal(err)
		}
		return env.Role("flash", ks, sdk.RoleAttentionPrefill), env.Role("flash", ks, sdk.RoleAttentionDecode)
	}
}

// otherGeometries are the builds the geometry benchmarks compare with the
// default one (and TestGPUFlashGeometry checks, for the code paths they
// take: 16 query rows per warp, 64-row blocks, 32-key prefill steps,
// longer minimum decode splits, the wgmma prefill with 128-key steps,
// decode blocks of 4 warps and of 2 or 3 stages). Each lost to the
// default on an H100 (bench/RESULTS.md).
var otherGeometries = []geometry{
	modified(func(g *geometry) { g.sm90BN = 128 }),
	modified(func(g *geometry) {
		g.prefillWarps, g.prefillBN, g.decodeTile = 8, 32, 1024
		g.defines = []string{"FLASH_PREFILL_RESCALE_ALWAYS"}
	}),
	modified(func(g *geometry) {
		g.prefillRows, g.decodeTile = 64, 512
		g.defines = []string{"FLASH_PREFILL_MIN_BLOCKS=3"}
	}),
	modified(func(g *geometry) { g.decodeWarps, g.decodeBuffers, g.decodeMinBlocks = 8, 3, 1 }),
	modified(func(g *geometry) { g.decodeWarps, g.decodeBuffers, g.decodeMinBlocks = 4, 3, 2 }),
	modified(func(g *geometry) { g.decodeWarps = smallSharedMemoryDecodeWarps }), // what Kernels gives GPUs of 99 KiB a block
	modified(func(g *geometry) { g.decodeBulk, g.decodeBuffers = true, 2 }),
	modified(func(g *geometry) { g.decodeBulk, g.decodeWarps, g.decodeBuffers, g.decodeMinBlocks = true, 4, 3, 2 }),
}

// modified is the default geometry changed by change.
func modified(change func(*geometry)) geometry {
	g := defaultGeometry
	change(&g)
	return g
}

func (g geometry) String() string {
	s := fmt.Sprintf("rows%d_warps%d_bn%d_tile%d", g.prefillRows, g.prefillWarps, g.prefillBN, g.decodeTile)
	if g.sm90BN > 0 {
		s = fmt.Sprintf("wgmma_ws_bn%d_tile%d", g.sm90BN, g.decodeTile)
	}
	if g.sm90Stages != 0 && g.sm90Stages != sm90DefaultStages {
		s += fmt.Sprintf("_stages%d", g.sm90Stages)
	}
	if g.decodeWarps != defaultGeometry.decodeWarps || g.decodeBuffers != defaultGeometry.decodeBuffers {
		s += fmt.Sprintf("_decode%dw%db", g.decodeWarps, g.decodeBuffers)
	}
	if g.decodeBulk {
		s += "_bulk"
	}
	for _, d := range g.defines {
		s += "_" + d
	}
	return s
}

func TestGPUFlashGeometry(t *testing.T) {
	for _, geo := range otherGeometries {
		t.Run(geo.String(), func(t *testing.T) {
			s := attngpu.Suite{Roles: geometryRoles(geo)}
			s.Run(t, prefillCases, false)
			s.Run(t, decodeCases, true)
		})
	}
}

// benchGeometries: the mma.sync default, the wgmma build Kernels picks on
// Hopper, and the others.
func benchGeometries() []geometry {
	hopper := defaultGeometry.withHopperDecode()
	hopper.sm90BN = sm90DefaultBN
	return append([]geometry{defaultGeometry, hopper}, otherGeometries...)
}

func BenchmarkGPUFlashPrefillGeometry(b *testing.B) {
	for _, geo := range benchGeometries() {
		b.Run(geo.String(), func(b *testing.B) {
			attngpu.Suite{Roles: geometryRoles(geo)}.BenchPrefill(b, 8192, 16384, 32768)
		})
	}
}

func BenchmarkGPUFlashDecodeGeometry(b *testing.B) {
	geos := []geometry{defaultGeometry}
	for _, g := range otherGeometries {
		// Only builds whose decode kernel differs from the default's.
		if g.decodeTile != defaultGeometry.decodeTile || g.decodeWarps != defaultGeometry.decodeWarps || g.decodeBuffers != defaultGeometry.decodeBuffers || g.decodeBulk {
			geos = append(geos, g)
		}
	}
	for _, geo := range geos {
		b.Run(geo.String(), func(b *testing.B) {
			attngpu.Suite{Roles: geometryRoles(geo)}.BenchDecode(b)
		})
	}
}
