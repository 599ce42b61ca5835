package model

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"runtime"
	"slices"
	"sync"

	"github.com/longctx/longctx/engine/model/rope"
	"github.com/longctx/longctx/engine/weights"
)

// Preset is a synthetic model: real shapes, seeded random weights.
type Preset struct {
	Name        string // without the "synthetic:" prefix
	Description string
	Config      Config
}

// SyntheticPresets lists the presets, for `harness models`.
func SyntheticPresets() []Preset {
	llama3 := rope.Params{Type: rope.Llama3, Theta: 500000, Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositions: 8192}
	return []Preset{
		{
			Name:        "tiny",
			Description: "Llama-style toy (hidden 256, 4 layers, 8/4 heads, vocab 4096) for tests and CPU smoke runs",
			Config: Config{
				Family: Llama, HiddenSize: 256, IntermediateSize: 688, NumLayers: 4,
				NumHeads: 8, NumKVHeads: 4, HeadDim: 32, RMSNormEps: 1e-5, VocabSize: 4096,
				MaxPositions: 4096, RoPE: rope.Params{Type: rope.Default, Theta: 10000},
				BOS: 1, EOS: []int{2},
			},
		},
		{
			Name:        "llama3-8b",
			Description: "Llama-3.1-8B shapes: hidden 4096, 32 layers, 32/8 heads, vocab 128256, llama3 RoPE scaling",
			Config: Config{
				Family: Llama, HiddenSize: 4096, IntermediateSize: 14336, NumLayers: 32,
				NumHeads: 32, NumKVHeads: 8, HeadDim: 128, RMSNormEps: 1e-5, VocabSize: 128256,
				MaxPositions: 131072, RoPE: llama3,
				BOS: 128000, EOS: []int{128001, 128008, 128009},
			},
		},
		{
			Name:        "mistral-7b",
			Description: "Mistral-7B-v0.1 shapes: hidden 4096, 32 layers, 32/8 heads, vocab 32000, sliding window 4096",
			Config: Config{
				Family: Mistral, HiddenSize: 4096, IntermediateSize: 14336, NumLayers: 32,
				NumHeads: 32, NumKVHeads: 8, HeadDim: 128, RMSNormEps: 1e-5, VocabSize: 32000,
				MaxPositions: 32768, RoPE: rope.Params{Type: rope.Default, Theta: 10000},
				LayerWindows: uniformWindows(32, 4096),
				BOS:          1, EOS: []int{2},
			},
		},
		{
			Name:        "qwen2.5-7b",
			Description: "Qwen2.5-7B shapes: hidden 3584, 28 layers, 28/4 heads, vocab 152064, q/k/v bias",
			Config: Config{
				Family: Qwen2, HiddenSize: 3584, IntermediateSize: 18944, NumLayers: 28,
				NumHeads: 28, NumKVHeads: 4, HeadDim: 128, RMSNormEps: 1e-6, VocabSize: 152064,
				MaxPositions: 131072, QKVBias: true, RoPE: rope.Params{Type: rope.Default, Theta: 1e6},
				BOS: 151643, EOS: []int{151643},
			},
		},
		{
			Name:        "qwen3-8b",
			Description: "Qwen3-8B shapes: hidden 4096, 36 layers, 32/8 heads, head dim 128, vocab 151936, q/k norm",
			Config: Config{
				Family: Qwen3, HiddenSize: 4096, IntermediateSize: 12288, NumLayers: 36,
				NumHeads: 32, NumKVHeads: 8, HeadDim: 128, RMSNormEps: 1e-6, VocabSize: 151936,
				MaxPositions: 40960, QKNorm: true, RoPE: rope.Params{Type: rope.Default, Theta: 1e6},
				BOS: 151643, EOS: []int{151645},
			},
		},
	}
}

// FindPreset returns the synthetic preset called name (without the prefix).
func FindPreset(name string) (Preset, error) {
	presets := SyntheticPresets()
	for _, p := range presets {
		if p.Name == name {
			return p, nil
		}
	}
	names := make([]string, len(presets))
	for i, p := range presets {
		names[i] = SyntheticPrefix + p.Name
	}
	return Preset{}, fmt.Errorf("unknown synthetic preset %q (available: %v)", SyntheticPrefix+name, names)
}

// syntheticBytes is the size of a synthetic model's bf16 weights.
func syntheticBytes(c Config) int64 { return 2 * c.ParamCount() }

// ParamCount returns the number of weight elements the architecture reads
// (a tied lm_head counted once).
func (c Config) ParamCount() int64 {
	var n int64
	for _, s := range tensorSpecs(c) {
		e := int64(1)
		for _, d := range s.shape {
			e *= int64(d)
		}
		n += e
	}
	return n
}

