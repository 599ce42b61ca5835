// Package chattemplate renders the chat template of a Hugging Face tokenizer
// (tokenizer_config.json) the way transformers'
// tokenizer.apply_chat_template(messages, tokenize=False,
// add_generation_prompt=...) does, using github.com/ardanlabs/jinja.
//
// transformers compiles templates in an ImmutableSandboxedEnvironment with
// trim_blocks=True and lstrip_blocks=True, replaces the tojson filter, adds
// raise_exception and strftime_now, and renders with messages, tools=None,
// documents=None, add_generation_prompt, the tokenizer's named special
// tokens and the caller's extra keyword arguments. This package builds the
// same context; whitespace handling is done by prepareSource (lexer.go)
// because the engine's own differs from Jinja2's.
package chattemplate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ardanlabs/jinja"
)

// ConfigFile is the file Load reads from a tokenizer folder.
const ConfigFile = "tokenizer_config.json"

// TemplateFile is the separate template file newer Hugging Face checkpoints
// ship; when present beside the config it replaces the config's default
// template, as it does in transformers.
const TemplateFile = "chat_template.jinja"

// ErrNoTemplate is returned (wrapped, naming the file) by Render when the
// tokenizer config has no chat template, as with Llama 2 base models.
var ErrNoTemplate = errors.New("tokenizer config has no chat_template")

// Message is one turn of a conversation.
type Message struct {
	Role    string
	Content string
}

// Options are the per-render arguments of apply_chat_template.
type Options struct {
	// AddGenerationPrompt appends the header that starts an assistant turn.
	AddGenerationPrompt bool
	// Extra holds additional template variables (apply_chat_template's
	// **kwargs), e.g. {"enable_thinking": false}. They override the special
	// tokens and may set "tools" or "documents"; "messages" and
	// "add_generation_prompt" are refused. Values may be nil, bool, string,
	// any integer or float, json.Number, json.RawMessage (decoded keeping
	// key order, which tojson reproduces), []any, []string, map[string]any
	// (keys sorted) or a jinja.Value.
	Extra map[string]any
	// Now is the clock behind strftime_now; nil means time.Now.
	Now func() time.Time
}

// RaisedError is the error a template raises with raise_exception(message);
// transformers raises jinja2.exceptions.TemplateError(message) there.
type RaisedError struct {
	Message string
}

func (e *RaisedError) Error() string {
	return "template raised an exception: " + e.Message
}

// Template is a parsed tokenizer config with its compiled chat template.
// It is safe for concurrent use.
type Template struct {
	source   string            // file the template came from, for errors
	compiled *jinja.Template   // nil when the config has no chat template
	tokens   map[string]string // special tokens passed to the template
}

// Load reads a tokenizer config: path is a tokenizer folder (holding
// tokenizer_config.json) or the config file itself. A chat_template.jinja
// beside the config takes precedence over the config's default template.
func Load(path string) (*Template, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("chattemplate: %w", err)
	}
	file := path
	if info.IsDir() {
		file = filepath.Join(path, ConfigFile)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("chattemplate: %w", err)
	}
	cfg, err := parseConfig(data, file)
	if err != nil {
		return nil, err
	}
	jinjaFile := filepath.Join(filepath.Dir(file), TemplateFile)
	switch src, err := os.ReadFile(jinjaFile); {
	case err == nil:
		cfg.template, cfg.hasTemplate, cfg.templateSource = string(src), true, jinjaFile
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("chattemplate: %w", err)
	}
	return newTemplate(cfg)
}

// Parse parses the contents of a tokenizer_config.json; source names it in
// errors. A config without a chat template parses (HasTemplate reports
// false); a template that does not compile is an error.
func Parse(data []byte, source string) (*Template, error) {
	cfg, err := parseConfig(data, source)
	if err != nil {
		return nil, err
	}
	return newTemplate(cfg)
}

func newTemplate(cfg config) (*Template, error) {
	t := &Template{source: cfg.templateSource, tokens: cfg.tokens}
	if !cfg.hasTemplate {
		t.source = cfg.source
		return t, nil
	}
	compiled, err := compile(cfg.template)
	if err != nil {
		return nil, fmt.Errorf("chattemplate: %s: chat_template: %w", cfg.templateSource, err)
	}
	t.compiled = compiled
	return t, nil
}

func compile(src string) (tmpl *jinja.Template, err error) {
	prepared, err := prepareSource(src)
	if err != nil {
		return nil, err
	}
	// The engine is third-party code fed outside input; a panic in it
	// must become an error, not a crash of the harness.
	defer func() {
		if r := recover(); r != nil {
			tmpl, err = nil, fmt.Errorf("template engine panicked: %v", r)
		}
	}()
	return jinja.Compile(prepared)
}

