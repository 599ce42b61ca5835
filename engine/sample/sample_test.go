package sample

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
)

func seeded(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x5eed)) }

func randomLogits(rng *rand.Rand, n int) []float32 {
	l := make([]float32, n)
	for i := range l {
		l[i] = float32(rng.NormFloat64() * 3)
	}
	return l
}

func mustNew(t *testing.T, cfg Config, rng *rand.Rand) *Sampler {
	t.Helper()
	s, err := New(cfg, rng)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// softmax64 is the test's own softmax of logits/t.
func softmax64(logits []float32, t float64) []float64 {
	best := math.Inf(-1)
	for _, l := range logits {
		best = math.Max(best, float64(l)/t)
	}
	p := make([]float64, len(logits))
	var z float64
	for i, l := range logits {
		p[i] = math.Exp(float64(l)/t - best)
		z += p[i]
	}
	for i := range p {
		p[i] /= z
	}
	return p
}

func counts(t *testing.T, s *Sampler, logits []float32, draws int) []int {
	t.Helper()
	c := make([]int, len(logits))
	for range draws {
		id, err := s.Sample(logits)
		if err != nil {
			t.Fatal(err)
		}
		c[id]++
	}
	return c
}

// checkFrequencies asserts that ids outside want's support never appear and
// that each frequency is within 5 binomial standard deviations of want.
func checkFrequencies(t *testing.T, got []int, want []float64, draws int) {
	t.Helper()
	for i, p := range want {
		if p == 0 {
			if got[i] != 0 {
				t.Fatalf("token %d drawn %d times, but it is excluded", i, got[i])
			}
			continue
		}
		mean := p * float64(draws)
		sd := math.Sqrt(float64(draws) * p * (1 - p))
		if math.Abs(float64(got[i])-mean) > 5*sd+1 {
			t.Fatalf("token %d drawn %d times in %d, want %.1f ± %.1f", i, got[i], draws, mean, 5*sd)
		}
	}
}

func TestArgmax(t *testing.T) {
	rng := seeded(1)
	for range 100 {
		l := randomLogits(rng, 50)
		want := 0
		for i := range l {
			if l[i] > l[want] {
				want = i
			}
		}
		if got := Argmax(l); got != want {
			t.Fatalf("Argmax = %d, want %d", got, want)
		}
	}
	inf := float32(math.Inf(1))
	tests := []struct {
		logits []float32
		want   int
	}{
		{[]float32{1, 3, 3, 2}, 1},
		{[]float32{5, 5, 5}, 0},
		{[]float32{float32(math.Inf(-1)), -7}, 1},
		{[]float32{0, inf, inf}, 1},
	}
	for _, tc := range tests {
		if got := Argmax(tc.logits); got != tc.want {
			t.Errorf("Argmax(%v) = %d, want %d (lowest index among ties)", tc.logits, got, tc.want)
		}
	}
}

func TestGreedyAndTemperatureZero(t *testing.T) {
	rng := seeded(2)
	zero := mustNew(t, Config{TopK: 5, TopP: 0.5}, nil) // temperature 0: greedy, no rng needed
	for range 50 {
		l := randomLogits(rng, 100)
		for _, s := range []*Sampler{Greedy(), zero} {
			id, err := s.Sample(l)
			if err != nil {
				t.Fatal(err)
			}
			if id != Argmax(l) {
				t.Fatalf("greedy picked %d, argmax is %d", id, Argmax(l))
			}
		}
	}
}

func TestTopKOneEqualsGreedy(t *testing.T) {
	rng := seeded(3)
	s := mustNew(t, Config{Temperature: 1.5, TopK: 1}, seeded(4))
	for range 200 {
		l := randomLogits(rng, 64)
		id, err := s.Sample(l)
		if err != nil {
			t.Fatal(err)
		}
		if id != Argmax(l) {
			t.Fatalf("top-k=1 picked %d, argmax is %d", id, Argmax(l))
		}
	}
}

func TestTemperatureFrequencies(t *testing.T) {
	logits := []float32{2, 1, 0.5, 0, -1, -3}
	const draws = 40000
	for _, temp := range []float64{0.5, 1, 2} {
		s := mustNew(t, Config{Temperature: temp}, seeded(5))
		checkFrequencies(t, counts(t, s, logits, draws), softmax64(logits, temp), draws)
	}
}

func TestTopK(t *testing.T) {
	logits := []float32{0.1, 2, -1, 1.5, 0.3, 1.9, -0.2, 0}
	const k, draws = 3, 30000
	s := mustNew(t, Config{Temperature: 1, TopK: k}, seeded(6))
	order := make([]int, len(logits))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return logits[order[a]] > logits[order[b]] })
	kept := make([]float32, len(logits))
	for i := range kept {
		kept[i] = float32(math.Inf(-1))
	}
	for _, id := range order[:k] {
		kept[id] = logits[id]
	}
	checkFrequencies(t, counts(t, s, logits, draws), softmax64(kept, 1), draws)
}

