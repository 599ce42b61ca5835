// Package metrics implements the built-in evaluators' scores in plain Go:
// SQuAD exact match and F1, the HotpotQA and LongBench variants of F1,
// ROUGE-1/2/L and needle recall. The WASM evaluators under
// evaluators/builtin are thin wrappers around it, and its tests compare it
// with the Python reference implementations (torchmetrics, the official
// scripts) through evaluators/testdata/metric_reference.json.
package metrics

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// ErrNoReferences is returned for an item with no reference to compare with.
var ErrNoReferences = errors.New("no references to score against")

// asciiPunct is Python's string.punctuation: SQuAD removes only these.
const asciiPunct = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"

// NormalizeAnswer is the SQuAD answer normalisation shared by SQuAD,
// HotpotQA and LongBench: lowercase, remove ASCII punctuation, replace the
// words a/an/the by a space, and collapse whitespace.
func NormalizeAnswer(s string) string {
	return strings.Join(AnswerTokens(s), " ")
}

// AnswerTokens returns the whitespace tokens of NormalizeAnswer(s).
func AnswerTokens(s string) []string {
	var l tokenList
	answerTokens(&l, s)
	return l.strings()
}

// answerTokens fills l with the tokens of NormalizeAnswer(s).
func answerTokens(l *tokenList, s string) {
	l.reset()
	if asciiAnswerTokens(l, s) {
		return
	}
	l.reset()
	s = pyLower(s)
	s = removeASCIIPunct(s)
	s = removeArticles(s)
	for _, t := range pySplit(s) {
		l.addString(t)
	}
}

// Byte classes for the ASCII fast path of answerTokens.
const (
	classKeep  = iota // lowercase letters and digits
	classUpper        // A-Z: lowercased
	classPunct        // string.punctuation: removed
	classSpace        // Python whitespace: separates tokens
	classOther        // other control characters: left to the general path
)

var asciiClass = func() (t [utf8.RuneSelf]byte) {
	for c := range t {
		switch {
		case 'A' <= c && c <= 'Z':
			t[c] = classUpper
		case strings.IndexByte(asciiPunct, byte(c)) >= 0:
			t[c] = classPunct
		case pyIsSpace(rune(c)):
			t[c] = classSpace
		case ('a' <= c && c <= 'z') || ('0' <= c && c <= '9'):
			t[c] = classKeep
		default:
			t[c] = classOther
		}
	}
	return t
}()

// asciiAnswerTokens tokenises printable ASCII text in one pass, reporting
// false for anything else. There every word character left after
// punctuation removal is [a-z0-9], so the article rule reduces to dropping
// the tokens a, an and the.
func asciiAnswerTokens(l *tokenList, s string) bool {
	text := l.text // a local: Go's WASM code reloads fields on every use
	start := len(text)
	for i := 0; i <= len(s); i++ {
		class := byte(classSpace)
		var c byte
		if i < len(s) {
			c = s[i]
			if c >= utf8.RuneSelf {
				return false
			}
			class = asciiClass[c]
		}
		switch class {
		case classKeep:
			text = append(text, c)
		case classUpper:
			text = append(text, c+'a'-'A')
		case classSpace:
			switch string(text[start:]) {
			case "", "a", "an", "the":
				text = text[:start]
			default:
				l.text = text
				l.close(int32(start))
			}
			start = len(text)
		case classOther:
			return false
		}
	}
	l.text = text
	return true
}

