package sweep

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// SlurmOptions says what the tasks of a sweep's job array run.
type SlurmOptions struct {
	Harness   string // harness binary the tasks run; PrepareSlurm makes it absolute
	CellsFile string // cells file (WriteCellsFile) the tasks index into
	Out       string // results folder, passed to run-cell
	LogDir    string // per-task logs <LogDir>/<jobid>_<task>.log; must exist when the job runs
}

// Names of the files PrepareSlurm writes.
const (
	SlurmScriptName = "sweep.sbatch"
	CellsFileName   = "cells.json"
	SlurmLogDirName = "slurm-logs"
)

// WriteSlurmScript writes an sbatch script for a job array with one task per
// cell of cells (the cells file must hold exactly these, in this order):
// task i runs
//
//	"$HARNESS" sweep run-cell --cells "$CELLS" --index "$SLURM_ARRAY_TASK_ID" --out "$OUT"
//
// with the spec's Slurm settings as #SBATCH lines and its setup lines
// before. Pass only the cells still to run (see Pending).
func WriteSlurmScript(w io.Writer, spec *Spec, cells []Cell, opts SlurmOptions) error {
	if len(cells) == 0 {
		return errors.New("slurm script: no cells to run")
	}
	for _, f := range []struct{ name, v string }{
		{"harness path", opts.Harness}, {"cells file", opts.CellsFile}, {"results folder", opts.Out}, {"log folder", opts.LogDir},
	} {
		if f.v == "" {
			return fmt.Errorf("slurm script: %s is empty", f.name)
		}
		if strings.ContainsAny(f.v, "\"\r\n\x00") {
			return fmt.Errorf("slurm script: %s %q holds a double quote, NUL or line break", f.name, f.v)
		}
	}
	sl := spec.Slurm
	for _, f := range []struct{ name, v string }{
		{"partition", sl.Partition}, {"time", sl.Time}, {"gres", sl.Gres}, {"mem", sl.Mem}, {"name", spec.Name},
	} {
		if strings.ContainsAny(f.v, "\r\n\x00") {
			return fmt.Errorf("slurm script: %s %q spans several lines", f.name, f.v)
		}
	}
	name := "longctx-sweep"
	if spec.Name != "" {
		name = "longctx-" + spec.Name
	}
	array := fmt.Sprintf("0-%d", len(cells)-1)
	if sl.ArrayLimit > 0 {
		array += fmt.Sprintf("%%%d", sl.ArrayLimit)
	}

	var b bytes.Buffer
	b.WriteString("#!/bin/bash\n")
	sbatch := func(opt, val string) {
		if val != "" {
			fmt.Fprintf(&b, "#SBATCH --%s=%s\n", opt, sbatchValue(val))
		}
	}
	sbatch("job-name", name)
	sbatch("array", array)
	// %A is the array's job id, %a the task index.
	sbatch("output", filepath.Join(opts.LogDir, "%A_%a.log"))
	sbatch("partition", sl.Partition)
	sbatch("time", sl.Time)
	sbatch("gres", sl.Gres)
	if sl.CPUsPerTask > 0 {
		sbatch("cpus-per-task", fmt.Sprint(sl.CPUsPerTask))
	}
	sbatch("mem", sl.Mem)
	for i, e := range sl.Extra {
		if strings.ContainsAny(e, "\r\n\x00") {
			return fmt.Errorf("slurm script: extra[%d] spans several lines", i)
		}
		e = strings.TrimSpace(e)
		if !strings.HasPrefix(e, "#SBATCH") {
			e = "#SBATCH " + e
		}
		b.WriteString(e + "\n")
	}
	fmt.Fprintf(&b, "\n# Written by harness sweep: array task i runs cell i of the cells file (%d cells).\n", len(cells))
	b.WriteString("set -eo pipefail\n")
	for _, line := range sl.Setup {
		b.WriteString(line + "\n")
	}
	fmt.Fprintf(&b, "HARNESS=%s\n", shellQuote(opts.Harness))
	fmt.Fprintf(&b, "CELLS=%s\n", shellQuote(opts.CellsFile))
	fmt.Fprintf(&b, "OUT=%s\n", shellQuote(opts.Out))
	b.WriteString(`exec "$HARNESS" sweep run-cell --cells "$CELLS" --index "$SLURM_ARRAY_TASK_ID" --out "$OUT"` + "\n")
	if _, err := w.Write(b.Bytes()); err != nil {
		return fmt.Errorf("write slurm script: %w", err)
	}
	return nil
}

