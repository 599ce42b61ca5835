package ops

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/longctx/longctx/engine/kvpolicy"
	"github.com/longctx/longctx/engine/model/rope"
)

func TestBF16RoundsToNearestEven(t *testing.T) {
	tests := []struct {
		in   float32
		want uint16
	}{
		{1, 0x3f80},
		{1 + 1.0/256, 0x3f80},             // tie, even is down
		{1 + 3.0/256, 0x3f82},             // tie, even is up
		{1 + 1.0/256 + 1.0/65536, 0x3f81}, // above the tie
		{-2.5, 0xc020},
		{float32(math.Inf(1)), 0x7f80},
		{math.MaxFloat32, 0x7f80}, // rounds up past the largest bf16
	}
	for _, tt := range tests {
		if got := BF16(tt.in); got != tt.want {
			t.Errorf("BF16(%v) = %#04x, want %#04x", tt.in, got, tt.want)
		}
	}
}

func TestBlockSumOrder(t *testing.T) {
	// Integers add exactly, so any order gives the true sum.
	part := make([]float32, normThreads)
	want := float32(0)
	for i := range part {
		part[i] = float32(i)
		want += float32(i)
	}
	if got := blockSum(part); got != want {
		t.Errorf("blockSum of 0..%d = %v, want %v", len(part)-1, got, want)
	}
	// The butterfly adds lanes 1 and 3 (step 2) before lane 0 (step 1):
	// 2^24 + (1 + 1) is exact, while a left-to-right sum loses each 1 to
	// rounding (2^24 + 1 is a tie that rounds to the even 2^24).
	var v [32]float32
	v[0], v[1], v[3] = 1<<24, 1, 1
	if got := butterfly32(v); got != 1<<24+2 {
		t.Errorf("butterfly32 = %v, want 2^24+2", got)
	}
}

// TestRMSNormHandComputed checks two rows whose mean(x²)+eps is exactly 1
// (so the scale is exactly 1) and whose w·x land on bf16 ties: 1.375 ·
// 1.09375 = 1.50390625 is halfway between 1.5 and 1.5078125 and rounds to
// the even 1.5; 1.34375 · 1.125 = 1.51171875 is halfway between 1.5078125
// and 1.515625 and rounds to the even 1.515625.
func TestRMSNormHandComputed(t *testing.T) {
	const H = 4
	x := []uint16{BF16(1.09375), BF16(1.125), 0, 0}
	w := []uint16{BF16(1.375), BF16(1.34375), BF16(1), BF16(-3)}
	// Σx² = 1.1962890625 + 1.265625 = 2.4619140625, mean 0.615478515625.
	eps := float32(0.384521484375)
	out := make([]uint16, H)
	RefRMSNorm(x, H, w, out, H, 1, H, eps, HostLibm())
	want := []float32{1.5, 1.515625, 0, 0}
	for i := range want {
		if F32(out[i]) != want[i] {
			t.Errorf("out[%d] = %v, want %v", i, F32(out[i]), want[i])
		}
	}

	// add_rmsnorm: 1 + 3/256 is 1.5 bf16 ulps above 1, a tie that rounds
	// to the even 1 + 2/128; 2 + 1/128 is half an ulp above 2, even is 2.
	resid := []uint16{BF16(1), BF16(2), 0, 0}
	delta := []uint16{BF16(3.0 / 256), BF16(1.0 / 128), 0, 0}
	RefAddRMSNorm(resid, delta, H, w, out, H, 1, H, 1e-6, HostLibm())
	if F32(resid[0]) != 1+2.0/128 || F32(resid[1]) != 2 {
		t.Errorf("resid = %v, %v; want %v, 2", F32(resid[0]), F32(resid[1]), 1+2.0/128)
	}
}

// TestRMSNormNearFloat64 compares the reference with the formula in
// float64 on random rows: at most one bf16 rounding apart.
func TestRMSNormNearFloat64(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, H := range []int{1, 7, 64, 4096, 5000} {
		const T = 3
		ld := H + 5
		x, w := randBF16(rng, T*ld, 3), randBF16(rng, H, 1)
		out := make([]uint16, T*H)
		eps := float32(1e-5)
		RefRMSNorm(x, ld, w, out, H, T, H, eps, HostLibm())
		for r := range T {
			ss := 0.0
			for i := range H {
				v := float64(F32(x[r*ld+i]))
				ss += v * v
			}
			scale := 1 / math.Sqrt(ss/float64(H)+float64(eps))
			for i := range H {
				h := float64(round(float32(float64(F32(x[r*ld+i])) * scale)))
				want := BF16(float32(float64(F32(w[i])) * h))
				if d := ulpDiff(out[r*H+i], want); d > 1 {
					t.Fatalf("H=%d row %d [%d]: %v, float64 formula %v", H, r, i, F32(out[r*H+i]), F32(want))
				}
			}
		}
	}
}

func TestRoPEReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const nh, nkv, hd, T = 4, 2, 64, 3
	inv, err := rope.InvFreq(rope.Params{Type: rope.Default, Theta: 10000}, hd)
	if err != nil {
		t.Fatal(err)
	}
	ld := (nh+2*nkv)*hd + 8
	qkv := randBF16(rng, T*ld, 1)
	orig := slices.Clone(qkv)
	// One sequence (1) of two, holding 5 tokens; the step adds 3.
	pos := []int32{0, 6, 1000}
	a := RopeArgs{LD: ld, InvFreq: inv, Pos: pos, TokSeq: []int32{1, 1, 1}, TokOff: []int32{0, 1, 2},
		T: T, NH: nh, NKV: nkv, HD: hd, Eps: 1e-6, AttnScaling: 1}
	k, v := hostHeads(2*nkv, 16, hd+4, 5), hostHeads(2*nkv, 16, hd+4, 5)
	for i := range v {
		v[i].Pos = k[i].Pos // shared, as the engine lays them out
	}
	RefQKVRoPEAppend(qkv, k, v, a, HostLibm())

	tab := rope.NewTable(inv, []int{0, 6, 1000})
	for tk := range T {
		for h := range nh + nkv {
			var got []uint16
			if h < nh {
				got = qkv[tk*ld+h*hd : tk*ld+(h+1)*hd]
			} else {
				d := k[1*nkv+h-nh]
				got = d.Data[(5+tk)*d.RowStride : (5+tk)*d.RowStride+hd]
				if d.Pos[5+tk] != pos[tk] || d.Len != 5 {
					t.Errorf("token %d head %d: pos %d len %d; want %d, 5", tk, h, d.Pos[5+tk], d.Len, pos[tk])
				}
			}
			x := make([]float32, hd)
			for i := range x {
				x[i] = F32(orig[tk*ld+h*hd+i])
			}
			tab.Rotate(x, tk)
			for i := range x {
				// Two bf16 products and a bf16 sum: a few ulps of the
				// operands, more where the sum cancels.
				if diff := math.Abs(float64(F32(got[i]) - x[i])); diff > 0.02*(math.Abs(float64(x[i]))+0.5) {
					t.Fatalf("token %d head %d [%d]: %v, float rotation %v", tk, h, i, F32(got[i]), x[i])
				}
				if tk == 0 && got[i] != orig[tk*ld+h*hd+i] {
					t.Fatalf("position 0 must leave x alone: head %d [%d] %v -> %v", h, i, F32(orig[h*hd+i]), F32(got[i]))
				}
			}
		}
		for kvh := range nkv {
			d := v[1*nkv+kvh]
			if !slices.Equal(d.Data[(5+tk)*d.RowStride:(5+tk)*d.RowStride+hd], orig[tk*ld+(nh+nkv+kvh)*hd:tk*ld+(nh+nkv+kvh+1)*hd]) {
				t.Errorf("token %d: V head %d not copied", tk, kvh)
			}
		}
	}
	for i := range nkv { // sequence 0 untouched
		if slices.ContainsFunc(k[i].Data, func(b uint16) bool { return b != 0xffff }) {
			t.Errorf("sequence 0's K head %d was written", i)
		}
	}
}

// TestHeadNormScalesToUnitRMS: with unit weights a normed head has a mean
// square near 1.
func TestHeadNormScalesToUnitRMS(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, hd := range []int{16, 128, 256} {
		x := make([]float32, hd)
		for i := range x {
			x[i] = F32(BF16(float32(rng.NormFloat64() * 7)))
		}
		w := make([]uint16, hd)
		for i := range w {
			w[i] = BF16(1)
		}
		headNorm(x, w, 1e-6, HostLibm())
		ms := 0.0
		for _, v := range x {
			ms += float64(v) * float64(v)
		}
		if ms /= float64(hd); math.Abs(ms-1) > 0.02 {
			t.Errorf("hd %d: mean square after the norm %v", hd, ms)
		}
	}
}

func hostHeads(n, capacity, stride, length int) []HostKVHead {
	heads := make([]HostKVHead, n)
	for i := range heads {
		heads[i] = HostKVHead{Data: make([]uint16, capacity*stride), Pos: make([]int32, capacity), Len: length, RowStride: stride}
		for j := range heads[i].Data {
			heads[i].Data[j] = 0xffff
		}
	}
	return heads
}

func TestSiLUMulReference(t *testing.T) {
	tests := []struct{ g, u, want float32 }{
		{0, 5, 0},
		{100, 0.5, 50},     // silu(100) = 100
		{-100, 3, 0},       // silu(-100) = -3.7e-42 → bf16 subnormal·3 → -0 after rounding? checked below
		{1, 1, 0.73046875}, // 1/(1+e^-1) = 0.7310586 → bf16 0.73046875
	}
	for _, tt := range tests {
		gu := []uint16{BF16(tt.g), BF16(tt.u)}
		out := []uint16{0}
		RefSiLUMul(gu, 2, out, 1, 1, 1, HostLibm())
		if got := F32(out[0]); math.Abs(float64(got-tt.want)) > 1e-37 {
			t.Errorf("silu(%v)·%v = %v, want %v", tt.g, tt.u, got, tt.want)
		}
	}
}

