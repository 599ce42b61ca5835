package prompt

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/longctx/longctx/datasets/internal/testtok"
)

// longDocument is a context of about n sentences with numbered sentences,
// multi-byte characters (so cuts can fall inside a character's bytes) and
// markers at both ends.
func longDocument(n int) string {
	var b strings.Builder
	b.WriteString("BEGIN-OF-DOCUMENT. ")
	extras := []string{"The café was naïve about crêpes.", "東京の川は広い。", "Ответ был простым.", "Emoji 🚂🌉 cross the bridge.", "Plain words follow here."}
	for i := range n {
		fmt.Fprintf(&b, "Sentence %04d tells how the ferry crossed the river at dawn. %s ", i, extras[i%len(extras)])
	}
	b.WriteString("END-OF-DOCUMENT.")
	return b.String()
}

// TestBuildTruncatesRealTokenizers: with real tokenizers and chat
// templates, a cut prompt takes exactly the budget, and its context is the
// first k/2 and last k-k/2 tokens of the original for the k it kept.
func TestBuildTruncatesRealTokenizers(t *testing.T) {
	doc := longDocument(400)
	tmpl := MustParseTemplate("t", "[system]\nAnswer briefly.\n[user]\nRead this:\n{context}\n\nQuestion: {question}\nAnswer:")
	for _, name := range testtok.RealNames() {
		t.Run(name, func(t *testing.T) {
			m := testtok.Real(t, name)
			ids, err := m.Tok.Encode(doc, false)
			if err != nil {
				t.Fatal(err)
			}
			for _, budget := range []int{200, 513, 1000, 4000} {
				var logs bytes.Buffer
				b, err := NewBuilder(m.Tok, Options{Chat: m.Chat, AddSpecial: m.AddSpecial, Budget: budget, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
				if err != nil {
					t.Fatal(err)
				}
				p, err := b.Build(tmpl, Input{Task: "qa", SampleID: "doc", Context: doc, Question: "Which sentence mentions the bridge?"})
				if err != nil {
					t.Fatalf("budget %d: %v", budget, err)
				}
				got, err := m.Tok.Encode(p.Text, m.AddSpecial)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != budget || p.PromptTokens != budget {
					t.Errorf("budget %d: prompt has %d tokens (record: %d)", budget, len(got), p.PromptTokens)
				}
				if !p.Truncated || p.TruncatedFrom != len(ids) {
					t.Errorf("budget %d: Truncated %v from %d, want from %d", budget, p.Truncated, p.TruncatedFrom, len(ids))
				}
				if !strings.HasPrefix(p.Context, "BEGIN-OF-DOCUMENT.") || !strings.HasSuffix(p.Context, "END-OF-DOCUMENT.") {
					t.Errorf("budget %d: ends of the document lost", budget)
				}
				if !strings.Contains(p.Text, "Question: Which sentence mentions the bridge?\nAnswer:") {
					t.Errorf("budget %d: question lost", budget)
				}
				if k := keptTokens(t, m, ids, p.Context, p.ContextTokens); k < 0 {
					t.Errorf("budget %d: context is not the first k/2 and last k-k/2 tokens for any k near %d", budget, p.ContextTokens)
				}
				if !strings.Contains(logs.String(), "sample=doc") || !strings.Contains(logs.String(), fmt.Sprintf("context_tokens_before=%d", len(ids))) {
					t.Errorf("budget %d: truncation not logged: %q", budget, logs.String())
				}
			}
		})
	}
}

// keptTokens finds the k for which ctx is the decoded first k/2 and last
// k-k/2 tokens of ids (split characters at the seam dropped), or -1.
func keptTokens(t *testing.T, m *testtok.Model, ids []int, ctx string, near int) int {
	for k := max(near-8, 1); k <= near+8; k++ {
		h, err := m.Tok.Decode(ids[:k/2], true)
		if err != nil {
			t.Fatal(err)
		}
		tl, err := m.Tok.Decode(ids[len(ids)-(k-k/2):], true)
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimRight(h, "\uFFFD")+strings.TrimLeft(tl, "\uFFFD") == ctx {
			return k
		}
	}
	return -1
}

// TestTruncateMiddleRealTokenizers: the kept pieces are a prefix and a
// suffix of the original text, and each is the decoded token range.
func TestTruncateMiddleRealTokenizers(t *testing.T) {
	doc := longDocument(60)
	for _, name := range testtok.RealNames() {
		t.Run(name, func(t *testing.T) {
			m := testtok.Real(t, name)
			ids, err := m.Tok.Encode(doc, false)
			if err != nil {
				t.Fatal(err)
			}
			for _, keep := range []int{2, 51, 300, len(ids) - 1} {
				got, cut, err := TruncateMiddle(m.Tok, doc, keep)
				if err != nil {
					t.Fatal(err)
				}
				if cut != (Cut{From: len(ids), Head: keep / 2, Tail: keep - keep/2}) {
					t.Errorf("keep %d: cut %+v", keep, cut)
				}
				if keptTokens(t, m, ids, got, keep) != keep {
					t.Errorf("keep %d: result is not the first %d and last %d tokens", keep, keep/2, keep-keep/2)
				}
				h, _ := m.Tok.Decode(ids[:keep/2], true)
				tl, _ := m.Tok.Decode(ids[len(ids)-(keep-keep/2):], true)
				h, tl = strings.TrimRight(h, "\uFFFD"), strings.TrimLeft(tl, "\uFFFD")
				if !strings.HasPrefix(doc, h) || !strings.HasSuffix(doc, tl) {
					t.Errorf("keep %d: head %q... or tail ...%q is not a prefix or suffix of the document", keep, h[:min(len(h), 30)], tl[max(0, len(tl)-30):])
				}
				if reenc, _ := m.Tok.Encode(got, false); len(reenc) < keep-2 || len(reenc) > keep+2 {
					t.Errorf("keep %d: result re-encodes to %d tokens", keep, len(reenc))
				}
			}
		})
	}
}

// TestBuildMultiByteSeams cuts text made only of multi-byte characters,
// where most cuts split a character: the prompt never exceeds the budget,
// its count is the measured one, and the cut context is still valid text
// made of the document's first and last characters.
func TestBuildMultiByteSeams(t *testing.T) {
	unit := "🚂🌉東京ё"
	doc := strings.Repeat(unit, 300)
	tmpl := MustParseTemplate("t", "Read:\n{context}\nQ: {question}")
	for _, name := range testtok.RealNames() {
		t.Run(name, func(t *testing.T) {
			m := testtok.Real(t, name)
			exact := 0
			for budget := 100; budget < 112; budget++ {
				b, err := NewBuilder(m.Tok, Options{Chat: m.Chat, AddSpecial: m.AddSpecial, Budget: budget, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
				if err != nil {
					t.Fatal(err)
				}
				p, err := b.Build(tmpl, Input{SampleID: "mb", Context: doc, Question: "q?"})
				if err != nil {
					t.Fatal(err)
				}
				ids, _ := m.Tok.Encode(p.Text, m.AddSpecial)
				if len(ids) != p.PromptTokens || p.PromptTokens > budget {
					t.Errorf("budget %d: prompt has %d tokens, record says %d", budget, len(ids), p.PromptTokens)
				}
				if p.PromptTokens == budget {
					exact++
				}
				if strings.ContainsRune(p.Context, '\uFFFD') || !strings.HasPrefix(doc, p.Context[:len(p.Context)/4]) {
					t.Errorf("budget %d: cut context %q is not clean text from the document", budget, p.Context)
				}
			}
			t.Logf("%s: %d of 12 budgets met exactly", name, exact)
		})
	}
}