// sbatchValue quotes a #SBATCH value that holds blanks; sbatch strips the
// double quotes when it reads the line.
func sbatchValue(v string) string {
	if strings.ContainsAny(v, " \t") {
		return `"` + v + `"`
	}
	return v
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// SlurmJob is what PrepareSlurm wrote.
type SlurmJob struct {
	Script    string // the sbatch script; empty when no cell is pending
	CellsFile string
	Pending   int // array tasks (cells still to run)
	Skipped   int // cells already finished
}

// PrepareSlurm writes, in dir, the cells still to run (CellsFileName), the
// sbatch script over them (SlurmScriptName) and the log folder
// (SlurmLogDirName). Paths in the script are made absolute, since tasks may
// start in another folder. With nothing pending it writes nothing and
// returns Pending 0.
func PrepareSlurm(dir string, spec *Spec, cells []Cell, done func(id string) bool, opts SlurmOptions) (SlurmJob, error) {
	pending := Pending(cells, done)
	job := SlurmJob{Pending: len(pending), Skipped: len(cells) - len(pending)}
	if len(pending) == 0 {
		return job, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return job, fmt.Errorf("prepare slurm job: %w", err)
	}
	if opts.LogDir == "" {
		opts.LogDir = filepath.Join(dir, SlurmLogDirName)
	}
	if err := os.MkdirAll(opts.LogDir, 0o755); err != nil {
		return job, fmt.Errorf("prepare slurm job: %w", err)
	}
	opts.CellsFile = filepath.Join(dir, CellsFileName)
	var err error
	for _, p := range []*string{&opts.Harness, &opts.CellsFile, &opts.Out, &opts.LogDir} {
		if *p == "" {
			continue // WriteSlurmScript names the missing one
		}
		if *p, err = filepath.Abs(*p); err != nil {
			return job, fmt.Errorf("prepare slurm job: %w", err)
		}
	}
	var script bytes.Buffer
	if err := WriteSlurmScript(&script, spec, pending, opts); err != nil {
		return job, err
	}
	if err := WriteCellsFile(opts.CellsFile, pending); err != nil {
		return job, err
	}
	scriptPath := filepath.Join(dir, SlurmScriptName)
	if err := os.WriteFile(scriptPath, script.Bytes(), 0o755); err != nil {
		return job, fmt.Errorf("write slurm script: %w", err)
	}
	job.Script, job.CellsFile = scriptPath, opts.CellsFile
	return job, nil
}

// Submit submits an sbatch script and returns the job id.
func Submit(ctx context.Context, script string) (string, error) {
	out, err := runCmd(ctx, "sbatch", "--parsable", script)
	if err != nil {
		return "", fmt.Errorf("submit %s: %w", script, err)
	}
	id, err := parseJobID(out)
	if err != nil {
		return "", fmt.Errorf("submit %s: %w", script, err)
	}
	return id, nil
}

// parseJobID reads `sbatch --parsable` output: "<id>" or "<id>;<cluster>".
func parseJobID(out string) (string, error) {
	line := strings.TrimSpace(out)
	id, _, _ := strings.Cut(line, ";")
	if id == "" || strings.Trim(id, "0123456789") != "" {
		return "", fmt.Errorf("sbatch printed %q, want a job id", line)
	}
	return id, nil
}

// maxSqueueFailures is how many squeue failures in a row Wait tolerates.
const maxSqueueFailures = 5

// Wait polls until every task of the job has left the queue, then checks
// how they ended: nil when all completed, otherwise an error naming the
// tasks that did not. Without accounting (sacct) the end states come from
// scontrol, which forgets a job MinJobAge seconds (default 300) after it
// ends; a state that cannot be found is an error, never a success.
func Wait(ctx context.Context, jobID string, poll time.Duration) error {
	if _, err := parseJobID(jobID); err != nil {
		return fmt.Errorf("wait: %w", err)
	}
	if poll <= 0 {
		poll = 2 * time.Second
	}
	failures := 0
	for {
		out, err := runCmd(ctx, "squeue", "-h", "-j", jobID, "-o", "%T")
		if ctx.Err() != nil {
			return fmt.Errorf("wait for job %s: %w", jobID, ctx.Err())
		}
		switch {
		case err == nil && strings.TrimSpace(out) == "":
			failures = -1 // left the queue
		case err == nil:
			failures = 0
		// squeue fails with "Invalid job id" once the job is forgotten.
		case strings.Contains(err.Error(), "Invalid job id"):
			failures = -1
		case errors.Is(err, exec.ErrNotFound):
			return fmt.Errorf("wait for job %s: %w", jobID, err)
		default:
			// A busy controller times out now and then; give up only
			// when it keeps failing.
			if failures++; failures >= maxSqueueFailures {
				return fmt.Errorf("wait for job %s: %w", jobID, err)
			}
		}
		if failures < 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for job %s: %w", jobID, ctx.Err())
		case <-time.After(poll):
		}
	}
	states, scErr := jobStates(ctx, jobID)
	if scErr != nil {
		var saErr error
		if states, saErr = sacctStates(ctx, jobID); saErr != nil {
			return fmt.Errorf("job %s left the queue but its end state is unknown: %v; %v", jobID, scErr, saErr)
		}
	}
	return checkStates(jobID, states)
}

