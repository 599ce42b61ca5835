package chattemplate

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// configJSON builds a tokenizer_config.json document.
func configJSON(t *testing.T, fields map[string]any) []byte {
	t.Helper()
	data, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

var testMessages = []Message{
	{Role: "system", Content: "Be brief."},
	{Role: "user", Content: "Hi"},
}

func TestSpecialTokens(t *testing.T) {
	tests := []struct {
		name     string
		fields   map[string]any
		bos, eos string
	}{
		{"strings", map[string]any{"bos_token": "<s>", "eos_token": "</s>"}, "<s>", "</s>"},
		{"added token dicts", map[string]any{
			"bos_token": map[string]any{"__type": "AddedToken", "content": "<|begin_of_text|>", "lstrip": false},
			"eos_token": map[string]any{"content": "<|eot_id|>", "special": true},
		}, "<|begin_of_text|>", "<|eot_id|>"},
		{"null and absent", map[string]any{"bos_token": nil}, "", ""},
		{"empty string is set", map[string]any{"bos_token": "", "eos_token": "e"}, "", "e"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := Parse(configJSON(t, tt.fields), "tokenizer_config.json")
			if err != nil {
				t.Fatal(err)
			}
			if tmpl.BOS() != tt.bos || tmpl.EOS() != tt.eos {
				t.Fatalf("BOS, EOS = %q, %q; want %q, %q", tmpl.BOS(), tmpl.EOS(), tt.bos, tt.eos)
			}
			if tmpl.HasTemplate() {
				t.Fatal("HasTemplate() = true for a config without chat_template")
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		data string
		want string // substring of the error
	}{
		{"not JSON", `{"chat_template": `, "unexpected end of JSON"},
		{"not an object", `["a"]`, "cannot unmarshal"},
		{"null document", `null`, "not a JSON object"},
		{"template of wrong type", `{"chat_template": 7}`, "must be a string or a list"},
		{"list without default", `{"chat_template": [{"name": "tool_use", "template": "x"}]}`, `no template named "default" among ["tool_use"]`},
		{"list entry without template", `{"chat_template": [{"name": "default"}]}`, `entry 0 lacks`},
		{"token of wrong type", `{"bos_token": 1}`, "bos_token: must be a string or an object"},
		{"token object without content", `{"eos_token": {"special": true}}`, "eos_token: must be a string or an object"},
		{"extra token of wrong type", `{"extra_special_tokens": {"image_token": []}}`, "extra_special_tokens.image_token"},
		{"unclosed tag", `{"chat_template": "a\nb {% if x %"}`, "line 2: tag {% is never closed"},
		{"unclosed string", `{"chat_template": "{{ 'abc }}"}`, "unterminated string"},
		{"unbalanced bracket", `{"chat_template": "{{ a) }}"}`, `unexpected ')'`},
		{"unclosed raw", `{"chat_template": "{% raw %}x"}`, "raw block is never closed"},
		{"engine parse error keeps line", `{"chat_template": "  {% if true %}\n\n  {% frobnicate %}\n{% endif %}"}`, "line 3"},
		{"deep brackets", `{"chat_template": "{{ ` + strings.Repeat("(", maxNesting+1) + `1` + strings.Repeat(")", maxNesting+1) + ` }}"}`, "brackets nested deeper"},
		{"deep blocks", `{"chat_template": "` + strings.Repeat("{% if x %}", maxNesting+1) + strings.Repeat("{% endif %}", maxNesting+1) + `"}`, "blocks nested deeper"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.data), "models/x/tokenizer_config.json")
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "models/x/tokenizer_config.json") {
				t.Fatalf("error %q should name the file and contain %q", err, tt.want)
			}
		})
	}
}

func TestNestingWithinLimitParses(t *testing.T) {
	src := strings.Repeat("{% if true %}", maxNesting) + "{{ " + strings.Repeat("(", maxNesting) + "1" + strings.Repeat(")", maxNesting) + " }}" + strings.Repeat("{% endif %}", maxNesting)
	tmpl, err := Parse(configJSON(t, map[string]any{"chat_template": src}), "nested")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tmpl.Render(nil, Options{}); err != nil {
		t.Fatal(err)
	}
}

