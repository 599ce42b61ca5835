package report

import (
	"math"
	"slices"
	"testing"

	"github.com/longctx/longctx/harness/results"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []float64
		want float64
		ok   bool
	}{
		{"empty", nil, 0, false},
		{"one", []float64{7}, 7, true},
		{"odd unsorted", []float64{3, 1, 2}, 2, true},
		{"even takes the mean of the middle two", []float64{4, 1, 3, 2}, 2.5, true},
		{"duplicates", []float64{5, 5, 1}, 5, true},
		{"negative", []float64{-1, -3, -2}, -2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.in)
			got, ok := median(in)
			if got != tc.want || ok != tc.ok {
				t.Errorf("median(%v) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
			}
			if !slices.Equal(in, tc.in) {
				t.Errorf("median reordered its input: %v", in)
			}
		})
	}
}

func TestMean(t *testing.T) {
	if _, ok := mean(nil); ok {
		t.Error("mean of nothing reported ok")
	}
	if got, _ := mean([]float64{1, 2, 6}); got != 3 {
		t.Errorf("mean(1, 2, 6) = %v, want 3", got)
	}
}

func TestParetoFrontier(t *testing.T) {
	for _, tc := range []struct {
		name   string
		xs, ys []float64
		want   []int
	}{
		{"empty", nil, nil, nil},
		{"single", []float64{1}, []float64{1}, []int{0}},
		// 1 is cheaper and better than 0; 2 is dearer but better still.
		{"dominated point dropped", []float64{2, 1, 3}, []float64{0.5, 0.6, 0.9}, []int{1, 2}},
		{"trade-off keeps all, ordered by cost", []float64{3, 1, 2}, []float64{0.9, 0.1, 0.5}, []int{1, 2, 0}},
		{"equal points both stay", []float64{1, 1}, []float64{0.5, 0.5}, []int{0, 1}},
		{"same cost, lower quality is dominated", []float64{1, 1}, []float64{0.4, 0.5}, []int{1}},
		{"same quality, higher cost is dominated", []float64{1, 2}, []float64{0.5, 0.5}, []int{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := paretoFrontier(tc.xs, tc.ys); !slices.Equal(got, tc.want) {
				t.Errorf("paretoFrontier(%v, %v) = %v, want %v", tc.xs, tc.ys, got, tc.want)
			}
		})
	}
}

func TestChooseMetrics(t *testing.T) {
	row := func(task string, scores map[string]float64) results.Row {
		return results.Row{Task: task, Status: results.StatusOK, Scores: scores}
	}
	rows := []results.Row{
		row("narrativeqa", map[string]float64{"em": 0, "f1": 0.5}),
		row("hotpotqa", map[string]float64{"em": 0, "qa_f1": 0.5}),
		row("needle", map[string]float64{"string_match_part": 1, "string_match_all": 0}),
		row("gov_report", map[string]float64{"rouge_l": 0.2, "rouge_1": 0.3}),
		// A warm-up row's metric does not count.
		{Task: "qasper", Status: results.StatusOK, Warmup: true, Scores: map[string]float64{"f1": 1}},
	}
	want := map[string]string{
		"narrativeqa": "f1",
		"hotpotqa":    "qa_f1",
		"needle":      "string_match_all",
		"gov_report":  "rouge_1", // no preference: first by name
	}
	got := chooseMetrics(rows)
	if len(got) != len(want) {
		t.Errorf("chooseMetrics = %v, want %v", got, want)
	}
	for task, m := range want {
		if got[task] != m {
			t.Errorf("metric of %s = %q, want %q", task, got[task], m)
		}
	}
}

