package prompt

import (
	"fmt"
	"slices"
)

// DefaultEdges returns the bucket edges, in prompt tokens, that split 512
// to 32k+ at powers of two.
func DefaultEdges() []int { return []int{1024, 2048, 4096, 8192, 16384, 32768} }

// Bucket is a half-open range of prompt lengths [Lo, Hi) and the prompts
// in it; Hi is 0 for the open last bucket.
type Bucket struct {
	Lo, Hi int
	// Indices are positions in the slice given to Buckets.
	Indices []int
}

// Label names the bucket like "4k-8k", "<1k" or "32k+".
func (b Bucket) Label() string {
	switch {
	case b.Lo == 0:
		return "<" + kilo(b.Hi)
	case b.Hi == 0:
		return kilo(b.Lo) + "+"
	default:
		return kilo(b.Lo) + "-" + kilo(b.Hi)
	}
}

func kilo(n int) string {
	if n%1024 == 0 {
		return fmt.Sprintf("%dk", n/1024)
	}
	return fmt.Sprint(n)
}

// Buckets groups prompts by PromptTokens at the given strictly increasing,
// positive edges: [0, e0), [e0, e1), ..., [eN, ∞). Every bucket is returned,
// empty or not, so tables line up across runs.
func Buckets(prompts []Prompt, edges []int) ([]Bucket, error) {
	if len(edges) == 0 {
		return nil, fmt.Errorf("length buckets: no edges")
	}
	for i, e := range edges {
		if e <= 0 || (i > 0 && e <= edges[i-1]) {
			return nil, fmt.Errorf("length buckets: edges must be positive and increasing, got %v", edges)
		}
	}
	out := make([]Bucket, len(edges)+1)
	for i := range out {
		if i > 0 {
			out[i].Lo = edges[i-1]
		}
		if i < len(edges) {
			out[i].Hi = edges[i]
		}
	}
	for i, p := range prompts {
		// The first edge greater than the length closes its bucket.
		k, found := slices.BinarySearch(edges, p.PromptTokens)
		if found {
			k++
		}
		out[k].Indices = append(out[k].Indices, i)
	}
	return out, nil
}