func TestNoTemplate(t *testing.T) {
	tmpl, err := Parse([]byte(`{"bos_token": "<s>", "chat_template": null}`), "llama2/tokenizer_config.json")
	if err != nil {
		t.Fatal(err)
	}
	if tmpl.HasTemplate() {
		t.Fatal("HasTemplate() = true")
	}
	_, err = tmpl.Render(testMessages, Options{})
	if !errors.Is(err, ErrNoTemplate) || !strings.Contains(err.Error(), "llama2/tokenizer_config.json") {
		t.Fatalf("error %v should wrap ErrNoTemplate and name the file", err)
	}
}

// TestLlama2HasNoTemplate uses the real Llama 2 config, which ships no template.
func TestLlama2HasNoTemplate(t *testing.T) {
	dir := npmTokenizer(t, "llama2")
	tmpl, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		BOS string `json:"bos_token"`
		EOS string `json:"eos_token"`
	}
	readJSON(t, filepath.Join(dir, ConfigFile), &cfg)
	if tmpl.HasTemplate() || tmpl.BOS() != cfg.BOS || tmpl.EOS() != cfg.EOS {
		t.Fatalf("HasTemplate, BOS, EOS = %v, %q, %q; want false, %q, %q", tmpl.HasTemplate(), tmpl.BOS(), tmpl.EOS(), cfg.BOS, cfg.EOS)
	}
	if _, err := tmpl.Render(testMessages, Options{}); !errors.Is(err, ErrNoTemplate) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("error %v should wrap ErrNoTemplate and name %s", err, dir)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	cfg := configJSON(t, map[string]any{
		"bos_token":     "<s>",
		"chat_template": "{{ bos_token }}{% for m in messages %}{{ m.role }}:{{ m.content }};{% endfor %}",
	})
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	fromBytes, err := Parse(cfg, "bytes")
	if err != nil {
		t.Fatal(err)
	}
	want, err := fromBytes.Render(testMessages, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{dir, filepath.Join(dir, ConfigFile)} {
		tmpl, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := tmpl.Render(testMessages, Options{})
		if err != nil || got != want {
			t.Fatalf("Load(%s): rendered %q, %v; Parse renders %q", path, got, err, want)
		}
	}

	if _, err := Load(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load of a missing path: %v", err)
	}
	if _, err := Load(t.TempDir()); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), ConfigFile) {
		t.Fatalf("Load of a folder without config: %v", err)
	}
}

// TestLoadTemplateFile checks that chat_template.jinja beside the config
// replaces the config's template, as in transformers.
func TestLoadTemplateFile(t *testing.T) {
	dir := t.TempDir()
	cfg := configJSON(t, map[string]any{"eos_token": "</s>", "chat_template": "FROM CONFIG"})
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	jinjaSrc := "{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}\n"
	if err := os.WriteFile(filepath.Join(dir, TemplateFile), []byte(jinjaSrc), 0o644); err != nil {
		t.Fatal(err)
	}
	fromFile, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	inline, err := Parse(configJSON(t, map[string]any{"eos_token": "</s>", "chat_template": jinjaSrc}), "inline")
	if err != nil {
		t.Fatal(err)
	}
	got, err1 := fromFile.Render(testMessages, Options{})
	want, err2 := inline.Render(testMessages, Options{})
	if err1 != nil || err2 != nil || got != want {
		t.Fatalf("chat_template.jinja renders %q (%v), want %q (%v)", got, err1, want, err2)
	}

	if err := os.WriteFile(filepath.Join(dir, TemplateFile), []byte("{% if %}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, TemplateFile)) {
		t.Fatalf("a bad chat_template.jinja gives %v; the error should name it", err)
	}
}

func TestRenderErrors(t *testing.T) {
	tests := []struct {
		name     string
		template string
		opts     Options
		want     string
	}{
		{"reserved extra messages", "x", Options{Extra: map[string]any{"messages": nil}}, `Options.Extra["messages"] is reserved`},
		{"reserved extra prompt flag", "x", Options{Extra: map[string]any{"add_generation_prompt": true}}, `Options.Extra["add_generation_prompt"] is reserved`},
		{"unsupported extra type", "x", Options{Extra: map[string]any{"when": time.Time{}}}, `Options.Extra["when"]: unsupported type time.Time`},
		{"bad extra JSON", "x", Options{Extra: map[string]any{"tools": json.RawMessage(`[{"a": 1}`)}}, `Options.Extra["tools"]: JSON`},
		{"trailing extra JSON", "x", Options{Extra: map[string]any{"tools": json.RawMessage(`[] []`)}}, `trailing data`},
		{"strftime unknown directive", "{{ strftime_now('%Q') }}", Options{}, "unsupported directive %Q"},
		{"strftime dangling percent", "{{ strftime_now('%') }}", Options{}, "incomplete directive"},
		{"strftime without format", "{{ strftime_now() }}", Options{}, "strftime_now takes one format string"},
		{"range of a string", "{{ range('3') }}", Options{}, "range: argument 1"},
		{"range overflow", "{{ range(-9223372036854775807, 9223372036854775807) }}", Options{}, "range too big"},
		{"range step zero", "{{ range(1, 2, 0) }}", Options{}, "step must not be zero"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := Parse(configJSON(t, map[string]any{"chat_template": tt.template}), "cfg.json")
			if err != nil {
				t.Fatal(err)
			}
			_, err = tmpl.Render(testMessages, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "cfg.json") {
				t.Fatalf("error %v should name cfg.json and contain %q", err, tt.want)
			}
		})
	}
}

