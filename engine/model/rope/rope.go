// Package rope computes rotary position embeddings the way Hugging Face
// transformers does for Llama, Mistral and Qwen: inverse frequencies
// theta^(-2i/d) (optionally rescaled: "linear", "llama3"), angles
// position × inv_freq in fp32, and the rotate_half convention, which pairs
// element i with element i + d/2 of each head.
package rope

import (
	"fmt"
	"math"

	"github.com/longctx/longctx/engine/vec"
)

// Scaling types.
const (
	Default = "default"
	Linear  = "linear"
	Llama3  = "llama3"
)

// Params are a model's RoPE settings.
type Params struct {
	Type  string  // Default, Linear or Llama3
	Theta float64 // base of the frequencies
	// Factor divides frequencies (Linear: all of them; Llama3: the low ones).
	Factor float64
	// Llama3 only.
	LowFreqFactor, HighFreqFactor float64
	OriginalMaxPositions          int
}

// Validate checks the parameters the type uses.
func (p Params) Validate() error {
	if !(p.Theta > 0) || math.IsInf(p.Theta, 0) {
		return fmt.Errorf("rope_theta %v must be a positive number", p.Theta)
	}
	switch p.Type {
	case Default:
	case Linear:
		if !(p.Factor > 0) || math.IsInf(p.Factor, 0) {
			return fmt.Errorf("rope factor %v must be a positive number", p.Factor)
		}
	case Llama3:
		switch {
		case !(p.Factor > 0) || math.IsInf(p.Factor, 0):
			return fmt.Errorf("llama3 rope factor %v must be a positive number", p.Factor)
		case !(p.LowFreqFactor > 0) || math.IsInf(p.LowFreqFactor, 0):
			return fmt.Errorf("llama3 rope low_freq_factor %v must be a positive number", p.LowFreqFactor)
		case !(p.HighFreqFactor > p.LowFreqFactor) || math.IsInf(p.HighFreqFactor, 0):
			return fmt.Errorf("llama3 rope high_freq_factor %v must be a number above low_freq_factor %v", p.HighFreqFactor, p.LowFreqFactor)
		case p.OriginalMaxPositions <= 0:
			return fmt.Errorf("llama3 rope original_max_position_embeddings %d must be positive", p.OriginalMaxPositions)
		}
	default:
		return fmt.Errorf("rope type %q is not supported (supported: default, linear, llama3)", p.Type)
	}
	return nil
}

// InvFreq returns the headDim/2 inverse frequencies, computed in float32
// step by step as transformers does, so that angles match it bit for bit as
// far as the math library allows.
func InvFreq(p Params, headDim int) ([]float32, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if headDim <= 0 || headDim%2 != 0 {
		return nil, fmt.Errorf("rope: head dim %d must be positive and even", headDim)
	}
	half := headDim / 2
	inv := make([]float32, half)
	for i := range inv {
		// base ** (arange(0, dim, 2).float() / dim), in float32.
		exponent := float32(2*i) / float32(headDim)
		inv[i] = 1 / float32(math.Pow(p.Theta, float64(exponent)))
	}
	switch p.Type {
	case Linear:
		for i := range inv {
			inv[i] /= float32(p.Factor)
		}
	case Llama3:
		scaleLlama3(inv, p)
	}
	return inv, nil
}

// scaleLlama3 applies Llama 3.1's frequency-dependent scaling: wavelengths
// longer than original/low_freq_factor are divided by factor, shorter than
// original/high_freq_factor kept, and those between interpolated smoothly.
func scaleLlama3(inv []float32, p Params) {
	factor := float32(p.Factor)
	low, high := float32(p.LowFreqFactor), float32(p.HighFreqFactor)
	orig := float32(p.OriginalMaxPositions)
	lowWavelen := orig / low
	highWavelen := orig / high
	for i, f := range inv {
		wavelen := float32(2*math.Pi) / f
		switch {
		case wavelen > lowWavelen:
			inv[i] = f / factor
		case wavelen < highWavelen:
			// high frequency: unchanged
		default:
			smooth := (orig/wavelen - low) / (high - low)
			inv[i] = (1-smooth)*f/factor + smooth*f
		}
	}
}

// Table holds cos and sin of position × inv_freq for a run of positions:
// row r is positions[r], each row headDim/2 wide.
type Table struct {
	half     int
	cos, sin []float32
}

// NewTable computes the angles for positions.
func NewTable(invFreq []float32, positions []int) Table {
	half := len(invFreq)
	t := Table{half: half, cos: make([]float32, len(positions)*half), sin: make([]float32, len(positions)*half)}
	for r, pos := range positions {
		for i, f := range invFreq {
			angle := float32(pos) * f // fp32 product, as transformers' inv_freq @ position_ids
			t.cos[r*half+i] = float32(math.Cos(float64(angle)))
			t.sin[r*half+i] = float32(math.Sin(float64(angle)))
		}
	}
	return t
}

// Rotate applies row r's rotation to x, one head of 2×half elements, in
// place: x1' = x1·cos − x2·sin, x2' = x2·cos + x1·sin, with x1 the first
// half and x2 the second (transformers' q·cos + rotate_half(q)·sin).
func (t Table) Rotate(x []float32, r int) {
	h := t.half
	cos, sin := t.cos[r*h:(r+1)*h], t.sin[r*h:(r+1)*h]
	x1, x2 := x[:h], x[h:2*h]
	for i := range h {
		a, b := x1[i], x2[i]
		x1[i] = a*cos[i] - b*sin[i]
		x2[i] = b*cos[i] + a*sin[i]
	}
}

// RotateBF16 is Rotate with the roundings of transformers in bf16, which
// kernels/core/rope.cu (qkv_rope_append) replays: cos and sin are rounded
// to bf16 (transformers' cos.to(x.dtype)), and q·cos, rotate_half(q)·sin
// and their sum are each a bf16 tensor op that rounds once:
//
//	x1' = bf16(bf16(x1·c) + bf16(−x2·s)),  x2' = bf16(bf16(x2·c) + bf16(x1·s))
//
// x must hold bf16 values: the products of two bf16 values are then exact
// in fp32, as in the kernel.
func (t Table) RotateBF16(x []float32, r int) {
	h := t.half
	cos, sin := t.cos[r*h:(r+1)*h], t.sin[r*h:(r+1)*h]
	x1, x2 := x[:h], x[h:2*h]
	for i := range h {
		c, s := vec.RoundBF16(cos[i]), vec.RoundBF16(sin[i])
		a, b := x1[i], x2[i]
		x1[i] = vec.RoundBF16(vec.RoundBF16(a*c) + vec.RoundBF16(-b*s))
		x2[i] = vec.RoundBF16(vec.RoundBF16(b*c) + vec.RoundBF16(a*s))
	}
}
