package model

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/longctx/longctx/engine/attention"
	"github.com/longctx/longctx/engine/weights"
)

func TestParseNumerics(t *testing.T) {
	tests := []struct {
		in      string
		want    Numerics
		wantErr bool
	}{
		{"fp32", NumericsFP32, false},
		{"bf16", NumericsBF16, false},
		{"", 0, true},
		{"BF16", 0, true},
		{"fp16", 0, true},
	}
	for _, tc := range tests {
		got, err := ParseNumerics(tc.in)
		if tc.wantErr {
			if err == nil || !strings.Contains(err.Error(), "want fp32 or bf16") {
				t.Errorf("ParseNumerics(%q) = %v, %v; want an error listing fp32 and bf16", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want || got.String() != tc.in {
			t.Errorf("ParseNumerics(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	if s := Numerics(9).String(); s != "Numerics(9)" {
		t.Errorf("Numerics(9).String() = %q", s)
	}
}

// FuzzParseNumerics: --cpu-numerics takes any string; it parses to a mode
// that prints back as the same string, or fails naming the choices.
func FuzzParseNumerics(f *testing.F) {
	for _, s := range []string{"fp32", "bf16", "", "BF16", "bf16 ", "fp16"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseNumerics(s)
		if err != nil {
			if !strings.Contains(err.Error(), "want fp32 or bf16") {
				t.Fatalf("ParseNumerics(%q): error %q does not list the choices", s, err)
			}
			return
		}
		if n.String() != s || n.validate() != nil {
			t.Fatalf("ParseNumerics(%q) = %v, which prints as %q", s, n, n.String())
		}
	})
}

// TestNumericsOptions checks which attention backend each mode runs and
// that bad combinations are refused with errors that say why.
func TestNumericsOptions(t *testing.T) {
	tests := []struct {
		name     string
		numerics Numerics
		attn     attention.Backend
		wantAttn string
		wantErr  string
	}{
		{"fp32 default", NumericsFP32, nil, "eager", ""},
		{"bf16 default", NumericsBF16, nil, "eager-bf16", ""},
		{"bf16 with its own eager", NumericsBF16, attention.EagerBF16{Workers: 2}, "eager-bf16", ""},
		{"bf16 with fp32 attention", NumericsBF16, attention.Eager{}, "", `attention backend "eager" computes in fp32`},
		{"unknown mode", Numerics(7), nil, "", "LoadOptions.Numerics 7 is not a known mode"},
	}
	cfg := smallConfig(Qwen3)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src, err := NewSyntheticSource(cfg, 1)
			if err != nil {
				t.Fatal(err)
			}
			m, err := FromSource(cfg, src, LoadOptions{MemoryLimit: -1, Numerics: tc.numerics, Attention: tc.attn})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("FromSource = %v, want error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Attention().Name(); got != tc.wantAttn {
				t.Errorf("attention %q, want %q", got, tc.wantAttn)
			}
			if m.Info().Numerics != tc.numerics {
				t.Errorf("Info().Numerics = %v, want %v", m.Info().Numerics, tc.numerics)
			}
		})
	}
}

func isBF16(v float32) bool { return math.Float32bits(v)&0xffff == 0 }

func allBF16(s []float32) bool {
	for _, v := range s {
		if !isBF16(v) {
			return false
		}
	}
	return true
}

// TestBF16ModeStoresBF16 checks, for every family, that the bf16 mode
// leaves only bf16 values where the GPU stores bf16 tensors (the KV cache
// and the logits), where the fp32 mode does not, and that chunking the
// prefill does not change a bit of it.
func TestBF16ModeStoresBF16(t *testing.T) {
	for _, f := range families {
		t.Run(string(f), func(t *testing.T) {
			cfg := smallConfig(f)
			prompt := randomPrompt(3, 13, cfg.VocabSize)
			fp32 := newModel(t, cfg, 5, LoadOptions{})
			_, fpLogits := prefill(t, fp32, prompt, 0)
			if allBF16(fpLogits) {
				t.Fatal("fp32 logits are all bf16 values: the check below would prove nothing")
			}
			m := newModel(t, cfg, 5, LoadOptions{Numerics: NumericsBF16})
			s, logits := prefill(t, m, prompt, 0)
			if !allBF16(logits) {
				t.Error("bf16 mode returned logits that are not bf16 values")
			}
			for l := range s.Cache().Layers() {
				v := s.Cache().View(l)
				for h := range v.K {
					if !allBF16(v.K[h]) || !allBF16(v.V[h]) {
						t.Fatalf("layer %d kv head %d caches keys or values that are not bf16 values", l, h)
					}
				}
			}
			_, chunked := prefill(t, m, prompt, 4)
			if !slices.Equal(chunked, logits) {
				t.Error("bf16 mode: prefill in chunks of 4 gives other logits than in one pass")
			}
		})
	}
}

// TestBF16ModeRoundsWeights: bf16 mode converts F32 weights to bf16 as the
// GPU engine does when it uploads them, so F32 weights that round to a
// bf16 checkpoint's values give that checkpoint's results bit for bit,
// while the fp32 mode sees the difference.
func TestBF16ModeRoundsWeights(t *testing.T) {
	cfg := smallConfig(Qwen2)
	base, err := NewSyntheticSource(cfg, 12)
	if err != nil {
		t.Fatal(err)
	}
	// Widened bf16 plus 0x1234 in the low half: below the rounding
	// midpoint 0x8000, so nearest-even rounding gives back the bf16 value.
	blurred := editSource{base, func(t weights.Tensor) (weights.Tensor, bool) {
		out := weights.Tensor{Name: t.Name, DType: weights.F32, Shape: t.Shape, Data: make([]byte, 2*len(t.Data))}
		for i := 0; i < len(t.Data); i += 2 {
			out.Data[2*i], out.Data[2*i+1] = 0x34, 0x12
			out.Data[2*i+2], out.Data[2*i+3] = t.Data[i], t.Data[i+1]
		}
		return out, true
	}}
	prompt := randomPrompt(4, 9, cfg.VocabSize)
	logits := func(src weights.Source, n Numerics) []float32 {
		m, err := FromSource(cfg, src, LoadOptions{MemoryLimit: -1, Numerics: n})
		if err != nil {
			t.Fatal(err)
		}
		if n == NumericsBF16 && m.Info().DType != weights.BF16 {
			t.Errorf("bf16 mode: Info().DType = %s, want BF16", m.Info().DType)
		}
		_, l := prefill(t, m, prompt, 0)
		return l
	}
	if !slices.Equal(logits(blurred, NumericsBF16), logits(base, NumericsBF16)) {
		t.Error("bf16 mode: F32 weights that round to the bf16 checkpoint give other logits")
	}
	if slices.Equal(logits(blurred, NumericsFP32), logits(base, NumericsFP32)) {
		t.Error("fp32 mode gives the same logits for both checkpoints: the blurred weights test nothing")
	}
}
