package contract

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// DecodeItem parses one stdin line into an Item without reflection. Inside a
// WASM module encoding/json costs tens of microseconds per item, more than
// the metrics themselves; this hand-written decoder keeps the module fast.
// It accepts exactly what encoding/json accepts when decoding into a
// map[string]json.RawMessage and then each known field (keys matched
// exactly, the last duplicate winning, unknown keys skipped, null leaving a
// field empty, invalid UTF-8 and lone surrogates becoming U+FFFD); a fuzz
// test holds it to that.
func DecodeItem(line []byte) (Item, error) {
	var it Item
	err := decodeTopObject(line, func(d *decoder, key string) error {
		switch key {
		case "id":
			return d.stringOrNull(&it.ID)
		case "prediction":
			return d.stringOrNull(&it.Prediction)
		case "references":
			var err error
			it.References, err = d.stringArray()
			return err
		case "meta":
			start := d.off
			if err := d.skipValue(1); err != nil {
				return err
			}
			it.Meta = append([]byte(nil), d.b[start:d.off]...)
			return nil
		}
		return d.skipValue(1)
	})
	if err != nil {
		return Item{}, err
	}
	return it, nil
}

// decodeTopObject walks line as one JSON object and nothing after it,
// calling field for each key with the decoder placed at the key's value;
// field must consume the value.
func decodeTopObject(line []byte, field func(d *decoder, key string) error) error {
	d := decoder{b: line}
	d.space()
	if !d.eat('{') {
		return d.errorf("expected '{'")
	}
	d.space()
	if !d.eat('}') {
		for {
			d.space()
			key, err := d.string()
			if err != nil {
				return err
			}
			d.space()
			if !d.eat(':') {
				return d.errorf("expected ':' after object key")
			}
			d.space()
			if err := field(&d, key); err != nil {
				return err
			}
			d.space()
			if d.eat(',') {
				continue
			}
			if d.eat('}') {
				break
			}
			return d.errorf("expected ',' or '}' in object")
		}
	}
	d.space()
	if d.off != len(d.b) {
		return d.errorf("trailing data after the JSON object")
	}
	return nil
}

type decoder struct {
	b   []byte
	off int
}

func (d *decoder) errorf(format string, args ...any) error {
	return fmt.Errorf("offset %d: %s", d.off, fmt.Sprintf(format, args...))
}

func (d *decoder) space() {
	for d.off < len(d.b) {
		switch d.b[d.off] {
		case ' ', '\t', '\n', '\r':
			d.off++
		default:
			return
		}
	}
}

func (d *decoder) eat(c byte) bool {
	if d.off < len(d.b) && d.b[d.off] == c {
		d.off++
		return true
	}
	return false
}

func (d *decoder) literal(word string) bool {
	if len(d.b)-d.off >= len(word) && string(d.b[d.off:d.off+len(word)]) == word {
		d.off += len(word)
		return true
	}
	return false
}

func (d *decoder) stringOrNull(dst *string) error {
	if d.literal("null") {
		return nil
	}
	s, err := d.string()
	if err != nil {
		return err
	}
	*dst = s
	return nil
}

func (d *decoder) stringArray() ([]string, error) {
	if d.literal("null") {
		return nil, nil
	}
	if !d.eat('[') {
		return nil, d.errorf("expected an array of strings")
	}
	out := []string{}
	d.space()
	if d.eat(']') {
		return out, nil
	}
	for {
		d.space()
		var s string
		if err := d.stringOrNull(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
		d.space()
		if d.eat(',') {
			continue
		}
		if d.eat(']') {
			return out, nil
		}
		return nil, d.errorf("expected ',' or ']' in array")
	}
}

// string decodes a JSON string at the current offset.
func (d *decoder) string() (string, error) {
	if !d.eat('"') {
		return "", d.errorf("expected a string")
	}
	start := d.off
	// Fast path: no escapes and plain ASCII, with the buffer and offset in
	// locals (Go's WASM code reloads struct fields on every use).
	b, i := d.b, d.off
	for i+8 <= len(b) && !specialByte(binary.LittleEndian.Uint64(b[i:])) {
		i += 8
	}
	for i < len(b) {
		c := b[i]
		if c == '"' {
			d.off = i + 1
			return string(b[start:i]), nil
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			break
		}
		i++
	}
	d.off = i
	buf := append([]byte(nil), d.b[start:d.off]...)
	for d.off < len(d.b) {
		c := d.b[d.off]
		switch {
		case c == '"':
			d.off++
			return string(buf), nil
		case c < 0x20:
			return "", d.errorf("control character in string")
		case c == '\\':
			d.off++
			if d.off >= len(d.b) {
				return "", d.errorf("unterminated escape")
			}
			e := d.b[d.off]
			d.off++
			switch e {
			case '"', '\\', '/':
				buf = append(buf, e)
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'u':
				r, ok := d.hex4()
				if !ok {
					return "", d.errorf("bad \\u escape")
				}
				if utf16.IsSurrogate(r) {
					// A high surrogate followed by a low one is one rune;
					// anything else is U+FFFD, as in encoding/json.
					save := d.off
					if d.literal(`\u`) {
						if r2, ok := d.hex4(); ok {
							if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
								buf = utf8.AppendRune(buf, dec)
								continue
							}
						}
					}
					d.off = save
					r = utf8.RuneError
				}
				buf = utf8.AppendRune(buf, r)
			default:
				return "", d.errorf("bad escape \\%c", e)
			}
		case c < utf8.RuneSelf:
			buf = append(buf, c)
			d.off++
		default:
			r, size := utf8.DecodeRune(d.b[d.off:])
			if r == utf8.RuneError && size == 1 {
				buf = utf8.AppendRune(buf, utf8.RuneError)
			} else {
				buf = append(buf, d.b[d.off:d.off+size]...)
			}
			d.off += size
		}
	}
	return "", d.errorf("unterminated string")
}