// TaskState is how one task of a job ended.
type TaskState struct {
	Task  string // array index, or "" for a job that is not an array
	State string // COMPLETED, FAILED, TIMEOUT, ...
}

func jobStates(ctx context.Context, jobID string) ([]TaskState, error) {
	out, err := runCmd(ctx, "scontrol", "-o", "show", "job", jobID)
	if err != nil {
		return nil, err
	}
	return parseScontrol(out)
}

// parseScontrol reads `scontrol -o show job` output: one line per task of
// space-separated key=value fields.
func parseScontrol(out string) ([]TaskState, error) {
	var states []TaskState
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var st TaskState
		for _, f := range strings.Fields(line) {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "JobState":
				st.State = v
			case "ArrayTaskId":
				st.Task = v
			}
		}
		if st.State == "" {
			return nil, fmt.Errorf("scontrol line without JobState: %q", line)
		}
		states = append(states, st)
	}
	if len(states) == 0 {
		return nil, errors.New("scontrol printed no job")
	}
	return states, nil
}

func sacctStates(ctx context.Context, jobID string) ([]TaskState, error) {
	out, err := runCmd(ctx, "sacct", "-n", "-X", "-P", "-j", jobID, "-o", "JobID,State")
	if err != nil {
		return nil, err
	}
	return parseSacct(out)
}

// parseSacct reads `sacct -n -X -P -o JobID,State`: "<job>[_<task>]|<state>"
// per line; a state may carry a suffix ("CANCELLED by 0").
func parseSacct(out string) ([]TaskState, error) {
	var states []TaskState
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		id, state, _ := strings.Cut(line, "|")
		words := strings.Fields(state)
		if len(words) == 0 {
			return nil, fmt.Errorf("sacct line %q: want JobID|State", line)
		}
		_, task, _ := strings.Cut(id, "_")
		states = append(states, TaskState{Task: task, State: words[0]})
	}
	if len(states) == 0 {
		return nil, errors.New("sacct printed no job")
	}
	return states, nil
}

func checkStates(jobID string, states []TaskState) error {
	var bad []string
	for _, s := range states {
		if s.State != "COMPLETED" {
			bad = append(bad, fmt.Sprintf("task %s %s", s.Task, s.State))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("job %s: %d of %d tasks did not complete: %s", jobID, len(bad), len(states), strings.Join(bad, ", "))
	}
	return nil
}

func runCmd(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			return "", fmt.Errorf("%s: %w", name, err)
		}
		return "", fmt.Errorf("%s: %w: %s", name, err, msg)
	}
	return stdout.String(), nil
}
