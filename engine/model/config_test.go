package model

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/longctx/longctx/engine/model/rope"
)

// baseConfig is a small Llama config.json as transformers 5 writes it.
func baseConfig() map[string]any {
	return map[string]any{
		"model_type":              "llama",
		"hidden_size":             64,
		"intermediate_size":       128,
		"num_hidden_layers":       4,
		"num_attention_heads":     4,
		"num_key_value_heads":     2,
		"vocab_size":              512,
		"rms_norm_eps":            1e-5,
		"max_position_embeddings": 4096,
		"hidden_act":              "silu",
		"bos_token_id":            1,
		"eos_token_id":            2,
		"rope_parameters":         map[string]any{"rope_type": "default", "rope_theta": 10000.0},
	}
}

// with returns base changed by edits; a nil value deletes the key.
func with(base map[string]any, edits map[string]any) []byte {
	for k, v := range edits {
		if v == nil {
			delete(base, k)
		} else {
			base[k] = v
		}
	}
	b, err := json.Marshal(base)
	if err != nil {
		panic(err)
	}
	return b
}

// null is an explicit JSON null in edits (a nil value deletes the key).
var null = json.RawMessage("null")

var llama31Rope = rope.Params{Type: rope.Llama3, Theta: 500000, Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositions: 8192}

