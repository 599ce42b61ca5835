package tokenizer

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dlclark/regexp2/v2"
)

// span is a half-open byte range of a string.
type span struct{ start, end int }

// pattern finds the matches of a tokenizer.json pattern ({"String": ...} or
// {"Regex": ...}) in a string. Hugging Face compiles both kinds with
// Oniguruma; regexp2 is also a backtracking engine with leftmost-first
// alternation, lookahead and Unicode classes, so it finds the same matches.
type pattern struct {
	literal string          // used when re is nil
	re      *regexp2.Regexp // nil for a literal pattern
	expr    string          // the regex as the file gives it, for errors
}

// backtrackLimit bounds regexp2's backtracking stack (in slots; 128 MiB at
// most). It is well above regexp2's default of 100,000 so that no prompt
// hits it: the Qwen and Llama 3 split patterns stay within it on 8M-character
// runs of spaces, newlines, letters or punctuation.
const backtrackLimit = 1 << 24

// matchTimeout bounds the search for one match, so that a pathological
// pattern in a tokenizer file fails an encode instead of hanging it. Real
// split patterns find each match in microseconds.
const matchTimeout = 5 * time.Second

func newLiteralPattern(s string) *pattern { return &pattern{literal: s} }

// newRegexPattern compiles a tokenizer.json regex for regexp2.
func newRegexPattern(expr string) (*pattern, error) {
	// Oniguruma's default (Ruby) syntax treats ^ and $ as line anchors, which
	// is .NET's Multiline mode.
	re, err := regexp2.Compile(widenClasses(expr), regexp2.Multiline, regexp2.OptionMaxBacktrackingStackSize(backtrackLimit))
	if err != nil {
		return nil, fmt.Errorf("compiling regex %q: %w", expr, err)
	}
	re.MatchTimeout = matchTimeout
	return &pattern{re: re, expr: expr}, nil
}

