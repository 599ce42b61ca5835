package report

import (
	"fmt"
	"math"
	"sort"
	"strconv"

	"github.com/longctx/longctx/harness/results"
)

// point and line are the data of a line plot, independent of the plotting
// library so that the aggregation can be tested on its own.
type point struct{ x, y float64 }

type line struct {
	label string
	pts   []point // ascending x
}

// table is the numbers behind a figure, as shown under it in index.html.
type table struct {
	Columns []string
	Rows    [][]string
}

// batchSeries holds, per configuration, the values of one measure by
// context length at the configuration's smallest batch size.
type batchSeries struct {
	batch int64
	byCtx map[int64][]float64
}

// byContext collects val over measured rows per configuration and context.
// Latency and memory depend on the batch size as much as on the context, so
// each configuration is drawn at its smallest batch (usually 1) rather than
// mixing batches into one median.
func byContext(rows []results.Row, val func(*results.Row) (float64, bool)) map[config]*batchSeries {
	out := map[config]*batchSeries{}
	for i := range rows {
		r := &rows[i]
		if !measured(r) || r.ContextTokens <= 0 {
			continue
		}
		v, ok := val(r)
		if !ok || !finite(v) {
			continue
		}
		c := configOf(r)
		s := out[c]
		if s == nil || r.BatchSize < s.batch {
			s = &batchSeries{batch: r.BatchSize, byCtx: map[int64][]float64{}}
			out[c] = s
		}
		if r.BatchSize == s.batch {
			s.byCtx[r.ContextTokens] = append(s.byCtx[r.ContextTokens], v)
		}
	}
	return out
}

func sortedKeys[V any](m map[int64]V) []int64 {
	ks := make([]int64, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i] < ks[j] })
	return ks
}

// timingVsContext builds the median of a timing per configuration and
// context: TPOT or TTFT.
func timingVsContext(rows []results.Row, lab labeler, column string, val func(*results.Row) *float64) ([]line, table) {
	series := byContext(rows, func(r *results.Row) (float64, bool) {
		p := val(r)
		if p == nil {
			return 0, false
		}
		return *p, true
	})
	t := table{Columns: []string{"configuration", "batch", "context", "requests", "median " + column}}
	var lines []line
	for _, c := range sortedConfigs(series) {
		s := series[c]
		l := line{label: lab.label(c)}
		for _, ctx := range sortedKeys(s.byCtx) {
			m, _ := median(s.byCtx[ctx])
			l.pts = append(l.pts, point{float64(ctx), m})
			t.Rows = append(t.Rows, []string{l.label, strconv.FormatInt(s.batch, 10), strconv.FormatInt(ctx, 10),
				strconv.Itoa(len(s.byCtx[ctx])), fmtNum(m)})
		}
		lines = append(lines, l)
	}
	return lines, t
}

// oomMark is a context at which a configuration ran out of memory.
type oomMark struct {
	label string
	ctx   int64
	batch int64
}

