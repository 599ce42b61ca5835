package eager

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/longctx/longctx/engine/cuda"
	"github.com/longctx/longctx/engine/kernelrun"
	"github.com/longctx/longctx/engine/kernelrun/gputest"
	"github.com/longctx/longctx/plugins/sdk"
)

// gpuCase is one attention launch: seqs sequences of numQ query rows
// against KV heads of lens[seq][kv head] rows.
type gpuCase struct {
	name              string
	heads, kvHeads, d int
	numQ              int
	lens              [][]int
	window            int
	gaps              bool // positions with holes, as after compaction
	qPad, kvPad       int  // extra elements per Q/out row and per K/V row
	decode            bool
	capacity          int // max_kv_len beyond the longest head (a decode graph's cache)
}

// uniform is one sequence whose KV heads all hold n rows.
func uniform(kvHeads, n int) [][]int {
	l := make([]int, kvHeads)
	for i := range l {
		l[i] = n
	}
	return [][]int{l}
}

// varied gives KV head h of each sequence n - (7h mod 31) rows (at least
// 0), the uneven lengths of a compacted cache.
func varied(kvHeads int, ns ...int) [][]int {
	out := make([][]int, len(ns))
	for s, n := range ns {
		out[s] = make([]int, kvHeads)
		for h := range out[s] {
			out[s][h] = max(0, n-(7*h)%31)
		}
	}
	return out
}

// gpuProblem is a case's inputs on the host (bf16 values as fp32) and on
// the device.
type gpuProblem struct {
	c            gpuCase
	q            []float32 // [seqs][numQ][heads][d]
	qPos         []int     // [seqs][numQ]
	k, v         [][]float32
	kPos         [][]int // [seqs*kvHeads]
	maxKV        int
	params       kernelrun.AttentionParams
	out          cuda.DevicePtr
	outBytes     int64
	qStride      int
	kDev, vDev   []cuda.DevicePtr
	kPosDev      []cuda.DevicePtr
	kvHeadsDev   [2]cuda.DevicePtr
	qDev, posDev cuda.DevicePtr
}

func (c gpuCase) seqs() int { return len(c.lens) }

