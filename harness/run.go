package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/longctx/longctx/engine/model"
	evalhost "github.com/longctx/longctx/evaluators/host"
	"github.com/longctx/longctx/harness/results"
	"github.com/longctx/longctx/harness/sweep"
)

type runFlags struct {
	model, task, data, out string
	contexts, batches      string
	maxNew, warmup, repeat int
	limit, chunk, threads  int
	seed                   uint64
	depths, variant        string
	memLimit               string
	findOOM                string
	backend, cpuNumerics   string
	cudaGraph, gpuProfile  bool
	force, asJSON          bool
	plugins                pluginFlags
}

func newRunCommand() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run --model PATH|synthetic:NAME --task TASK --context LIST",
		Short: "Benchmark one model and plugin pair over contexts and batches; write Parquet logs",
		Long: `run measures one model with one attention plugin and one KV-cache plugin over
the grid --context × --batch, one run cell per point. Each cell's requests
are recorded (TTFT, TPOT, end-to-end latency, prefill and decode tok/s,
memory, KV bytes, status, prediction, scores) in <out>/<cell>.parquet,
written to a temporary name and renamed. A cell that runs out of memory or
fails is a row with status oom or error, and the run goes on. Finished
cells are skipped on a rerun (--force runs them again).

Tasks: synthetic (random prompts of exactly the context length: speed and
memory only), needle (generated; --depths, --variant), narrativeqa and
hotpotqa (--data; scored with the task's evaluators). Quality tasks build
prompts that fit the context, truncating in the middle.

--find-oom searches upward from the largest context (or batch) that fitted
to the largest that fits, and reports it.`,
		Example: `  harness run --model synthetic:tiny --task synthetic --context 512,1k,2k --batch 1,4 --max-new-tokens 16
  harness run --model synthetic:tiny --task needle --context 512,1k --depths 0,0.5,1 --kv l2 --kv-opt ratio=0.5
  harness run --model ~/models/Qwen3-0.6B --task hotpotqa --data data/hotpotqa.jsonl --limit 20 --context 4k,8k --attn flash
  harness run --model synthetic:tiny --task synthetic --context 1k --mem-limit 64MiB --find-oom`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runRun(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.model, "model", "", "checkpoint folder or synthetic:NAME")
	fl.StringVar(&f.task, "task", "synthetic", "synthetic, needle, narrativeqa or hotpotqa")
	fl.StringVar(&f.data, "data", "", "dataset file for narrativeqa / hotpotqa")
	fl.IntVar(&f.limit, "limit", 0, "samples to take from --data, chosen with --seed (0: all)")
	fl.StringVar(&f.contexts, "context", "512,1k,2k", "context lengths in tokens, e.g. 512,1k,2k,4k,8k,16k,32k")
	fl.StringVar(&f.batches, "batch", "1", "batch sizes: concurrent sequences, e.g. 1,4,16")
	fl.IntVar(&f.maxNew, "max-new-tokens", 0, "tokens to generate (0: 32 for synthetic, else the task's default)")
	fl.IntVar(&f.warmup, "warmup", 1, "warm-up batches per cell (recorded with warmup=true)")
	fl.IntVar(&f.repeat, "repeat", 1, "measured repetitions of each cell")
	fl.Uint64Var(&f.seed, "seed", 0, "seed for prompts, sampling of --data and synthetic weights")
	fl.StringVar(&f.depths, "depths", "linear:5", "needle depths")
	fl.StringVar(&f.variant, "variant", "single", "needle variant: single, multikey, multivalue")
	fl.IntVar(&f.chunk, "chunk-size", 0, "prefill chunk in tokens (0: the whole prompt at once)")
	fl.IntVar(&f.threads, "threads", 0, "CPU worker goroutines (0: all cores)")
	fl.StringVar(&f.backend, "backend", backendAuto, "engine: cuda (bf16 on GPU 0), cpu (fp32), or auto (cuda when a usable GPU is found)")
	fl.StringVar(&f.cpuNumerics, "cpu-numerics", "fp32", "arithmetic of the CPU engine: fp32, or bf16 (rounds where the CUDA engine does; built-in attention only)")
	fl.BoolVar(&f.cudaGraph, "cuda-graph", true, "replay GPU decode steps as a captured CUDA graph (false: launch by launch, to measure what the graph saves)")
	fl.BoolVar(&f.gpuProfile, "gpu-profile", false, "time each part of the GPU forward pass with CUDA events and print a breakdown (turns the CUDA graph off)")
	fl.StringVar(&f.memLimit, "mem-limit", "", "cap the engine's memory, e.g. 24GiB, to emulate a smaller machine or card (default: what the host or GPU has)")
	fl.StringVar(&f.findOOM, "find-oom", "", "search for the largest context (or batch) that fits: context | batch")
	fl.Lookup("find-oom").NoOptDefVal = "context"
	fl.StringVar(&f.out, "out", "results", "folder for the Parquet files")
	fl.BoolVar(&f.force, "force", false, "rerun cells whose Parquet file already exists")
	fl.BoolVar(&f.asJSON, "json", false, "print the cell summaries as JSON instead of a table")
	f.plugins.register(cmd)
	_ = cmd.RegisterFlagCompletionFunc("model", completeModels)
	_ = cmd.RegisterFlagCompletionFunc("task", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"synthetic", "needle", "narrativeqa", "hotpotqa"}, cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
}

