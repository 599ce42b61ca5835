// Package cpu holds the fp32 CPU kernels of the reference forward pass: a
// weight-stationary matrix product that reads bf16/f16/f32 weights in place,
// RMSNorm and the SwiGLU activation, and variants of the element-wise ones
// that round to bf16 as the CUDA engine's kernels do.
package cpu

import (
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/longctx/longctx/engine/vec"
	"github.com/longctx/longctx/engine/weights"
)

// Matrix is a [Rows][Cols] weight matrix read from its stored element type.
// It never holds an fp32 copy of a bf16/f16 tensor: rows are widened on the
// fly into small per-goroutine buffers. F32 tensors are used in place.
type Matrix struct {
	Rows, Cols int
	t          weights.Tensor
	f32        []float32 // the data itself when stored as F32
	// bf16 views BF16 data as 16-bit words when it is 2-byte aligned on a
	// little-endian machine: widening is then a shift per element, several
	// times faster than assembling bytes.
	bf16 []uint16
}

var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// NewMatrix wraps a 2-D tensor of a supported element type.
func NewMatrix(t weights.Tensor) (Matrix, error) {
	if len(t.Shape) != 2 || t.Shape[0] <= 0 || t.Shape[1] <= 0 {
		return Matrix{}, fmt.Errorf("tensor %q: shape %v is not a non-empty 2-D matrix", t.Name, t.Shape)
	}
	if t.DType.Size() == 0 {
		return Matrix{}, fmt.Errorf("tensor %q: unsupported dtype %q", t.Name, t.DType)
	}
	if t.Elems()*t.DType.Size() != len(t.Data) {
		return Matrix{}, fmt.Errorf("tensor %q: %d bytes for shape %v of %s", t.Name, len(t.Data), t.Shape, t.DType)
	}
	m := Matrix{Rows: t.Shape[0], Cols: t.Shape[1], t: t}
	if t.DType == weights.BF16 && littleEndian && uintptr(unsafe.Pointer(&t.Data[0]))%2 == 0 {
		m.bf16 = unsafe.Slice((*uint16)(unsafe.Pointer(&t.Data[0])), len(t.Data)/2)
	}
	if t.DType == weights.F32 {
		f, err := t.Float32Slice()
		if err != nil {
			return Matrix{}, err
		}
		m.f32 = f
	}
	return m, nil
}

// Row returns row r as fp32: a view of the tensor when it is stored as F32,
// otherwise converted into buf (len(buf) >= Cols).
func (m Matrix) Row(buf []float32, r int) []float32 {
	if m.f32 != nil {
		return m.f32[r*m.Cols : (r+1)*m.Cols]
	}
	buf = buf[:m.Cols]
	if m.bf16 != nil {
		src := m.bf16[r*m.Cols : (r+1)*m.Cols]
		for i, h := range src {
			buf[i] = math.Float32frombits(uint32(h) << 16)
		}
		return buf
	}
	// The range was checked in NewMatrix, so Float32 cannot fail here.
	_ = m.t.Float32(buf, r*m.Cols)
	return buf
}

// ReadRow writes row r into dst (len(dst) >= Cols) whatever the stored type.
func (m Matrix) ReadRow(dst []float32, r int) {
	if row := m.Row(dst, r); &row[0] != &dst[0] {
		copy(dst, row)
	}
}

// block is how many weight rows a worker widens at once: enough to reuse
// each input row from L1 across several dot products, small enough that the
// widened block stays in L2 (16 rows × 4096 × 4 B = 256 KiB at most for
// 8B-class models, less for the rest).
const block = 16

// MulT computes out[i][o] = Σ_c x[i][c]·W[o][c] + bias[o] for the n rows of
// x ([n][Cols]); out is [n][Rows], bias may be nil. Output features are
// split into blocks handed out to `workers` goroutines (<= 0: GOMAXPROCS).
// Each block is widened to fp32 once and applied to every input row, so the
// weights are read once per call however many rows x has.
func (m Matrix) MulT(out, x []float32, n int, bias []float32, workers int) {
	if len(x) < n*m.Cols || len(out) < n*m.Rows || (bias != nil && len(bias) != m.Rows) {
		panic(fmt.Sprintf("cpu.MulT %q: x %d, out %d, bias %d for n=%d and %d×%d", m.t.Name, len(x), len(out), len(bias), n, m.Rows, m.Cols))
	}
	blocks := (m.Rows + block - 1) / block
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, blocks)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]float32, block*m.Cols)
			var rows [block][]float32
			for {
				b := int(next.Add(1)) - 1
				if b >= blocks {
					return
				}
				lo, hi := b*block, min((b+1)*block, m.Rows)
				for o := lo; o < hi; o++ {
					rows[o-lo] = m.Row(buf[(o-lo)*m.Cols:], o)
				}
				m.applyBlock(out, x, n, bias, lo, rows[:hi-lo])
			}
		}()
	}
	wg.Wait()
}

func (m Matrix) applyBlock(out, x []float32, n int, bias []float32, lo int, rows [][]float32) {
	c := m.Cols
	for i := range n {
		xi := x[i*c : (i+1)*c]
		oi := out[i*m.Rows : (i+1)*m.Rows]
		k := 0
		for ; k+4 <= len(rows); k += 4 {
			s0, s1, s2, s3 := dot4(xi, rows[k], rows[k+1], rows[k+2], rows[k+3])
			oi[lo+k], oi[lo+k+1], oi[lo+k+2], oi[lo+k+3] = s0, s1, s2, s3
		}
		for ; k < len(rows); k++ {
			oi[lo+k] = vec.Dot(xi, rows[k])
		}
		if bias != nil {
			for k := range rows {
				oi[lo+k] += bias[lo+k]
			}
		}
	}
}

// dot4 returns x·w0 .. x·w3, loading each element of x once for four rows.
func dot4(x, w0, w1, w2, w3 []float32) (float32, float32, float32, float32) {
	n := len(x)
	w0, w1, w2, w3 = w0[:n], w1[:n], w2[:n], w3[:n]
	var a0, a1, a2, a3, b0, b1, b2, b3 float32
	i := 0
	for ; i+2 <= n; i += 2 {
		x0, x1 := x[i], x[i+1]
		a0 += x0 * w0[i]
		a1 += x0 * w1[i]
		a2 += x0 * w2[i]
		a3 += x0 * w3[i]
		b0 += x1 * w0[i+1]
		b1 += x1 * w1[i+1]
		b2 += x1 * w2[i+1]
		b3 += x1 * w3[i+1]
	}
	if i < n {
		x0 := x[i]
		a0 += x0 * w0[i]
		a1 += x0 * w1[i]
		a2 += x0 * w2[i]
		a3 += x0 * w3[i]
	}
	return a0 + b0, a1 + b1, a2 + b2, a3 + b3
}
