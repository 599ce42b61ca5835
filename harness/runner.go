package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/longctx/longctx/datasets"
	"github.com/longctx/longctx/datasets/needle"
	"github.com/longctx/longctx/datasets/prompt"
	"github.com/longctx/longctx/engine/gpu"
	"github.com/longctx/longctx/engine/model"
	"github.com/longctx/longctx/evaluators/contract"
	evalhost "github.com/longctx/longctx/evaluators/host"
	"github.com/longctx/longctx/harness/results"
	"github.com/longctx/longctx/harness/sweep"
	"github.com/longctx/longctx/plugins/sdk"
)

func orName(ref, def string) string {
	if ref == "" {
		return def
	}
	ref = strings.TrimRight(ref, `/\`)
	if i := strings.LastIndexAny(ref, `/\`); i >= 0 {
		ref = ref[i+1:]
	}
	return ref
}

// runEnv is what every cell of one invocation shares.
type runEnv struct {
	out       string
	runID     string
	version   string
	log       io.Writer
	pluginLog string
	memLimit  int64
	threads   int
	// chunk is the prefill chunk (0: whole prompt), a run parameter kept
	// out of the cell ID like the thread count.
	chunk int
	// noGraph runs GPU decode steps launch by launch (--cuda-graph=false).
	noGraph bool
	// gpuProfile prints where GPU time goes (--gpu-profile).
	gpuProfile bool
	// memLimitFlag is --mem-limit as given, passed on to cell processes.
	memLimitFlag string
	evaluator    func(ctx context.Context) (*evalhost.Host, error)
	closeEval    func(ctx context.Context)
}

// taskEvaluators are the scorers each quality task's rows get.
var taskEvaluators = map[string][]string{
	"narrativeqa": {"longbench_qa_f1", "rouge"},
	"hotpotqa":    {"hotpotqa"},
	"needle":      {"needle"},
}

// request is one prompt of a cell.
type request struct {
	ids        []int
	sampleID   string
	depth      *float64
	references []string
	maxNew     int
}

// runCell runs one cell and returns its rows. Failures of the cell's own
// parts (a plugin that will not start, a model that does not fit, a
// crashing evaluator) become rows with status oom or error; the error
// return is kept for what makes rows impossible (a cancelled context).
// baseRow is the run configuration every row of cell c repeats, as known
// before anything is loaded (the CPU backend's; runCell corrects it for
// the GPU).
func baseRow(env *runEnv, c sweep.Cell) results.Row {
	return results.Row{
		RunID: env.runID, CellID: c.ID(), Timestamp: time.Now().UTC(),
		HarnessVersion: env.version, GitCommit: gitCommit(),
		Model: c.Model, Backend: results.BackendCPU, DeviceName: cpuName(),
		AttnPlugin: orName(c.Attn, "builtin-eager"), AttnOptions: "{}", KVPlugin: orName(c.KV, "none"), KVOptions: "{}",
		Task: c.Task, ContextTokens: int64(c.Context), BatchSize: int64(c.Batch), Seed: c.Seed,
	}
}

func runCell(ctx context.Context, env *runEnv, c sweep.Cell) []results.Row {
	base := baseRow(env, c)
	fail := func(err error) []results.Row {
		r := base
		r.Status = results.StatusError
		if errors.Is(err, model.ErrOutOfMemory) {
			r.Status = results.StatusOOM
		}
		msg := err.Error()
		r.Error = &msg
		return []results.Row{r}
	}

	flags := pluginFlags{attn: c.Attn, kv: c.KV, attnOpts: c.AttnOpts, kvOpts: c.KVOpts, logLevel: env.pluginLog}
	device := sdk.CPU
	onGPU := c.Backend == backendCUDA
	if onGPU {
		// The GPU has no built-in attention: the eager plugin's kernels are
		// the default there.
		if flags.attn == "" {
			flags.attn = "eager"
			base.AttnPlugin = "eager"
		}
		base.Backend, base.DeviceName = results.BackendCUDA, "cuda"
		d, info, err := gpuDevice(0)
		if err != nil {
			return fail(err)
		}
		device = d
		base.DeviceName = info.Name
	}
	plugins, err := openPlugins(ctx, env.log, flags, c.Model, device)
	if err != nil {
		return fail(err)
	}
	defer plugins.Close()
	if a, k := plugins.records(); a != nil || k != nil {
		if a != nil {
			base.AttnVersion, base.AttnOptions = a.Version, jsonText(a.Options)
		}
		if k != nil {
			base.KVVersion, base.KVOptions = k.Version, jsonText(k.Options)
			if r, err := strconv.ParseFloat(k.Options["ratio"], 64); err == nil {
				base.KVRatio = &r
			}
		}
	}
	var lm *loadedModel
	if onGPU {
		lm, err = loadGPUModel(c.Model, "", plugins, gpu.Options{MemLimit: env.memLimit, Seed: uint64(c.Seed), NoGraph: env.noGraph, Profile: env.gpuProfile, Log: env.log})
	} else {
		loadOpts := model.LoadOptions{Seed: uint64(c.Seed), Workers: env.threads, MemoryLimit: env.memLimit}
		if c.Numerics != "" {
			if loadOpts.Numerics, err = model.ParseNumerics(c.Numerics); err != nil {
				return fail(fmt.Errorf("cell numerics: %w", err))
			}
		}
		plugins.loadOptions(&loadOpts)
		lm, err = loadModel(c.Model, "", loadOpts)
	}
	if err != nil {
		return fail(err)
	}
	defer lm.Close()
	if onGPU {
		drv := lm.GPU.DriverDescription()
		base.Driver = &drv
	}
	info := lm.Info()
	base.Family, base.Synthetic = string(info.Family), info.Synthetic
	numerics := info.Numerics.String()
	base.Numerics = &numerics
	weights := info.WeightBytes
	base.WeightsBytes = &weights

	reqs, err := buildRequests(c, lm, env.log)
	if err != nil {
		return fail(err)
	}
	cr := &cellRun{c: c, lm: lm, plugins: plugins, base: base, chunk: env.chunk}
	var rows []results.Row
	for w := 0; w < c.Warmup; w++ {
		rows = append(rows, cr.runBatches(ctx, reqs[:min(c.Batch, len(reqs))], 0, true)...)
	}
	for rep := 0; rep < max(c.Repeat, 1); rep++ {
		rows = append(rows, cr.runBatches(ctx, reqs, rep, false)...)
	}
	if evs := taskEvaluators[c.Task]; len(evs) > 0 {
		if err := scoreRows(ctx, env, evs, rows); err != nil {
			msg := err.Error()
			for i := range rows {
				if rows[i].Status == results.StatusOK {
					rows[i].Status, rows[i].Error = results.StatusError, &msg
				}
			}
		}
	}
	return rows
}

func buildRequests(c sweep.Cell, lm *loadedModel, log io.Writer) ([]request, error) {
	vocab := lm.Config().VocabSize
	if c.Task == "synthetic" {
		// Random ids of exactly the context length: speed and memory only.
		reqs := make([]request, c.Batch)
		for i := range reqs {
			rng := rand.New(rand.NewPCG(uint64(c.Seed), uint64(i)))
			ids := make([]int, c.Context)
			for j := range ids {
				ids[j] = 3 + rng.IntN(vocab-3)
			}
			reqs[i] = request{ids: ids, sampleID: fmt.Sprintf("synthetic-%d", i), maxNew: c.MaxNewTokens}
		}
		return reqs, nil
	}
	if lm.Tokenizer == nil {
		return nil, fmt.Errorf("task %s needs a tokenizer: %s has no tokenizer.json", c.Task, c.Model)
	}
	chat := chatTurn(lm.Template)
	b, err := prompt.NewBuilder(lm.Tokenizer, prompt.Options{Chat: chat, AddSpecial: chat == nil, Budget: c.Context,
		Logger: slogTo(log)})
	if err != nil {
		return nil, err
	}
	var prompts []prompt.Prompt
	switch c.Task {
	case "needle":
		depths, err := needle.ParseDepths(orDefault(c.Depths, "linear:5"))
		if err != nil {
			return nil, fmt.Errorf("depths: %w", err)
		}
		variant, err := needle.ParseVariant(orDefault(c.Variant, "single"))
		if err != nil {
			return nil, fmt.Errorf("variant: %w", err)
		}
		prompts, err = needle.Generate(b, needle.Config{Lengths: []int{c.Context}, Depths: depths, Variant: variant,
			Seed: uint64(c.Seed), MaxNewTokens: c.MaxNewTokens})
		if err != nil {
			return nil, err
		}
	case "narrativeqa", "hotpotqa":
		if c.Data == "" {
			return nil, fmt.Errorf("task %s needs --data (see 'harness datasets show %s')", c.Task, c.Task)
		}
		ds, err := datasets.Load(c.Data, datasets.LoadOptions{Limit: c.Limit, Seed: uint64(c.Seed)})
		if err != nil {
			return nil, err
		}
		var samples []datasets.Sample
		for _, s := range ds.Samples {
			if s.Task == c.Task {
				samples = append(samples, s)
			}
		}
		if len(samples) == 0 {
			return nil, fmt.Errorf("%s holds no %s samples", c.Data, c.Task)
		}
		if prompts, err = datasets.Prompts(b, samples, datasets.PromptOptions{MaxNewTokens: c.MaxNewTokens}); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown task %q (synthetic, narrativeqa, hotpotqa, needle)", c.Task)
	}
	reqs := make([]request, len(prompts))
	for i, p := range prompts {
		ids, err := lm.Tokenizer.Encode(p.Text, chat == nil)
		if err != nil {
			return nil, fmt.Errorf("sample %s: %w", p.SampleID, err)
		}
		r := request{ids: ids, sampleID: p.SampleID, references: p.References, maxNew: p.MaxNewTokens}
		if p.Depth >= 0 {
			d := p.Depth
			r.depth = &d
		}
		reqs[i] = r
	}
	return reqs, nil
}

// cellRun is a cell with its model and plugins loaded.
type cellRun struct {
	c       sweep.Cell
	lm      *loadedModel
	plugins *pluginSet
	base    results.Row
	chunk   int
}

// runBatches runs reqs in batches of c.Batch concurrent sequences.
func (cr *cellRun) runBatches(ctx context.Context, reqs []request, rep int, warmup bool) []results.Row {
	if cr.lm.GPU != nil {
		return cr.runBatchesGPU(ctx, reqs, rep, warmup)
	}
	rows := make([]results.Row, len(reqs))
	batch := max(cr.c.Batch, 1)
	for start := 0; start < len(reqs); start += batch {
		var wg sync.WaitGroup
		for i := start; i < min(start+batch, len(reqs)); i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rows[i] = cr.runRequest(ctx, reqs[i])
				rows[i].RepeatIndex, rows[i].BatchIndex, rows[i].Warmup = int64(rep), int64(start/batch), warmup
			}()
		}
		wg.Wait()
	}
	return rows
}

func (cr *cellRun) runRequest(ctx context.Context, req request) results.Row {
	c, lm := cr.c, cr.lm
	row := cr.base
	row.SampleID, row.Depth, row.References = req.sampleID, req.depth, req.references
	row.PromptTokens = int64(len(req.ids))
	if row.References == nil {
		row.References = []string{}
	}
	opts := model.GenerateOptions{MaxNewTokens: req.maxNew, ChunkSize: cr.chunk, IgnoreStop: c.Task == "synthetic"}
	compressor, err := cr.plugins.apply(&opts)
	var res *model.Result
	if err == nil {
		res, err = lm.Model.Generate(ctx, req.ids, opts)
	}
	if err != nil {
		row.Status = results.StatusError
		if errors.Is(err, model.ErrOutOfMemory) {
			row.Status = results.StatusOOM
		}
		msg := err.Error()
		row.Error = &msg
		return row
	}
	cr.fillRow(&row, req.ids, res)
	// The CPU engine has no allocator to ask: its peak is the weights plus
	// the largest live KV cache (activations not counted; see the schema).
	peak := max(res.KVBytesPrefill, res.KVBytesEnd) + *row.WeightsBytes
	row.PeakEngineBytes = &peak
	if compressor != nil {
		ev := compressor.Evicted()
		row.KVEvictedTokens = &ev
	}
	return row
}

// fillRow records a successful generation in row.
func (cr *cellRun) fillRow(row *results.Row, ids []int, res *model.Result) {
	lm := cr.lm
	row.Status = results.StatusOK
	out := summarize(lm, ids, res, "")
	row.OutputTokens = int64(len(res.Tokens))
	row.TTFTms, row.E2Ems = ptr(out.TTFTms), ptr(out.E2Ems)
	if len(res.Tokens) > 1 {
		row.TPOTms, row.DecodeTokS = ptr(out.TPOTms), ptr(out.DecodeTokS)
	}
	row.PrefillTokS = ptr(out.PrefillTokS)
	row.KVBytesPrefill, row.KVBytesEnd = ptr(res.KVBytesPrefill), ptr(res.KVBytesEnd)
	if lm.Tokenizer != nil {
		if text, err := lm.Tokenizer.Decode(res.Tokens, true); err == nil {
			row.Prediction = text
		}
	}
}

// scoreRows scores the ok rows with each evaluator and merges the scores.
func scoreRows(ctx context.Context, env *runEnv, names []string, rows []results.Row) error {
	var items []contract.Item
	var idx []int
	for i, r := range rows {
		if r.Status != results.StatusOK {
			continue
		}
		items = append(items, contract.Item{ID: strconv.Itoa(i), Prediction: r.Prediction, References: r.References})
		idx = append(idx, i)
	}
	if len(items) == 0 {
		return nil
	}
	h, err := env.evaluator(ctx)
	if err != nil {
		return fmt.Errorf("evaluators: %w", err)
	}
	for _, name := range names {
		ev, err := h.Load(ctx, name)
		if err != nil {
			return fmt.Errorf("evaluator %s: %w", name, err)
		}
		lines, err := ev.Score(ctx, items)
		if err != nil {
			return fmt.Errorf("evaluator %s: %w", name, err)
		}
		for k, l := range lines {
			r := &rows[idx[k]]
			if r.Scores == nil {
				r.Scores = map[string]float64{}
			}
			for s, v := range l.Scores {
				key := s
				if _, taken := r.Scores[key]; taken {
					key = name + "." + s
				}
				r.Scores[key] = v
			}
		}
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// jsonText encodes plugin options for the log (json.Marshal sorts the keys).
func jsonText(m map[string]string) string {
	b, _ := json.Marshal(m)
	return string(b)
}