// HasTemplate reports whether the config defines a chat template.
func (t *Template) HasTemplate() bool { return t.compiled != nil }

// BOS returns the config's bos_token, or "" when it has none.
func (t *Template) BOS() string { return t.tokens["bos_token"] }

// EOS returns the config's eos_token, or "" when it has none.
func (t *Template) EOS() string { return t.tokens["eos_token"] }

// Render renders the conversation. Errors wrap ErrNoTemplate when there is
// no template and *RaisedError when the template calls raise_exception.
func (t *Template) Render(messages []Message, opts Options) (out string, err error) {
	if t.compiled == nil {
		return "", fmt.Errorf("chattemplate: %s: %w", t.source, ErrNoTemplate)
	}
	data, err := t.context(messages, opts)
	if err != nil {
		return "", fmt.Errorf("chattemplate: %s: %w", t.source, err)
	}
	defer func() {
		if r := recover(); r != nil {
			out, err = "", fmt.Errorf("chattemplate: %s: template engine panicked: %v", t.source, r)
		}
	}()
	out, err = t.compiled.RenderValues(data)
	if err != nil {
		return "", fmt.Errorf("chattemplate: %s: render: %w", t.source, err)
	}
	return out, nil
}

// context builds the variables transformers passes to the template.
func (t *Template) context(messages []Message, opts Options) (map[string]jinja.Value, error) {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	data := make(map[string]jinja.Value, len(t.tokens)+len(opts.Extra)+8)
	for name, tok := range t.tokens {
		data[name] = jinja.NewString(tok)
	}
	data["raise_exception"] = jinja.NewCallable("raise_exception", raiseException)
	data["strftime_now"] = jinja.NewCallable("strftime_now", func(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
		return strftimeNow(now, args, kwargs)
	})
	data["range"] = jinja.NewCallable("range", sandboxRange)
	data["tools"] = jinja.None()
	data["documents"] = jinja.None()
	for name, v := range opts.Extra {
		if name == "messages" || name == "add_generation_prompt" {
			return nil, fmt.Errorf("Options.Extra[%q] is reserved: pass it through Render's arguments", name)
		}
		val, err := toValue(v)
		if err != nil {
			return nil, fmt.Errorf("Options.Extra[%q]: %w", name, err)
		}
		data[name] = val
	}
	msgs := make([]jinja.Value, len(messages))
	for i, m := range messages {
		d := jinja.NewDict()
		d.AsDict().Set("role", jinja.NewString(m.Role))
		d.AsDict().Set("content", jinja.NewString(m.Content))
		msgs[i] = d
	}
	data["messages"] = jinja.NewList(msgs)
	data["add_generation_prompt"] = jinja.NewBool(opts.AddGenerationPrompt)
	return data, nil
}

func raiseException(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
	if len(args) != 1 {
		return jinja.Undefined(), fmt.Errorf("raise_exception takes 1 argument, got %d", len(args))
	}
	msg := args[0]
	if msg.IsString() {
		return jinja.Undefined(), &RaisedError{Message: msg.AsString()}
	}
	return jinja.Undefined(), &RaisedError{Message: msg.String()}
}

// maxRange is Jinja2's sandbox limit (jinja2.sandbox.MAX_RANGE), which
// transformers inherits from ImmutableSandboxedEnvironment. It also keeps a
// hostile template from allocating without bound.
const maxRange = 100000

// sandboxRange is Python's range() with the Jinja2 sandbox's size limit.
func sandboxRange(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
	ints := make([]int64, len(args))
	for i, a := range args {
		if !a.IsInt() {
			return jinja.Undefined(), fmt.Errorf("range: argument %d is %s, not an integer", i+1, a.String())
		}
		ints[i] = a.AsInt()
	}
	start, stop, step := int64(0), int64(0), int64(1)
	switch len(ints) {
	case 1:
		stop = ints[0]
	case 2:
		start, stop = ints[0], ints[1]
	case 3:
		start, stop, step = ints[0], ints[1], ints[2]
	default:
		return jinja.Undefined(), fmt.Errorf("range expects 1 to 3 arguments, got %d", len(ints))
	}
	if step == 0 {
		return jinja.Undefined(), errors.New("range: step must not be zero")
	}
	var n int64
	switch {
	case step > 0 && stop > start:
		n = (stop - start + step - 1) / step
	case step < 0 && stop < start:
		n = (start - stop - step - 1) / -step
	}
	// Overflow in the subtraction shows as a negative count.
	if n > maxRange || n < 0 {
		return jinja.Undefined(), fmt.Errorf("range too big: the sandbox blocks ranges larger than %d", maxRange)
	}
	items := make([]jinja.Value, n)
	for i := range items {
		items[i] = jinja.NewInt(start + int64(i)*step)
	}
	return jinja.NewList(items), nil
}

