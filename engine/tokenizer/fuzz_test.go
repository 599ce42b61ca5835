package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParse feeds arbitrary bytes to Parse. Parsing must never panic, and a
// tokenizer that parses must encode and decode without panicking.
func FuzzParse(f *testing.F) {
	data, err := os.ReadFile(filepath.Join("testdata", "unit_cases.json"))
	if err != nil {
		f.Fatal(err)
	}
	var spec struct {
		Tokenizers map[string]json.RawMessage `json:"tokenizers"`
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		f.Fatal(err)
	}
	for _, def := range spec.Tokenizers {
		f.Add([]byte(def))
	}
	for _, c := range parseErrorCases {
		f.Add([]byte(c.json))
	}
	f.Add([]byte(withSections(map[string]string{})))
	texts := []string{"", "a", "ab ab\n\tab", "<s>x</s>", "é€😀 ▁a", "  \u00a0 12 'S"}
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := Parse(data)
		if err != nil {
			return
		}
		for _, text := range texts {
			ids, err := tok.Encode(text, true)
			if err != nil {
				continue
			}
			for _, id := range ids {
				if id < 0 || id >= tok.VocabSize() {
					t.Fatalf("Encode(%q) gave id %d outside [0, %d)", text, id, tok.VocabSize())
				}
			}
			if _, err := tok.Decode(ids, false); err != nil {
				t.Fatalf("Decode(Encode(%q)): %v", text, err)
			}
		}
		all := make([]int, 0, 64)
		for id := 0; id < min(tok.VocabSize()+2, 64); id++ {
			all = append(all, id)
		}
		_, _ = tok.Decode(all, true)
		_, _ = tok.Decode(all, false)
	})
}

// FuzzEncode encodes arbitrary text with the real tokenizers: encoding valid
// UTF-8 never fails, every id is in the vocabulary, and decoding gives the
// text back as the normalizer left it (Llama 2 turns '▁' into spaces).
func FuzzEncode(f *testing.F) {
	for _, text := range readCorpusTB(f) {
		f.Add(text)
	}
	f.Add("\u0301\u0316 \u089b Zalgo a\u0301\u0316\u0301\u0316\u0301\u0316")
	toks := make(map[string]*Tokenizer, len(realNames))
	for _, name := range realNames {
		toks[name] = loadReal(f, name)
	}
	f.Fuzz(func(t *testing.T, text string) {
		if !utf8.ValidString(text) {
			return
		}
		for name, tok := range toks {
			ids, err := tok.Encode(text, false)
			if err != nil {
				t.Fatalf("%s: Encode(%+q): %v", name, text, err)
			}
			for _, id := range ids {
				if _, ok := tok.IDToToken(id); !ok {
					t.Fatalf("%s: Encode(%+q) gave unknown id %d", name, text, id)
				}
			}
			if containsAddedToken(tok, text) {
				continue
			}
			got, err := tok.Decode(ids, false)
			if err != nil {
				t.Fatalf("%s: Decode: %v", name, err)
			}
			want := text
			if tok.normalizer != nil {
				if want, err = tok.normalizer.normalize(text); err != nil {
					t.Fatal(err)
				}
			}
			if name == "llama2" {
				want = strings.ReplaceAll(text, "▁", " ")
			}
			if got != want {
				t.Fatalf("%s: Decode(Encode(%+q)) = %+q, want %+q", name, text, got, want)
			}
		}
	})
}
