package gpu

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"time"

	"github.com/longctx/longctx/engine/cuda"
)

// profiler times the parts of a forward pass with CUDA events recorded
// between them on the engine's stream (Options.Profile). Only steps run
// launch by launch are profiled: a replayed graph has no events inside.
type profiler struct {
	drv    *cuda.Driver
	events []cuda.Event
	names  []string
	used   int
	total  map[string]time.Duration
	count  map[string]int
}

func newProfiler(drv *cuda.Driver) *profiler {
	return &profiler{drv: drv, total: map[string]time.Duration{}, count: map[string]int{}}
}

// mark records that the work enqueued since the previous mark was name.
func (p *profiler) mark(s cuda.Stream, name string) error {
	if p.used == len(p.events) {
		ev, err := p.drv.EventCreate(0)
		if err != nil {
			return err
		}
		p.events = append(p.events, ev)
		p.names = append(p.names, "")
	}
	if err := p.drv.EventRecord(p.events[p.used], s); err != nil {
		return err
	}
	p.names[p.used] = name
	p.used++
	return nil
}

// collect waits for the marks and adds their intervals to the totals.
func (p *profiler) collect() error {
	if p.used == 0 {
		return nil
	}
	if err := p.drv.EventSynchronize(p.events[p.used-1]); err != nil {
		return err
	}
	for i := 1; i < p.used; i++ {
		d, err := p.drv.EventElapsed(p.events[i-1], p.events[i])
		if err != nil {
			return err
		}
		p.total[p.names[i]] += d
		p.count[p.names[i]]++
	}
	p.used = 0
	return nil
}

// report writes the totals, largest first, and resets them.
func (p *profiler) report(w io.Writer, what string) {
	names := make([]string, 0, len(p.total))
	var sum time.Duration
	for n, d := range p.total {
		names = append(names, n)
		sum += d
	}
	sort.Slice(names, func(i, j int) bool { return p.total[names[i]] > p.total[names[j]] })
	fmt.Fprintf(w, "gpu profile (%s): %.3f ms in all\n", what, float64(sum)/1e6)
	for _, n := range names {
		fmt.Fprintf(w, "  %-22s %9.3f ms  %5.1f%%  (%d intervals)\n", n, float64(p.total[n])/1e6, 100*float64(p.total[n])/float64(max(sum, 1)), p.count[n])
	}
	clear(p.total)
	clear(p.count)
}

func (p *profiler) destroy() {
	for _, ev := range slices.Clip(p.events) {
		p.drv.EventDestroy(ev)
	}
}

// mark is a no-op unless the engine profiles.
func (e *Engine) mark(name string) error {
	if e.prof == nil {
		return nil
	}
	return e.prof.mark(e.stream, name)
}
