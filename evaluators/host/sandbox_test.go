package host

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/longctx/longctx/evaluators/contract"
)

func items(predictions ...string) []contract.Item {
	out := make([]contract.Item, len(predictions))
	for i, p := range predictions {
		out[i] = contract.Item{ID: fmt.Sprintf("q%d", i), Prediction: p, References: []string{"ref"}}
	}
	return out
}

// sandboxOptions are tight limits so the hostile cases end fast. The
// timeout is generous: a loaded CI machine must not time out good runs.
var sandboxOptions = Options{
	MemoryLimit: 64 << 20,
	Timeout:     30 * time.Second,
	OutputBase:  64 << 10,
}

// loopTimeout is the timeout of the host that runs the infinite loop.
const loopTimeout = time.Second

func TestHostileModulesAreStoppedWithClearErrors(t *testing.T) {
	ctx := context.Background()
	ev, err := newHost(t, sandboxOptions).Load(ctx, testModules["hostile"])
	if err != nil {
		t.Fatal(err)
	}
	// The same module under a host with a short timeout. It is loaded by
	// the first host: describing it under the short limit could itself
	// time out on a slow machine (a race-detector build, a loaded CI).
	loopOpts := sandboxOptions
	loopOpts.Timeout = loopTimeout
	evLoop := *ev
	evLoop.host = newHost(t, loopOpts)
	// A file the module must not read and a listener it must not reach;
	// their paths travel in the item's references.
	secret := filepath.Join(t.TempDir(), "secret.txt")
	if err := os.WriteFile(secret, []byte("host data"), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	connected := make(chan struct{}, 1)
	go func() {
		if conn, err := ln.Accept(); err == nil {
			connected <- struct{}{}
			conn.Close()
		}
	}()

	cases := []struct {
		behaviour string
		refs      []string
		kind      error
		// each must appear in the error message
		says []string
	}{
		{"loop", nil, ErrTimeout, []string{"timed out", "limit 1s"}},
		{"alloc", nil, ErrMemoryLimit, []string{"memory cap", "the cap is 64 MiB"}},
		{"open", []string{secret}, ErrFailed, []string{"exit code 3", "open refused", "/etc/passwd"}},
		{"create", nil, ErrFailed, []string{"exit code 3", "create refused", "/tmp/longctx-hostile"}},
		{"dial", []string{ln.Addr().String()}, ErrFailed, []string{"exit code 3", "dial refused"}},
		{"env", nil, ErrFailed, []string{"exit code 3", "environment empty"}},
		{"garbage", nil, ErrBadOutput, []string{"stdout line 1", "not a valid score line", `"this is not JSON`}},
		{"flood", nil, ErrOutputTooLarge, []string{"stdout passed", "AAAA"}},
		{"flood-stderr", nil, ErrOutputTooLarge, []string{"stderr passed"}},
		{"wrong-id", nil, ErrBadOutput, []string{`id "not-q0" does not echo the input id "q0"`}},
		{"extra-score", nil, ErrBadOutput, []string{`score "bonus" is not declared`}},
		{"huge-number", nil, ErrBadOutput, []string{"stdout line 1", "1e999"}},
		{"short", nil, ErrBadOutput, []string{"1 score lines for 2 items"}},
		{"panic", nil, ErrFailed, []string{"exit code 2", "panic: evaluator bug"}},
	}
	for _, tc := range cases {
		t.Run(tc.behaviour, func(t *testing.T) {
			start := time.Now()
			in := items(tc.behaviour, "second item")
			if tc.refs != nil {
				in[0].References = tc.refs
			}
			run := ev
			if tc.behaviour == "loop" {
				run = &evLoop
			}
			_, err := run.Score(ctx, in)
			t.Log(err)
			if !errors.Is(err, tc.kind) {
				t.Fatalf("error %v, want kind %v", err, tc.kind)
			}
			var re *RunError
			if !errors.As(err, &re) || re.Phase != "score" {
				t.Fatalf("error %T %v is not a score-phase *RunError", err, err)
			}
			for _, s := range append(tc.says, "evaluator "+testModules["hostile"]) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if strings.Contains(err.Error(), "SANDBOX ESCAPE") {
				t.Fatalf("the module got out: %v", err)
			}
			if len(err.Error()) > 4096 {
				t.Errorf("error message is %d bytes; untrusted output must be truncated", len(err.Error()))
			}
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("took %s to fail", d)
			}
			select {
			case <-connected:
				t.Fatal("the module opened a connection to the host's listener")
			default:
			}
			// The same evaluator keeps working: the harness goes on with
			// the next cell.
			got, err := ev.Score(ctx, items("fine", "also fine"))
			if err != nil || len(got) != 2 || got[1].Scores["value"] != 0.5 {
				t.Fatalf("after %s, a good batch gave %v, %v", tc.behaviour, got, err)
			}
		})
	}
	select {
	case <-connected:
		t.Fatal("a module opened a connection to the host's listener")
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := os.Stat("/tmp/longctx-hostile"); err == nil {
		t.Fatal("a module created /tmp/longctx-hostile on the host")
	}
}

func TestMemoryCapIsEnforcedNotJustReported(t *testing.T) {
	// A larger cap lets the same memory bomb grow further before it is
	// stopped; the reported size stays within one Go heap step of the cap.
	for _, capMiB := range []uint64{48, 96} {
		opts := sandboxOptions
		opts.MemoryLimit = capMiB << 20
		opts.Timeout = 20 * time.Second
		h := newHost(t, opts)
		ev, err := h.Load(context.Background(), testModules["hostile"])
		if err != nil {
			t.Fatal(err)
		}
		_, err = ev.Score(context.Background(), items("alloc"))
		var re *RunError
		if !errors.As(err, &re) || !errors.Is(err, ErrMemoryLimit) {
			t.Fatalf("cap %d MiB: %v", capMiB, err)
		}
		var tried, limit uint64
		if _, serr := fmt.Sscanf(re.Detail, "tried to grow its memory to %d MiB, the cap is %d MiB", &tried, &limit); serr != nil {
			t.Fatalf("detail %q: %v", re.Detail, serr)
		}
		if limit != capMiB || tried <= capMiB || tried > capMiB+64 {
			t.Errorf("cap %d MiB: detail %q", capMiB, re.Detail)
		}
	}
}

func TestCallerCancellationIsNotBlamedOnTheModule(t *testing.T) {
	h := newHost(t, Options{Timeout: time.Minute})
	ev, err := h.Load(context.Background(), testModules["hostile"])
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = ev.Score(ctx, items("loop"))
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrTimeout) {
		t.Fatalf("error %v: want the caller's deadline, not the evaluator timeout", err)
	}
}

