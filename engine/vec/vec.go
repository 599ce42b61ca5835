// Package vec holds the float32 vector kernels the CPU paths share (the
// engine's matrices, eager attention, the tiled attention plugins), so they
// all accumulate in the same order.
package vec

// Dot returns a·b; len(b) must be >= len(a). Four independent accumulators
// let the CPU overlap the multiply-adds.
func Dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// Axpy adds alpha·x to y; len(x) must be >= len(y).
func Axpy(y []float32, alpha float32, x []float32) {
	x = x[:len(y)]
	for i := range y {
		y[i] += alpha * x[i]
	}
}
