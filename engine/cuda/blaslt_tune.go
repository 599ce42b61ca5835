package cuda

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// AutotuneEnv names the environment variable that turns cuBLASLt
// autotuning off when set to 0 (or false/off/no), whatever the options say.
const AutotuneEnv = "LONGCTX_BLASLT_AUTOTUNE"

// Autotuning defaults. cuBLASLt's heuristic ranks algorithms by a model,
// not by measurement, and its first pick can be far off: on an H100 the
// prefill qkv GEMM (M=8192, N=6144, K=4096) ran at about 160 TFLOP/s with
// it while neighbouring shapes reach about 800. Timing a handful of its
// candidates once per shape costs tens to hundreds of milliseconds; the
// threshold keeps decode-sized GEMMs (microseconds each, planned on the
// way to a graph capture) on the heuristic's first pick. 2^33 is M=512 for
// a 4096×4096 weight: a GEMM of about 25 µs at full speed.
const (
	defaultAutotuneCandidates = 16
	defaultAutotuneMinMNK     = 1 << 33
	defaultAutotuneWarmup     = 1
	defaultAutotuneReps       = 3
)

// AutotuneOptions controls how BlasLt picks among cuBLASLt's candidate
// algorithms; the zero value tunes GEMMs of at least 2^33 multiply-adds
// among 16 candidates, one untimed and three timed runs each.
type AutotuneOptions struct {
	// Disable keeps every plan on the heuristic's first algorithm.
	Disable bool
	// Candidates is how many algorithms the heuristic is asked for
	// (requestedAlgoCount); 0 means 16.
	Candidates int
	// MinMNK is the smallest M·N·K that is tuned; 0 means 2^33.
	MinMNK int64
	// Warmup and Reps are the untimed and the timed runs of each
	// candidate; 0 means 1 and 3.
	Warmup, Reps int
}

// autotuneConfig is AutotuneOptions with defaults and the environment
// applied.
type autotuneConfig struct {
	enabled      bool
	candidates   int
	minMNK       int64
	warmup, reps int
}

func newAutotuneConfig(o AutotuneOptions, getenv func(string) string) (autotuneConfig, error) {
	if o.Candidates < 0 || o.MinMNK < 0 || o.Warmup < 0 || o.Reps < 0 {
		return autotuneConfig{}, fmt.Errorf("cuBLASLt autotune options %+v: negative value", o)
	}
	c := autotuneConfig{
		enabled:    !o.Disable,
		candidates: cmp.Or(o.Candidates, defaultAutotuneCandidates),
		minMNK:     cmp.Or(o.MinMNK, defaultAutotuneMinMNK),
		warmup:     cmp.Or(o.Warmup, defaultAutotuneWarmup),
		reps:       cmp.Or(o.Reps, defaultAutotuneReps),
	}
	if v := strings.TrimSpace(getenv(AutotuneEnv)); v != "" {
		on, err := parseSwitch(v)
		if err != nil {
			return autotuneConfig{}, fmt.Errorf("%s=%q: %w", AutotuneEnv, v, err)
		}
		// The variable only switches off: a build that disabled tuning in
		// its options had a reason.
		c.enabled = c.enabled && on
	}
	return c, nil
}

func parseSwitch(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "on", "yes":
		return true, nil
	case "off", "no":
		return false, nil
	}
	on, err := strconv.ParseBool(v)
	if err != nil {
		return false, errors.New("want 0 or 1 (or true/false, on/off)")
	}
	return on, nil
}

// worth reports whether g is large enough to be timed. The product is
// taken in float64: three int32 dimensions overflow int64.
func (c autotuneConfig) worth(g GemmShape) bool {
	return float64(g.M)*float64(g.N)*float64(g.K) >= float64(c.minMNK)
}

// GemmTuning is the algorithm choice of one cached plan (one shape and
// pointer alignment), for benchmarks to record.
type GemmTuning struct {
	Shape GemmShape // normalized
	// Candidates is the number of algorithms the heuristic offered.
	Candidates int
	// Chosen is the index, in the heuristic's order, of the algorithm
	// GemmBF16 uses; 0 is the heuristic's first pick.
	Chosen int
	// Tuned says that Chosen was picked by timing the candidates.
	Tuned bool
	// Pending says the plan is to be tuned by the next GemmBF16 on a
	// stream that is not capturing (or by PrepareOn).
	Pending bool
	// Skipped says why the plan is not tuned, when it is not.
	Skipped string
	// Times is, per candidate, the mean GPU time of one GEMM; 0 marks a
	// candidate whose cublasLtMatmul failed. Nil unless Tuned.
	Times []time.Duration
	// Failed counts the candidates skipped because cublasLtMatmul failed.
	Failed int
	// TuneTime is the wall time the tuning took, scratch buffer included.
	TuneTime time.Duration
}

// Speedup is the heuristic's first pick's time over the chosen one's (1
// when not tuned, or when the first pick failed).
func (t GemmTuning) Speedup() float64 {
	if !t.Tuned || t.Times[0] <= 0 || t.Times[t.Chosen] <= 0 {
		return 1
	}
	return float64(t.Times[0]) / float64(t.Times[t.Chosen])
}

