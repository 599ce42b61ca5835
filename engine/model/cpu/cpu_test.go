package cpu

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"unsafe"

	"github.com/longctx/longctx/engine/weights"
)

// encode stores values as dtype. Values must be representable in F16 when
// dtype is F16 (the tests use multiples of 1/64 in [-2, 2]); bf16 rounds.
// It returns the tensor and the values as the tensor holds them.
func encode(t *testing.T, name string, dtype weights.DType, rows, cols int, values []float32) (weights.Tensor, []float32) {
	t.Helper()
	data := make([]byte, len(values)*dtype.Size())
	held := make([]float32, len(values))
	for i, v := range values {
		switch dtype {
		case weights.BF16:
			b := weights.Float32ToBF16(v)
			binary.LittleEndian.PutUint16(data[2*i:], b)
			held[i] = math.Float32frombits(uint32(b) << 16)
		case weights.F16:
			h := exactHalf(t, v)
			binary.LittleEndian.PutUint16(data[2*i:], h)
			held[i] = v
		case weights.F32:
			binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v))
			held[i] = v
		}
	}
	return weights.Tensor{Name: name, DType: dtype, Shape: []int{rows, cols}, Data: data}, held
}

// exactHalf encodes v, a multiple of 1/64 with |v| <= 2, as IEEE half.
func exactHalf(t *testing.T, v float32) uint16 {
	t.Helper()
	if v == 0 {
		return 0
	}
	var sign uint16
	if v < 0 {
		sign, v = 0x8000, -v
	}
	exp := 0
	for v >= 2 {
		v /= 2
		exp++
	}
	for v < 1 {
		v *= 2
		exp--
	}
	mant := (v - 1) * 1024
	if mant != float32(int(mant)) {
		t.Fatalf("%v not exact in half", v)
	}
	return sign | uint16(exp+15)<<10 | uint16(mant)
}

func sixtyFourths(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(rng.IntN(257)-128) / 64
	}
	return s
}

func TestMulTMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, dtype := range []weights.DType{weights.BF16, weights.F16, weights.F32} {
		for _, shape := range [][3]int{{1, 1, 1}, {3, 37, 19}, {5, 64, 32}, {1, 129, 67}, {17, 33, 8}} {
			n, rows, cols := shape[0], shape[1], shape[2]
			tensor, w := encode(t, "w", dtype, rows, cols, sixtyFourths(rng, rows*cols))
			m, err := NewMatrix(tensor)
			if err != nil {
				t.Fatal(err)
			}
			x := make([]float32, n*cols)
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			bias := make([]float32, rows)
			for i := range bias {
				bias[i] = float32(rng.NormFloat64())
			}
			for _, b := range [][]float32{nil, bias} {
				out := make([]float32, n*rows)
				m.MulT(out, x, n, b, 0)
				for i := range n {
					for o := range rows {
						var want float64
						for c := range cols {
							want += float64(x[i*cols+c]) * float64(w[o*cols+c])
						}
						if b != nil {
							want += float64(b[o])
						}
						if got := out[i*rows+o]; math.Abs(float64(got)-want) > 1e-5*(1+math.Abs(want))*math.Sqrt(float64(cols)) {
							t.Fatalf("%s %v bias=%v: out[%d][%d] = %v, want %v", dtype, shape, b != nil, i, o, got, want)
						}
					}
				}
			}
		}
	}
}

func TestMulTWorkerCountIsBitwiseStable(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	tensor, _ := encode(t, "w", weights.BF16, 100, 48, sixtyFourths(rng, 100*48))
	m, err := NewMatrix(tensor)
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float32, 3*48)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	ref := make([]float32, 3*100)
	m.MulT(ref, x, 3, nil, 1)
	for _, workers := range []int{2, 5, 64} {
		out := make([]float32, 3*100)
		m.MulT(out, x, 3, nil, workers)
		for i := range out {
			if out[i] != ref[i] {
				t.Fatalf("workers=%d: out[%d] = %v, want %v", workers, i, out[i], ref[i])
			}
		}
	}
}

