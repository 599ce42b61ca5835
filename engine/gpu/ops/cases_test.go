package ops

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// selectCase is one head's input to kv_select.
type selectCase struct {
	name                 string
	scores               []float32
	target, sink, window int
}

// scoreKind names how a case's scores are drawn.
type scoreKind int

const (
	scoresNormal scoreKind = iota // distinct random values
	scoresTied                    // a handful of values, many equal
	scoresSigned                  // mixed signs, ±0, ±Inf, subnormals, ties
	scoresConst                   // all equal
)

func (k scoreKind) String() string {
	return [...]string{"normal", "tied", "signed", "const"}[k]
}

func makeScores(rng *rand.Rand, n int, kind scoreKind) []float32 {
	s := make([]float32, n)
	special := []float32{0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)),
		math.SmallestNonzeroFloat32, -math.SmallestNonzeroFloat32, math.MaxFloat32, -math.MaxFloat32, 1, -1}
	for i := range s {
		switch kind {
		case scoresNormal:
			s[i] = float32(rng.NormFloat64())
		case scoresTied:
			s[i] = float32(rng.IntN(5)) / 4
		case scoresSigned:
			if rng.IntN(3) == 0 {
				s[i] = special[rng.IntN(len(special))]
			} else {
				s[i] = -float32(rng.ExpFloat64()) * float32(math.Pow(2, float64(rng.IntN(60)-30)))
			}
		case scoresConst:
			s[i] = -1.5
		}
	}
	return s
}

// selectCases covers the corners of kvpolicy.Select: empty and one-token
// heads, targets at and around every boundary, sink and window covering
// nothing, part or all of the head, and each score kind.
func selectCases(rng *rand.Rand, sizes []int) []selectCase {
	var cases []selectCase
	for _, n := range sizes {
		for kind := range scoresConst + 1 {
			scores := makeScores(rng, n, kind)
			targets := []int{0, 1, n / 2, max(n-1, 0), n, n + 3, rng.IntN(n + 1)}
			guards := [][2]int{{0, 0}, {4, 0}, {0, 16}, {4, 16}, {n, 0}, {0, n + 1}, {n / 3, n / 3}, {rng.IntN(n + 1), rng.IntN(n + 1)}}
			for _, target := range targets {
				for _, g := range guards {
					cases = append(cases, selectCase{
						name:   fmt.Sprintf("n=%d/%s/target=%d/sink=%d/window=%d", n, kind, target, g[0], g[1]),
						scores: scores, target: target, sink: g[0], window: g[1],
					})
				}
			}
		}
	}
	return cases
}

func randBF16(rng *rand.Rand, n int, scale float64) []uint16 {
	out := make([]uint16, n)
	for i := range out {
		out[i] = BF16(float32(rng.NormFloat64() * scale))
	}
	return out
}

// ulpDiff is the distance of two finite bf16 values in units in the last
// place (adjacent values are 1 apart, across zero too).
func ulpDiff(a, b uint16) int {
	key := func(x uint16) int {
		if x&0x8000 != 0 {
			return -int(x & 0x7fff)
		}
		return int(x)
	}
	d := key(a) - key(b)
	if d < 0 {
		d = -d
	}
	return d
}
