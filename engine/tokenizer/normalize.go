package tokenizer

import (
	"strings"
	"unicode"
)

// normalizer rewrites a piece of input text before pre-tokenization. Only the
// resulting text matters here: ids do not depend on offsets.
type normalizer interface {
	normalize(s string) (string, error)
}

// prependNormalizer adds a prefix to every non-empty piece.
type prependNormalizer struct{ prefix string }

func (n prependNormalizer) normalize(s string) (string, error) {
	if s == "" {
		return s, nil
	}
	return n.prefix + s, nil
}

type replaceNormalizer struct {
	pattern *pattern
	content string
}

func (n replaceNormalizer) normalize(s string) (string, error) {
	return n.pattern.replaceAll(s, n.content)
}

// lowercaseNormalizer lowercases character by character with Unicode's full
// (unconditional) mappings, as Rust's char::to_lowercase does.
type lowercaseNormalizer struct{}

func (lowercaseNormalizer) normalize(s string) (string, error) {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if r == 'İ' {
			// The one unconditional multi-character lowercase mapping.
			b.WriteString("i\u0307")
			continue
		}
		b.WriteRune(unicode16Lower.ToLower(r))
	}
	return b.String(), nil
}

// stripNormalizer removes leading and/or trailing whitespace.
type stripNormalizer struct{ left, right bool }

func (n stripNormalizer) normalize(s string) (string, error) {
	isSpace := func(r rune) bool { return unicode.Is(unicode.White_Space, r) }
	if n.left {
		s = strings.TrimLeftFunc(s, isSpace)
	}
	if n.right {
		s = strings.TrimRightFunc(s, isSpace)
	}
	return s, nil
}

type sequenceNormalizer []normalizer

func (seq sequenceNormalizer) normalize(s string) (string, error) {
	var err error
	for _, n := range seq {
		if s, err = n.normalize(s); err != nil {
			return "", err
		}
	}
	return s, nil
}

// buildNormalizer reads a normalizer section.
func buildNormalizer(o *jsonObject) (normalizer, error) {
	typ, err := o.typeName()
	if err != nil {
		return nil, err
	}
	switch typ {
	case "NFC":
		return nfc, nil
	case "NFD":
		return nfd, nil
	case "NFKC":
		return nfkc, nil
	case "NFKD":
		return nfkd, nil
	case "Lowercase":
		return lowercaseNormalizer{}, nil
	case "Prepend":
		prefix, err := o.reqString("prepend")
		return prependNormalizer{prefix}, err
	case "Replace":
		p, content, err := buildReplace(o)
		return replaceNormalizer{p, content}, err
	case "Strip":
		left, err := o.boolOr("strip_left", true)
		if err != nil {
			return nil, err
		}
		right, err := o.boolOr("strip_right", true)
		return stripNormalizer{left, right}, err
	case "Sequence":
		list, err := o.objectList("normalizers")
		if err != nil {
			return nil, err
		}
		seq := make(sequenceNormalizer, len(list))
		for i, item := range list {
			if seq[i], err = buildNormalizer(item); err != nil {
				return nil, err
			}
		}
		return seq, nil
	}
	return nil, o.unsupported(typ)
}
