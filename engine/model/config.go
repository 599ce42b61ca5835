package model

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/longctx/longctx/engine/model/rope"
)

// Family is a model architecture, spelled as config.json's model_type.
type Family string

// Supported families.
const (
	Llama   Family = "llama"
	Mistral Family = "mistral"
	Qwen2   Family = "qwen2"
	Qwen3   Family = "qwen3"
)

// Families lists the supported model_type values.
func Families() []Family { return []Family{Llama, Mistral, Qwen2, Qwen3} }

// Config is the architecture of a decoder-only model, normalised from a
// Hugging Face config.json. Defaults follow the transformers configuration
// class of each family.
type Config struct {
	Family           Family
	HiddenSize       int
	IntermediateSize int
	NumLayers        int
	NumHeads         int
	NumKVHeads       int
	HeadDim          int
	RMSNormEps       float64
	VocabSize        int
	// MaxPositions is max_position_embeddings, informational (0: absent).
	MaxPositions  int
	TieEmbeddings bool
	// QKVBias: q/k/v projections have biases (Qwen2 always; Llama and Qwen3
	// with attention_bias). OBias: the output projection has one (Llama and
	// Qwen3 with attention_bias).
	QKVBias, OBias bool
	// MLPBias: gate/up/down projections have biases (Llama's mlp_bias).
	MLPBias bool
	// QKNorm: RMSNorm over head_dim of each query and key head before RoPE (Qwen3).
	QKNorm bool
	RoPE   rope.Params
	// LayerWindows holds each layer's sliding window in tokens (0: full
	// attention); nil when no layer slides.
	LayerWindows []int
	// BOS is the beginning-of-sequence id, -1 when there is none.
	BOS int
	// EOS lists the ids that end generation.
	EOS []int
}

// Window returns the sliding window of a layer, 0 for full attention.
func (c Config) Window(layer int) int {
	if c.LayerWindows == nil {
		return 0
	}
	return c.LayerWindows[layer]
}

// Limits well above any released model; they keep a hostile config from
// asking for absurd allocations or overflowing size arithmetic.
const (
	maxHidden       = 1 << 17
	maxIntermediate = 1 << 19
	maxLayers       = 1024
	maxHeads        = 1024
	maxHeadDim      = 1024
	maxVocab        = 1 << 22
	maxPositions    = 1 << 30
)

// Validate checks the relations between the fields.
func (c Config) Validate() error {
	switch c.Family {
	case Llama, Mistral, Qwen2, Qwen3:
	default:
		return fmt.Errorf("model family %q is not supported (supported: llama, mistral, qwen2, qwen3)", c.Family)
	}
	dims := []struct {
		name    string
		v, upto int
	}{
		{"hidden_size", c.HiddenSize, maxHidden},
		{"intermediate_size", c.IntermediateSize, maxIntermediate},
		{"num_hidden_layers", c.NumLayers, maxLayers},
		{"num_attention_heads", c.NumHeads, maxHeads},
		{"num_key_value_heads", c.NumKVHeads, maxHeads},
		{"head_dim", c.HeadDim, maxHeadDim},
		{"vocab_size", c.VocabSize, maxVocab},
	}
	for _, d := range dims {
		if d.v <= 0 || d.v > d.upto {
			return fmt.Errorf("%q = %d, want 1..%d", d.name, d.v, d.upto)
		}
	}
	if c.NumHeads%c.NumKVHeads != 0 {
		return fmt.Errorf(`"num_attention_heads" = %d is not a multiple of "num_key_value_heads" = %d`, c.NumHeads, c.NumKVHeads)
	}
	if c.HeadDim%2 != 0 {
		return fmt.Errorf(`"head_dim" = %d must be even for rotary embeddings`, c.HeadDim)
	}
	if !(c.RMSNormEps > 0) || math.IsInf(c.RMSNormEps, 0) {
		return fmt.Errorf(`"rms_norm_eps" = %v must be a positive number`, c.RMSNormEps)
	}
	if c.MaxPositions < 0 || c.MaxPositions > maxPositions {
		return fmt.Errorf(`"max_position_embeddings" = %d, want 0..%d`, c.MaxPositions, maxPositions)
	}
	if err := c.RoPE.Validate(); err != nil {
		return err
	}
	if c.LayerWindows != nil {
		if len(c.LayerWindows) != c.NumLayers {
			return fmt.Errorf("%d layer windows for %d layers", len(c.LayerWindows), c.NumLayers)
		}
		for i, w := range c.LayerWindows {
			if w < 0 {
				return fmt.Errorf("layer %d: negative sliding window %d", i, w)
			}
		}
	}
	if c.BOS < -1 {
		return fmt.Errorf(`"bos_token_id" = %d is negative`, c.BOS)
	}
	for _, id := range c.EOS {
		if id < 0 {
			return fmt.Errorf(`"eos_token_id" %d is negative`, id)
		}
	}
	return nil
}

