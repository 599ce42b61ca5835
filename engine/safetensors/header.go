package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"unicode/utf8"

	"github.com/longctx/longctx/engine/weights"
)

const (
	// maxHeaderLen is the limit the reference implementation enforces; a larger
	// length field is far more likely corruption than a real header.
	maxHeaderLen = 100_000_000
	metadataKey  = "__metadata__"
)

type dtypeInfo struct {
	name weights.DType
	bits int
}

// dtypes lists every element type safetensors defines, in the order of the
// reference implementation's enum (increasing alignment). The writer lays out
// tensors in decreasing order of this rank, as the reference does, so that
// wider types come first and stay aligned.
var dtypes = []dtypeInfo{
	{"BOOL", 8}, {"F4", 4}, {"F6_E2M3", 6}, {"F6_E3M2", 6}, {"U8", 8}, {"I8", 8},
	{"F8_E5M2", 8}, {"F8_E4M3", 8}, {"F8_E8M0", 8}, {"I16", 16}, {"U16", 16},
	{weights.F16, 16}, {weights.BF16, 16}, {"I32", 32}, {"U32", 32},
	{weights.F32, 32}, {"C64", 64}, {"F64", 64}, {"I64", 64}, {"U64", 64},
}

// dtypeRank returns the position of d in dtypes, or -1 when d is not a
// safetensors type.
func dtypeRank(d weights.DType) int {
	return slices.IndexFunc(dtypes, func(e dtypeInfo) bool { return e.name == d })
}

// byteSize returns the number of bytes a tensor of the given type and shape
// occupies, refusing shapes whose size overflows an int.
func byteSize(d weights.DType, shape []int) (int, error) {
	rank := dtypeRank(d)
	if rank < 0 {
		return 0, fmt.Errorf("unknown dtype %q", d)
	}
	n := 1
	for _, dim := range shape {
		if dim < 0 {
			return 0, fmt.Errorf("negative dimension in shape %v", shape)
		}
		if dim != 0 && n > math.MaxInt/dim {
			return 0, fmt.Errorf("shape %v overflows", shape)
		}
		n *= dim
	}
	bits := dtypes[rank].bits
	if n > math.MaxInt/bits {
		return 0, fmt.Errorf("shape %v of %s overflows", shape, d)
	}
	if n*bits%8 != 0 {
		return 0, fmt.Errorf("shape %v of %s is not a whole number of bytes", shape, d)
	}
	return n * bits / 8, nil
}

// header is the validated content of a safetensors file.
type header struct {
	tensors  map[string]weights.Tensor // Data are sub-slices of the parsed buffer
	names    []string                  // sorted
	metadata map[string]string
}

// span is a tensor's byte range within the data section.
type span struct {
	name       string
	begin, end int
}

// parse validates a whole safetensors file held in buf and returns views into
// it. It enforces what the reference implementation does: the tensors'
// byte ranges must tile the data section exactly, with no hole and no overlap.
func parse(buf []byte) (header, error) {
	if len(buf) < 8 {
		return header{}, fmt.Errorf("file is %d bytes, shorter than the 8-byte header length", len(buf))
	}
	n := binary.LittleEndian.Uint64(buf)
	if n > maxHeaderLen {
		return header{}, fmt.Errorf("header length %d exceeds the %d-byte limit", n, maxHeaderLen)
	}
	if n > uint64(len(buf)-8) {
		return header{}, fmt.Errorf("header length %d exceeds the %d bytes after the length field (truncated file?)", n, len(buf)-8)
	}
	text, data := buf[8:8+n], buf[8+n:]
	if !utf8.Valid(text) {
		return header{}, errors.New("header is not valid UTF-8")
	}
	members, err := jsonObject(text)
	if err != nil {
		return header{}, fmt.Errorf("header: %w", err)
	}

	h := header{tensors: make(map[string]weights.Tensor, len(members))}
	spans := make([]span, 0, len(members))
	for _, m := range members {
		if m.key == metadataKey {
			if h.metadata, err = parseMetadata(m.value); err != nil {
				return header{}, fmt.Errorf("header %s: %w", metadataKey, err)
			}
			continue
		}
		t, s, err := parseEntry(m.key, m.value, len(data))
		if err != nil {
			return header{}, fmt.Errorf("header: tensor %q: %w", m.key, err)
		}
		t.Data = data[s.begin:s.end:s.end]
		h.tensors[m.key] = t
		h.names = append(h.names, m.key)
		spans = append(spans, s)
	}
	if err := checkTiling(spans, len(data)); err != nil {
		return header{}, fmt.Errorf("header: %w", err)
	}
	slices.Sort(h.names)
	return h, nil
}

