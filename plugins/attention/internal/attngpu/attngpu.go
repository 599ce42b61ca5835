// Package attngpu builds random attention problems on the GPU for the
// attention plugins' GPU tests and benchmarks: bf16 inputs with the
// shapes KV compaction produces (per-head lengths, position gaps, padded
// rows), poisoned outputs and workspaces, and a host reference.
package attngpu

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

// Case is one attention launch: seqs sequences of numQ query rows
// against KV heads of lens[seq][kv head] rows.
type Case struct {
	Name              string
	Heads, KVHeads, D int
	NumQ              int
	Lens              [][]int
	Window            int
	Gaps              bool // positions with holes, as after compaction
	QPad, KVPad       int  // extra elements per Q/out row and per K/V row
	Decode            bool
	Capacity          int // max_kv_len beyond the longest head (a decode graph's cache)
}

// uniform is one sequence whose KV heads all hold n rows.
func Uniform(kvHeads, n int) [][]int {
	l := make([]int, kvHeads)
	for i := range l {
		l[i] = n
	}
	return [][]int{l}
}

// varied gives KV head h of each sequence n - (7h mod 31) rows (at least
// 0), the uneven lengths of a compacted cache.
func Varied(kvHeads int, ns ...int) [][]int {
	out := make([][]int, len(ns))
	for s, n := range ns {
		out[s] = make([]int, kvHeads)
		for h := range out[s] {
			out[s][h] = max(0, n-(7*h)%31)
		}
	}
	return out
}

// Problem is a case's inputs on the host (bf16 values as fp32) and on
// the device.
type Problem struct {
	C            Case
	Q            []float32 // [seqs][numQ][heads][d]
	QPos         []int     // [seqs][numQ]
	K, V         [][]float32
	KPos         [][]int // [seqs*kvHeads]
	MaxKV        int
	Params       kernelrun.AttentionParams
	Out          cuda.DevicePtr
	OutBytes     int64
	QStride      int
	KDev, VDev   []cuda.DevicePtr
	KPosDev      []cuda.DevicePtr
	KVHeadsDev   [2]cuda.DevicePtr
	QDev, PosDev cuda.DevicePtr
}

func (c Case) Seqs() int { return len(c.Lens) }

// NewProblem draws random bf16 inputs and uploads them. Padding of Q and
// K/V rows is NaN, so a kernel reading it would show.
func NewProblem(env *gputest.Env, c Case, seed uint64) *Problem {
	rng := rand.New(rand.NewPCG(seed, 0x6561676572))
	randBF16 := func() float32 { return gputest.RoundBF16(float32(rng.NormFloat64())) }
	nan := float32(math.NaN())
	pr := &Problem{C: c, QStride: c.Heads*c.D + c.QPad}
	S, H, KVH, D, Q := c.Seqs(), c.Heads, c.KVHeads, c.D, c.NumQ
	kvStride := D + c.KVPad

	pr.KPos = make([][]int, S*KVH)
	pr.K, pr.V = make([][]float32, S*KVH), make([][]float32, S*KVH)
	for s := range S {
		last := 0
		for h := range KVH {
			n := c.Lens[s][h]
			pos, p := make([]int, n), -1
			for j := range pos {
				p++
				if c.Gaps && rng.IntN(3) == 0 {
					p += rng.IntN(4)
				}
				pos[j] = p
			}
			if n > 0 {
				last = max(last, pos[n-1])
			}
			g := s*KVH + h
			pr.KPos[g] = pos
			pr.K[g], pr.V[g] = make([]float32, n*D), make([]float32, n*D)
			for i := range pr.K[g] {
				pr.K[g][i], pr.V[g][i] = randBF16(), randBF16()
			}
			pr.MaxKV = max(pr.MaxKV, n)
		}
		// Prefill: the queries are the last numQ positions (a chunk of a
		// longer prompt when the cache holds more); decode: the next one.
		for i := range Q {
			if c.Decode {
				pr.QPos = append(pr.QPos, last+1+i)
			} else {
				pr.QPos = append(pr.QPos, last-Q+1+i)
			}
		}
	}
	pr.Q = make([]float32, S*Q*H*D)
	for i := range pr.Q {
		pr.Q[i] = randBF16()
	}

	// Device copies.
	qRows := make([]float32, S*Q*pr.QStride)
	for r := range S * Q {
		for e := range pr.QStride {
			if e < H*D {
				qRows[r*pr.QStride+e] = pr.Q[r*H*D+e]
			} else {
				qRows[r*pr.QStride+e] = nan
			}
		}
	}
	pr.QDev = env.Upload(gputest.BF16(qRows))
	qp := make([]int32, len(pr.QPos))
	for i, p := range pr.QPos {
		qp[i] = int32(p)
	}
	pr.PosDev = env.Upload(gputest.I32(qp))
	var kh, vh []kernelrun.KVHead
	for g := range S * KVH {
		n := len(pr.KPos[g])
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
		for j, p := range pr.KPos[g] {
			pos[j] = int32(p)
		}
		posDev := env.Upload(gputest.I32(pos))
		kd, vd := env.Upload(pad(pr.K[g])), env.Upload(pad(pr.V[g]))
		pr.KDev, pr.VDev, pr.KPosDev = append(pr.KDev, kd), append(pr.VDev, vd), append(pr.KPosDev, posDev)
		kh = append(kh, kernelrun.KVHead{Data: kd, Pos: posDev, Len: int32(n), RowStride: int32(kvStride)})
		vh = append(vh, kernelrun.KVHead{Data: vd, Pos: posDev, Len: int32(n), RowStride: int32(kvStride)})
	}
	pr.KVHeadsDev = [2]cuda.DevicePtr{env.Upload(kernelrun.KVHeadsBytes(kh)), env.Upload(kernelrun.KVHeadsBytes(vh))}
	pr.OutBytes = int64(2 * S * Q * pr.QStride)
	pr.Out = env.Alloc(pr.OutBytes)
	pr.Params = kernelrun.AttentionParams{
		NumSeqs: int32(S), NumQ: int32(Q), NumHeads: int32(H), NumKVHeads: int32(KVH), HeadDim: int32(D),
		SlidingWindow: int32(c.Window), MaxKVLen: int32(pr.MaxKV + c.Capacity), Scale: float32(1 / math.Sqrt(float64(D))),
		DType: kernelrun.DTypeBF16, Q: pr.QDev, QRowStride: int64(pr.QStride), QPos: pr.PosDev,
		K: pr.KVHeadsDev[0], V: pr.KVHeadsDev[1], Out: pr.Out, OutRowStride: int64(pr.QStride),
	}
	return pr
}