func (t GemmTuning) String() string {
	if !t.Tuned {
		why := cmp.Or(t.Skipped, "not tuned")
		if t.Pending {
			why = "tuning pending"
			if t.Skipped != "" {
				why += " (" + t.Skipped + ")"
			}
		}
		return fmt.Sprintf("%v: heuristic's first algorithm of %d; %s", t.Shape, t.Candidates, why)
	}
	s := fmt.Sprintf("%v: algorithm %d of %d, %v per GEMM", t.Shape, t.Chosen, t.Candidates, t.Times[t.Chosen])
	if t.Times[0] > 0 {
		s += fmt.Sprintf(" (heuristic's first %v, %.2fx)", t.Times[0], t.Speedup())
	}
	if t.Failed > 0 {
		s += fmt.Sprintf(", %d failed", t.Failed)
	}
	return s + fmt.Sprintf(", tuned in %v", t.TuneTime.Round(time.Millisecond))
}

// Tunings lists the algorithm choice of every cached plan, ordered by
// shape.
func (b *BlasLt) Tunings() []GemmTuning {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]GemmTuning, 0, len(b.plans))
	for _, p := range b.plans {
		t := p.tuning
		t.Times = slices.Clone(t.Times)
		out = append(out, t)
	}
	slices.SortStableFunc(out, func(a, b GemmTuning) int {
		x, y := a.Shape, b.Shape
		return cmp.Or(cmp.Compare(x.M, y.M), cmp.Compare(x.N, y.N), cmp.Compare(x.K, y.K),
			cmp.Compare(x.LdX, y.LdX), cmp.Compare(x.LdW, y.LdW), cmp.Compare(x.LdY, y.LdY),
			cmpBool(x.Bias, y.Bias), cmpBool(x.Accumulate, y.Accumulate))
	})
	return out
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// PrepareOn is Prepare that also autotunes the plan now, on stream s,
// when its shape is to be tuned and s is not capturing. Tuning reads x, w
// and bias, writes a scratch output (never y) and blocks until s is idle.
func (b *BlasLt) PrepareOn(s Stream, g GemmShape, y, x, w, bias DevicePtr) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	g, p, err := b.plan(g, y, x, w, bias)
	if err != nil {
		return err
	}
	if p.tuning.Pending {
		return b.autotune(s, g, p, x, w, bias)
	}
	return nil
}

// driver returns the driver the tuner times with: the one from the
// options, else one opened on first use (libcuda is already loaded by
// whoever made the context, so this only binds its entry points). b.mu
// must be held.
func (b *BlasLt) driver() (*Driver, error) {
	if b.drv == nil && b.drvErr == nil {
		d, err := Open()
		if err != nil {
			b.drvErr = err
		} else {
			b.drv, b.ownDrv = d, true
		}
	}
	return b.drv, b.drvErr
}

func (b *BlasLt) logTuning(t GemmTuning) {
	if b.logf != nil {
		b.logf("cuBLASLt autotune: %v", t)
	}
}

// autotune times p's candidate algorithms on s and keeps the fastest. A
// capturing stream leaves the plan pending, to be tuned by a later call;
// a tuning that cannot run (no driver, no memory for the scratch output,
// every candidate failing) leaves the heuristic's first pick for good.
// Errors are returned only for a broken stream or context. b.mu must be
// held.
func (b *BlasLt) autotune(s Stream, g GemmShape, p *gemmPlan, x, w, bias DevicePtr) error {
	t := &p.tuning
	giveUp := func(why string) {
		t.Pending, t.Skipped = false, why
		b.logTuning(*t)
	}
	d, err := b.driver()
	if err != nil {
		giveUp(fmt.Sprintf("no driver to time with: %v", err))
		return nil
	}
	capturing, err := d.StreamIsCapturing(s)
	if err != nil {
		t.Skipped = fmt.Sprintf("capture state unknown: %v", err)
		return nil
	}
	if capturing {
		// Allocating, synchronising and timing are illegal in a capture,
		// and the graph must record only the GEMM itself.
		t.Skipped = "stream was capturing"
		return nil
	}

	start := time.Now()
	// The scratch output has Y's layout; its last row needs only N
	// elements. With Accumulate Y is also an input, so timing in place
	// would add the product to the caller's Y once per run.
	n := 2 * (uint64(g.M-1)*uint64(g.LdY) + uint64(g.N))
	scratch, err := d.MemAlloc(n)
	if err != nil {
		giveUp(fmt.Sprintf("no scratch output: %v", err))
		return nil
	}
	res, runErr := b.timeCandidates(d, s, g, p, scratch, n, x, w, bias)
	// The scratch is freed only once s has stopped using it, also when
	// the timing broke off.
	syncErr := d.StreamSynchronize(s)
	freeErr := d.MemFree(scratch)
	if err := errors.Join(runErr, syncErr, freeErr); err != nil {
		giveUp(fmt.Sprintf("tuning failed: %v", err))
		return fmt.Errorf("cublasLt autotune %v: %w", g, err)
	}

	best, err := pickFastest(res)
	if err != nil {
		giveUp(err.Error())
		return nil
	}
	t.Times = make([]time.Duration, len(res))
	t.Failed = 0
	for i, r := range res {
		if r.err != nil {
			t.Failed++
			continue
		}
		t.Times[i] = r.time
	}
	p.heur = p.cands[best]
	t.Chosen, t.Tuned, t.Pending, t.Skipped = best, true, false, ""
	t.TuneTime = time.Since(start)
	b.logTuning(*t)
	return nil
}

