package tokenizer

import (
	"strings"
	"testing"
)

// benchText builds about n bytes of varied text from the corpus, joined by
// spaces and newlines the way prompts are.
func benchText(t testing.TB, n int) string {
	corpus := readCorpusTB(t)
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		b.WriteString(corpus[i%len(corpus)])
		if i%7 == 6 {
			b.WriteString("\n\n")
		} else {
			b.WriteByte(' ')
		}
	}
	return b.String()[:n]
}

// BenchmarkEncode encodes 100 KB of text (about 25-30k tokens) with each
// real tokenizer; the word cache is cold for the first iteration only.
func BenchmarkEncode(b *testing.B) {
	text := benchText(b, 100_000)
	for _, name := range realNames {
		b.Run(name, func(b *testing.B) {
			tok := loadReal(b, name)
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				if _, err := tok.Encode(text, true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncodeCold measures the same text with an empty word cache each
// time, the cost of a prompt whose words were never seen.
func BenchmarkEncodeCold(b *testing.B) {
	text := benchText(b, 100_000)
	for _, name := range realNames {
		b.Run(name, func(b *testing.B) {
			tok := loadReal(b, name)
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				tok.model.cache.clear()
				if _, err := tok.Encode(text, true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLoad parses each real tokenizer.json.
func BenchmarkLoad(b *testing.B) {
	for _, name := range realNames {
		b.Run(name, func(b *testing.B) {
			loadReal(b, name) // skips when the files are absent
			for b.Loop() {
				if _, err := Load(realTokenizerPath(name)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