// specialByte reports whether any of the 8 bytes in x ends the string fast
// path: a quote, a backslash, a control character or a non-ASCII byte.
// Checking a word at a time matters inside WASM, where Go pays for every
// loop iteration.
func specialByte(x uint64) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	quote, backslash := x^(0x22*lo), x^(0x5c*lo)
	hasZero := func(v uint64) uint64 { return (v - lo) &^ v & hi }
	control := (x - 0x20*lo) &^ x & hi
	return hasZero(quote)|hasZero(backslash)|control|x&hi != 0
}

func (d *decoder) hex4() (rune, bool) {
	if len(d.b)-d.off < 4 {
		return 0, false
	}
	var r rune
	for _, c := range d.b[d.off : d.off+4] {
		var v byte
		switch {
		case '0' <= c && c <= '9':
			v = c - '0'
		case 'a' <= c && c <= 'f':
			v = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			v = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(v)
	}
	d.off += 4
	return r, true
}

// maxDepth is encoding/json's nesting limit: at most this many arrays and
// objects open at once, the item's own object included.
const maxDepth = 10000

// skipValue checks and steps over one JSON value of any kind; depth is the
// number of arrays and objects around it.
func (d *decoder) skipValue(depth int) error {
	if d.off >= len(d.b) {
		return d.errorf("unexpected end of input")
	}
	switch c := d.b[d.off]; {
	case c == '"':
		_, err := d.string()
		return err
	case c == '{':
		if depth+1 > maxDepth {
			return d.errorf("nesting deeper than %d", maxDepth)
		}
		d.off++
		d.space()
		if d.eat('}') {
			return nil
		}
		for {
			d.space()
			if _, err := d.string(); err != nil {
				return err
			}
			d.space()
			if !d.eat(':') {
				return d.errorf("expected ':' after object key")
			}
			d.space()
			if err := d.skipValue(depth + 1); err != nil {
				return err
			}
			d.space()
			if d.eat(',') {
				continue
			}
			if d.eat('}') {
				return nil
			}
			return d.errorf("expected ',' or '}' in object")
		}
	case c == '[':
		if depth+1 > maxDepth {
			return d.errorf("nesting deeper than %d", maxDepth)
		}
		d.off++
		d.space()
		if d.eat(']') {
			return nil
		}
		for {
			d.space()
			if err := d.skipValue(depth + 1); err != nil {
				return err
			}
			d.space()
			if d.eat(',') {
				continue
			}
			if d.eat(']') {
				return nil
			}
			return d.errorf("expected ',' or ']' in array")
		}
	case c == '-' || ('0' <= c && c <= '9'):
		return d.number()
	case d.literal("true"), d.literal("false"), d.literal("null"):
		return nil
	default:
		return d.errorf("unexpected character %q", c)
	}
}

// number steps over a number in JSON's grammar.
func (d *decoder) number() error {
	d.eat('-')
	switch {
	case d.eat('0'):
	case d.off < len(d.b) && '1' <= d.b[d.off] && d.b[d.off] <= '9':
		d.digits()
	default:
		return d.errorf("bad number")
	}
	if d.eat('.') {
		if d.digits() == 0 {
			return d.errorf("bad number: no digits after '.'")
		}
	}
	if d.eat('e') || d.eat('E') {
		if !d.eat('+') {
			d.eat('-')
		}
		if d.digits() == 0 {
			return d.errorf("bad number: no digits in exponent")
		}
	}
	return nil
}

func (d *decoder) digits() int {
	n := 0
	for d.off < len(d.b) && '0' <= d.b[d.off] && d.b[d.off] <= '9' {
		d.off++
		n++
	}
	return n
}

// decodeScoreLine parses a score line strictly: an object with only "id"
// (a string) and "scores" (an object of numbers), without reflection, for
// the host, which reads one per item. It accepts a subset of what
// encoding/json accepts into a ScoreLine (it has no case-insensitive keys),
// with the same result; a fuzz test holds it to that.
func decodeScoreLine(line []byte) (ScoreLine, error) {
	var sl ScoreLine
	err := decodeTopObject(line, func(d *decoder, key string) error {
		switch key {
		case "id":
			return d.stringOrNull(&sl.ID)
		case "scores":
			return d.scores(&sl.Scores)
		}
		return d.errorf("unknown field %q", key)
	})
	if err != nil {
		return ScoreLine{}, err
	}
	return sl, nil
}

// scores decodes an object of numbers into *dst (null leaves it alone), as
// encoding/json does for a map: into the existing map, the last duplicate
// winning.
func (d *decoder) scores(dst *map[string]float64) error {
	if d.literal("null") {
		return nil
	}
	if !d.eat('{') {
		return d.errorf("\"scores\" must be an object of numbers")
	}
	if *dst == nil {
		*dst = make(map[string]float64)
	}
	d.space()
	if d.eat('}') {
		return nil
	}
	for {
		d.space()
		name, err := d.string()
		if err != nil {
			return err
		}
		d.space()
		if !d.eat(':') {
			return d.errorf("expected ':' after object key")
		}
		d.space()
		// A null score is refused, where encoding/json would store 0.
		start := d.off
		if err := d.number(); err != nil {
			return d.errorf("score %q is not a number", name)
		}
		v, err := strconv.ParseFloat(string(d.b[start:d.off]), 64)
		if err != nil {
			return d.errorf("score %q: %v", name, err)
		}
		(*dst)[name] = v
		d.space()
		if d.eat(',') {
			continue
		}
		if d.eat('}') {
			return nil
		}
		return d.errorf("expected ',' or '}' in scores")
	}
}

// AppendScoreLine appends {"id":...,"scores":{...}} and a newline, the
// values given in the order of names, without reflection (see DecodeItem).
// Every value must be finite.
func AppendScoreLine(buf []byte, id string, names []string, values []float64) ([]byte, error) {
	var e ScoreLineEncoder
	return e.Append(buf, id, names, values)
}

// ScoreLineEncoder is AppendScoreLine with a memory: scores repeat (small
// fractions, 0 and 1), and inside WASM formatting a float costs about a
// microsecond, so it keeps the text of values it has formatted. The zero
// value is ready to use; it is not safe for concurrent use.
type ScoreLineEncoder struct {
	floats map[uint64]string
}

// maxCachedFloats bounds a ScoreLineEncoder's memory.
const maxCachedFloats = 1 << 14

// Append is AppendScoreLine.
func (e *ScoreLineEncoder) Append(buf []byte, id string, names []string, values []float64) ([]byte, error) {
	if len(values) != len(names) {
		return nil, fmt.Errorf("%d scores given, %d declared", len(values), len(names))
	}
	buf = append(buf, `{"id":`...)
	buf = AppendJSONString(buf, id)
	buf = append(buf, `,"scores":{`...)
	for i, name := range names {
		v := values[i]
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("score %q is %v, not a finite number", name, v)
		}
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = AppendJSONString(buf, name)
		buf = append(buf, ':')
		buf = e.appendFloat(buf, v)
	}
	return append(buf, "}}\n"...), nil
}