func TestRowF32IsZeroCopy(t *testing.T) {
	tensor, _ := encode(t, "w", weights.F32, 4, 8, make([]float32, 32))
	m, err := NewMatrix(tensor)
	if err != nil {
		t.Fatal(err)
	}
	row := m.Row(nil, 2)
	if unsafe.Pointer(&row[0]) != unsafe.Pointer(&tensor.Data[2*8*4]) {
		t.Fatal("F32 row was copied")
	}
}

func TestNewMatrixErrors(t *testing.T) {
	tests := []struct {
		name string
		t    weights.Tensor
		want string
	}{
		{"1-D", weights.Tensor{Name: "a", DType: weights.BF16, Shape: []int{4}, Data: make([]byte, 8)}, "not a non-empty 2-D"},
		{"empty", weights.Tensor{Name: "e", DType: weights.BF16, Shape: []int{4, 0}}, "not a non-empty 2-D"},
		{"dtype", weights.Tensor{Name: "b", DType: "I8", Shape: []int{2, 2}, Data: make([]byte, 4)}, `unsupported dtype "I8"`},
		{"short data", weights.Tensor{Name: "c", DType: weights.F16, Shape: []int{2, 2}, Data: make([]byte, 6)}, "6 bytes"},
	}
	for _, tc := range tests {
		_, err := NewMatrix(tc.t)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `"`+tc.t.Name+`"`) {
			t.Errorf("%s: NewMatrix = %v, want error naming the tensor and containing %q", tc.name, err, tc.want)
		}
	}
}

func TestRMSNorm(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	const d, rows = 24, 3
	x := make([]float32, rows*d)
	w := make([]float32, d)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * 3)
	}
	for i := range w {
		w[i] = float32(rng.NormFloat64())
	}
	eps := float32(1e-5)
	out := make([]float32, len(x))
	RMSNorm(out, x, w, eps)
	for r := range rows {
		var ss float64
		for _, v := range x[r*d : (r+1)*d] {
			ss += float64(v) * float64(v)
		}
		inv := 1 / math.Sqrt(ss/d+float64(eps))
		for i := range d {
			want := float64(x[r*d+i]) * inv * float64(w[i])
			if math.Abs(float64(out[r*d+i])-want) > 1e-6*(1+math.Abs(want)) {
				t.Fatalf("row %d [%d] = %v, want %v", r, i, out[r*d+i], want)
			}
		}
	}
	// In place gives the same result.
	RMSNorm(x, x, w, eps)
	for i := range x {
		if x[i] != out[i] {
			t.Fatalf("in-place [%d] = %v, want %v", i, x[i], out[i])
		}
	}
}

func TestSwiGLU(t *testing.T) {
	gate := []float32{-20, -1.5, 0, 0.25, 3, 30}
	up := []float32{2, -1, 5, 4, 0.5, -1}
	orig := append([]float32(nil), gate...)
	SwiGLU(gate, up)
	for i, g := range orig {
		want := float64(g) / (1 + math.Exp(-float64(g))) * float64(up[i])
		if math.Abs(float64(gate[i])-want) > 1e-6*(1+math.Abs(want)) {
			t.Errorf("silu(%v)·%v = %v, want %v", g, up[i], gate[i], want)
		}
	}
}

// BF16 data at an odd address cannot be viewed as 16-bit words: the
// byte-wise path must give the same result.
func TestMulTUnalignedBF16(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	tensor, _ := encode(t, "w", weights.BF16, 37, 21, sixtyFourths(rng, 37*21))
	shifted := make([]byte, len(tensor.Data)+1)
	copy(shifted[1:], tensor.Data)
	odd := tensor
	odd.Data = shifted[1:]
	a, err := NewMatrix(tensor)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewMatrix(odd)
	if err != nil {
		t.Fatal(err)
	}
	if a.bf16 == nil || b.bf16 != nil {
		t.Fatalf("fast path aligned %v, unaligned %v: want only the aligned one", a.bf16 != nil, b.bf16 != nil)
	}
	x := make([]float32, 3*21)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	outA, outB := make([]float32, 3*37), make([]float32, 3*37)
	a.MulT(outA, x, 3, nil, 0)
	b.MulT(outB, x, 3, nil, 0)
	for i := range outA {
		if outA[i] != outB[i] {
			t.Fatalf("out[%d]: aligned %v, unaligned %v", i, outA[i], outB[i])
		}
	}
}

