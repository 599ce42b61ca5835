// Package sample picks the next token from a row of logits: greedily, or by
// seeded sampling with temperature, top-k, top-p (nucleus) and min-p, with
// the semantics of Hugging Face's logits warpers applied in transformers'
// order (temperature, top-k, top-p, min-p).
//
// Randomness comes only from the *rand.Rand the caller injects, so a run is
// reproducible from its seed.
package sample

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// Config selects the decoding rule. The zero value is greedy decoding.
type Config struct {
	// Temperature divides the logits before sampling. 0 means greedy
	// decoding (argmax): the limit of sampling as the temperature goes to 0,
	// and the usual meaning of "--temperature 0"; the filters below are
	// then moot, since the argmax survives all of them.
	Temperature float64
	// TopK keeps the TopK highest logits (and any tied with the lowest of
	// them, as transformers does); 0 disables it.
	TopK int
	// TopP keeps the smallest set of most probable tokens whose probability
	// sums to at least TopP (at least one token); 0 or 1 disables it.
	TopP float64
	// MinP drops tokens whose probability is below MinP times the top
	// token's; 0 disables it.
	MinP float64
}

// Greedy reports whether c decodes by argmax.
func (c Config) Greedy() bool { return c.Temperature == 0 }

// Validate returns an error naming the first invalid field.
func (c Config) Validate() error {
	switch {
	case math.IsNaN(c.Temperature) || math.IsInf(c.Temperature, 0) || c.Temperature < 0:
		return fmt.Errorf("sampling: temperature %v must be a finite number >= 0 (0 means greedy)", c.Temperature)
	case c.TopK < 0:
		return fmt.Errorf("sampling: top-k %d must be >= 0 (0 disables it)", c.TopK)
	case math.IsNaN(c.TopP) || c.TopP < 0 || c.TopP > 1:
		return fmt.Errorf("sampling: top-p %v must be in [0, 1] (0 or 1 disables it)", c.TopP)
	case math.IsNaN(c.MinP) || c.MinP < 0 || c.MinP > 1:
		return fmt.Errorf("sampling: min-p %v must be in [0, 1] (0 disables it)", c.MinP)
	}
	return nil
}

// Sampler draws tokens under one Config. It keeps scratch buffers, so it is
// not safe for concurrent use; use one per sequence.
type Sampler struct {
	cfg  Config
	rng  *rand.Rand
	ids  []int
	prob []float64
}

// New returns a sampler for cfg. rng is required unless cfg is greedy.
func New(cfg Config, rng *rand.Rand) (*Sampler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if rng == nil && !cfg.Greedy() {
		return nil, errors.New("sampling: a random source is required for temperature > 0")
	}
	return &Sampler{cfg: cfg, rng: rng}, nil
}

// Greedy returns an argmax sampler.
func Greedy() *Sampler { return &Sampler{} }

// Config returns the sampler's configuration.
func (s *Sampler) Config() Config { return s.cfg }

// Sample returns the chosen token id. Logits containing NaN (a broken
// forward pass) are an error rather than a silent pick.
func (s *Sampler) Sample(logits []float32) (int, error) {
	if len(logits) == 0 {
		return 0, errors.New("sampling: empty logits")
	}
	for i, l := range logits {
		if math.IsNaN(float64(l)) {
			return 0, fmt.Errorf("sampling: logit of token %d is NaN", i)
		}
	}
	if s.cfg.Greedy() {
		return Argmax(logits), nil
	}
	for i, l := range logits {
		if math.IsInf(float64(l), 1) {
			return 0, fmt.Errorf("sampling: logit of token %d is +Inf", i)
		}
	}
	return s.draw(logits), nil
}

// Argmax returns the index of the largest value, the lowest index among
// ties (as torch.argmax does).
func Argmax(logits []float32) int {
	best := 0
	for i, l := range logits {
		if l > logits[best] {
			best = i
		}
	}
	return best
}

func (s *Sampler) draw(logits []float32) int {
	t := s.cfg.Temperature
	// Candidates, sorted by descending logit with ties by ascending id: the
	// order every filter below cuts in.
	s.ids = s.ids[:0]
	for i, l := range logits {
		if !math.IsInf(float64(l), -1) {
			s.ids = append(s.ids, i)
		}
	}
	if len(s.ids) == 0 {
		return Argmax(logits) // every logit -Inf: no distribution to draw from
	}
	slices.SortFunc(s.ids, func(a, b int) int {
		if c := cmp.Compare(logits[b], logits[a]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	ids := s.ids

	if k := s.cfg.TopK; k > 0 && k < len(ids) {
		kth := logits[ids[k-1]]
		for k < len(ids) && logits[ids[k]] == kth {
			k++
		}
		ids = ids[:k]
	}

	// Softmax of logits/t over the candidates, in float64. Subtracting the
	// top logit before dividing keeps a tiny temperature from overflowing.
	top := float64(logits[ids[0]])
	s.prob = s.prob[:0]
	var z float64
	for _, id := range ids {
		p := math.Exp((float64(logits[id]) - top) / t)
		s.prob = append(s.prob, p)
		z += p
	}
	prob := s.prob
	for i := range prob {
		prob[i] /= z
	}

	if p := s.cfg.TopP; p > 0 && p < 1 {
		// Keep token i while the mass strictly above it is below p: the
		// smallest prefix reaching p (transformers removes tokens whose
		// ascending cumulative probability is <= 1-p).
		var above float64
		n := 0
		for n < len(prob) && above < p {
			above += prob[n]
			n++
		}
		ids, prob = ids[:n], prob[:n]
	}

	if m := s.cfg.MinP; m > 0 {
		// prob[0] is the largest; renormalisation after top-p would not
		// change the ratio that min-p tests.
		cut := m * prob[0]
		n := 1
		for n < len(prob) && prob[n] >= cut {
			n++
		}
		ids, prob = ids[:n], prob[:n]
	}

	var total float64
	for _, p := range prob {
		total += p
	}
	u := s.rng.Float64() * total
	for i, p := range prob {
		u -= p
		if u < 0 {
			return ids[i]
		}
	}
	return ids[len(ids)-1] // rounding left u a hair above the summed mass
}