// config is what Parse extracts from tokenizer_config.json.
type config struct {
	source         string // the config file
	template       string
	hasTemplate    bool
	templateSource string // the config file or chat_template.jinja
	tokens         map[string]string
}

func parseConfig(data []byte, source string) (config, error) {
	cfg := config{source: source, templateSource: source, tokens: map[string]string{}}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return cfg, fmt.Errorf("chattemplate: %s: %w", source, err)
	}
	if fields == nil {
		return cfg, fmt.Errorf("chattemplate: %s: not a JSON object", source)
	}
	var err error
	cfg.template, cfg.hasTemplate, err = selectTemplate(fields["chat_template"])
	if err != nil {
		return cfg, fmt.Errorf("chattemplate: %s: chat_template: %w", source, err)
	}
	cfg.tokens, err = specialTokens(fields)
	if err != nil {
		return cfg, fmt.Errorf("chattemplate: %s: %w", source, err)
	}
	return cfg, nil
}

// selectTemplate picks the template transformers uses when no template name
// is asked for and no tools are given: the string itself, or the entry named
// "default" of a list of {name, template}.
func selectTemplate(raw json.RawMessage) (string, bool, error) {
	if isNull(raw) {
		return "", false, nil
	}
	var single string
	if err := json.Unmarshal(raw, &single); err == nil {
		return single, true, nil
	}
	var named []struct {
		Name     *string `json:"name"`
		Template *string `json:"template"`
	}
	if err := json.Unmarshal(raw, &named); err != nil {
		return "", false, errors.New("must be a string or a list of {\"name\", \"template\"} objects")
	}
	var names []string
	for i, n := range named {
		if n.Name == nil || n.Template == nil {
			return "", false, fmt.Errorf("entry %d lacks a string \"name\" or \"template\"", i)
		}
		if *n.Name == "default" {
			return *n.Template, true, nil
		}
		names = append(names, *n.Name)
	}
	return "", false, fmt.Errorf("no template named \"default\" among %q", names)
}

// namedTokens are transformers' SPECIAL_TOKENS_ATTRIBUTES (v5): the special
// tokens its special_tokens_map, and so every chat template, receives when
// they are set.
var namedTokens = [...]string{"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"}

// specialTokens returns the tokens transformers 5 puts in the template
// context: the named ones, other "*_token" keys holding a token
// (model-specific tokens such as image_token) and the entries of an
// extra_special_tokens object. A list of additional_special_tokens or
// extra_special_tokens is not passed to templates in transformers 5.
func specialTokens(fields map[string]json.RawMessage) (map[string]string, error) {
	tokens := map[string]string{}
	for _, name := range namedTokens {
		tok, ok, err := tokenContent(fields[name])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if ok {
			tokens[name] = tok
		}
	}
	for name, raw := range fields {
		if _, done := tokens[name]; done || !strings.HasSuffix(name, "_token") {
			continue
		}
		// Other keys ending in _token (add_bos_token, ...) may hold
		// anything; only token values count, as in transformers.
		if tok, ok, err := tokenContent(raw); err == nil && ok {
			tokens[name] = tok
		}
	}
	if raw := fields["extra_special_tokens"]; len(raw) > 0 && raw[0] == '{' {
		var extra map[string]json.RawMessage
		if err := json.Unmarshal(raw, &extra); err != nil {
			return nil, fmt.Errorf("extra_special_tokens: %w", err)
		}
		for name, v := range extra {
			tok, ok, err := tokenContent(v)
			if err != nil {
				return nil, fmt.Errorf("extra_special_tokens.%s: %w", name, err)
			}
			if ok {
				tokens[name] = tok
			}
		}
	}
	return tokens, nil
}

// tokenContent reads a special token written as a string or as an
// AddedToken object {"content": ..., ...}; null means unset.
func tokenContent(raw json.RawMessage) (string, bool, error) {
	if isNull(raw) {
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, true, nil
	}
	var added struct {
		Content *string `json:"content"`
	}
	if err := json.Unmarshal(raw, &added); err != nil || added.Content == nil {
		return "", false, errors.New("must be a string or an object with a string \"content\"")
	}
	return *added.Content, true, nil
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}
