package report

import (
	"fmt"
	"sort"
	"time"

	"github.com/longctx/longctx/harness/results"
)

// The fixture is a small sweep shaped like a real one: eager attention with
// the full cache, which runs out of memory at 16k and 32k tokens, and flash
// attention with L2 compression at ratio 0.5, which fits everywhere; two
// batch sizes; a QA task and the needle task. Every figure is a formula of
// the cell, so the tests can recompute what the tables must show.

const gib = 1 << 30

var (
	fixtureContexts = []int64{512, 1024, 2048, 4096, 8192, 16384, 32768}
	fixtureBatches  = []int64{1, 4}
	fixtureDepths   = []float64{0, 0.25, 0.5, 0.75, 1}
	fixtureRepeats  = 3
)

type fixtureConfig struct {
	attn, kv string
	ratio    *float64
}

func ptr[T any](v T) *T { return &v }

var fixtureConfigs = []fixtureConfig{
	{attn: "eager", kv: "full"},
	{attn: "flash", kv: "l2", ratio: ptr(0.5)},
}

func (c fixtureConfig) ooms(ctx int64) bool { return c.attn == "eager" && ctx >= 16384 }

// fixtureTPOT is the median TPOT (ms) of a cell; its requests spread one
// millisecond either side of it, one repeat each.
func fixtureTPOT(c fixtureConfig, ctx int64) float64 {
	base := 20.0
	if c.attn == "eager" {
		base = 30
	}
	return base + float64(ctx)/1024
}

func fixtureTTFT(c fixtureConfig, ctx int64) float64 {
	k := float64(ctx) / 1024
	if c.attn == "eager" {
		return 40 * k * k
	}
	return 10 * k * k
}

// fixturePeak is the device high-water mark: 16 GiB of weights, the KV
// cache (128 KiB a token, halved by compression), and for eager attention
// the full score matrix.
func fixturePeak(c fixtureConfig, ctx, batch int64) int64 {
	kv := ctx * batch * 128 << 10
	if c.ratio != nil {
		kv = int64(float64(kv) * (1 - *c.ratio))
	}
	peak := 16*int64(gib) + kv
	if c.attn == "eager" {
		peak += ctx * ctx * batch * 32
	}
	return peak
}

// fixtureNeedle: compression drops the middle of long contexts.
func fixtureNeedle(c fixtureConfig, ctx int64, depth float64) float64 {
	if c.ratio != nil && ctx >= 8192 && depth > 0.2 && depth < 0.8 {
		return 0
	}
	return 1
}

// fixtureF1 spreads around 0.4 (full cache) or 0.3 (compressed) so that
// the mean is exactly that.
func fixtureF1(c fixtureConfig, repeat int) float64 {
	base := 0.4
	if c.ratio != nil {
		base = 0.3
	}
	return base + 0.1*float64(repeat-1)
}

func fixtureRows(model string) map[string][]results.Row {
	cells := map[string][]results.Row{}
	ts := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range fixtureConfigs {
		for _, ctx := range fixtureContexts {
			for _, batch := range fixtureBatches {
				for _, task := range []string{"narrativeqa", "needle"} {
					id := fmt.Sprintf("%s+%s-%s-%d-b%d", c.attn, c.kv, task, ctx, batch)
					base := results.Row{
						RunID: "run1", CellID: id, Timestamp: ts, HarnessVersion: "test", Model: model,
						Family: "llama", Synthetic: true, Backend: results.BackendCUDA, DeviceName: "NVIDIA H100 80GB HBM3",
						AttnPlugin: c.attn, AttnVersion: "1", AttnOptions: "{}", KVPlugin: c.kv, KVVersion: "1",
						KVOptions: "{}", KVRatio: c.ratio, Task: task, ContextTokens: ctx, BatchSize: batch,
						PromptTokens: ctx, OutputTokens: 32,
					}
					var rows []results.Row
					// A warm-up request with absurd figures: none of them may
					// reach a plot.
					w := request(base, c, ctx, batch, 0, 0, 0)
					w.Warmup = true
					if w.Status == results.StatusOK {
						w.TPOTms, w.TTFTms, w.DecodeTokS = ptr(1e6), ptr(1e6), ptr(1e6)
						w.PeakDeviceBytes = ptr(int64(1000 * gib))
					}
					rows = append(rows, w)
					n := int(batch)
					if task == "needle" {
						n = len(fixtureDepths)
					}
					for rep := range fixtureRepeats {
						for j := range n {
							r := request(base, c, ctx, batch, rep, int64(j)/batch, j)
							r.SampleID = fmt.Sprintf("s%d", j)
							if task == "needle" {
								r.Depth = ptr(fixtureDepths[j])
								if r.Status == results.StatusOK {
									s := fixtureNeedle(c, ctx, fixtureDepths[j])
									r.Scores = map[string]float64{"string_match_part": 1, "string_match_all": s}
								}
							} else if r.Status == results.StatusOK {
								r.Scores = map[string]float64{"em": 0, "f1": fixtureF1(c, rep)}
							}
							rows = append(rows, r)
						}
					}
					cells[id] = rows
				}
			}
		}
	}
	return cells
}

func request(base results.Row, c fixtureConfig, ctx, batch int64, repeat int, batchIndex int64, j int) results.Row {
	r := base
	r.RepeatIndex = int64(repeat)
	r.BatchIndex = batchIndex
	if c.ooms(ctx) {
		r.Status = results.StatusOOM
		r.Error = ptr("CUDA out of memory while allocating the KV cache")
		return r
	}
	r.Status = results.StatusOK
	tpot := fixtureTPOT(c, ctx) + float64(repeat-1)
	r.TPOTms = ptr(tpot)
	r.TTFTms = ptr(fixtureTTFT(c, ctx))
	r.E2Ems = ptr(fixtureTTFT(c, ctx) + 31*tpot)
	r.DecodeTokS = ptr(1000 / tpot)
	// Requests of one batch peak together; the figure varies by less
	// than the batch's own peak so the maximum is the formula.
	r.PeakDeviceBytes = ptr(fixturePeak(c, ctx, batch) - int64(j)*4096)
	return r
}

func flatten(cells map[string][]results.Row) []results.Row {
	var all []results.Row
	for _, id := range sortedCellIDs(cells) {
		all = append(all, cells[id]...)
	}
	return all
}

func sortedCellIDs(cells map[string][]results.Row) []string {
	ids := make([]string, 0, len(cells))
	for id := range cells {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}