// parseIntList reads comma-separated integers of at least least (batch
// sizes from 1, GPU indices from 0).
func parseIntList(s string, least int) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || n < least {
			return nil, fmt.Errorf("%q is not an integer >= %d", part, least)
		}
		out = append(out, n)
	}
	return out, nil
}

func runRun(cmd *cobra.Command, f runFlags) error {
	if f.model == "" {
		return usagef(cmd, "--model is required")
	}
	if _, ok := taskEvaluators[f.task]; !ok && f.task != "synthetic" {
		return usagef(cmd, "--task %q: want synthetic, needle, narrativeqa or hotpotqa", f.task)
	}
	if err := f.plugins.validate(cmd); err != nil {
		return err
	}
	numerics, err := cpuNumerics(cmd, f.cpuNumerics, f.plugins.attn)
	if err != nil {
		return err
	}
	contexts, err := sweep.ParseSizeList(f.contexts)
	if err != nil {
		return usagef(cmd, "--context: %v", err)
	}
	batches, err := parseIntList(f.batches, 1)
	if err != nil {
		return usagef(cmd, "--batch: %v", err)
	}
	if f.findOOM != "" && f.findOOM != "context" && f.findOOM != "batch" {
		return usagef(cmd, "--find-oom %q: want context or batch", f.findOOM)
	}
	if f.warmup < 0 || f.repeat < 1 || f.maxNew < 0 {
		return usagef(cmd, "--warmup must be >= 0, --repeat >= 1, --max-new-tokens >= 0")
	}
	var memLimit int64
	if f.memLimit != "" {
		if memLimit, err = parseBytes(f.memLimit); err != nil || memLimit == 0 {
			return usagef(cmd, "--mem-limit %q: want a size like 24GiB", f.memLimit)
		}
	}
	backend, err := resolveBackend(f.backend, cmd.ErrOrStderr())
	if err != nil {
		return usagef(cmd, "%v", err)
	}
	backend = autoBackend(cmd.Context(), cmd.ErrOrStderr(), f.backend, backend, f.plugins)
	if err := cpuNumericsOnCUDA(cmd, backend); err != nil {
		return err
	}
	cellNumerics := "" // fp32: the cell IDs of runs made before the flag
	if numerics != model.NumericsFP32 {
		cellNumerics = numerics.String()
	}
	maxNew := f.maxNew
	if maxNew == 0 && f.task == "synthetic" {
		maxNew = 32
	}
	if err := os.MkdirAll(f.out, 0o755); err != nil {
		return fmt.Errorf("--out: %w", err)
	}

	env := newRunEnv(cmd, f.out, f.plugins.logLevel, memLimit, f.threads)
	env.chunk = f.chunk
	env.noGraph = !f.cudaGraph
	env.gpuProfile = f.gpuProfile
	env.memLimitFlag = f.memLimit
	defer env.close(cmd.Context())
	cellFor := func(ctxLen, batch int) sweep.Cell {
		return sweep.Cell{
			Model: f.model, Attn: f.plugins.attn, AttnOpts: f.plugins.attnOpts, KV: f.plugins.kv, KVOpts: f.plugins.kvOpts,
			Task: f.task, Data: f.data, Limit: f.limit, Context: ctxLen, Batch: batch, MaxNewTokens: maxNew,
			Warmup: f.warmup, Repeat: f.repeat, Seed: int64(f.seed), Depths: f.depths, Variant: f.variant,
			Backend: backend, Numerics: cellNumerics,
		}
	}
	var cells []sweep.Cell
	for _, c := range contexts {
		for _, b := range batches {
			cells = append(cells, cellFor(c, b))
		}
	}
	done, err := results.Finished(f.out)
	if err != nil {
		return err
	}
	var summaries []cellSummary
	progress := newProgress(cmd.ErrOrStderr(), len(cells))
	for _, c := range cells {
		if err := cmd.Context().Err(); err != nil {
			return err
		}
		s, err := executeCell(cmd.Context(), env, c, done, f.force)
		if err != nil {
			return err
		}
		summaries = append(summaries, s)
		progress.step(s)
	}
	progress.finish()

	var threshold *oomSearch
	if f.findOOM != "" {
		if threshold, err = findOOM(cmd.Context(), env, f.findOOM, summaries, cellFor, done, f.force, progress); err != nil {
			return err
		}
	}
	return printRunSummary(cmd.OutOrStdout(), f.out, summaries, threshold, f.asJSON)
}

