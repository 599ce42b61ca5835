package tokenizer

import (
	"slices"
	"testing"
)

// TestWidenClasses checks that the Unicode 16 letters and digits join \p{L},
// \p{N} and \d wherever they appear, and that escapes and class syntax
// survive the rewrite.
func TestWidenClasses(t *testing.T) {
	const garayA, garayDigit, todhri = "\U00010D50", "\U00010D40", "\U000105C0"
	tests := []struct {
		pattern, text string
		want          []string
	}{
		{`\p{L}+`, "a" + garayA + "b 1", []string{"a" + garayA + "b"}},
		{`\pL+`, todhri + "x", []string{todhri + "x"}},
		{`[^\p{L}]+`, "1" + garayA + " 2", []string{"1", " 2"}},
		{`[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}`, "!" + garayA + " " + garayDigit + garayDigit, []string{"!" + garayA, garayDigit + garayDigit}},
		{`\d+`, garayDigit + garayDigit + "x9", []string{garayDigit + garayDigit, "9"}},
		{`[\d]`, garayDigit, []string{garayDigit}},
		{`\\p{L}`, `x\p{L}` + garayA, []string{`\p{L}`}},
		{`[\]\p{N}]+`, "]" + garayDigit + "a", []string{"]" + garayDigit}},
		{`[]\p{L}]+`, "]" + garayA + "1", []string{"]" + garayA}},
		{`[b-z-[aeiou]]\p{L}`, "b" + garayA + "e" + garayA, []string{"b" + garayA}},
		{`[[:alpha:]\p{L}]+`, garayA + "1", []string{garayA}},
	}
	for _, tt := range tests {
		p, err := newRegexPattern(tt.pattern)
		if err != nil {
			t.Fatalf("%s: %v", tt.pattern, err)
		}
		spans, err := p.findAll(tt.text)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, sp := range spans {
			got = append(got, tt.text[sp.start:sp.end])
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s on %+q: matches %+q, want %+q", tt.pattern, tt.text, got, tt.want)
		}
	}
}