// memoryVsContext builds the peak memory (GiB) per configuration and
// context, the maximum over requests since a peak is a high-water mark,
// and the contexts that ran out of memory at the batch size drawn.
func memoryVsContext(rows []results.Row, lab labeler) ([]line, []oomMark, table) {
	sources := map[config]map[string]bool{}
	series := byContext(rows, func(r *results.Row) (float64, bool) {
		b, src, ok := peakMemory(r)
		if ok {
			c := configOf(r)
			if sources[c] == nil {
				sources[c] = map[string]bool{}
			}
			sources[c][src] = true
		}
		return float64(b), ok
	})
	// An out-of-memory request, warm-up or not, shows that the context
	// does not fit: the measured requests of that cell would fail alike.
	type oomKey struct {
		c     config
		ctx   int64
		batch int64
	}
	ooms := map[oomKey]bool{}
	oomBatch := map[config]int64{}
	for i := range rows {
		r := &rows[i]
		if r.Status != results.StatusOOM || r.ContextTokens <= 0 {
			continue
		}
		c := configOf(r)
		ooms[oomKey{c, r.ContextTokens, r.BatchSize}] = true
		if b, ok := oomBatch[c]; !ok || r.BatchSize < b {
			oomBatch[c] = r.BatchSize
		}
	}
	// A configuration that never fits has no series; draw its OOMs at its
	// smallest batch.
	for c, b := range oomBatch {
		if series[c] == nil {
			series[c] = &batchSeries{batch: b, byCtx: map[int64][]float64{}}
		}
	}
	t := table{Columns: []string{"configuration", "batch", "context", "peak GiB", "source"}}
	var lines []line
	var marks []oomMark
	for _, c := range sortedConfigs(series) {
		s := series[c]
		l := line{label: lab.label(c)}
		var srcs []string
		for src := range sources[c] {
			srcs = append(srcs, src)
		}
		sort.Strings(srcs)
		src := fmt.Sprint(srcs)
		ctxs := map[int64]bool{}
		for ctx := range s.byCtx {
			ctxs[ctx] = true
		}
		for k := range ooms {
			if k.c == c && k.batch == s.batch {
				ctxs[k.ctx] = true
			}
		}
		for _, ctx := range sortedKeys(ctxs) {
			if vs := s.byCtx[ctx]; len(vs) > 0 {
				peak := math.Inf(-1)
				for _, v := range vs {
					peak = math.Max(peak, v)
				}
				l.pts = append(l.pts, point{float64(ctx), peak / (1 << 30)})
				t.Rows = append(t.Rows, []string{l.label, strconv.FormatInt(s.batch, 10), strconv.FormatInt(ctx, 10), fmtGiB(peak), src})
			}
			if ooms[oomKey{c, ctx, s.batch}] {
				marks = append(marks, oomMark{label: l.label, ctx: ctx, batch: s.batch})
				t.Rows = append(t.Rows, []string{l.label, strconv.FormatInt(s.batch, 10), strconv.FormatInt(ctx, 10), "OOM", ""})
			}
		}
		lines = append(lines, l)
	}
	return lines, marks, t
}

// throughputVsBatch builds the aggregate decode throughput per
// configuration and batch size at one context length. Requests that ran
// together (same cell, repeat and batch index) add up; the median over
// those batches is drawn. Batches with a failed request are left out, as
// their sum would understate what the batch size can do.
//
// ctx 0 picks the context: the largest one at which some configuration has
// throughput at two or more batch sizes, or failing that the largest with
// any throughput at all.
func throughputVsBatch(rows []results.Row, lab labeler, ctx int64) ([]line, table, int64) {
	type groupKey struct {
		cell          string
		repeat, batch int64
	}
	type group struct {
		c        config
		ctx      int64
		size     int64
		requests int64
		sum      float64
		failed   bool
	}
	groups := map[groupKey]*group{}
	for i := range rows {
		r := &rows[i]
		if r.Warmup || r.ContextTokens <= 0 || r.BatchSize <= 0 {
			continue
		}
		k := groupKey{r.CellID, r.RepeatIndex, r.BatchIndex}
		g := groups[k]
		if g == nil {
			g = &group{c: configOf(r), ctx: r.ContextTokens, size: r.BatchSize}
			groups[k] = g
		}
		if r.Status != results.StatusOK || r.DecodeTokS == nil || !finite(*r.DecodeTokS) {
			g.failed = true
			continue
		}
		g.sum += *r.DecodeTokS
		g.requests++
	}
	// A partial last batch (fewer samples left than the batch size) runs
	// fewer requests and would understate the batch size; it counts only
	// where no full batch was measured.
	type sizeKey struct {
		c         config
		ctx, size int64
	}
	hasFull := map[sizeKey]bool{}
	for _, g := range groups {
		if !g.failed && g.requests == g.size {
			hasFull[sizeKey{g.c, g.ctx, g.size}] = true
		}
	}
	// per context, per configuration, per batch size: the batch sums
	data := map[int64]map[config]map[int64][]float64{}
	for _, g := range groups {
		if g.failed || g.requests < g.size && hasFull[sizeKey{g.c, g.ctx, g.size}] {
			continue
		}
		if data[g.ctx] == nil {
			data[g.ctx] = map[config]map[int64][]float64{}
		}
		if data[g.ctx][g.c] == nil {
			data[g.ctx][g.c] = map[int64][]float64{}
		}
		data[g.ctx][g.c][g.size] = append(data[g.ctx][g.c][g.size], g.sum)
	}
	if ctx == 0 {
		ctx = throughputContext(data)
	}
	t := table{Columns: []string{"configuration", "context", "batch", "batches", "median aggregate decode tok/s"}}
	var lines []line
	for _, c := range sortedConfigs(data[ctx]) {
		byBatch := data[ctx][c]
		l := line{label: lab.label(c)}
		for _, b := range sortedKeys(byBatch) {
			m, _ := median(byBatch[b])
			l.pts = append(l.pts, point{float64(b), m})
			t.Rows = append(t.Rows, []string{l.label, strconv.FormatInt(ctx, 10), strconv.FormatInt(b, 10),
				strconv.Itoa(len(byBatch[b])), fmtNum(m)})
		}
		lines = append(lines, l)
	}
	return lines, t, ctx
}

