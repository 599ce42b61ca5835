package metrics

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// The reference implementations of every metric here are Python scripts, so
// "lowercase", "split on whitespace" and "word boundary" mean what Python's
// str.lower, str.split and re's \b mean. Go's strings.ToLower and
// strings.Fields differ from them at a few code points; these helpers close
// those gaps so scores agree on non-ASCII text too.

// pyLower lowercases like Python's str.lower: full case mapping (U+0130
// becomes "i" plus a combining dot above) and the context-dependent final
// sigma, on top of the simple mapping Go's unicode.ToLower applies.
func pyLower(s string) string {
	if isLowerASCII(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i, r := range s {
		switch {
		case r < utf8.RuneSelf:
			if 'A' <= r && r <= 'Z' {
				r += 'a' - 'A'
			}
			b.WriteByte(byte(r))
		case r == 'İ':
			b.WriteString("i\u0307")
		case r == 'Σ':
			if finalSigma(s, i) {
				b.WriteRune('ς')
			} else {
				b.WriteRune('σ')
			}
		default:
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func isLowerASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf || ('A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// finalSigma applies Unicode's Final_Sigma condition to the capital sigma at
// byte offset i, as CPython does: a cased letter before it (skipping
// case-ignorable characters) and none after it.
func finalSigma(s string, i int) bool {
	before := s[:i]
	for len(before) > 0 {
		r, size := utf8.DecodeLastRuneInString(before)
		before = before[:len(before)-size]
		if caseIgnorable(r) {
			continue
		}
		if !cased(r) {
			return false
		}
		after := s[i+len("Σ"):]
		for _, r := range after {
			if caseIgnorable(r) {
				continue
			}
			return !cased(r)
		}
		return true
	}
	return false
}

func cased(r rune) bool {
	return unicode.IsUpper(r) || unicode.IsLower(r) || unicode.IsTitle(r) ||
		unicode.Is(unicode.Other_Lowercase, r) || unicode.Is(unicode.Other_Uppercase, r)
}

// caseIgnorable is Unicode's Case_Ignorable: marks, format characters,
// modifiers and the Word_Break MidLetter, MidNumLet and Single_Quote
// characters (listed, as Go has no Word_Break tables).
func caseIgnorable(r rune) bool {
	switch r {
	case '\'', '.', ':', '\u00b7', '\u0387', '\u055f', '\u05f4', '\u2018', '\u2019',
		'\u2024', '\u2027', '\ufe13', '\ufe52', '\ufe55', '\uff07', '\uff0e', '\uff1a':
		return true
	}
	return unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf, unicode.Lm, unicode.Sk)
}

// pyIsSpace is Python's str.isspace for one code point: Go's unicode.IsSpace
// plus the ASCII information separators U+001C..U+001F.
func pyIsSpace(r rune) bool {
	return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f)
}

// pySplit is Python's str.split() with no arguments.
func pySplit(s string) []string {
	return strings.FieldsFunc(s, pyIsSpace)
}

// pyWordChar is a character that re's \w matches on str patterns: Unicode
// letters and numbers, and the underscore.
func pyWordChar(r rune) bool {
	if r < utf8.RuneSelf {
		return ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9') || r == '_'
	}
	return unicode.IsLetter(r) || unicode.IsNumber(r)
}
