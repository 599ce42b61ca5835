// Package testtok provides tokenizers for the datasets tests: a small
// reversible word tokenizer for logic tests, and the real Llama 3, Qwen3 and
// Llama 2 tokenizers when tools/fetch-tokenizers.sh has fetched them.
package testtok

import (
	"fmt"
	"strings"
	"sync"
	"unicode"
)

// BOS is the id Words gives its begin-of-sequence token.
const BOS = 0

// Words is a reversible tokenizer: each token is a run of whitespace plus
// the run of non-space characters after it, so decoding concatenates
// tokens and encoding concatenated sentences is exactly additive. Ids are
// assigned on first sight.
type Words struct {
	mu    sync.Mutex
	ids   map[string]int
	words []string
}

// NewWords returns an empty Words tokenizer.
func NewWords() *Words {
	return &Words{ids: map[string]int{"<s>": BOS}, words: []string{"<s>"}}
}

// Encode implements the datasets tokenizer interface.
func (w *Words) Encode(text string, addSpecial bool) ([]int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []int
	if addSpecial {
		out = append(out, BOS)
	}
	for _, tok := range Split(text) {
		id, ok := w.ids[tok]
		if !ok {
			id = len(w.words)
			w.ids[tok] = id
			w.words = append(w.words, tok)
		}
		out = append(out, id)
	}
	return out, nil
}

// Decode implements the datasets tokenizer interface.
func (w *Words) Decode(ids []int, skipSpecial bool) (string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b strings.Builder
	for _, id := range ids {
		if id < 0 || id >= len(w.words) {
			return "", fmt.Errorf("unknown token id %d", id)
		}
		if id == BOS {
			if !skipSpecial {
				b.WriteString("<s>")
			}
			continue
		}
		b.WriteString(w.words[id])
	}
	return b.String(), nil
}

// Split cuts text into Words tokens.
func Split(text string) []string {
	var out []string
	start := 0
	inWord := false
	for i, r := range text {
		space := unicode.IsSpace(r)
		if inWord && space {
			out = append(out, text[start:i])
			start = i
		}
		inWord = !space
	}
	if start < len(text) {
		out = append(out, text[start:])
	}
	return out
}

// Prefixed is Words with dummy-prefix tokens, a caricature of
// SentencePiece's: text that does not start with white space gets one
// extra token, plus one for each capital letter of its first word. Sentences
// counted alone then cost more than inside a text, by an amount that varies
// from sentence to sentence, so estimates built from per-sentence counts
// drift, as they can with real tokenizers, and only measuring finds the
// true length and position.
type Prefixed struct {
	*Words
}

// PrefixID is the id of Prefixed's dummy-prefix tokens; they decode to "".
const PrefixID = -2

// NewPrefixed returns an empty Prefixed tokenizer.
func NewPrefixed() *Prefixed { return &Prefixed{NewWords()} }

// Encode implements the datasets tokenizer interface.
func (p *Prefixed) Encode(text string, addSpecial bool) ([]int, error) {
	ids, err := p.Words.Encode(text, addSpecial)
	if err != nil || text == "" {
		return ids, err
	}
	if r := []rune(text)[0]; unicode.IsSpace(r) {
		return ids, nil
	}
	extra := 1
	for _, r := range strings.FieldsFunc(text, unicode.IsSpace)[0] {
		if unicode.IsUpper(r) {
			extra++
		}
	}
	at := 0
	if addSpecial {
		at = 1
	}
	out := append([]int{}, ids[:at]...)
	for range extra {
		out = append(out, PrefixID)
	}
	return append(out, ids[at:]...), nil
}

// Decode implements the datasets tokenizer interface.
func (p *Prefixed) Decode(ids []int, skipSpecial bool) (string, error) {
	kept := make([]int, 0, len(ids))
	for _, id := range ids {
		if id != PrefixID {
			kept = append(kept, id)
		}
	}
	return p.Words.Decode(kept, skipSpecial)
}
