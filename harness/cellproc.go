package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/longctx/longctx/harness/results"
	"github.com/longctx/longctx/harness/sweep"
)

// cellChildEnv marks the harness process that runs one GPU cell for a
// parent harness.
const cellChildEnv = "LONGCTX_CELL_PROCESS"

// runCellProcess runs cell c in a child harness process ("sweep run-cell")
// and returns the rows it wrote. When the child dies without writing its
// Parquet file (a kernel fault, a driver crash, a kill), the cell becomes
// one error row naming the exit and the end of the child's output, and the
// run goes on.
func runCellProcess(ctx context.Context, env *runEnv, c sweep.Cell) ([]results.Row, error) {
	id := c.ID()
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("cell %s: finding the harness executable: %w", id, err)
	}
	dir, err := os.MkdirTemp("", "longctx-cell-")
	if err != nil {
		return nil, fmt.Errorf("cell %s: %w", id, err)
	}
	defer os.RemoveAll(dir)
	cells := filepath.Join(dir, "cells.json")
	if err := sweep.WriteCellsFile(cells, []sweep.Cell{c}); err != nil {
		return nil, fmt.Errorf("cell %s: %w", id, err)
	}
	args := []string{"sweep", "run-cell", "--cells", cells, "--index", "0", "--out", env.out,
		"--plugin-log-level", orDefault(env.pluginLog, "warn"), "--threads", strconv.Itoa(env.threads),
		"--chunk-size", strconv.Itoa(env.chunk), "--cuda-graph=" + strconv.FormatBool(!env.noGraph),
		"--gpu-profile=" + strconv.FormatBool(env.gpuProfile)}
	if env.memLimitFlag != "" {
		args = append(args, "--mem-limit", env.memLimitFlag)
	}
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Env = append(os.Environ(), cellChildEnv+"=1")
	var tail tailBuffer
	cmd.Stdout = io.Discard
	cmd.Stderr = io.MultiWriter(env.log, &tail)
	start := time.Now()
	runErr := cmd.Run()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	path := results.CellPath(env.out, id)
	if st, err := os.Stat(path); err == nil && !st.ModTime().Before(start.Add(-time.Second)) {
		rows, err := results.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("cell %s: reading what its process wrote: %w", id, err)
		}
		return rows, nil
	}
	msg := fmt.Sprintf("the cell's process failed without writing results (%v)", runErr)
	if t := strings.TrimSpace(tail.String()); t != "" {
		msg += ": " + t
	}
	if runErr == nil {
		msg = "the cell's process exited without writing results"
	}
	row := baseRow(env, c)
	row.Backend, row.DeviceName, row.AttnPlugin = results.BackendCUDA, "cuda", orName(c.Attn, "eager")
	row.Status, row.Error, row.References = results.StatusError, &msg, []string{}
	rows := []results.Row{row}
	if _, err := results.WriteCell(env.out, id, rows); err != nil {
		return nil, errors.Join(fmt.Errorf("cell %s: %s", id, msg), err)
	}
	return rows, nil
}

// tailBuffer keeps the last 2 KB written to it.
type tailBuffer struct{ b bytes.Buffer }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b.Write(p)
	if over := t.b.Len() - 2048; over > 0 {
		t.b.Next(over)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return t.b.String() }