// throughputContext picks the context at which throughput against batch
// size compares the most configurations: the one where most
// configurations were measured at two or more batch sizes, then where most
// were measured at all, the larger context on a tie, as long contexts are
// what the harness is about.
func throughputContext(data map[int64]map[config]map[int64][]float64) int64 {
	var best, bestMulti, bestAny int64
	for _, x := range sortedKeys(data) {
		var multi, any int64
		for _, byBatch := range data[x] {
			any++
			if len(byBatch) >= 2 {
				multi++
			}
		}
		if multi > bestMulti || multi == bestMulti && any >= bestAny {
			best, bestMulti, bestAny = x, multi, any
		}
	}
	return best
}

// qualityVsRatio builds the mean quality score per task and KV compression
// ratio, over every configuration and context measured.
func qualityVsRatio(rows []results.Row, metrics map[string]string) ([]line, table) {
	byTask := map[string]map[float64][]float64{}
	for i := range rows {
		r := &rows[i]
		if !measured(r) {
			continue
		}
		q, ok := quality(r, metrics)
		if !ok {
			continue
		}
		if byTask[r.Task] == nil {
			byTask[r.Task] = map[float64][]float64{}
		}
		byTask[r.Task][kvRatio(r)] = append(byTask[r.Task][kvRatio(r)], q)
	}
	tasks := make([]string, 0, len(byTask))
	for t := range byTask {
		tasks = append(tasks, t)
	}
	sort.Strings(tasks)
	t := table{Columns: []string{"task", "metric", "kv ratio", "requests", "mean score"}}
	var lines []line
	for _, task := range tasks {
		l := line{label: task + " (" + metrics[task] + ")"}
		ratios := make([]float64, 0, len(byTask[task]))
		for ratio := range byTask[task] {
			ratios = append(ratios, ratio)
		}
		sort.Float64s(ratios)
		for _, ratio := range ratios {
			m, _ := mean(byTask[task][ratio])
			l.pts = append(l.pts, point{ratio, m})
			t.Rows = append(t.Rows, []string{task, metrics[task], fmtNum(ratio), strconv.Itoa(len(byTask[task][ratio])), fmtNum(m)})
		}
		lines = append(lines, l)
	}
	return lines, t
}

// paretoPoint is one configuration's cost and quality.
type paretoPoint struct {
	label         string
	cost, quality float64
	frontier      bool
}

// configQuality is a configuration's quality: the mean over tasks of its
// mean score per task, so that a task with many requests does not outweigh
// the others.
func configQuality(rows []results.Row, metrics map[string]string) map[config]float64 {
	per := map[config]map[string][]float64{}
	for i := range rows {
		r := &rows[i]
		if !measured(r) {
			continue
		}
		q, ok := quality(r, metrics)
		if !ok {
			continue
		}
		c := configOf(r)
		if per[c] == nil {
			per[c] = map[string][]float64{}
		}
		per[c][r.Task] = append(per[c][r.Task], q)
	}
	out := map[config]float64{}
	for c, byTask := range per {
		var taskMeans []float64
		for _, qs := range byTask {
			m, _ := mean(qs)
			taskMeans = append(taskMeans, m)
		}
		out[c], _ = mean(taskMeans)
	}
	return out
}

