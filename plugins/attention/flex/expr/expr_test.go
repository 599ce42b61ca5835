package expr

import (
	"math"
	"strings"
	"testing"
)

// grid runs f over a grid of positions and heads, including positions
// past the window and chunk sizes the tests use.
func grid(f func(h, q, kv int64)) {
	for h := int64(0); h < 3; h++ {
		for q := int64(0); q < 40; q++ {
			for kv := int64(0); kv < 40; kv++ {
				f(h, q, kv)
			}
		}
	}
}

// TestMasks compares each mask preset and some hand-written expressions
// with Go functions written from their definitions.
func TestMasks(t *testing.T) {
	tests := []struct {
		src    string
		window int64
		want   func(h, q, kv int64) bool
	}{
		{"causal", 0, func(_, q, kv int64) bool { return kv <= q }},
		{"causal()", 0, func(_, q, kv int64) bool { return kv <= q }},
		{"model", 0, func(_, q, kv int64) bool { return kv <= q }},
		{"model", 7, func(_, q, kv int64) bool { return kv <= q && q-kv < 7 }},
		{"sliding_window(7)", 0, func(_, q, kv int64) bool { return kv <= q && q-kv < 7 }},
		{"sliding_window(1)", 0, func(_, q, kv int64) bool { return kv == q }},
		{"prefix_lm(5)", 0, func(_, q, kv int64) bool { return kv <= q || kv < 5 }},
		{"chunked(8)", 0, func(_, q, kv int64) bool { return kv <= q && q/8 == kv/8 }},
		{"q >= kv && q - kv < 7", 0, func(_, q, kv int64) bool { return kv <= q && q-kv < 7 }},
		{"causal && (h == 0 || kv % 2 == 0)", 0, func(h, q, kv int64) bool { return kv <= q && (h == 0 || kv%2 == 0) }},
		{"sliding_window(4 + 2*h)", 0, func(h, q, kv int64) bool { return kv <= q && q-kv < 4+2*h }},
		{"!(kv > q) && abs(q-kv) <= 3", 0, func(_, q, kv int64) bool { return kv <= q && q-kv <= 3 }},
		{"where(h == 1, causal, prefix_lm(10))", 0, func(h, q, kv int64) bool {
			if h == 1 {
				return kv <= q
			}
			return kv <= q || kv < 10
		}},
		{"float(q - kv) / 2.0 < 2.5 && kv <= q", 0, func(_, q, kv int64) bool { return kv <= q && float64(q-kv)/2 < 2.5 }},
		{"(q & 3) == (kv & 3) || q == kv", 0, func(_, q, kv int64) bool { return q&3 == kv&3 || q == kv }},
		{"min(q, 10) >= max(kv, 2)", 0, func(_, q, kv int64) bool { return min(q, 10) >= max(kv, 2) }},
		{"b == 0 && true != false", 0, func(_, _, _ int64) bool { return true }},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			p, err := Compile(MaskExpr, tt.src)
			if err != nil {
				t.Fatal(err)
			}
			grid(func(h, q, kv int64) {
				got, err := p.EvalBool(Vars{H: h, Q: q, KV: kv, Window: tt.window, NumHeads: 3})
				if err != nil {
					t.Fatal(err)
				}
				if want := tt.want(h, q, kv); got != want {
					t.Fatalf("h=%d q=%d kv=%d: %v, want %v", h, q, kv, got, want)
				}
			})
		})
	}
}

// referenceSlopes builds ALiBi slopes the way transformers'
// build_alibi_tensor does: powers of a base for the closest power of two,
// then odd powers of a finer base for the remaining heads.
func referenceSlopes(n int) []float64 {
	closest := 1 << int(math.Floor(math.Log2(float64(n))))
	base := math.Pow(2, -math.Pow(2, -(math.Log2(float64(closest))-3)))
	var s []float64
	for p := 1; p <= closest; p++ {
		s = append(s, math.Pow(base, float64(p)))
	}
	if closest != n {
		extra := math.Pow(2, -math.Pow(2, -(math.Log2(float64(2*closest))-3)))
		rem := min(closest, n-closest)
		for p := 1; p < 1+2*rem; p += 2 {
			s = append(s, math.Pow(extra, float64(p)))
		}
	}
	return s
}

