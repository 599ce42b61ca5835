package report

import (
	"fmt"
	"sort"
	"strconv"

	"gonum.org/v1/plot"

	"github.com/longctx/longctx/harness/results"
)

// page holds what every figure of one report shares.
type page struct {
	rows    []results.Row
	lab     labeler
	metrics map[string]string
	opts    Options
}

// buildFigures aggregates rows into every figure of the report, in page
// order. A figure without data carries the reason in Skip.
func buildFigures(rows []results.Row, opts Options) ([]figure, error) {
	pg := page{rows: rows, lab: newLabeler(rows), metrics: chooseMetrics(rows), opts: opts}
	var figs []figure
	for _, build := range []func() (figure, error){
		pg.latency, pg.ttft, pg.throughput, pg.memory, pg.quality, pg.paretoSpeed, pg.paretoMemory, pg.needle,
	} {
		f, err := build()
		if err != nil {
			return nil, err
		}
		figs = append(figs, f)
	}
	return figs, nil
}

func (pg page) latency() (figure, error) {
	lines, t := timingVsContext(pg.rows, pg.lab, "TPOT (ms/token)", func(r *results.Row) *float64 { return r.TPOTms })
	const title = "Time per output token vs context"
	return linesFigure(figure{Name: "latency", Title: title,
		Caption: "Median TPOT over measured (non-warm-up, ok) requests, per configuration at its smallest batch size.", Table: t},
		lines, "no successful requests with a TPOT in these results", pg.opts,
		func() (*plot.Plot, error) { return contextPlot(title, "TPOT (ms/token)", lines, false) })
}

func (pg page) ttft() (figure, error) {
	lines, t := timingVsContext(pg.rows, pg.lab, "TTFT (ms)", func(r *results.Row) *float64 { return r.TTFTms })
	const title = "Time to first token vs context"
	return linesFigure(figure{Name: "ttft", Title: title,
		Caption: "Median TTFT (prefill included) over measured requests, per configuration at its smallest batch size.", Table: t},
		lines, "no successful requests with a TTFT in these results", pg.opts,
		func() (*plot.Plot, error) { return contextPlot(title, "TTFT (ms, log scale)", lines, true) })
}

func (pg page) throughput() (figure, error) {
	lines, t, ctx := throughputVsBatch(pg.rows, pg.lab, pg.opts.ThroughputContext)
	title := "Aggregate decode throughput vs batch size at " + fmtTokens(ctx) + " tokens"
	return linesFigure(figure{Name: "throughput", Title: title,
		Caption: "Decode tokens/s summed over the requests that ran together in one batch; median over full batches. " +
			"Context " + strconv.FormatInt(ctx, 10) + " tokens.", Table: t},
		lines, "no successful batches with a decode throughput in these results", pg.opts,
		func() (*plot.Plot, error) {
			return linearPlot(title, "batch size", "decode tokens/s (sum over batch)", lines, xValues(lines),
				func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) })
		})
}

func (pg page) memory() (figure, error) {
	lines, marks, t := memoryVsContext(pg.rows, pg.lab)
	f := figure{Name: "memory", Title: "Peak memory vs context",
		Caption: "Largest peak memory over measured requests (device high-water mark where measured, else the engine allocator's, " +
			"else KV cache + weights), per configuration at its smallest batch size. A cross at the top marks a context that ran out of memory.",
		Table: t}
	if len(marks) == 0 && !anyPoints(lines) {
		f.Skip = "no memory figures and no out-of-memory rows in these results"
		return f, nil
	}
	p, err := memoryPlot(lines, marks)
	if err != nil {
		return f, fmt.Errorf("memory figure: %w", err)
	}
	f.draw, f.w, f.h = p.Draw, pg.opts.Width, pg.opts.Height
	return f, nil
}

func (pg page) quality() (figure, error) {
	lines, t := qualityVsRatio(pg.rows, pg.metrics)
	const title = "Quality vs KV compression ratio"
	return linesFigure(figure{Name: "quality", Title: title,
		Caption: "Mean score per task over every configuration and context at that ratio (0 = full cache). Metric per task: " +
			"F1 for NarrativeQA and HotpotQA, all-needles recall (string_match_all) for the needle task, else the first score by name.",
		Table: t},
		lines, "no scored requests in these results", pg.opts,
		func() (*plot.Plot, error) {
			return linearPlot(title, "fraction of the KV cache removed", "mean score", lines, xValues(lines), fmtNum)
		})
}

func (pg page) paretoSpeed() (figure, error) {
	return pg.paretoFigure("pareto", "median TPOT (ms)", "median TPOT (ms/token) — lower is better",
		func(r *results.Row) (float64, bool) {
			if r.TPOTms == nil {
				return 0, false
			}
			return *r.TPOTms, true
		}, median)
}

func (pg page) paretoMemory() (figure, error) {
	return pg.paretoFigure("pareto_memory", "peak memory (GiB)", "largest peak memory (GiB) — lower is better",
		func(r *results.Row) (float64, bool) {
			b, _, ok := peakMemory(r)
			return float64(b) / (1 << 30), ok
		}, maxOf)
}

func (pg page) paretoFigure(name, costName, xLabel string, cost func(*results.Row) (float64, bool), agg func([]float64) (float64, bool)) (figure, error) {
	pts, t := pareto(pg.rows, pg.lab, pg.metrics, costName, cost, agg)
	title := "Quality vs " + costName + ": Pareto frontier"
	f := figure{Name: name, Title: title,
		Caption: "One point per configuration: cost over all its measured requests, quality the mean over tasks of its mean score. " +
			"Ringed points are not beaten on both axes by any other configuration.",
		Table: t}
	if len(pts) == 0 {
		f.Skip = "no configuration has both a " + costName + " and a quality score in these results"
		return f, nil
	}
	p, err := paretoPlot(title, xLabel, pts)
	if err != nil {
		return f, fmt.Errorf("%s figure: %w", name, err)
	}
	f.draw, f.w, f.h = p.Draw, pg.opts.Width, pg.opts.Height
	return f, nil
}

func (pg page) needle() (figure, error) {
	grids, t := needleGrids(pg.rows, pg.lab, pg.metrics)
	f := figure{Name: "needle_heatmap", Title: "Needle in a haystack: depth × context length",
		Caption: "Mean needle score (" + pg.metrics["needle"] + ") per needle depth and context length, one panel per configuration.",
		Table:   t}
	if len(grids) == 0 {
		f.Skip = "no needle rows with a depth and a score in these results"
		return f, nil
	}
	d, w, h, err := heatmapTiles(grids, pg.metrics["needle"])
	if err != nil {
		return f, fmt.Errorf("needle figure: %w", err)
	}
	f.draw, f.w, f.h = d, w, h
	return f, nil
}

// xValues returns the distinct x of the lines' points, ascending: the
// ticks of an axis of few discrete values (batch sizes, ratios).
func xValues(lines []line) []float64 {
	seen := map[float64]bool{}
	var out []float64
	for _, l := range lines {
		for _, p := range l.pts {
			if !seen[p.x] {
				seen[p.x] = true
				out = append(out, p.x)
			}
		}
	}
	sort.Float64s(out)
	return out
}
