package sweep

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeHarnessEnv turns the test binary into a stand-in for
// `harness sweep run-cell`, so the Slurm test exercises the real script
// body and cells file without building the harness.
const fakeHarnessEnv = "LONGCTX_SWEEP_FAKE_HARNESS"

func TestMain(m *testing.M) {
	if os.Getenv(fakeHarnessEnv) == "1" {
		if err := fakeRunCell(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "fake harness:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// fakeRunCell handles `sweep run-cell --cells F --index I --out O` by
// writing O/<cell id>.done.
func fakeRunCell(args []string) error {
	if len(args) < 2 || args[0] != "sweep" || args[1] != "run-cell" {
		return fmt.Errorf("unexpected arguments %q", args)
	}
	fs := flag.NewFlagSet("run-cell", flag.ContinueOnError)
	cells := fs.String("cells", "", "")
	index := fs.Int("index", -1, "")
	out := fs.String("out", "", "")
	if err := fs.Parse(args[2:]); err != nil {
		return err
	}
	c, err := CellAt(*cells, *index)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(*out, c.ID()+".done"), []byte(c.Task), 0o644)
}

// TestSlurmEndToEnd submits a 3-task array to a real Slurm cluster (see
// tools/ci/slurm-up.sh). It runs only with LONGCTX_SLURM=1.
func TestSlurmEndToEnd(t *testing.T) {
	if os.Getenv("LONGCTX_SLURM") != "1" {
		t.Skip("set LONGCTX_SLURM=1 (with a cluster from tools/ci/slurm-up.sh) to run the Slurm end-to-end test")
	}
	if _, err := exec.LookPath("sbatch"); err != nil {
		t.Fatal("LONGCTX_SLURM=1 but sbatch is not on PATH: run tools/ci/slurm-up.sh first")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// Spaces in every path check the script's quoting against sbatch itself.
	root := filepath.Join(t.TempDir(), "slurm e2e")
	out := filepath.Join(root, "results dir")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	harness := filepath.Join(root, "fake harness")
	wrapper := "#!/bin/sh\n" + fakeHarnessEnv + "=1 exec " + shellQuote(exe) + " \"$@\"\n"
	if err := os.WriteFile(harness, []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}

	cells := testCells(4)
	all := ids(cells)
	// One cell is already finished: the array must cover the other three.
	done := func(id string) bool { return id == all[2] }
	spec := &Spec{Name: "e2e", Slurm: SlurmSpec{Time: "00:05:00", ArrayLimit: 2, Setup: []string{"echo setup ran"}}}
	job, err := PrepareSlurm(filepath.Join(root, "job"), spec, cells, done, SlurmOptions{Harness: harness, Out: out})
	if err != nil {
		t.Fatal(err)
	}
	if job.Pending != 3 {
		t.Fatalf("pending %d, want 3", job.Pending)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	id, err := Submit(ctx, job.Script)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("submitted job %s", id)
	if err := Wait(ctx, id, 500*time.Millisecond); err != nil {
		t.Fatalf("%v\n%s", err, taskLogs(filepath.Join(root, "job", SlurmLogDirName)))
	}
	for i, c := range cells {
		_, err := os.Stat(filepath.Join(out, c.ID()+".done"))
		if i == 2 && err == nil {
			t.Errorf("the finished cell %s ran again", c.ID())
		}
		if i != 2 && err != nil {
			t.Errorf("cell %d: %v\n%s", i, err, taskLogs(filepath.Join(root, "job", SlurmLogDirName)))
		}
	}
	logs, _ := filepath.Glob(filepath.Join(root, "job", SlurmLogDirName, id+"_*.log"))
	if len(logs) != 3 {
		t.Errorf("found %d task logs, want 3: %v", len(logs), logs)
	}
	for _, l := range logs {
		if b, _ := os.ReadFile(l); !strings.Contains(string(b), "setup ran") {
			t.Errorf("%s lacks the setup line's output: %q", l, b)
		}
	}

	// A task that fails must make Wait fail, naming it.
	bad := filepath.Join(root, "bad")
	job, err = PrepareSlurm(bad, spec, cells[:1], nil, SlurmOptions{Harness: harness, Out: filepath.Join(root, "missing")})
	if err != nil {
		t.Fatal(err)
	}
	id, err = Submit(ctx, job.Script)
	if err != nil {
		t.Fatal(err)
	}
	err = Wait(ctx, id, 500*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "task 0 FAILED") {
		t.Errorf("Wait on a failing task: %v", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Error("timed out waiting for Slurm")
	}
}

func taskLogs(dir string) string {
	paths, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	var b strings.Builder
	for _, p := range paths {
		data, _ := os.ReadFile(p)
		fmt.Fprintf(&b, "---- %s ----\n%s\n", p, data)
	}
	return b.String()
}
