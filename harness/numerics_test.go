package main

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/longctx/longctx/engine/model"
	"github.com/longctx/longctx/harness/results"
)

// TestGenerateCPUNumericsBF16: --cpu-numerics reaches the CPU engine: the
// CLI's tokens are those of the engine loaded with the same numerics, and
// on llama2, whose greedy path in bf16 parts from the fp32 one (at step
// 18: engine/model compares both with transformers), the two modes differ.
func TestGenerateCPUNumericsBF16(t *testing.T) {
	dir := repoPath("engine", "model", "testdata", "tiny", "llama2")
	prompt := readTinyReference(t, "llama2").PromptIDs
	const steps = 24
	tokens := map[string][]int{}
	for _, name := range []string{"fp32", "bf16"} {
		stdout, _, err := runCLI(t, "generate", "--model", dir, "--prompt-ids", idList(prompt),
			"--max-new-tokens", strconv.Itoa(steps), "--ignore-eos", "--backend", "cpu", "--cpu-numerics", name, "--json")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var got generateOutput
		if err := json.Unmarshal([]byte(stdout), &got); err != nil {
			t.Fatalf("%s: output is not JSON: %v\n%s", name, err, stdout)
		}
		if got.Numerics != name {
			t.Errorf("numerics %q in the output, want %q", got.Numerics, name)
		}
		numerics, err := model.ParseNumerics(name)
		if err != nil {
			t.Fatal(err)
		}
		m, err := model.Load(dir, model.LoadOptions{Open: openSafetensors, Numerics: numerics})
		if err != nil {
			t.Fatal(err)
		}
		res, err := m.Generate(context.Background(), prompt, model.GenerateOptions{MaxNewTokens: steps, IgnoreStop: true})
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Tokens, res.Tokens) {
			t.Errorf("%s: CLI tokens\n got %v\nwant %v (the engine with %s numerics)", name, got.Tokens, res.Tokens, name)
		}
		tokens[name] = got.Tokens
	}
	if slices.Equal(tokens["fp32"], tokens["bf16"]) {
		t.Errorf("fp32 and bf16 numerics give the same tokens %v: the flag had no effect", tokens["bf16"])
	}
}

// TestRunCPUNumericsBF16: run --cpu-numerics bf16 writes a cell of its own,
// whose rows record the arithmetic of the model that was loaded (the
// runner takes it from the model's Info, so it shows the option reached
// model.Load); fp32, given or not, is the cell a run without the flag
// writes (IDs of earlier results stand).
func TestRunCPUNumericsBF16(t *testing.T) {
	dir := repoPath("engine", "model", "testdata", "tiny", "llama2")
	out := t.TempDir()
	cells := func() map[string]bool {
		t.Helper()
		done, err := results.Finished(out)
		if err != nil {
			t.Fatal(err)
		}
		return done
	}
	var fp32ID string
	for i, flag := range [][]string{nil, {"--cpu-numerics", "fp32"}, {"--cpu-numerics", "bf16"}} {
		args := append([]string{"run", "--model", dir, "--task", "synthetic", "--context", "40", "--max-new-tokens", "24",
			"--warmup", "0", "--backend", "cpu", "--out", out}, flag...)
		if _, _, err := runCLI(t, args...); err != nil {
			t.Fatalf("%v: %v", flag, err)
		}
		done := cells()
		if want := max(1, i); len(done) != want {
			t.Fatalf("after run %v: %d cells %v, want %d", flag, len(done), done, want)
		}
		for id := range done {
			bf16 := strings.Contains(id, "_bf16-")
			if !bf16 && fp32ID == "" {
				fp32ID = id
			}
			if !bf16 && id != fp32ID {
				t.Fatalf("fp32 cells %s and %s", fp32ID, id)
			}
			rows, err := results.ReadFile(results.CellPath(out, id))
			if err != nil {
				t.Fatal(err)
			}
			want := map[bool]string{false: "fp32", true: "bf16"}[bf16]
			for _, r := range rows {
				if r.Status != results.StatusOK || r.Numerics == nil || *r.Numerics != want {
					t.Fatalf("cell %s: row status %s, numerics %v, want %s", id, r.Status, r.Numerics, want)
				}
			}
		}
	}
}

func TestCPUNumericsErrors(t *testing.T) {
	tiny := repoPath("engine", "model", "testdata", "tiny", "qwen3")
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"unknown mode", []string{"--cpu-numerics", "fp16"}, []string{"--cpu-numerics", `"fp16"`, "want fp32 or bf16"}},
		{"bf16 with a plugin", []string{"--cpu-numerics", "bf16", "--attn", "eager"}, []string{"--cpu-numerics bf16", "--attn eager", "fp32"}},
	}
	commands := map[string][]string{
		"generate": {"generate", "--model", tiny, "--prompt-ids", "1,2", "--backend", "cpu"},
		"run":      {"run", "--model", tiny, "--context", "16", "--backend", "cpu", "--out", t.TempDir()},
	}
	for cmdName, base := range commands {
		for _, tc := range cases {
			t.Run(cmdName+" "+tc.name, func(t *testing.T) {
				args := append(append([]string(nil), base...), tc.args...)
				_, _, err := runCLI(t, args...)
				var ue usageError
				if !errors.As(err, &ue) {
					t.Fatalf("want a usage error, got %v", err)
				}
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
			})
		}
	}
}
