package metrics

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// generalAnswerTokens is AnswerTokens without the ASCII fast path.
func generalAnswerTokens(s string) []string {
	return pySplit(removeArticles(removeASCIIPunct(pyLower(s))))
}

var textSeeds = []string{
	"", " ", "The Eiffel Tower.", "a an the", "well-known O'Neil's snake_case",
	"another theatre", "tabs\tand\nnewlines\r\n", "alpha\x1fbeta", "ctl\x00char\x7f",
	"Café au lait", "ΟΔΥΣΣΕΥΣ", "İstanbul", "300 \u212a", "the—end", "1,000.5", "A.B.C",
}

// FuzzAnswerTokensFastPath holds the single-pass ASCII tokeniser to the
// step-by-step normalisation it replaces.
func FuzzAnswerTokensFastPath(f *testing.F) {
	for _, s := range textSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := AnswerTokens(s), generalAnswerTokens(s); !slices.Equal(got, want) {
			t.Fatalf("AnswerTokens(%q) = %q, general path %q", s, got, want)
		}
	})
}

// FuzzRougeTokens holds the tokeniser to rouge-score's definition: lowercase
// (Python's), then the runs of [a-z0-9].
func FuzzRougeTokens(f *testing.F) {
	for _, s := range textSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := strings.FieldsFunc(pyLower(s), func(r rune) bool {
			return !('a' <= r && r <= 'z' || '0' <= r && r <= '9')
		})
		if got := RougeTokens(s, false); !slices.Equal(got, want) {
			t.Fatalf("RougeTokens(%q) = %q, want %q", s, got, want)
		}
		stemmed := RougeTokens(s, true)
		for i, w := range want {
			if len(w) > 3 {
				w = PorterStem(w)
			}
			if stemmed[i] != w {
				t.Fatalf("stemmed token %d of %q = %q, want %q", i, s, stemmed[i], w)
			}
		}
	})
}

func randomTokens(rng *rand.Rand, n, vocab int) *tokenList {
	var l tokenList
	l.reset()
	for range n {
		l.addString(string(rune('a' + rng.IntN(vocab))))
	}
	return &l
}

// overlapByCount is the n-gram overlap with a map of n-gram strings.
func overlapByCount(a, b *tokenList, n int) int {
	key := func(l *tokenList, i int) string { return strings.Join(l.strings()[i:i+n], " ") }
	counts := map[string]int{}
	for j := 0; j+n <= b.len(); j++ {
		counts[key(b, j)]++
	}
	hits := 0
	for i := 0; i+n <= a.len(); i++ {
		if k := key(a, i); counts[k] > 0 {
			counts[k]--
			hits++
		}
	}
	return hits
}

// TestOverlapAgainstCounting compares the hashed n-gram index with plain
// counting, on vocabularies small enough to repeat tokens often and on
// texts long enough to grow the table.
func TestOverlapAgainstCounting(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	s := NewScorer()
	for trial := 0; trial < 500; trial++ {
		a := randomTokens(rng, rng.IntN(120), 1+rng.IntN(30))
		b := randomTokens(rng, rng.IntN(120), 1+rng.IntN(30))
		for _, n := range []int{1, 2, 3} {
			if got, want := s.overlap(a, b, n), overlapByCount(a, b, n); got != want {
				t.Fatalf("overlap(%q, %q, %d) = %d, by counting %d", a.strings(), b.strings(), n, got, want)
			}
		}
	}
}

// TestLCSAgainstRecursion checks the rolling-row LCS against the textbook
// recursion on small random inputs.
func TestLCSAgainstRecursion(t *testing.T) {
	var lcs func(a, b []string) int
	lcs = func(a, b []string) int {
		if len(a) == 0 || len(b) == 0 {
			return 0
		}
		if a[0] == b[0] {
			return 1 + lcs(a[1:], b[1:])
		}
		return max(lcs(a[1:], b), lcs(a, b[1:]))
	}
	rng := rand.New(rand.NewPCG(3, 4))
	s := NewScorer()
	for trial := 0; trial < 300; trial++ {
		a := randomTokens(rng, rng.IntN(9), 1+rng.IntN(4))
		b := randomTokens(rng, rng.IntN(9), 1+rng.IntN(4))
		want := lcs(a.strings(), b.strings())
		if got := s.lcsLength(a, b); got != want {
			t.Fatalf("lcsLength(%q, %q) = %d, want %d", a.strings(), b.strings(), got, want)
		}
		if got := s.lcsTable(a, b); got != want {
			t.Fatalf("lcsTable(%q, %q) = %d, want %d", a.strings(), b.strings(), got, want)
		}
	}
	// The bit-parallel path up to 64 tokens against the table, and the
	// table beyond.
	for trial := 0; trial < 300; trial++ {
		a := randomTokens(rng, rng.IntN(100), 1+rng.IntN(20))
		b := randomTokens(rng, 1+rng.IntN(64), 1+rng.IntN(20))
		if got, want := s.lcsLength(a, b), s.lcsTable(a, b); got != want {
			t.Fatalf("lcsLength(%q, %q) = %d, table %d", a.strings(), b.strings(), got, want)
		}
	}
}

