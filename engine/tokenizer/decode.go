package tokenizer

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// decoder turns token strings back into text pieces (HF's decode_chain);
// the pieces are concatenated at the end.
type decoder interface {
	decodeChain(tokens []string) ([]string, error)
}

// byteLevelDecoder undoes the byte-level spelling of the whole sequence at
// once, so characters split across tokens come back whole.
type byteLevelDecoder struct{}

func (byteLevelDecoder) decodeChain(tokens []string) ([]string, error) {
	var buf []byte
	for _, t := range tokens {
		buf = byteLevelDecode(buf, t)
	}
	return []string{lossyUTF8(buf)}, nil
}

// byteFallbackDecoder turns runs of <0xNN> tokens into the text they spell;
// a run that is not valid UTF-8 becomes one U+FFFD per byte.
type byteFallbackDecoder struct{}

func (byteFallbackDecoder) decodeChain(tokens []string) ([]string, error) {
	out := make([]string, 0, len(tokens))
	var pending []byte
	flush := func() {
		if len(pending) == 0 {
			return
		}
		if utf8.Valid(pending) {
			out = append(out, string(pending))
		} else {
			for range pending {
				out = append(out, "\uFFFD")
			}
		}
		pending = pending[:0]
	}
	for _, t := range tokens {
		if b, ok := parseByteToken(t); ok {
			pending = append(pending, b)
			continue
		}
		flush()
		out = append(out, t)
	}
	flush()
	return out, nil
}

// parseByteToken reads a byte-fallback token "<0xNN>". Like Rust's
// u8::from_str_radix, it takes either case and an optional leading '+'.
func parseByteToken(t string) (byte, bool) {
	if len(t) != 6 || !strings.HasPrefix(t, "<0x") || t[5] != '>' {
		return 0, false
	}
	digits := t[3:5]
	if digits[0] == '+' {
		digits = digits[1:]
	}
	v, err := strconv.ParseUint(digits, 16, 8)
	if err != nil {
		return 0, false
	}
	return byte(v), true
}

// fuseDecoder joins all tokens into one.
type fuseDecoder struct{}

func (fuseDecoder) decodeChain(tokens []string) ([]string, error) {
	return []string{strings.Join(tokens, "")}, nil
}

// stripDecoder removes up to start copies of content from the front of each
// token and up to stop copies from its end.
type stripDecoder struct {
	content     rune
	start, stop int
}

func (d stripDecoder) decodeChain(tokens []string) ([]string, error) {
	out := make([]string, len(tokens))
	for i, t := range tokens {
		chars := []rune(t)
		lo := 0
		for lo < d.start && lo < len(chars) && chars[lo] == d.content {
			lo++
		}
		hi := len(chars)
		for n := 0; n < d.stop && hi > 0 && chars[hi-1] == d.content; n++ {
			hi--
		}
		if lo > hi {
			lo = hi
		}
		out[i] = string(chars[lo:hi])
	}
	return out, nil
}

type replaceDecoder struct {
	pattern *pattern
	content string
}

func (d replaceDecoder) decodeChain(tokens []string) ([]string, error) {
	out := make([]string, len(tokens))
	for i, t := range tokens {
		s, err := d.pattern.replaceAll(t, d.content)
		if err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}

// metaspaceDecoder turns the replacement character back into spaces; in
// the first token it is dropped, since the pre-tokenizer put it there.
type metaspaceDecoder struct {
	replacement rune
	scheme      prependScheme
}

func (d metaspaceDecoder) decodeChain(tokens []string) ([]string, error) {
	out := make([]string, len(tokens))
	for i, t := range tokens {
		var b strings.Builder
		for _, r := range t {
			switch {
			case r != d.replacement:
				b.WriteRune(r)
			case i == 0 && d.scheme != prependNever:
			default:
				b.WriteByte(' ')
			}
		}
		out[i] = b.String()
	}
	return out, nil
}

type sequenceDecoder []decoder

func (seq sequenceDecoder) decodeChain(tokens []string) ([]string, error) {
	var err error
	for _, d := range seq {
		if tokens, err = d.decodeChain(tokens); err != nil {
			return nil, err
		}
	}
	return tokens, nil
}

// lossyUTF8 converts b to a string like Rust's String::from_utf8_lossy: each
// maximal invalid subsequence becomes one U+FFFD.
func lossyUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	sb.Grow(len(b) + 8)
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r != utf8.RuneError || size > 1 {
			sb.Write(b[i : i+size])
			i += size
			continue
		}
		sb.WriteString("\uFFFD")
		i += invalidPrefixLen(b[i:])
	}
	return sb.String()
}

// invalidPrefixLen is the length of the maximal subpart of an ill-formed
// UTF-8 sequence at the start of b: a valid lead byte and the continuation
// bytes that could still have completed it.
func invalidPrefixLen(b []byte) int {
	c := b[0]
	var width int
	lo, hi := byte(0x80), byte(0xBF)
	switch {
	case c >= 0xC2 && c <= 0xDF:
		width = 2
	case c >= 0xE0 && c <= 0xEF:
		width = 3
		if c == 0xE0 {
			lo = 0xA0
		} else if c == 0xED {
			hi = 0x9F
		}
	case c >= 0xF0 && c <= 0xF4:
		width = 4
		if c == 0xF0 {
			lo = 0x90
		} else if c == 0xF4 {
			hi = 0x8F
		}
	default:
		return 1
	}
	n := 1
	if n < len(b) && b[n] >= lo && b[n] <= hi {
		n++
		for n < width && n < len(b) && b[n] >= 0x80 && b[n] <= 0xBF {
			n++
		}
	}
	return n
}

// buildDecoder reads a decoder section.
func buildDecoder(o *jsonObject) (decoder, error) {
	typ, err := o.typeName()
	if err != nil {
		return nil, err
	}
	switch typ {
	case "ByteLevel":
		return byteLevelDecoder{}, nil
	case "ByteFallback":
		return byteFallbackDecoder{}, nil
	case "Fuse":
		return fuseDecoder{}, nil
	case "Replace":
		p, content, err := buildReplace(o)
		return replaceDecoder{p, content}, err
	case "Strip":
		content, err := singleChar(o, "content")
		if err != nil {
			return nil, err
		}
		start, err := o.intOr("start", 0)
		if err != nil {
			return nil, err
		}
		stop, err := o.intOr("stop", 0)
		if err != nil {
			return nil, err
		}
		if start < 0 || stop < 0 {
			return nil, fmt.Errorf("%s: start and stop must not be negative", o.path)
		}
		return stripDecoder{content: content, start: start, stop: stop}, nil
	case "Metaspace":
		replacement, scheme, err := metaspaceOptions(o)
		return metaspaceDecoder{replacement: replacement, scheme: scheme}, err
	case "Sequence":
		list, err := o.objectList("decoders")
		if err != nil {
			return nil, err
		}
		seq := make(sequenceDecoder, len(list))
		for i, item := range list {
			if seq[i], err = buildDecoder(item); err != nil {
				return nil, err
			}
		}
		return seq, nil
	}
	return nil, o.unsupported(typ)
}
