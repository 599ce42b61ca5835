package report

import (
	"math"
	"slices"
	"sort"
)

// median returns the middle value of vs (the mean of the two middle values
// for an even count), and false for an empty slice. vs is not modified.
func median(vs []float64) (float64, bool) {
	if len(vs) == 0 {
		return 0, false
	}
	s := slices.Clone(vs)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2], true
	}
	return (s[n/2-1] + s[n/2]) / 2, true
}

// mean returns the arithmetic mean of vs, and false for an empty slice.
func mean(vs []float64) (float64, bool) {
	if len(vs) == 0 {
		return 0, false
	}
	var sum float64
	for _, v := range vs {
		sum += v
	}
	return sum / float64(len(vs)), true
}

// paretoFrontier returns the indices of the points that no other point
// dominates, ordered by x then y. A point is dominated when another one is
// at least as good on both axes (lower or equal cost x, higher or equal
// quality y) and strictly better on one. Equal points do not dominate each
// other, so both stay on the frontier.
func paretoFrontier(xs, ys []float64) []int {
	var front []int
	for i := range xs {
		dominated := false
		for j := range xs {
			if j == i {
				continue
			}
			if xs[j] <= xs[i] && ys[j] >= ys[i] && (xs[j] < xs[i] || ys[j] > ys[i]) {
				dominated = true
				break
			}
		}
		if !dominated {
			front = append(front, i)
		}
	}
	sort.SliceStable(front, func(a, b int) bool {
		ia, ib := front[a], front[b]
		if xs[ia] != xs[ib] {
			return xs[ia] < xs[ib]
		}
		return ys[ia] < ys[ib]
	})
	return front
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
