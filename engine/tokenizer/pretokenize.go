package tokenizer

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// word is a pre-token: a piece of normalized text that the model encodes on
// its own. first records whether it starts at the beginning of the input,
// which Metaspace's "first" prepend scheme needs.
type word struct {
	text  string
	first bool
}

// preTokenizer cuts normalized text into words.
type preTokenizer interface {
	preTokenize(words []word) ([]word, error)
}

// splitEach rewrites every word with fn, which returns the new text and the
// parts of it that become words. A part starts the input when its word did
// and it begins at offset 0.
func splitEach(words []word, fn func(w word, out []span) (string, []span, error)) ([]word, error) {
	out := make([]word, 0, len(words))
	var parts []span
	for _, w := range words {
		var s string
		var err error
		s, parts, err = fn(w, parts[:0])
		if err != nil {
			return nil, err
		}
		for _, sp := range parts {
			if sp.end > sp.start {
				out = append(out, word{text: s[sp.start:sp.end], first: w.first && sp.start == 0})
			}
		}
	}
	return out, nil
}

type splitPreTokenizer struct {
	pattern  *pattern
	behavior splitBehavior
	invert   bool
}

func (p splitPreTokenizer) preTokenize(words []word) ([]word, error) {
	return splitEach(words, func(w word, out []span) (string, []span, error) {
		parts, err := p.pattern.split(w.text, p.behavior, p.invert, out)
		return w.text, parts, err
	})
}

// gpt2Pattern is the split regex of GPT-2 that ByteLevel uses when use_regex
// is set.
const gpt2Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

// byteLevelPreTokenizer maps every byte of the text to a printable
// character (GPT-2's bytes_to_unicode), optionally after a prefix space and a
// split with the GPT-2 regex.
type byteLevelPreTokenizer struct {
	addPrefixSpace bool
	regex          *pattern // nil unless use_regex
}

func (p byteLevelPreTokenizer) preTokenize(words []word) ([]word, error) {
	if p.addPrefixSpace || p.regex != nil {
		var err error
		words, err = splitEach(words, func(w word, out []span) (string, []span, error) {
			s := w.text
			if p.addPrefixSpace && !strings.HasPrefix(s, " ") {
				s = " " + s
			}
			if p.regex == nil {
				return s, append(out, span{0, len(s)}), nil
			}
			parts, err := p.regex.split(s, splitIsolated, false, out)
			return s, parts, err
		})
		if err != nil {
			return nil, err
		}
	}
	for i := range words {
		words[i].text = byteLevelEncode(words[i].text)
	}
	return words, nil
}

// prependScheme says when Metaspace puts a replacement character in front
// of a word.
type prependScheme int

const (
	prependAlways prependScheme = iota
	prependFirst
	prependNever
)

var prependSchemes = map[string]prependScheme{
	"always": prependAlways,
	"first":  prependFirst,
	"never":  prependNever,
}

// metaspacePreTokenizer replaces spaces with a visible character (▁ for
// SentencePiece models) and splits before each of them.
type metaspacePreTokenizer struct {
	replacement string
	scheme      prependScheme
	split       bool
	splitter    *pattern
}

func (p metaspacePreTokenizer) preTokenize(words []word) ([]word, error) {
	return splitEach(words, func(w word, out []span) (string, []span, error) {
		s := strings.ReplaceAll(w.text, " ", p.replacement)
		if !strings.HasPrefix(s, p.replacement) {
			if p.scheme == prependAlways || (p.scheme == prependFirst && w.first) {
				s = p.replacement + s
			}
		}
		if !p.split {
			return s, append(out, span{0, len(s)}), nil
		}
		parts, err := p.splitter.split(s, splitMergedWithNext, false, out)
		return s, parts, err
	})
}

type sequencePreTokenizer []preTokenizer

func (seq sequencePreTokenizer) preTokenize(words []word) ([]word, error) {
	var err error
	for _, p := range seq {
		if words, err = p.preTokenize(words); err != nil {
			return nil, err
		}
	}
	return words, nil
}

// buildPreTokenizer reads a pre_tokenizer section.
func buildPreTokenizer(o *jsonObject) (preTokenizer, error) {
	typ, err := o.typeName()
	if err != nil {
		return nil, err
	}
	switch typ {
	case "Split":
		p, err := buildPattern(o, "pattern")
		if err != nil {
			return nil, err
		}
		name, err := o.reqString("behavior")
		if err != nil {
			return nil, err
		}
		behavior, ok := splitBehaviors[name]
		if !ok {
			return nil, fmt.Errorf("%s: unsupported %q", o.at("behavior"), name)
		}
		invert, err := o.boolOr("invert", false)
		return splitPreTokenizer{pattern: p, behavior: behavior, invert: invert}, err
	case "ByteLevel":
		prefix, err := o.boolOr("add_prefix_space", true)
		if err != nil {
			return nil, err
		}
		useRegex, err := o.boolOr("use_regex", true)
		if err != nil {
			return nil, err
		}
		p := byteLevelPreTokenizer{addPrefixSpace: prefix}
		if useRegex {
			if p.regex, err = newRegexPattern(gpt2Pattern); err != nil {
				return nil, err
			}
		}
		return p, nil
	case "Metaspace":
		replacement, scheme, err := metaspaceOptions(o)
		if err != nil {
			return nil, err
		}
		split, err := o.boolOr("split", true)
		return metaspacePreTokenizer{
			replacement: string(replacement),
			scheme:      scheme,
			split:       split,
			splitter:    newLiteralPattern(string(replacement)),
		}, err
	case "Sequence":
		list, err := o.objectList("pretokenizers")
		if err != nil {
			return nil, err
		}
		seq := make(sequencePreTokenizer, len(list))
		for i, item := range list {
			if seq[i], err = buildPreTokenizer(item); err != nil {
				return nil, err
			}
		}
		return seq, nil
	}
	return nil, o.unsupported(typ)
}

// metaspaceOptions reads the replacement character and the prepend scheme,
// including the older add_prefix_space form (false means never).
func metaspaceOptions(o *jsonObject) (rune, prependScheme, error) {
	replacement, err := singleChar(o, "replacement")
	if err != nil {
		return 0, 0, err
	}
	scheme := prependAlways
	if name, ok, err := o.optString("prepend_scheme"); err != nil {
		return 0, 0, err
	} else if ok {
		if scheme, ok = prependSchemes[name]; !ok {
			return 0, 0, fmt.Errorf("%s: unsupported %q", o.at("prepend_scheme"), name)
		}
	}
	if o.get("add_prefix_space") != nil {
		add, err := o.boolOr("add_prefix_space", true)
		if err != nil {
			return 0, 0, err
		}
		if !add {
			scheme = prependNever
		}
	}
	return replacement, scheme, nil
}

// singleChar reads a string field that must hold exactly one character.
func singleChar(o *jsonObject, key string) (rune, error) {
	s, err := o.reqString(key)
	if err != nil {
		return 0, err
	}
	r, size := utf8.DecodeRuneInString(s)
	if size == 0 || size != len(s) || r == utf8.RuneError {
		return 0, fmt.Errorf("%s: expected a single character, got %q", o.at(key), s)
	}
	return r, nil
}
