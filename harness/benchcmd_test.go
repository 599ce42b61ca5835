package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/longctx/longctx/engine/cuda"
	"github.com/longctx/longctx/engine/kernelrun/attnbench"
	"github.com/longctx/longctx/plugins/host"
)

// Bad flags are refused before the GPU is looked for, as usage errors
// that name the flag.
func TestBenchAttentionFlagErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--attn", ""}, "--attn is required"},
		{[]string{"--phase", "prefill,train"}, `--phase: phase "train": want prefill or decode`},
		{[]string{"--n", "1k,0"}, `--n: size "0" is zero`},
		{[]string{"--n", "eight"}, "--n: size \"eight\""},
		{[]string{"--batch", "1,0"}, "--batch:"},
		{[]string{"--heads", "0"}, "--heads 0"},
		{[]string{"--kv-heads", "0"}, "--kv-heads 0"},
		{[]string{"--kv-heads", "5"}, "--kv-heads 5: --heads 32 is not a multiple"},
		{[]string{"--head-dim", "-1"}, "--head-dim -1"},
		{[]string{"--repeats", "0"}, "--repeats 0"},
		{[]string{"--max-iters", "0"}, "--max-iters 0"},
		{[]string{"--min-time", "0s"}, "--min-time 0s"},
		{[]string{"--max-time", "-1s"}, "--max-time -1s"},
		{[]string{"--copy-bytes", "lots"}, `--copy-bytes "lots"`},
		{[]string{"--copy-bytes", "4KiB"}, "at least 1MiB"},
		{[]string{"--kv-capacity", "16k", "--n", "8k,32k"}, "--kv-capacity 16384 is less than --n 32768"},
		{[]string{"--graph=maybe"}, "--graph"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, _, err := runCLI(t, append([]string{"bench", "attention"}, tc.args...)...)
			var ue usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want a usage error containing %q", err, tc.want)
			}
		})
	}
}

// The flags become the sweep: phases outer, then batches, then N, each
// phase once.
func TestBenchAttentionSweep(t *testing.T) {
	tests := []struct {
		args   []string
		shapes int
		first  attnbench.Shape
		last   attnbench.Shape
		maxSeq int
	}{
		{nil, 2 * 2 * 7,
			attnbench.Shape{Phase: attnbench.Prefill, Batch: 1, N: 1024, Heads: 32, KVHeads: 8, HeadDim: 128},
			attnbench.Shape{Phase: attnbench.Decode, Batch: 8, N: 65536, Heads: 32, KVHeads: 8, HeadDim: 128}, 65536},
		{[]string{"--phase", "decode,decode", "--n", "32k", "--batch", "8,1", "--heads", "16", "--kv-heads", "2", "--head-dim", "64", "--kv-capacity", "64k"}, 2,
			attnbench.Shape{Phase: attnbench.Decode, Batch: 8, N: 32768, Heads: 16, KVHeads: 2, HeadDim: 64, MaxKV: 65536},
			attnbench.Shape{Phase: attnbench.Decode, Batch: 1, N: 32768, Heads: 16, KVHeads: 2, HeadDim: 64, MaxKV: 65536}, 65536},
		{[]string{"--phase", "decode", "--n", "4k", "--batch", "1", "--cold-l2"}, 1,
			attnbench.Shape{Phase: attnbench.Decode, Batch: 1, N: 4096, Heads: 32, KVHeads: 8, HeadDim: 128},
			attnbench.Shape{Phase: attnbench.Decode, Batch: 1, N: 4096, Heads: 32, KVHeads: 8, HeadDim: 128}, 4096},
	}
	for _, tc := range tests {
		var f benchAttnFlags
		cmd := benchAttentionCommand(&f)
		if err := cmd.ParseFlags(tc.args); err != nil {
			t.Fatal(err)
		}
		c, err := f.check(cmd)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if c.opts.ColdL2 != slices.Contains(tc.args, "--cold-l2") {
			t.Errorf("%v: cold L2 %v", tc.args, c.opts.ColdL2)
		}
		if len(c.shapes) != tc.shapes || c.shapes[0] != tc.first || c.shapes[len(c.shapes)-1] != tc.last || c.maxSeq != tc.maxSeq {
			t.Errorf("%v: %d shapes %v … %v, max seq %d; want %d, %v … %v, %d", tc.args, len(c.shapes), c.shapes[0], c.shapes[len(c.shapes)-1], c.maxSeq,
				tc.shapes, tc.first, tc.last, tc.maxSeq)
		}
	}
}

