package attnbench

import (
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/longctx/longctx/engine/cuda"
	"github.com/longctx/longctx/engine/kernelrun"
)

func TestShapeFigures(t *testing.T) {
	tests := []struct {
		s            Shape
		flops, bytes float64
		numQ, cap    int
	}{
		{Shape{Phase: Prefill, Batch: 1, N: 8192, Heads: 32, KVHeads: 8, HeadDim: 128},
			4 * 8192 * 8192 * 128 * 32 / 2, 2*8*8192*128*2 + 2*8192*32*128*2, 8192, 8192},
		// 32k decode at batch 8 reads exactly 1 GiB of K and V.
		{Shape{Phase: Decode, Batch: 8, N: 32768, Heads: 32, KVHeads: 8, HeadDim: 128, MaxKV: 65536},
			4 * 32768 * 128 * 32 * 8, 1 << 30, 1, 65536},
		{Shape{Phase: Decode, Batch: 3, N: 100, Heads: 4, KVHeads: 2, HeadDim: 64},
			4 * 100 * 64 * 4 * 3, 2 * 3 * 2 * 100 * 64 * 2, 1, 100},
	}
	for _, tc := range tests {
		if err := tc.s.Validate(); err != nil {
			t.Fatalf("%v: %v", tc.s, err)
		}
		if got := tc.s.FLOPs(); got != tc.flops {
			t.Errorf("%v: FLOPs %g, want %g", tc.s, got, tc.flops)
		}
		if got := tc.s.Bytes(); got != tc.bytes {
			t.Errorf("%v: Bytes %g, want %g", tc.s, got, tc.bytes)
		}
		if tc.s.NumQ() != tc.numQ || tc.s.Capacity() != tc.cap {
			t.Errorf("%v: numQ %d capacity %d, want %d and %d", tc.s, tc.s.NumQ(), tc.s.Capacity(), tc.numQ, tc.cap)
		}
	}
}

