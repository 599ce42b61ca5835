package rope

import (
	"math"
	"math/cmplx"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/longctx/longctx/engine/weights"
)

func relClose(got, want, tol float64) bool {
	return math.Abs(got-want) <= tol*math.Max(math.Abs(want), 1e-30)
}

func TestInvFreqDefault(t *testing.T) {
	for _, tc := range []struct {
		theta float64
		dim   int
	}{{10000, 64}, {500000, 128}, {1e6, 128}, {10000, 16}} {
		inv, err := InvFreq(Params{Type: Default, Theta: tc.theta}, tc.dim)
		if err != nil {
			t.Fatal(err)
		}
		if len(inv) != tc.dim/2 {
			t.Fatalf("len = %d, want %d", len(inv), tc.dim/2)
		}
		for i, f := range inv {
			want := math.Pow(tc.theta, -float64(2*i)/float64(tc.dim))
			if !relClose(float64(f), want, 1e-6) {
				t.Errorf("theta %g dim %d: inv_freq[%d] = %v, want %v", tc.theta, tc.dim, i, f, want)
			}
		}
	}
}

func TestInvFreqLinear(t *testing.T) {
	inv, err := InvFreq(Params{Type: Linear, Theta: 10000, Factor: 4}, 32)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range inv {
		want := math.Pow(10000, -float64(2*i)/32) / 4
		if !relClose(float64(f), want, 1e-6) {
			t.Errorf("inv_freq[%d] = %v, want %v", i, f, want)
		}
	}
}

// llama3Reference is Llama 3.1's apply_scaling written out independently
// in float64 from Meta's reference formula: with wavelen = 2π/f,
// f/factor if wavelen > orig/low, f if wavelen < orig/high, otherwise
// (1-s)·f/factor + s·f with s = (orig/wavelen − low)/(high − low).
func llama3Reference(theta float64, dim int, factor, low, high, orig float64) []float64 {
	out := make([]float64, dim/2)
	for i := range out {
		f := 1 / math.Pow(theta, float64(2*i)/float64(dim))
		wavelen := 2 * math.Pi / f
		switch {
		case wavelen < orig/high:
			out[i] = f
		case wavelen > orig/low:
			out[i] = f / factor
		default:
			s := (orig/wavelen - low) / (high - low)
			out[i] = (1-s)*f/factor + s*f
		}
	}
	return out
}

func TestInvFreqLlama3(t *testing.T) {
	tests := []struct {
		name                 string
		theta                float64
		dim                  int
		factor, low, high    float64
		orig                 int
		wantUnchanged        bool
		wantDivided, wantMid bool
	}{
		{"llama-3.1-8b", 500000, 128, 8, 1, 4, 8192, true, true, true},
		{"tiny test model", 500000, 16, 8, 1, 4, 64, true, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := Params{Type: Llama3, Theta: tc.theta, Factor: tc.factor, LowFreqFactor: tc.low, HighFreqFactor: tc.high, OriginalMaxPositions: tc.orig}
			inv, err := InvFreq(p, tc.dim)
			if err != nil {
				t.Fatal(err)
			}
			want := llama3Reference(tc.theta, tc.dim, tc.factor, tc.low, tc.high, float64(tc.orig))
			var unchanged, divided, mid bool
			for i, f := range inv {
				if !relClose(float64(f), want[i], 2e-6) {
					t.Errorf("inv_freq[%d] = %v, want %v", i, f, want[i])
				}
				base := math.Pow(tc.theta, -float64(2*i)/float64(tc.dim))
				switch {
				case relClose(want[i], base, 1e-12):
					unchanged = true
				case relClose(want[i], base/tc.factor, 1e-12):
					divided = true
				default:
					mid = true
				}
			}
			// The case must exercise all three regimes of the formula.
			if unchanged != tc.wantUnchanged || divided != tc.wantDivided || mid != tc.wantMid {
				t.Fatalf("regimes unchanged/divided/smoothed = %v/%v/%v", unchanged, divided, mid)
			}
		})
	}
}

func TestRotateIsComplexMultiplication(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	const dim = 32
	inv, err := InvFreq(Params{Type: Default, Theta: 10000}, dim)
	if err != nil {
		t.Fatal(err)
	}
	positions := []int{0, 1, 7, 100, 4095}
	table := NewTable(inv, positions)
	for r, pos := range positions {
		x := make([]float32, dim)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		orig := append([]float32(nil), x...)
		table.Rotate(x, r)
		for i := range dim / 2 {
			// rotate_half pairs (i, i+d/2): as a complex number it turns by
			// pos·θ_i. The angle is rounded to fp32 as transformers rounds it
			// (at pos 4095 that rounding alone moves the result by ~1e-4).
			theta := float64(float32(pos) * float32(math.Pow(10000, -float64(2*i)/dim)))
			z := complex(float64(orig[i]), float64(orig[i+dim/2])) * cmplx.Rect(1, theta)
			if math.Abs(float64(x[i])-real(z)) > 1e-4 || math.Abs(float64(x[i+dim/2])-imag(z)) > 1e-4 {
				t.Fatalf("pos %d pair %d: got (%v, %v), want (%v, %v)", pos, i, x[i], x[i+dim/2], real(z), imag(z))
			}
		}
	}
}

