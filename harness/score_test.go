package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// buildEvaluator compiles a built-in scorer to WASI, as 'make evaluators' does.
func buildEvaluator(t *testing.T, name string) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name+".wasm"), "./evaluators/builtin/"+name)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", name, err, out)
	}
	return dir
}

func TestScoreCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a WASM module")
	}
	t.Setenv("LONGCTX_EVALUATOR_PATH", buildEvaluator(t, "squad"))
	preds := filepath.Join(t.TempDir(), "preds.jsonl")
	lines := `{"id": "q1", "prediction": "The Eiffel Tower!", "references": ["Eiffel tower", "tower"]}
{"id": "q2", "prediction": "in Lisbon, Portugal", "references": ["Lisbon"]}
{"id": "q3", "prediction": "", "references": ["seven"]}
`
	if err := os.WriteFile(preds, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, _, err := runCLI(t, "score", "--evaluator", "squad", "--input", preds, "--json")
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(stdout))
	var got []map[string]any
	for dec.More() {
		var v map[string]any
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	if len(got) != 4 {
		t.Fatalf("want 3 item lines and an aggregate, got %d:\n%s", len(got), stdout)
	}
	scores := func(i int) map[string]any { return got[i]["scores"].(map[string]any) }
	// SQuAD normalisation: "the" and "!" go, case folds: an exact match.
	if s := scores(0); s["em"] != 1.0 || s["f1"] != 1.0 {
		t.Errorf("q1 scores %v", s)
	}
	// "in lisbon portugal" vs "lisbon": precision 1/3, recall 1, F1 0.5.
	if s := scores(1); s["em"] != 0.0 || s["f1"] != 0.5 {
		t.Errorf("q2 scores %v", s)
	}
	agg := got[3]["aggregate"].([]any)
	if len(agg) != 2 || agg[0].(map[string]any)["name"] != "em" || agg[0].(map[string]any)["mean"] != 1.0/3 {
		t.Errorf("aggregate %v", agg)
	}

	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	if err := os.WriteFile(bad, []byte(lines+"{\"id\": \"q4\", \"prediction\": 3}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCLI(t, "score", "--evaluator", "squad", "--input", bad); err == nil || !strings.Contains(err.Error(), "bad.jsonl:4") {
		t.Errorf("malformed input: %v (want the file and line named)", err)
	}
	if _, _, err := runCLI(t, "score", "--evaluator", "nosuch", "--input", preds); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("unknown evaluator: %v", err)
	}
	stdout, _, err = runCLI(t, "evaluators", "list", "--json")
	if err != nil || !strings.Contains(stdout, `"squad"`) || !strings.Contains(stdout, `"f1"`) {
		t.Errorf("evaluators list: %v\n%s", err, stdout)
	}
}

func TestParseBytes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"512MiB", 512 << 20, true}, {"2GiB", 2 << 30, true}, {"64MB", 64e6, true}, {"1024", 1024, true},
		{"1.5KiB", 1536, true}, {"", 0, false}, {"-1MiB", 0, false}, {"lots", 0, false},
	} {
		got, err := parseBytes(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
