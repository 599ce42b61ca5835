package tokenizer

import (
	"strings"
	"unicode"
)

// HF compiles split patterns with Oniguruma, whose Unicode 16.0 tables know
// letters and digits that Go's unicode package (15.0), which regexp2 uses
// for \p{L}, \p{N} and \d, does not. widenClasses adds them to those classes
// so that text in the scripts new in Unicode 16 splits as it does in HF. The
// ranges are the differences found by testing every code point against
// tokenizers 0.23.2; they only repeat Go's tables once Go has Unicode 16.
var (
	unicode16Letters = [][2]rune{
		{0x1C89, 0x1C8A}, {0xA7CB, 0xA7CD}, {0xA7DA, 0xA7DC}, {0x105C0, 0x105F3}, {0x10D4A, 0x10D65},
		{0x10D6F, 0x10D85}, {0x10EC2, 0x10EC4}, {0x11380, 0x11389}, {0x1138B, 0x1138B}, {0x1138E, 0x1138E},
		{0x11390, 0x113B5}, {0x113B7, 0x113B7}, {0x113D1, 0x113D1}, {0x113D3, 0x113D3}, {0x11BC0, 0x11BE0},
		{0x13460, 0x143FA}, {0x16100, 0x1611D}, {0x16D40, 0x16D6C}, {0x18CFF, 0x18CFF}, {0x1E5D0, 0x1E5ED},
		{0x1E5F0, 0x1E5F0}, {0x2EBF0, 0x2EE5D},
	}
	// All of them are decimal digits (Nd), so \d gets them too.
	unicode16Digits = [][2]rune{
		{0x10D40, 0x10D49}, {0x116D0, 0x116E3}, {0x11BF0, 0x11BF9}, {0x16130, 0x16139}, {0x16D70, 0x16D79},
		{0x1CCF0, 0x1CCF9}, {0x1E5F1, 0x1E5FA},
	}
)

func classRanges(ranges [][2]rune) string {
	var b strings.Builder
	for _, r := range ranges {
		b.WriteRune(r[0])
		if r[1] != r[0] {
			b.WriteByte('-')
			b.WriteRune(r[1])
		}
	}
	return b.String()
}

var (
	extraLetters = classRanges(unicode16Letters)
	extraDigits  = classRanges(unicode16Digits)
)

// widenClasses rewrites \p{L}, \pL, \p{N}, \pN and \d in a pattern to also
// match the Unicode 16 letters and digits: inside a character class the
// ranges are appended, outside it the escape becomes a class.
func widenClasses(expr string) string {
	rs := []rune(expr)
	var b strings.Builder
	b.Grow(len(expr))
	depth := 0 // character-class nesting
	for i := 0; i < len(rs); i++ {
		c := rs[i]
		switch {
		case c == '\\' && i+1 < len(rs):
			n, extra := classEscape(rs[i:])
			if extra == "" {
				b.WriteRune(c)
				b.WriteRune(rs[i+1])
				i++
				continue
			}
			escape := string(rs[i : i+n])
			if depth > 0 {
				b.WriteString(escape + extra)
			} else {
				b.WriteString("[" + escape + extra + "]")
			}
			i += n - 1
		case c == '[' && depth == 0:
			depth = 1
			b.WriteRune(c)
			// A ']' first in a class, after an optional '^', is literal.
			if i+1 < len(rs) && rs[i+1] == '^' {
				b.WriteRune('^')
				i++
			}
			if i+1 < len(rs) && rs[i+1] == ']' {
				b.WriteRune(']')
				i++
			}
		case c == '[' && i+1 < len(rs) && (rs[i+1] == ':' || rs[i-1] == '-'):
			// A POSIX bracket or a .NET class subtraction nests.
			depth++
			b.WriteRune(c)
		case c == ']' && depth > 0:
			depth--
			b.WriteRune(c)
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// classEscape recognizes an escape at the start of rs that names letters or
// digits and returns its length and the characters to add to it.
func classEscape(rs []rune) (int, string) {
	s := string(rs[:min(len(rs), 5)])
	switch {
	case strings.HasPrefix(s, `\p{L}`):
		return 5, extraLetters
	case strings.HasPrefix(s, `\p{N}`):
		return 5, extraDigits
	case strings.HasPrefix(s, `\pL`):
		return 3, extraLetters
	case strings.HasPrefix(s, `\pN`):
		return 3, extraDigits
	case strings.HasPrefix(s, `\d`):
		return 2, extraDigits
	}
	return 0, ""
}

// unicode16Lower adds the lowercase mappings of Unicode 16, which Rust's
// standard library has and Go's unicode tables (15.0) lack.
var unicode16Lower = unicode.SpecialCase{
	{Lo: 0x1C89, Hi: 0x1C89, Delta: [unicode.MaxCase]rune{0, 1, 0}},
	{Lo: 0xA7CB, Hi: 0xA7CB, Delta: [unicode.MaxCase]rune{0, 0x264 - 0xA7CB, 0}},
	{Lo: 0xA7CC, Hi: 0xA7CC, Delta: [unicode.MaxCase]rune{0, 1, 0}},
	{Lo: 0xA7CE, Hi: 0xA7CE, Delta: [unicode.MaxCase]rune{0, 1, 0}},
	{Lo: 0xA7D2, Hi: 0xA7D2, Delta: [unicode.MaxCase]rune{0, 1, 0}},
	{Lo: 0xA7D4, Hi: 0xA7D4, Delta: [unicode.MaxCase]rune{0, 1, 0}},
	{Lo: 0xA7DA, Hi: 0xA7DA, Delta: [unicode.MaxCase]rune{0, 1, 0}},
	{Lo: 0xA7DC, Hi: 0xA7DC, Delta: [unicode.MaxCase]rune{0, 0x19B - 0xA7DC, 0}},
	{Lo: 0x10D50, Hi: 0x10D65, Delta: [unicode.MaxCase]rune{0, 0x20, 0}},
	{Lo: 0x16EA0, Hi: 0x16EB8, Delta: [unicode.MaxCase]rune{0, 0x1B, 0}},
}