// newProblem draws random bf16 inputs and uploads them. Padding of Q and
// K/V rows is NaN, so a kernel reading it would show.
func newProblem(env *gputest.Env, c gpuCase, seed uint64) *gpuProblem {
	rng := rand.New(rand.NewPCG(seed, 0x6561676572))
	randBF16 := func() float32 { return gputest.RoundBF16(float32(rng.NormFloat64())) }
	nan := float32(math.NaN())
	pr := &gpuProblem{c: c, qStride: c.heads*c.d + c.qPad}
	S, H, KVH, D, Q := c.seqs(), c.heads, c.kvHeads, c.d, c.numQ
	kvStride := D + c.kvPad

	pr.kPos = make([][]int, S*KVH)
	pr.k, pr.v = make([][]float32, S*KVH), make([][]float32, S*KVH)
	for s := range S {
		last := 0
		for h := range KVH {
			n := c.lens[s][h]
			pos, p := make([]int, n), -1
			for j := range pos {
				p++
				if c.gaps && rng.IntN(3) == 0 {
					p += rng.IntN(4)
				}
				pos[j] = p
			}
			if n > 0 {
				last = max(last, pos[n-1])
			}
			g := s*KVH + h
			pr.kPos[g] = pos
			pr.k[g], pr.v[g] = make([]float32, n*D), make([]float32, n*D)
			for i := range pr.k[g] {
				pr.k[g][i], pr.v[g][i] = randBF16(), randBF16()
			}
			pr.maxKV = max(pr.maxKV, n)
		}
		// Prefill: the queries are the last numQ positions (a chunk of a
		// longer prompt when the cache holds more); decode: the next one.
		for i := range Q {
			if c.decode {
				pr.qPos = append(pr.qPos, last+1+i)
			} else {
				pr.qPos = append(pr.qPos, last-Q+1+i)
			}
		}
	}
	pr.q = make([]float32, S*Q*H*D)
	for i := range pr.q {
		pr.q[i] = randBF16()
	}

	// Device copies.
	qRows := make([]float32, S*Q*pr.qStride)
	for r := range S * Q {
		for e := range pr.qStride {
			if e < H*D {
				qRows[r*pr.qStride+e] = pr.q[r*H*D+e]
			} else {
				qRows[r*pr.qStride+e] = nan
			}
		}
	}
	pr.qDev = env.Upload(gputest.BF16(qRows))
	qp := make([]int32, len(pr.qPos))
	for i, p := range pr.qPos {
		qp[i] = int32(p)
	}
	pr.posDev = env.Upload(gputest.I32(qp))
	var kh, vh []kernelrun.KVHead
	for g := range S * KVH {
		n := len(pr.kPos[g])
		pad := func(x []float32) []byte {
			rows := make([]float32, max(n, 1)*kvStride)
			for i := range rows {
				rows[i] = nan
			}
			for j := range n {
				copy(rows[j*kvStride:], x[j*D:(j+1)*D])
			}
			return gputest.BF16(rows)
		}
		pos := make([]int32, max(n, 1))
		for j, p := range pr.kPos[g] {
			pos[j] = int32(p)
		}
		posDev := env.Upload(gputest.I32(pos))
		kd, vd := env.Upload(pad(pr.k[g])), env.Upload(pad(pr.v[g]))
		pr.kDev, pr.vDev, pr.kPosDev = append(pr.kDev, kd), append(pr.vDev, vd), append(pr.kPosDev, posDev)
		kh = append(kh, kernelrun.KVHead{Data: kd, Pos: posDev, Len: int32(n), RowStride: int32(kvStride)})
		vh = append(vh, kernelrun.KVHead{Data: vd, Pos: posDev, Len: int32(n), RowStride: int32(kvStride)})
	}
	pr.kvHeadsDev = [2]cuda.DevicePtr{env.Upload(kernelrun.KVHeadsBytes(kh)), env.Upload(kernelrun.KVHeadsBytes(vh))}
	pr.outBytes = int64(2 * S * Q * pr.qStride)
	pr.out = env.Alloc(pr.outBytes)
	pr.params = kernelrun.AttentionParams{
		NumSeqs: int32(S), NumQ: int32(Q), NumHeads: int32(H), NumKVHeads: int32(KVH), HeadDim: int32(D),
		SlidingWindow: int32(c.window), MaxKVLen: int32(pr.maxKV + c.capacity), Scale: float32(1 / math.Sqrt(float64(D))),
		DType: kernelrun.DTypeBF16, Q: pr.qDev, QRowStride: int64(pr.qStride), QPos: pr.posDev,
		K: pr.kvHeadsDev[0], V: pr.kvHeadsDev[1], Out: pr.out, OutRowStride: int64(pr.qStride),
	}
	return pr
}

// reference computes eager attention on the same bf16 inputs with the
// rounding points of transformers' bf16 eager attention, which the kernels
// reproduce: S = bf16(bf16(q·k)·scale), P = bf16(softmax(S) in fp32),
// O = P·V accumulated in fp32. Without them (attention.Eager in fp32) a
// faithful kernel is off by up to ~1.5%: a score near 10 keeps only 8
// significant bits in bf16.
func (pr *gpuProblem) reference(t testing.TB) []float32 {
	c := pr.c
	S, H, KVH, D, Q := c.seqs(), c.heads, c.kvHeads, c.d, c.numQ
	round := func(x float32) float32 { return gputest.FromBF16(gputest.BF16([]float32{x}))[0] }
	scale := pr.params.Scale
	out := make([]float32, S*Q*H*D)
	for s := range S {
		for qi := range Q {
			qp := pr.qPos[s*Q+qi]
			for h := range H {
				g := s*KVH + h/(H/KVH)
				q := pr.q[((s*Q+qi)*H+h)*D:][:D]
				keys, vals, kpos := pr.k[g], pr.v[g], pr.kPos[g]
				sc := make([]float32, len(kpos))
				visible := make([]bool, len(kpos))
				m := float32(math.Inf(-1))
				for j, kp := range kpos {
					if kp > qp || (c.window > 0 && qp-kp >= c.window) {
						continue
					}
					var dot float32
					for e := range D {
						dot += q[e] * keys[j*D+e]
					}
					sc[j], visible[j] = round(round(dot)*scale), true
					m = max(m, sc[j])
				}
				var sum float32
				for j := range sc {
					if visible[j] {
						sc[j] = float32(math.Exp(float64(sc[j] - m)))
						sum += sc[j]
					}
				}
				o := out[((s*Q+qi)*H+h)*D:][:D]
				for j := range sc {
					if !visible[j] {
						continue
					}
					p := round(sc[j] / sum)
					for e := range D {
						o[e] += p * vals[j*D+e]
					}
				}
			}
		}
	}
	return out
}