func (e *ScoreLineEncoder) appendFloat(buf []byte, v float64) []byte {
	switch v {
	case 0:
		if !math.Signbit(v) {
			return append(buf, '0')
		}
	case 1:
		return append(buf, '1')
	}
	key := math.Float64bits(v)
	if text, ok := e.floats[key]; ok {
		return append(buf, text...)
	}
	start := len(buf)
	buf = strconv.AppendFloat(buf, v, 'g', -1, 64)
	if e.floats == nil {
		e.floats = make(map[uint64]string)
	}
	if len(e.floats) < maxCachedFloats {
		e.floats[key] = string(buf[start:])
	}
	return buf
}

// AppendJSONString appends s as a JSON string; invalid UTF-8 becomes U+FFFD.
func AppendJSONString(buf []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	buf = append(buf, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				buf = append(buf, '\\', c)
			case c == '\n':
				buf = append(buf, '\\', 'n')
			case c == '\r':
				buf = append(buf, '\\', 'r')
			case c == '\t':
				buf = append(buf, '\\', 't')
			case c < 0x20:
				buf = append(buf, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				buf = append(buf, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			buf = append(buf, `\ufffd`...)
		} else {
			buf = append(buf, s[i:i+size]...)
		}
		i += size
	}
	return append(buf, '"')
}
