package main

import (
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/longctx/longctx/harness/results"
)

type runOutput struct {
	Cells []cellSummary `json:"cells"`
	OOM   *oomSearch    `json:"find_oom"`
}

func runJSON(t *testing.T, args ...string) runOutput {
	t.Helper()
	stdout, stderr, err := runCLI(t, append(args, "--json")...)
	if err != nil {
		t.Fatalf("%v\nstderr: %s", err, stderr)
	}
	var out runOutput
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, stdout)
	}
	return out
}

// End to end through real plugin processes and a real WASM evaluator: a
// needle run on the synthetic tiny model over three contexts, one of them
// too short for the needle template (a failing cell) and one over the
// memory limit (an injected OOM). Both become rows; the others run.
func TestRunNeedleWithFailingAndOOMCells(t *testing.T) {
	if testing.Short() {
		t.Skip("builds plugins and an evaluator")
	}
	t.Setenv("LONGCTX_PLUGIN_PATH", builtPlugins(t))
	t.Setenv("LONGCTX_EVALUATOR_PATH", buildEvaluator(t, "needle"))
	out := filepath.Join(t.TempDir(), "results")
	args := []string{"run", "--model", "synthetic:tiny", "--task", "needle", "--context", "16,256,30000",
		"--depths", "0,1", "--max-new-tokens", "4", "--warmup", "0", "--attn", "flash", "--kv", "l2",
		"--kv-opt", "ratio=0.5", "--mem-limit", "96MiB", "--out", out}
	res := runJSON(t, args...)
	if len(res.Cells) != 3 {
		t.Fatalf("want 3 cells, got %+v", res.Cells)
	}
	short, ok, big := res.Cells[0], res.Cells[1], res.Cells[2]
	if short.Errors != 1 || !strings.Contains(short.FirstError, "16") {
		t.Errorf("16-token cell: %+v, want one error row", short)
	}
	if ok.OK != 2 || ok.Requests != 2 || ok.Scores == nil {
		t.Errorf("256-token cell: %+v, want 2 ok rows with scores", ok)
	}
	if big.OOM == 0 || !strings.Contains(big.FirstError, "out of memory") {
		t.Errorf("30000-token cell: %+v, want oom rows", big)
	}

	rows, err := results.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	var okRows int
	for _, r := range rows {
		if r.Status != results.StatusOK {
			continue
		}
		okRows++
		if !r.Synthetic || r.AttnPlugin != "flash" || r.KVPlugin != "l2" || r.KVRatio == nil || *r.KVRatio != 0.5 ||
			r.Depth == nil || r.TTFTms == nil || r.KVBytesPrefill == nil || len(r.References) != 1 {
			t.Errorf("ok row lacks run or request fields: %+v", r)
		}
		if _, scored := r.Scores["string_match_all"]; !scored {
			t.Errorf("row %s has no needle score: %v", r.SampleID, r.Scores)
		}
		// L2 at ratio 0.5 keeps floor(n/2) of each head's n prompt tokens.
		perToken := int64(4 * 4 * 32 * 2 * 4) // layers × kv heads × head dim × K,V × fp32
		if want := r.PromptTokens / 2 * perToken; *r.KVBytesPrefill != want {
			t.Errorf("kv_bytes_prefill %d for %d prompt tokens, want %d", *r.KVBytesPrefill, r.PromptTokens, want)
		}
	}
	if okRows != 2 {
		t.Errorf("%d ok rows in the Parquet files, want 2", okRows)
	}

	// A rerun keeps the ok and oom cells and runs the failed one again.
	res = runJSON(t, args...)
	if !res.Cells[1].Skipped || !res.Cells[2].Skipped || res.Cells[0].Skipped {
		t.Errorf("rerun: skipped = %v %v %v, want false true true", res.Cells[0].Skipped, res.Cells[1].Skipped, res.Cells[2].Skipped)
	}
}

func TestRunFindOOM(t *testing.T) {
	out := filepath.Join(t.TempDir(), "results")
	res := runJSON(t, "run", "--model", "synthetic:tiny", "--task", "synthetic", "--context", "64", "--max-new-tokens", "2",
		"--warmup", "0", "--mem-limit", "24MiB", "--find-oom", "--out", out)
	if res.OOM == nil {
		t.Fatal("no find_oom result")
	}
	o := res.OOM
	if o.LargestFit < 64 || o.SmallestFail <= o.LargestFit || o.SmallestFail-o.LargestFit > max(16, o.LargestFit/64) {
		t.Errorf("threshold bracket %+v is not tight", o)
	}
	// The bracket is real: one more probe at each end agrees.
	for _, c := range []struct {
		ctx  int
		fits bool
	}{{o.LargestFit, true}, {o.SmallestFail, false}} {
		r := runJSON(t, "run", "--model", "synthetic:tiny", "--task", "synthetic", "--context", strconv.Itoa(c.ctx), "--max-new-tokens", "2",
			"--warmup", "0", "--mem-limit", "24MiB", "--out", out)
		if got := r.Cells[0].fits(); got != c.fits {
			t.Errorf("context %d fits = %v, want %v", c.ctx, got, c.fits)
		}
	}
}