// check compares the kernels' output with the reference: every element
// within 1e-2 of the largest |reference|, and the padding of the output
// rows untouched.
func (pr *gpuProblem) check(t testing.TB, env *gputest.Env, ref []float32) {
	t.Helper()
	c := pr.c
	got := gputest.FromBF16(env.Download(pr.out, int(pr.outBytes)))
	HD := c.heads * c.d
	var maxRef, maxErr float64
	worst := -1
	for r := range c.seqs() * c.numQ {
		for e := range pr.qStride {
			g := float64(got[r*pr.qStride+e])
			if e >= HD {
				if !math.IsNaN(g) {
					t.Fatalf("%s: row %d padding element %d written (%v)", c.name, r, e, g)
				}
				continue
			}
			w := float64(ref[r*HD+e])
			maxRef = max(maxRef, math.Abs(w))
			if d := math.Abs(g - w); !(d <= maxErr) { // NaN counts as the worst
				maxErr, worst = d, r*HD+e
				if math.IsNaN(d) {
					maxErr = math.Inf(1)
				}
			}
		}
	}
	rel := maxErr / max(maxRef, 1e-30)
	t.Logf("%s: max |err| %.3g = %.2g of max |out| %.3g", c.name, maxErr, rel, maxRef)
	if !(rel <= 1e-2) {
		row, col := worst/HD, worst%HD
		t.Errorf("%s: error %.3g of max |out| %.3g at query row %d head %d dim %d: got %v, want %v",
			c.name, maxErr, maxRef, row, col/c.d, col%c.d, got[row*pr.qStride+col], ref[worst])
	}
}

// launch runs a role on the problem with a fresh, poisoned workspace and
// a poisoned output, and checks that nothing was written past the
// workspace's end.
func (pr *gpuProblem) launch(t testing.TB, env *gputest.Env, role *kernelrun.Role) {
	t.Helper()
	p := pr.params
	ws := role.Workspace(int(p.NumSeqs), int(p.NumHeads), int(p.NumQ), int(p.MaxKVLen))
	const guard = 4096
	buf := env.Alloc(ws + guard)
	env.Poison(buf, ws+guard)
	env.Poison(pr.out, pr.outBytes)
	p.Workspace, p.WorkspaceBytes = buf, uint64(ws)
	if err := role.Launch(env.Stream, &p); err != nil {
		t.Fatal(err)
	}
	tail := env.Download(buf+cuda.DevicePtr(ws), guard)
	for i, b := range tail {
		if b != 0xFF {
			t.Fatalf("%s: byte %d past the %d-byte workspace written", pr.c.name, i, ws)
		}
	}
}

func roles(t testing.TB, env *gputest.Env, c gpuCase) (prefill, decode *kernelrun.Role) {
	m := sdk.ModelShape{NumLayers: 1, NumHeads: c.heads, NumKVHeads: c.kvHeads, HeadDim: c.d}
	o, err := sdk.ResolveOptions(Plugin().Options, nil)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := Plugin().Prepare(context.Background(), &sdk.PrepareRequest{Model: m, Device: env.Device(), Options: o})
	if err != nil {
		t.Fatal(err)
	}
	return env.Role("eager", plan.Kernels, sdk.RoleAttentionPrefill), env.Role("eager", plan.Kernels, sdk.RoleAttentionDecode)
}

