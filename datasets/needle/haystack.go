package needle

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Haystack is an endless stream of sentences the needles are hidden in.
type Haystack interface {
	// Sentence returns sentence i (i >= 0).
	Sentence(i int) string
	// Name describes the haystack for run records.
	Name() string
}

// TextHaystack is a haystack of the sentences of a user's text, repeated
// from the start as often as a long context needs.
type TextHaystack struct {
	name      string
	sentences []string
}

// NewTextHaystack splits text into sentences.
func NewTextHaystack(name, text string) (*TextHaystack, error) {
	if !utf8.ValidString(text) {
		return nil, fmt.Errorf("haystack %s: not valid UTF-8", name)
	}
	s := SplitSentences(text)
	if len(s) == 0 {
		return nil, fmt.Errorf("haystack %s: no text", name)
	}
	return &TextHaystack{name: name, sentences: s}, nil
}

// LoadHaystackDir reads the *.txt files of dir in name order.
func LoadHaystackDir(dir string) (*TextHaystack, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil {
		return nil, fmt.Errorf("haystack folder %s: %w", dir, err)
	}
	if len(paths) == 0 {
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("haystack folder: %w", err)
		}
		return nil, fmt.Errorf("haystack folder %s: no .txt files", dir)
	}
	slices.Sort(paths)
	var all []string
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("haystack: %w", err)
		}
		if !utf8.Valid(data) {
			return nil, fmt.Errorf("haystack %s: not valid UTF-8", p)
		}
		all = append(all, SplitSentences(string(data))...)
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("haystack folder %s: the .txt files hold no text", dir)
	}
	return &TextHaystack{name: fmt.Sprintf("%s (%d files)", dir, len(paths)), sentences: all}, nil
}

// Name describes the haystack.
func (h *TextHaystack) Name() string { return h.name }

// Len returns the number of distinct sentences.
func (h *TextHaystack) Len() int { return len(h.sentences) }

// Sentence returns sentence i, cycling through the text.
func (h *TextHaystack) Sentence(i int) string { return h.sentences[i%len(h.sentences)] }

// SplitSentences cuts text at sentence ends: '.', '!' or '?' (with any
// closing quotes or brackets after it) followed by white space, and at
// blank lines. White space inside a sentence collapses to single spaces, as
// the haystack joins sentences with one space. Abbreviations may be split
// too; for a haystack that only moves where a needle may land.
func SplitSentences(text string) []string {
	var out []string
	var cur strings.Builder
	emit := func() {
		if s := strings.TrimSpace(cur.String()); s != "" {
			out = append(out, s)
		}
		cur.Reset()
	}
	runes := []rune(text)
	for i := 0; i < len(runes); i++ {
		r := runes[i]
		if unicode.IsSpace(r) {
			// A blank line ends a sentence (headings, list items).
			newlines := 0
			j := i
			for j < len(runes) && unicode.IsSpace(runes[j]) {
				if runes[j] == '\n' {
					newlines++
				}
				j++
			}
			if newlines >= 2 {
				emit()
			} else if cur.Len() > 0 {
				cur.WriteByte(' ')
			}
			i = j - 1
			continue
		}
		cur.WriteRune(r)
		if r != '.' && r != '!' && r != '?' {
			continue
		}
		j := i + 1
		for j < len(runes) && strings.ContainsRune(`"')]»”’`, runes[j]) {
			cur.WriteRune(runes[j])
			j++
		}
		i = j - 1
		if j == len(runes) || unicode.IsSpace(runes[j]) {
			emit()
		}
	}
	emit()
	return out
}
