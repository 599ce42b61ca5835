package model

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/longctx/longctx/engine/weights"
)

// Parameter counts published for the real checkpoints (the safetensors
// index's total_size / 2 for these bf16 models): the presets' shapes must
// add up to them.
func TestPresetShapesMatchPublishedParameterCounts(t *testing.T) {
	published := map[string]int64{
		"llama3-8b":  8_030_261_248, // meta-llama/Llama-3.1-8B
		"mistral-7b": 7_241_732_096, // mistralai/Mistral-7B-v0.1
		"qwen2.5-7b": 7_615_616_512, // Qwen/Qwen2.5-7B
		"qwen3-8b":   8_190_735_360, // Qwen/Qwen3-8B
	}
	for _, p := range SyntheticPresets() {
		if err := p.Config.Validate(); err != nil {
			t.Errorf("%s: %v", p.Name, err)
		}
		if p.Description == "" {
			t.Errorf("%s: no description", p.Name)
		}
		want, ok := published[p.Name]
		if !ok {
			continue
		}
		if got := syntheticBytes(p.Config) / 2; got != want {
			t.Errorf("%s: %d parameters, the real model has %d", p.Name, got, want)
		}
		delete(published, p.Name)
	}
	for name := range published {
		t.Errorf("preset %s missing", name)
	}
}

func TestSyntheticSource(t *testing.T) {
	cfg := smallConfig(Qwen3)
	src, err := NewSyntheticSource(cfg, 42)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, s := range tensorSpecs(cfg) {
		want = append(want, s.name)
	}
	slices.Sort(want)
	if !slices.Equal(src.Names(), want) {
		t.Fatalf("names %v, want %v", src.Names(), want)
	}
	for _, name := range src.Names() {
		a, err := src.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := src.Tensor(name)
		if a.DType != weights.BF16 || !slices.Equal(a.Data, b.Data) || len(a.Data) != 2*a.Elems() {
			t.Fatalf("%s: %s, %d bytes, deterministic %v", name, a.DType, len(a.Data), slices.Equal(a.Data, b.Data))
		}
		vals := make([]float32, a.Elems())
		if err := a.Float32(vals, 0); err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(name, "norm.weight") {
			for _, v := range vals {
				if v != 1 {
					t.Fatalf("%s: norm weight %v, want 1", name, v)
				}
			}
		}
	}
	other, _ := NewSyntheticSource(cfg, 43)
	a, _ := src.Tensor(embedName)
	b, _ := other.Tensor(embedName)
	if slices.Equal(a.Data, b.Data) {
		t.Fatal("seeds 42 and 43 gave the same embedding")
	}
	if _, err := src.Tensor("model.layers.9.mlp.up_proj.weight"); !errors.Is(err, weights.ErrNotFound) {
		t.Fatalf("unknown tensor: %v, want ErrNotFound", err)
	}
}

func TestSyntheticDistribution(t *testing.T) {
	cfg := Config{
		Family: Llama, HiddenSize: 512, IntermediateSize: 8, NumLayers: 1, NumHeads: 8, NumKVHeads: 8,
		HeadDim: 64, RMSNormEps: 1e-5, VocabSize: 2048, BOS: -1,
	}
	cfg.RoPE.Type, cfg.RoPE.Theta = "default", 10000
	src, err := NewSyntheticSource(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	e, err := src.Tensor(embedName)
	if err != nil {
		t.Fatal(err)
	}
	vals := make([]float32, e.Elems())
	if err := e.Float32(vals, 0); err != nil {
		t.Fatal(err)
	}
	var sum, sq float64
	for _, v := range vals {
		sum += float64(v)
		sq += float64(v) * float64(v)
	}
	n := float64(len(vals))
	mean, std := sum/n, math.Sqrt(sq/n-(sum/n)*(sum/n))
	// A million draws: the mean is within a few 0.02/1000 of 0.
	if math.Abs(mean) > 1e-4 || math.Abs(std-0.02) > 0.0005 {
		t.Fatalf("embedding mean %g std %g, want ≈ 0 and 0.02", mean, std)
	}
}