// TestScorerReuseMatchesFreshScorers runs every metric on the reference
// cases with one Scorer, forwards then backwards, and compares with a fresh
// Scorer per call: no buffer or cache may leak between calls.
func TestScorerReuseMatchesFreshScorers(t *testing.T) {
	var cases metricCases
	readJSON(t, "../testdata/metric_cases.json", &cases)
	shared := NewScorer()
	order := make([]int, 0, 2*len(cases.Cases))
	for i := range cases.Cases {
		order = append(order, i)
	}
	for i := range cases.Cases {
		order = append(order, len(cases.Cases)-1-i)
	}
	for _, i := range order {
		c := cases.Cases[i]
		for _, stem := range []bool{false, true} {
			got, _ := shared.ROUGE(c.Prediction, c.References, stem)
			if want, _ := ROUGE(c.Prediction, c.References, stem); got != want {
				t.Errorf("%s: reused ROUGE %+v, fresh %+v", c.ID, got, want)
			}
		}
		if got, want := must(shared.SQuAD(c.Prediction, c.References)), must(SQuAD(c.Prediction, c.References)); got != want {
			t.Errorf("%s: reused SQuAD %+v, fresh %+v", c.ID, got, want)
		}
		if got, want := must(shared.HotpotQA(c.Prediction, c.References)), must(HotpotQA(c.Prediction, c.References)); got != want {
			t.Errorf("%s: reused HotpotQA %+v, fresh %+v", c.ID, got, want)
		}
		if got, want := must(shared.LongBenchQAF1(c.Prediction, c.References)), must(LongBenchQAF1(c.Prediction, c.References)); got != want {
			t.Errorf("%s: reused LongBench %v, fresh %v", c.ID, got, want)
		}
		if got, want := must(shared.Needle(c.Prediction, c.References)), must(Needle(c.Prediction, c.References)); got != want {
			t.Errorf("%s: reused Needle %+v, fresh %+v", c.ID, got, want)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestEmptyReferencesAreAnError(t *testing.T) {
	s := NewScorer()
	for name, err := range map[string]error{
		"squad":     second(s.SQuAD("x", nil)),
		"hotpotqa":  second(s.HotpotQA("x", nil)),
		"longbench": second(s.LongBenchQAF1("x", nil)),
		"rouge":     second(s.ROUGE("x", nil, false)),
		"needle":    second(s.Needle("x", nil)),
	} {
		if err != ErrNoReferences {
			t.Errorf("%s with no references: %v", name, err)
		}
	}
}

func second[T any](_ T, err error) error { return err }

// FuzzMetrics checks what holds for any input: no panic, every score in
// [0, 1], exact match implying F1 of 1, and the two needle scores
// consistent.
func FuzzMetrics(f *testing.F) {
	f.Add("The cat sat.", "a cat sat", "")
	f.Add("", "", "yes")
	f.Add("Ünïcödé ΣΑΣ", "ünïcödé σας", "noanswer")
	f.Fuzz(func(t *testing.T, pred, ref1, ref2 string) {
		refs := []string{ref1, ref2}
		s := NewScorer()
		in01 := func(name string, v float64) {
			if !(v >= 0 && v <= 1) {
				t.Fatalf("%s = %v for %q vs %q", name, v, pred, refs)
			}
		}
		q := must(s.SQuAD(pred, refs))
		in01("squad em", q.ExactMatch)
		in01("squad f1", q.F1)
		if q.ExactMatch == 1 && q.F1 != 1 {
			t.Fatalf("EM 1 but F1 %v for %q vs %q", q.F1, pred, refs)
		}
		h := must(s.HotpotQA(pred, refs))
		for name, v := range map[string]float64{"em": h.ExactMatch, "f1": h.F1, "p": h.Precision, "r": h.Recall} {
			in01("hotpotqa "+name, v)
		}
		in01("longbench", must(s.LongBenchQAF1(pred, refs)))
		for _, stem := range []bool{false, true} {
			r := must(s.ROUGE(pred, refs, stem))
			for _, p := range []PRF{r.R1, r.R2, r.RL} {
				in01("rouge p", p.Precision)
				in01("rouge r", p.Recall)
				in01("rouge f", p.F)
			}
		}
		n := must(s.Needle(pred, refs))
		in01("needle all", n.All)
		if (n.All > 0) != (n.Part == 1) {
			t.Fatalf("needle %+v inconsistent", n)
		}
	})
}

// TestStemCacheBeyondItsCapacity stems more distinct words than the cache
// keeps, twice over: cached or not, every stem must be NLTK's.
func TestStemCacheBeyondItsCapacity(t *testing.T) {
	s := NewScorer()
	suffixes := []string{"ing", "ed", "ies", "ational", "ness", "ly"}
	word := func(i int) string {
		var b strings.Builder
		for v := i; ; v /= 26 {
			b.WriteByte(byte('a' + v%26))
			if v < 26 {
				break
			}
		}
		b.WriteString("ab")
		b.WriteString(suffixes[i%len(suffixes)])
		return b.String()
	}
	n := maxCachedStems * 5 / 4
	for round := 0; round < 2; round++ {
		for i := 0; i < n; i += 3 {
			text := word(i) + " " + word(i+1) + " " + word(i+2)
			got := s.rougeTokensForTest(text)
			for k, w := range strings.Fields(text) {
				if want := PorterStem(w); got[k] != want {
					t.Fatalf("round %d: stem of %q = %q, want %q", round, w, got[k], want)
				}
			}
		}
	}
	if s.stems.used != maxCachedStems*3/4 || len(s.stems.slots) != maxCachedStems {
		t.Errorf("cache holds %d of %d slots", s.stems.used, len(s.stems.slots))
	}
}

func (s *Scorer) rougeTokensForTest(text string) []string {
	s.rougeTokens(&s.pred, text, true)
	return s.pred.strings()
}