func TestShapeValidate(t *testing.T) {
	ok := Shape{Phase: Decode, Batch: 1, N: 16, Heads: 4, KVHeads: 2, HeadDim: 8}
	tests := []struct {
		name string
		edit func(*Shape)
		want string
	}{
		{"phase", func(s *Shape) { s.Phase = "both" }, "want prefill or decode"},
		{"batch", func(s *Shape) { s.Batch = 0 }, "must be positive"},
		{"gqa", func(s *Shape) { s.KVHeads = 3 }, "not a multiple of 3 KV heads"},
		{"capacity", func(s *Shape) { s.MaxKV = 8 }, "capacity 8 below N 16"},
	}
	for _, tc := range tests {
		s := ok
		tc.edit(&s)
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	if _, err := ParsePhase("decode "); err != nil {
		t.Error(err)
	}
	if _, err := ParsePhase("train"); err == nil {
		t.Error("ParsePhase(train) succeeded")
	}
}

// fakeGPU is a driver whose GPU is a clock: a kernel or copy advances it
// by a set time, events read it. Launches while capturing are counted into
// the graph instead.
type fakeGPU struct {
	clock      time.Duration
	events     map[cuda.Event]time.Duration
	nextEvent  cuda.Event
	live       map[cuda.DevicePtr]uint64
	nextPtr    cuda.DevicePtr
	memory     uint64 // device memory; 0: unlimited
	used       uint64
	uploads    map[cuda.DevicePtr][]byte
	launchCost time.Duration // CPU cost of a direct launch, which the GPU waits for
	graphCost  time.Duration // per graph launch
	copyBW     float64       // bytes per second, read + write counted
	capturing  bool
	captured   int
	captures   []int // launches of each graph captured
	failCap    bool
	graphs     int // live graphs and executable graphs
	// graphKernel is the time of each kernel of a graph being replayed.
	graphKernel time.Duration
}

func newFakeGPU() *fakeGPU {
	return &fakeGPU{events: map[cuda.Event]time.Duration{}, live: map[cuda.DevicePtr]uint64{}, uploads: map[cuda.DevicePtr][]byte{},
		nextPtr: 1 << 20, launchCost: 5 * time.Microsecond, graphCost: 3 * time.Microsecond, copyBW: 3e12}
}

func (g *fakeGPU) MemAlloc(n uint64) (cuda.DevicePtr, error) {
	if g.memory > 0 && g.used+n > g.memory {
		return 0, &cuda.Error{Func: "cuMemAlloc", Code: 2, Name: "CUDA_ERROR_OUT_OF_MEMORY", Text: "out of memory"}
	}
	p := g.nextPtr
	g.nextPtr += cuda.DevicePtr((n + 255) &^ 255)
	g.live[p] = n
	g.used += n
	return p, nil
}

func (g *fakeGPU) MemFree(p cuda.DevicePtr) error {
	n, ok := g.live[p]
	if !ok {
		return errors.New("cuMemFree: not allocated")
	}
	delete(g.live, p)
	g.used -= n
	return nil
}

func (g *fakeGPU) MemcpyHtoDAsync(dst cuda.DevicePtr, src []byte, _ cuda.Stream) error {
	g.uploads[dst] = append([]byte(nil), src...)
	return nil
}

func (g *fakeGPU) MemcpyDtoDAsync(dst, src cuda.DevicePtr, n uint64, _ cuda.Stream) error {
	g.clock += time.Duration(2 * float64(n) / g.copyBW * 1e9)
	return nil
}

func (g *fakeGPU) StreamSynchronize(cuda.Stream) error { return nil }

func (g *fakeGPU) EventCreate(uint32) (cuda.Event, error) {
	g.nextEvent++
	g.events[g.nextEvent] = 0
	return g.nextEvent, nil
}

func (g *fakeGPU) EventRecord(e cuda.Event, _ cuda.Stream) error {
	g.events[e] = g.clock
	return nil
}

func (g *fakeGPU) EventSynchronize(cuda.Event) error { return nil }

func (g *fakeGPU) EventElapsed(start, end cuda.Event) (time.Duration, error) {
	return g.events[end] - g.events[start], nil
}

func (g *fakeGPU) EventDestroy(e cuda.Event) error {
	if _, ok := g.events[e]; !ok {
		return errors.New("cuEventDestroy: no such event")
	}
	delete(g.events, e)
	return nil
}

func (g *fakeGPU) StreamBeginCapture(cuda.Stream, int) error {
	if g.failCap {
		return errors.New("cuStreamBeginCapture: CUDA_ERROR_NOT_SUPPORTED")
	}
	g.capturing, g.captured = true, 0
	return nil
}

func (g *fakeGPU) StreamEndCapture(cuda.Stream) (cuda.Graph, error) {
	g.capturing = false
	g.captures = append(g.captures, g.captured)
	g.graphs++
	return cuda.Graph(g.captured), nil
}

func (g *fakeGPU) GraphInstantiate(gr cuda.Graph) (cuda.GraphExec, error) {
	g.graphs++
	return cuda.GraphExec(gr), nil
}

func (g *fakeGPU) GraphDestroy(cuda.Graph) error         { g.graphs--; return nil }
func (g *fakeGPU) GraphExecDestroy(cuda.GraphExec) error { g.graphs--; return nil }

// kernel runs one kernel of duration k: captured, or launched directly,
// when the CPU's launch cost is what the GPU waits for if it is longer.
func (g *fakeGPU) kernel(k time.Duration) {
	if g.capturing {
		g.captured++
		return
	}
	g.clock += max(k, g.launchCost)
}

func (g *fakeGPU) GraphLaunch(e cuda.GraphExec, _ cuda.Stream) error {
	g.clock += g.graphCost + time.Duration(e)*g.graphKernel
	return nil
}

// fakeRole launches one kernel of a set duration and keeps the last
// parameters.
type fakeRole struct {
	g        *fakeGPU
	name     string
	ws       int64
	took     time.Duration
	last     kernelrun.AttentionParams
	launches int
	fail     error
	// ks is the K descriptor array of every launch, captured or not, in
	// order; params the parameters launched with each.
	ks     []cuda.DevicePtr
	params map[cuda.DevicePtr]kernelrun.AttentionParams
}

func (r *fakeRole) Name() string                   { return r.name }
func (r *fakeRole) Workspace(_, _, _, _ int) int64 { return r.ws }
func (r *fakeRole) Launch(_ cuda.Stream, p kernelrun.Params) error {
	if r.fail != nil {
		return r.fail
	}
	ap := p.(*kernelrun.AttentionParams)
	if r.ws > 0 && (ap.Workspace == 0 || ap.WorkspaceBytes < uint64(r.ws)) {
		return errors.New("workspace too small")
	}
	r.last = *ap
	r.launches++
	r.ks = append(r.ks, ap.K)
	if r.params == nil {
		r.params = map[cuda.DevicePtr]kernelrun.AttentionParams{}
	}
	r.params[ap.K] = *ap
	r.g.graphKernel = r.took
	r.g.kernel(r.took)
	return nil
}

func decodeShape() Shape {
	return Shape{Phase: Decode, Batch: 2, N: 1000, Heads: 8, KVHeads: 2, HeadDim: 64, MaxKV: 1024}
}

func TestRunDecode(t *testing.T) {
	tests := []struct {
		name      string
		noGraph   bool
		failCap   bool
		wantGraph bool
		wantMS    float64 // per launch
	}{
		// Replayed from a graph, a 2 µs kernel takes its own time plus
		// its share of the 3 µs graph launch; one by one, the GPU waits
		// for the CPU's 5 µs launch cost.
		{"graph", false, false, true, 0.002 + 0.003/64},
		{"no graph", true, false, false, 0.005},
		{"capture refused", false, true, false, 0.005},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newFakeGPU()
			g.failCap = tc.failCap
			role := &fakeRole{g: g, name: "attention.decode", ws: 4096, took: 2 * time.Microsecond}
			sh := decodeShape()
			res := Run(g, 0, role, sh, Options{MinTime: time.Millisecond, Repeats: 3, NoGraph: tc.noGraph})
			if res.Status != StatusOK {
				t.Fatalf("status %s: %v", res.Status, res.Err)
			}
			if res.Graph != tc.wantGraph {
				t.Errorf("graph %v, want %v", res.Graph, tc.wantGraph)
			}
			if math.Abs(res.MS-tc.wantMS) > 1e-5 {
				t.Errorf("%.4f ms per launch, want %.4f", res.MS, tc.wantMS)
			}
			if got := float64(res.Iters) * res.MS; got < 0.5 {
				t.Errorf("%d launches of %.4f ms per measurement: under half of MinTime", res.Iters, res.MS)
			}
			if res.Repeats != 3 {
				t.Errorf("%d repeats, want 3", res.Repeats)
			}
			if want := sh.Bytes() / (res.MS / 1e3) / 1e9; math.Abs(res.GBps-want) > 1e-6*want {
				t.Errorf("GB/s %g, want %g", res.GBps, want)
			}
			if len(g.live) != 0 || len(g.events) != 0 || g.graphs != 0 {
				t.Errorf("left behind: %d buffers, %d events, %d graphs", len(g.live), len(g.events), g.graphs)
			}
			checkParams(t, g, sh, role.last, 4096)
		})
	}
}

