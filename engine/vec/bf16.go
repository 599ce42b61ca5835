package vec

import "math"

// bf16NaN is the value __float2bfloat16_rn (and the cvt.rn.bf16.f32
// instruction) gives for any NaN input: the canonical bf16 NaN 0x7fff,
// widened to fp32. Keeping one NaN makes the bf16 CPU path's results
// reproducible bit for bit whatever NaN payload produced them.
const bf16NaN = 0x7fff0000

// RoundBF16 returns x rounded to the nearest bfloat16 value, ties to even,
// kept in float32: the value a bf16 tensor element holds after the CUDA
// kernels' __float2bfloat16_rn or torch's .to(torch.bfloat16). bfloat16 is
// the upper half of an IEEE binary32, so rounding acts on the low 16 bits
// alone: subnormals round like normal numbers (no flush to zero), finite
// values at or past the midpoint above the largest bf16 become ±Inf, ±Inf
// stay, and every NaN becomes the canonical NaN.
func RoundBF16(x float32) float32 {
	b := math.Float32bits(x)
	if b&0x7fffffff > 0x7f800000 {
		return math.Float32frombits(bf16NaN)
	}
	// Adding 0x7fff rounds a low half above 0x8000 up and one below it
	// down; the kept half's lowest bit turns the tie 0x8000 up exactly
	// when that bit is odd. A carry out of the mantissa increments the
	// exponent, which is the correct result, up to Inf (0x7f800000).
	b += 0x7fff + (b>>16)&1
	return math.Float32frombits(b &^ 0xffff)
}

// RoundBF16s rounds every element of s to bfloat16 in place, as storing
// an fp32 result into a bf16 tensor does.
func RoundBF16s(s []float32) {
	for i, v := range s {
		s[i] = RoundBF16(v)
	}
}