var prefillCases = []gpuCase{
	{name: "4/2 d16 q17", heads: 4, kvHeads: 2, d: 16, numQ: 17, lens: uniform(2, 17)},
	{name: "4/2 d32 q100 padded rows", heads: 4, kvHeads: 2, d: 32, numQ: 100, lens: uniform(2, 100), qPad: 8, kvPad: 8},
	{name: "32/8 d64 q300", heads: 32, kvHeads: 8, d: 64, numQ: 300, lens: uniform(8, 300)},
	{name: "32/8 d128 q300 kv301", heads: 32, kvHeads: 8, d: 128, numQ: 300, lens: uniform(8, 301)},
	{name: "4/2 d128 q1", heads: 4, kvHeads: 2, d: 128, numQ: 1, lens: uniform(2, 1)},
	{name: "32/8 d128 chunk q100 kv357", heads: 32, kvHeads: 8, d: 128, numQ: 100, lens: uniform(8, 357)},
	{name: "4/2 d64 q65 per-head lens gaps odd strides", heads: 4, kvHeads: 2, d: 64, numQ: 65, lens: [][]int{{131, 77}}, gaps: true, qPad: 3, kvPad: 3},
	{name: "4/2 d32 two seqs window 24", heads: 4, kvHeads: 2, d: 32, numQ: 40, lens: [][]int{{150, 150}, {90, 60}}, window: 24},
	{name: "32/8 d16 q300 window 100", heads: 32, kvHeads: 8, d: 16, numQ: 300, lens: uniform(8, 300), window: 100},
	{name: "4/2 d128 chunk q17 kv1000", heads: 4, kvHeads: 2, d: 128, numQ: 17, lens: uniform(2, 1000)},
	{name: "32/8 d32 q1 kv513", heads: 32, kvHeads: 8, d: 32, numQ: 1, lens: uniform(8, 513)},
	{name: "32/8 d128 q300 varied lens", heads: 32, kvHeads: 8, d: 128, numQ: 300, lens: varied(8, 333), gaps: true},
	{name: "4/4 d256 q70 kv133", heads: 4, kvHeads: 4, d: 256, numQ: 70, lens: uniform(4, 133)},
}

var decodeCases = []gpuCase{
	{name: "32/8 d128 batch 3 varied", heads: 32, kvHeads: 8, d: 128, numQ: 1, lens: varied(8, 300, 1000, 5), capacity: 37},
	{name: "4/2 d16 batch 3 incl. empty head", heads: 4, kvHeads: 2, d: 16, numQ: 1, lens: [][]int{{300, 280}, {1, 17}, {513, 0}}, capacity: 37},
	{name: "32/8 d64 batch 1 kv5000 cap 8192", heads: 32, kvHeads: 8, d: 64, numQ: 1, lens: uniform(8, 5000), capacity: 8192 - 5000},
	{name: "4/2 d32 batch 2 window 100", heads: 4, kvHeads: 2, d: 32, numQ: 1, lens: [][]int{{600, 400}, {257, 256}}, window: 100},
	{name: "32/8 d128 gaps odd strides", heads: 32, kvHeads: 8, d: 128, numQ: 1, lens: varied(8, 2049), gaps: true, qPad: 3, kvPad: 3, capacity: 300},
	{name: "32/4 d128 batch 3", heads: 32, kvHeads: 4, d: 128, numQ: 1, lens: varied(4, 256, 257, 4000)},
	{name: "4/2 d128 batch 1 kv1", heads: 4, kvHeads: 2, d: 128, numQ: 1, lens: uniform(2, 1)},
	{name: "8/8 d256 batch 2", heads: 8, kvHeads: 8, d: 256, numQ: 1, lens: varied(8, 700, 90)},
}

