package prompt

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/longctx/longctx/datasets/internal/testtok"
)

// numbered returns n words "w0 w1 ..." so that every token of the Words
// tokenizer is identifiable.
func numbered(n int) string {
	words := make([]string, n)
	for i := range words {
		words[i] = fmt.Sprintf("w%d", i)
	}
	return strings.Join(words, " ")
}

func TestTruncateMiddle(t *testing.T) {
	tok := testtok.NewWords()
	text := numbered(100)
	cases := []struct {
		keep, head, tail int
	}{
		{10, 5, 5},
		{11, 5, 6},
		{1, 0, 1},
		{99, 49, 50},
	}
	for _, c := range cases {
		got, cut, err := TruncateMiddle(tok, text, c.keep)
		if err != nil {
			t.Fatal(err)
		}
		if cut != (Cut{From: 100, Head: c.head, Tail: c.tail}) {
			t.Errorf("keep %d: cut = %+v", c.keep, cut)
		}
		ids, _ := tok.Encode(got, false)
		if len(ids) != c.keep {
			t.Errorf("keep %d: result has %d tokens", c.keep, len(ids))
		}
		// The kept head is the first words, the tail the last ones.
		want := strings.Join(append(strings.Fields(numbered(c.head)), strings.Fields(text)[100-c.tail:]...), " ")
		if c.head == 0 {
			want = " " + want
		}
		if got != want {
			t.Errorf("keep %d: got %q, want %q", c.keep, got, want)
		}
	}
	got, cut, err := TruncateMiddle(tok, text, 100)
	if err != nil || got != text || cut != (Cut{From: 100, Head: 100}) {
		t.Errorf("text that fits: got %q, %+v, %v", got, cut, err)
	}
	if _, _, err := TruncateMiddle(tok, text, -1); err == nil {
		t.Error("negative budget: no error")
	}
}

// chatWrap is a stand-in chat template with special-looking markers.
func chatWrap(system, user string) (string, error) {
	return "<|sys|> " + system + " <|user|> " + user + " <|assistant|>", nil
}

func newTestBuilder(t *testing.T, tok Tokenizer, opts Options) (*Builder, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	b, err := NewBuilder(tok, opts)
	if err != nil {
		t.Fatal(err)
	}
	return b, &logs
}

func TestBuildFits(t *testing.T) {
	tok := testtok.NewWords()
	tmpl := MustParseTemplate("t", "[system]\nBe brief.\n[user]\nStory: {context}\nQuestion: {question}")
	b, logs := newTestBuilder(t, tok, Options{Chat: chatWrap, AddSpecial: true, Budget: 1000})
	p, err := b.Build(tmpl, Input{Task: "qa", SampleID: "s1", Context: numbered(50), Question: "Who?", References: []string{"w3"}, MaxNewTokens: 7})
	if err != nil {
		t.Fatal(err)
	}
	wantText := "<|sys|> Be brief. <|user|> Story: " + numbered(50) + "\nQuestion: Who? <|assistant|>"
	if p.Text != wantText {
		t.Errorf("Text = %q, want %q", p.Text, wantText)
	}
	ids, _ := tok.Encode(wantText, true)
	if p.PromptTokens != len(ids) || p.ContextTokens != 50 {
		t.Errorf("PromptTokens, ContextTokens = %d, %d; want %d, 50", p.PromptTokens, p.ContextTokens, len(ids))
	}
	if p.Truncated || p.TruncatedFrom != 0 || p.Depth != -1 || p.MaxNewTokens != 7 || p.Task != "qa" || p.SampleID != "s1" {
		t.Errorf("record fields wrong: %+v", p)
	}
	if logs.Len() != 0 {
		t.Errorf("a prompt that fits logged %q", logs.String())
	}
}

func TestBuildTruncatesToBudget(t *testing.T) {
	tok := testtok.NewWords()
	tmpl := MustParseTemplate("t", "Story: {context}\nQuestion: {question}\nAnswer:")
	// Without space around the context its first and last words merge
	// with the template's, so counting the pieces apart misjudges the
	// prompt and the cut must be measured and adjusted.
	glued := MustParseTemplate("glued", "Story:{context}|{question}\nAnswer:")
	for _, budget := range []int{20, 21, 64, 99} {
		for _, chat := range []ChatFunc{nil, chatWrap} {
			testBuildTruncates(t, tok, tmpl, chat, budget)
			testBuildTruncates(t, tok, glued, chat, budget)
		}
	}
}

