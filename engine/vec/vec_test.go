package vec

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestDotAndAxpy(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 3, 4, 5, 17, 128} {
		a, b := make([]float32, n), make([]float32, n+2)
		for i := range a {
			a[i] = rng.Float32()*2 - 1
		}
		for i := range b {
			b[i] = rng.Float32()*2 - 1
		}
		var want float64
		for i := range a {
			want += float64(a[i]) * float64(b[i])
		}
		if got := Dot(a, b); math.Abs(float64(got)-want) > 1e-5*float64(n+1) {
			t.Errorf("n=%d: Dot = %v, want %v", n, got, want)
		}
		y := make([]float32, n)
		copy(y, a)
		Axpy(y, 0.5, b)
		for i := range y {
			if w := a[i] + 0.5*b[i]; y[i] != w {
				t.Fatalf("n=%d: Axpy[%d] = %v, want %v", n, i, y[i], w)
			}
		}
	}
}