// timeCandidates runs every candidate of p into scratch (n bytes) with the
// arguments the real GEMM will have. It does not wait for the stream
// unless all went well.
func (b *BlasLt) timeCandidates(d *Driver, s Stream, g GemmShape, p *gemmPlan, scratch DevicePtr, n uint64, x, w, bias DevicePtr) ([]candidateResult, error) {
	if g.Accumulate {
		// C is read: give it defined contents rather than stale memory.
		if err := d.MemsetD8Async(scratch, 0, n, s); err != nil {
			return nil, err
		}
	}
	if g.Bias {
		if err := b.setDesc(p.desc, ltDescBiasPointer, unsafe.Pointer(&bias), 8); err != nil {
			return nil, err
		}
	}
	clk := &eventClock{d: d, s: s, ev: make([]Event, 2*len(p.cands))}
	defer clk.close()
	return measureCandidates(len(p.cands), b.tune.warmup, b.tune.reps, func(i int) error {
		return b.matmul(s, p, &p.cands[i], g.Accumulate, scratch, x, w)
	}, clk)
}

// candidateResult is one candidate's mean time per run, or why it failed.
type candidateResult struct {
	time time.Duration
	err  error
}

// candidateClock times runs on the GPU: start and stop bracket candidate
// i's timed runs, wait blocks until every bracket has completed.
type candidateClock interface {
	start(i int) error
	stop(i int) error
	wait() error
	elapsed(i int) (time.Duration, error)
}

// measureCandidates gives each of n candidates warmup untimed runs (the
// first also loads its kernel, which CUDA does lazily) and reps timed
// ones, all enqueued back to back before waiting once. A candidate whose
// run fails is skipped; a clock error ends the measurement.
func measureCandidates(n, warmup, reps int, run func(i int) error, clk candidateClock) ([]candidateResult, error) {
	res := make([]candidateResult, n)
	for i := range res {
		for range warmup {
			if res[i].err = run(i); res[i].err != nil {
				break
			}
		}
		if res[i].err != nil {
			continue
		}
		if err := clk.start(i); err != nil {
			return nil, err
		}
		for range reps {
			if res[i].err = run(i); res[i].err != nil {
				break
			}
		}
		if res[i].err != nil {
			continue
		}
		if err := clk.stop(i); err != nil {
			return nil, err
		}
	}
	if err := clk.wait(); err != nil {
		return nil, err
	}
	for i := range res {
		if res[i].err != nil {
			continue
		}
		el, err := clk.elapsed(i)
		if err != nil {
			return nil, err
		}
		res[i].time = el / time.Duration(max(reps, 1))
	}
	return res, nil
}

// pickFastest returns the index of the fastest candidate that ran; ties go
// to the heuristic's earlier choice.
func pickFastest(res []candidateResult) (int, error) {
	best := -1
	var errs []error
	for i, r := range res {
		if r.err != nil {
			errs = append(errs, fmt.Errorf("candidate %d: %w", i, r.err))
			continue
		}
		if best < 0 || r.time < res[best].time {
			best = i
		}
	}
	if best < 0 {
		return -1, fmt.Errorf("every one of %d candidate algorithms failed: %w", len(res), errors.Join(errs...))
	}
	return best, nil
}

// eventClock is candidateClock with CUDA events on the tuning stream, two
// per candidate, created as needed.
type eventClock struct {
	d  *Driver
	s  Stream
	ev []Event
}

func (c *eventClock) record(k int) error {
	if c.ev[k] == 0 {
		e, err := c.d.EventCreate(0)
		if err != nil {
			return err
		}
		c.ev[k] = e
	}
	return c.d.EventRecord(c.ev[k], c.s)
}

func (c *eventClock) start(i int) error { return c.record(2 * i) }
func (c *eventClock) stop(i int) error  { return c.record(2*i + 1) }
func (c *eventClock) wait() error       { return c.d.StreamSynchronize(c.s) }

func (c *eventClock) elapsed(i int) (time.Duration, error) {
	return c.d.EventElapsed(c.ev[2*i], c.ev[2*i+1])
}

// close destroys the events; an event still pending on the stream is
// released by the driver once it completes.
func (c *eventClock) close() {
	for _, e := range c.ev {
		if e != 0 {
			_ = c.d.EventDestroy(e)
		}
	}
}
