package sweep

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func testCells(n int) []Cell {
	cells := make([]Cell, n)
	for i := range cells {
		cells[i] = Cell{Model: "m", Attn: "a", KV: "k", Task: "t", Context: 512 * (i + 1), Batch: 1, MaxNewTokens: 4, Repeat: 1}
	}
	return cells
}

func ids(cells []Cell) []string {
	out := make([]string, len(cells))
	for i, c := range cells {
		out[i] = c.ID()
	}
	return out
}

func TestRunLocalSkipsDoneAndContinuesAfterFailure(t *testing.T) {
	cells := testCells(5)
	all := ids(cells)
	done := map[string]bool{all[1]: true, all[3]: true}
	var mu sync.Mutex
	var ran []string
	var log bytes.Buffer
	sum, err := RunLocal(context.Background(), cells, LocalOptions{
		Done: func(id string) bool { return done[id] },
		Run: func(_ context.Context, c Cell, gpu int) error {
			if gpu != NoGPU {
				t.Errorf("sequential run got gpu %d", gpu)
			}
			mu.Lock()
			ran = append(ran, c.ID())
			mu.Unlock()
			switch c.ID() {
			case all[0]:
				return errors.New("out of memory")
			case all[2]:
				panic("boom")
			}
			return nil
		},
		Log: &log,
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{all[0], all[2], all[4]}; !reflect.DeepEqual(ran, want) {
		t.Errorf("ran %v, want %v (in order, done cells skipped)", ran, want)
	}
	if !reflect.DeepEqual(sum.Skipped, []string{all[1], all[3]}) || !reflect.DeepEqual(sum.Succeeded, []string{all[4]}) || len(sum.NotRun) != 0 {
		t.Errorf("summary %+v", sum)
	}
	if len(sum.Failed) != 2 || sum.Failed[0].ID != all[0] || sum.Failed[1].ID != all[2] ||
		!strings.Contains(sum.Failed[0].Error(), "out of memory") || !strings.Contains(sum.Failed[1].Error(), "panic: boom") {
		t.Errorf("failures %v", sum.Failed)
	}
	if err := sum.Err(); err == nil || !strings.Contains(err.Error(), all[0]) {
		t.Errorf("Summary.Err() = %v", err)
	}
	for _, want := range []string{"skip  " + all[1], "FAIL  " + all[0], "done  " + all[4]} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
}

func TestRunLocalOneWorkerPerGPU(t *testing.T) {
	cells := testCells(12)
	gpus := []int{3, 5, 7}
	var mu sync.Mutex
	running := map[int]bool{}
	used := map[int]int{}
	concurrent, maxConcurrent := 0, 0
	// The first cell on each GPU waits until all GPUs are busy: this fails
	// (by timeout) unless the workers really run in parallel.
	var allBusy sync.WaitGroup
	allBusy.Add(len(gpus))
	first := map[int]bool{}
	sum, err := RunLocal(context.Background(), cells, LocalOptions{
		GPUs: gpus,
		Run: func(_ context.Context, c Cell, gpu int) error {
			mu.Lock()
			if running[gpu] {
				mu.Unlock()
				return fmt.Errorf("gpu %d given two cells at once", gpu)
			}
			running[gpu] = true
			used[gpu]++
			concurrent++
			if concurrent > maxConcurrent {
				maxConcurrent = concurrent
			}
			isFirst := !first[gpu]
			first[gpu] = true
			mu.Unlock()
			if isFirst {
				allBusy.Done()
				waitOrTimeout(t, &allBusy)
			}
			time.Sleep(time.Millisecond)
			mu.Lock()
			running[gpu] = false
			concurrent--
			mu.Unlock()
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Failed) != 0 || len(sum.Succeeded) != len(cells) {
		t.Fatalf("summary %+v", sum)
	}
	if maxConcurrent != len(gpus) {
		t.Errorf("at most %d cells ran at once, want %d", maxConcurrent, len(gpus))
	}
	for g := range used {
		if g != 3 && g != 5 && g != 7 {
			t.Errorf("Run got gpu %d, not one of %v", g, gpus)
		}
	}
	if !reflect.DeepEqual(sum.Succeeded, ids(cells)) {
		t.Error("Succeeded is not in cell order")
	}
}

func waitOrTimeout(t *testing.T, wg *sync.WaitGroup) {
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Error("workers did not run in parallel")
	}
}

func TestRunLocalCancel(t *testing.T) {
	cells := testCells(6)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := 0
	sum, err := RunLocal(ctx, cells, LocalOptions{
		Run: func(ctx context.Context, c Cell, _ int) error {
			started++
			if started == 2 {
				cancel()
				// A running cell sees the cancellation through its context.
				<-ctx.Done()
				return ctx.Err()
			}
			return nil
		},
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if started != 2 {
		t.Errorf("%d cells started, want 2 (none after cancellation)", started)
	}
	all := ids(cells)
	if !reflect.DeepEqual(sum.Succeeded, all[:1]) || len(sum.Failed) != 1 || sum.Failed[0].ID != all[1] || !reflect.DeepEqual(sum.NotRun, all[2:]) {
		t.Errorf("summary %+v", sum)
	}
}

func TestRunLocalBadOptions(t *testing.T) {
	if _, err := RunLocal(context.Background(), testCells(1), LocalOptions{}); err == nil {
		t.Error("nil Run accepted")
	}
	run := func(context.Context, Cell, int) error { return nil }
	if _, err := RunLocal(context.Background(), testCells(1), LocalOptions{GPUs: []int{0, 0}, Run: run}); err == nil {
		t.Error("duplicate GPU accepted")
	}
}