func TestParseConfig(t *testing.T) {
	llama3Fields := map[string]any{"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
	merge := func(a, b map[string]any) map[string]any {
		out := map[string]any{}
		for k, v := range a {
			out[k] = v
		}
		for k, v := range b {
			out[k] = v
		}
		return out
	}
	tests := []struct {
		name   string
		edits  map[string]any
		family string
		check  func(t *testing.T, c Config)
	}{
		{"defaults", map[string]any{"num_key_value_heads": nil, "rms_norm_eps": nil, "rope_parameters": nil, "hidden_act": nil}, "llama", func(t *testing.T, c Config) {
			want := Config{
				Family: Llama, HiddenSize: 64, IntermediateSize: 128, NumLayers: 4, NumHeads: 4, NumKVHeads: 4,
				HeadDim: 16, RMSNormEps: 1e-6, VocabSize: 512, MaxPositions: 4096,
				RoPE: rope.Params{Type: rope.Default, Theta: 10000}, BOS: 1, EOS: []int{2},
			}
			if !reflect.DeepEqual(c, want) {
				t.Fatalf("got  %+v\nwant %+v", c, want)
			}
		}},
		{"rope_parameters llama3 (transformers 5)", map[string]any{
			"rope_parameters": merge(map[string]any{"rope_type": "llama3", "rope_theta": 500000.0}, llama3Fields),
		}, "llama", func(t *testing.T, c Config) {
			if c.RoPE != llama31Rope {
				t.Fatalf("RoPE %+v, want %+v", c.RoPE, llama31Rope)
			}
		}},
		{"classic rope_theta + rope_scaling llama3", map[string]any{
			"rope_parameters": nil, "rope_theta": 500000.0,
			"rope_scaling": merge(map[string]any{"rope_type": "llama3"}, llama3Fields),
		}, "llama", func(t *testing.T, c Config) {
			if c.RoPE != llama31Rope {
				t.Fatalf("RoPE %+v, want %+v", c.RoPE, llama31Rope)
			}
		}},
		{"classic rope_scaling with old key type", map[string]any{
			"rope_parameters": nil, "rope_theta": 500000.0,
			"rope_scaling": merge(map[string]any{"type": "llama3"}, llama3Fields),
		}, "llama", func(t *testing.T, c Config) {
			if c.RoPE != llama31Rope {
				t.Fatalf("RoPE %+v, want %+v", c.RoPE, llama31Rope)
			}
		}},
		{"linear", map[string]any{"rope_parameters": nil, "rope_scaling": map[string]any{"type": "linear", "factor": 2.0}}, "llama", func(t *testing.T, c Config) {
			if want := (rope.Params{Type: rope.Linear, Theta: 10000, Factor: 2}); c.RoPE != want {
				t.Fatalf("RoPE %+v, want %+v", c.RoPE, want)
			}
		}},
		{"rope_scaling null", map[string]any{"rope_parameters": nil, "rope_theta": 1e6, "rope_scaling": null}, "llama", func(t *testing.T, c Config) {
			if want := (rope.Params{Type: rope.Default, Theta: 1e6}); c.RoPE != want {
				t.Fatalf("RoPE %+v, want %+v", c.RoPE, want)
			}
		}},
		{"rope_parameters without theta falls back to rope_theta", map[string]any{"rope_theta": 5e5, "rope_parameters": map[string]any{"rope_type": "default"}}, "llama", func(t *testing.T, c Config) {
			if c.RoPE.Theta != 5e5 {
				t.Fatalf("theta %v, want 5e5", c.RoPE.Theta)
			}
		}},
		{"llama attention_bias and mlp_bias", map[string]any{"attention_bias": true, "mlp_bias": true}, "llama", func(t *testing.T, c Config) {
			if !c.QKVBias || !c.OBias || !c.MLPBias || c.QKNorm {
				t.Fatalf("biases qkv %v o %v mlp %v, qknorm %v", c.QKVBias, c.OBias, c.MLPBias, c.QKNorm)
			}
		}},
		{"head_dim null", map[string]any{"head_dim": null}, "llama", func(t *testing.T, c Config) {
			if c.HeadDim != 16 {
				t.Fatalf("head_dim %d, want hidden/heads = 16", c.HeadDim)
			}
		}},
		{"eos list, bos null", map[string]any{"eos_token_id": []int{2, 7}, "bos_token_id": null}, "llama", func(t *testing.T, c Config) {
			if !slices.Equal(c.EOS, []int{2, 7}) || c.BOS != -1 {
				t.Fatalf("eos %v bos %d", c.EOS, c.BOS)
			}
		}},
		{"tied, swish", map[string]any{"tie_word_embeddings": true, "hidden_act": "swish"}, "llama", func(t *testing.T, c Config) {
			if !c.TieEmbeddings {
				t.Fatal("tie_word_embeddings not read")
			}
		}},
		{"llama ignores sliding_window", map[string]any{"sliding_window": 8}, "llama", func(t *testing.T, c Config) {
			if c.LayerWindows != nil {
				t.Fatalf("windows %v", c.LayerWindows)
			}
		}},
		{"mistral window", map[string]any{"model_type": "mistral", "sliding_window": 16}, "mistral", func(t *testing.T, c Config) {
			if !slices.Equal(c.LayerWindows, []int{16, 16, 16, 16}) || c.QKVBias || c.OBias {
				t.Fatalf("windows %v bias %v", c.LayerWindows, c.QKVBias)
			}
		}},
		{"mistral window null", map[string]any{"model_type": "mistral", "sliding_window": null}, "mistral", func(t *testing.T, c Config) {
			if c.LayerWindows != nil {
				t.Fatalf("windows %v, want none", c.LayerWindows)
			}
		}},
		{"mistral window absent defaults to 4096", map[string]any{"model_type": "mistral"}, "mistral", func(t *testing.T, c Config) {
			if c.Window(3) != 4096 {
				t.Fatalf("windows %v, want 4096 (MistralConfig default)", c.LayerWindows)
			}
		}},
		{"mistral ignores attention_bias", map[string]any{"model_type": "mistral", "attention_bias": true}, "mistral", func(t *testing.T, c Config) {
			if c.QKVBias || c.OBias {
				t.Fatal("mistral has no biases")
			}
		}},
		{"qwen2", map[string]any{"model_type": "qwen2", "sliding_window": 4096, "use_sliding_window": false}, "qwen2", func(t *testing.T, c Config) {
			if !c.QKVBias || c.OBias || c.QKNorm || c.LayerWindows != nil {
				t.Fatalf("qkv bias %v o bias %v qknorm %v windows %v", c.QKVBias, c.OBias, c.QKNorm, c.LayerWindows)
			}
		}},
		{"qwen2 sliding by max_window_layers", map[string]any{"model_type": "qwen2", "sliding_window": 8, "use_sliding_window": true, "max_window_layers": 2}, "qwen2", func(t *testing.T, c Config) {
			if !slices.Equal(c.LayerWindows, []int{0, 0, 8, 8}) {
				t.Fatalf("windows %v", c.LayerWindows)
			}
		}},
		{"qwen2 sliding by layer_types", map[string]any{
			"model_type": "qwen2", "sliding_window": 8, "use_sliding_window": true, "max_window_layers": 0,
			"layer_types": []string{"sliding_attention", "full_attention", "sliding_attention", "full_attention"},
		}, "qwen2", func(t *testing.T, c Config) {
			if !slices.Equal(c.LayerWindows, []int{8, 0, 8, 0}) {
				t.Fatalf("windows %v", c.LayerWindows)
			}
		}},
		{"qwen2 layer_types without use_sliding_window", map[string]any{
			"model_type": "qwen2", "sliding_window": 8,
			"layer_types": []string{"sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention"},
		}, "qwen2", func(t *testing.T, c Config) {
			// Qwen2Config drops sliding_window unless use_sliding_window is set.
			if c.LayerWindows != nil {
				t.Fatalf("windows %v, want none", c.LayerWindows)
			}
		}},
		{"qwen3", map[string]any{"model_type": "qwen3", "head_dim": 32}, "qwen3", func(t *testing.T, c Config) {
			if !c.QKNorm || c.QKVBias || c.OBias || c.HeadDim != 32 {
				t.Fatalf("qknorm %v bias %v/%v head_dim %d", c.QKNorm, c.QKVBias, c.OBias, c.HeadDim)
			}
		}},
		{"qwen3 head_dim default 128", map[string]any{"model_type": "qwen3"}, "qwen3", func(t *testing.T, c Config) {
			if c.HeadDim != 128 {
				t.Fatalf("head_dim %d, want Qwen3Config's default 128", c.HeadDim)
			}
		}},
		{"qwen3 attention_bias", map[string]any{"model_type": "qwen3", "attention_bias": true}, "qwen3", func(t *testing.T, c Config) {
			if !c.QKVBias || !c.OBias {
				t.Fatal("attention_bias not applied to q/k/v/o")
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig(with(baseConfig(), tc.edits))
			if err != nil {
				t.Fatal(err)
			}
			if string(c.Family) != tc.family {
				t.Fatalf("family %q, want %q", c.Family, tc.family)
			}
			tc.check(t, c)
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name  string
		edits map[string]any
		want  string
	}{
		{"missing model_type", map[string]any{"model_type": nil}, `missing "model_type"`},
		{"unsupported model_type", map[string]any{"model_type": "gpt2"}, `"model_type": "gpt2" is not supported`},
		{"model_type number", map[string]any{"model_type": 3}, `"model_type": want a string`},
		{"missing hidden_size", map[string]any{"hidden_size": nil}, `missing "hidden_size"`},
		{"missing intermediate_size", map[string]any{"intermediate_size": nil}, `missing "intermediate_size"`},
		{"missing num_hidden_layers", map[string]any{"num_hidden_layers": nil}, `missing "num_hidden_layers"`},
		{"missing num_attention_heads", map[string]any{"num_attention_heads": nil}, `missing "num_attention_heads"`},
		{"missing vocab_size", map[string]any{"vocab_size": nil}, `missing "vocab_size"`},
		{"null num_hidden_layers", map[string]any{"num_hidden_layers": null}, `missing "num_hidden_layers"`},
		{"hidden_size string", map[string]any{"hidden_size": "64"}, `"hidden_size": want an integer, got "64"`},
		{"hidden_size fraction", map[string]any{"hidden_size": 64.5}, `"hidden_size": want an integer, got 64.5`},
		{"hidden_size zero", map[string]any{"hidden_size": 0}, `"hidden_size" = 0`},
		{"layers negative", map[string]any{"num_hidden_layers": -2}, `"num_hidden_layers" = -2`},
		{"vocab huge", map[string]any{"vocab_size": 1 << 40}, `"vocab_size"`},
		{"kv heads not dividing", map[string]any{"num_key_value_heads": 3}, `"num_key_value_heads" = 3`},
		{"odd head_dim", map[string]any{"head_dim": 15}, `"head_dim" = 15 must be even`},
		{"eps string", map[string]any{"rms_norm_eps": "1e-5"}, `"rms_norm_eps": want a number`},
		{"eps zero", map[string]any{"rms_norm_eps": 0}, `"rms_norm_eps" = 0`},
		{"tie string", map[string]any{"tie_word_embeddings": "yes"}, `"tie_word_embeddings": want true or false`},
		{"gelu", map[string]any{"hidden_act": "gelu"}, `"hidden_act": "gelu" is not supported`},
		{"rope type yarn", map[string]any{"rope_parameters": map[string]any{"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}}, `"rope_parameters.rope_type": "yarn" is not supported`},
		{"rope_scaling dynamic", map[string]any{"rope_parameters": nil, "rope_scaling": map[string]any{"type": "dynamic", "factor": 2.0}}, `"rope_scaling.type": "dynamic" is not supported`},
		{"llama3 missing low_freq_factor", map[string]any{"rope_parameters": map[string]any{"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}, `missing "rope_parameters.low_freq_factor"`},
		{"llama3 missing original", map[string]any{"rope_parameters": nil, "rope_scaling": map[string]any{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0}}, `missing "rope_scaling.original_max_position_embeddings"`},
		{"llama3 factor string", map[string]any{"rope_parameters": map[string]any{"rope_type": "llama3", "factor": "8"}}, `"rope_parameters.factor": want a number`},
		{"linear missing factor", map[string]any{"rope_parameters": map[string]any{"rope_type": "linear"}}, `missing "rope_parameters.factor"`},
		{"rope_parameters not object", map[string]any{"rope_parameters": []int{1}}, `"rope_parameters": want a JSON object`},
		{"rope_parameters per layer type", map[string]any{"rope_parameters": map[string]any{"full_attention": map[string]any{"rope_type": "default"}}}, `"rope_parameters": RoPE parameters per layer type`},
		{"negative theta", map[string]any{"rope_parameters": map[string]any{"rope_type": "default", "rope_theta": -1.0}}, `"rope_parameters": rope_theta -1`},
		{"partial rotary", map[string]any{"partial_rotary_factor": 0.5}, `"partial_rotary_factor" = 0.5 is not supported`},
		{"partial rotary in rope_parameters", map[string]any{"rope_parameters": map[string]any{"rope_type": "default", "partial_rotary_factor": 0.25}}, `"rope_parameters.partial_rotary_factor" = 0.25`},
		{"eos string list", map[string]any{"eos_token_id": []any{2, "x"}}, `"eos_token_id"[1]: want an integer`},
		{"eos object", map[string]any{"eos_token_id": map[string]any{}}, `"eos_token_id": want an integer or a list`},
		{"eos negative", map[string]any{"eos_token_id": -4}, `"eos_token_id" -4 is negative`},
		{"bos fraction", map[string]any{"bos_token_id": 1.5}, `"bos_token_id": want an integer`},
		{"mistral window string", map[string]any{"model_type": "mistral", "sliding_window": "big"}, `"sliding_window": want an integer`},
		{"qwen2 use_sliding_window string", map[string]any{"model_type": "qwen2", "use_sliding_window": "no"}, `"use_sliding_window": want true or false`},
		{"qwen2 layer_types length", map[string]any{"model_type": "qwen2", "use_sliding_window": true, "sliding_window": 8, "layer_types": []string{"full_attention"}}, `"layer_types" has 1 entries for 4 layers`},
		{"qwen3 layer_types value", map[string]any{"model_type": "qwen3", "use_sliding_window": true, "sliding_window": 8, "layer_types": []string{"full_attention", "chunked_attention", "full_attention", "full_attention"}}, `"layer_types"[1]: "chunked_attention" is not supported`},
		{"qwen3 layer_types not strings", map[string]any{"model_type": "qwen3", "use_sliding_window": true, "sliding_window": 8, "layer_types": 4}, `"layer_types": want a list of strings`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig(with(baseConfig(), tc.edits))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseConfig = %v, want error containing %s", err, tc.want)
			}
		})
	}
	for _, bad := range []string{"", "null", "[]", `"x"`, "{", `{"model_type": "llama"`} {
		if _, err := ParseConfig([]byte(bad)); err == nil || !strings.Contains(err.Error(), "JSON object") {
			t.Errorf("ParseConfig(%q) = %v, want a JSON object error", bad, err)
		}
	}
}

func TestLoadConfigGenerationEOS(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("config.json", string(with(baseConfig(), nil)))
	c, err := LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.EOS, []int{2}) {
		t.Fatalf("eos %v without generation_config.json, want [2]", c.EOS)
	}
	write("generation_config.json", `{"bos_token_id": 1, "eos_token_id": [2, 9, 11]}`)
	if c, err = LoadConfig(dir); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.EOS, []int{2, 9, 11}) {
		t.Fatalf("eos %v, want generation_config.json's [2 9 11]", c.EOS)
	}
	write("generation_config.json", `{"eos_token_id": "two"}`)
	if _, err := LoadConfig(dir); err == nil || !strings.Contains(err.Error(), "generation_config.json") || !strings.Contains(err.Error(), `"eos_token_id"`) {
		t.Fatalf("LoadConfig with a bad generation_config.json = %v", err)
	}
	write("config.json", string(with(baseConfig(), map[string]any{"num_hidden_layers": nil})))
	if _, err := LoadConfig(dir); err == nil || !strings.Contains(err.Error(), `config.json: missing "num_hidden_layers"`) {
		t.Fatalf("LoadConfig = %v, want the file and field named", err)
	}
	if _, err := LoadConfig(filepath.Join(dir, "absent")); err == nil {
		t.Fatal("LoadConfig of a missing folder succeeded")
	}
}

// The transformers-written configs of the reference checkpoints parse to
// what the generator script asked for.
func TestParseReferenceConfigs(t *testing.T) {
	want := map[string]func(c Config) bool{
		"llama3": func(c Config) bool {
			return c.RoPE.Type == rope.Llama3 && c.RoPE.OriginalMaxPositions == 64 && !c.TieEmbeddings
		},
		"llama2":  func(c Config) bool { return c.RoPE.Type == rope.Default && c.TieEmbeddings },
		"mistral": func(c Config) bool { return c.Window(0) == 16 && c.Window(3) == 16 },
		"qwen2":   func(c Config) bool { return c.QKVBias && !c.OBias && c.LayerWindows == nil && c.RoPE.Theta == 1e6 },
		"qwen3":   func(c Config) bool { return c.QKNorm && c.HeadDim == 32 && c.HiddenSize/c.NumHeads == 16 },
	}
	for name, ok := range want {
		dir := filepath.Join(referenceRoot, name)
		if _, err := os.Stat(dir); err != nil {
			t.Logf("%s absent, not checked", dir)
			continue
		}
		c, err := LoadConfig(dir)
		if err != nil {
			t.Fatal(err)
		}
		if !ok(c) {
			t.Errorf("%s: parsed %+v", name, c)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add(with(baseConfig(), nil))
	f.Add(with(baseConfig(), map[string]any{"model_type": "qwen2", "use_sliding_window": true, "sliding_window": 4, "layer_types": []string{"sliding_attention", "full_attention", "full_attention", "full_attention"}}))
	f.Add(with(baseConfig(), map[string]any{"model_type": "mistral", "sliding_window": 16}))
	f.Add(with(baseConfig(), map[string]any{"rope_parameters": nil, "rope_scaling": map[string]any{"type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}))
	f.Add(with(baseConfig(), map[string]any{"eos_token_id": []int{1, 2}}))
	f.Add([]byte(`{"model_type": null}`))
	f.Add([]byte(`[]`))
	if entries, err := os.ReadDir(referenceRoot); err == nil {
		for _, e := range entries {
			if b, err := os.ReadFile(filepath.Join(referenceRoot, e.Name(), "config.json")); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("ParseConfig accepted a config that fails Validate: %v", err)
		}
		if _, err := rope.InvFreq(c.RoPE, c.HeadDim); err != nil {
			t.Fatalf("ParseConfig accepted RoPE parameters InvFreq rejects: %v", err)
		}
		if c.LayerWindows != nil && len(c.LayerWindows) != c.NumLayers {
			t.Fatalf("%d windows for %d layers", len(c.LayerWindows), c.NumLayers)
		}
	})
}

func FuzzParseGenerationEOS(f *testing.F) {
	for _, seed := range []string{`{"eos_token_id": 2}`, `{"eos_token_id": [2, 9]}`, `{"eos_token_id": null}`, `{}`, `{"eos_token_id": [1.5]}`, `[]`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ids, err := ParseGenerationEOS(data)
		if err != nil && ids != nil {
			t.Fatalf("ids %v returned with error %v", ids, err)
		}
	})
}
