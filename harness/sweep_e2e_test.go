package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/longctx/longctx/harness/results"
)

var (
	harnessOnce sync.Once
	harnessBin  string
	harnessErr  error
)

// harnessBinary builds the real harness once per test binary: Slurm tasks
// and the kill-and-resume test need a process of their own.
func harnessBinary(t *testing.T) string {
	t.Helper()
	harnessOnce.Do(func() {
		dir, err := os.MkdirTemp("", "longctx-harness-bin-")
		if err != nil {
			harnessErr = err
			return
		}
		harnessBin = filepath.Join(dir, "harness")
		cmd := exec.Command("go", "build", "-o", harnessBin, ".")
		if out, err := cmd.CombinedOutput(); err != nil {
			harnessErr = err
			t.Logf("%s", out)
		}
	})
	if harnessErr != nil {
		t.Fatalf("building harness: %v", harnessErr)
	}
	return harnessBin
}

const smallSweep = `name: e2e
models: [synthetic:tiny]
tasks: [synthetic]
contexts: [64, 96, 128, 160, 192, 224]
batches: [1]
max_new_tokens: 4
warmup: 0
repeat: 2
`

func writeSpec(t *testing.T, dir, body string) string {
	t.Helper()
	path := filepath.Join(dir, "sweep.yaml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// rowsPerCell reads every cell file and counts its measured rows.
func rowsPerCell(t *testing.T, out string) map[string]int {
	t.Helper()
	rows, err := results.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, r := range rows {
		if r.Status != results.StatusOK {
			t.Errorf("cell %s: status %s: %v", r.CellID, r.Status, r.Error)
		}
		n[r.CellID]++
	}
	return n
}

// A sweep killed mid-way resumes: the rerun skips the finished cells, runs
// the rest, and every cell ends with exactly its rows, none lost or doubled.
func TestSweepKilledMidwayResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the harness")
	}
	bin := harnessBinary(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "results")
	spec := writeSpec(t, dir, smallSweep)

	cmd := exec.Command(bin, "sweep", spec, "--out", out)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		files, _ := filepath.Glob(filepath.Join(out, "*.parquet"))
		if len(files) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("no cell finished within 60 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	before := rowsPerCell(t, out)
	if len(before) == 0 || len(before) == 6 {
		t.Fatalf("the kill should land mid-sweep; %d of 6 cells were finished", len(before))
	}

	rerun, err := exec.Command(bin, "sweep", spec, "--out", out).CombinedOutput()
	if err != nil {
		t.Fatalf("rerun: %v\n%s", err, rerun)
	}
	if !strings.Contains(string(rerun), "finished earlier") {
		t.Errorf("rerun does not report skipped cells:\n%s", rerun)
	}
	after := rowsPerCell(t, out)
	if len(after) != 6 {
		t.Fatalf("%d cells after the rerun, want 6", len(after))
	}
	for id, n := range after {
		if n != 2 { // repeat 2 × batch 1
			t.Errorf("cell %s has %d rows, want 2", id, n)
		}
	}
	for id := range before {
		if after[id] != before[id] {
			t.Errorf("finished cell %s was rewritten: %d rows before, %d after", id, before[id], after[id])
		}
	}
	leftovers, _ := filepath.Glob(filepath.Join(out, ".*.tmp"))
	t.Logf("%d temp files left by the kill (ignored by readers)", len(leftovers))
}

// A small CPU sweep through a real Slurm cluster (CI starts one with
// tools/ci/slurm-up.sh and sets LONGCTX_SLURM=1).
func TestSweepOnSlurm(t *testing.T) {
	if os.Getenv("LONGCTX_SLURM") != "1" {
		t.Skip("set LONGCTX_SLURM=1 with a running Slurm cluster (tools/ci/slurm-up.sh)")
	}
	if _, err := exec.LookPath("sbatch"); err != nil {
		t.Fatalf("LONGCTX_SLURM=1 but sbatch is not on PATH: %v", err)
	}
	bin := harnessBinary(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "results")
	spec := writeSpec(t, dir, strings.Replace(smallSweep, "contexts: [64, 96, 128, 160, 192, 224]", "contexts: [64, 128, 192]", 1)+
		"executor: slurm\nslurm:\n  time: \"00:10:00\"\n")
	stdout, err := exec.Command(bin, "sweep", spec, "--out", out, "--wait").CombinedOutput()
	if err != nil {
		logs, _ := filepath.Glob(filepath.Join(out, "slurm", "slurm-logs", "*"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			t.Logf("%s:\n%s", l, b)
		}
		t.Fatalf("slurm sweep: %v\n%s", err, stdout)
	}
	after := rowsPerCell(t, out)
	if len(after) != 3 {
		t.Fatalf("%d cells written through Slurm, want 3:\n%s", len(after), stdout)
	}
	for id, n := range after {
		if n != 2 {
			t.Errorf("cell %s has %d rows, want 2", id, n)
		}
	}
	// Resubmitting finds nothing to do.
	again, err := exec.Command(bin, "sweep", spec, "--out", out, "--wait").CombinedOutput()
	if err != nil || !strings.Contains(string(again), "nothing to submit") {
		t.Errorf("resubmit: %v\n%s", err, again)
	}
}

// TestGPUCellsRunInTheirOwnProcess: a sweep's CUDA cells run in child
// harness processes (a faulting kernel leaves CUDA unusable for its whole
// process); on a machine without a GPU each such cell is an error row
// naming the missing driver, written through the child, and the sweep
// goes on to the next cell.
func TestGPUCellsRunInTheirOwnProcess(t *testing.T) {
	if cudaUsable() == nil {
		t.Skip("this machine has a usable GPU: the cells would run")
	}
	bin := harnessBinary(t)
	dir := t.TempDir()
	spec := writeSpec(t, dir, `name: gpu-cells
backend: cuda
models: [synthetic:tiny]
tasks: [synthetic]
contexts: [64, 96]
batches: [1]
max_new_tokens: 2
warmup: 0
repeat: 1
`)
	out := filepath.Join(dir, "out")
	cmd := exec.Command(bin, "sweep", spec, "--out", out, "--chunk-size", "32", "--cuda-graph=false")
	cmd.Env = append(os.Environ(), cellChildEnv+"=")
	combined, _ := cmd.CombinedOutput()
	rows, err := results.ReadDir(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, combined)
	}
	if len(rows) != 2 {
		t.Fatalf("%d rows, want one per cell\n%s", len(rows), combined)
	}
	for _, r := range rows {
		if r.Status != results.StatusError || r.Error == nil || !strings.Contains(*r.Error, "CUDA driver") {
			t.Errorf("cell %s: status %s, error %v; want an error naming the CUDA driver", r.CellID, r.Status, r.Error)
		}
		if r.Backend != results.BackendCUDA {
			t.Errorf("cell %s: backend %q", r.CellID, r.Backend)
		}
	}
}

// TestGPUFaultyPluginFailsOnlyItsCell: on a GPU, a sweep whose first
// attention plugin delivers a kernel that faults (harness/testdata/badkernel)
// records that cell as an error and still runs the eager cell after it,
// because each GPU cell has a process of its own.
func TestGPUFaultyPluginFailsOnlyItsCell(t *testing.T) {
	if os.Getenv("LONGCTX_GPU") != "1" {
		t.Skip("GPU test: set LONGCTX_GPU=1 on a machine with an NVIDIA GPU to run it")
	}
	bin := harnessBinary(t)
	dir := t.TempDir()
	plugin := filepath.Join(dir, "badkernel")
	if out, err := exec.Command("go", "build", "-o", filepath.Join(plugin, "badkernel"), "./testdata/badkernel").CombinedOutput(); err != nil {
		t.Fatalf("building the plugin: %v\n%s", err, out)
	}
	if out, err := exec.Command("go", "run", "../tools/plugin-manifest", plugin).CombinedOutput(); err != nil {
		t.Fatalf("writing its manifest: %v\n%s", err, out)
	}
	spec := writeSpec(t, dir, `name: faulty
backend: cuda
models: [synthetic:tiny]
attn: [`+plugin+`, eager]
tasks: [synthetic]
contexts: [64]
batches: [1]
max_new_tokens: 2
warmup: 0
repeat: 1
`)
	out := filepath.Join(dir, "out")
	combined, _ := exec.Command(bin, "sweep", spec, "--out", out).CombinedOutput()
	rows, err := results.ReadDir(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, combined)
	}
	status := map[string]string{}
	for _, r := range rows {
		status[r.AttnPlugin] = r.Status
		// The fault surfaces at the next call that touches the device: a
		// synchronisation, an allocation or a cuBLASLt launch.
		if r.AttnPlugin == "badkernel" && r.Error == nil {
			t.Errorf("badkernel cell has no error message")
		}
	}
	if status["badkernel"] != results.StatusError || status["eager"] != results.StatusOK {
		t.Fatalf("statuses %v: want badkernel error and eager ok\n%s", status, combined)
	}
}
