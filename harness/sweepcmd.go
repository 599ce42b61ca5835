package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/longctx/longctx/harness/results"
	"github.com/longctx/longctx/harness/sweep"
)

//go:embed default_sweep.yaml
var defaultSweep []byte

//go:embed default_sweep_gpu.yaml
var defaultSweepGPU []byte

type sweepFlags struct {
	dryRun, scriptOnly, wait, force, useDefault, asJSON bool
	executor, out, gpus, memLimit, pluginLog            string
	threads, chunk                                      int
	cudaGraph, gpuProfile                               bool
}

func newSweepCommand() *cobra.Command {
	var f sweepFlags
	cmd := &cobra.Command{
		Use:   "sweep [SPEC.yaml | --default]",
		Short: "Run a grid of cells (models × attn × kv × options × tasks × contexts × batches)",
		Long: `sweep expands a YAML grid into run cells and runs them: locally (one after
another, or one worker per GPU with --gpus) or on Slurm as a job array with
one cell per task. Each cell writes <out>/<cell>.parquet; cells already
finished (ok or oom) are skipped, so a killed sweep resumes where it stopped
without losing or duplicating rows. --default runs the embedded default
sweep (the synthetic tiny model on the CPU).

The YAML keys: name, out, models, attn and kv (plugin names or
{plugin, options} where an option may list values to sweep), tasks (names or
{name, data, limit, depths, variant}), contexts (512, 1k, 32k), batches,
max_new_tokens, warmup, repeat, seed, executor (local | slurm), gpus, and
slurm {partition, time, gres, cpus_per_task, mem, array_limit, extra, setup}.`,
		Example: `  harness sweep --default
  harness sweep sweep.yaml --dry-run
  harness sweep sweep.yaml --gpus 0,1
  harness sweep sweep.yaml --executor slurm --slurm-script-only
  harness sweep sweep.yaml --executor slurm --wait`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runSweep(cmd, f, args) },
	}
	fl := cmd.Flags()
	fl.BoolVar(&f.useDefault, "default", false, "run the embedded default sweep")
	fl.BoolVar(&f.dryRun, "dry-run", false, "list the cells (and whether each is finished) without running them")
	fl.StringVar(&f.executor, "executor", "", "local or slurm (default: the spec's, else local)")
	fl.StringVar(&f.gpus, "gpus", "", "local executor: one worker per GPU, e.g. 0,1")
	fl.BoolVar(&f.scriptOnly, "slurm-script-only", false, "slurm: write the sbatch script and cells file, do not submit")
	fl.BoolVar(&f.wait, "wait", false, "slurm: wait for the job array to finish")
	fl.BoolVar(&f.force, "force", false, "rerun finished cells")
	// Shared with run-cell, which each Slurm array task runs.
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.out, "out", "", "results folder (default: the spec's out, else results)")
	pf.StringVar(&f.memLimit, "mem-limit", "", "cap the engine's memory per cell, e.g. 24GiB")
	pf.IntVar(&f.threads, "threads", 0, "CPU worker goroutines (0: all cores)")
	pf.StringVar(&f.pluginLog, "plugin-log-level", "warn", "log level of the plugin host and plugins")
	pf.IntVar(&f.chunk, "chunk-size", 0, "prefill chunk in tokens (0: the whole prompt at once)")
	pf.BoolVar(&f.cudaGraph, "cuda-graph", true, "replay GPU decode steps as a captured CUDA graph")
	pf.BoolVar(&f.gpuProfile, "gpu-profile", false, "print where GPU time goes per cell (turns the CUDA graph off)")
	fl.BoolVar(&f.asJSON, "json", false, "print the cells (dry run) or the summary as JSON")
	cmd.AddCommand(newRunCellCommand(&f))
	return cmd
}