func TestBatchesAndConcurrentRuns(t *testing.T) {
	in := items("a", "b", "c", "d", "e")
	var want []contract.ScoreLine
	for _, batch := range []int{0, 1, 2, 5, 10} {
		h := newHost(t, Options{BatchSize: batch})
		ev, err := h.Load(context.Background(), testModules["squad"])
		if err != nil {
			t.Fatal(err)
		}
		got, err := ev.Score(context.Background(), in)
		if err != nil {
			t.Fatalf("batch %d: %v", batch, err)
		}
		if len(got) != len(in) {
			t.Fatalf("batch %d: %d results for %d items", batch, len(got), len(in))
		}
		for i := range got {
			if got[i].ID != in[i].ID {
				t.Fatalf("batch %d: result %d is for %q, want %q", batch, i, got[i].ID, in[i].ID)
			}
		}
		if want == nil {
			want = got
			continue
		}
		for i := range got {
			for k, v := range want[i].Scores {
				if got[i].Scores[k] != v {
					t.Errorf("batch %d: item %d %s = %v, unbatched %v", batch, i, k, got[i].Scores[k], v)
				}
			}
		}
	}

	h := newHost(t, Options{})
	ev, err := h.Load(context.Background(), testModules["squad"])
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for g := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := ev.Score(context.Background(), in)
			if err == nil && len(got) != len(in) {
				err = fmt.Errorf("%d results", len(got))
			}
			errs[g] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

func TestEmptyBatchRunsNothing(t *testing.T) {
	h := newHost(t, Options{})
	ev, err := h.Load(context.Background(), testModules["squad"])
	if err != nil {
		t.Fatal(err)
	}
	got, err := ev.Score(context.Background(), nil)
	if err != nil || len(got) != 0 {
		t.Fatalf("Score(nil) = %v, %v", got, err)
	}
}
