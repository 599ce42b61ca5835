package safetensors

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/longctx/longctx/engine/weights"
)

// Write stores tensors and optional metadata as a safetensors file at path,
// laid out as the reference implementation does: tensors ordered by
// decreasing dtype alignment then name, header padded with spaces to a
// multiple of 8 bytes. The file is written under a temporary name and renamed,
// so path never holds a partial file.
func Write(path string, tensors []weights.Tensor, metadata map[string]string) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	w := bufio.NewWriterSize(tmp, 1<<20)
	if err := encode(w, tensors, metadata); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// encode writes a whole safetensors file to w.
func encode(w io.Writer, tensors []weights.Tensor, metadata map[string]string) error {
	sorted, err := layout(tensors)
	if err != nil {
		return err
	}
	var hdr bytes.Buffer
	hdr.WriteByte('{')
	if len(metadata) > 0 {
		writeString(&hdr, metadataKey)
		hdr.WriteString(":{")
		for i, k := range slices.Sorted(maps.Keys(metadata)) {
			if !utf8.ValidString(k) || !utf8.ValidString(metadata[k]) {
				return fmt.Errorf("metadata %q: not valid UTF-8", k)
			}
			if i > 0 {
				hdr.WriteByte(',')
			}
			writeString(&hdr, k)
			hdr.WriteByte(':')
			writeString(&hdr, metadata[k])
		}
		hdr.WriteByte('}')
	}
	offset := 0
	for i, t := range sorted {
		if i > 0 || len(metadata) > 0 {
			hdr.WriteByte(',')
		}
		writeString(&hdr, t.Name)
		hdr.WriteString(`:{"dtype":`)
		writeString(&hdr, string(t.DType))
		hdr.WriteString(`,"shape":[`)
		for j, d := range t.Shape {
			if j > 0 {
				hdr.WriteByte(',')
			}
			hdr.WriteString(strconv.Itoa(d))
		}
		fmt.Fprintf(&hdr, `],"data_offsets":[%d,%d]}`, offset, offset+len(t.Data))
		offset += len(t.Data)
	}
	hdr.WriteByte('}')
	for hdr.Len()%8 != 0 {
		hdr.WriteByte(' ')
	}
	if hdr.Len() > maxHeaderLen {
		return fmt.Errorf("header of %d bytes exceeds the %d-byte limit", hdr.Len(), maxHeaderLen)
	}

	if err := binary.Write(w, binary.LittleEndian, uint64(hdr.Len())); err != nil {
		return err
	}
	if _, err := w.Write(hdr.Bytes()); err != nil {
		return err
	}
	for _, t := range sorted {
		if _, err := w.Write(t.Data); err != nil {
			return err
		}
	}
	return nil
}

// layout validates tensors and returns them in file order.
func layout(tensors []weights.Tensor) ([]weights.Tensor, error) {
	seen := make(map[string]bool, len(tensors))
	for _, t := range tensors {
		switch {
		case t.Name == metadataKey:
			return nil, fmt.Errorf("tensor name %q is reserved", t.Name)
		case !utf8.ValidString(t.Name):
			return nil, fmt.Errorf("tensor %q: name is not valid UTF-8", t.Name)
		case seen[t.Name]:
			return nil, fmt.Errorf("tensor %q: duplicate name", t.Name)
		}
		seen[t.Name] = true
		size, err := byteSize(t.DType, t.Shape)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		if size != len(t.Data) {
			return nil, fmt.Errorf("tensor %q: shape %v of %s needs %d bytes, have %d", t.Name, t.Shape, t.DType, size, len(t.Data))
		}
	}
	sorted := slices.Clone(tensors)
	slices.SortFunc(sorted, func(a, b weights.Tensor) int {
		return cmp.Or(cmp.Compare(dtypeRank(b.DType), dtypeRank(a.DType)), cmp.Compare(a.Name, b.Name))
	})
	return sorted, nil
}

// writeString writes s as a JSON string. Unlike json.Marshal's default it
// leaves <, > and & unescaped, as the reference writer does.
func writeString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)       // a string always encodes
	b.Truncate(b.Len() - 1) // Encode appends a newline
}