// TestGPUEagerPrefill and TestGPUEagerDecode compare the kernels with
// attention.Eager on random bf16 inputs.
func TestGPUEagerPrefill(t *testing.T) { testGPUEager(t, prefillCases, false) }

func TestGPUEagerDecode(t *testing.T) { testGPUEager(t, decodeCases, true) }

func testGPUEager(t *testing.T, cases []gpuCase, decode bool) {
	env := gputest.Open(t)
	for i, c := range cases {
		c.decode = decode
		t.Run(c.name, func(t *testing.T) {
			env := env.For(t)
			prefill, dec := roles(t, env, c)
			role := prefill
			if decode {
				role = dec
			}
			pr := newProblem(env, c, uint64(i+1))
			pr.launch(t, env, role)
			pr.check(t, env, pr.reference(t))
		})
	}
}

// TestGPUEagerDecodeGraph captures one decode launch for a 4096-token
// cache and replays it as the cache fills: the lengths change in the
// descriptors only, and every output element is still written.
func TestGPUEagerDecodeGraph(t *testing.T) {
	env := gputest.Open(t)
	const capacity = 4096
	c := gpuCase{name: "graph 32/8 d128 batch 2", heads: 32, kvHeads: 8, d: 128, numQ: 1, decode: true, lens: varied(8, capacity, capacity)}
	_, role := roles(t, env, c)
	pr := newProblem(env, c, 42) // full cache: the buffers for every replay
	p := pr.params
	ws := role.Workspace(int(p.NumSeqs), int(p.NumHeads), 1, capacity)
	p.Workspace, p.WorkspaceBytes = env.Alloc(ws), uint64(ws)
	if err := env.D.StreamBeginCapture(env.Stream, cuda.CaptureModeThreadLocal); err != nil {
		t.Fatal(err)
	}
	if err := role.Launch(env.Stream, &p); err != nil {
		env.D.StreamEndCapture(env.Stream)
		t.Fatal(err)
	}
	g, err := env.D.StreamEndCapture(env.Stream)
	if err != nil {
		t.Fatal(err)
	}
	defer env.D.GraphDestroy(g)
	exec, err := env.D.GraphInstantiate(g)
	if err != nil {
		t.Fatal(err)
	}
	defer env.D.GraphExecDestroy(exec)

	for _, lens := range [][]int{{1000, 3000}, {1, 4096}, {2500, 17}} {
		// Shorten each head (keys are a prefix of the full cache) and
		// move the queries to follow the new last position.
		sub := *pr
		sub.c.lens = varied(8, lens...)
		sub.k, sub.v, sub.kPos = make([][]float32, len(pr.k)), make([][]float32, len(pr.v)), make([][]int, len(pr.kPos))
		var kh, vh []kernelrun.KVHead
		sub.qPos = make([]int, 2)
		for s := range 2 {
			last := 0
			for h := range 8 {
				gi, n := s*8+h, sub.c.lens[s][h]
				sub.k[gi], sub.v[gi], sub.kPos[gi] = pr.k[gi][:n*128], pr.v[gi][:n*128], pr.kPos[gi][:n]
				if n > 0 {
					last = max(last, sub.kPos[gi][n-1])
				}
			}
			sub.qPos[s] = last + 1
		}
		for gi := range 16 {
			n := int32(len(sub.kPos[gi]))
			kh = append(kh, kernelrun.KVHead{Data: pr.kDev[gi], Pos: pr.kPosDev[gi], Len: n, RowStride: 128})
			vh = append(vh, kernelrun.KVHead{Data: pr.vDev[gi], Pos: pr.kPosDev[gi], Len: n, RowStride: 128})
		}
		env.Write(pr.kvHeadsDev[0], kernelrun.KVHeadsBytes(kh))
		env.Write(pr.kvHeadsDev[1], kernelrun.KVHeadsBytes(vh))
		env.Write(pr.posDev, gputest.I32([]int32{int32(sub.qPos[0]), int32(sub.qPos[1])}))
		env.Poison(pr.out, pr.outBytes)
		env.Poison(p.Workspace, ws)
		if err := env.D.GraphLaunch(exec, env.Stream); err != nil {
			t.Fatal(err)
		}
		sub.c.name = fmt.Sprintf("graph replay lens %v", lens)
		sub.check(t, env, sub.reference(t))
	}
}