// Reference computes attention on the same bf16 inputs. With eagerRounding
// it rounds where transformers' bf16 eager attention does, which the eager
// kernels reproduce: S = bf16(bf16(q·k)·scale), P = bf16(softmax(S) in
// fp32), O = P·V accumulated in fp32; without them a faithful eager kernel
// is off by up to ~1.5% (a score near 10 keeps only 8 significant bits in
// bf16). Without eagerRounding scores and probabilities stay fp32, as in a
// flash kernel.
func (pr *Problem) Reference(eagerRounding bool) []float32 {
	c := pr.C
	S, H, KVH, D, Q := c.Seqs(), c.Heads, c.KVHeads, c.D, c.NumQ
	round := func(x float32) float32 { return gputest.RoundBF16(x) }
	if !eagerRounding {
		round = func(x float32) float32 { return x }
	}
	scale := pr.Params.Scale
	out := make([]float32, S*Q*H*D)
	for s := range S {
		for qi := range Q {
			qp := pr.QPos[s*Q+qi]
			for h := range H {
				g := s*KVH + h/(H/KVH)
				q := pr.Q[((s*Q+qi)*H+h)*D:][:D]
				keys, vals, kpos := pr.K[g], pr.V[g], pr.KPos[g]
				sc := make([]float32, len(kpos))
				visible := make([]bool, len(kpos))
				m := float32(math.Inf(-1))
				for j, kp := range kpos {
					if kp > qp || (c.Window > 0 && qp-kp >= c.Window) {
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
func (pr *Problem) Check(t testing.TB, env *gputest.Env, ref []float32) {
	t.Helper()
	c := pr.C
	got := gputest.FromBF16(env.Download(pr.Out, int(pr.OutBytes)))
	HD := c.Heads * c.D
	var maxRef, maxErr float64
	worst := -1
	for r := range c.Seqs() * c.NumQ {
		for e := range pr.QStride {
			g := float64(got[r*pr.QStride+e])
			if e >= HD {
				if !math.IsNaN(g) {
					t.Fatalf("%s: row %d padding element %d written (%v)", c.Name, r, e, g)
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
	t.Logf("%s: max |err| %.3g = %.2g of max |out| %.3g", c.Name, maxErr, rel, maxRef)
	if !(rel <= 1e-2) {
		row, col := worst/HD, worst%HD
		t.Errorf("%s: error %.3g of max |out| %.3g at query row %d head %d dim %d: got %v, want %v",
			c.Name, maxErr, maxRef, row, col/c.D, col%c.D, got[row*pr.QStride+col], ref[worst])
	}
}

// launch runs a role on the problem with a fresh, poisoned workspace and
// a poisoned output, and checks that nothing was written past the
// workspace's end.
func (pr *Problem) Launch(t testing.TB, env *gputest.Env, role *kernelrun.Role) {
	t.Helper()
	p := pr.Params
	ws := role.Workspace(int(p.NumSeqs), int(p.NumHeads), int(p.NumQ), int(p.MaxKVLen))
	const guard = 4096
	buf := env.Alloc(ws + guard)
	env.Poison(buf, ws+guard)
	env.Poison(pr.Out, pr.OutBytes)
	p.Workspace, p.WorkspaceBytes = buf, uint64(ws)
	if err := role.Launch(env.Stream, &p); err != nil {
		t.Fatal(err)
	}
	tail := env.Download(buf+cuda.DevicePtr(ws), guard)
	for i, b := range tail {
		if b != 0xFF {
			t.Fatalf("%s: byte %d past the %d-byte workspace written", pr.C.Name, i, ws)
		}
	}
}

// timeLaunches is the GPU time of one launch, by events around b.N
// launches after a warm-up.
func TimeLaunches(b *testing.B, env *gputest.Env, role *kernelrun.Role, p *kernelrun.AttentionParams) time.Duration {
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

// PluginRoles prepares plugin for a case's shape on the test's GPU, with
// its default options, and loads its prefill and decode roles.
func PluginRoles(plugin *sdk.Attention) func(tb testing.TB, env *gputest.Env, c Case) (prefill, decode *kernelrun.Role) {
	return func(tb testing.TB, env *gputest.Env, c Case) (prefill, decode *kernelrun.Role) {
		tb.Helper()
		m := sdk.ModelShape{NumLayers: 1, NumHeads: c.Heads, NumKVHeads: c.KVHeads, HeadDim: c.D}
		o, err := sdk.ResolveOptions(plugin.Options, nil)
		if err != nil {
			tb.Fatal(err)
		}
		plan, err := plugin.Prepare(context.Background(), &sdk.PrepareRequest{Model: m, Device: env.Device(), Options: o})
		if err != nil {
			tb.Fatal(err)
		}
		name := plugin.Info.Name
		return env.Role(name, plan.Kernels, sdk.RoleAttentionPrefill), env.Role(name, plan.Kernels, sdk.RoleAttentionDecode)
	}
}

// Suite runs the shared GPU tests and benchmarks of an attention plugin.
type Suite struct {
	// Roles prepares the plugin for c's shape and loads its two roles.
	Roles func(tb testing.TB, env *gputest.Env, c Case) (prefill, decode *kernelrun.Role)
	// EagerRounding selects the reference's rounding (Reference).
	EagerRounding bool
}

// Run compares the kernels of one role with the reference on each case,
// on fresh random inputs with poisoned outputs and workspace.
func (s Suite) Run(t *testing.T, cases []Case, decode bool) {
	env := gputest.Open(t)
	for i, c := range cases {
		c.Decode = decode
		t.Run(c.Name, func(t *testing.T) {
			env := env.For(t)
			prefill, dec := s.Roles(t, env, c)
			role := prefill
			if decode {
				role = dec
			}
			pr := NewProblem(env, c, uint64(i+1))
			pr.Launch(t, env, role)
			pr.Check(t, env, pr.Reference(s.EagerRounding))
		})
	}
}

// DecodeGraph captures one decode launch for a 4096-token cache and
// replays it as the cache fills: the lengths change in the descriptors
// only, and every output element is still written.
func (s Suite) DecodeGraph(t *testing.T) {
	env := gputest.Open(t)
	const capacity = 4096
	c := Case{Name: "graph 32/8 d128 batch 2", Heads: 32, KVHeads: 8, D: 128, NumQ: 1, Decode: true, Lens: Varied(8, capacity, capacity)}
	_, role := s.Roles(t, env, c)
	pr := NewProblem(env, c, 42) // full cache: the buffers for every replay
	p := pr.Params
	ws := role.Workspace(int(p.NumSeqs), int(p.NumHeads), 1, capacity)
	p.Workspace, p.WorkspaceBytes = env.Alloc(ws), uint64(ws)
	exec := env.Graph(func() error { return role.Launch(env.Stream, &p) })

	for _, lens := range [][]int{{1000, 3000}, {1, 4096}, {2500, 17}} {
		// Shorten each head (keys are a prefix of the full cache) and
		// move the queries to follow the new last position.
		sub := *pr
		sub.C.Lens = Varied(8, lens...)
		sub.K, sub.V, sub.KPos = make([][]float32, len(pr.K)), make([][]float32, len(pr.V)), make([][]int, len(pr.KPos))
		var kh, vh []kernelrun.KVHead
		sub.QPos = make([]int, 2)
		for s := range 2 {
			last := 0
			for h := range 8 {
				gi, n := s*8+h, sub.C.Lens[s][h]
				sub.K[gi], sub.V[gi], sub.KPos[gi] = pr.K[gi][:n*128], pr.V[gi][:n*128], pr.KPos[gi][:n]
				if n > 0 {
					last = max(last, sub.KPos[gi][n-1])
				}
			}
			sub.QPos[s] = last + 1
		}
		for gi := range 16 {
			n := int32(len(sub.KPos[gi]))
			kh = append(kh, kernelrun.KVHead{Data: pr.KDev[gi], Pos: pr.KPosDev[gi], Len: n, RowStride: 128})
			vh = append(vh, kernelrun.KVHead{Data: pr.VDev[gi], Pos: pr.KPosDev[gi], Len: n, RowStride: 128})
		}
		env.Write(pr.KVHeadsDev[0], kernelrun.KVHeadsBytes(kh))
		env.Write(pr.KVHeadsDev[1], kernelrun.KVHeadsBytes(vh))
		env.Write(pr.PosDev, gputest.I32([]int32{int32(sub.QPos[0]), int32(sub.QPos[1])}))
		env.Poison(pr.Out, pr.OutBytes)
		env.Poison(p.Workspace, ws)
		if err := env.D.GraphLaunch(exec, env.Stream); err != nil {
			t.Fatal(err)
		}
		sub.C.Name = fmt.Sprintf("graph replay lens %v", lens)
		sub.Check(t, env, sub.Reference(s.EagerRounding))
	}
}

// BenchPrefill times one layer of prefill attention at Llama-3-8B shapes
// (32/8 heads, d 128), causal, for each N.
func (s Suite) BenchPrefill(b *testing.B, ns ...int) {
	env := gputest.Open(b)
	for _, n := range ns {
		b.Run(fmt.Sprintf("n%d", n), func(b *testing.B) {
			env := env.For(b)
			s.benchPrefill(b, env, n)
		})
	}
}

func (s Suite) benchPrefill(b *testing.B, env *gputest.Env, n int) {
	c := Case{Name: fmt.Sprintf("prefill %d", n), Heads: 32, KVHeads: 8, D: 128, NumQ: n, Lens: Uniform(8, n)}
	prefill, _ := s.Roles(b, env, c)
	pr := NewProblem(env, c, 1)
	p := pr.Params
	ws := prefill.Workspace(1, 32, n, n)
	p.Workspace, p.WorkspaceBytes = env.Alloc(ws), uint64(ws)
	per := TimeLaunches(b, env, prefill, &p)
	flops := 4.0 * float64(n) * float64(n) * 128 * 32 / 2
	b.ReportMetric(float64(per.Microseconds())/1e3, "ms/layer")
	b.ReportMetric(flops/per.Seconds()/1e12, "TFLOP/s")
	b.Logf("%s prefill N=%d 32/8 d128: %.2f ms per layer, %.0f TFLOP/s (causal), workspace %.1f GB", prefill.Name(), n, float64(per.Microseconds())/1e3, flops/per.Seconds()/1e12, float64(ws)/1e9)
}

// BenchDecode times one decode step's attention of one layer at batch 1
// and 8 against 8k and 32k tokens, for a 32k cache.
func (s Suite) BenchDecode(b *testing.B) {
	env := gputest.Open(b)
	for _, batch := range []int{1, 8} {
		for _, kv := range []int{8192, 32768} {
			b.Run(fmt.Sprintf("batch%d_kv%d", batch, kv), func(b *testing.B) {
				env := env.For(b)
				var lens [][]int
				for range batch {
					lens = append(lens, Uniform(8, kv)[0])
				}
				c := Case{Heads: 32, KVHeads: 8, D: 128, NumQ: 1, Decode: true, Lens: lens, Capacity: 32768 - kv}
				_, dec := s.Roles(b, env, c)
				pr := NewProblem(env, c, 2)
				p := pr.Params
				ws := dec.Workspace(batch, 32, 1, 32768)
				p.Workspace, p.WorkspaceBytes = env.Alloc(ws), uint64(ws)
				per := TimeLaunches(b, env, dec, &p)
				kvBytes := float64(2 * batch * 8 * kv * 128 * 2)
				b.ReportMetric(float64(per.Nanoseconds())/1e3, "µs/step")
				b.ReportMetric(kvBytes/per.Seconds()/1e9, "GB/s")
				b.Logf("%s decode batch %d kv %d: %.1f µs, %.0f GB/s of KV read", dec.Name(), batch, kv, float64(per.Nanoseconds())/1e3, kvBytes/per.Seconds()/1e9)
			})
		}
	}
}