func TestRaiseExceptionPropagates(t *testing.T) {
	tmpl, err := Parse(configJSON(t, map[string]any{
		"chat_template": "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% endfor %}",
	}), "cfg.json")
	if err != nil {
		t.Fatal(err)
	}
	_, err = tmpl.Render(testMessages, Options{})
	var raised *RaisedError
	if !errors.As(err, &raised) || raised.Message != "System role not supported" {
		t.Fatalf("error %v should be a RaisedError carrying the template's message", err)
	}
	if out, err := tmpl.Render(testMessages[1:], Options{}); err != nil || out != "" {
		t.Fatalf("without a system turn: %q, %v", out, err)
	}
}

func TestExtraValues(t *testing.T) {
	tmpl, err := Parse(configJSON(t, map[string]any{
		"chat_template": "{{ v|tojson }}",
	}), "cfg.json")
	if err != nil {
		t.Fatal(err)
	}
	// Each Go value must reach the template as the JSON value written
	// beside it (tojson of ardanlabs/jinja writes Python's spacing).
	tests := []struct {
		value any
		json  string
	}{
		{nil, `null`},
		{true, `true`},
		{int8(-3), `-3`},
		{uint32(7), `7`},
		{uint64(1 << 40), `1099511627776`},
		{float32(0.5), `0.5`},
		{"é\"", `"é\""`},
		{json.Number("12"), `12`},
		{json.Number("2.5"), `2.5`},
		{[]string{"a", "b"}, `["a", "b"]`},
		{[]any{1, "x", []any{false}}, `[1, "x", [false]]`},
		{map[string]any{"b": 1, "a": nil}, `{"a": null, "b": 1}`},
		{json.RawMessage(` {"z": 1, "a": [true, null, "s"], "m": {"y": 2, "x": 3}} `), `{"z": 1, "a": [true, null, "s"], "m": {"y": 2, "x": 3}}`},
	}
	for _, tt := range tests {
		got, err := tmpl.Render(nil, Options{Extra: map[string]any{"v": tt.value}})
		if err != nil || got != tt.json {
			t.Errorf("%T %v: rendered %s, %v; want %s", tt.value, tt.value, got, err, tt.json)
		}
	}
	if _, err := tmpl.Render(nil, Options{Extra: map[string]any{"v": uint64(1 << 63)}}); err == nil {
		t.Error("uint64 beyond int64 accepted")
	}
}

func TestConcurrentRender(t *testing.T) {
	tmpl, err := Parse(configJSON(t, map[string]any{
		"chat_template": "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{{ ns.n }}{{ m.content }}{% endfor %}",
	}), "cfg.json")
	if err != nil {
		t.Fatal(err)
	}
	want, err := tmpl.Render(testMessages, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			for range 50 {
				got, err := tmpl.Render(testMessages, Options{})
				if err != nil || got != want {
					errs <- errors.New("concurrent render differs: " + got)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
