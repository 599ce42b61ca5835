package cuda

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestNewAutotuneConfig(t *testing.T) {
	defaults := autotuneConfig{enabled: true, candidates: 16, minMNK: 1 << 33, warmup: 1, reps: 3}
	tests := []struct {
		name    string
		opt     AutotuneOptions
		env     string
		want    autotuneConfig
		wantErr bool
	}{
		{"zero value tunes", AutotuneOptions{}, "", defaults, false},
		{"env 0 disables", AutotuneOptions{}, "0", autotuneConfig{candidates: 16, minMNK: 1 << 33, warmup: 1, reps: 3}, false},
		{"env off disables", AutotuneOptions{}, " OFF ", autotuneConfig{candidates: 16, minMNK: 1 << 33, warmup: 1, reps: 3}, false},
		{"env 1 keeps it on", AutotuneOptions{}, "1", defaults, false},
		{"env 1 does not override Disable", AutotuneOptions{Disable: true}, "true", autotuneConfig{candidates: 16, minMNK: 1 << 33, warmup: 1, reps: 3}, false},
		{"options kept", AutotuneOptions{Candidates: 8, MinMNK: 1, Warmup: 2, Reps: 5}, "", autotuneConfig{enabled: true, candidates: 8, minMNK: 1, warmup: 2, reps: 5}, false},
		{"bad env value", AutotuneOptions{}, "maybe", autotuneConfig{}, true},
		{"negative option", AutotuneOptions{Reps: -1}, "", autotuneConfig{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var asked []string
			got, err := newAutotuneConfig(tc.opt, func(k string) string {
				asked = append(asked, k)
				if k == AutotuneEnv {
					return tc.env
				}
				return ""
			})
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v; wantErr %v", err, tc.wantErr)
			}
			if err != nil {
				if tc.env != "" && !strings.Contains(err.Error(), AutotuneEnv) {
					t.Errorf("error %q does not name %s", err, AutotuneEnv)
				}
				return
			}
			if got != tc.want {
				t.Errorf("config = %+v; want %+v", got, tc.want)
			}
			if len(asked) != 1 || asked[0] != AutotuneEnv {
				t.Errorf("looked up %q; want only %s", asked, AutotuneEnv)
			}
		})
	}
}

// A bad environment value stops OpenBlasLtWith before any library is
// loaded, so it fails the same way on a machine without CUDA.
func TestOpenBlasLtBadAutotuneEnv(t *testing.T) {
	env := map[string]string{AutotuneEnv: "sometimes"}
	_, err := OpenBlasLtWith(BlasLtOptions{Libraries: []string{"libcublasLt-longctx-test-missing.so.13"}, Getenv: func(k string) string { return env[k] }})
	if err == nil || errors.Is(err, ErrNoBlasLt) || !strings.Contains(err.Error(), AutotuneEnv) {
		t.Fatalf("err = %v; want one naming %s", err, AutotuneEnv)
	}
}

func TestAutotuneWorth(t *testing.T) {
	c := autotuneConfig{enabled: true, minMNK: 1 << 33}
	tests := []struct {
		g    GemmShape
		want bool
	}{
		{GemmShape{M: 1, N: 4096, K: 4096}, false},                  // decode GEMV
		{GemmShape{M: 64, N: 28672, K: 4096}, false},                // batched decode MLP
		{GemmShape{M: 511, N: 4096, K: 4096}, false},                // just below
		{GemmShape{M: 512, N: 4096, K: 4096}, true},                 // exactly 2^33
		{GemmShape{M: 8192, N: 6144, K: 4096}, true},                // prefill qkv
		{GemmShape{M: 1<<31 - 1, N: 1<<31 - 1, K: 1<<31 - 1}, true}, // would overflow int64
	}
	for _, tc := range tests {
		if got := c.worth(tc.g); got != tc.want {
			t.Errorf("worth(M=%d N=%d K=%d) = %v; want %v", tc.g.M, tc.g.N, tc.g.K, got, tc.want)
		}
	}
}

func TestPickFastest(t *testing.T) {
	fail := errors.New("CUBLAS_STATUS_NOT_SUPPORTED")
	ms := time.Millisecond
	tests := []struct {
		name    string
		res     []candidateResult
		want    int
		wantErr bool
	}{
		{"first is fastest", []candidateResult{{time: 1 * ms}, {time: 2 * ms}}, 0, false},
		{"later is fastest", []candidateResult{{time: 5 * ms}, {time: 2 * ms}, {time: 1 * ms}, {time: 3 * ms}}, 2, false},
		{"tie keeps the heuristic's order", []candidateResult{{time: 4 * ms}, {time: 2 * ms}, {time: 2 * ms}}, 1, false},
		{"failed skipped although its time is lowest", []candidateResult{{time: 3 * ms}, {err: fail}, {time: 2 * ms}}, 2, false},
		{"first failed", []candidateResult{{err: fail}, {time: 9 * ms}}, 1, false},
		{"all failed", []candidateResult{{err: fail}, {err: fail}}, -1, true},
		{"none", nil, -1, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pickFastest(tc.res)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v; wantErr %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Fatalf("pickFastest = %d; want %d", got, tc.want)
			}
			if err != nil && len(tc.res) > 0 && !errors.Is(err, fail) {
				t.Errorf("error %q does not wrap the candidates' errors", err)
			}
		})
	}
}

// fakeClock times candidate i at per[i] per bracket, and records the
// order of calls.
type fakeClock struct {
	per     []time.Duration
	log     *[]string
	started map[int]bool
	stopped map[int]bool
	waited  bool
	failAt  string // "start", "stop", "wait" or "elapsed": that call fails
}

