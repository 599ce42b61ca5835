package metrics

// PorterStem stems a lowercase ASCII word the way NLTK's PorterStemmer does
// in its default NLTK_EXTENSIONS mode, which is what torchmetrics' ROUGEScore
// (and rouge-score) use for use_stemmer=True. That mode is Porter's 1980
// algorithm with Martin Porter's later changes and NLTK's own: a table of
// irregular forms, words of one or two letters left alone, "ies"/"ied" on
// four-letter words kept as "ie", y->i only after a consonant, and -alli,
// -fulli and -logi handled in step 2.
func PorterStem(word string) string {
	if stem, ok := porterIrregular[word]; ok {
		return stem
	}
	if len(word) <= 2 {
		return word
	}
	w := []byte(word)
	w = step1a(w)
	w = step1b(w)
	w = step1c(w)
	w = step2(w)
	w = step3(w)
	w = step4(w)
	w = step5a(w)
	w = step5b(w)
	return string(w)
}

var porterIrregular = map[string]string{
	"sky": "sky", "skies": "sky",
	"dying":   "die",
	"lying":   "lie",
	"tying":   "tie",
	"news":    "news",
	"innings": "inning", "inning": "inning",
	"outings": "outing", "outing": "outing",
	"cannings": "canning", "canning": "canning",
	"howe":    "howe",
	"proceed": "proceed",
	"exceed":  "exceed",
	"succeed": "succeed",
}

// consonant reports whether w[i] is a consonant in Porter's sense: not a
// vowel, and a 'y' only when it follows a vowel (or starts the word).
func consonant(w []byte, i int) bool {
	switch w[i] {
	case 'a', 'e', 'i', 'o', 'u':
		return false
	case 'y':
		return i == 0 || !consonant(w, i-1)
	}
	return true
}

// measure is Porter's m: the number of vowel-consonant transitions.
func measure(w []byte) int {
	m := 0
	prevVowel := false
	for i := range w {
		c := consonant(w, i)
		if c && prevVowel {
			m++
		}
		prevVowel = !c
	}
	return m
}

func hasVowel(w []byte) bool {
	for i := range w {
		if !consonant(w, i) {
			return true
		}
	}
	return false
}

func endsDoubleConsonant(w []byte) bool {
	n := len(w)
	return n >= 2 && w[n-1] == w[n-2] && consonant(w, n-1)
}

// endsCVC is Porter's *o condition (consonant-vowel-consonant, the last not
// w, x or y), which NLTK also grants to a two-letter vowel-consonant word.
func endsCVC(w []byte) bool {
	n := len(w)
	if n >= 3 && consonant(w, n-3) && !consonant(w, n-2) && consonant(w, n-1) {
		switch w[n-1] {
		case 'w', 'x', 'y':
			return false
		}
		return true
	}
	return n == 2 && !consonant(w, 0) && consonant(w, 1)
}

func hasSuffix(w []byte, suffix string) bool {
	return len(w) >= len(suffix) && string(w[len(w)-len(suffix):]) == suffix
}

// rule is one suffix rewrite: when the word ends in suffix and cond holds
// for what is left, the suffix becomes repl.
type rule struct {
	suffix, repl string
	cond         func(stem []byte) bool
}

// applyRules applies the first rule whose suffix matches; if its condition
// fails, no later rule is tried (Porter's "longest matching suffix" rule).
func applyRules(w []byte, rules []rule) []byte {
	for _, r := range rules {
		if !hasSuffix(w, r.suffix) {
			continue
		}
		stem := w[:len(w)-len(r.suffix)]
		if r.cond != nil && !r.cond(stem) {
			return w
		}
		return append(stem[:len(stem):len(stem)], r.repl...)
	}
	return w
}

func mPositive(stem []byte) bool { return measure(stem) > 0 }
func mAbove1(stem []byte) bool   { return measure(stem) > 1 }

func step1a(w []byte) []byte {
	if len(w) == 4 && hasSuffix(w, "ies") {
		return append(w[:1:1], "ie"...)
	}
	return applyRules(w, []rule{
		{"sses", "ss", nil},
		{"ies", "i", nil},
		{"ss", "ss", nil},
		{"s", "", nil},
	})
}