// checkParams checks the parameters of the last launch against the shape:
// sizes, query positions, and one descriptor per (sequence, KV head) with
// N rows at positions 0..N-1 in buffers of their own.
func checkParams(t *testing.T, g *fakeGPU, sh Shape, p kernelrun.AttentionParams, ws uint64) {
	t.Helper()
	if int(p.NumSeqs) != sh.Batch || int(p.NumQ) != sh.NumQ() || int(p.NumHeads) != sh.Heads || int(p.NumKVHeads) != sh.KVHeads ||
		int(p.HeadDim) != sh.HeadDim || int(p.MaxKVLen) != sh.Capacity() || p.DType != kernelrun.DTypeBF16 {
		t.Errorf("params %+v for %v", p, sh)
	}
	if p.WorkspaceBytes != ws || p.QRowStride != int64(sh.Heads*sh.HeadDim) || p.OutRowStride != p.QRowStride {
		t.Errorf("workspace %d, strides %d %d", p.WorkspaceBytes, p.QRowStride, p.OutRowStride)
	}
	if want := float32(1 / math.Sqrt(float64(sh.HeadDim))); p.Scale != want {
		t.Errorf("scale %v, want %v", p.Scale, want)
	}
	qpos := g.uploads[p.QPos]
	if len(qpos) != 4*sh.Batch*sh.NumQ() {
		t.Fatalf("%d bytes of query positions", len(qpos))
	}
	for i := range sh.Batch * sh.NumQ() {
		want := sh.N - sh.NumQ() + i%sh.NumQ()
		if got := int32(binary.LittleEndian.Uint32(qpos[4*i:])); int(got) != want {
			t.Fatalf("query row %d at position %d, want %d", i, got, want)
		}
	}
	seen := map[uint64]bool{}
	for _, desc := range []cuda.DevicePtr{p.K, p.V} {
		b := g.uploads[desc]
		if len(b) != sh.Batch*sh.KVHeads*kernelrun.KVHeadBytes {
			t.Fatalf("%d bytes of descriptors", len(b))
		}
		for i := range sh.Batch * sh.KVHeads {
			e := b[i*kernelrun.KVHeadBytes:]
			data, pos := binary.LittleEndian.Uint64(e), binary.LittleEndian.Uint64(e[8:])
			n, stride := binary.LittleEndian.Uint32(e[16:]), binary.LittleEndian.Uint32(e[20:])
			if int(n) != sh.N || int(stride) != sh.HeadDim || seen[data] {
				t.Fatalf("descriptor %d: data %#x len %d stride %d", i, data, n, stride)
			}
			seen[data] = true
			kp := g.uploads[cuda.DevicePtr(pos)]
			if len(kp) < 4*sh.N || binary.LittleEndian.Uint32(kp[4*(sh.N-1):]) != uint32(sh.N-1) {
				t.Fatalf("descriptor %d: key positions do not run to %d", i, sh.N-1)
			}
		}
	}
}

