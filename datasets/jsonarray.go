package datasets

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// readJSONArray calls fn with each element of a top-level JSON array, with
// the line the element starts on and its 1-based position. The file may
// be hundreds of megabytes, so elements are decoded one at a time; a
// syntax error ends the scan (nothing after it can be trusted) and names
// its line.
func readJSONArray(r io.Reader, path string, firstLine int, fn func(line, record int, data []byte) error) error {
	lt := &lineTracker{r: r, line: firstLine}
	dec := json.NewDecoder(lt)
	fail := func(err error) error {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return fmt.Errorf("%s:%d: invalid JSON: %v", path, lt.lineAt(syn.Offset, false), syn)
		}
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			// Everything was read: name the line the file ends on.
			return fmt.Errorf("%s:%d: JSON array ends early (truncated file?)", path, lt.lineAt(lt.end(), false))
		}
		return fmt.Errorf("%s: reading JSON: %w", path, err)
	}
	tok, err := dec.Token()
	if err != nil {
		return fail(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return fmt.Errorf("%s:%d: want a JSON array of questions", path, firstLine)
	}
	for n := 1; dec.More(); n++ {
		line := lt.lineAt(dec.InputOffset(), true)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fail(err)
		}
		if err := fn(line, n, raw); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing ']'
		return fail(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%s:%d: data after the end of the JSON array", path, lt.lineAt(dec.InputOffset(), true))
	}
	return nil
}

// lineTracker turns byte offsets of a stream into line numbers. It keeps
// the bytes read since the last asked offset, which is at most one record
// plus the decoder's read-ahead, since offsets are asked in increasing order.
type lineTracker struct {
	r       io.Reader
	pending []byte // bytes from offset base on
	base    int64
	line    int // line at base
}

func (t *lineTracker) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.pending = append(t.pending, p[:n]...)
	return n, err
}

// end is the offset just past the bytes read so far.
func (t *lineTracker) end() int64 { return t.base + int64(len(t.pending)) }

// lineAt returns the line of byte offset off; with skipSeparators it first
// moves past whitespace and commas, to the start of the next value.
// Offsets before the last one asked return that one's line.
func (t *lineTracker) lineAt(off int64, skipSeparators bool) int {
	k := int(min(max(off-t.base, 0), int64(len(t.pending))))
	t.line += bytes.Count(t.pending[:k], []byte{'\n'})
	if skipSeparators {
		for k < len(t.pending) && (isJSONSpace(t.pending[k]) || t.pending[k] == ',') {
			if t.pending[k] == '\n' {
				t.line++
			}
			k++
		}
	}
	t.base += int64(k)
	t.pending = append(t.pending[:0], t.pending[k:]...)
	return t.line
}