// executeCell runs a cell unless it is finished, writes its Parquet file
// and returns its summary.
func executeCell(ctx context.Context, env *runEnv, c sweep.Cell, done map[string]bool, force bool) (cellSummary, error) {
	id := c.ID()
	if done[id] && !force {
		rows, err := results.ReadFile(results.CellPath(env.out, id))
		if err != nil {
			return cellSummary{}, fmt.Errorf("finished cell %s: %w (delete the file or pass --force)", id, err)
		}
		// A cell that failed (a plugin missing, an evaluator crashing) is
		// worth running again; ok and oom results stand.
		if s := summarizeCell(c, rows); s.Errors == 0 {
			s.Skipped = true
			return s, nil
		}
	}
	if c.Backend == backendCUDA && os.Getenv(cellChildEnv) == "" {
		// A GPU cell runs in a process of its own: a faulting kernel
		// leaves CUDA unusable for the rest of its process, and must fail
		// only its cell.
		rows, err := runCellProcess(ctx, env, c)
		if err != nil {
			return cellSummary{}, err
		}
		done[id] = true
		return summarizeCell(c, rows), nil
	}
	rows := runCell(ctx, env, c)
	if err := ctx.Err(); err != nil {
		return cellSummary{}, err // a cancelled cell is not written: it reruns next time
	}
	if _, err := results.WriteCell(env.out, id, rows); err != nil {
		return cellSummary{}, fmt.Errorf("cell %s: %w", id, err)
	}
	done[id] = true
	return summarizeCell(c, rows), nil
}

func newRunEnv(cmd *cobra.Command, out, pluginLog string, memLimit int64, threads int) *runEnv {
	env := &runEnv{
		out: out, runID: fmt.Sprintf("run-%s", time.Now().UTC().Format("20060102T150405.000Z")),
		version: version, log: cmd.ErrOrStderr(), pluginLog: pluginLog, memLimit: memLimit, threads: threads,
	}
	var (
		once sync.Once
		h    *evalhost.Host
		herr error
	)
	env.evaluator = func(ctx context.Context) (*evalhost.Host, error) {
		once.Do(func() { h, herr = evalhost.New(ctx, evalhost.Options{}) })
		return h, herr
	}
	env.closeEval = func(ctx context.Context) {
		if h != nil {
			h.Close(ctx)
		}
	}
	return env
}

func (e *runEnv) close(ctx context.Context) {
	if e.closeEval != nil {
		e.closeEval(ctx)
	}
}