func TestRunPrefillLongKernel(t *testing.T) {
	// A 2 s launch is timed once per repeat, and repeats stop at MaxTime.
	g := newFakeGPU()
	role := &fakeRole{g: g, name: "attention.prefill", took: 2 * time.Second}
	sh := Shape{Phase: Prefill, Batch: 1, N: 300, Heads: 4, KVHeads: 4, HeadDim: 32}
	res := Run(g, 0, role, sh, Options{MaxTime: 5 * time.Second})
	if res.Status != StatusOK || res.Iters != 1 || res.Repeats != 2 || res.Graph {
		t.Fatalf("status %s (%v), %d iters, %d repeats, graph %v: want ok, 1, 2, false", res.Status, res.Err, res.Iters, res.Repeats, res.Graph)
	}
	if res.MS != 2000 {
		t.Errorf("%.1f ms, want 2000", res.MS)
	}
	if want := sh.FLOPs() / 2 / 1e12; math.Abs(res.TFLOPS-want) > 1e-9*want {
		t.Errorf("TFLOP/s %g, want %g", res.TFLOPS, want)
	}
	checkParams(t, g, sh, role.last, 0)
	if role.launches != 3 { // warm-up + 2 repeats
		t.Errorf("%d launches, want 3", role.launches)
	}
}

