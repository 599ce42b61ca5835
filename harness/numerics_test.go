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

func TestGenerateCPUNumericsErrors(t *testing.T) {
	tiny := repoPath("engine", "model", "testdata", "tiny", "qwen3")
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"unknown mode", []string{"--cpu-numerics", "fp16"}, []string{"--cpu-numerics", `"fp16"`, "want fp32 or bf16"}},
		{"bf16 with a plugin", []string{"--cpu-numerics", "bf16", "--attn", "eager"}, []string{"--cpu-numerics bf16", "--attn eager", "fp32"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"generate", "--model", tiny, "--prompt-ids", "1,2", "--backend", "cpu"}, tc.args...)
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