// cellSummary is one line of the end-of-run table.
type cellSummary struct {
	ID         string             `json:"cell_id"`
	Context    int                `json:"context"`
	Batch      int                `json:"batch"`
	Skipped    bool               `json:"skipped,omitempty"`
	Requests   int                `json:"requests"`
	OK         int                `json:"ok"`
	OOM        int                `json:"oom"`
	Errors     int                `json:"errors"`
	FirstError string             `json:"first_error,omitempty"`
	TTFTms     float64            `json:"ttft_ms_median"`
	TPOTms     float64            `json:"tpot_ms_median"`
	DecodeTokS float64            `json:"decode_tok_s"`
	KVBytes    int64              `json:"kv_bytes_end_max"`
	Scores     map[string]float64 `json:"scores,omitempty"`
}

func summarizeCell(c sweep.Cell, rows []results.Row) cellSummary {
	s := cellSummary{ID: c.ID(), Context: c.Context, Batch: c.Batch}
	var ttft, tpot []float64
	var tokens, decodeSec float64
	sums, counts := map[string]float64{}, map[string]int{}
	for _, r := range rows {
		if r.Warmup {
			continue
		}
		s.Requests++
		switch r.Status {
		case results.StatusOK:
			s.OK++
		case results.StatusOOM:
			s.OOM++
		default:
			s.Errors++
		}
		if r.Error != nil && s.FirstError == "" {
			s.FirstError = *r.Error
		}
		if r.TTFTms != nil {
			ttft = append(ttft, *r.TTFTms)
		}
		if r.TPOTms != nil {
			tpot = append(tpot, *r.TPOTms)
			tokens += float64(r.OutputTokens - 1)
			decodeSec += *r.TPOTms * float64(r.OutputTokens-1) / 1000
		}
		if r.KVBytesEnd != nil {
			s.KVBytes = max(s.KVBytes, *r.KVBytesEnd)
		}
		for k, v := range r.Scores {
			sums[k] += v
			counts[k]++
		}
	}
	s.TTFTms, s.TPOTms = median(ttft), median(tpot)
	if decodeSec > 0 {
		// Sequences of a batch decode concurrently: aggregate throughput is
		// the batch's tokens over one sequence's decode time.
		s.DecodeTokS = tokens / decodeSec * float64(max(c.Batch, 1))
	}
	if len(sums) > 0 {
		s.Scores = map[string]float64{}
		for k, v := range sums {
			s.Scores[k] = v / float64(counts[k])
		}
	}
	return s
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	sort.Float64s(v)
	if n := len(v); n%2 == 1 {
		return v[n/2]
	} else {
		return (v[n/2-1] + v[n/2]) / 2
	}
}

func (s cellSummary) fits() bool { return s.Requests > 0 && s.OK == s.Requests }

// oomSearch is the result of --find-oom.
type oomSearch struct {
	Dimension    string `json:"dimension"`
	LargestFit   int    `json:"largest_fit"`
	SmallestFail int    `json:"smallest_oom"`
	Probes       int    `json:"probes"`
}

// findOOM doubles the largest fitting context (or batch) until a cell runs
// out of memory, then bisects between the two; every probe is a cell of its
// own, recorded like the others.
func findOOM(ctx context.Context, env *runEnv, dim string, summaries []cellSummary,
	cellFor func(ctxLen, batch int) sweep.Cell, done map[string]bool, force bool, progress *progressReporter) (*oomSearch, error) {
	ctxLen, batch := summaries[0].Context, summaries[0].Batch
	value := func(s cellSummary) int {
		if dim == "batch" {
			return s.Batch
		}
		return s.Context
	}
	lo, hi := 0, 0 // largest fit, smallest oom seen
	for _, s := range summaries {
		if dim == "batch" && s.Context != ctxLen || dim == "context" && s.Batch != batch {
			continue
		}
		v := value(s)
		switch {
		case s.fits():
			lo = max(lo, v)
		case s.OOM > 0 && (hi == 0 || v < hi):
			hi = v
		}
	}
	if lo == 0 {
		return nil, fmt.Errorf("--find-oom: no %s in the run fits, so there is nothing to search upward from", dim)
	}
	probe := func(v int) (cellSummary, error) {
		c := cellFor(ctxLen, v)
		if dim == "context" {
			c = cellFor(v, batch)
		}
		s, err := executeCell(ctx, env, c, done, force)
		if err == nil {
			progress.step(s)
		}
		return s, err
	}
	res := &oomSearch{Dimension: dim}
	const ceiling = 1 << 22
	for hi == 0 || hi > lo*2 && hi-lo > granularity(dim, lo) {
		next := lo * 2
		if hi != 0 {
			next = lo + (hi-lo)/2
		}
		if next > ceiling {
			return nil, fmt.Errorf("--find-oom: %s %d still fits; stopping the search at %d", dim, lo, ceiling)
		}
		s, err := probe(next)
		if err != nil {
			return nil, err
		}
		res.Probes++
		switch {
		case s.fits():
			lo = next
		case s.OOM > 0:
			hi = next
		default:
			return nil, fmt.Errorf("--find-oom: %s %d failed with an error, not out of memory: %s", dim, next, s.FirstError)
		}
	}
	for hi-lo > granularity(dim, lo) {
		mid := lo + (hi-lo)/2
		s, err := probe(mid)
		if err != nil {
			return nil, err
		}
		res.Probes++
		if s.fits() {
			lo = mid
		} else if s.OOM > 0 {
			hi = mid
		} else {
			return nil, fmt.Errorf("--find-oom: %s %d failed with an error, not out of memory: %s", dim, mid, s.FirstError)
		}
	}
	res.LargestFit, res.SmallestFail = lo, hi
	return res, nil
}