// pareto pairs each configuration's cost (median TPOT, or the largest peak
// memory) over all its measured requests with its quality, and marks the
// configurations no other one beats on both.
func pareto(rows []results.Row, lab labeler, metrics map[string]string, costName string, cost func(*results.Row) (float64, bool), agg func([]float64) (float64, bool)) ([]paretoPoint, table) {
	costs := map[config][]float64{}
	for i := range rows {
		r := &rows[i]
		if !measured(r) {
			continue
		}
		if v, ok := cost(r); ok && finite(v) {
			costs[configOf(r)] = append(costs[configOf(r)], v)
		}
	}
	qual := configQuality(rows, metrics)
	var pts []paretoPoint
	for _, c := range sortedConfigs(costs) {
		q, ok := qual[c]
		if !ok {
			continue
		}
		v, _ := agg(costs[c])
		pts = append(pts, paretoPoint{label: lab.label(c), cost: v, quality: q})
	}
	xs := make([]float64, len(pts))
	ys := make([]float64, len(pts))
	for i, p := range pts {
		xs[i], ys[i] = p.cost, p.quality
	}
	for _, i := range paretoFrontier(xs, ys) {
		pts[i].frontier = true
	}
	t := table{Columns: []string{"configuration", costName, "mean quality", "on frontier"}}
	for _, p := range pts {
		on := "no"
		if p.frontier {
			on = "yes"
		}
		t.Rows = append(t.Rows, []string{p.label, fmtNum(p.cost), fmtNum(p.quality), on})
	}
	return pts, t
}

func maxOf(vs []float64) (float64, bool) {
	if len(vs) == 0 {
		return 0, false
	}
	m := vs[0]
	for _, v := range vs[1:] {
		m = math.Max(m, v)
	}
	return m, true
}

// needleGrid is the mean needle score of one configuration by depth (rows)
// and context length (columns); NaN where nothing was measured.
type needleGrid struct {
	label  string
	ctxs   []int64
	depths []float64
	z      [][]float64 // z[depth][ctx]
	oom    []bool      // oom[ctx]: the configuration ran out of memory there
}

// needleGrids builds one grid per configuration from the needle rows, the
// measured rows of the task "needle" that carry a depth and a score.
func needleGrids(rows []results.Row, lab labeler, metrics map[string]string) ([]needleGrid, table) {
	type cellKey struct {
		ctx   int64
		depth float64
	}
	per := map[config]map[cellKey][]float64{}
	ctxSet := map[int64]bool{}
	depthSet := map[float64]bool{}
	oomAt := map[config]map[int64]bool{}
	for i := range rows {
		r := &rows[i]
		if r.Task == "needle" && r.Status == results.StatusOOM && r.ContextTokens > 0 {
			c := configOf(r)
			if oomAt[c] == nil {
				oomAt[c] = map[int64]bool{}
			}
			oomAt[c][r.ContextTokens] = true
		}
		if !measured(r) || r.Task != "needle" || r.Depth == nil || !finite(*r.Depth) || r.ContextTokens <= 0 {
			continue
		}
		q, ok := quality(r, metrics)
		if !ok {
			continue
		}
		c := configOf(r)
		if per[c] == nil {
			per[c] = map[cellKey][]float64{}
		}
		k := cellKey{r.ContextTokens, *r.Depth}
		per[c][k] = append(per[c][k], q)
		ctxSet[r.ContextTokens] = true
		depthSet[*r.Depth] = true
	}
	// An out-of-memory context gets its column, marked, when some
	// configuration measured needles at all.
	for c, at := range oomAt {
		if per[c] == nil {
			continue
		}
		for ctx := range at {
			ctxSet[ctx] = true
		}
	}
	ctxs := sortedKeys(ctxSet)
	depths := make([]float64, 0, len(depthSet))
	for d := range depthSet {
		depths = append(depths, d)
	}
	sort.Float64s(depths)
	t := table{Columns: []string{"configuration", "context", "depth", "requests", "mean " + metrics["needle"]}}
	var grids []needleGrid
	for _, c := range sortedConfigs(per) {
		g := needleGrid{label: lab.label(c), ctxs: ctxs, depths: depths, oom: make([]bool, len(ctxs))}
		for j, ctx := range ctxs {
			g.oom[j] = oomAt[c][ctx]
		}
		for _, d := range depths {
			zrow := make([]float64, len(ctxs))
			for j, ctx := range ctxs {
				zrow[j] = math.NaN()
				if qs := per[c][cellKey{ctx, d}]; len(qs) > 0 {
					zrow[j], _ = mean(qs)
					t.Rows = append(t.Rows, []string{g.label, strconv.FormatInt(ctx, 10), fmtNum(d), strconv.Itoa(len(qs)), fmtNum(zrow[j])})
				}
			}
			g.z = append(g.z, zrow)
		}
		grids = append(grids, g)
	}
	return grids, t
}