// newRunCellCommand is what each Slurm array task runs: one cell of a cells
// file. Hidden: users run sweeps, the job script runs cells.
func newRunCellCommand(f *sweepFlags) *cobra.Command {
	var cellsFile string
	var index int
	cmd := &cobra.Command{
		Use:     "run-cell --cells FILE --index N --out DIR",
		Short:   "Run one cell of a cells file (what a Slurm array task runs)",
		Example: `  harness sweep run-cell --cells out/slurm/cells.json --index "$SLURM_ARRAY_TASK_ID" --out results`,
		Hidden:  true,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cellsFile == "" || f.out == "" {
				return usagef(cmd, "--cells and --out are required")
			}
			c, err := sweep.CellAt(cellsFile, index)
			if err != nil {
				return err
			}
			env, err := sweepEnv(cmd, f)
			if err != nil {
				return err
			}
			defer env.close(cmd.Context())
			s, err := executeCell(cmd.Context(), env, c, map[string]bool{}, true)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "cell %s: %d requests, ok %d, oom %d, errors %d\n", s.ID, s.Requests, s.OK, s.OOM, s.Errors)
			if s.Errors > 0 {
				return fmt.Errorf("cell %s: %s", s.ID, s.FirstError)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cellsFile, "cells", "", "cells file written by the sweep")
	cmd.Flags().IntVar(&index, "index", 0, "index of the cell in the file")
	return cmd
}

func sweepEnv(cmd *cobra.Command, f *sweepFlags) (*runEnv, error) {
	var memLimit int64
	if f.memLimit != "" {
		var err error
		if memLimit, err = parseBytes(f.memLimit); err != nil || memLimit == 0 {
			return nil, usagef(cmd, "--mem-limit %q: want a size like 24GiB", f.memLimit)
		}
	}
	if err := os.MkdirAll(f.out, 0o755); err != nil {
		return nil, fmt.Errorf("--out: %w", err)
	}
	env := newRunEnv(cmd, f.out, f.pluginLog, memLimit, f.threads)
	env.chunk, env.noGraph, env.gpuProfile = f.chunk, !f.cudaGraph, f.gpuProfile
	env.memLimitFlag = f.memLimit
	return env, nil
}

func runSweep(cmd *cobra.Command, f sweepFlags, args []string) error {
	var spec *sweep.Spec
	var err error
	switch {
	case f.useDefault && len(args) == 1:
		return usagef(cmd, "give a spec file or --default, not both")
	case f.useDefault:
		// The GPU default where a GPU can run it, the CPU one elsewhere.
		if gpuErr := cudaUsable(); gpuErr == nil {
			fmt.Fprintln(cmd.ErrOrStderr(), "default sweep: synthetic Llama-3-8B on the GPU (default_sweep_gpu.yaml)")
			spec, err = sweep.ParseSpec(defaultSweepGPU)
		} else {
			fmt.Fprintf(cmd.ErrOrStderr(), "default sweep: synthetic tiny model on the CPU (no usable GPU: %v)\n", gpuErr)
			spec, err = sweep.ParseSpec(defaultSweep)
		}
	case len(args) == 1:
		spec, err = sweep.LoadSpec(args[0])
	default:
		return usagef(cmd, "give a sweep spec file (or --default)")
	}
	if err != nil {
		return err
	}
	if f.out == "" {
		f.out = orDefault(spec.Out, "results")
	}
	executor := orDefault(f.executor, orDefault(spec.Executor, sweep.ExecutorLocal))
	if executor != sweep.ExecutorLocal && executor != sweep.ExecutorSlurm {
		return usagef(cmd, "--executor %q: want local or slurm", executor)
	}
	if f.gpus != "" {
		if spec.GPUs, err = parseIntList(f.gpus, 0); err != nil {
			return usagef(cmd, "--gpus: %v", err)
		}
	}
	cells, err := sweep.Expand(spec)
	if err != nil {
		return err
	}
	done := func(id string) bool { return !f.force && cellFinished(f.out, id) }

	if f.dryRun {
		return printDryRun(cmd, cells, done, f.asJSON)
	}
	if executor == sweep.ExecutorSlurm {
		return runSlurm(cmd, f, spec, cells, done)
	}

	env, err := sweepEnv(cmd, &f)
	if err != nil {
		return err
	}
	defer env.close(cmd.Context())
	var (
		mu        sync.Mutex // workers run one per GPU
		summaries []cellSummary
	)
	progress := newProgress(cmd.ErrOrStderr(), len(cells))
	sum, runErr := sweep.RunLocal(cmd.Context(), cells, sweep.LocalOptions{
		GPUs: spec.GPUs,
		Done: done,
		Run: func(ctx context.Context, c sweep.Cell, gpu int) error {
			s, err := executeCell(ctx, env, c, map[string]bool{}, true)
			if err != nil {
				return err
			}
			mu.Lock()
			progress.step(s)
			summaries = append(summaries, s)
			mu.Unlock()
			if s.Errors > 0 {
				return fmt.Errorf("%d of %d requests failed: %s", s.Errors, s.Requests, s.FirstError)
			}
			return nil
		},
	})
	progress.finish()
	if f.asJSON {
		if err := json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]any{
			"out": f.out, "ran": sum.Succeeded, "skipped": sum.Skipped, "failed": sum.Failed, "not_run": sum.NotRun, "cells": summaries,
		}); err != nil {
			return err
		}
	} else if err := printRunSummary(cmd.OutOrStdout(), f.out, summaries, nil, false); err != nil {
		return err
	} else {
		fmt.Fprintf(cmd.OutOrStdout(), "sweep %s: %d cells ok, %d failed, %d finished earlier\n", spec.Name, len(sum.Succeeded), len(sum.Failed), len(sum.Skipped))
	}
	if runErr != nil {
		return runErr
	}
	return sum.Err()
}