func TestScores(t *testing.T) {
	const score = 1.75
	tests := []struct {
		src  string
		want func(h, q, kv int64, n int64) float64
	}{
		{"score", func(_, _, _, _ int64) float64 { return score }},
		{"softcap(2.5)", func(_, _, _, _ int64) float64 { return 2.5 * math.Tanh(score/2.5) }},
		{"softcap(3)", func(_, _, _, _ int64) float64 { return 3 * math.Tanh(score/3) }},
		{"alibi", func(h, q, kv, n int64) float64 { return score + referenceSlopes(int(n))[h]*float64(kv-q) }},
		{"score - 0.5*(q-kv)", func(_, q, kv, _ int64) float64 { return score - 0.5*float64(q-kv) }},
		{"where(kv == 0, score + 1, score)", func(_, _, kv, _ int64) float64 {
			if kv == 0 {
				return score + 1
			}
			return score
		}},
		{"q - kv", func(_, q, kv, _ int64) float64 { return float64(q - kv) }},
		{"exp(log(sqrt(score*score)))", func(_, _, _, _ int64) float64 { return math.Exp(math.Log(math.Sqrt(score * score))) }},
		{"score + alibi_slope(h) * float(kv - q)", func(h, q, kv, n int64) float64 { return score + referenceSlopes(int(n))[h]*float64(kv-q) }},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			p, err := Compile(ScoreExpr, tt.src)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range []int64{1, 3, 4, 6, 8, 12, 32} {
				for h := range n {
					for _, qk := range [][2]int64{{0, 0}, {9, 3}, {20, 20}, {31, 0}} {
						got, err := p.EvalFloat(Vars{H: h, Q: qk[0], KV: qk[1], Score: score, NumHeads: n})
						if err != nil {
							t.Fatal(err)
						}
						want := tt.want(h, qk[0], qk[1], n)
						if math.Abs(got-want) > 1e-12*max(1, math.Abs(want)) {
							t.Fatalf("heads %d h=%d q=%d kv=%d: %v, want %v", n, h, qk[0], qk[1], got, want)
						}
					}
				}
			}
		})
	}
}

func TestUsesHead(t *testing.T) {
	for src, want := range map[string]bool{"causal": false, "sliding_window(h+1)": true, "q >= kv": false} {
		p, err := Compile(MaskExpr, src)
		if err != nil {
			t.Fatal(err)
		}
		if p.UsesHead() != want {
			t.Errorf("%s: UsesHead %v", src, p.UsesHead())
		}
	}
	p, err := Compile(ScoreExpr, "alibi")
	if err != nil || !p.UsesHead() {
		t.Errorf("alibi: UsesHead %v, %v", p != nil && p.UsesHead(), err)
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		kind      Kind
		src, want string
	}{
		{MaskExpr, "", "mask expression is empty"},
		{MaskExpr, "q >= ", "mask:1:6: expected operand"},
		{MaskExpr, "q - kv", "is int, want bool"},
		{ScoreExpr, "causal", "causal is a mask preset, not usable in a score expression"},
		{MaskExpr, "alibi", "alibi is a score preset"},
		{MaskExpr, "score > 0", "mask:1:1: score is only defined in score expressions"},
		{MaskExpr, "qq >= kv", `mask:1:1: unknown name "qq" (variables: b, h, q, kv; presets: causal, chunked, model, prefix_lm, sliding_window)`},
		{MaskExpr, "sliding_window", "sliding_window needs 1 argument(s)"},
		{MaskExpr, "sliding_window(1, 2)", "sliding_window takes 1 argument(s)"},
		{MaskExpr, "sliding_window(1.5)", "needs an integer argument, got float"},
		{MaskExpr, "causal && 1", "&& needs bools, got bool and int"},
		{MaskExpr, "q[0] > 1", "mask:1:1: unsupported syntax Index expression"},
		{MaskExpr, `q == "x"`, "unsupported literal"},
		{MaskExpr, "fmt.Println(q) == 1", "only named functions can be called"},
		{MaskExpr, "frob(q) == 1", `unknown function "frob"`},
		{ScoreExpr, "score % 2", "operator % needs integers, got float and int"},
		{ScoreExpr, "tanh", "tanh is a function: call it"},
		{ScoreExpr, "min(score)", "min takes at least 2 arguments"},
		{ScoreExpr, "where(q, 1, 2)", "condition is int"},
		{ScoreExpr, "99999999999999999999", "out of range"},
		{ScoreExpr, "q > kv", "score expression \"q > kv\" is bool"},
		{MaskExpr, "func() bool { return true }() && causal", "only named functions can be called"},
		{MaskExpr, "[]int{1}[0] == q", "unsupported syntax Index expression"},
		{MaskExpr, strings.Repeat("(", MaxLen) + "q", "more than 4096"},
	}
	for _, tt := range tests {
		_, err := Compile(tt.kind, tt.src)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s %q: error %v, want one containing %q", tt.kind, tt.src, err, tt.want)
		}
	}
}

