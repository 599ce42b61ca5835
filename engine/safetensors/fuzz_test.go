package safetensors

import (
	"bytes"
	"encoding/binary"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/longctx/longctx/engine/weights"
)

// FuzzParseHeader feeds whole files to the parser. Whatever it accepts must
// be safe to serve: every tensor a view of the data section of the right
// length, the views tiling that section, and the writer able to reproduce it.
func FuzzParseHeader(f *testing.F) {
	rng := rand.New(rand.NewPCG(7, 8))
	var valid []weights.Tensor
	for i, d := range []weights.DType{weights.BF16, weights.F16, weights.F32} {
		data, _ := sample(rng, d, 3+i)
		valid = append(valid, weights.Tensor{Name: string(d), DType: d, Shape: []int{3 + i}, Data: data})
	}
	valid = append(valid, weights.Tensor{Name: "scalar", DType: weights.F32, Shape: []int{}, Data: make([]byte, 4)})
	var buf bytes.Buffer
	if err := encode(&buf, valid, map[string]string{"format": "pt"}); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	official, err := os.ReadFile(referenceFile)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(official)
	for _, tc := range malformedCases() {
		f.Add(tc.file)
	}

	f.Fuzz(func(t *testing.T, file []byte) {
		h, err := parse(file)
		if err != nil {
			return
		}
		section := file[8+binary.LittleEndian.Uint64(file):]
		if len(h.names) != len(h.tensors) || !slices.IsSorted(h.names) {
			t.Fatalf("names %q do not match %d tensors", h.names, len(h.tensors))
		}
		covered := 0
		var tensors []weights.Tensor
		for _, name := range h.names {
			tensor := h.tensors[name]
			size, err := byteSize(tensor.DType, tensor.Shape)
			if err != nil || size != len(tensor.Data) {
				t.Fatalf("tensor %q: %d bytes for %s %v (%v)", name, len(tensor.Data), tensor.DType, tensor.Shape, err)
			}
			if len(tensor.Data) > 0 && !within(tensor.Data, section) {
				t.Fatalf("tensor %q: Data outside the data section", name)
			}
			covered += len(tensor.Data)
			tensors = append(tensors, tensor)
		}
		if covered != len(section) { // with no overlap checked, this means no hole
			t.Fatalf("tensors cover %d of %d data bytes", covered, len(section))
		}

		var out bytes.Buffer
		if err := encode(&out, tensors, h.metadata); err != nil {
			t.Fatalf("re-encoding an accepted file: %v", err)
		}
		h2, err := parse(out.Bytes())
		if err != nil {
			t.Fatalf("parsing the re-encoded file: %v", err)
		}
		if !slices.Equal(h2.names, h.names) || !maps.Equal(h2.metadata, h.metadata) {
			t.Fatalf("re-encoded file has names %q metadata %v, want %q %v", h2.names, h2.metadata, h.names, h.metadata)
		}
		for _, name := range h.names {
			a, b := h.tensors[name], h2.tensors[name]
			if a.DType != b.DType || !slices.Equal(a.Shape, b.Shape) || !bytes.Equal(a.Data, b.Data) {
				t.Fatalf("tensor %q changed in the round trip", name)
			}
		}
	})
}

// FuzzParseIndex checks that any accepted model.safetensors.index.json names
// only shards inside the checkpoint directory.
func FuzzParseIndex(f *testing.F) {
	f.Add([]byte(`{"metadata":{"total_size":8},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}`))
	f.Add([]byte(`{"weight_map":{"a":"../x"}}`))
	f.Add([]byte(`{"weight_map":{"a":"x","a":"y"}}`))
	f.Add([]byte(`{"weight_map":[]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		weightMap, err := parseIndex(raw)
		if err != nil {
			return
		}
		if len(weightMap) == 0 {
			t.Fatal("accepted an empty weight_map")
		}
		for name, shard := range weightMap {
			if !filepath.IsLocal(shard) {
				t.Fatalf("tensor %q: accepted shard %q outside the directory", name, shard)
			}
		}
	})
}
