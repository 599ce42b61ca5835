package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// loadUnitTokenizer parses one of the small tokenizers defined in a cases
// file (see testdata/unit_cases.json).
func loadUnitTokenizer(t *testing.T, casesPath, name string) *Tokenizer {
	t.Helper()
	data, err := os.ReadFile(casesPath)
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Tokenizers map[string]json.RawMessage `json:"tokenizers"`
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		t.Fatalf("%s: %v", casesPath, err)
	}
	def, ok := spec.Tokenizers[name]
	if !ok {
		t.Fatalf("%s: no tokenizer %q", casesPath, name)
	}
	tok, err := Parse(def)
	if err != nil {
		t.Fatalf("%s: tokenizer %q: %v", casesPath, name, err)
	}
	return tok
}

// TestUnitReference checks the small handwritten tokenizers of
// testdata/unit_cases.json (merge order, ignore_merges, byte fallback,
// unknown-token fusing, added-token options, split behaviours, Metaspace,
// normalizers, post-processors, decoders) against HF's output for them.
func TestUnitReference(t *testing.T) {
	casesPath := filepath.Join("testdata", "unit_cases.json")
	ref := readReference(t, filepath.Join("testdata", "unit_reference.json"))
	data, err := os.ReadFile(casesPath)
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Tokenizers map[string]json.RawMessage `json:"tokenizers"`
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		t.Fatal(err)
	}
	tokenizers := map[string]*Tokenizer{}
	for name, def := range spec.Tokenizers {
		tok, err := Parse(def)
		if err != nil {
			t.Fatalf("tokenizer %q: %v", name, err)
		}
		tokenizers[name] = tok
	}
	if len(ref.Decodes) == 0 {
		t.Fatal("unit_reference.json has no decodes: rerun testdata/hf_unit_reference.js")
	}
	covered := map[string]bool{}
	for _, c := range ref.Cases {
		covered[c.Tokenizer] = true
	}
	for name := range tokenizers {
		if !covered[name] {
			t.Errorf("tokenizer %q has no reference cases: rerun testdata/hf_unit_reference.js", name)
		}
	}
	checkReference(t, ref, func(name string) *Tokenizer {
		tok, ok := tokenizers[name]
		if !ok {
			t.Fatalf("reference names unknown tokenizer %q", name)
		}
		return tok
	})
}