// LoadConfig reads dir/config.json and, when present, the eos_token_id of
// dir/generation_config.json, which takes precedence as it does in
// transformers' generate.
func LoadConfig(dir string) (Config, error) {
	path := filepath.Join(dir, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	genPath := filepath.Join(dir, "generation_config.json")
	data, err = os.ReadFile(genPath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return cfg, nil
	case err != nil:
		return Config{}, err
	}
	eos, err := ParseGenerationEOS(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", genPath, err)
	}
	if eos != nil {
		cfg.EOS = eos
	}
	return cfg, nil
}

// ParseGenerationEOS returns the eos_token_id of a generation_config.json
// (nil when absent or null).
func ParseGenerationEOS(data []byte) ([]int, error) {
	f, err := parseObject(data, "")
	if err != nil {
		return nil, err
	}
	return f.intList("eos_token_id")
}

// ParseConfig parses a Hugging Face config.json. Errors name the field at
// fault, e.g. `missing "num_hidden_layers"`.
func ParseConfig(data []byte) (Config, error) {
	f, err := parseObject(data, "")
	if err != nil {
		return Config{}, err
	}
	modelType, err := f.str("model_type", "")
	if err != nil {
		return Config{}, err
	}
	c := Config{Family: Family(modelType), BOS: -1}
	switch c.Family {
	case Llama, Mistral, Qwen2, Qwen3:
	case "":
		return Config{}, errors.New(`missing "model_type"`)
	default:
		return Config{}, fmt.Errorf(`"model_type": %q is not supported (supported: llama, mistral, qwen2, qwen3)`, modelType)
	}

	for _, r := range []struct {
		name string
		dst  *int
	}{
		{"hidden_size", &c.HiddenSize},
		{"intermediate_size", &c.IntermediateSize},
		{"num_hidden_layers", &c.NumLayers},
		{"num_attention_heads", &c.NumHeads},
		{"vocab_size", &c.VocabSize},
	} {
		if *r.dst, err = f.requiredInt(r.name); err != nil {
			return Config{}, err
		}
	}
	if c.NumKVHeads, err = f.optInt("num_key_value_heads", c.NumHeads); err != nil {
		return Config{}, err
	}
	defaultHeadDim := c.HiddenSize / max(c.NumHeads, 1)
	if c.Family == Qwen3 {
		defaultHeadDim = 128 // Qwen3Config's default, not hidden/heads
	}
	if c.HeadDim, err = f.optInt("head_dim", defaultHeadDim); err != nil {
		return Config{}, err
	}
	if c.RMSNormEps, err = f.optFloat("rms_norm_eps", 1e-6); err != nil {
		return Config{}, err
	}
	if c.MaxPositions, err = f.optInt("max_position_embeddings", 0); err != nil {
		return Config{}, err
	}
	if c.TieEmbeddings, err = f.optBool("tie_word_embeddings", false); err != nil {
		return Config{}, err
	}
	act, err := f.str("hidden_act", "silu")
	if err != nil {
		return Config{}, err
	}
	if act != "silu" && act != "swish" {
		return Config{}, fmt.Errorf(`"hidden_act": %q is not supported (only "silu")`, act)
	}

	switch c.Family {
	case Llama:
		if c.QKVBias, err = f.optBool("attention_bias", false); err != nil {
			return Config{}, err
		}
		c.OBias = c.QKVBias
		if c.MLPBias, err = f.optBool("mlp_bias", false); err != nil {
			return Config{}, err
		}
	case Qwen2:
		c.QKVBias = true
	case Qwen3:
		if c.QKVBias, err = f.optBool("attention_bias", false); err != nil {
			return Config{}, err
		}
		c.OBias = c.QKVBias
		c.QKNorm = true
	}

	if c.RoPE, err = parseRoPE(f); err != nil {
		return Config{}, err
	}
	if c.LayerWindows, err = parseWindows(f, c); err != nil {
		return Config{}, err
	}
	if c.BOS, err = f.optInt("bos_token_id", -1); err != nil {
		return Config{}, err
	}
	if c.EOS, err = f.intList("eos_token_id"); err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// parseRoPE reads the transformers >= 5 layout (rope_parameters holding
// rope_type, rope_theta and the scaling fields) or the classic one
// (top-level rope_theta plus an optional rope_scaling).
func parseRoPE(f fields) (rope.Params, error) {
	theta, err := f.optFloat("rope_theta", 10000)
	if err != nil {
		return rope.Params{}, err
	}
	obj := "rope_parameters"
	sub, err := f.object(obj)
	if err != nil {
		return rope.Params{}, err
	}
	if sub.m == nil {
		obj = "rope_scaling"
		if sub, err = f.object(obj); err != nil {
			return rope.Params{}, err
		}
	}
	if err := checkFullRotary(f); err != nil {
		return rope.Params{}, err
	}
	p := rope.Params{Type: rope.Default, Theta: theta}
	if sub.m == nil {
		return p, nil
	}
	if err := checkFullRotary(sub); err != nil {
		return rope.Params{}, err
	}
	for _, layerType := range []string{"full_attention", "sliding_attention"} {
		if sub.has(layerType) {
			return rope.Params{}, fmt.Errorf("%q: RoPE parameters per layer type are not supported", obj)
		}
	}
	if p.Theta, err = sub.optFloat("rope_theta", theta); err != nil {
		return rope.Params{}, err
	}
	typeField := "rope_type"
	if !sub.has(typeField) && sub.has("type") {
		typeField = "type" // rope_scaling's older spelling
	}
	if p.Type, err = sub.str(typeField, rope.Default); err != nil {
		return rope.Params{}, err
	}
	switch p.Type {
	case rope.Default:
	case rope.Linear:
		if p.Factor, err = sub.requiredFloat("factor"); err != nil {
			return rope.Params{}, err
		}
	case rope.Llama3:
		if p.Factor, err = sub.requiredFloat("factor"); err != nil {
			return rope.Params{}, err
		}
		if p.LowFreqFactor, err = sub.requiredFloat("low_freq_factor"); err != nil {
			return rope.Params{}, err
		}
		if p.HighFreqFactor, err = sub.requiredFloat("high_freq_factor"); err != nil {
			return rope.Params{}, err
		}
		if p.OriginalMaxPositions, err = sub.requiredInt("original_max_position_embeddings"); err != nil {
			return rope.Params{}, err
		}
	default:
		return rope.Params{}, fmt.Errorf(`"%s.%s": %q is not supported (supported: default, linear, llama3)`, obj, typeField, p.Type)
	}
	if err := p.Validate(); err != nil {
		return rope.Params{}, fmt.Errorf("%q: %w", obj, err)
	}
	return p, nil
}

// checkFullRotary rejects partial_rotary_factor != 1: rotating only part
// of each head is not implemented, and no supported family uses it.
func checkFullRotary(f fields) error {
	prf, err := f.optFloat("partial_rotary_factor", 1)
	if err != nil {
		return err
	}
	if prf != 1 {
		return fmt.Errorf("%q = %v is not supported (only 1)", f.name("partial_rotary_factor"), prf)
	}
	return nil
}

// parseWindows returns each layer's sliding window, following the
// transformers modelling code of each family.
func parseWindows(f fields, c Config) ([]int, error) {
	switch c.Family {
	case Mistral:
		// MistralConfig defaults sliding_window to 4096 when the key is
		// absent; an explicit null disables it (Mistral v0.2 and later).
		if !f.present("sliding_window") {
			return uniformWindows(c.NumLayers, 4096), nil
		}
		w, err := f.optInt("sliding_window", 0)
		if err != nil || w == 0 {
			return nil, err
		}
		return uniformWindows(c.NumLayers, w), nil
	case Qwen2, Qwen3:
		// Qwen configs carry sliding_window even when it is off:
		// use_sliding_window decides, and then layer_types (or, without it,
		// max_window_layers) picks the sliding layers.
		use, err := f.optBool("use_sliding_window", false)
		if err != nil || !use {
			return nil, err
		}
		w, err := f.optInt("sliding_window", 4096)
		if err != nil || w == 0 {
			return nil, err
		}
		types, err := f.strList("layer_types")
		if err != nil {
			return nil, err
		}
		windows := make([]int, c.NumLayers)
		if types == nil {
			first, err := f.optInt("max_window_layers", 28)
			if err != nil {
				return nil, err
			}
			for i := first; i < c.NumLayers; i++ {
				windows[i] = w
			}
			return windows, nil
		}
		if len(types) != c.NumLayers {
			return nil, fmt.Errorf(`"layer_types" has %d entries for %d layers`, len(types), c.NumLayers)
		}
		for i, t := range types {
			switch t {
			case "full_attention":
			case "sliding_attention":
				windows[i] = w
			default:
				return nil, fmt.Errorf(`"layer_types"[%d]: %q is not supported (full_attention, sliding_attention)`, i, t)
			}
		}
		return windows, nil
	}
	return nil, nil
}

func uniformWindows(layers, w int) []int {
	ws := make([]int, layers)
	for i := range ws {
		ws[i] = w
	}
	return ws
}

// fields is one JSON object, with the path used to name its members in errors.
type fields struct {
	prefix string
	m      map[string]json.RawMessage
}

func parseObject(data []byte, prefix string) (fields, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		if prefix != "" {
			return fields{}, fmt.Errorf("%q: want a JSON object: %w", prefix, err)
		}
		return fields{}, fmt.Errorf("not a JSON object: %w", err)
	}
	if m == nil { // the literal null
		if prefix != "" {
			return fields{}, fmt.Errorf("%q: want a JSON object, got null", prefix)
		}
		return fields{}, errors.New("not a JSON object: null")
	}
	return fields{prefix: prefix, m: m}, nil
}

func (f fields) name(key string) string {
	if f.prefix == "" {
		return key
	}
	return f.prefix + "." + key
}

// present reports whether key appears, even as null.
func (f fields) present(key string) bool {
	_, ok := f.m[key]
	return ok
}

// has reports whether key appears with a non-null value.
func (f fields) has(key string) bool {
	raw, ok := f.m[key]
	return ok && !bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

func (f fields) typeError(key, want string) error {
	v := string(f.m[key])
	if len(v) > 40 {
		v = v[:40] + "…"
	}
	return fmt.Errorf("%q: want %s, got %s", f.name(key), want, v)
}

// object returns the member key as an object; its m is nil when absent or null.
func (f fields) object(key string) (fields, error) {
	if !f.has(key) {
		return fields{}, nil
	}
	return parseObject(f.m[key], f.name(key))
}

func (f fields) requiredInt(key string) (int, error) {
	if !f.has(key) {
		return 0, fmt.Errorf("missing %q", f.name(key))
	}
	return f.optInt(key, 0)
}

func (f fields) optInt(key string, def int) (int, error) {
	if !f.has(key) {
		return def, nil
	}
	var v float64
	raw := bytes.TrimSpace(f.m[key])
	if raw[0] == '"' || json.Unmarshal(raw, &v) != nil || v != math.Trunc(v) || math.Abs(v) > 1<<52 {
		return 0, f.typeError(key, "an integer")
	}
	return int(v), nil
}

func (f fields) requiredFloat(key string) (float64, error) {
	if !f.has(key) {
		return 0, fmt.Errorf("missing %q", f.name(key))
	}
	return f.optFloat(key, 0)
}

func (f fields) optFloat(key string, def float64) (float64, error) {
	if !f.has(key) {
		return def, nil
	}
	var v float64
	if err := json.Unmarshal(f.m[key], &v); err != nil {
		return 0, f.typeError(key, "a number")
	}
	return v, nil
}

func (f fields) optBool(key string, def bool) (bool, error) {
	if !f.has(key) {
		return def, nil
	}
	var v bool
	if err := json.Unmarshal(f.m[key], &v); err != nil {
		return false, f.typeError(key, "true or false")
	}
	return v, nil
}

func (f fields) str(key, def string) (string, error) {
	if !f.has(key) {
		return def, nil
	}
	var v string
	if err := json.Unmarshal(f.m[key], &v); err != nil {
		return "", f.typeError(key, "a string")
	}
	return v, nil
}

func (f fields) strList(key string) ([]string, error) {
	if !f.has(key) {
		return nil, nil
	}
	var v []string
	if err := json.Unmarshal(f.m[key], &v); err != nil {
		return nil, f.typeError(key, "a list of strings")
	}
	return v, nil
}

// intList reads an integer or a list of integers (eos_token_id's two forms).
func (f fields) intList(key string) ([]int, error) {
	if !f.has(key) {
		return nil, nil
	}
	raw := bytes.TrimSpace(f.m[key])
	if raw[0] != '[' {
		v, err := f.optInt(key, 0)
		if err != nil {
			return nil, f.typeError(key, "an integer or a list of integers")
		}
		return []int{v}, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, f.typeError(key, "an integer or a list of integers")
	}
	out := make([]int, 0, len(items))
	for i, item := range items {
		el := fields{prefix: f.prefix, m: map[string]json.RawMessage{key: item}}
		v, err := el.optInt(key, 0)
		if err != nil || !el.has(key) {
			return nil, fmt.Errorf("%q[%d]: want an integer, got %s", f.name(key), i, strings.TrimSpace(string(item)))
		}
		out = append(out, v)
	}
	return out, nil
}
