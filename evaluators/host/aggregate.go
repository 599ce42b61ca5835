package host

import "github.com/longctx/longctx/evaluators/contract"

// Summary is the mean of one score over a set of items.
type Summary struct {
	Name           string
	Mean           float64
	Count          int
	HigherIsBetter bool
}

// Aggregate averages each declared score over the lines, in the
// descriptor's order. Lines must have passed the host's checks (every
// declared score present); with no lines the means are 0 and Count 0.
func Aggregate(d contract.Descriptor, lines []contract.ScoreLine) []Summary {
	out := make([]Summary, len(d.Scores))
	for i, spec := range d.Scores {
		// Kahan summation keeps the mean of 10^6 fractions exact to ~1e-16.
		var sum, comp float64
		n := 0
		for _, l := range lines {
			v, ok := l.Scores[spec.Name]
			if !ok {
				continue
			}
			y := v - comp
			t := sum + y
			comp = (t - sum) - y
			sum = t
			n++
		}
		out[i] = Summary{Name: spec.Name, Count: n, HigherIsBetter: spec.HigherIsBetter}
		if n > 0 {
			out[i].Mean = sum / float64(n)
		}
	}
	return out
}
