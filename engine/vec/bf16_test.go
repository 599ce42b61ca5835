package vec

import (
	"math"
	"testing"
)

// TestRoundBF16 checks bit patterns worked out by hand from the definition:
// keep the upper 16 bits of the binary32, rounding to nearest with ties to
// the even upper half.
func TestRoundBF16(t *testing.T) {
	tests := []struct {
		name    string
		in, out uint32
	}{
		{"one", 0x3f800000, 0x3f800000},
		{"zero", 0x00000000, 0x00000000},
		{"negative zero", 0x80000000, 0x80000000},
		{"below half rounds down", 0x3f807fff, 0x3f800000},
		{"above half rounds up", 0x3f808001, 0x3f810000},
		{"tie to even stays", 0x3f808000, 0x3f800000},
		{"tie to even rounds up", 0x3f818000, 0x3f820000},
		{"negative tie to even stays", 0xbf808000, 0xbf800000},
		{"negative tie to even rounds up", 0xbf818000, 0xbf820000},
		{"carry into the exponent", 0x3fffffff, 0x40000000},
		{"pi", 0x40490fdb, 0x40490000},
		{"smallest subnormal to zero", 0x00000001, 0x00000000},
		{"negative smallest subnormal to -0", 0x80000001, 0x80000000},
		{"subnormal tie to even zero", 0x00008000, 0x00000000},
		{"subnormal tie to even up", 0x00018000, 0x00020000},
		{"subnormal above half", 0x00008001, 0x00010000},
		{"largest subnormal to smallest normal", 0x007fffff, 0x00800000},
		{"subnormal tie into smallest normal", 0x007f8000, 0x00800000},
		{"largest bf16 stays", 0x7f7f0000, 0x7f7f0000},
		{"below the overflow midpoint", 0x7f7f7fff, 0x7f7f0000},
		{"overflow midpoint ties to Inf", 0x7f7f8000, 0x7f800000},
		{"largest float32 overflows", 0x7f7fffff, 0x7f800000},
		{"negative overflow", 0xff7fffff, 0xff800000},
		{"Inf stays", 0x7f800000, 0x7f800000},
		{"-Inf stays", 0xff800000, 0xff800000},
		// A NaN whose payload sits in the low half only would round to
		// Inf (or, with the sign bit set, wrap to zero) without the NaN
		// case.
		{"NaN with a low payload", 0x7f800001, bf16NaN},
		{"negative NaN, all bits set", 0xffffffff, bf16NaN},
		{"quiet NaN", 0x7fc00000, bf16NaN},
	}
	for _, tc := range tests {
		got := math.Float32bits(RoundBF16(math.Float32frombits(tc.in)))
		if got != tc.out {
			t.Errorf("%s: RoundBF16(%#08x) = %#08x, want %#08x", tc.name, tc.in, got, tc.out)
		}
	}
}

func TestRoundBF16s(t *testing.T) {
	s := []float32{1, math.Float32frombits(0x3f818000), float32(math.Inf(-1))}
	RoundBF16s(s)
	want := []uint32{0x3f800000, 0x3f820000, 0xff800000}
	for i, v := range s {
		if math.Float32bits(v) != want[i] {
			t.Errorf("[%d] = %#08x, want %#08x", i, math.Float32bits(v), want[i])
		}
	}
}

// nearestBF16 is RoundBF16 written differently, from the definition of
// round-to-nearest-even over the bf16 grid: compare x with its two bf16
// neighbours in float64. Past the largest bf16 the next grid point is
// 2^128, which rounds to Inf (IEEE 754's overflow rule).
func nearestBF16(x float32) uint32 {
	b := math.Float32bits(x)
	if math.IsNaN(float64(x)) {
		return bf16NaN
	}
	if math.IsInf(float64(x), 0) {
		return b
	}
	sign, mag := b&0x80000000, b&0x7fffffff
	lo := mag &^ 0xffff
	hi := lo + 0x10000
	loV := float64(math.Float32frombits(lo))
	hiV := math.Ldexp(1, 128)
	if hi < 0x7f800000 {
		hiV = float64(math.Float32frombits(hi))
	}
	v := float64(math.Float32frombits(mag))
	switch dl, dh := v-loV, hiV-v; {
	case dl < dh:
		return sign | lo
	case dl > dh:
		return sign | hi
	case lo&0x10000 == 0:
		return sign | lo
	default:
		return sign | hi
	}
}

func FuzzRoundBF16(f *testing.F) {
	for _, b := range []uint32{0, 1, 0x3f808000, 0x3f818000, 0x007f8000, 0x7f7f8000, 0x7f7fffff, 0x7f800001, 0xffffffff} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, bits uint32) {
		x := math.Float32frombits(bits)
		got := RoundBF16(x)
		if g, w := math.Float32bits(got), nearestBF16(x); g != w {
			t.Fatalf("RoundBF16(%#08x) = %#08x, want %#08x", bits, g, w)
		}
		if again := RoundBF16(got); math.Float32bits(again) != math.Float32bits(got) {
			t.Fatalf("RoundBF16 is not idempotent at %#08x: %#08x then %#08x", bits, math.Float32bits(got), math.Float32bits(again))
		}
	})
}