func testBuildTruncates(t *testing.T, tok Tokenizer, tmpl *Template, chat ChatFunc, budget int) {
	t.Helper()
	{
		{
			b, logs := newTestBuilder(t, tok, Options{Chat: chat, AddSpecial: true, Budget: budget})
			ctx := numbered(300)
			p, err := b.Build(tmpl, Input{Task: "qa", SampleID: "long-1", Context: ctx, Question: "Where?"})
			if err != nil {
				t.Fatalf("budget %d: %v", budget, err)
			}
			ids, _ := tok.Encode(p.Text, true)
			if len(ids) != budget || p.PromptTokens != budget {
				t.Errorf("budget %d: prompt has %d tokens (record says %d)", budget, len(ids), p.PromptTokens)
			}
			if !p.Truncated || p.TruncatedFrom != 300 {
				t.Errorf("budget %d: Truncated, TruncatedFrom = %v, %d", budget, p.Truncated, p.TruncatedFrom)
			}
			// The kept context is the first k/2 and last k-k/2 words.
			kept := strings.Fields(p.Context)
			k := len(kept)
			want := append(strings.Fields(numbered(k/2)), strings.Fields(ctx)[300-(k-k/2):]...)
			if strings.Join(kept, " ") != strings.Join(want, " ") || p.ContextTokens != k {
				t.Errorf("budget %d: kept context %q, want %q (ContextTokens %d)", budget, p.Context, strings.Join(want, " "), p.ContextTokens)
			}
			if !strings.Contains(p.Text, "Where?\nAnswer:") {
				t.Errorf("budget %d: question lost from %q", budget, p.Text)
			}
			log := logs.String()
			for _, s := range []string{"truncated", "sample=long-1", "context_tokens_before=300", fmt.Sprintf("context_tokens_after=%d", k), fmt.Sprintf("budget=%d", budget)} {
				if !strings.Contains(log, s) {
					t.Errorf("budget %d: log %q lacks %q", budget, log, s)
				}
			}
		}
	}
}

// TestBuildMeasuresCut: with Prefixed, the context counted alone costs
// ten tokens more than inside the prompt (its loud first word), so the
// first cut, sized from the separate counts, falls short of the budget;
// only measuring and adjusting reaches it.
func TestBuildMeasuresCut(t *testing.T) {
	tok := testtok.NewPrefixed()
	tmpl := MustParseTemplate("t", "Story: {context}\nQuestion: {question}")
	ctx := "ABCDEFGHI " + numbered(300)
	words := strings.Fields(ctx)
	for _, budget := range []int{30, 77, 200} {
		b, _ := newTestBuilder(t, tok, Options{Chat: chatWrap, AddSpecial: true, Budget: budget})
		p, err := b.Build(tmpl, Input{SampleID: "loud", Context: ctx, Question: "Who?"})
		if err != nil {
			t.Fatal(err)
		}
		if ids, _ := tok.Encode(p.Text, true); len(ids) != budget || p.PromptTokens != budget {
			t.Errorf("budget %d: prompt has %d tokens (record %d)", budget, len(ids), p.PromptTokens)
		}
		// The context's ten prefix tokens are part of its head: keeping k
		// tokens keeps k/2-10 words from the start and k-k/2 from the end.
		kept := strings.Fields(p.Context)
		k := len(kept) + 10
		want := append(append([]string{}, words[:k/2-10]...), words[len(words)-(k-k/2):]...)
		if strings.Join(kept, " ") != strings.Join(want, " ") {
			t.Errorf("budget %d: kept %q, want %q", budget, p.Context, strings.Join(want, " "))
		}
	}
}

func TestBuildBudgetTooSmall(t *testing.T) {
	tok := testtok.NewWords()
	tmpl := MustParseTemplate("t", "A long instruction with many words before the story: {context}\nQuestion: {question}")
	b, _ := newTestBuilder(t, tok, Options{Budget: 5})
	_, err := b.Build(tmpl, Input{SampleID: "s9", Context: numbered(40), Question: "What?"})
	if err == nil || !strings.Contains(err.Error(), "sample s9") || !strings.Contains(err.Error(), "budget of 5") {
		t.Errorf("err = %v, want one naming the sample and budget", err)
	}
}

func TestBuildChatError(t *testing.T) {
	tok := testtok.NewWords()
	b, _ := newTestBuilder(t, tok, Options{Chat: func(string, string) (string, error) { return "", fmt.Errorf("no template") }})
	_, err := b.Build(MustParseTemplate("t", "{context}{question}"), Input{SampleID: "s2", Context: "x", Question: "y"})
	if err == nil || !strings.Contains(err.Error(), "no template") || !strings.Contains(err.Error(), "s2") {
		t.Errorf("err = %v", err)
	}
}

func TestNewBuilderErrors(t *testing.T) {
	if _, err := NewBuilder(nil, Options{}); err == nil {
		t.Error("nil tokenizer: no error")
	}
	if _, err := NewBuilder(testtok.NewWords(), Options{Budget: -1}); err == nil {
		t.Error("negative budget: no error")
	}
}

func TestBuckets(t *testing.T) {
	lengths := []int{0, 500, 1023, 1024, 1025, 4096, 40000}
	prompts := make([]Prompt, len(lengths))
	for i, n := range lengths {
		prompts[i].PromptTokens = n
	}
	got, err := Buckets(prompts, []int{1024, 2048, 32768})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		label   string
		indices []int
	}{
		{"<1k", []int{0, 1, 2}},
		{"1k-2k", []int{3, 4}},
		{"2k-32k", []int{5}},
		{"32k+", []int{6}},
	}
	if len(got) != len(want) {
		t.Fatalf("%d buckets, want %d", len(got), len(want))
	}
	for i, w := range want {
		if got[i].Label() != w.label || fmt.Sprint(got[i].Indices) != fmt.Sprint(w.indices) {
			t.Errorf("bucket %d = %s %v, want %s %v", i, got[i].Label(), got[i].Indices, w.label, w.indices)
		}
	}
	for _, bad := range [][]int{nil, {0}, {5, 5}, {10, 3}} {
		if _, err := Buckets(prompts, bad); err == nil {
			t.Errorf("edges %v: no error", bad)
		}
	}
	if d := DefaultEdges(); d[0] != 1024 || d[len(d)-1] != 32768 {
		t.Errorf("DefaultEdges = %v", d)
	}
}