func removeASCIIPunct(s string) string {
	if !strings.ContainsAny(s, asciiPunct) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(asciiPunct, s[i]) < 0 {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// removeArticles does what re.sub(r"\b(a|an|the)\b", " ", s) does on a str:
// every maximal run of word characters that is exactly a, an or the becomes
// one space.
func removeArticles(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	i := 0
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if !pyWordChar(r) {
			b.WriteString(s[i : i+size])
			i += size
			continue
		}
		j := i + size
		for j < len(s) {
			r, size := utf8.DecodeRuneInString(s[j:])
			if !pyWordChar(r) {
				break
			}
			j += size
		}
		switch word := s[i:j]; word {
		case "a", "an", "the":
			b.WriteByte(' ')
		default:
			b.WriteString(word)
		}
		i = j
	}
	return b.String()
}

// SQuADScores are one item's SQuAD scores, each the maximum over references.
type SQuADScores struct {
	ExactMatch float64
	F1         float64
}

// SQuAD scores a prediction as torchmetrics.text.SQuAD (and the official
// SQuAD v1.1/v2 script) does per question, as fractions in [0, 1] rather
// than percentages: exact match of normalised strings and token-overlap F1,
// each maximised over the references. An answer that normalises to nothing
// gets F1 1 against a reference that also does, else 0.
func (s *Scorer) SQuAD(prediction string, references []string) (SQuADScores, error) {
	if len(references) == 0 {
		return SQuADScores{}, ErrNoReferences
	}
	pred, gold := &s.pred, &s.gold
	answerTokens(pred, prediction)
	var best SQuADScores
	for _, ref := range references {
		answerTokens(gold, ref)
		if pred.equal(gold) {
			best.ExactMatch = 1
		}
		var f1 float64
		if pred.len() == 0 || gold.len() == 0 {
			if pred.len() == gold.len() {
				f1 = 1
			}
		} else {
			f1, _, _ = s.tokenF1(pred, gold)
		}
		best.F1 = max(best.F1, f1)
	}
	return best, nil
}

// tokenF1 is the bag-of-tokens F1 all three QA metrics share; with no
// common token it is 0 (so also when either side is empty).
func (s *Scorer) tokenF1(pred, gold *tokenList) (f1, precision, recall float64) {
	same := s.overlap(pred, gold, 1)
	if same == 0 {
		return 0, 0, 0
	}
	precision = float64(same) / float64(pred.len())
	recall = float64(same) / float64(gold.len())
	return 2 * precision * recall / (precision + recall), precision, recall
}

// HotpotQAScores are one item's HotpotQA answer scores. Precision and
// recall come from the reference with the highest F1 (the first on ties).
type HotpotQAScores struct {
	ExactMatch float64
	F1         float64
	Precision  float64
	Recall     float64
}

// HotpotQA scores an answer with the official hotpot_evaluate_v1.py rules:
// SQuAD normalisation and token F1, except that when either normalised side
// is "yes", "no" or "noanswer" and the two differ, all scores are 0. With
// several references each score is maximised as described on HotpotQAScores.
func (s *Scorer) HotpotQA(prediction string, references []string) (HotpotQAScores, error) {
	if len(references) == 0 {
		return HotpotQAScores{}, ErrNoReferences
	}
	pred, gold := &s.pred, &s.gold
	answerTokens(pred, prediction)
	var best HotpotQAScores
	for i, ref := range references {
		answerTokens(gold, ref)
		same := pred.equal(gold)
		if same {
			best.ExactMatch = 1
		}
		var f1, p, r float64
		if same || (!yesNoNoAnswer(pred) && !yesNoNoAnswer(gold)) {
			f1, p, r = s.tokenF1(pred, gold)
		}
		if i == 0 || f1 > best.F1 {
			best.F1, best.Precision, best.Recall = f1, p, r
		}
	}
	return best, nil
}

// yesNoNoAnswer reports whether a normalised answer is "yes", "no" or
// "noanswer" (a single token, as normalisation leaves no spaces inside).
func yesNoNoAnswer(l *tokenList) bool { return l.is("yes") || l.is("no") || l.is("noanswer") }

// LongBenchQAF1 is LongBench's qa_f1_score (narrativeqa, qasper,
// multifieldqa_en, hotpotqa, 2wikimqa, musique), maximised over references
// as LongBench's scorer does: SQuAD normalisation, then token F1, 0 when no
// token is shared (so also when both sides are empty).
func (s *Scorer) LongBenchQAF1(prediction string, references []string) (float64, error) {
	if len(references) == 0 {
		return 0, ErrNoReferences
	}
	pred, gold := &s.pred, &s.gold
	answerTokens(pred, prediction)
	best := 0.0
	for _, ref := range references {
		answerTokens(gold, ref)
		f1, _, _ := s.tokenF1(pred, gold)
		best = max(best, f1)
	}
	return best, nil
}

// SQuAD is Scorer.SQuAD with a fresh Scorer.
func SQuAD(prediction string, references []string) (SQuADScores, error) {
	return NewScorer().SQuAD(prediction, references)
}

// HotpotQA is Scorer.HotpotQA with a fresh Scorer.
func HotpotQA(prediction string, references []string) (HotpotQAScores, error) {
	return NewScorer().HotpotQA(prediction, references)
}

// LongBenchQAF1 is Scorer.LongBenchQAF1 with a fresh Scorer.
func LongBenchQAF1(prediction string, references []string) (float64, error) {
	return NewScorer().LongBenchQAF1(prediction, references)
}
