package model

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/longctx/longctx/engine/attention"
	"github.com/longctx/longctx/engine/kvcache"
	"github.com/longctx/longctx/engine/model/rope"
	"github.com/longctx/longctx/engine/sample"
	"github.com/longctx/longctx/engine/weights"
)

// smallConfig is a two-layer model of the family, small enough for many
// runs per test, with the family's features switched on.
func smallConfig(f Family) Config {
	c := Config{
		Family: f, HiddenSize: 32, IntermediateSize: 48, NumLayers: 2,
		NumHeads: 4, NumKVHeads: 2, HeadDim: 8, RMSNormEps: 1e-5, VocabSize: 64,
		RoPE: rope.Params{Type: rope.Default, Theta: 10000}, BOS: 1, EOS: []int{2},
	}
	switch f {
	case Llama:
		c.RoPE = rope.Params{Type: rope.Llama3, Theta: 500000, Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositions: 16}
		c.TieEmbeddings = true
	case Mistral:
		c.LayerWindows = []int{5, 5}
	case Qwen2:
		c.QKVBias = true
	case Qwen3:
		c.QKNorm, c.HeadDim = true, 16
	}
	return c
}

var families = []Family{Llama, Mistral, Qwen2, Qwen3}

func newModel(t *testing.T, cfg Config, seed uint64, opts LoadOptions) *Model {
	t.Helper()
	src, err := NewSyntheticSource(cfg, seed)
	if err != nil {
		t.Fatal(err)
	}
	if opts.MemoryLimit == 0 {
		opts.MemoryLimit = -1
	}
	m, err := FromSource(cfg, src, opts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func randomPrompt(seed uint64, n, vocab int) []int {
	rng := rand.New(rand.NewPCG(seed, 1))
	p := make([]int, n)
	for i := range p {
		p[i] = 3 + rng.IntN(vocab-3)
	}
	return p
}

func prefill(t *testing.T, m *Model, prompt []int, chunk int) (*Sequence, []float32) {
	t.Helper()
	s, err := m.NewSequence()
	if err != nil {
		t.Fatal(err)
	}
	logits, err := s.Prefill(context.Background(), prompt, chunk)
	if err != nil {
		t.Fatal(err)
	}
	return s, logits
}

func TestSyntheticTinyGeneratesDeterministically(t *testing.T) {
	// took is CPU time (all goroutines), which contention cannot inflate;
	// with 2 cores the wall time is about half of it.
	run := func(seed uint64) (*Result, time.Duration) {
		m, err := Load("synthetic:tiny", LoadOptions{Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		if !m.Info().Synthetic || m.Info().Name != "synthetic:tiny" || m.Info().DType != weights.BF16 {
			t.Fatalf("info %+v", m.Info())
		}
		start := cpuTime()
		res, err := m.Generate(context.Background(), randomPrompt(1, 40, 4096), GenerateOptions{MaxNewTokens: 24, IgnoreStop: true})
		if err != nil {
			t.Fatal(err)
		}
		return res, cpuTime() - start
	}
	a, took := run(7)
	b, _ := run(7)
	c, _ := run(8)
	if len(a.Tokens) != 24 || !slices.Equal(a.Tokens, b.Tokens) || !slices.Equal(a.PrefillLogits, b.PrefillLogits) {
		t.Fatalf("same seed, different generations:\n%v\n%v", a.Tokens, b.Tokens)
	}
	if slices.Equal(a.PrefillLogits, c.PrefillLogits) {
		t.Fatal("different seeds gave identical logits")
	}
	// A 4-layer tiny model must generate comfortably inside a unit test.
	if took > time.Second && !raceEnabled {
		t.Errorf("40-token prefill + 24 tokens took %v of CPU, want < 1s", took)
	}
	t.Logf("synthetic:tiny: 40-token prefill + 24 tokens in %v of CPU (TTFT %v wall)", took, a.TTFT)
}

func TestChunkedPrefillMatchesUnchunked(t *testing.T) {
	for _, f := range families {
		t.Run(string(f), func(t *testing.T) {
			m := newModel(t, smallConfig(f), 3, LoadOptions{})
			prompt := randomPrompt(2, 23, m.Config().VocabSize)
			whole, want := prefill(t, m, prompt, 0)
			for _, chunk := range []int{1, 4, 7, 22, 23, 100} {
				s, got := prefill(t, m, prompt, chunk)
				// Every row goes through the same arithmetic: bitwise equal.
				if !slices.Equal(got, want) {
					t.Fatalf("chunk %d: logits differ from the unchunked prefill", chunk)
				}
				for l := range m.Config().NumLayers {
					a, b := s.Cache().View(l), whole.Cache().View(l)
					for g := range a.K {
						if !slices.Equal(a.K[g], b.K[g]) || !slices.Equal(a.V[g], b.V[g]) || !slices.Equal(a.Pos[g], b.Pos[g]) {
							t.Fatalf("chunk %d: layer %d head %d cache differs", chunk, l, g)
						}
					}
				}
			}
		})
	}
}

func TestDecodeMatchesPrefill(t *testing.T) {
	for _, f := range families {
		t.Run(string(f), func(t *testing.T) {
			m := newModel(t, smallConfig(f), 4, LoadOptions{})
			prompt := randomPrompt(3, 12, m.Config().VocabSize)
			_, want := prefill(t, m, prompt, 0)
			s, _ := prefill(t, m, prompt[:9], 0)
			var got []float32
			for _, tok := range prompt[9:] {
				var err error
				if got, err = s.Decode(context.Background(), tok); err != nil {
					t.Fatal(err)
				}
			}
			if !slices.Equal(got, want) {
				t.Fatal("prefill then decode differs from one prefill")
			}
			if s.Len() != len(prompt) {
				t.Fatalf("Len %d, want %d", s.Len(), len(prompt))
			}
		})
	}
}

// The family features must reach the arithmetic: switching one off changes
// the logits, and a sliding window at least as long as the sequence does not.
func TestFeaturesAffectOutput(t *testing.T) {
	prompt := randomPrompt(5, 12, 64)
	logits := func(cfg Config, src weights.Source) []float32 {
		m, err := FromSource(cfg, src, LoadOptions{MemoryLimit: -1})
		if err != nil {
			t.Fatal(err)
		}
		_, l := prefill(t, m, prompt, 0)
		return l
	}
	withWindows := func(c Config, w []int) Config {
		c.LayerWindows = w
		return c
	}
	withRoPE := func(c Config, p rope.Params) Config {
		c.RoPE = p
		return c
	}
	llama := smallConfig(Llama)
	tests := []struct {
		name          string
		base, variant Config
		same          bool
	}{
		{"sliding window shorter than prompt", withWindows(smallConfig(Mistral), []int{5, 5}), withWindows(smallConfig(Mistral), nil), false},
		{"sliding window as long as prompt", withWindows(smallConfig(Mistral), []int{12, 12}), withWindows(smallConfig(Mistral), nil), true},
		{"sliding window one short of prompt", withWindows(smallConfig(Mistral), []int{11, 11}), withWindows(smallConfig(Mistral), nil), false},
		{"window on one layer only", withWindows(smallConfig(Mistral), []int{0, 5}), withWindows(smallConfig(Mistral), []int{5, 5}), false},
		{"llama3 rope scaling", llama, withRoPE(llama, rope.Params{Type: rope.Default, Theta: llama.RoPE.Theta}), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src, err := NewSyntheticSource(tc.base, 9)
			if err != nil {
				t.Fatal(err)
			}
			a, b := logits(tc.base, src), logits(tc.variant, src)
			if slices.Equal(a, b) != tc.same {
				t.Fatalf("logits equal = %v, want %v", slices.Equal(a, b), tc.same)
			}
		})
	}
	// Same weights apart from the family-specific tensors: dropping them must matter.
	for _, f := range []Family{Qwen2, Qwen3} {
		cfg := smallConfig(f)
		src, err := NewSyntheticSource(cfg, 9)
		if err != nil {
			t.Fatal(err)
		}
		plain := cfg
		plain.QKVBias, plain.QKNorm = false, false
		if slices.Equal(logits(cfg, src), logits(plain, src)) {
			t.Errorf("%s: q/k/v bias or q/k norm had no effect", f)
		}
	}
}

// editSource serves another source's tensors through edit, which may
// change or drop (ok=false) a tensor.
type editSource struct {
	weights.Source
	edit func(t weights.Tensor) (weights.Tensor, bool)
}

func (e editSource) Tensor(name string) (weights.Tensor, error) {
	t, err := e.Source.Tensor(name)
	if err != nil {
		return t, err
	}
	t, ok := e.edit(t)
	if !ok {
		return weights.Tensor{}, fmt.Errorf("edited out: %w", weights.ErrNotFound)
	}
	return t, nil
}

func TestBindErrorsNameTheTensor(t *testing.T) {
	const victim = "model.layers.1.self_attn.k_proj.weight"
	tests := []struct {
		name string
		cfg  Config
		edit func(t weights.Tensor) (weights.Tensor, bool)
		want string
	}{
		{"missing", smallConfig(Qwen2), func(t weights.Tensor) (weights.Tensor, bool) { return t, t.Name != victim }, `tensor "` + victim + `"`},
		{"missing bias", smallConfig(Qwen2), func(t weights.Tensor) (weights.Tensor, bool) {
			return t, t.Name != "model.layers.0.self_attn.v_proj.bias"
		}, `"model.layers.0.self_attn.v_proj.bias"`},
		{"missing q_norm", smallConfig(Qwen3), func(t weights.Tensor) (weights.Tensor, bool) {
			return t, t.Name != "model.layers.1.self_attn.q_norm.weight"
		}, `"model.layers.1.self_attn.q_norm.weight"`},
		{"missing lm_head", smallConfig(Qwen2), func(t weights.Tensor) (weights.Tensor, bool) { return t, t.Name != lmHeadName }, `"lm_head.weight"`},
		{"transposed", smallConfig(Qwen2), func(t weights.Tensor) (weights.Tensor, bool) {
			if t.Name == victim {
				t.Shape = []int{t.Shape[1], t.Shape[0]}
			}
			return t, true
		}, `tensor "` + victim + `": shape [32 16], want [16 32]`},
		{"dtype", smallConfig(Qwen2), func(t weights.Tensor) (weights.Tensor, bool) {
			if t.Name == victim {
				t.DType = "I16"
			}
			return t, true
		}, `tensor "` + victim + `": dtype "I16" is not supported`},
		{"truncated data", smallConfig(Qwen2), func(t weights.Tensor) (weights.Tensor, bool) {
			if t.Name == normName {
				t.Data = t.Data[:10]
			}
			return t, true
		}, `tensor "model.norm.weight": 10 bytes of data, want 64`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src, err := NewSyntheticSource(tc.cfg, 1)
			if err != nil {
				t.Fatal(err)
			}
			_, err = FromSource(tc.cfg, editSource{src, tc.edit}, LoadOptions{MemoryLimit: -1})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("FromSource = %v, want error containing %s", err, tc.want)
			}
		})
	}
	// A tied model does not read lm_head.weight.
	cfg := smallConfig(Llama)
	src, err := NewSyntheticSource(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	drop := editSource{src, func(t weights.Tensor) (weights.Tensor, bool) { return t, t.Name != lmHeadName }}
	if _, err := FromSource(cfg, drop, LoadOptions{MemoryLimit: -1}); err != nil {
		t.Fatalf("tied model: %v", err)
	}
}

// reencode stores every tensor as dtype, after rounding its values to
// multiples of 1/1024 in (-1/4, 1/4): exact in bf16, f16 and f32 alike.
func reencode(src weights.Source, dtype weights.DType) weights.Source {
	return editSource{src, func(t weights.Tensor) (weights.Tensor, bool) {
		vals := make([]float32, t.Elems())
		if err := t.Float32(vals, 0); err != nil {
			panic(err)
		}
		out := weights.Tensor{Name: t.Name, DType: dtype, Shape: t.Shape, Data: make([]byte, len(vals)*dtype.Size())}
		for i, v := range vals {
			if !strings.HasSuffix(t.Name, "norm.weight") {
				v = float32(math.Round(float64(v)*1024)/1024) * 0.999 // 0.999 keeps |v| < 1/4 after rounding below
				v = float32(math.Round(float64(v)*1024) / 1024)
			}
			switch dtype {
			case weights.F32:
				bits := math.Float32bits(v)
				out.Data[4*i], out.Data[4*i+1], out.Data[4*i+2], out.Data[4*i+3] = byte(bits), byte(bits>>8), byte(bits>>16), byte(bits>>24)
			case weights.BF16:
				b := weights.Float32ToBF16(v)
				out.Data[2*i], out.Data[2*i+1] = byte(b), byte(b>>8)
			case weights.F16:
				h := halfOf(v)
				out.Data[2*i], out.Data[2*i+1] = byte(h), byte(h>>8)
			}
		}
		return out, true
	}}
}

// halfOf encodes v, a multiple of 1/1024 with |v| < 2, as IEEE half.
func halfOf(v float32) uint16 {
	var sign uint16
	if v < 0 {
		sign, v = 0x8000, -v
	}
	if v == 0 {
		return sign
	}
	exp := 0
	for v >= 2 {
		v, exp = v/2, exp+1
	}
	for v < 1 {
		v, exp = v*2, exp-1
	}
	if exp < -14 {
		panic("subnormal")
	}
	return sign | uint16(exp+15)<<10 | uint16((v-1)*1024)
}

func TestStoredTypesGiveIdenticalResults(t *testing.T) {
	cfg := smallConfig(Qwen2)
	base, err := NewSyntheticSource(cfg, 11)
	if err != nil {
		t.Fatal(err)
	}
	prompt := randomPrompt(6, 10, cfg.VocabSize)
	var want []float32
	for _, dtype := range []weights.DType{weights.F32, weights.BF16, weights.F16} {
		m, err := FromSource(cfg, reencode(base, dtype), LoadOptions{MemoryLimit: -1})
		if err != nil {
			t.Fatal(err)
		}
		if m.Info().DType != dtype {
			t.Fatalf("info dtype %s, want %s", m.Info().DType, dtype)
		}
		_, got := prefill(t, m, prompt, 0)
		if want == nil {
			want = got
		} else if !slices.Equal(got, want) {
			t.Fatalf("%s weights give different logits from F32 with the same values", dtype)
		}
	}
}

// cancelAt is an attention backend that cancels a context when it reaches a layer.
type cancelAt struct {
	layer  int
	cancel context.CancelFunc
}

func (c *cancelAt) Name() string { return "cancel-at" }

func (c *cancelAt) Attend(ctx context.Context, p *attention.Problem) error {
	if p.Layer == c.layer {
		c.cancel()
	}
	return attention.Eager{}.Attend(ctx, p)
}

func TestCancellation(t *testing.T) {
	cfg := smallConfig(Llama)
	prompt := randomPrompt(7, 8, cfg.VocabSize)

	// Cancelled before starting: nothing is appended and the sequence stays usable.
	m := newModel(t, cfg, 1, LoadOptions{})
	s, err := m.NewSequence()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Prefill(ctx, prompt, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("Prefill with a cancelled context = %v", err)
	}
	if _, err := s.Prefill(context.Background(), prompt, 0); err != nil {
		t.Fatalf("sequence unusable after a refused call: %v", err)
	}

	// Cancelled between layers: the call fails, and the sequence, whose
	// cache now holds the chunk in layer 0 only, refuses to go on.
	backend := &cancelAt{layer: 0}
	m = newModel(t, cfg, 1, LoadOptions{Attention: backend})
	ctx, backend.cancel = context.WithCancel(context.Background())
	if _, err := m.Generate(ctx, prompt, GenerateOptions{MaxNewTokens: 4}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Generate = %v, want context.Canceled", err)
	}
	s, err = m.NewSequence()
	if err != nil {
		t.Fatal(err)
	}
	ctx, backend.cancel = context.WithCancel(context.Background())
	if _, err := s.Prefill(ctx, prompt, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("Prefill = %v, want context.Canceled", err)
	}
	if s.Cache().Len(0, 0) != len(prompt) || s.Cache().Len(1, 0) != 0 {
		t.Fatalf("cache lengths %d/%d: the interruption was not between layers", s.Cache().Len(0, 0), s.Cache().Len(1, 0))
	}
	if _, err := s.Decode(context.Background(), 5); err == nil || !strings.Contains(err.Error(), "sequence unusable") {
		t.Fatalf("Decode after an interrupted pass = %v, want the sequence refused", err)
	}
}

func TestTokenOutsideVocabulary(t *testing.T) {
	m := newModel(t, smallConfig(Llama), 1, LoadOptions{})
	s, err := m.NewSequence()
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []int{-1, 64} {
		if _, err := s.Prefill(context.Background(), []int{5, bad}, 0); err == nil || !strings.Contains(err.Error(), "outside the vocabulary") {
			t.Fatalf("token %d: %v", bad, err)
		}
	}
	if _, err := s.Prefill(context.Background(), []int{5, 6}, 0); err != nil {
		t.Fatalf("sequence unusable after a rejected token: %v", err)
	}
	if _, err := s.Prefill(context.Background(), nil, 0); err == nil {
		t.Fatal("empty prefill accepted")
	}
}

func TestGenerate(t *testing.T) {
	cfg := smallConfig(Mistral)
	m := newModel(t, cfg, 2, LoadOptions{})
	prompt := randomPrompt(8, 9, cfg.VocabSize)
	ctx := context.Background()
	perToken := int64(cfg.NumLayers*cfg.NumKVHeads) * kvcache.TokenBytes(cfg.HeadDim, 4)

	var streamed []int
	res, err := m.Generate(ctx, prompt, GenerateOptions{MaxNewTokens: 6, ChunkSize: 4, IgnoreStop: true, OnToken: func(id int) error {
		streamed = append(streamed, id)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Tokens) != 6 || res.StopReason != StopLength || !slices.Equal(streamed, res.Tokens) {
		t.Fatalf("tokens %v (%s), streamed %v", res.Tokens, res.StopReason, streamed)
	}
	if res.Tokens[0] != sample.Argmax(res.PrefillLogits) {
		t.Fatal("first token is not the argmax of the prefill logits")
	}
	if len(res.Decode) != 5 || res.TTFT <= 0 || res.Prefill <= 0 || res.Prefill > res.TTFT || res.E2E < res.TTFT {
		t.Fatalf("timings: prefill %v TTFT %v decode %v E2E %v", res.Prefill, res.TTFT, res.Decode, res.E2E)
	}
	if res.KVBytesPrefill != int64(len(prompt))*perToken || res.KVBytesEnd != int64(len(prompt)+5)*perToken {
		t.Fatalf("KV bytes %d / %d, want %d / %d", res.KVBytesPrefill, res.KVBytesEnd, int64(len(prompt))*perToken, int64(len(prompt)+5)*perToken)
	}
	if est := m.EstimateMemory(len(prompt)+5, 0); est.KVCache != res.KVBytesEnd {
		t.Fatalf("EstimateMemory KV %d, cache holds %d", est.KVCache, res.KVBytesEnd)
	}

	// Stopping on a token: it is kept, and the reason says so.
	stopAt := res.Tokens[2]
	first := slices.Index(res.Tokens, stopAt)
	stopped, err := m.Generate(ctx, prompt, GenerateOptions{MaxNewTokens: 6, StopTokens: []int{stopAt}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(stopped.Tokens, res.Tokens[:first+1]) || stopped.StopReason != StopToken {
		t.Fatalf("stop on %d: %v (%s), want %v", stopAt, stopped.Tokens, stopped.StopReason, res.Tokens[:first+1])
	}

	// Prefill only.
	only, err := m.Generate(ctx, prompt, GenerateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(only.Tokens) != 0 || !slices.Equal(only.PrefillLogits, res.PrefillLogits) || only.KVBytesEnd != only.KVBytesPrefill {
		t.Fatalf("prefill only: %+v", only)
	}

	// Seeded sampling is reproducible.
	sampled := func(seed uint64) []int {
		smp, err := sample.New(sample.Config{Temperature: 1.2, TopP: 0.95}, rand.New(rand.NewPCG(seed, 0)))
		if err != nil {
			t.Fatal(err)
		}
		r, err := m.Generate(ctx, prompt, GenerateOptions{MaxNewTokens: 12, Sampler: smp, IgnoreStop: true})
		if err != nil {
			t.Fatal(err)
		}
		return r.Tokens
	}
	if a, b := sampled(1), sampled(1); !slices.Equal(a, b) {
		t.Fatalf("same seed: %v vs %v", a, b)
	}

	// Errors.
	boom := errors.New("client went away")
	if _, err := m.Generate(ctx, prompt, GenerateOptions{MaxNewTokens: 3, OnToken: func(int) error { return boom }}); !errors.Is(err, boom) {
		t.Fatalf("OnToken error: %v", err)
	}
	if _, err := m.Generate(ctx, prompt, GenerateOptions{MaxNewTokens: -1}); err == nil {
		t.Fatal("negative MaxNewTokens accepted")
	}
	if _, err := m.Generate(ctx, nil, GenerateOptions{MaxNewTokens: 1}); err == nil {
		t.Fatal("empty prompt accepted")
	}
}

func TestGenerateStopsOnConfigEOS(t *testing.T) {
	cfg := smallConfig(Qwen3)
	m := newModel(t, cfg, 3, LoadOptions{})
	prompt := randomPrompt(9, 6, cfg.VocabSize)
	free, err := m.Generate(context.Background(), prompt, GenerateOptions{MaxNewTokens: 5, IgnoreStop: true})
	if err != nil {
		t.Fatal(err)
	}
	// Make the model's own EOS the third generated token.
	cfg.EOS = []int{free.Tokens[2]}
	src, err := NewSyntheticSource(cfg, 3)
	if err != nil {
		t.Fatal(err)
	}
	m, err = FromSource(cfg, src, LoadOptions{MemoryLimit: -1})
	if err != nil {
		t.Fatal(err)
	}
	res, err := m.Generate(context.Background(), prompt, GenerateOptions{MaxNewTokens: 5})
	if err != nil {
		t.Fatal(err)
	}
	want := free.Tokens[:slices.Index(free.Tokens, cfg.EOS[0])+1]
	if !slices.Equal(res.Tokens, want) || res.StopReason != StopToken {
		t.Fatalf("tokens %v (%s), want %v (stop)", res.Tokens, res.StopReason, want)
	}
}

func TestAfterPrefillCompaction(t *testing.T) {
	cfg := smallConfig(Llama)
	m := newModel(t, cfg, 5, LoadOptions{})
	prompt := randomPrompt(10, 16, cfg.VocabSize)
	perToken := int64(cfg.NumLayers*cfg.NumKVHeads) * kvcache.TokenBytes(cfg.HeadDim, 4)
	keepLast := func(ctx context.Context, s *Sequence) error {
		c := s.Cache()
		for l := range c.Layers() {
			keep := make([][]int, c.KVHeads())
			for g := range keep {
				for i := c.Len(l, g) / 2; i < c.Len(l, g); i++ {
					keep[g] = append(keep[g], i)
				}
			}
			if err := c.Compact(l, keep); err != nil {
				return err
			}
		}
		return nil
	}
	res, err := m.Generate(context.Background(), prompt, GenerateOptions{MaxNewTokens: 5, IgnoreStop: true, AfterPrefill: keepLast})
	if err != nil {
		t.Fatal(err)
	}
	if res.KVBytesPrefill != 8*perToken || res.KVBytesEnd != (8+4)*perToken {
		t.Fatalf("KV bytes %d / %d, want %d / %d", res.KVBytesPrefill, res.KVBytesEnd, 8*perToken, 12*perToken)
	}
	full, err := m.Generate(context.Background(), prompt, GenerateOptions{MaxNewTokens: 5, IgnoreStop: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Tokens[0] != full.Tokens[0] {
		t.Fatal("compaction after prefill changed the first token, which comes from the prefill logits")
	}

	// Positions continue from the original length after eviction.
	s, _ := prefill(t, m, prompt, 0)
	if err := keepLast(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Decode(context.Background(), 7); err != nil {
		t.Fatal(err)
	}
	pos := s.Cache().View(0).Pos[0]
	if want := append(span(8, 16), 16); !slices.Equal(pos, want) {
		t.Fatalf("positions after compaction and one decode %v, want %v", pos, want)
	}

	boom := errors.New("policy failed")
	if _, err := m.Generate(context.Background(), prompt, GenerateOptions{MaxNewTokens: 2, AfterPrefill: func(context.Context, *Sequence) error { return boom }}); !errors.Is(err, boom) {
		t.Fatalf("AfterPrefill error: %v", err)
	}
}

func span(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

func TestMemoryChecks(t *testing.T) {
	// An 8B preset against 1 GiB: refused before any weight is generated.
	start := time.Now()
	_, err := Load("synthetic:llama3-8b", LoadOptions{MemoryLimit: 1 << 30})
	if err == nil || !strings.Contains(err.Error(), "needs about") || !strings.Contains(err.Error(), "1.00 GiB is available") {
		t.Fatalf("Load = %v, want a memory error", err)
	}
	if !errors.Is(err, ErrOutOfMemory) {
		t.Errorf("Load error %v does not wrap ErrOutOfMemory", err)
	}
	if time.Since(start) > time.Second {
		t.Fatalf("refusal took %v: weights were generated before the check", time.Since(start))
	}

	// A run whose KV cache exceeds a fixed limit is refused before prefill.
	cfg := smallConfig(Llama)
	need := EstimateMemory(cfg, syntheticBytes(cfg), defaultChunk, defaultChunk, 2)
	m := newModel(t, cfg, 1, LoadOptions{MemoryLimit: need.Total() + 1<<20, Workers: 2})
	if _, err := m.Generate(context.Background(), []int{5, 6}, GenerateOptions{MaxNewTokens: 4}); err != nil {
		t.Fatal(err)
	}
	_, err = m.Generate(context.Background(), []int{5, 6}, GenerateOptions{MaxNewTokens: 1 << 20})
	if err == nil || !strings.Contains(err.Error(), "KV cache") {
		t.Fatalf("Generate of a million tokens within a few MiB = %v, want a memory error", err)
	}
}

func TestLoadErrors(t *testing.T) {
	_, err := Load("synthetic:nope", LoadOptions{})
	if err == nil || !strings.Contains(err.Error(), `"synthetic:nope"`) || !strings.Contains(err.Error(), "synthetic:tiny") {
		t.Fatalf("unknown preset: %v", err)
	}
	dir := t.TempDir()
	if _, err := Load(dir, LoadOptions{}); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Fatalf("folder without config.json: %v", err)
	}
	if _, err := Load(referenceRoot+"/llama2", LoadOptions{}); err == nil || !strings.Contains(err.Error(), "LoadOptions.Open") {
		t.Fatalf("folder without an opener: %v", err)
	}
}