func TestRotateRelativePosition(t *testing.T) {
	// q·k after rotation depends only on the distance between positions.
	rng := rand.New(rand.NewPCG(2, 2))
	const dim = 16
	inv, err := InvFreq(Params{Type: Default, Theta: 10000}, dim)
	if err != nil {
		t.Fatal(err)
	}
	q, k := make([]float32, dim), make([]float32, dim)
	for i := range q {
		q[i], k[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
	}
	score := func(qp, kp int) float64 {
		table := NewTable(inv, []int{qp, kp})
		a, b := append([]float32(nil), q...), append([]float32(nil), k...)
		table.Rotate(a, 0)
		table.Rotate(b, 1)
		var s float64
		for i := range a {
			s += float64(a[i]) * float64(b[i])
		}
		return s
	}
	if a, b := score(10, 3), score(57, 50); math.Abs(a-b) > 1e-4 {
		t.Fatalf("score(10,3) = %v, score(57,50) = %v: want equal", a, b)
	}
}

func TestValidate(t *testing.T) {
	good := Params{Type: Llama3, Theta: 500000, Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositions: 8192}
	tests := []struct {
		name   string
		mutate func(*Params)
		want   string
	}{
		{"zero theta", func(p *Params) { p.Theta = 0 }, "rope_theta"},
		{"nan theta", func(p *Params) { p.Theta = math.NaN() }, "rope_theta"},
		{"unknown type", func(p *Params) { p.Type = "yarn" }, `"yarn" is not supported`},
		{"llama3 no factor", func(p *Params) { p.Factor = 0 }, "factor"},
		{"llama3 no low", func(p *Params) { p.LowFreqFactor = 0 }, "low_freq_factor"},
		{"llama3 high <= low", func(p *Params) { p.HighFreqFactor = 1 }, "high_freq_factor"},
		{"llama3 no original", func(p *Params) { p.OriginalMaxPositions = 0 }, "original_max_position_embeddings"},
		{"linear no factor", func(p *Params) { p.Type, p.Factor = Linear, -1 }, "factor"},
	}
	for _, tc := range tests {
		p := good
		tc.mutate(&p)
		if _, err := InvFreq(p, 64); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: InvFreq = %v, want error containing %q", tc.name, err, tc.want)
		}
	}
	if _, err := InvFreq(good, 63); err == nil {
		t.Error("odd head dim accepted")
	}
}

// TestRotateBF16 uses values worked out in Python from kernels/core/rope.cu's
// definition: c = bf16(cos θ), s = bf16(sin θ) with θ the fp32 angle,
// x1' = bf16(bf16(x1·c) + bf16(−x2·s)), x2' = bf16(bf16(x2·c) + bf16(x1·s)).
// Where marked, rotating in fp32 and rounding once gives other values.
func TestRotateBF16(t *testing.T) {
	tests := []struct {
		angle, x1, x2, want1, want2 float32
		onceDiffers                 bool
	}{
		{0.3, 1.5, -0.75, 1.65625, -0.27734375, true},
		{0.3, 0.2109375, 2.71875, -0.59765625, 2.671875, true},
		{0.3, -1.0078125, 0.5, -1.109375, 0.181640625, true},
		{1, 1.5, -0.75, 1.4375, 0.8515625, true},
		{1, -1.0078125, 0.5, -0.9609375, -0.578125, true},
		{-0.7, 1.5, -0.75, 0.6640625, -1.546875, true},
		{-0.7, -1.0078125, 0.5, -0.451171875, 1.03125, true},
		{1, 0.2109375, 2.71875, -2.171875, 1.6484375, false},
		{2.5, 1.5, -0.75, -0.75390625, 1.5, false},
	}
	for _, tc := range tests {
		// One frequency, position 1: the angle is the frequency itself.
		tab := NewTable([]float32{tc.angle}, []int{1})
		x := []float32{tc.x1, tc.x2}
		tab.RotateBF16(x, 0)
		if x[0] != tc.want1 || x[1] != tc.want2 {
			t.Errorf("θ=%v (%v, %v): RotateBF16 = (%v, %v), want (%v, %v)", tc.angle, tc.x1, tc.x2, x[0], x[1], tc.want1, tc.want2)
		}
		once := []float32{tc.x1, tc.x2}
		tab.Rotate(once, 0)
		differs := roundBF16(once[0]) != tc.want1 || roundBF16(once[1]) != tc.want2
		if differs != tc.onceDiffers {
			t.Errorf("θ=%v (%v, %v): one rounding of the fp32 rotation (%v, %v) differs: %v, want %v", tc.angle, tc.x1, tc.x2, once[0], once[1], differs, tc.onceDiffers)
		}
	}
}

// roundBF16 rounds through the weights package's converter, independent
// of vec.RoundBF16 (which RotateBF16 uses).
func roundBF16(x float32) float32 {
	return math.Float32frombits(uint32(weights.Float32ToBF16(x)) << 16)
}
