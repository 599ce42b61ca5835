package cuda

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
)

// openTunedBlasLt opens a BlasLt with its own workspace and the given
// autotune options; the process environment's AutotuneEnv is hidden so
// that the test gets what it asks for.
func openTunedBlasLt(t testing.TB, g *gpuEnv, opt BlasLtOptions) *BlasLt {
	t.Helper()
	ws := alloc(t, g, testWorkspaceBytes) // freed after Close, which runs first
	if opt.Getenv == nil {
		opt.Getenv = func(k string) string {
			if k == AutotuneEnv {
				return ""
			}
			return os.Getenv(k)
		}
	}
	lt, err := OpenBlasLtWith(opt)
	must(t, err)
	t.Cleanup(func() { must(t, lt.Close()) })
	must(t, lt.SetWorkspace(ws, testWorkspaceBytes))
	return lt
}

// tuningOf returns the one tuning record of shape spec.
func tuningOf(t testing.TB, h *BlasLt, spec GemmShape) GemmTuning {
	t.Helper()
	g, err := spec.normalized()
	must(t, err)
	var found []GemmTuning
	for _, tu := range h.Tunings() {
		if tu.Shape == g {
			found = append(found, tu)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%v: %d tuning records; want 1", g, len(found))
	}
	return found[0]
}

// planOf returns the one cached plan of shape spec.
func planOf(t testing.TB, h *BlasLt, spec GemmShape) *gemmPlan {
	t.Helper()
	g, err := spec.normalized()
	must(t, err)
	h.mu.Lock()
	defer h.mu.Unlock()
	var found []*gemmPlan
	for k, p := range h.plans {
		if k.g == g {
			found = append(found, p)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%v: %d plans; want 1", g, len(found))
	}
	return found[0]
}

// resetY puts the case's original Y back on the device.
func (c *gemmCase) resetY(t testing.TB, env *gpuEnv) {
	t.Helper()
	must(t, env.d.MemcpyHtoD(c.dy, bf16Bytes(c.y0)))
	must(t, env.d.Synchronize())
}

func (c *gemmCase) readY(t testing.TB, env *gpuEnv) []uint16 {
	t.Helper()
	out := make([]byte, 2*len(c.y0))
	must(t, env.d.MemcpyDtoH(out, c.dy))
	return bytesBF16(out)
}

// Shapes small enough for the host reference; MinMNK 1 makes them tunable.
var tuneTestShapes = []GemmShape{
	{M: 256, N: 384, K: 512},
	{M: 300, N: 320, K: 256, Bias: true},
	{M: 128, N: 256, K: 512, LdY: 264, Accumulate: true},
	{M: 200, N: 256, K: 384, LdX: 392, LdY: 272, Bias: true, Accumulate: true},
}

// The autotuned GEMM computes what the heuristic's first pick computes:
// both match the host reference, and each other, within bf16 tolerance.
func TestGPUGemmAutotuneMatchesHeuristic(t *testing.T) {
	g := openGPU(t)
	s := newStream(t, g)
	heur := openTunedBlasLt(t, g, BlasLtOptions{Autotune: AutotuneOptions{Disable: true}})
	tuned := openTunedBlasLt(t, g, BlasLtOptions{Autotune: AutotuneOptions{MinMNK: 1}, Driver: g.d, Logf: t.Logf})
	rng := rand.New(rand.NewPCG(21, 22))
	tunedWithChoice := 0
	for _, spec := range tuneTestShapes {
		c := newGemmCase(t, g, rng, spec)
		must(t, heur.GemmBF16(s, spec, c.dy, c.dx, c.dw, c.dbias))
		must(t, g.d.StreamSynchronize(s))
		c.check(t, g)
		want := c.readY(t, g)

		c.resetY(t, g)
		must(t, tuned.GemmBF16(s, spec, c.dy, c.dx, c.dw, c.dbias))
		must(t, g.d.StreamSynchronize(s))
		c.check(t, g)
		got := c.readY(t, g)
		maxAbs := 0.0
		for _, v := range want {
			maxAbs = math.Max(maxAbs, math.Abs(float64(fromBF16(v))))
		}
		for i := range got {
			d := math.Abs(float64(fromBF16(got[i])) - float64(fromBF16(want[i])))
			if !(d <= 1e-2*maxAbs) {
				t.Fatalf("%v: element %d: autotuned %v, heuristic %v", c.g, i, fromBF16(got[i]), fromBF16(want[i]))
			}
		}

		tu := tuningOf(t, tuned, spec)
		t.Logf("%v", tu)
		switch {
		case tu.Pending:
			t.Errorf("%v: still pending after an uncaptured GemmBF16", tu)
		case tu.Candidates > 1 && !tu.Tuned:
			t.Errorf("%v: %d candidates but not tuned", tu, tu.Candidates)
		case tu.Tuned:
			if len(tu.Times) != tu.Candidates || tu.Times[tu.Chosen] <= 0 {
				t.Errorf("%v: implausible times %v", tu, tu.Times)
			}
			for i, d := range tu.Times {
				if d > 0 && d < tu.Times[tu.Chosen] {
					t.Errorf("%v: candidate %d (%v) beat the chosen one", tu, i, d)
				}
			}
			if p := planOf(t, tuned, spec); p.heur != p.cands[tu.Chosen] {
				t.Errorf("%v: the plan does not use the chosen candidate", tu)
			}
			tunedWithChoice++
		}
		if h := tuningOf(t, heur, spec); h.Tuned || h.Candidates != 1 || !strings.Contains(h.Skipped, "off") {
			t.Errorf("autotune disabled, yet: %v", h)
		}
	}
	if tunedWithChoice == 0 {
		t.Error("no shape got more than one candidate from the heuristic: the tuning path was not exercised")
	}
}

// Every candidate the tuner may choose computes the right product and
// leaves Y's padding alone, not only the heuristic's first.
func TestGPUGemmEveryCandidateCorrect(t *testing.T) {
	g := openGPU(t)
	s := newStream(t, g)
	h := openTunedBlasLt(t, g, BlasLtOptions{Autotune: AutotuneOptions{MinMNK: 1}, Driver: g.d})
	rng := rand.New(rand.NewPCG(23, 24))
	for _, spec := range tuneTestShapes {
		c := newGemmCase(t, g, rng, spec)
		must(t, h.PrepareOn(s, spec, c.dy, c.dx, c.dw, c.dbias))
		p := planOf(t, h, spec)
		for i := range p.cands {
			h.mu.Lock()
			p.heur = p.cands[i]
			h.mu.Unlock()
			c.resetY(t, g)
			if err := h.GemmBF16(s, spec, c.dy, c.dx, c.dw, c.dbias); err != nil {
				// The tuner skips such a candidate too.
				t.Logf("%v: candidate %d: %v", c.g, i, err)
				continue
			}
			must(t, g.d.StreamSynchronize(s))
			c.check(t, g)
		}
		t.Logf("%v: %d candidates checked", c.g, len(p.cands))
	}
}

// Tuning an accumulating GEMM must not touch the caller's Y, which is
// also an input: PrepareOn leaves it bit for bit, and a GEMM that tunes
// on its first call adds x·wᵀ to Y exactly once.
func TestGPUGemmAutotuneKeepsAccumulatedY(t *testing.T) {
	g := openGPU(t)
	s := newStream(t, g)
	rng := rand.New(rand.NewPCG(25, 26))
	spec := GemmShape{M: 192, N: 256, K: 512, LdY: 264, Bias: true, Accumulate: true}

	// Tuned ahead of the GEMM.
	h := openTunedBlasLt(t, g, BlasLtOptions{Autotune: AutotuneOptions{MinMNK: 1, Warmup: 2, Reps: 5}, Driver: g.d})
	c := newGemmCase(t, g, rng, spec)
	must(t, h.PrepareOn(s, spec, c.dy, c.dx, c.dw, c.dbias))
	must(t, g.d.StreamSynchronize(s))
	if got := c.readY(t, g); !bytes.Equal(bf16Bytes(got), bf16Bytes(c.y0)) {
		t.Fatal("PrepareOn changed the caller's Y")
	}
	tu := tuningOf(t, h, spec)
	if tu.Candidates > 1 && !tu.Tuned {
		t.Fatalf("PrepareOn did not tune: %v", tu)
	}
	must(t, h.GemmBF16(s, spec, c.dy, c.dx, c.dw, c.dbias))
	must(t, g.d.StreamSynchronize(s))
	c.check(t, g)

	// Tuned inside the first GemmBF16, with a driver the BlasLt opens
	// itself.
	h2 := openTunedBlasLt(t, g, BlasLtOptions{Autotune: AutotuneOptions{MinMNK: 1, Warmup: 2, Reps: 5}})
	c2 := newGemmCase(t, g, rng, spec)
	must(t, h2.GemmBF16(s, spec, c2.dy, c2.dx, c2.dw, c2.dbias))
	must(t, g.d.StreamSynchronize(s))
	c2.check(t, g)
	if tu := tuningOf(t, h2, spec); tu.Candidates > 1 && !tu.Tuned {
		t.Fatalf("GemmBF16 did not tune: %v", tu)
	}
}

// A GEMM planned while its stream captures is not tuned (a capture must
// record only the GEMM); the first uncaptured call tunes it, and the graph
// captured with the heuristic's pick stays valid.
func TestGPUGemmAutotuneNotWhileCapturing(t *testing.T) {
	g := openGPU(t)
	s := newStream(t, g)
	rng := rand.New(rand.NewPCG(27, 28))
	spec := GemmShape{M: 256, N: 384, K: 256, Bias: true}
	c := newGemmCase(t, g, rng, spec)

	// Load the heuristic's first kernel outside the capture (CUDA loads
	// modules lazily): the same shape through an untuned BlasLt.
	heur := openTunedBlasLt(t, g, BlasLtOptions{Autotune: AutotuneOptions{Disable: true}})
	must(t, heur.GemmBF16(s, spec, c.dy, c.dx, c.dw, c.dbias))
	must(t, g.d.StreamSynchronize(s))
	c.resetY(t, g)

	h := openTunedBlasLt(t, g, BlasLtOptions{Autotune: AutotuneOptions{MinMNK: 1}, Driver: g.d})
	if capturing, err := g.d.StreamIsCapturing(s); err != nil || capturing {
		t.Fatalf("StreamIsCapturing before the capture = %v, %v; want false", capturing, err)
	}
	must(t, g.d.StreamBeginCapture(s, CaptureModeThreadLocal))
	capturing, capErr := g.d.StreamIsCapturing(s)
	gemmErr := h.GemmBF16(s, spec, c.dy, c.dx, c.dw, c.dbias)
	graph, endErr := g.d.StreamEndCapture(s)
	must(t, capErr)
	must(t, gemmErr)
	must(t, endErr)
	if !capturing {
		t.Error("StreamIsCapturing during the capture = false")
	}
	exec, err := g.d.GraphInstantiate(graph)
	must(t, err)
	must(t, g.d.GraphDestroy(graph))
	defer func() { must(t, g.d.GraphExecDestroy(exec)) }()
	tu := tuningOf(t, h, spec)
	if tu.Tuned || (tu.Candidates > 1 && !tu.Pending) {
		t.Fatalf("planned during a capture: %v; want pending, untuned", tu)
	}
	t.Logf("after the capture: %v", tu)

	must(t, g.d.GraphLaunch(exec, s))
	must(t, g.d.StreamSynchronize(s))
	c.check(t, g)

	c.resetY(t, g)
	must(t, h.GemmBF16(s, spec, c.dy, c.dx, c.dw, c.dbias))
	must(t, g.d.StreamSynchronize(s))
	c.check(t, g)
	tu = tuningOf(t, h, spec)
	if tu.Pending || (tu.Candidates > 1 && !tu.Tuned) {
		t.Fatalf("the first uncaptured call did not tune: %v", tu)
	}
	t.Logf("after an uncaptured call: %v", tu)

	c.resetY(t, g)
	must(t, g.d.GraphLaunch(exec, s))
	must(t, g.d.StreamSynchronize(s))
	c.check(t, g)
}

// LONGCTX_BLASLT_AUTOTUNE=0 keeps a large shape on the heuristic's pick.
func TestGPUGemmAutotuneEnvOff(t *testing.T) {
	g := openGPU(t)
	s := newStream(t, g)
	h := openTunedBlasLt(t, g, BlasLtOptions{Getenv: func(k string) string {
		if k == AutotuneEnv {
			return "0"
		}
		return os.Getenv(k)
	}})
	spec := GemmShape{M: 1024, N: 4096, K: 4096} // 2^34 multiply-adds: tuned by default
	y := alloc(t, g, uint64(2*spec.M*spec.N))
	x := alloc(t, g, uint64(2*spec.M*spec.K))
	w := alloc(t, g, uint64(2*spec.N*spec.K))
	fillRandomBF16(t, g, x, spec.M*spec.K, 3)
	fillRandomBF16(t, g, w, spec.N*spec.K, 4)
	must(t, h.GemmBF16(s, spec, y, x, w, 0))
	must(t, g.d.StreamSynchronize(s))
	if tu := tuningOf(t, h, spec); tu.Tuned || tu.Pending || tu.Candidates != 1 {
		t.Errorf("%s=0, yet: %v", AutotuneEnv, tu)
	}
}

// BenchmarkGPUGemmPrefillShapes times Llama-3-8B's prefill GEMMs (8192
// tokens: qkv with and without bias, o, gate+up, down) with the
// heuristic's first algorithm and with the autotuned one.
func BenchmarkGPUGemmPrefillShapes(b *testing.B) {
	for _, sh := range []struct {
		m, n, k int
		bias    bool
	}{
		{8192, 6144, 4096, false},
		{8192, 6144, 4096, true},
		{8192, 4096, 4096, false},
		{8192, 28672, 4096, false},
		{8192, 4096, 14336, false},
	} {
		name := fmt.Sprintf("M%d_N%d_K%d", sh.m, sh.n, sh.k)
		if sh.bias {
			name += "_bias"
		}
		for _, mode := range []string{"heuristic", "autotune"} {
			b.Run(name+"/"+mode, func(b *testing.B) {
				g := openGPU(b)
				s := newStream(b, g)
				h := openTunedBlasLt(b, g, BlasLtOptions{Autotune: AutotuneOptions{Disable: mode == "heuristic"}, Driver: g.d})
				spec := GemmShape{M: sh.m, N: sh.n, K: sh.k, Bias: sh.bias}
				x := alloc(b, g, uint64(2*sh.m*sh.k))
				w := alloc(b, g, uint64(2*sh.n*sh.k))
				y := alloc(b, g, uint64(2*sh.m*sh.n))
				fillRandomBF16(b, g, x, sh.m*sh.k, 1)
				fillRandomBF16(b, g, w, sh.n*sh.k, 2)
				var bias DevicePtr
				if sh.bias {
					bias = alloc(b, g, uint64(2*sh.n))
					fillRandomBF16(b, g, bias, sh.n, 3)
				}
				// Plan, tune and warm up outside the timing.
				for range 3 {
					must(b, h.GemmBF16(s, spec, y, x, w, bias))
				}
				per := gpuTime(b, g, s, b.N, func(int) error { return h.GemmBF16(s, spec, y, x, w, bias) }).Seconds()
				flops := 2 * float64(sh.m) * float64(sh.n) * float64(sh.k)
				b.ReportMetric(per*1e6, "us/gemm")
				b.ReportMetric(flops/per/1e12, "TFLOP/s")
				tu := tuningOf(b, h, spec)
				b.ReportMetric(float64(tu.Chosen), "algo")
				b.ReportMetric(float64(tu.Candidates), "candidates")
				if tu.Tuned {
					b.ReportMetric(tu.Speedup(), "x_vs_first")
					b.ReportMetric(float64(tu.TuneTime.Microseconds())/1e3, "tune_ms")
				}
				b.Logf("%v", tu)
			})
		}
	}
}
