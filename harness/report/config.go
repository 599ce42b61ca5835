package report

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/longctx/longctx/harness/results"
)

// config is what one line of a plot stands for: everything a user varies
// between runs except the workload (task, context, batch).
type config struct {
	model, backend, attn, kv string
	ratio                    float64
}

func configOf(r *results.Row) config {
	backend := r.Backend
	if backend == results.BackendCPU && r.Numerics != nil && *r.Numerics == results.NumericsBF16 {
		backend += "-bf16" // the CPU engine in bf16 numerics: a line of its own
	}
	return config{model: r.Model, backend: backend, attn: r.AttnPlugin, kv: r.KVPlugin, ratio: kvRatio(r)}
}

// kvRatio is the fraction of the KV cache removed; a row without one (the
// full cache) removed nothing.
func kvRatio(r *results.Row) float64 {
	if r.KVRatio == nil || !finite(*r.KVRatio) {
		return 0
	}
	return *r.KVRatio
}

// labeler names configurations. The model appears only when the results
// hold more than one, so that single-model legends stay short.
type labeler struct{ withModel bool }

func newLabeler(rows []results.Row) labeler {
	models := map[string]bool{}
	for i := range rows {
		models[rows[i].Model] = true
	}
	return labeler{withModel: len(models) > 1}
}

func (l labeler) label(c config) string {
	s := c.attn + "+" + c.kv
	if c.ratio > 0 {
		s += "@" + strconv.FormatFloat(c.ratio, 'g', 3, 64)
	}
	s += " " + c.backend
	if l.withModel {
		s = c.model + " " + s
	}
	return s
}

// sortedConfigs returns the keys of m in a stable order, so that colours
// and legend order do not change between runs of the report.
func sortedConfigs[V any](m map[config]V) []config {
	cs := make([]config, 0, len(m))
	for c := range m {
		cs = append(cs, c)
	}
	sort.Slice(cs, func(i, j int) bool {
		a, b := cs[i], cs[j]
		if a.model != b.model {
			return a.model < b.model
		}
		if a.backend != b.backend {
			return a.backend < b.backend
		}
		if a.attn != b.attn {
			return a.attn < b.attn
		}
		if a.kv != b.kv {
			return a.kv < b.kv
		}
		return a.ratio < b.ratio
	})
	return cs
}

// measured reports whether a row is a measurement: warm-up requests only
// prime caches and kernels, and only successful requests have timings.
func measured(r *results.Row) bool {
	return !r.Warmup && r.Status == results.StatusOK
}

// Preferred quality metric per task. QA tasks are scored by token F1 (the
// LongBench convention for NarrativeQA and HotpotQA); the needle task by
// whether every needle value was recalled.
var preferredMetrics = map[string][]string{
	"narrativeqa": {"f1", "qa_f1"},
	"hotpotqa":    {"f1", "qa_f1"},
	"needle":      {"string_match_all", "needle"},
}

// chooseMetrics picks one score name per task: the first preferred name
// that some row of the task carries, otherwise the alphabetically first
// score name of the task, so that every row of a task is judged alike.
func chooseMetrics(rows []results.Row) map[string]string {
	seen := map[string]map[string]bool{}
	for i := range rows {
		r := &rows[i]
		if !measured(r) {
			continue
		}
		for name, v := range r.Scores {
			if !finite(v) {
				continue
			}
			if seen[r.Task] == nil {
				seen[r.Task] = map[string]bool{}
			}
			seen[r.Task][name] = true
		}
	}
	chosen := map[string]string{}
	for task, names := range seen {
		for _, p := range preferredMetrics[strings.ToLower(task)] {
			if names[p] {
				chosen[task] = p
				break
			}
		}
		if _, ok := chosen[task]; ok {
			continue
		}
		all := make([]string, 0, len(names))
		for n := range names {
			all = append(all, n)
		}
		sort.Strings(all)
		chosen[task] = all[0]
	}
	return chosen
}

// quality returns the row's score under its task's chosen metric.
func quality(r *results.Row, metrics map[string]string) (float64, bool) {
	name, ok := metrics[r.Task]
	if !ok {
		return 0, false
	}
	v, ok := r.Scores[name]
	if !ok || !finite(v) {
		return 0, false
	}
	return v, true
}

// Sources of a row's peak memory, best first.
const (
	memDevice = "peak_device_bytes"
	memEngine = "peak_engine_bytes"
	memKV     = "kv_bytes_end+weights_bytes"
)

// peakMemory returns the best available peak memory figure of a row and
// which column it came from. The device high-water mark includes
// everything the process allocated; the engine allocator's own high-water
// excludes the driver and library overhead; KV plus weights is a lower
// bound for backends that measure neither.
func peakMemory(r *results.Row) (bytes int64, source string, ok bool) {
	switch {
	case r.PeakDeviceBytes != nil:
		return *r.PeakDeviceBytes, memDevice, true
	case r.PeakEngineBytes != nil:
		return *r.PeakEngineBytes, memEngine, true
	case r.KVBytesEnd != nil && r.WeightsBytes != nil:
		return *r.KVBytesEnd + *r.WeightsBytes, memKV, true
	}
	return 0, "", false
}

// formatting of table cells and axis labels

func fmtNum(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }

func fmtGiB(b float64) string { return strconv.FormatFloat(b/(1<<30), 'f', 2, 64) }

// fmtTokens writes a token count the way context lengths are spoken of:
// 512, 1k, 32k (k = 1024).
func fmtTokens(n int64) string {
	if n >= 1024 && n%1024 == 0 {
		return fmt.Sprintf("%dk", n/1024)
	}
	return strconv.FormatInt(n, 10)
}
