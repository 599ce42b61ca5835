package sweep

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// NoGPU is the GPU index RunLocal passes to Run when it runs without GPUs.
const NoGPU = -1

// LocalOptions configures RunLocal.
type LocalOptions struct {
	// GPUs lists the GPU indices to use, one worker each; empty runs the
	// cells one after another and passes NoGPU. Making the index visible to
	// the cell (CUDA_VISIBLE_DEVICES or a device flag) is Run's business.
	GPUs []int
	// Done reports whether a cell's results already exist (see
	// FinishedIn); nil treats every cell as unfinished.
	Done func(id string) bool
	// Run runs one cell. An error fails that cell only; the sweep goes on.
	Run func(ctx context.Context, c Cell, gpu int) error
	// Log receives one line per cell event; nil discards them.
	Log io.Writer
}

// Summary is what RunLocal did, each list in cell order.
type Summary struct {
	Succeeded []string    // IDs of cells that ran without error
	Skipped   []string    // IDs of cells already finished
	Failed    []CellError // cells whose Run returned an error
	NotRun    []string    // IDs of cells not started because the context ended
}

// Err joins the failures, or returns nil when there were none.
func (s Summary) Err() error {
	errs := make([]error, len(s.Failed))
	for i := range s.Failed {
		errs[i] = s.Failed[i]
	}
	return errors.Join(errs...)
}

// CellError is the failure of one cell.
type CellError struct {
	ID  string
	Err error
}

func (e CellError) Error() string { return fmt.Sprintf("cell %s: %v", e.ID, e.Err) }
func (e CellError) Unwrap() error { return e.Err }

type outcome int

const (
	outcomeNotRun outcome = iota
	outcomeSkipped
	outcomeSucceeded
	outcomeFailed
)

// RunLocal runs the cells on this machine: finished cells are skipped, the
// rest run one at a time, or one per GPU in parallel when GPUs are given. A
// failing (or panicking) cell is recorded and the sweep continues. When ctx
// ends no new cell starts, cells already running get ctx to stop, and
// RunLocal returns ctx's error along with the summary.
func RunLocal(ctx context.Context, cells []Cell, opts LocalOptions) (Summary, error) {
	if opts.Run == nil {
		return Summary{}, errors.New("sweep: LocalOptions.Run is nil")
	}
	gpus := opts.GPUs
	if len(gpus) == 0 {
		gpus = []int{NoGPU}
	}
	seen := map[int]bool{}
	for _, g := range gpus {
		if seen[g] {
			return Summary{}, fmt.Errorf("sweep: GPU %d is listed twice", g)
		}
		seen[g] = true
	}
	logw := opts.Log
	if logw == nil {
		logw = io.Discard
	}
	var logMu sync.Mutex
	logf := func(format string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		fmt.Fprintf(logw, format+"\n", args...)
	}

	outcomes := make([]outcome, len(cells))
	errs := make([]error, len(cells))
	ids := make([]string, len(cells))
	next := make(chan int)
	var wg sync.WaitGroup
	for _, gpu := range gpus {
		wg.Add(1)
		go func(gpu int) {
			defer wg.Done()
			for i := range next {
				start := time.Now()
				logf("run   %s (gpu %d)", ids[i], gpu)
				err := runOne(ctx, opts.Run, cells[i], gpu)
				if err != nil {
					outcomes[i], errs[i] = outcomeFailed, err
					logf("FAIL  %s after %s: %v", ids[i], time.Since(start).Round(time.Millisecond), err)
					continue
				}
				outcomes[i] = outcomeSucceeded
				logf("done  %s in %s", ids[i], time.Since(start).Round(time.Millisecond))
			}
		}(gpu)
	}
feed:
	for i, c := range cells {
		ids[i] = c.ID()
		if opts.Done != nil && opts.Done(ids[i]) {
			outcomes[i] = outcomeSkipped
			logf("skip  %s (finished)", ids[i])
			continue
		}
		// Check first: select picks randomly among ready cases, and a
		// cancelled sweep must not start another cell.
		if ctx.Err() != nil {
			break
		}
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()

	var sum Summary
	for i, o := range outcomes {
		switch o {
		case outcomeSkipped:
			sum.Skipped = append(sum.Skipped, ids[i])
		case outcomeSucceeded:
			sum.Succeeded = append(sum.Succeeded, ids[i])
		case outcomeFailed:
			sum.Failed = append(sum.Failed, CellError{ID: ids[i], Err: errs[i]})
		default:
			if ids[i] == "" {
				ids[i] = cells[i].ID()
			}
			sum.NotRun = append(sum.NotRun, ids[i])
		}
	}
	return sum, ctx.Err()
}

// runOne turns a panic in Run into that cell's error, so one bad cell cannot
// take the whole sweep down.
func runOne(ctx context.Context, run func(context.Context, Cell, int) error, c Cell, gpu int) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return run(ctx, c, gpu)
}