// granularity is how close the search brackets the threshold: one batch
// slot, or 1/64 of the context (at least 16 tokens).
func granularity(dim string, lo int) int {
	if dim == "batch" {
		return 1
	}
	return max(16, lo/64)
}

// progressReporter draws a bar on a terminal and logs a line per cell
// otherwise (CI logs, Slurm output files).
type progressReporter struct {
	w   io.Writer
	bar *progressbar.ProgressBar
}

func newProgress(w io.Writer, total int) *progressReporter {
	p := &progressReporter{w: w}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription("cells"),
			progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionClearOnFinish())
	}
	return p
}

func (p *progressReporter) step(s cellSummary) {
	if p.bar != nil {
		p.bar.Describe(fmt.Sprintf("context %d batch %d", s.Context, s.Batch))
		_ = p.bar.Add(1)
		return
	}
	state := fmt.Sprintf("ok %d/%d", s.OK, s.Requests)
	if s.Skipped {
		state = "finished earlier, skipped"
	}
	fmt.Fprintf(p.w, "cell %s: %s\n", s.ID, state)
}

func (p *progressReporter) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}

func printRunSummary(w io.Writer, out string, cells []cellSummary, oom *oomSearch, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(map[string]any{"out": out, "cells": cells, "find_oom": oom})
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONTEXT\tBATCH\tSTATUS\tTTFT ms\tTPOT ms\tDECODE tok/s\tKV\tSCORES")
	for _, s := range cells {
		status := fmt.Sprintf("ok %d/%d", s.OK, s.Requests)
		switch {
		case s.OOM > 0:
			status = fmt.Sprintf("oom %d/%d", s.OOM, s.Requests)
		case s.Errors > 0:
			status = fmt.Sprintf("error %d/%d", s.Errors, s.Requests)
		}
		if s.Skipped {
			status += " (earlier)"
		}
		var scores []string
		for k, v := range s.Scores {
			scores = append(scores, fmt.Sprintf("%s=%.3f", k, v))
		}
		sort.Strings(scores)
		fmt.Fprintf(tw, "%d\t%d\t%s\t%.1f\t%.2f\t%.1f\t%s\t%s\n", s.Context, s.Batch, status, s.TTFTms, s.TPOTms, s.DecodeTokS, humanBytes(s.KVBytes), strings.Join(scores, " "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range cells {
		if s.FirstError != "" {
			fmt.Fprintf(w, "cell %s: %s\n", s.ID, s.FirstError)
		}
	}
	if oom != nil {
		fmt.Fprintf(w, "find-oom: largest %s that fits: %d (out of memory at %d; %d probes)\n", oom.Dimension, oom.LargestFit, oom.SmallestFail, oom.Probes)
	}
	_, err := fmt.Fprintf(w, "results: %s/*.parquet — query with DuckDB: SELECT * FROM read_parquet('%s/*.parquet', union_by_name=true)\n", out, out)
	return err
}
