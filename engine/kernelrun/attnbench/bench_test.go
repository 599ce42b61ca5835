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
