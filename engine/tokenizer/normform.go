package tokenizer

import (
	"sort"
	"sync"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// unicodeNormalizer applies NFC, NFD, NFKC or NFKD the way HF tokenizers
// does, which differs from golang.org/x/text/unicode/norm in two ways:
//
//   - HF's normalization tables (the unicode-normalization-alignments crate)
//     date from Unicode 9.0, so characters added later are plain starters
//     there: no combining class, no decomposition, no composition.
//   - HF does not apply the Stream-Safe Text Format, so it never inserts
//     U+034F after 30 combining marks and reorders marks across any run.
//
// Character data comes from x/text; the algorithm (decompose, reorder
// combining marks, compose) is UAX #15's.
type unicodeNormalizer struct {
	decompose norm.Form // NFD or NFKD: the decomposition to apply
	full      norm.Form // the form itself, for the already-normalized check
	compose   bool
}

var (
	nfc  = unicodeNormalizer{decompose: norm.NFD, full: norm.NFC, compose: true}
	nfd  = unicodeNormalizer{decompose: norm.NFD, full: norm.NFD}
	nfkc = unicodeNormalizer{decompose: norm.NFKD, full: norm.NFKC, compose: true}
	nfkd = unicodeNormalizer{decompose: norm.NFKD, full: norm.NFKD}
)

// newerThanHF lists the characters that carry normalization data in x/text
// (Unicode 15) but were assigned after Unicode 9.0, so HF leaves them alone.
// It was found by comparing every code point's normalization against
// tokenizers 0.23.2; TestUnitReference covers some of them.
var newerThanHF = &unicode.RangeTable{
	R16: []unicode.Range16{
		{0x07FD, 0x07FD, 1}, {0x0898, 0x089F, 1}, {0x08CA, 0x08D3, 1}, {0x09FE, 0x09FE, 1},
		{0x0C3C, 0x0C3C, 1}, {0x0D3B, 0x0D3C, 1}, {0x0EBA, 0x0EBA, 1}, {0x1715, 0x1715, 1},
		{0x1ABF, 0x1ACE, 1}, {0x1DF6, 0x1DFA, 1}, {0x32FF, 0x32FF, 1}, {0xA7F2, 0xA7F4, 1},
		{0xA82C, 0xA82C, 1}, {0xAB69, 0xAB69, 1},
	},
	R32: []unicode.Range32{
		{0x10781, 0x10785, 1}, {0x10787, 0x107B0, 1}, {0x107B2, 0x107BA, 1}, {0x10D24, 0x10D27, 1},
		{0x10EAB, 0x10EAC, 1}, {0x10EFD, 0x10EFF, 1}, {0x10F46, 0x10F50, 1}, {0x10F82, 0x10F85, 1},
		{0x11070, 0x11070, 1}, {0x1133B, 0x1133B, 1}, {0x1145E, 0x1145E, 1}, {0x11839, 0x1183A, 1},
		{0x11938, 0x11938, 1}, {0x1193D, 0x1193E, 1}, {0x11943, 0x11943, 1}, {0x119E0, 0x119E0, 1},
		{0x11A34, 0x11A34, 1}, {0x11A47, 0x11A47, 1}, {0x11A99, 0x11A99, 1}, {0x11D42, 0x11D42, 1},
		{0x11D44, 0x11D45, 1}, {0x11D97, 0x11D97, 1}, {0x11F41, 0x11F42, 1}, {0x16FF0, 0x16FF1, 1},
		{0x1E030, 0x1E06D, 1}, {0x1E08F, 0x1E08F, 1}, {0x1E130, 0x1E136, 1}, {0x1E2AE, 0x1E2AE, 1},
		{0x1E2EC, 0x1E2EF, 1}, {0x1E4EC, 0x1E4EF, 1}, {0x1F16C, 0x1F16C, 1}, {0x1FBF0, 0x1FBF9, 1},
	},
}

func inert(r rune) bool { return r >= 0x07FD && unicode.Is(newerThanHF, r) }

// Hangul syllables decompose and compose arithmetically.
const (
	hangulSBase  = 0xAC00
	hangulLBase  = 0x1100
	hangulVBase  = 0x1161
	hangulTBase  = 0x11A7
	hangulTCount = 28
	hangulNCount = 21 * hangulTCount
	hangulSCount = 19 * hangulNCount
)

// classedRune is a character and its canonical combining class (0 for a
// starter).
type classedRune struct {
	r   rune
	ccc uint8
}

func (n unicodeNormalizer) normalize(s string) (string, error) {
	if n.full.IsNormalString(s) && !hasInert(s) {
		return s, nil
	}
	runes := n.decomposeAll(s)
	reorder(runes)
	if n.compose {
		runes = composeAll(runes)
	}
	out := make([]byte, 0, len(s)+len(s)/2)
	for _, c := range runes {
		out = utf8.AppendRune(out, c.r)
	}
	return string(out), nil
}

// hasInert reports whether s holds a character HF's tables lack; x/text's
// verdict on such text does not carry over.
func hasInert(s string) bool {
	for _, r := range s {
		if inert(r) {
			return true
		}
	}
	return false
}

func (n unicodeNormalizer) decomposeAll(s string) []classedRune {
	out := make([]classedRune, 0, len(s))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		char := s[i : i+size]
		i += size
		switch {
		case inert(r):
			out = append(out, classedRune{r, 0})
		case r >= hangulSBase && r < hangulSBase+hangulSCount:
			si := r - hangulSBase
			out = append(out, classedRune{hangulLBase + si/hangulNCount, 0}, classedRune{hangulVBase + (si%hangulNCount)/hangulTCount, 0})
			if t := si % hangulTCount; t != 0 {
				out = append(out, classedRune{hangulTBase + t, 0})
			}
		default:
			p := n.decompose.PropertiesString(char)
			d := p.Decomposition()
			if d == nil {
				out = append(out, classedRune{r, p.CCC()})
				continue
			}
			for j := 0; j < len(d); {
				dr, dsize := utf8.DecodeRune(d[j:])
				out = append(out, classedRune{dr, norm.NFD.Properties(d[j : j+dsize]).CCC()})
				j += dsize
			}
		}
	}
	return out
}