// bf16 rounds through the weights package's converter, independent of
// vec.RoundBF16 (which the kernels use).
func bf16(x float32) float32 { return math.Float32frombits(uint32(weights.Float32ToBF16(x)) << 16) }

// TestSwiGLUBF16 uses values worked out from kernels/core/silu.cu's
// definition, out = bf16(bf16(g / (1 + exp(-g))) · u) with fp32 operations,
// in Python. In the first rows a single rounding of silu(g)·u would give
// the other value shown.
func TestSwiGLUBF16(t *testing.T) {
	tests := []struct {
		g, u, want, once float32
	}{
		{-3, 5.5, -0.78515625, -0.78125},
		{-1, 5.5, -1.484375, -1.4765625},
		{-0.375, 3, -0.45703125, -0.458984375},
		{-0.375, -1.5, 0.228515625, 0.2294921875},
		{0.5, 3, 0.9296875, 0.93359375},
		{2.5, 5.5, 12.75, 12.6875},
		{1, 3, 2.1875, 2.1875},
		{-20, 1, -4.1211023926734924e-08, -4.1211023926734924e-08},
		{20, 1, 20, 20},
		{0, 5, 0, 0},
		{-100, 2, 0, 0}, // exp(100) overflows fp32: silu is -0
	}
	gate, up := make([]float32, len(tests)), make([]float32, len(tests))
	for i, tc := range tests {
		gate[i], up[i] = tc.g, tc.u
	}
	SwiGLUBF16(gate, up)
	for i, tc := range tests {
		if gate[i] != tc.want {
			t.Errorf("bf16(bf16(silu(%v))·%v) = %v, want %v (one rounding would give %v)", tc.g, tc.u, gate[i], tc.want, tc.once)
		}
	}
}

func TestAddBF16(t *testing.T) {
	dst := []float32{1, 1, -1, 3.0e38, 0.5}
	src := []float32{1.0 / 256, 3.0 / 256, -1.0 / 256, 3.0e38, -0.5}
	// 1 ± 2^-8 is a tie between 1 and 1 + 2^-7: to even (1); 1 + 3·2^-8 a
	// tie between 1 + 2^-7 and 1 + 2^-6: to even (up); 6e38 overflows
	// bf16 (and fp32) to Inf.
	want := []float32{1, 1 + 1.0/64, -1, float32(math.Inf(1)), 0}
	AddBF16(dst, src)
	for i := range want {
		if dst[i] != want[i] {
			t.Errorf("[%d] = %v, want %v", i, dst[i], want[i])
		}
	}
}

// TestRMSNormBF16 checks out = bf16(w · bf16(x · r)), r = rsqrt(mean(x²) +
// eps), against a float64 computation of r: an fp32 ulp of r can move a
// bf16 rounding only at an exact tie, which these rows do not hit. The
// inner rounding must be visible: some elements differ from one rounding
// of w·x·r.
func TestRMSNormBF16(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	const d, rows = 64, 4
	x := make([]float32, rows*d)
	w := make([]float32, d)
	for i := range x {
		x[i] = bf16(float32(rng.NormFloat64() * 3))
	}
	for i := range w {
		w[i] = bf16(float32(1 + rng.NormFloat64()/4))
	}
	eps := float32(1e-6)
	out := make([]float32, len(x))
	RMSNormBF16(out, x, w, eps)
	inner := 0
	for r := range rows {
		var ss float64
		for _, v := range x[r*d : (r+1)*d] {
			ss += float64(v) * float64(v)
		}
		scale := float32(1 / math.Sqrt(ss/d+float64(eps)))
		for i := range d {
			xi := x[r*d+i]
			want := bf16(w[i] * bf16(xi*scale))
			if got := out[r*d+i]; got != want {
				t.Fatalf("row %d [%d] = %v, want %v", r, i, got, want)
			}
			if want != bf16(w[i]*(xi*scale)) {
				inner++
			}
		}
	}
	if inner == 0 {
		t.Error("no element depends on the inner rounding: the test data do not exercise it")
	}
	RMSNormBF16(x, x, w, eps)
	for i := range x {
		if x[i] != out[i] {
			t.Fatalf("in-place [%d] = %v, want %v", i, x[i], out[i])
		}
	}
}
