// Package weights is the contract between checkpoint readers (safetensors
// files, synthetic presets) and the model code: named, typed, shaped byte
// slices that the reader owns (typically memory-mapped), plus conversion to
// the float32 the CPU engine computes in.
package weights

import (
	"errors"
	"fmt"
	"math"
	"unsafe"
)

// DType names a tensor element type with the spelling safetensors uses.
type DType string

// Element types the engine reads.
const (
	BF16 DType = "BF16"
	F16  DType = "F16"
	F32  DType = "F32"
)

// Size returns the element size in bytes, or 0 for a type the engine cannot read.
func (d DType) Size() int {
	switch d {
	case BF16, F16:
		return 2
	case F32:
		return 4
	}
	return 0
}

// ErrNotFound is wrapped by Source.Tensor when a name is absent.
var ErrNotFound = errors.New("tensor not found")

// Tensor is a view of one stored tensor. Data is owned by the Source and is
// valid until the Source is closed; it must not be modified.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
}

// Elems returns the number of elements the shape describes.
func (t Tensor) Elems() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// CheckShape returns an error naming the tensor when its shape differs from want.
func (t Tensor) CheckShape(want ...int) error {
	if len(t.Shape) != len(want) {
		return fmt.Errorf("tensor %q: shape %v, want %v", t.Name, t.Shape, want)
	}
	for i := range want {
		if t.Shape[i] != want[i] {
			return fmt.Errorf("tensor %q: shape %v, want %v", t.Name, t.Shape, want)
		}
	}
	return nil
}

// Source provides tensors by name.
type Source interface {
	Tensor(name string) (Tensor, error)
	Names() []string
	Close() error
}

// Float32 converts elements [start, start+len(dst)) of t into dst.
// It lets callers convert a row at a time, so a bf16 checkpoint is never held
// in RAM twice.
func (t Tensor) Float32(dst []float32, start int) error {
	size := t.DType.Size()
	if size == 0 {
		return fmt.Errorf("tensor %q: unsupported dtype %q", t.Name, t.DType)
	}
	if start < 0 || (start+len(dst))*size > len(t.Data) {
		return fmt.Errorf("tensor %q: elements [%d,%d) out of range (%d bytes)", t.Name, start, start+len(dst), len(t.Data))
	}
	src := t.Data[start*size:]
	switch t.DType {
	case BF16:
		BF16ToFloat32(dst, src)
	case F16:
		F16ToFloat32(dst, src)
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(le32(src[4*i:]))
		}
	}
	return nil
}

// Float32Slice returns the tensor as float32 without copying when the stored
// type is little-endian F32 and suitably aligned; otherwise it converts.
func (t Tensor) Float32Slice() ([]float32, error) {
	n := t.Elems()
	if n*t.DType.Size() != len(t.Data) {
		return nil, fmt.Errorf("tensor %q: %d bytes for shape %v of %s", t.Name, len(t.Data), t.Shape, t.DType)
	}
	if t.DType == F32 && n > 0 && uintptr(unsafe.Pointer(&t.Data[0]))%4 == 0 {
		return unsafe.Slice((*float32)(unsafe.Pointer(&t.Data[0])), n), nil
	}
	out := make([]float32, n)
	return out, t.Float32(out, 0)
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// BF16ToFloat32 widens little-endian bfloat16 values; len(src) >= 2*len(dst).
func BF16ToFloat32(dst []float32, src []byte) {
	for i := range dst {
		dst[i] = math.Float32frombits(uint32(src[2*i])<<16 | uint32(src[2*i+1])<<24)
	}
}

// BF16Data returns t's elements as little-endian bf16 bytes, narrowing F16
// and F32 with Float32ToBF16: what the CUDA engine uploads. A BF16 tensor's
// own data is returned, not copied.
func (t Tensor) BF16Data() ([]byte, error) {
	if t.DType == BF16 {
		return t.Data, nil
	}
	f, err := t.Float32Slice()
	if err != nil {
		return nil, err
	}
	out := make([]byte, 2*len(f))
	for i, v := range f {
		b := Float32ToBF16(v)
		out[2*i], out[2*i+1] = byte(b), byte(b>>8)
	}
	return out, nil
}

// Float32ToBF16 narrows with round-to-nearest-even, as torch does.
func Float32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 { // NaN: keep it a quiet NaN
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// F16ToFloat32 widens little-endian IEEE half values; len(src) >= 2*len(dst).
func F16ToFloat32(dst []float32, src []byte) {
	for i := range dst {
		dst[i] = HalfToFloat32(uint16(src[2*i]) | uint16(src[2*i+1])<<8)
	}
}

// HalfToFloat32 converts one IEEE 754 binary16 value.
func HalfToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp != 0:
		return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
	case mant == 0:
		return math.Float32frombits(sign)
	}
	// Subnormal half: normalise into a float32 exponent.
	e := uint32(113)
	for mant&0x400 == 0 {
		mant <<= 1
		e--
	}
	return math.Float32frombits(sign | e<<23 | (mant&0x3ff)<<13)
}