func TestRunFailures(t *testing.T) {
	sh := decodeShape()
	tests := []struct {
		name    string
		memory  uint64
		ws      int64
		role    string
		fail    error
		want    Status
		wantErr string
	}{
		{"inputs do not fit", 1 << 20, 0, "attention.decode", nil, StatusOOM, "out of memory"},
		{"workspace does not fit", 64 << 20, 1 << 40, "attention.decode", nil, StatusOOM, "workspace (1099511627776 bytes)"},
		{"launch fails", 0, 0, "attention.decode", errors.New("too many resources requested"), StatusError, "warm-up launch: too many resources"},
		{"wrong role", 0, 0, "attention.prefill", nil, StatusError, "role attention.prefill, want attention.decode"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newFakeGPU()
			g.memory = tc.memory
			role := &fakeRole{g: g, name: tc.role, ws: tc.ws, took: time.Microsecond, fail: tc.fail}
			res := Run(g, 0, role, sh, Options{MinTime: time.Millisecond})
			if res.Status != tc.want || res.Err == nil || !strings.Contains(res.Err.Error(), tc.wantErr) {
				t.Fatalf("status %s, error %v: want %s with %q", res.Status, res.Err, tc.want, tc.wantErr)
			}
			if res.MS != 0 || res.TFLOPS != 0 {
				t.Errorf("failed result has times: %+v", res)
			}
			if len(g.live) != 0 || len(g.events) != 0 {
				t.Errorf("left behind: %d buffers, %d events", len(g.live), len(g.events))
			}
		})
	}
}

func TestCopyBandwidth(t *testing.T) {
	g := newFakeGPU()
	r, err := CopyBandwidth(g, 0, 1<<30, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(r.GBps-3000) > 1 {
		t.Errorf("%.1f GB/s, want 3000", r.GBps)
	}
	if r.Iters*int(r.MS*1e3) < 25000 {
		t.Errorf("%d copies of %.3f ms: a measurement under half of MinTime", r.Iters, r.MS)
	}
	if len(g.live) != 0 {
		t.Errorf("%d buffers left", len(g.live))
	}
	g.memory = 1 << 30
	if _, err := CopyBandwidth(g, 0, 1<<30, Options{}); !cuda.IsOutOfMemory(err) {
		t.Errorf("copy of 2 GiB on a 1 GiB device: %v, want out of memory", err)
	}
	if len(g.live) != 0 {
		t.Errorf("%d buffers left after failing", len(g.live))
	}
}

func TestColdSets(t *testing.T) {
	const h100, a100 = 50 << 20, 40 << 20
	dec := func(b, n int) Shape { return Shape{Phase: Decode, Batch: b, N: n, Heads: 32, KVHeads: 8, HeadDim: 128} }
	pre := func(b, n int) Shape {
		return Shape{Phase: Prefill, Batch: b, N: n, Heads: 32, KVHeads: 8, HeadDim: 128}
	}
	tiny := Shape{Phase: Decode, Batch: 1, N: 16, Heads: 1, KVHeads: 1, HeadDim: 8}
	tests := []struct {
		name    string
		s       Shape
		l2      int64
		want    int
		wantErr string
	}{
		// 32k decode reads 128 MiB of K/V (+ 8 KiB of Q): 2 sets would
		// hold 5.1× the L2, but never fewer than MinInputSets.
		{"decode b1 32k", dec(1, 32768), h100, MinInputSets, ""},
		// 4 MiB + 8 KiB per set: 200 MiB / 4.0078 MiB = 49.9.
		{"decode b1 1k", dec(1, 1024), h100, 50, ""},
		{"decode b1 1k, A100", dec(1, 1024), a100, 40, ""},
		{"decode b8 32k", dec(8, 32768), h100, MinInputSets, ""},
		// Q 8 MiB + K/V 4 MiB: 200 / 12 = 16.7.
		{"prefill b1 1k", pre(1, 1024), h100, 17, ""},
		{"prefill b8 64k", pre(8, 65536), h100, MinInputSets, ""},
		// A shape of a quarter of the L2's size: 16 sets, not 17.
		{"quarter of L2", dec(1, 1024), 4 * dec(1, 1024).InputBytes(), 16, ""},
		// One set holding more than 4× the L2 still gets MinInputSets.
		{"set over 4x L2", dec(1, 1024), 1 << 20, MinInputSets, ""},
		{"largest", tiny, tiny.InputBytes() * MaxInputSets / ColdL2Factor, MaxInputSets, ""},
		{"too small", tiny, h100, 0, "more than 1024"},
		{"L2 unknown", dec(1, 1024), 0, 0, "L2 cache size is not known"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, err := ColdSets(tc.s, tc.l2)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("%d sets, error %v: want an error with %q", n, err, tc.wantErr)
				}
				return
			}
			if err != nil || n != tc.want {
				t.Fatalf("%d sets, error %v: want %d", n, err, tc.want)
			}
			per := tc.s.InputBytes()
			if int64(n)*per < ColdL2Factor*tc.l2 || (n > MinInputSets && int64(n-1)*per >= ColdL2Factor*tc.l2) {
				t.Errorf("%d sets of %d bytes against %d bytes of L2: not the fewest that hold %d× it", n, per, tc.l2, ColdL2Factor)
			}
		})
	}
}