func TestRuntimeErrors(t *testing.T) {
	tests := []struct {
		kind      Kind
		src, want string
	}{
		{MaskExpr, "q / (kv - 3) > 0", "mask:1:3: integer division by zero (at b=0 h=0 q=5 kv=3)"},
		{MaskExpr, "q % (kv - 3) > 0", "integer division by zero"},
		{MaskExpr, "sliding_window(kv - 3)", "sliding_window argument 0 must be positive"},
		{MaskExpr, "chunked(0)", "chunked argument 0 must be positive"},
		{MaskExpr, "(q << kv) > 0", "shift count"},
		{ScoreExpr, "softcap(0)", "softcap argument 0 must be positive"},
		{ScoreExpr, "int(score / 0.0)", "out of range"},
	}
	for _, tt := range tests {
		p, err := Compile(tt.kind, tt.src)
		if err != nil {
			t.Fatalf("%q: %v", tt.src, err)
		}
		v := Vars{Q: 5, KV: 3, Score: 1}
		if tt.src == "(q << kv) > 0" {
			v.KV = 64
		}
		if tt.kind == MaskExpr {
			_, err = p.EvalBool(v)
		} else {
			_, err = p.EvalFloat(v)
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want one containing %q", tt.src, err, tt.want)
		}
	}
	// MinInt64 / -1 must not panic.
	p, err := Compile(MaskExpr, "(-9223372036854775807 - 1) / -1 != 0 && (-9223372036854775807-1) % -1 == 0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.EvalBool(Vars{}); err != nil {
		t.Fatal(err)
	}
}

func FuzzCompile(f *testing.F) {
	for _, s := range []string{"causal", "sliding_window(64)", "q >= kv && q - kv < 64", "prefix_lm(3) || chunked(q+1)",
		"alibi", "softcap(30)", "score / (q - kv)", "where(h > 1, score, -score)", "int(score) % (kv+1)", "min(q, kv, 3) << 2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		for _, kind := range []Kind{MaskExpr, ScoreExpr} {
			p, err := Compile(kind, src)
			if err != nil {
				continue
			}
			for _, v := range []Vars{{}, {H: 1, Q: 7, KV: 3, Score: -2.5, Window: 4, NumHeads: 4}, {Q: -1, KV: math.MaxInt64, Score: math.Inf(1), NumHeads: 3}} {
				if kind == MaskExpr {
					_, _ = p.EvalBool(v)
				} else {
					_, _ = p.EvalFloat(v)
				}
			}
		}
	})
}