func TestTopKKeepsTies(t *testing.T) {
	// transformers keeps every logit >= the k-th largest.
	logits := []float32{3, 1, 1, 1, 0}
	s := mustNew(t, Config{Temperature: 1, TopK: 2}, seeded(7))
	c := counts(t, s, logits, 20000)
	for _, id := range []int{1, 2, 3} {
		if c[id] == 0 {
			t.Fatalf("token %d, tied with the 2nd largest logit, never drawn: %v", id, c)
		}
	}
	if c[4] != 0 {
		t.Fatalf("token 4 below the top-k threshold drawn %d times", c[4])
	}
}

func TestTopPExcludesTail(t *testing.T) {
	rng := seeded(8)
	for trial := range 5 {
		logits := randomLogits(rng, 30)
		temp, topP := 0.8, 0.7
		// The nucleus, computed independently: sort probabilities
		// descending and take tokens until their sum reaches topP.
		probs := softmax64(logits, temp)
		order := make([]int, len(probs))
		for i := range order {
			order[i] = i
		}
		sort.Slice(order, func(a, b int) bool { return probs[order[a]] > probs[order[b]] })
		want := make([]float64, len(probs))
		var sum float64
		for _, id := range order {
			want[id] = probs[id]
			sum += probs[id]
			if sum >= topP {
				break
			}
		}
		for i := range want {
			want[i] /= sum
		}
		const draws = 30000
		s := mustNew(t, Config{Temperature: temp, TopP: topP}, seeded(uint64(100+trial)))
		checkFrequencies(t, counts(t, s, logits, draws), want, draws)
	}
}

func TestTopPAlwaysKeepsOne(t *testing.T) {
	// The top token alone has probability ~1 > TopP's tiny value: only it survives.
	logits := []float32{0, 10, 0, 0}
	s := mustNew(t, Config{Temperature: 1, TopP: 1e-9}, seeded(9))
	c := counts(t, s, logits, 1000)
	if c[1] != 1000 {
		t.Fatalf("draws %v, want only token 1", c)
	}
}

func TestMinP(t *testing.T) {
	// 2.2 sits just below the cut (e^-0.8 ≈ 0.45 of the top), 2.5 just above (0.61).
	logits := []float32{1, 3, 2.5, 0, 2.9, -1, 2.2}
	minP := 0.5
	probs := softmax64(logits, 1)
	best := slices.Max(probs)
	want := make([]float64, len(probs))
	var sum float64
	for i, p := range probs {
		if p >= minP*best {
			want[i] = p
			sum += p
		}
	}
	for i := range want {
		want[i] /= sum
	}
	const draws = 30000
	s := mustNew(t, Config{Temperature: 1, MinP: minP}, seeded(10))
	checkFrequencies(t, counts(t, s, logits, draws), want, draws)
}

func TestSameSeedSameSequence(t *testing.T) {
	rng := seeded(11)
	rows := make([][]float32, 200)
	for i := range rows {
		rows[i] = randomLogits(rng, 500)
	}
	cfg := Config{Temperature: 0.9, TopK: 40, TopP: 0.95, MinP: 0.01}
	run := func(seed uint64) []int {
		s := mustNew(t, cfg, seeded(seed))
		var ids []int
		for _, r := range rows {
			id, err := s.Sample(r)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		return ids
	}
	a, b, c := run(42), run(42), run(43)
	if !slices.Equal(a, b) {
		t.Fatal("same seed gave different sequences")
	}
	if slices.Equal(a, c) {
		t.Fatal("different seeds gave identical 200-token sequences")
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{Temperature: -1}, "temperature"},
		{Config{Temperature: math.NaN()}, "temperature"},
		{Config{Temperature: math.Inf(1)}, "temperature"},
		{Config{Temperature: 1, TopK: -2}, "top-k"},
		{Config{Temperature: 1, TopP: 1.5}, "top-p"},
		{Config{Temperature: 1, TopP: -0.1}, "top-p"},
		{Config{Temperature: 1, MinP: 2}, "min-p"},
		{Config{Temperature: 1, MinP: math.NaN()}, "min-p"},
	}
	for _, tc := range tests {
		if _, err := New(tc.cfg, seeded(1)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want error naming %s", tc.cfg, err, tc.want)
		}
	}
	if _, err := New(Config{Temperature: 1}, nil); err == nil {
		t.Error("New without a random source for sampling succeeded")
	}
}

func TestBadLogits(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	sampling := mustNew(t, Config{Temperature: 1}, seeded(12))
	tests := []struct {
		name   string
		s      *Sampler
		logits []float32
		want   string
	}{
		{"empty", Greedy(), nil, "empty"},
		{"nan greedy", Greedy(), []float32{0, nan}, "token 1 is NaN"},
		{"nan sampling", sampling, []float32{nan, 0}, "token 0 is NaN"},
		{"+inf sampling", sampling, []float32{0, 0, inf}, "token 2 is +Inf"},
	}
	for _, tc := range tests {
		if _, err := tc.s.Sample(tc.logits); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Sample = %v, want error containing %q", tc.name, err, tc.want)
		}
	}
}

func TestTinyTemperatureIsNearlyGreedy(t *testing.T) {
	logits := []float32{1e30, -1e30, 3e38, 3e38 * 0.999}
	s := mustNew(t, Config{Temperature: 5e-324}, seeded(13))
	for range 100 {
		id, err := s.Sample(logits)
		if err != nil {
			t.Fatal(err)
		}
		if id != 2 {
			t.Fatalf("temperature 5e-324 picked %d, want the argmax 2", id)
		}
	}
}
