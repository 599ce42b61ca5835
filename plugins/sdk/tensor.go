package sdk

import (
	"encoding/binary"
	"fmt"
	"math"
)

// packF32 encodes float32s as packed little-endian bytes, the wire form of
// every tensor in the protocol.
func packF32(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// unpackF32Into decodes b into dst, which must have exactly len(b)/4 elements.
func unpackF32Into(dst []float32, b []byte, what string) error {
	if len(b) != 4*len(dst) {
		return fmt.Errorf("%s: %d bytes, want %d float32 (%d bytes)", what, len(b), len(dst), 4*len(dst))
	}
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return nil
}

// unpackF32 decodes b, which must hold a whole number of float32s.
func unpackF32(b []byte, what string) ([]float32, error) {
	if len(b)%4 != 0 {
		return nil, fmt.Errorf("%s: %d bytes is not a whole number of float32", what, len(b))
	}
	v := make([]float32, len(b)/4)
	return v, unpackF32Into(v, b, what)
}

func toInt64s(v []int) []int64 {
	out := make([]int64, len(v))
	for i, x := range v {
		out[i] = int64(x)
	}
	return out
}

// maxPosition bounds positions read off the wire so that position
// arithmetic in a plugin can never overflow an int.
const maxPosition = 1 << 40

func fromInt64s(v []int64, what string) ([]int, error) {
	out := make([]int, len(v))
	for i, x := range v {
		if x < 0 || x > maxPosition {
			return nil, fmt.Errorf("%s[%d] = %d out of range", what, i, x)
		}
		out[i] = int(x)
	}
	return out, nil
}