var errClock = errors.New("clock broke")

func (c *fakeClock) start(i int) error {
	*c.log = append(*c.log, "start")
	c.started[i] = true
	if c.failAt == "start" {
		return errClock
	}
	return nil
}

func (c *fakeClock) stop(i int) error {
	*c.log = append(*c.log, "stop")
	c.stopped[i] = true
	if c.failAt == "stop" {
		return errClock
	}
	return nil
}

func (c *fakeClock) wait() error {
	c.waited = true
	if c.failAt == "wait" {
		return errClock
	}
	return nil
}

func (c *fakeClock) elapsed(i int) (time.Duration, error) {
	if !c.waited || !c.started[i] || !c.stopped[i] {
		return 0, errors.New("elapsed read before the bracket completed")
	}
	if c.failAt == "elapsed" {
		return 0, errClock
	}
	return c.per[i], nil
}

func TestMeasureCandidates(t *testing.T) {
	fail := errors.New("CUBLAS_STATUS_NOT_SUPPORTED")
	const warmup, reps = 2, 4
	tests := []struct {
		name     string
		per      []time.Duration // one bracket (reps runs) per candidate
		failRun  map[int]int     // candidate -> run number (0-based, warmup first) that fails
		failAt   string
		wantMean []time.Duration // 0 for failed
		wantRuns []int
		wantErr  bool
	}{
		{
			name:     "all run",
			per:      []time.Duration{8 * time.Millisecond, 4 * time.Millisecond, 12 * time.Millisecond},
			wantMean: []time.Duration{2 * time.Millisecond, time.Millisecond, 3 * time.Millisecond},
			wantRuns: []int{6, 6, 6},
		},
		{
			name:     "failure in warm-up and in timed runs",
			per:      []time.Duration{8 * time.Millisecond, 4 * time.Millisecond, 12 * time.Millisecond},
			failRun:  map[int]int{0: 0, 2: 3},
			wantMean: []time.Duration{0, time.Millisecond, 0},
			wantRuns: []int{1, 6, 4},
		},
		{
			name:    "clock failure ends the measurement",
			per:     []time.Duration{time.Millisecond},
			failAt:  "wait",
			wantErr: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var log []string
			clk := &fakeClock{per: tc.per, log: &log, started: map[int]bool{}, stopped: map[int]bool{}, failAt: tc.failAt}
			runs := make([]int, len(tc.per))
			res, err := measureCandidates(len(tc.per), warmup, reps, func(i int) error {
				n := runs[i]
				runs[i]++
				log = append(log, "run")
				if f, ok := tc.failRun[i]; ok && f == n {
					return fail
				}
				return nil
			}, clk)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v; wantErr %v", err, tc.wantErr)
			}
			if err != nil {
				if !errors.Is(err, errClock) {
					t.Errorf("err = %v; want the clock's", err)
				}
				return
			}
			for i, r := range res {
				failed := tc.wantMean[i] == 0
				if (r.err != nil) != failed {
					t.Errorf("candidate %d: err = %v; want failed %v", i, r.err, failed)
				}
				if !failed && r.time != tc.wantMean[i] {
					t.Errorf("candidate %d: mean %v; want %v", i, r.time, tc.wantMean[i])
				}
				if runs[i] != tc.wantRuns[i] {
					t.Errorf("candidate %d ran %d times; want %d", i, runs[i], tc.wantRuns[i])
				}
				if failed && clk.stopped[i] {
					t.Errorf("candidate %d failed but its bracket was closed", i)
				}
			}
			// Warm-up runs precede each start; only timed runs lie
			// between start and stop.
			if tc.failRun == nil {
				want := strings.Repeat("run run start run run run run stop ", len(tc.per))
				if got := strings.Join(log, " ") + " "; got != want {
					t.Errorf("call order %q; want %q", got, want)
				}
			}
		})
	}
}

func TestGemmTuningString(t *testing.T) {
	shape := GemmShape{M: 8192, N: 6144, K: 4096, LdX: 4096, LdW: 4096, LdY: 6144}
	tuned := GemmTuning{Shape: shape, Candidates: 3, Chosen: 2, Tuned: true, Failed: 1,
		Times: []time.Duration{4 * time.Millisecond, 0, time.Millisecond}, TuneTime: 120 * time.Millisecond}
	if got := tuned.Speedup(); got != 4 {
		t.Errorf("Speedup = %v; want 4", got)
	}
	for _, part := range []string{"M=8192", "algorithm 2 of 3", "1ms per GEMM", "4.00x", "1 failed", "tuned in 120ms"} {
		if s := tuned.String(); !strings.Contains(s, part) {
			t.Errorf("%q lacks %q", s, part)
		}
	}
	pending := GemmTuning{Shape: shape, Candidates: 16, Pending: true, Skipped: "stream was capturing"}
	if s := pending.String(); !strings.Contains(s, "pending") || !strings.Contains(s, "capturing") {
		t.Errorf("%q does not say it is pending because of a capture", s)
	}
	if got := pending.Speedup(); got != 1 {
		t.Errorf("untuned Speedup = %v; want 1", got)
	}
	small := GemmTuning{Shape: shape, Candidates: 1, Skipped: "M·N·K below the autotune threshold"}
	if s := small.String(); !strings.Contains(s, "first algorithm") || !strings.Contains(s, "threshold") {
		t.Errorf("%q does not say why it was not tuned", s)
	}
}