// findAll returns the non-overlapping matches of p in s, in order. Empty
// matches follow the Rust find iterators HF uses: an empty match directly
// after the previous match is dropped, and the search moves on one character.
func (p *pattern) findAll(s string) ([]span, error) {
	if p.re == nil {
		return p.findLiteral(s), nil
	}
	runes := []rune(s)
	var out []span
	// Matches come in increasing order, so rune indexes are turned into byte
	// offsets with one forward walk over s.
	runeIdx, byteIdx := 0, 0
	toByte := func(r int) int {
		for runeIdx < r {
			_, n := utf8.DecodeRuneInString(s[byteIdx:])
			byteIdx += n
			runeIdx++
		}
		return byteIdx
	}
	prevEnd := -1
	err := p.re.FindRunesMatches(runes, 0, func(m regexp2.MatchView) bool {
		idx, length, ok := m.GroupRange(0)
		if !ok {
			return true
		}
		if length == 0 && idx == prevEnd {
			return true
		}
		start := toByte(idx)
		end := toByte(idx + length)
		out = append(out, span{start, end})
		prevEnd = idx + length
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("matching %q: %w", p.expr, err)
	}
	return out, nil
}

// findLiteral finds the non-overlapping occurrences of a literal pattern.
func (p *pattern) findLiteral(s string) []span {
	var out []span
	if p.literal == "" {
		// An empty pattern matches at every character boundary.
		for i := range s {
			out = append(out, span{i, i})
		}
		return append(out, span{len(s), len(s)})
	}
	for off := 0; off <= len(s); {
		i := strings.Index(s[off:], p.literal)
		if i < 0 {
			break
		}
		out = append(out, span{off + i, off + i + len(p.literal)})
		off += i + len(p.literal)
	}
	return out
}

// piece is a part of a string and whether it was a match.
type piece struct {
	span
	match bool
}

// pieces covers s with the matches of p and the gaps between them, as HF's
// Pattern::find_matches does: an empty s yields one empty non-match.
func (p *pattern) pieces(s string, invert bool) ([]piece, error) {
	if s == "" {
		return []piece{{span{0, 0}, invert}}, nil
	}
	matches, err := p.findAll(s)
	if err != nil {
		return nil, err
	}
	out := make([]piece, 0, 2*len(matches)+1)
	prev := 0
	for _, m := range matches {
		if prev != m.start {
			out = append(out, piece{span{prev, m.start}, invert})
		}
		out = append(out, piece{m, !invert})
		prev = m.end
	}
	if prev != len(s) {
		out = append(out, piece{span{prev, len(s)}, invert})
	}
	return out, nil
}

// replaceAll replaces every match of p in s with content.
func (p *pattern) replaceAll(s, content string) (string, error) {
	matches, err := p.findAll(s)
	if err != nil {
		return "", err
	}
	if len(matches) == 0 {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	prev := 0
	for _, m := range matches {
		b.WriteString(s[prev:m.start])
		b.WriteString(content)
		prev = m.end
	}
	b.WriteString(s[prev:])
	return b.String(), nil
}

// splitBehavior says what happens to the matches when a string is split on a
// pattern (HF's SplitDelimiterBehavior).
type splitBehavior int

const (
	splitRemoved splitBehavior = iota
	splitIsolated
	splitMergedWithPrevious
	splitMergedWithNext
	splitContiguous
)

var splitBehaviors = map[string]splitBehavior{
	"Removed":            splitRemoved,
	"Isolated":           splitIsolated,
	"MergedWithPrevious": splitMergedWithPrevious,
	"MergedWithNext":     splitMergedWithNext,
	"Contiguous":         splitContiguous,
}

// split cuts s at the matches of p according to behavior and appends the
// non-empty parts to out.
func (p *pattern) split(s string, behavior splitBehavior, invert bool, out []span) ([]span, error) {
	ps, err := p.pieces(s, invert)
	if err != nil {
		return nil, err
	}
	var parts []span
	switch behavior {
	case splitIsolated:
		for _, pc := range ps {
			parts = append(parts, pc.span)
		}
	case splitRemoved:
		for _, pc := range ps {
			if !pc.match {
				parts = append(parts, pc.span)
			}
		}
	case splitMergedWithPrevious:
		prevMatch := false
		for _, pc := range ps {
			if pc.match && !prevMatch && len(parts) > 0 {
				parts[len(parts)-1].end = pc.end
			} else {
				parts = append(parts, pc.span)
			}
			prevMatch = pc.match
		}
	case splitMergedWithNext:
		prevMatch := false
		for i := len(ps) - 1; i >= 0; i-- {
			pc := ps[i]
			if pc.match && !prevMatch && len(parts) > 0 {
				parts[len(parts)-1].start = pc.start
			} else {
				parts = append(parts, pc.span)
			}
			prevMatch = pc.match
		}
		for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
			parts[i], parts[j] = parts[j], parts[i]
		}
	case splitContiguous:
		prevMatch := false
		for _, pc := range ps {
			if pc.match == prevMatch && len(parts) > 0 {
				parts[len(parts)-1].end = pc.end
			} else {
				parts = append(parts, pc.span)
			}
			prevMatch = pc.match
		}
	}
	for _, sp := range parts {
		if sp.end > sp.start {
			out = append(out, sp)
		}
	}
	return out, nil
}

// buildPattern reads {"String": s} or {"Regex": r}.
func buildPattern(o *jsonObject, key string) (*pattern, error) {
	po, err := o.reqObject(key)
	if err != nil {
		return nil, err
	}
	if s, ok, err := po.optString("String"); err != nil || ok {
		return newLiteralPattern(s), err
	}
	if r, ok, err := po.optString("Regex"); err != nil {
		return nil, err
	} else if ok {
		p, err := newRegexPattern(r)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", po.at("Regex"), err)
		}
		return p, nil
	}
	return nil, fmt.Errorf("%s: expected {\"String\": ...} or {\"Regex\": ...}", po.path)
}

// buildReplace reads the pattern and content of a Replace normalizer or
// decoder.
func buildReplace(o *jsonObject) (*pattern, string, error) {
	p, err := buildPattern(o, "pattern")
	if err != nil {
		return nil, "", err
	}
	content, err := o.reqString("content")
	return p, content, err
}
