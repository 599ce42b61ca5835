package tokenizer

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

// TestVocabularyAPI checks VocabSize, SpecialIDs, TokenToID and IDToToken of
// the real tokenizers against their files, read here with plain JSON.
func TestVocabularyAPI(t *testing.T) {
	for _, name := range realNames {
		t.Run(name, func(t *testing.T) {
			tok := loadReal(t, name)
			data, err := os.ReadFile(realTokenizerPath(name))
			if err != nil {
				t.Fatal(err)
			}
			var file struct {
				Model struct {
					Vocab map[string]int `json:"vocab"`
				} `json:"model"`
				AddedTokens []struct {
					ID      int    `json:"id"`
					Content string `json:"content"`
					Special bool   `json:"special"`
				} `json:"added_tokens"`
			}
			if err := json.Unmarshal(data, &file); err != nil {
				t.Fatal(err)
			}
			maxID := -1
			for token, id := range file.Model.Vocab {
				maxID = max(maxID, id)
				if got, ok := tok.TokenToID(token); !ok || got != id {
					t.Fatalf("TokenToID(%q) = %d, %v; want %d", token, got, ok, id)
				}
			}
			var special []int
			for _, a := range file.AddedTokens {
				maxID = max(maxID, a.ID)
				if got, ok := tok.TokenToID(a.Content); !ok || got != a.ID {
					t.Fatalf("TokenToID(%q) = %d, %v; want %d", a.Content, got, ok, a.ID)
				}
				if got, ok := tok.IDToToken(a.ID); !ok || got != a.Content {
					t.Fatalf("IDToToken(%d) = %q, %v; want %q", a.ID, got, ok, a.Content)
				}
				if a.Special && !slices.Contains(special, a.ID) {
					special = append(special, a.ID)
				}
			}
			slices.Sort(special)
			if tok.VocabSize() != maxID+1 {
				t.Errorf("VocabSize() = %d, want %d", tok.VocabSize(), maxID+1)
			}
			if got := tok.SpecialIDs(); !slices.Equal(got, special) {
				t.Errorf("SpecialIDs() = %v, want %v", got, special)
			}
			for id := 0; id < tok.VocabSize(); id++ {
				token, ok := tok.IDToToken(id)
				if !ok {
					continue
				}
				if back, ok := tok.TokenToID(token); !ok || back != id {
					t.Fatalf("TokenToID(IDToToken(%d) = %q) = %d, %v", id, token, back, ok)
				}
			}
			if _, ok := tok.IDToToken(tok.VocabSize()); ok {
				t.Errorf("IDToToken(VocabSize()) found a token")
			}
			if _, ok := tok.IDToToken(-1); ok {
				t.Errorf("IDToToken(-1) found a token")
			}
		})
	}
}

func TestLoadDirectory(t *testing.T) {
	path := realTokenizerPath("llama2")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("%s not found: run tools/fetch-tokenizers.sh", path)
	}
	dir := strings.TrimSuffix(path, "tokenizer.json")
	tok, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != loadReal(t, "llama2").VocabSize() {
		t.Fatal("loading the directory gave a different tokenizer")
	}
	if _, err := Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), "tokenizer.json") {
		t.Fatalf("Load(empty dir) error = %v, want one naming tokenizer.json", err)
	}
}

// TestConcurrentEncode encodes from several goroutines at once (run with
// -race); the shared word cache must not change results.
func TestConcurrentEncode(t *testing.T) {
	tok := loadReal(t, "qwen3")
	texts := readCorpus(t)
	want := make([][]int, len(texts))
	for i, text := range texts {
		ids, err := tok.Encode(text, false)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = ids
	}
	tok.model.cache.clear()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for k := range texts {
				i := (k + g*7) % len(texts)
				ids, err := tok.Encode(texts[i], false)
				if err != nil {
					t.Error(err)
					return
				}
				if !slices.Equal(ids, want[i]) {
					t.Errorf("goroutine %d: Encode(%q) = %v, want %v", g, texts[i], ids, want[i])
				}
			}
		})
	}
	wg.Wait()
}

// TestWordCacheBounded checks that the cache forgets instead of growing.
func TestWordCacheBounded(t *testing.T) {
	c := newWordCache(3)
	for _, w := range []string{"a", "b", "c", "d"} {
		c.put(w, []int32{1})
	}
	if len(c.entries) > 3 {
		t.Fatalf("cache holds %d entries, limit 3", len(c.entries))
	}
	if _, ok := c.get("d"); !ok {
		t.Fatal("latest entry missing")
	}
	c.put(strings.Repeat("x", maxCachedWordLen+1), []int32{1})
	if _, ok := c.get(strings.Repeat("x", maxCachedWordLen+1)); ok {
		t.Fatal("cached a word longer than maxCachedWordLen")
	}
}

func TestBytes(t *testing.T) {
	if _, err := NewBytes(BytesMinVocab - 1); err == nil {
		t.Fatal("NewBytes accepted a vocabulary without room for all bytes")
	}
	b, err := NewBytes(32000)
	if err != nil {
		t.Fatal(err)
	}
	var enc Encoder = b
	if enc.VocabSize() != 32000 {
		t.Fatalf("VocabSize() = %d", enc.VocabSize())
	}
	for _, text := range []string{"", "hello", "héllo wörld 😀\n\t", "\x00\xff"} {
		for _, addSpecial := range []bool{false, true} {
			ids, err := enc.Encode(text, addSpecial)
			if err != nil {
				t.Fatal(err)
			}
			var want []int
			if addSpecial {
				want = append(want, BytesBOS)
			}
			for _, c := range []byte(text) {
				want = append(want, BytesOffset+int(c))
			}
			if !slices.Equal(ids, want) {
				t.Fatalf("Encode(%q, %v) = %v, want %v", text, addSpecial, ids, want)
			}
			got, err := enc.Decode(ids, true)
			if err != nil {
				t.Fatal(err)
			}
			if utf8.ValidString(text) && got != text {
				t.Fatalf("Decode(Encode(%q)) = %q", text, got)
			}
		}
	}
	hi := []int{BytesBOS, BytesOffset + 'a', 300, BytesEOS, BytesPad}
	if got, _ := b.Decode(hi, false); got != "<s>a<|300|></s><pad>" {
		t.Fatalf("Decode(%v, false) = %q", hi, got)
	}
	if got, _ := b.Decode(hi, true); got != "a<|300|>" {
		t.Fatalf("Decode(%v, true) = %q", hi, got)
	}
	// A cut multi-byte character becomes one U+FFFD, as in the byte-level
	// tokenizers (see the unit reference decodes).
	if got, _ := b.Decode([]int{BytesOffset + 0xE2, BytesOffset + 0x82, BytesOffset + 'a'}, false); got != "\uFFFDa" {
		t.Fatalf("Decode(cut euro sign) = %+q", got)
	}
	for _, bad := range []int{-1, 32000} {
		if _, err := b.Decode([]int{bad}, false); err == nil {
			t.Fatalf("Decode accepted id %d", bad)
		}
	}
	if !slices.Equal(b.SpecialIDs(), []int{BytesPad, BytesBOS, BytesEOS}) {
		t.Fatalf("SpecialIDs() = %v", b.SpecialIDs())
	}
}
