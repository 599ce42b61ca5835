package eager

import (
	"testing"

	"github.com/longctx/longctx/plugins/attention/internal/attngpu"
)

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
	{Name: "4/4 d256 q70 kv133", Heads: 4, KVHeads: 4, D: 256, NumQ: 70, Lens: attngpu.Uniform(4, 133)},
}

var decodeCases = []attngpu.Case{
	{Name: "32/8 d128 batch 3 varied", Heads: 32, KVHeads: 8, D: 128, NumQ: 1, Lens: attngpu.Varied(8, 300, 1000, 5), Capacity: 37},
	{Name: "4/2 d16 batch 3 incl. empty head", Heads: 4, KVHeads: 2, D: 16, NumQ: 1, Lens: [][]int{{300, 280}, {1, 17}, {513, 0}}, Capacity: 37},
	{Name: "32/8 d64 batch 1 kv5000 cap 8192", Heads: 32, KVHeads: 8, D: 64, NumQ: 1, Lens: attngpu.Uniform(8, 5000), Capacity: 8192 - 5000},
	{Name: "4/2 d32 batch 2 window 100", Heads: 4, KVHeads: 2, D: 32, NumQ: 1, Lens: [][]int{{600, 400}, {257, 256}}, Window: 100},
	{Name: "32/8 d128 gaps odd strides", Heads: 32, KVHeads: 8, D: 128, NumQ: 1, Lens: attngpu.Varied(8, 2049), Gaps: true, QPad: 3, KVPad: 3, Capacity: 300},
	{Name: "32/4 d128 batch 3", Heads: 32, KVHeads: 4, D: 128, NumQ: 1, Lens: attngpu.Varied(4, 256, 257, 4000)},
	{Name: "4/2 d128 batch 1 kv1", Heads: 4, KVHeads: 2, D: 128, NumQ: 1, Lens: attngpu.Uniform(2, 1)},
	{Name: "8/8 d256 batch 2", Heads: 8, KVHeads: 8, D: 256, NumQ: 1, Lens: attngpu.Varied(8, 700, 90)},
}

var eagerSuite = attngpu.Suite{Roles: attngpu.PluginRoles(Plugin()), EagerRounding: true}

// TestGPUEagerPrefill and TestGPUEagerDecode compare the kernels with a
// reference that rounds as transformers' bf16 eager attention does.
func TestGPUEagerPrefill(t *testing.T) { eagerSuite.Run(t, prefillCases, false) }

func TestGPUEagerDecode(t *testing.T) { eagerSuite.Run(t, decodeCases, true) }

func TestGPUEagerDecodeGraph(t *testing.T) { eagerSuite.DecodeGraph(t) }

func BenchmarkGPUEagerPrefill(b *testing.B) { eagerSuite.BenchPrefill(b, 8192) }

func BenchmarkGPUEagerDecode(b *testing.B) { eagerSuite.BenchDecode(b) }
