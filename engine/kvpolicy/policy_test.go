package kvpolicy

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestTarget(t *testing.T) {
	tests := []struct {
		p    Policy
		n    int
		want int
	}{
		{Policy{When: Prefill, Ratio: 0.5}, 48, 24},
		{Policy{When: Prefill, Ratio: 0.25}, 48, 36},
		{Policy{When: Prefill, Ratio: 0.75}, 48, 12},
		{Policy{When: Prefill, Ratio: 0.5}, 7, 3}, // floor(3.5)
		{Policy{When: Prefill, Ratio: 0.1}, 10, 9},
		{Policy{When: Prefill, Ratio: 0}, 10, 10},
		{Policy{When: Prefill, Ratio: 0.3}, 0, 0},
		{Policy{When: Decode, Budget: 32}, 48, 32},
		{Policy{When: Decode, Budget: 32}, 20, 20},
	}
	for _, tt := range tests {
		if got := tt.p.Target(tt.n); got != tt.want {
			t.Errorf("%s: Target(%d) = %d, want %d", tt.p, tt.n, got, tt.want)
		}
	}
	// The float64 formula must agree with exact rational arithmetic where
	// n·(1−ratio) is not an integer, and with the product as Python
	// computes it (n * (1 - ratio)) everywhere.
	for n := range 200 {
		for _, r := range []float64{0.1, 0.2, 0.25, 0.3, 0.5, 0.7, 0.75, 0.9} {
			want := int(math.Floor(float64(n) * (1 - r)))
			if got := (Policy{When: Prefill, Ratio: r}).Target(n); got != want || got > n {
				t.Fatalf("ratio %v n %d: %d, want %d", r, n, got, want)
			}
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		p    Policy
		err  string
	}{
		{"prefill", Policy{When: Prefill, Ratio: 0.5, SkipLayers: []int{0, 1}}, ""},
		{"decode", Policy{When: Decode, Budget: 8, Sink: 4, Window: 2}, ""},
		{"ratio one", Policy{When: Prefill, Ratio: 1}, "ratio 1 must be in [0, 1)"},
		{"negative ratio", Policy{When: Prefill, Ratio: -0.1}, "ratio -0.1"},
		{"nan ratio", Policy{When: Prefill, Ratio: math.NaN()}, "ratio NaN"},
		{"budget with prefill", Policy{When: Prefill, Ratio: 0.5, Budget: 3}, "budget 3 applies only when=decode"},
		{"decode without budget", Policy{When: Decode}, "needs a positive budget"},
		{"ratio with decode", Policy{When: Decode, Budget: 4, Ratio: 0.5}, "ratio 0.5 applies only when=prefill"},
		{"no when", Policy{Ratio: 0.5}, "want prefill or decode"},
		{"negative sink", Policy{When: Prefill, Sink: -1}, "sink -1"},
		{"skip out of range", Policy{When: Prefill, SkipLayers: []int{4}}, "skip_layers[0] = 4 out of range [0,4)"},
		{"negative skip", Policy{When: Prefill, SkipLayers: []int{1, -2}}, "skip_layers[1] = -2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate(4)
			if tt.err == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("error %v, want one containing %q", err, tt.err)
			}
		})
	}
}

func TestParseWhen(t *testing.T) {
	for _, w := range []When{Prefill, Decode} {
		got, err := ParseWhen(w.String())
		if err != nil || got != w {
			t.Errorf("ParseWhen(%q) = %v, %v", w, got, err)
		}
	}
	if _, err := ParseWhen("always"); err == nil {
		t.Error("ParseWhen accepted always")
	}
}

func TestSelectExamples(t *testing.T) {
	tests := []struct {
		name                 string
		scores               []float32
		target, sink, window int
		want                 []int
	}{
		{"top two in order", []float32{1, 5, 3, 4}, 2, 0, 0, []int{1, 3}},
		{"keep all", []float32{1, 2}, 5, 0, 0, []int{0, 1}},
		{"keep none", []float32{1, 2}, 0, 0, 0, nil},
		{"ties favour earlier", []float32{2, 2, 2, 2}, 2, 0, 0, []int{0, 1}},
		{"sink counts toward target", []float32{0, 9, 1, 8}, 2, 1, 0, []int{0, 1}},
		{"window counts toward target", []float32{9, 0, 8, 0}, 2, 0, 1, []int{0, 3}},
		{"protection exceeds target", []float32{9, 9, 0, 0, 0}, 1, 1, 2, []int{0, 3, 4}},
		{"infinities rank", []float32{float32(math.Inf(-1)), float32(math.Inf(1)), 0}, 1, 0, 0, []int{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Select(tt.scores, tt.target, tt.sink, tt.window)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Select = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSelectErrors(t *testing.T) {
	if _, err := Select([]float32{1, float32(math.NaN())}, 1, 0, 0); err == nil || !strings.Contains(err.Error(), "token 1 is NaN") {
		t.Errorf("NaN score: %v", err)
	}
	if _, err := Select([]float32{1}, -1, 0, 0); err == nil {
		t.Error("negative target accepted")
	}
}

// TestSelectProperties checks Select against its definition on random
// inputs with many ties: the protected tokens are kept, the count is
// max(target, protected), every kept free token scores at least as high as
// every evicted one, and among equal scores the earlier token wins.
func TestSelectProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		n := rng.IntN(40)
		scores := make([]float32, n)
		for i := range scores {
			scores[i] = float32(rng.IntN(6)) // few values: many ties
		}
		target, sink, window := rng.IntN(n+3), rng.IntN(5), rng.IntN(5)
		keep, err := Select(scores, target, sink, window)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.IsSorted(keep) || len(slices.Compact(slices.Clone(keep))) != len(keep) {
			t.Fatalf("keep %v not strictly increasing", keep)
		}
		kept := make([]bool, n)
		for _, i := range keep {
			kept[i] = true
		}
		protected := 0
		for i := range n {
			if i < sink || i >= n-window {
				protected++
				if !kept[i] {
					t.Fatalf("n %d sink %d window %d: protected token %d evicted", n, sink, window, i)
				}
			}
		}
		if want := min(n, max(target, protected)); len(keep) != want {
			t.Fatalf("n %d target %d protected %d: kept %d, want %d", n, target, protected, len(keep), want)
		}
		for i := range n {
			for j := range n {
				free := func(x int) bool { return x >= sink && x < n-window }
				if !free(i) || !free(j) || !kept[i] || kept[j] {
					continue
				}
				// i kept, j evicted: i must rank at least as high.
				if scores[i] < scores[j] || (scores[i] == scores[j] && i > j) {
					t.Fatalf("scores %v target %d: kept %d (%v) over evicted %d (%v)", scores, target, i, scores[i], j, scores[j])
				}
			}
		}
	}
}