func TestGraphLaunches(t *testing.T) {
	tests := []struct{ want, cycle, n int }{
		{5000, 1, 64}, {10, 1, 10}, // warm: as before
		{5000, 2, 64}, {5000, 3, 63}, {5000, 50, 50}, {5000, 64, 64},
		{5000, 100, 100}, // more sets than maxGraphLaunches: one cycle
		{10, 3, 9}, {2, 3, 3}, {2, 2, 2},
	}
	for _, tc := range tests {
		if n := graphLaunches(tc.want, tc.cycle); n != tc.n {
			t.Errorf("graphLaunches(%d, %d) = %d, want %d", tc.want, tc.cycle, n, tc.n)
		}
	}
}

// A cold-L2 run launches the input sets in turn, one after the other,
// whether launched directly or replayed from a graph, which holds whole
// cycles; a warm one launches the same inputs every time, as before.
func TestRunColdL2Rotation(t *testing.T) {
	sh := decodeShape()
	per := sh.InputBytes() // 1 026 048 bytes
	tests := []struct {
		name      string
		cold      bool
		l2        int64
		noGraph   bool
		failCap   bool
		sets      int
		perGraph  int // launches of the captured graph; 0: none
		wantGraph bool
	}{
		{"warm", false, 0, false, false, 1, 64, true},
		{"warm, L2 size given", false, 50 << 20, false, false, 1, 64, true},
		{"warm, no graph", false, 0, true, false, 1, 0, false},
		{"cold, the fewest sets", true, 100, false, false, MinInputSets, 64, true},
		{"cold, 9 sets", true, 2257305, false, false, 9, 63, true},
		{"cold, 100 sets", true, 100 * per / 4, false, false, 100, 100, true},
		{"cold, no graph", true, 2257305, true, false, 9, 0, false},
		{"cold, capture refused", true, 2257305, false, true, 9, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newFakeGPU()
			g.failCap = tc.failCap
			role := &fakeRole{g: g, name: "attention.decode", ws: 4096, took: 2 * time.Microsecond}
			res := Run(g, 0, role, sh, Options{MinTime: time.Millisecond, Repeats: 3, NoGraph: tc.noGraph, ColdL2: tc.cold, L2Bytes: tc.l2})
			if res.Status != StatusOK {
				t.Fatalf("status %s: %v", res.Status, res.Err)
			}
			if res.ColdL2 != tc.cold || res.InputSets != tc.sets || res.InputSetBytes != per || res.Note != "" || res.Graph != tc.wantGraph {
				t.Errorf("cold %v, %d sets of %d bytes, note %q, graph %v: want %v, %d, %d, none, %v",
					res.ColdL2, res.InputSets, res.InputSetBytes, res.Note, res.Graph, tc.cold, tc.sets, per, tc.wantGraph)
			}
			if tc.cold && res.L2Bytes != tc.l2 || !tc.cold && res.L2Bytes != 0 {
				t.Errorf("L2 bytes %d", res.L2Bytes)
			}
			// The first launches meet the sets in the order of the rest.
			if len(role.ks) < tc.sets {
				t.Fatalf("%d launches for %d sets", len(role.ks), tc.sets)
			}
			order := role.ks[:tc.sets]
			for i, k := range role.ks {
				if k != order[i%tc.sets] {
					t.Fatalf("launch %d of %d used set %#x, want %#x (set %d)", i, len(role.ks), k, order[i%tc.sets], i%tc.sets)
				}
			}
			if len(role.params) != tc.sets {
				t.Errorf("%d sets launched, want %d", len(role.params), tc.sets)
			}
			// Sets share nothing they read: K/V descriptors, K/V data, Q.
			data := map[uint64]bool{}
			bufs := map[cuda.DevicePtr]bool{}
			for _, p := range role.params {
				checkParams(t, g, sh, p, 4096)
				if p.Out != role.last.Out || p.QPos != role.last.QPos || p.Workspace != role.last.Workspace {
					t.Errorf("output, query positions or workspace differ between sets")
				}
				bufs[p.Q], bufs[p.K], bufs[p.V] = true, true, true
				for _, desc := range []cuda.DevicePtr{p.K, p.V} {
					b := g.uploads[desc]
					for i := 0; i < len(b); i += kernelrun.KVHeadBytes {
						d := binary.LittleEndian.Uint64(b[i:])
						if data[d] {
							t.Fatalf("K/V data %#x in two descriptors", d)
						}
						data[d] = true
					}
				}
			}
			if len(bufs) != 3*tc.sets || len(data) != 2*tc.sets*sh.Batch*sh.KVHeads {
				t.Errorf("%d distinct Q and descriptor buffers and %d K/V heads for %d sets", len(bufs), len(data), tc.sets)
			}
			if tc.perGraph == 0 {
				if len(g.captures) != 0 && !tc.failCap {
					t.Errorf("graphs captured: %v", g.captures)
				}
			} else {
				if len(g.captures) != 1 || g.captures[0] != tc.perGraph {
					t.Errorf("graphs of %v launches, want one of %d", g.captures, tc.perGraph)
				}
				if want := 0.002 + 0.003/float64(tc.perGraph); math.Abs(res.MS-want) > 1e-5 {
					t.Errorf("%.5f ms per launch, want %.5f", res.MS, want)
				}
			}
			if len(g.live) != 0 || len(g.events) != 0 || g.graphs != 0 {
				t.Errorf("left behind: %d buffers, %d events, %d graphs", len(g.live), len(g.events), g.graphs)
			}
		})
	}
}

