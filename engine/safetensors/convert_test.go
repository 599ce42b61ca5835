package safetensors

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/longctx/longctx/engine/weights"
)

// These tests check the engine/weights conversions this package's readers
// rely on against an independent decoder built on math.Ldexp rather than on
// bit shuffling.

// minifloat decodes an IEEE-style binary float with the given field widths.
func minifloat(bits uint32, expBits, mantBits uint) float64 {
	sign := 1.0
	if bits>>(expBits+mantBits)&1 == 1 {
		sign = -1
	}
	e := int(bits >> mantBits & (1<<expBits - 1))
	m := float64(bits & (1<<mantBits - 1))
	bias := 1<<(expBits-1) - 1
	switch e {
	case 1<<expBits - 1:
		if m != 0 {
			return math.NaN()
		}
		return math.Inf(int(sign))
	case 0:
		return sign * math.Ldexp(m, 1-bias-int(mantBits))
	}
	return sign * math.Ldexp(float64(uint64(1)<<mantBits)+m, e-bias-int(mantBits))
}

func sameFloat(got float32, want float64) bool {
	if math.IsNaN(want) {
		return math.IsNaN(float64(got))
	}
	return float64(got) == want && math.Signbit(float64(got)) == math.Signbit(want)
}

func TestHalfToFloat32AllValues(t *testing.T) {
	for h := range 1 << 16 {
		want := minifloat(uint32(h), 5, 10)
		if got := weights.HalfToFloat32(uint16(h)); !sameFloat(got, want) {
			t.Fatalf("HalfToFloat32(%#04x) = %v, want %v", h, got, want)
		}
	}
}

func TestBF16ToFloat32AllValues(t *testing.T) {
	dst := make([]float32, 1)
	for b := range 1 << 16 {
		want := minifloat(uint32(b), 8, 7)
		weights.BF16ToFloat32(dst, []byte{byte(b), byte(b >> 8)})
		if !sameFloat(dst[0], want) {
			t.Fatalf("BF16ToFloat32(%#04x) = %v, want %v", b, dst[0], want)
		}
	}
}

// nearestBF16 rounds f to bfloat16 to nearest, ties to even, by comparing
// distances to the two neighbouring bf16 values.
func nearestBF16(f float32) uint16 {
	bits := math.Float32bits(f)
	if math.IsInf(float64(f), 0) {
		return uint16(bits >> 16)
	}
	down := uint16(bits >> 16) // same sign, magnitude truncated
	up := down + 1
	vd := minifloat(uint32(down), 8, 7)
	vu := minifloat(uint32(up), 8, 7)
	if down&0x7fff == 0x7f7f { // up is infinity; round as if the exponent were unbounded
		vu = math.Copysign(math.Ldexp(1, 128), vd)
	}
	dd, du := math.Abs(float64(f)-vd), math.Abs(vu-float64(f))
	switch {
	case dd < du:
		return down
	case du < dd:
		return up
	case down&1 == 0:
		return down
	}
	return up
}

func TestFloat32ToBF16(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	lows := []uint32{0, 1, 0x7fff, 0x8000, 0x8001, 0xffff}
	for hi := range uint32(1 << 16) {
		for _, lo := range append(lows, rng.Uint32N(1<<16)) {
			f := math.Float32frombits(hi<<16 | lo)
			got := weights.Float32ToBF16(f)
			if math.IsNaN(float64(f)) {
				if g := minifloat(uint32(got), 8, 7); !math.IsNaN(g) || got>>15 != uint16(hi>>15) {
					t.Fatalf("Float32ToBF16(NaN %#08x) = %#04x, want a NaN of the same sign", hi<<16|lo, got)
				}
				continue
			}
			if want := nearestBF16(f); got != want {
				t.Fatalf("Float32ToBF16(%v = %#08x) = %#04x, want %#04x", f, hi<<16|lo, got, want)
			}
		}
	}
}
