package safetensors

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/longctx/longctx/engine/weights"
)

func TestWriteLayout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.safetensors")
	tensors := []weights.Tensor{
		{Name: "c", DType: weights.BF16, Shape: []int{3}, Data: make([]byte, 6)},
		{Name: "b", DType: weights.F32, Shape: []int{1}, Data: make([]byte, 4)},
		{Name: "a", DType: weights.BF16, Shape: []int{1}, Data: make([]byte, 2)},
		{Name: "d", DType: weights.F16, Shape: []int{1}, Data: make([]byte, 2)},
	}
	if err := Write(path, tensors, map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(raw)
	text := string(raw[8 : 8+n])
	if n%8 != 0 || strings.TrimRight(text, " ") != strings.TrimSpace(text) || !strings.HasSuffix(strings.TrimRight(text, " "), "}") {
		t.Errorf("header %q (length %d): want JSON padded with spaces to a multiple of 8", text, n)
	}
	members, err := jsonObject([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, m := range members {
		order = append(order, m.key)
	}
	// Metadata first, then wider types first (the reference ranks BF16 above F16), then by name.
	if got, want := strings.Join(order, " "), "__metadata__ b a c d"; got != want {
		t.Errorf("header order %q, want %q", got, want)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the written file", len(entries))
	}
}

func TestWriteErrors(t *testing.T) {
	f32 := func(name string, shape []int, size int) weights.Tensor {
		return weights.Tensor{Name: name, DType: weights.F32, Shape: shape, Data: make([]byte, size)}
	}
	tests := []struct {
		name     string
		tensors  []weights.Tensor
		metadata map[string]string
		want     string
	}{
		{"size mismatch", []weights.Tensor{f32("a", []int{2}, 4)}, nil, `tensor "a": shape [2] of F32 needs 8 bytes, have 4`},
		{"duplicate", []weights.Tensor{f32("a", nil, 4), f32("a", nil, 4)}, nil, `tensor "a": duplicate name`},
		{"reserved name", []weights.Tensor{f32(metadataKey, nil, 4)}, nil, "reserved"},
		{"unknown dtype", []weights.Tensor{{Name: "a", DType: "Q8", Shape: []int{1}, Data: []byte{0}}}, nil, `unknown dtype "Q8"`},
		{"negative dimension", []weights.Tensor{f32("a", []int{-1}, 0)}, nil, "negative dimension"},
		{"bad UTF-8 name", []weights.Tensor{f32("a\xff", nil, 4)}, nil, "not valid UTF-8"},
		{"bad UTF-8 metadata", nil, map[string]string{"k": "\xff"}, "not valid UTF-8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "m.safetensors")
			err := Write(path, tc.tensors, tc.metadata)
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Write error %v, want one naming %s and containing %q", err, path, tc.want)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("failed Write left %d files behind", len(entries))
			}
		})
	}
}

func TestWriteReplaces(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.safetensors")
	for _, name := range []string{"first", "second"} {
		if err := Write(path, []weights.Tensor{{Name: name, DType: weights.F32, Shape: []int{}, Data: make([]byte, 4)}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	f, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if names := f.Names(); len(names) != 1 || names[0] != "second" {
		t.Errorf("Names() = %q, want [second]", names)
	}
}