func step1b(w []byte) []byte {
	if hasSuffix(w, "ied") {
		if len(w) == 4 {
			return append(w[:1:1], "ie"...)
		}
		return append(w[:len(w)-3:len(w)-3], 'i')
	}
	if hasSuffix(w, "eed") {
		stem := w[:len(w)-3]
		if measure(stem) > 0 {
			return append(stem[:len(stem):len(stem)], "ee"...)
		}
		return w
	}
	var stem []byte
	switch {
	case hasSuffix(w, "ed") && hasVowel(w[:len(w)-2]):
		stem = w[:len(w)-2]
	case hasSuffix(w, "ing") && hasVowel(w[:len(w)-3]):
		stem = w[:len(w)-3]
	default:
		return w
	}
	stem = stem[:len(stem):len(stem)]
	switch {
	case hasSuffix(stem, "at"), hasSuffix(stem, "bl"), hasSuffix(stem, "iz"):
		return append(stem, 'e')
	case endsDoubleConsonant(stem):
		switch stem[len(stem)-1] {
		case 'l', 's', 'z':
			return stem
		}
		return stem[:len(stem)-1]
	case measure(stem) == 1 && endsCVC(stem):
		return append(stem, 'e')
	}
	return stem
}

func step1c(w []byte) []byte {
	n := len(w)
	if n > 2 && w[n-1] == 'y' && consonant(w, n-2) {
		return append(w[:n-1:n-1], 'i')
	}
	return w
}

var step2Rules = []rule{
	{"ational", "ate", mPositive},
	{"tional", "tion", mPositive},
	{"enci", "ence", mPositive},
	{"anci", "ance", mPositive},
	{"izer", "ize", mPositive},
	{"bli", "ble", mPositive},
	{"alli", "al", mPositive},
	{"entli", "ent", mPositive},
	{"eli", "e", mPositive},
	{"ousli", "ous", mPositive},
	{"ization", "ize", mPositive},
	{"ation", "ate", mPositive},
	{"ator", "ate", mPositive},
	{"alism", "al", mPositive},
	{"iveness", "ive", mPositive},
	{"fulness", "ful", mPositive},
	{"ousness", "ous", mPositive},
	{"aliti", "al", mPositive},
	{"iviti", "ive", mPositive},
	{"biliti", "ble", mPositive},
	{"fulli", "ful", mPositive},
	// The 'l' of -logi stays with the stem when measuring, so short stems
	// such as geo- and theo- qualify.
	{"logi", "log", func(stem []byte) bool { return measure(stem[:len(stem)+1]) > 0 }},
}

func step2(w []byte) []byte {
	// NLTK tries -alli first and feeds the result through step 2 again.
	if hasSuffix(w, "alli") && measure(w[:len(w)-4]) > 0 {
		return step2(w[:len(w)-2])
	}
	return applyRules(w, step2Rules)
}

var step3Rules = []rule{
	{"icate", "ic", mPositive},
	{"ative", "", mPositive},
	{"alize", "al", mPositive},
	{"iciti", "ic", mPositive},
	{"ical", "ic", mPositive},
	{"ful", "", mPositive},
	{"ness", "", mPositive},
}

func step3(w []byte) []byte { return applyRules(w, step3Rules) }

var step4Rules = []rule{
	{"al", "", mAbove1},
	{"ance", "", mAbove1},
	{"ence", "", mAbove1},
	{"er", "", mAbove1},
	{"ic", "", mAbove1},
	{"able", "", mAbove1},
	{"ible", "", mAbove1},
	{"ant", "", mAbove1},
	{"ement", "", mAbove1},
	{"ment", "", mAbove1},
	{"ent", "", mAbove1},
	{"ion", "", func(stem []byte) bool {
		return measure(stem) > 1 && (stem[len(stem)-1] == 's' || stem[len(stem)-1] == 't')
	}},
	{"ou", "", mAbove1},
	{"ism", "", mAbove1},
	{"ate", "", mAbove1},
	{"iti", "", mAbove1},
	{"ous", "", mAbove1},
	{"ive", "", mAbove1},
	{"ize", "", mAbove1},
}

func step4(w []byte) []byte { return applyRules(w, step4Rules) }

// step5a drops a final e after a stem of measure > 1, or of measure 1 that
// does not end consonant-vowel-consonant. Unlike the other steps both
// conditions are tried, as Porter's examples require.
func step5a(w []byte) []byte {
	if !hasSuffix(w, "e") {
		return w
	}
	stem := w[:len(w)-1]
	m := measure(stem)
	if m > 1 || (m == 1 && !endsCVC(stem)) {
		return stem
	}
	return w
}

func step5b(w []byte) []byte {
	if hasSuffix(w, "ll") && measure(w[:len(w)-1]) > 1 {
		return w[:len(w)-1]
	}
	return w
}
