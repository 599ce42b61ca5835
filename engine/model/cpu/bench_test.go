package cpu

import (
	"math/rand/v2"
	"testing"

	"github.com/longctx/longctx/engine/weights"
)

func benchMulT(b *testing.B, n, rows, cols int) { benchMulTPath(b, n, rows, cols, true) }

func benchMulTPath(b *testing.B, n, rows, cols int, fast bool) {
	rng := rand.New(rand.NewPCG(1, 1))
	data := make([]byte, rows*cols*2)
	for i := range data {
		data[i] = byte(rng.IntN(256))
	}
	for i := 1; i < len(data); i += 2 {
		data[i] = 0x3c // keep values finite and small
	}
	m, err := NewMatrix(weights.Tensor{Name: "w", DType: weights.BF16, Shape: []int{rows, cols}, Data: data})
	if err != nil {
		b.Fatal(err)
	}
	if !fast {
		m.bf16 = nil
	}
	x := make([]float32, n*cols)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	out := make([]float32, n*rows)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		m.MulT(out, x, n, nil, 0)
	}
	b.ReportMetric(float64(2*n*rows*cols)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// Decode: one row against a 4096×4096 bf16 matrix (Llama-3-8B's q_proj).
func BenchmarkMulTDecode(b *testing.B) { benchMulT(b, 1, 4096, 4096) }

// Prefill chunk: 64 rows.
func BenchmarkMulTPrefill(b *testing.B) { benchMulT(b, 64, 1024, 4096) }

// The same decode through the byte-assembling widening path.
func BenchmarkMulTDecodeUnaligned(b *testing.B) { benchMulTPath(b, 1, 4096, 4096, false) }