func TestPeakMemory(t *testing.T) {
	for _, tc := range []struct {
		name       string
		row        results.Row
		want       int64
		wantSource string
		ok         bool
	}{
		{"device first", results.Row{PeakDeviceBytes: ptr[int64](10), PeakEngineBytes: ptr[int64](8)}, 10, memDevice, true},
		{"engine next", results.Row{PeakEngineBytes: ptr[int64](8), KVBytesEnd: ptr[int64](1), WeightsBytes: ptr[int64](2)}, 8, memEngine, true},
		{"kv plus weights", results.Row{KVBytesEnd: ptr[int64](1), WeightsBytes: ptr[int64](2)}, 3, memKV, true},
		{"kv alone is not a peak", results.Row{KVBytesEnd: ptr[int64](1)}, 0, "", false},
		{"nothing", results.Row{}, 0, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, src, ok := peakMemory(&tc.row)
			if got != tc.want || src != tc.wantSource || ok != tc.ok {
				t.Errorf("peakMemory = %d, %q, %v; want %d, %q, %v", got, src, ok, tc.want, tc.wantSource, tc.ok)
			}
		})
	}
}

func TestThroughputContext(t *testing.T) {
	a, b := config{attn: "a"}, config{attn: "b"}
	two := map[int64][]float64{1: {1}, 4: {2}}
	one := map[int64][]float64{1: {1}}
	for _, tc := range []struct {
		name string
		data map[int64]map[config]map[int64][]float64
		want int64
	}{
		{"nothing", nil, 0},
		{"largest where most configurations have two batch sizes",
			map[int64]map[config]map[int64][]float64{
				1024: {a: two, b: two}, 8192: {a: two, b: two}, 32768: {b: two}}, 8192},
		{"single batch sizes: largest with most configurations",
			map[int64]map[config]map[int64][]float64{
				1024: {a: one, b: one}, 32768: {b: one}}, 1024},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := throughputContext(tc.data); got != tc.want {
				t.Errorf("throughputContext = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestFmtTokens(t *testing.T) {
	for in, want := range map[int64]string{512: "512", 1024: "1k", 32768: "32k", 1500: "1500", 0: "0"} {
		if got := fmtTokens(in); got != want {
			t.Errorf("fmtTokens(%d) = %q, want %q", in, got, want)
		}
	}
}

// Non-finite figures are skipped rather than drawn: a NaN would make
// gonum/plot refuse the whole line.
func TestByContextSkipsNonFinite(t *testing.T) {
	rows := []results.Row{
		{Status: results.StatusOK, ContextTokens: 512, BatchSize: 1, TPOTms: ptr(math.NaN())},
		{Status: results.StatusOK, ContextTokens: 512, BatchSize: 1, TPOTms: ptr(2.0)},
		{Status: results.StatusOK, ContextTokens: 0, BatchSize: 1, TPOTms: ptr(3.0)},
	}
	lines, _ := timingVsContext(rows, labeler{}, "TPOT", func(r *results.Row) *float64 { return r.TPOTms })
	if len(lines) != 1 || len(lines[0].pts) != 1 || lines[0].pts[0] != (point{512, 2}) {
		t.Errorf("lines = %+v, want one point (512, 2)", lines)
	}
}

// Rows of the CPU engine in fp32 and in bf16 numerics are different lines,
// labelled apart; the CUDA engine's rows (bf16 always) keep their label.
func TestConfigOfNumerics(t *testing.T) {
	row := func(backend string, numerics *string) *results.Row {
		return &results.Row{Model: "m", Backend: backend, AttnPlugin: "builtin-eager", KVPlugin: "none", Numerics: numerics}
	}
	fp32, bf16 := results.NumericsFP32, results.NumericsBF16
	tests := []struct {
		row  *results.Row
		want string
	}{
		{row(results.BackendCPU, nil), "builtin-eager+none cpu"},
		{row(results.BackendCPU, &fp32), "builtin-eager+none cpu"},
		{row(results.BackendCPU, &bf16), "builtin-eager+none cpu-bf16"},
		{row(results.BackendCUDA, &bf16), "builtin-eager+none cuda"},
	}
	for _, tc := range tests {
		if got := (labeler{}).label(configOf(tc.row)); got != tc.want {
			t.Errorf("label of backend %s, numerics %v = %q, want %q", tc.row.Backend, tc.row.Numerics, got, tc.want)
		}
	}
}