// SyntheticSource is a weights.Source of seeded random bf16 tensors with the
// names and shapes a Config reads: matrices and biases approximately
// normal(0, 0.02), norm weights 1. Each Tensor call generates the tensor
// afresh (deterministically from the seed and the name), so the source
// holds no memory itself: a CPU model keeps what it binds, a GPU backend
// can upload a tensor and drop it.
type SyntheticSource struct {
	seed  uint64
	specs map[string][]int
	names []string
}

var _ weights.Source = (*SyntheticSource)(nil)

// NewSyntheticSource returns the source of cfg's tensors for a seed.
func NewSyntheticSource(cfg Config, seed uint64) (*SyntheticSource, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &SyntheticSource{seed: seed, specs: map[string][]int{}}
	for _, spec := range tensorSpecs(cfg) {
		s.specs[spec.name] = spec.shape
		s.names = append(s.names, spec.name)
	}
	slices.Sort(s.names)
	return s, nil
}

// Names returns the tensor names, sorted.
func (s *SyntheticSource) Names() []string { return slices.Clone(s.names) }

// Close does nothing: the source holds nothing.
func (s *SyntheticSource) Close() error { return nil }

// bf16One is 1.0 in bfloat16.
const bf16One = 0x3f80

// Tensor generates the named tensor.
func (s *SyntheticSource) Tensor(name string) (weights.Tensor, error) {
	r, err := s.Recipe(name)
	if err != nil {
		return weights.Tensor{}, err
	}
	t := weights.Tensor{Name: name, DType: weights.BF16, Shape: r.Shape}
	t.Data = make([]byte, 2*t.Elems())
	if r.Ones {
		for i := 0; i < len(t.Data); i += 2 {
			binary.LittleEndian.PutUint16(t.Data[i:], bf16One)
		}
		return t, nil
	}
	fillNormal(t.Data, r.Key)
	return t, nil
}

// fillNormal writes bf16 values ~ normal(0, 0.02) into data. Element i
// depends only on (key, i), so the result is the same however the work is
// split; the split lets an 8B preset generate in seconds, not minutes.
func fillNormal(data []byte, key uint64) {
	const chunk = 1 << 16
	n := len(data) / 2
	chunks := (n + chunk - 1) / chunk
	workers := min(runtime.GOMAXPROCS(0), chunks)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := w; c < chunks; c += workers {
				for i := c * chunk; i < min((c+1)*chunk, n); i++ {
					binary.LittleEndian.PutUint16(data[2*i:], weights.Float32ToBF16(0.02*approxNormal(mix(key+uint64(i)*0x9e3779b97f4a7c15))))
				}
			}
		}()
	}
	wg.Wait()
}

// approxNormal turns 64 random bits into a unit-variance, roughly normal
// value: the sum of four 16-bit uniforms (Irwin–Hall), centred and scaled.
func approxNormal(u uint64) float32 {
	s := float64(u&0xffff+(u>>16)&0xffff+(u>>32)&0xffff+u>>48) / 65536 // in [0, 4)
	return float32((s - 2) * math.Sqrt(3))                             // variance 4/12 → 1
}

// mix is SplitMix64's finaliser: a bijective scramble of 64 bits.
func mix(z uint64) uint64 {
	z ^= z >> 30
	z *= 0xbf58476d1ce4e5b9
	z ^= z >> 27
	z *= 0x94d049bb133111eb
	z ^= z >> 31
	return z
}

// Recipe says how Tensor generates one tensor, so a GPU backend can make
// the same values on the device instead of generating and uploading them:
// with Ones every element is 1.0; otherwise element i (row-major) is
// bf16(float32(0.02) · float32((s−2)·√3)) where s is the sum of the four
// 16-bit fields of SplitMix64's finaliser applied to Key + i·0x9e3779b97f4a7c15,
// divided by 65536 (computed in float64), rounded to nearest even.
type Recipe struct {
	Key   uint64
	Ones  bool
	Shape []int
}

// Recipe returns the recipe of the named tensor.
func (s *SyntheticSource) Recipe(name string) (Recipe, error) {
	shape, ok := s.specs[name]
	if !ok {
		return Recipe{}, fmt.Errorf("synthetic: tensor %q: %w", name, weights.ErrNotFound)
	}
	if (tensorSpec{name: name}).isNorm() {
		return Recipe{Ones: true, Shape: slices.Clone(shape)}, nil
	}
	h := fnv.New64a()
	h.Write([]byte(name))
	return Recipe{Key: mix(s.seed ^ h.Sum64()), Shape: slices.Clone(shape)}, nil
}
