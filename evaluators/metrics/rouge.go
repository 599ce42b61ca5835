package metrics

// PRF is a precision / recall / F-measure triple.
type PRF struct {
	Precision, Recall, F float64
}

// ROUGEScores are ROUGE-1, ROUGE-2 and ROUGE-L (sentence-level LCS) for one
// prediction.
type ROUGEScores struct {
	R1, R2, RL PRF
}

// maxCachedStems bounds a Scorer's stem cache; answers share most of their
// words, so this covers a whole benchmark.
const maxCachedStems = 1 << 16

// ROUGE scores a prediction as torchmetrics.text.ROUGEScore with
// rouge_keys=("rouge1", "rouge2", "rougeL") and accumulate="best" does,
// which follows Google's rouge-score for tokenising: lowercase, every run of
// characters outside [a-z0-9] becomes a space, and with stem set, tokens of
// more than three characters go through the Porter stemmer.
//
// With several references, each of the three is taken from the reference
// with the highest F-measure for that score (the first on ties), as
// torchmetrics 1.9 and rouge-score's score_multi do; so ROUGE-1 and ROUGE-2
// may come from different references.
func (s *Scorer) ROUGE(prediction string, references []string, stem bool) (ROUGEScores, error) {
	if len(references) == 0 {
		return ROUGEScores{}, ErrNoReferences
	}
	pred, gold := &s.pred, &s.gold
	s.rougeTokens(pred, prediction, stem)
	var best ROUGEScores
	for i, ref := range references {
		s.rougeTokens(gold, ref, stem)
		r1, rl := s.rouge1L(pred, gold)
		best.R1 = better(i, best.R1, r1)
		best.R2 = better(i, best.R2, s.rougeN(pred, gold, 2))
		best.RL = better(i, best.RL, rl)
	}
	return best, nil
}

// ROUGE is Scorer.ROUGE with a fresh Scorer.
func ROUGE(prediction string, references []string, stem bool) (ROUGEScores, error) {
	return NewScorer().ROUGE(prediction, references, stem)
}

// better keeps the score with the higher F-measure, compared as float32
// because torchmetrics takes the argmax of float32 tensors: references that
// tie in float32 keep the first.
func better(i int, cur, next PRF) PRF {
	if i == 0 || float32(next.F) > float32(cur.F) {
		return next
	}
	return cur
}

// RougeTokens tokenises text the rouge-score way (see Scorer.ROUGE).
func RougeTokens(text string, stem bool) []string {
	s := NewScorer()
	s.rougeTokens(&s.pred, text, stem)
	return s.pred.strings()
}

func (s *Scorer) rougeTokens(l *tokenList, text string, stem bool) {
	l.reset()
	if !isASCII(text) {
		// Python lowercases before dropping non-[a-z0-9]: the few
		// characters whose lowercase is ASCII (U+0130, U+212A) survive.
		text = pyLower(text)
	}
	buf := l.text // a local: Go's WASM code reloads fields on every use
	start := len(buf)
	for i := 0; i <= len(text); i++ {
		var c byte
		if i < len(text) {
			c = text[i]
		}
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
			buf = append(buf, c)
		case 'A' <= c && c <= 'Z':
			buf = append(buf, c+'a'-'A')
		default:
			if len(buf) > start {
				l.text = buf
				l.close(int32(start))
			}
			start = len(buf)
		}
	}
	if stem {
		s.stem(l)
	}
}

// stem replaces every token longer than three characters by its Porter
// stem, as rouge-score's tokenizer does.
func (s *Scorer) stem(l *tokenList) {
	out := &s.stemmed
	out.reset()
	for i := 0; i < l.len(); i++ {
		t := l.tok(i)
		if len(t) <= 3 {
			start := out.open()
			out.text = append(out.text, t...)
			out.close(start)
			continue
		}
		out.addString(s.stems.stem(t, l.hash[i]))
	}
	*l, *out = *out, *l
}

// stemCache remembers Porter stems by token hash in an open-addressing
// table (inside WASM a Go map lookup per token cost more than the rest of
// ROUGE). Answers share most of their words, so it stops growing at
// maxCachedStems and then only computes.
type stemCache struct {
	slots []stemSlot // a power of two long; word "" marks an empty slot
	used  int
}

type stemSlot struct {
	hash       uint64
	word, stem string
}

func (c *stemCache) stem(tok []byte, h uint64) string {
	if c.used >= len(c.slots)*3/4 && len(c.slots) < maxCachedStems {
		c.grow()
	}
	mask := uint64(len(c.slots) - 1)
	for k := h & mask; ; k = (k + 1) & mask {
		slot := &c.slots[k]
		if slot.word == "" {
			stem := PorterStem(string(tok))
			if c.used < len(c.slots)*3/4 {
				*slot = stemSlot{hash: h, word: string(tok), stem: stem}
				c.used++
			}
			return stem
		}
		if slot.hash == h && slot.word == string(tok) {
			return slot.stem
		}
	}
}

func (c *stemCache) grow() {
	old := c.slots
	c.slots = make([]stemSlot, max(256, 2*len(old)))
	mask := uint64(len(c.slots) - 1)
	for _, slot := range old {
		if slot.word == "" {
			continue
		}
		k := slot.hash & mask
		for c.slots[k].word != "" {
			k = (k + 1) & mask
		}
		c.slots[k] = slot
	}
}

func prf(hits, predLen, goldLen int) PRF {
	p := float64(hits) / float64(predLen)
	r := float64(hits) / float64(goldLen)
	if p == 0 && r == 0 {
		return PRF{}
	}
	return PRF{Precision: p, Recall: r, F: 2 * p * r / (p + r)}
}

// rougeN scores clipped n-gram overlap.
func (s *Scorer) rougeN(pred, gold *tokenList, n int) PRF {
	predLen, goldLen := pred.len()-n+1, gold.len()-n+1
	if predLen <= 0 || goldLen <= 0 {
		return PRF{}
	}
	return prf(s.overlap(pred, gold, n), predLen, goldLen)
}

// rouge1L scores unigram overlap and the longest common subsequence, from
// one index of the reference's tokens when it has at most 64.
func (s *Scorer) rouge1L(pred, gold *tokenList) (r1, rl PRF) {
	if pred.len() == 0 || gold.len() == 0 {
		return PRF{}, PRF{}
	}
	if gold.len() > 64 {
		return s.rougeN(pred, gold, 1), prf(s.lcsTable(pred, gold), pred.len(), gold.len())
	}
	x := &s.index
	x.build(gold, 1)
	lcs := x.lcs(pred) // before take, which uses up the counts
	return prf(x.take(pred), pred.len(), gold.len()), prf(lcs, pred.len(), gold.len())
}
