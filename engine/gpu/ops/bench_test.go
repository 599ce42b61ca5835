package ops

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/longctx/longctx/engine/cuda"
	"github.com/longctx/longctx/engine/kvpolicy"
)

// compactBench is a prefill compression of Llama-3-8B shapes: 32 layers ×
// 8 KV heads × 32k tokens, head_dim 128, half of each head kept, sink 4,
// window 64.
type compactBench struct {
	g                              *gpuEnv
	s                              cuda.Stream
	scores, srcK, srcV, dstK, dstV cuda.DevicePtr
	target, idx, cnt, flag         cuda.DevicePtr
	hostScores                     []float32
}

const (
	benchLayers = 32
	benchHeads  = 8
	benchN      = 32768
	benchHD     = 128
	benchSink   = 4
	benchWindow = 64
)

func newCompactBench(b *testing.B) *compactBench {
	g := openGPU(b)
	c := &compactBench{g: g}
	var err error
	c.s, err = g.d.StreamCreate(0)
	must(b, err)
	b.Cleanup(func() { g.d.StreamDestroy(c.s) })
	heads := benchLayers * benchHeads
	rng := rand.New(rand.NewPCG(9, 9))
	c.hostScores = makeScores(rng, heads*benchN, scoresNormal)
	c.scores = g.put(b, f32Bytes(c.hostScores), 0)
	rowBytes := 2 * benchHD
	src := [2]cuda.DevicePtr{g.alloc(b, heads*benchN*rowBytes), g.alloc(b, heads*benchN*rowBytes)}
	dst := [2]cuda.DevicePtr{g.alloc(b, heads*benchN*rowBytes), g.alloc(b, heads*benchN*rowBytes)}
	srcPos, dstPos := g.alloc(b, 4*heads*benchN), g.alloc(b, 4*heads*benchN)
	desc := func(data, pos cuda.DevicePtr, n int) cuda.DevicePtr {
		d := make([]kvHeadABI, heads)
		for h := range d {
			d[h] = kvHeadABI{Data: uint64(data) + uint64(h*benchN*rowBytes), Pos: uint64(pos) + uint64(4*h*benchN), Len: int32(n), RowStride: benchHD}
		}
		return g.put(b, kvHeadBytes(d), 0)
	}
	c.srcK, c.srcV = desc(src[0], srcPos, benchN), desc(src[1], srcPos, benchN)
	c.dstK, c.dstV = desc(dst[0], dstPos, 0), desc(dst[1], dstPos, 0)
	c.target = g.put(b, i32Bytes(filled32(heads, benchN/2)), 0)
	c.idx, c.cnt, c.flag = g.alloc(b, 4*heads*benchN), g.alloc(b, 4*heads), g.alloc(b, 4)
	must(b, g.d.MemsetD8(c.flag, 0, 4))
	return c
}

// run enqueues one compaction of every layer: per layer (heads 8) as the
// engine does, or every head of every layer in one launch of each kernel.
// It returns the GPU time of the selects and of the gathers.
func (c *compactBench) run(b *testing.B, perLayer bool, e [3]cuda.Event) {
	d, k := c.g.d, c.g.k
	layers, heads := benchLayers, benchHeads
	if !perLayer {
		layers, heads = 1, benchLayers*benchHeads
	}
	at := func(p cuda.DevicePtr, l, elem int) cuda.DevicePtr { return p + cuda.DevicePtr(l*heads*elem) }
	must(b, d.EventRecord(e[0], c.s))
	for l := range layers {
		must(b, k.KVSelect(c.s, at(c.scores, l, 4*benchN), benchN, at(c.srcK, l, 24), heads, at(c.target, l, 4),
			benchSink, benchWindow, at(c.idx, l, 4*benchN), benchN, at(c.cnt, l, 4), c.flag))
	}
	must(b, d.EventRecord(e[1], c.s))
	for l := range layers {
		must(b, k.KVGather(c.s, at(c.srcK, l, 24), at(c.srcV, l, 24), at(c.dstK, l, 24), at(c.dstV, l, 24),
			at(c.idx, l, 4*benchN), benchN, at(c.cnt, l, 4), heads, benchHD))
	}
	must(b, d.EventRecord(e[2], c.s))
}

func (c *compactBench) check(b *testing.B) {
	heads := benchLayers * benchHeads
	cnt := bytesI32(c.g.get(b, c.cnt, 4*heads))
	want, err := kvpolicy.Select(c.hostScores[:benchN], benchN/2, benchSink, benchWindow)
	must(b, err)
	for h, n := range cnt {
		if int(n) != len(want) {
			b.Fatalf("head %d kept %d, want %d", h, n, len(want))
		}
	}
	got := bytesI32(c.g.get(b, c.idx, 4*benchN))
	for i, w := range want {
		if int(got[i]) != w {
			b.Fatalf("head 0 keep[%d] = %d, want %d", i, got[i], w)
		}
	}
}

func benchmarkCompact(b *testing.B, perLayer bool) {
	c := newCompactBench(b)
	d := c.g.d
	var e [3]cuda.Event
	for i := range e {
		var err error
		e[i], err = d.EventCreate(0)
		must(b, err)
		defer d.EventDestroy(e[i])
	}
	c.run(b, perLayer, e) // warm-up
	must(b, d.StreamSynchronize(c.s))
	c.check(b)
	var sel, gat time.Duration
	for b.Loop() {
		c.run(b, perLayer, e)
		must(b, d.StreamSynchronize(c.s))
		t1, err := d.EventElapsed(e[0], e[1])
		must(b, err)
		t2, err := d.EventElapsed(e[1], e[2])
		must(b, err)
		sel, gat = sel+t1, gat+t2
	}
	n := float64(b.N)
	b.ReportMetric(sel.Seconds()*1e3/n, "select-ms")
	b.ReportMetric(gat.Seconds()*1e3/n, "gather-ms")
	moved := float64(benchLayers*benchHeads) * float64(benchN/2) * 2 * 2 * float64(2*benchHD) // K and V, read and write
	b.ReportMetric(moved/(gat.Seconds()/n)/1e9, "gather-GB/s")
}

// BenchmarkGPUKVCompactPerLayer: 32 × (kv_select + kv_gather) over 8
// heads, as engine/gpu compresses.
func BenchmarkGPUKVCompactPerLayer(b *testing.B) { benchmarkCompact(b, true) }

// BenchmarkGPUKVCompactOneLaunch: one kv_select and one kv_gather over
// all 256 heads.
func BenchmarkGPUKVCompactOneLaunch(b *testing.B) { benchmarkCompact(b, false) }