// reorder sorts each run of combining marks by combining class, keeping the
// order of marks of equal class (the canonical ordering algorithm).
func reorder(runes []classedRune) {
	for i := 0; i < len(runes); {
		if runes[i].ccc == 0 {
			i++
			continue
		}
		j := i
		for j < len(runes) && runes[j].ccc != 0 {
			j++
		}
		if j-i > 1 {
			run := runes[i:j]
			sort.SliceStable(run, func(a, b int) bool { return run[a].ccc < run[b].ccc })
		}
		i = j
	}
}

// composeAll applies canonical composition: each character combines with
// the last starter unless a character of the same or higher class, or any
// starter, stands between them.
func composeAll(runes []classedRune) []classedRune {
	out := runes[:0]
	starter := -1
	lastCCC := -1 // class of the last character kept after the starter; -1: none
	for _, c := range runes {
		if starter >= 0 && (lastCCC == -1 || (lastCCC > 0 && lastCCC < int(c.ccc))) {
			if composed, ok := composePair(out[starter].r, c.r); ok {
				out[starter].r = composed
				continue
			}
		}
		if c.ccc == 0 {
			starter, lastCCC = len(out), -1
		} else {
			lastCCC = int(c.ccc)
		}
		out = append(out, c)
	}
	return out
}

// composePair returns the primary composite of a starter and a following
// character, if Unicode 9 defines one.
func composePair(a, b rune) (rune, bool) {
	switch {
	case a >= hangulLBase && a < hangulLBase+19 && b >= hangulVBase && b < hangulVBase+21:
		return hangulSBase + ((a-hangulLBase)*21+(b-hangulVBase))*hangulTCount, true
	case a >= hangulSBase && a < hangulSBase+hangulSCount && (a-hangulSBase)%hangulTCount == 0 &&
		b > hangulTBase && b < hangulTBase+hangulTCount:
		return a + (b - hangulTBase), true
	}
	r, ok := compositions()[pairKey(a, b)]
	return r, ok
}

// compositions maps (starter, combining) pairs to their primary composite,
// for characters HF's Unicode 9 tables know. It is built on first use from
// x/text's decompositions (every composite decomposes below U+30000) and
// never changes afterwards.
var compositions = sync.OnceValue(func() map[uint64]rune {
	table := make(map[uint64]rune, 1024)
	var buf []byte
	for c := rune(0); c < 0x30000; c++ {
		if inert(c) || (c >= 0xD800 && c <= 0xDFFF) {
			continue
		}
		buf = utf8.AppendRune(buf[:0], c)
		d := norm.NFD.Properties(buf).Decomposition()
		if d == nil || !norm.NFC.IsNormal(buf) {
			continue // nothing to compose, or excluded from composition
		}
		last, size := utf8.DecodeLastRune(d)
		first := norm.NFC.Bytes(d[:len(d)-size])
		a, n := utf8.DecodeRune(first)
		if n != len(first) || inert(a) || inert(last) {
			continue
		}
		table[pairKey(a, last)] = c
	}
	return table
})