// parseEntry decodes one tensor's {"dtype", "shape", "data_offsets"} and checks
// it against itself and the size of the data section.
func parseEntry(name string, raw []byte, dataLen int) (weights.Tensor, span, error) {
	members, err := jsonObject(raw)
	if err != nil {
		return weights.Tensor{}, span{}, err
	}
	var (
		dtype   string
		shape   []int
		offsets []int
	)
	fields := []struct {
		key string
		dst any
	}{{"dtype", &dtype}, {"shape", &shape}, {"data_offsets", &offsets}}
	for _, f := range fields {
		if err := decodeMember(members, f.key, f.dst); err != nil {
			return weights.Tensor{}, span{}, err
		}
	}
	if len(offsets) != 2 {
		return weights.Tensor{}, span{}, fmt.Errorf("data_offsets %v: want [begin, end]", offsets)
	}
	s := span{name: name, begin: offsets[0], end: offsets[1]}
	where := fmt.Sprintf("data_offsets [%d, %d]", s.begin, s.end)
	switch {
	case s.begin < 0 || s.end < 0:
		return weights.Tensor{}, span{}, fmt.Errorf("%s: negative offset", where)
	case s.begin > s.end:
		return weights.Tensor{}, span{}, fmt.Errorf("%s: begin > end", where)
	case s.end > dataLen:
		return weights.Tensor{}, span{}, fmt.Errorf("%s: beyond the %d-byte data section (truncated file?)", where, dataLen)
	}
	size, err := byteSize(weights.DType(dtype), shape)
	if err != nil {
		return weights.Tensor{}, span{}, err
	}
	if size != s.end-s.begin {
		return weights.Tensor{}, span{}, fmt.Errorf("shape %v of %s is %d bytes, but %s span %d", shape, dtype, size, where, s.end-s.begin)
	}
	if shape == nil {
		shape = []int{} // a scalar; keep it distinguishable from "no shape"
	}
	return weights.Tensor{Name: name, DType: weights.DType(dtype), Shape: shape}, s, nil
}

// checkTiling reports the first hole or overlap among spans, which must cover
// [0, dataLen) exactly. Each span already lies within [0, dataLen).
func checkTiling(spans []span, dataLen int) error {
	slices.SortStableFunc(spans, func(a, b span) int {
		if a.begin != b.begin {
			return a.begin - b.begin
		}
		return a.end - b.end
	})
	pos, prev := 0, ""
	for _, s := range spans {
		if s.begin < pos {
			return fmt.Errorf("tensor %q at bytes [%d,%d) overlaps tensor %q, which ends at %d", s.name, s.begin, s.end, prev, pos)
		}
		if s.begin > pos {
			return fmt.Errorf("bytes [%d,%d) of the data section, before tensor %q, belong to no tensor", pos, s.begin, s.name)
		}
		pos, prev = s.end, s.name
	}
	if pos != dataLen {
		return fmt.Errorf("the last %d bytes of the %d-byte data section belong to no tensor", dataLen-pos, dataLen)
	}
	return nil
}

// parseMetadata decodes the string-to-string __metadata__ map; null means none.
func parseMetadata(raw []byte) (map[string]string, error) {
	if isNull(raw) {
		return nil, nil
	}
	members, err := jsonObject(raw)
	if err != nil {
		return nil, err
	}
	md := make(map[string]string, len(members))
	for _, m := range members {
		var v string
		if err := decodeMember(members, m.key, &v); err != nil {
			return nil, err
		}
		md[m.key] = v
	}
	return md, nil
}

// member is one key/value pair of a JSON object, value still encoded.
type member struct {
	key   string
	value json.RawMessage
}

// jsonObject splits a JSON object into its members, in order. Unlike
// json.Unmarshal into a map, it rejects duplicate keys, which would otherwise
// silently hide a tensor.
func jsonObject(raw []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("not valid JSON: %w", err)
	}
	if tok != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object: starts with %v", tok)
	}
	var members []member
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("not valid JSON: %w", err)
		}
		key := tok.(string) // the decoder only yields strings in key position
		if seen[key] {
			return nil, fmt.Errorf("duplicate key %q", key)
		}
		seen[key] = true
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, fmt.Errorf("not valid JSON: key %q: %w", key, err)
		}
		members = append(members, member{key, value})
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, fmt.Errorf("not valid JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("not valid JSON: data after the object")
	}
	return members, nil
}

// decodeMember decodes the member named key into dst, which must be present
// and not null.
func decodeMember(members []member, key string, dst any) error {
	i := slices.IndexFunc(members, func(m member) bool { return m.key == key })
	if i < 0 {
		return fmt.Errorf("missing %q", key)
	}
	if isNull(members[i].value) {
		return fmt.Errorf("%q is null", key)
	}
	if err := json.Unmarshal(members[i].value, dst); err != nil {
		return fmt.Errorf("%q: %w", key, err)
	}
	return nil
}

func isNull(raw []byte) bool { return string(bytes.TrimSpace(raw)) == "null" }