// cellFinished reports whether a cell's file exists with no failed row: ok
// and oom results stand, failures are worth a rerun.
func cellFinished(out, id string) bool {
	rows, err := results.ReadFile(results.CellPath(out, id))
	if err != nil {
		return false
	}
	for _, r := range rows {
		if r.Status == results.StatusError {
			return false
		}
	}
	return true
}

func printDryRun(cmd *cobra.Command, cells []sweep.Cell, done func(string) bool, asJSON bool) error {
	if asJSON {
		type row struct {
			ID       string     `json:"cell_id"`
			Finished bool       `json:"finished"`
			Cell     sweep.Cell `json:"cell"`
		}
		rows := make([]row, len(cells))
		for i, c := range cells {
			rows[i] = row{c.ID(), done(c.ID()), c}
		}
		return json.NewEncoder(cmd.OutOrStdout()).Encode(rows)
	}
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CELL\tMODEL\tATTN\tKV\tTASK\tCONTEXT\tBATCH\tSTATE")
	pending := 0
	for _, c := range cells {
		state := "pending"
		if done(c.ID()) {
			state = "finished"
		} else {
			pending++
		}
		kv := orName(c.KV, "full")
		if len(c.KVOpts) > 0 {
			kv += " " + strings.Join(c.KVOpts, ",")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", c.ID(), c.Model, orName(c.Attn, "eager"), kv, c.Task, c.Context, c.Batch, state)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(cmd.OutOrStdout(), "%d cells, %d pending\n", len(cells), pending)
	return err
}

func runSlurm(cmd *cobra.Command, f sweepFlags, spec *sweep.Spec, cells []sweep.Cell, done func(string) bool) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("locating the harness binary for the job script: %w", err)
	}
	dir := filepath.Join(f.out, "slurm")
	job, err := sweep.PrepareSlurm(dir, spec, cells, done, sweep.SlurmOptions{Harness: exe, Out: f.out})
	if err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	if job.Pending == 0 {
		_, err := fmt.Fprintf(w, "all %d cells are finished in %s; nothing to submit\n", job.Skipped, f.out)
		return err
	}
	fmt.Fprintf(w, "wrote %s (%d array tasks; %d cells finished earlier) and %s\n", job.Script, job.Pending, job.Skipped, job.CellsFile)
	if f.scriptOnly {
		_, err := fmt.Fprintf(w, "submit with: sbatch %s\n", job.Script)
		return err
	}
	id, err := sweep.Submit(cmd.Context(), job.Script)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "submitted job array %s; task logs in %s\n", id, filepath.Join(dir, sweep.SlurmLogDirName))
	if !f.wait {
		return nil
	}
	if err := sweep.Wait(cmd.Context(), id, 2*time.Second); err != nil {
		return err
	}
	var failed []string
	for _, c := range cells {
		if !cellFinished(f.out, c.ID()) {
			failed = append(failed, c.ID())
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("job %s ended with %d cells unfinished or failed: %s (logs in %s)", id, len(failed), strings.Join(failed, ", "), filepath.Join(dir, sweep.SlurmLogDirName))
	}
	_, err = fmt.Fprintf(w, "job %s finished: %d cells in %s\n", id, len(cells), f.out)
	return err
}