// A cold-L2 run whose sets do not all fit goes on with those that do when
// there are at least two, and says so; with fewer it is an oom result.
func TestRunColdL2Memory(t *testing.T) {
	sh := decodeShape()
	const l2 = 1 << 20 // 5 sets of 1 026 048 bytes hold 4 MiB; MinInputSets (8) it is
	run := func(memory uint64) (Result, *fakeRole, *fakeGPU) {
		g := newFakeGPU()
		g.memory = memory
		role := &fakeRole{g: g, name: "attention.decode", ws: 4096, took: 2 * time.Microsecond}
		return Run(g, 0, role, sh, Options{MinTime: time.Millisecond, Repeats: 2, ColdL2: true, L2Bytes: l2}), role, g
	}
	full, _, _ := run(0)
	wg := newFakeGPU()
	warm := Run(wg, 0, &fakeRole{g: wg, name: "attention.decode", ws: 4096, took: time.Microsecond}, sh, Options{MinTime: time.Millisecond})
	if full.Status != StatusOK || full.InputSets != 8 || warm.InputSets != 1 {
		t.Fatalf("unlimited memory: %s (%v), %d sets; warm %d sets", full.Status, full.Err, full.InputSets, warm.InputSets)
	}
	setAlloc := uint64(full.DeviceBytes-warm.DeviceBytes) / 7
	tests := []struct {
		name     string
		fit      int // sets the memory holds
		extra    uint64
		status   Status
		sets     int
		wantNote string
		wantErr  string
	}{
		{"all fit", 8, 0, StatusOK, 8, "", ""},
		{"seven and a half", 7, setAlloc / 2, StatusOK, 7, "only 7 of 8 input sets fit in device memory, together 6.8× the L2", ""},
		{"three", 3, 0, StatusOK, 3, "only 3 of 8", ""},
		{"two", 2, setAlloc - 1, StatusOK, 2, "only 2 of 8", ""},
		{"one", 1, setAlloc / 2, StatusOOM, 8, "", "cold L2: input set 2 of 8 (1026048 bytes read per launch)"},
		{"none", 0, 0, StatusOOM, 8, "", "cold L2: input set 1 of 8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mem := uint64(warm.DeviceBytes) + uint64(tc.fit-1)*setAlloc + tc.extra
			if tc.fit == 0 {
				mem = uint64(warm.DeviceBytes) - setAlloc/2
			}
			res, role, g := run(mem)
			if res.Status != tc.status || res.InputSets != tc.sets || !res.ColdL2 {
				t.Fatalf("status %s (%v), %d sets, cold %v: want %s, %d sets", res.Status, res.Err, res.InputSets, res.ColdL2, tc.status, tc.sets)
			}
			if tc.wantErr != "" {
				if res.Err == nil || !strings.Contains(res.Err.Error(), tc.wantErr) || !strings.Contains(res.Err.Error(), "out of memory") {
					t.Errorf("error %v, want one with %q", res.Err, tc.wantErr)
				}
				if res.MS != 0 {
					t.Errorf("oom result has a time: %+v", res)
				}
			} else {
				if !strings.Contains(res.Note, tc.wantNote) || (tc.wantNote == "") != (res.Note == "") {
					t.Errorf("note %q, want %q", res.Note, tc.wantNote)
				}
				if len(role.params) != tc.sets {
					t.Errorf("%d sets launched, want %d", len(role.params), tc.sets)
				}
				for i, k := range role.ks {
					if k != role.ks[i%tc.sets] {
						t.Fatalf("launch %d out of turn", i)
					}
				}
				if res.DeviceBytes > int64(mem) {
					t.Errorf("%d device bytes counted on a device of %d", res.DeviceBytes, mem)
				}
			}
			if len(g.live) != 0 || g.used != 0 {
				t.Errorf("left behind: %d buffers, %d bytes", len(g.live), g.used)
			}
		})
	}
}

// A shape too small to be timed cold is an error before anything is
// allocated, not a warm measurement.
func TestRunColdL2TooSmall(t *testing.T) {
	g := newFakeGPU()
	role := &fakeRole{g: g, name: "attention.decode", took: time.Microsecond}
	sh := Shape{Phase: Decode, Batch: 1, N: 16, Heads: 1, KVHeads: 1, HeadDim: 8}
	res := Run(g, 0, role, sh, Options{MinTime: time.Millisecond, ColdL2: true, L2Bytes: 50 << 20})
	if res.Status != StatusError || res.Err == nil || !strings.Contains(res.Err.Error(), "input sets would be needed") || role.launches != 0 || !res.ColdL2 || res.InputSets != 0 {
		t.Fatalf("status %s (%v), %d launches: want an error and none", res.Status, res.Err, role.launches)
	}
	res = Run(g, 0, role, decodeShape(), Options{MinTime: time.Millisecond, ColdL2: true})
	if res.Status != StatusError || !strings.Contains(res.Err.Error(), "L2 cache size is not known") {
		t.Fatalf("no L2 size: status %s (%v)", res.Status, res.Err)
	}
}
