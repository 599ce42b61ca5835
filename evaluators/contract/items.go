package contract

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// MaxLineBytes bounds one JSONL line on either side of the contract. Long
// answers are a few kilobytes; a line past this is a broken file, not data.
const MaxLineBytes = 4 << 20

// itemWire mirrors Item with pointers so that a missing field can be told
// from an empty one.
type itemWire struct {
	ID         *string         `json:"id"`
	Prediction *string         `json:"prediction"`
	References *[]string       `json:"references"`
	Meta       json.RawMessage `json:"meta"`
}

// ReadItems parses a predictions file: one JSON object per line with "id"
// (non-empty, unique), "prediction" (string), "references" (array of
// strings) and optionally "meta" (object). Other fields are ignored, so a
// harness output row can be scored as it is. Blank lines are skipped. name
// labels errors, which carry the 1-based line number.
func ReadItems(r io.Reader, name string) ([]Item, error) {
	var items []Item
	seen := make(map[string]int)
	br := bufio.NewReader(r)
	for lineNo := 1; ; lineNo++ {
		line, err := readLine(br)
		if err == io.EOF {
			return items, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, lineNo, err)
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		it, err := parseItem(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, lineNo, err)
		}
		if first, dup := seen[it.ID]; dup {
			return nil, fmt.Errorf("%s:%d: id %q already used on line %d", name, lineNo, it.ID, first)
		}
		seen[it.ID] = lineNo
		items = append(items, it)
	}
}

// readLine returns the next line without its terminator, or io.EOF when
// the input is exhausted. Lines over MaxLineBytes are an error.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > MaxLineBytes {
			return nil, fmt.Errorf("line longer than %d bytes", MaxLineBytes)
		}
		switch {
		case err == nil:
			return bytes.TrimRight(line, "\r\n"), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF && len(line) > 0:
			return line, nil
		default:
			return nil, err
		}
	}
}

func parseItem(line []byte) (Item, error) {
	var w itemWire
	dec := json.NewDecoder(bytes.NewReader(line))
	if err := dec.Decode(&w); err != nil {
		return Item{}, fmt.Errorf("not a JSON object with string fields id/prediction and a string array references: %w", err)
	}
	if dec.More() {
		return Item{}, errors.New("trailing data after the JSON object")
	}
	switch {
	case w.ID == nil:
		return Item{}, errors.New(`missing "id"`)
	case *w.ID == "":
		return Item{}, errors.New(`"id" is empty`)
	case w.Prediction == nil:
		return Item{}, fmt.Errorf("item %q: missing \"prediction\"", *w.ID)
	case w.References == nil:
		return Item{}, fmt.Errorf("item %q: missing \"references\" (use [] for none)", *w.ID)
	}
	meta := bytes.TrimSpace(w.Meta)
	if len(meta) > 0 && !bytes.Equal(meta, []byte("null")) {
		if meta[0] != '{' {
			return Item{}, fmt.Errorf("item %q: \"meta\" must be an object", *w.ID)
		}
	} else {
		meta = nil
	}
	return Item{ID: *w.ID, Prediction: *w.Prediction, References: *w.References, Meta: meta}, nil
}

// WriteItems writes items as JSONL, the module's stdin.
func WriteItems(w io.Writer, items []Item) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for i := range items {
		it := items[i]
		if it.References == nil {
			it.References = []string{}
		}
		if err := enc.Encode(it); err != nil {
			return fmt.Errorf("item %q: %w", it.ID, err)
		}
	}
	return nil
}