// BenchmarkGPUEagerPrefill: one layer of eager prefill attention at
// Llama-3-8B shapes (32/8 heads, d 128), causal, N = 8192.
func BenchmarkGPUEagerPrefill(b *testing.B) {
	env := gputest.Open(b)
	const n = 8192
	c := gpuCase{name: "prefill 8k", heads: 32, kvHeads: 8, d: 128, numQ: n, lens: uniform(8, n)}
	prefill, _ := roles(b, env, c)
	pr := newProblem(env, c, 1)
	p := pr.params
	ws := prefill.Workspace(1, 32, n, n)
	p.Workspace, p.WorkspaceBytes = env.Alloc(ws), uint64(ws)
	per := timeLaunches(b, env, prefill, &p)
	flops := 4.0 * n * n * 128 * 32 / 2
	b.ReportMetric(float64(per.Microseconds())/1e3, "ms/layer")
	b.ReportMetric(flops/per.Seconds()/1e12, "TFLOP/s")
	b.Logf("eager prefill N=%d 32/8 d128: %.2f ms per layer, %.0f TFLOP/s (causal), workspace %.1f GB", n, float64(per.Microseconds())/1e3, flops/per.Seconds()/1e12, float64(ws)/1e9)
}

// BenchmarkGPUEagerDecode: one decode step's attention of one layer at
// batch 1 and 8 against 8k and 32k tokens, captured for a 32k cache.
func BenchmarkGPUEagerDecode(b *testing.B) {
	env := gputest.Open(b)
	for _, batch := range []int{1, 8} {
		for _, kv := range []int{8192, 32768} {
			b.Run(fmt.Sprintf("batch%d_kv%d", batch, kv), func(b *testing.B) {
				env := env.For(b)
				var lens [][]int
				for range batch {
					lens = append(lens, uniform(8, kv)[0])
				}
				c := gpuCase{heads: 32, kvHeads: 8, d: 128, numQ: 1, decode: true, lens: lens, capacity: 32768 - kv}
				_, dec := roles(b, env, c)
				pr := newProblem(env, c, 2)
				p := pr.params
				ws := dec.Workspace(batch, 32, 1, 32768)
				p.Workspace, p.WorkspaceBytes = env.Alloc(ws), uint64(ws)
				per := timeLaunches(b, env, dec, &p)
				kvBytes := float64(2 * batch * 8 * kv * 128 * 2)
				b.ReportMetric(float64(per.Nanoseconds())/1e3, "µs/step")
				b.ReportMetric(kvBytes/per.Seconds()/1e9, "GB/s")
				b.Logf("eager decode batch %d kv %d: %.1f µs, %.0f GB/s of KV read", batch, kv, float64(per.Nanoseconds())/1e3, kvBytes/per.Seconds()/1e9)
			})
		}
	}
}

// timeLaunches is the GPU time of one launch, by events around b.N
// launches after a warm-up.
func timeLaunches(b *testing.B, env *gputest.Env, role *kernelrun.Role, p *kernelrun.AttentionParams) time.Duration {
	must := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	start, err := env.D.EventCreate(0)
	must(err)
	defer env.D.EventDestroy(start)
	end, err := env.D.EventCreate(0)
	must(err)
	defer env.D.EventDestroy(end)
	must(role.Launch(env.Stream, p))
	env.Sync()
	b.ResetTimer()
	must(env.D.EventRecord(start, env.Stream))
	for range b.N {
		must(role.Launch(env.Stream, p))
	}
	must(env.D.EventRecord(end, env.Stream))
	must(env.D.EventSynchronize(end))
	b.StopTimer()
	el, err := env.D.EventElapsed(start, end)
	must(err)
	return el / time.Duration(b.N)
}
