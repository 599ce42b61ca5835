// Package kvpolicy decides which cached tokens a KV-cache compression method
// keeps. A method supplies one score per cached token per KV head (higher
// means more worth keeping); the Policy says how many tokens each head keeps
// and which are protected; Select turns scores into keep indices. This is
// the one place eviction decisions are made, for every method, so all of
// them share the same semantics: per (layer, KV head), kept tokens stay in
// their original order and keep their original positions.
package kvpolicy

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// When says at which moments a policy compresses the cache.
type When int

// The moments a policy compresses.
const (
	// Prefill compresses once, after the prompt is in the cache: each head
	// of n tokens keeps floor(n·(1−Ratio)).
	Prefill When = iota + 1
	// Decode keeps each head within Budget tokens: the budget is enforced
	// after the prefill and after every decode step's forward pass, so
	// between steps no head holds more than Budget tokens and during one
	// at most Budget+1 (the step's own token joins before the eviction).
	Decode
)

// String returns "prefill" or "decode", the option values.
func (w When) String() string {
	switch w {
	case Prefill:
		return "prefill"
	case Decode:
		return "decode"
	}
	return fmt.Sprintf("When(%d)", int(w))
}

// ParseWhen parses "prefill" or "decode".
func ParseWhen(s string) (When, error) {
	switch s {
	case "prefill":
		return Prefill, nil
	case "decode":
		return Decode, nil
	}
	return 0, fmt.Errorf("when %q: want prefill or decode", s)
}

// Policy is a compression schedule. The zero value is invalid; a Prefill
// policy with Ratio 0 compresses nothing.
type Policy struct {
	When When
	// Ratio is the fraction of each head's tokens removed, in [0, 1)
	// (Prefill only).
	Ratio float64
	// Budget is the most tokens a head holds once enforced (Decode only).
	Budget int
	// SkipLayers are layers left uncompressed.
	SkipLayers []int
	// Sink and Window protect the first Sink and the last Window tokens of
	// each head (by order in the head, which is position order). Protected
	// tokens are always kept, even where that keeps more than Ratio or
	// Budget asks.
	Sink, Window int
}

// Validate checks the policy's fields. layers, when positive, is the
// model's layer count, against which SkipLayers are checked.
func (p Policy) Validate(layers int) error {
	switch p.When {
	case Prefill:
		if math.IsNaN(p.Ratio) || p.Ratio < 0 || p.Ratio >= 1 {
			return fmt.Errorf("kv policy: ratio %v must be in [0, 1)", p.Ratio)
		}
		if p.Budget != 0 {
			return fmt.Errorf("kv policy: budget %d applies only when=decode", p.Budget)
		}
	case Decode:
		if p.Budget <= 0 {
			return fmt.Errorf("kv policy: when=decode needs a positive budget, got %d", p.Budget)
		}
		if p.Ratio != 0 {
			return fmt.Errorf("kv policy: ratio %v applies only when=prefill", p.Ratio)
		}
	default:
		return fmt.Errorf("kv policy: when %v: want prefill or decode", p.When)
	}
	if p.Sink < 0 || p.Window < 0 {
		return fmt.Errorf("kv policy: sink %d and window %d must not be negative", p.Sink, p.Window)
	}
	for i, l := range p.SkipLayers {
		if l < 0 || (layers > 0 && l >= layers) {
			return fmt.Errorf("kv policy: skip_layers[%d] = %d out of range [0,%d)", i, l, layers)
		}
	}
	return nil
}

// Skips reports whether layer is left uncompressed.
func (p Policy) Skips(layer int) bool { return slices.Contains(p.SkipLayers, layer) }

// Target returns how many of a head's n tokens the policy keeps before
// protection is applied: floor(n·(1−Ratio)) for Prefill (computed in
// float64, as kvpress's int(k_len * (1 - compression_ratio))), at most
// Budget for Decode.
func (p Policy) Target(n int) int {
	switch p.When {
	case Prefill:
		return min(n, int(math.Floor(float64(n)*(1-p.Ratio))))
	case Decode:
		return min(n, p.Budget)
	}
	return n
}

// Inactive reports whether the policy can never evict anything, so a
// caller can skip scoring altogether.
func (p Policy) Inactive() bool { return p.When == Prefill && p.Ratio == 0 }

// String renders the policy the way its options are written.
func (p Policy) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "when=%s", p.When)
	if p.When == Decode {
		fmt.Fprintf(&b, " budget=%d", p.Budget)
	} else {
		fmt.Fprintf(&b, " ratio=%g", p.Ratio)
	}
	if len(p.SkipLayers) > 0 {
		s := make([]string, len(p.SkipLayers))
		for i, l := range p.SkipLayers {
			s[i] = fmt.Sprint(l)
		}
		fmt.Fprintf(&b, " skip_layers=%s", strings.Join(s, ","))
	}
	if p.Sink > 0 {
		fmt.Fprintf(&b, " sink=%d", p.Sink)
	}
	if p.Window > 0 {
		fmt.Fprintf(&b, " window=%d", p.Window)
	}
	return b.String()
}

// Select returns the indices of the tokens a head keeps, in increasing
// order: the protected ones (the first sink and the last window indices)
// and, among the others, the highest-scoring ones up to target tokens in
// all. Equal scores favour the earlier token, so the choice is
// deterministic. A NaN score is an error: it can only come from a broken
// scorer, and silently ranking it would hide that.
func Select(scores []float32, target, sink, window int) ([]int, error) {
	n := len(scores)
	if target < 0 || sink < 0 || window < 0 {
		return nil, fmt.Errorf("kv select: target %d, sink %d, window %d must not be negative", target, sink, window)
	}
	for i, s := range scores {
		if math.IsNaN(float64(s)) {
			return nil, fmt.Errorf("kv select: score of token %d is NaN", i)
		}
	}
	if target >= n {
		return identity(n), nil
	}
	protected := func(i int) bool { return i < sink || i >= n-window }
	var keep, free []int
	for i := range n {
		if protected(i) {
			keep = append(keep, i)
		} else {
			free = append(free, i)
		}
	}
	if k := target - len(keep); k > 0 {
		// free is in index order and the sort is stable, so ties keep the
		// earlier token.
		slices.SortStableFunc(free, func(a, b int) int {
			switch {
			case scores[a] > scores[b]:
				return -1
			case scores[a] < scores[b]:
				return 1
			}
			return 0
		})
		keep = append(keep, free[:k]...)
		slices.Sort(keep)
	}
	return keep, nil
}

func identity(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}