func TestArgmaxReference(t *testing.T) {
	nan := float32(math.NaN())
	negZero := float32(math.Copysign(0, -1))
	tests := []struct {
		row  []float32
		want int32
	}{
		{[]float32{1, 3, 2}, 1},
		{[]float32{3, 1, 3}, 0},        // tie: lowest index
		{[]float32{nan, 1, nan, 2}, 3}, // NaN skipped
		{[]float32{nan, nan}, 0},       // nothing but NaN
		{[]float32{negZero, 0}, 0},     // -0 == +0
		{[]float32{float32(math.Inf(-1)), float32(math.Inf(-1))}, 0},
		{[]float32{-5, float32(math.Inf(1)), nan}, 1},
	}
	for _, tt := range tests {
		row := make([]uint16, len(tt.row))
		for i, v := range tt.row {
			row[i] = BF16(v)
		}
		out := []int32{-7}
		RefArgmax(row, len(row), len(row), 1, out)
		if out[0] != tt.want {
			t.Errorf("argmax %v = %d, want %d", tt.row, out[0], tt.want)
		}
	}
}

// TestSelectReferenceMatchesPolicy: the radix-select reference, which the
// kernel follows step for step, keeps exactly what kvpolicy.Select keeps.
func TestSelectReferenceMatchesPolicy(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	cases := selectCases(rng, []int{0, 1, 2, 5, 17, 100, 1000, 4097})
	for _, c := range cases {
		checkSelectRef(t, c)
	}
	// Random shapes beyond the grid.
	for range 2000 {
		n := rng.IntN(300)
		c := selectCase{scores: makeScores(rng, n, scoreKind(rng.IntN(4))), target: rng.IntN(n + 2), sink: rng.IntN(n/2 + 2), window: rng.IntN(n/2 + 2)}
		c.name = "random"
		checkSelectRef(t, c)
	}
	t.Logf("%d grid cases and 2000 random ones", len(cases))
}

func checkSelectRef(t *testing.T, c selectCase) {
	t.Helper()
	want, err := kvpolicy.Select(c.scores, c.target, c.sink, c.window)
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	got, code := RefKVSelect(c.scores, c.target, c.sink, c.window)
	if code != 0 || len(got) != len(want) {
		t.Fatalf("%s: code %d, kept %d; kvpolicy keeps %d", c.name, code, len(got), len(want))
	}
	for i := range got {
		if int(got[i]) != want[i] {
			t.Fatalf("%s: keep[%d] = %d, kvpolicy %d", c.name, i, got[i], want[i])
		}
	}
}

func TestSelectReferenceErrors(t *testing.T) {
	scores := []float32{1, float32(math.NaN()), 2}
	if keep, code := RefKVSelect(scores, 5, 0, 0); code != SelectNaN || len(keep) != 3 {
		t.Errorf("NaN score with target >= n: code %d, kept %d; want %d, all 3", code, len(keep), SelectNaN)
	}
	if _, err := kvpolicy.Select(scores, 5, 0, 0); err == nil {
		t.Error("kvpolicy.Select accepts a NaN score; the kernel's error flag would disagree")
	}
	if keep, code := RefKVSelect([]float32{1, 2}, -1, 0, 0); code != SelectNegativeTarget || len(keep) != 2 {
		t.Errorf("negative target: code %d, kept %d", code, len(keep))
	}
}

func TestKVGatherReference(t *testing.T) {
	const hd = 3
	src := HostKVHead{Data: []uint16{1, 2, 3, 0, 4, 5, 6, 0, 7, 8, 9, 0}, Pos: []int32{10, 20, 30}, Len: 3, RowStride: 4}
	dst := HostKVHead{Data: make([]uint16, 2*hd), Pos: make([]int32, 2), RowStride: hd}
	RefKVGather(&dst, &src, []int32{0, 2}, hd)
	if !slices.Equal(dst.Data, []uint16{1, 2, 3, 7, 8, 9}) || !slices.Equal(dst.Pos, []int32{10, 30}) || dst.Len != 2 {
		t.Errorf("gathered %+v", dst)
	}
}

// TestGEMVSplit: the column split of the decode GEMV for Llama-3-8B's
// projections, and that it always divides the block's warps.
func TestGEMVSplit(t *testing.T) {
	for _, c := range []struct{ N, K, want int }{
		{6144, 4096, 2}, {4096, 4096, 2}, {28672, 4096, 2}, {4096, 14336, 8}, {128256, 4096, 2}, {64, 64, 1}, {512, 65536, 8}, {100, 3000, 1},
	} {
		got := gemvSplit(c.K)
		if got != c.want || (gemvThreads/32)%got != 0 {
			t.Errorf("gemvSplit(%d) = %d, want %d (N %d)", c.K, got, c.want, c.N)
		}
	}
}