// Without a usable GPU the command says so, after the flags are checked
// and before anything is written.
func TestBenchAttentionNoGPU(t *testing.T) {
	if cudaUsable() == nil {
		t.Skip("this machine has a usable GPU")
	}
	out := filepath.Join(t.TempDir(), "rows.jsonl")
	_, _, err := runCLI(t, "bench", "attention", "--attn", "eager", "--n", "1k", "--out", out)
	var ue usageError
	if err == nil || errors.As(err, &ue) || !strings.Contains(err.Error(), "harness bench attention needs a GPU") ||
		!strings.Contains(err.Error(), "harness doctor") {
		t.Fatalf("error %v, want the no-GPU error", err)
	}
	if errors.Is(cudaUsable(), cuda.ErrNoDriver) && !errors.Is(err, cuda.ErrNoDriver) {
		t.Errorf("error %v does not wrap the driver's", err)
	}
	if _, serr := os.Stat(out); !os.IsNotExist(serr) {
		t.Errorf("--out written without a GPU: %v", serr)
	}
}

// Rows carry the fields tools/refgen/attn_bench.py writes and
// attn_table.py reads: null figures for an oom row, and the decode
// bandwidth as a share of the copy bandwidth.
// rowJSON is r as its JSON line reads back: field names to values.
func rowJSON(t *testing.T, r benchAttnRow) map[string]any {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestBenchAttentionRows(t *testing.T) {
	base := benchAttnRow{Source: "harness", Card: "NVIDIA H100 80GB HBM3", Driver: "13.0", Date: "2026-01-02T03:04:05Z",
		Plugin: "flash", PluginVersion: "0.3.0", CopyGBPS: ptr(3000.0), L2: "warm", L2Bytes: 50 << 20}
	dec := attnbench.Shape{Phase: attnbench.Decode, Batch: 8, N: 32768, Heads: 32, KVHeads: 8, HeadDim: 128}
	pre := attnbench.Shape{Phase: attnbench.Prefill, Batch: 8, N: 65536, Heads: 32, KVHeads: 8, HeadDim: 128}
	ok := benchRow(base, attnbench.Result{Shape: dec, Status: attnbench.StatusOK, MS: 0.4, MinMS: 0.39, TFLOPS: 10.7, GBps: 2684.4, Iters: 128, Repeats: 5, Graph: true})
	oom := benchRow(base, attnbench.Result{Shape: pre, Status: attnbench.StatusOOM, Err: errors.New("workspace: cuMemAlloc: CUDA_ERROR_OUT_OF_MEMORY")})

	var got []map[string]any
	for _, r := range []benchAttnRow{ok, oom} {
		got = append(got, rowJSON(t, r))
	}
	for _, key := range []string{"source", "card", "driver", "date", "plugin", "phase", "batch", "n", "heads", "kv_heads", "head_dim",
		"status", "ms", "tflops", "gbps", "copy_gbps", "gbps_counts", "l2", "l2_bytes"} {
		for i, m := range got {
			if _, present := m[key]; !present {
				t.Errorf("row %d has no %q: %v", i, key, m)
			}
		}
	}
	if got[0]["phase"] != "decode" || got[0]["n"] != 32768.0 || got[0]["timing"] != "graph" || got[0]["gbps_counts"] != "K+V read" ||
		got[0]["l2"] != "warm" || got[0]["input_sets"] != 1.0 {
		t.Errorf("decode row %v", got[0])
	}
	if pct, _ := got[0]["pct_copy"].(float64); pct < 89.4 || pct > 89.5 {
		t.Errorf("pct_copy %v, want 2684.4/3000 = 89.48%%", got[0]["pct_copy"])
	}
	if got[1]["status"] != "oom" || got[1]["ms"] != nil || got[1]["tflops"] != nil || got[1]["gbps"] != nil ||
		!strings.Contains(got[1]["error"].(string), "OUT_OF_MEMORY") || got[1]["pct_copy"] != nil {
		t.Errorf("oom row %v", got[1])
	}

	var table strings.Builder
	printBenchTable(&table, base, "1GiB", []benchAttnRow{ok, oom})
	for _, want := range []string{"device copy bandwidth: 3000 GB/s", "NVIDIA H100 80GB HBM3", "CUDA_ERROR_OUT_OF_MEMORY"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	lines := map[string]bool{}
	for _, l := range strings.Split(table.String(), "\n") {
		lines[strings.Join(strings.Fields(l), " ")] = true
	}
	for _, want := range []string{"decode 8 32768 ok 0.4000 10.7 2684 89%", "prefill 8 65536 oom - - - -", "L2: warm: every launch reads the same inputs, and what one leaves in the 50 MiB L2 serves the next (--cold-l2: not)"} {
		if !lines[want] {
			t.Errorf("table lacks the row %q:\n%s", want, table.String())
		}
	}
}

// --cold-l2 rows say so, with their input sets, in the JSON lines and in
// the table, and a run with fewer sets than the rule asked for carries its
// note to both.
func TestBenchAttentionColdRows(t *testing.T) {
	base := benchAttnRow{Source: "harness", Card: "NVIDIA H100 80GB HBM3", Driver: "13.0", Date: "2026-01-02T03:04:05Z",
		Plugin: "flash", PluginVersion: "0.3.0", CopyGBPS: ptr(3000.0), L2: "cold", L2Bytes: 50 << 20}
	dec := attnbench.Shape{Phase: attnbench.Decode, Batch: 1, N: 4096, Heads: 32, KVHeads: 8, HeadDim: 128}
	big := attnbench.Shape{Phase: attnbench.Decode, Batch: 8, N: 32768, Heads: 32, KVHeads: 8, HeadDim: 128}
	pre := attnbench.Shape{Phase: attnbench.Prefill, Batch: 8, N: 65536, Heads: 32, KVHeads: 8, HeadDim: 128}
	note := "cold L2: only 3 of 26 input sets fit in device memory, together 0.5× the L2"
	rows := []benchAttnRow{
		benchRow(base, attnbench.Result{Shape: dec, Status: attnbench.StatusOK, MS: 0.012, MinMS: 0.011, TFLOPS: 1.4, GBps: 1398, Iters: 4992, Repeats: 5, Graph: true,
			ColdL2: true, InputSets: 26, InputSetBytes: dec.InputBytes(), L2Bytes: 50 << 20}),
		benchRow(base, attnbench.Result{Shape: big, Status: attnbench.StatusOK, MS: 0.4, MinMS: 0.39, TFLOPS: 10.7, GBps: 2684.4, Iters: 128, Repeats: 5, Graph: true,
			ColdL2: true, InputSets: 3, InputSetBytes: big.InputBytes(), L2Bytes: 50 << 20, Note: note}),
		benchRow(base, attnbench.Result{Shape: pre, Status: attnbench.StatusOOM, ColdL2: true, InputSets: 2, InputSetBytes: pre.InputBytes(), L2Bytes: 50 << 20,
			Err: errors.New("cold L2: input set 2 of 2: Q of input set 1: cuMemAlloc: CUDA_ERROR_OUT_OF_MEMORY")}),
	}
	for i, r := range rows {
		m := rowJSON(t, r)
		if m["l2"] != "cold" || m["l2_bytes"] != float64(50<<20) || m["input_sets"] != float64(r.InputSets) || m["input_set_bytes"] != float64(r.InputSetBytes) {
			t.Errorf("row %d: %v", i, m)
		}
		if (i == 1) != (m["note"] == note) {
			t.Errorf("row %d: note %v", i, m["note"])
		}
	}
	if got := dec.InputBytes(); got != 4096*8*128*2*2+32*128*2 {
		t.Errorf("4k decode input set %d bytes", got)
	}
	var table strings.Builder
	printBenchTable(&table, base, "1GiB", rows)
	lines := map[string]bool{}
	for _, l := range strings.Split(table.String(), "\n") {
		lines[strings.Join(strings.Fields(l), " ")] = true
	}
	for _, want := range []string{
		`L2: cold (--cold-l2): launches take input sets (Q, K, V of their own) in turn, as many ("sets") as hold ≥ 4× the 50 MiB L2 together, at least 8`,
		"phase batch N status ms TFLOP/s GB/s % copy sets",
		"decode 1 4096 ok 0.0120 1.4 1398 47% 26",
		"decode 8 32768 ok 0.4000 10.7 2684 89% 3*",
		"prefill 8 65536 oom - - - - -",
		"decode batch 8 N 32768: * " + note,
	} {
		if !lines[want] {
			t.Errorf("table lacks the line %q:\n%s", want, table.String())
		}
	}
	if p := benchProgress(rows[0]); !strings.Contains(p, "(L2 cold: 26 input sets)") {
		t.Errorf("progress %q", p)
	}
}

// TestGPUBenchAttentionEager runs a small sweep of the eager plugin's
// kernels through the command, with the plugin built as 'make plugins'
// does.
func TestGPUBenchAttentionEager(t *testing.T) {
	if os.Getenv("LONGCTX_GPU") != "1" {
		t.Skip("GPU test: set LONGCTX_GPU=1 on a machine with an NVIDIA GPU to run it")
	}
	// The plugin 'make plugins' built, where the GPU machine has no Go
	// toolchain; else build it.
	root := filepath.Join("..", "plugins")
	if _, err := os.Stat(filepath.Join(root, "attention", "eager", "plugin.json")); err != nil {
		root = t.TempDir()
		exe := filepath.Join(root, "attention", "eager", "eager")
		if out, err := exec.Command("go", "build", "-o", exe, "../plugins/attention/eager/cmd").CombinedOutput(); err != nil {
			t.Fatalf("building the eager plugin: %v\n%s", err, out)
		}
		if _, err := host.WriteManifest(context.Background(), exe, host.Config{}); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv(host.EnvPluginPath, root)
	out := filepath.Join(t.TempDir(), "eager.jsonl")
	stdout, stderr, err := runCLI(t, "bench", "attention", "--attn", "eager", "--n", "512,2k", "--batch", "1,2",
		"--min-time", "5ms", "--repeats", "2", "--copy-bytes", "256MiB", "--out", out)
	t.Logf("%s\n%s", stdout, stderr)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []benchAttnRow
	for sc := bufio.NewScanner(f); sc.Scan(); {
		var r benchAttnRow
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, r)
	}
	if len(rows) != 2*2*2 {
		t.Fatalf("%d rows, want 8", len(rows))
	}
	for _, r := range rows {
		if r.Status != "ok" || r.MS == nil || !(*r.MS > 0) || r.CopyGBPS == nil || !(*r.CopyGBPS > 100) || r.Plugin != "eager" || r.Card == "" {
			t.Fatalf("row %+v", r)
		}
		sh := attnbench.Shape{Phase: attnbench.Phase(r.Phase), Batch: r.Batch, N: r.N, Heads: 32, KVHeads: 8, HeadDim: 128}
		if want := sh.FLOPs() / (*r.MS / 1e3) / 1e12; *r.TFLOPS < 0.999*want || *r.TFLOPS > 1.001*want {
			t.Errorf("%v: %.3f TFLOP/s, want %.3f from %.4f ms", sh, *r.TFLOPS, want, *r.MS)
		}
		if (r.Phase == "decode") != (r.PctCopy != nil) {
			t.Errorf("%v: pct_copy %v", sh, r.PctCopy)
		}
	}
	if !strings.Contains(stdout, "device copy bandwidth:") || !strings.Contains(stdout, "% copy") {
		t.Errorf("table lacks the copy bandwidth:\n%s", stdout)
	}
}
