package needle

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/longctx/longctx/datasets/internal/testtok"
	"github.com/longctx/longctx/datasets/prompt"
)

func newBuilder(t *testing.T, tok prompt.Tokenizer, chat prompt.ChatFunc) *prompt.Builder {
	t.Helper()
	b, err := prompt.NewBuilder(tok, prompt.Options{Chat: chat, AddSpecial: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func chat(system, user string) (string, error) {
	return "<|user|>\n" + user + "\n<|assistant|>\n", nil
}

func TestGenerateGrid(t *testing.T) {
	// Words counts exactly additively; Prefixed makes per-sentence
	// estimates wrong by a token a sentence, so only measuring hits the
	// targets.
	for name, tok := range map[string]prompt.Tokenizer{"words": testtok.NewWords(), "prefixed": testtok.NewPrefixed()} {
		t.Run(name, func(t *testing.T) { testGenerateGrid(t, tok) })
	}
}

func testGenerateGrid(t *testing.T, tok prompt.Tokenizer) {
	b := newBuilder(t, tok, chat)
	for _, v := range Variants() {
		t.Run(string(v), func(t *testing.T) {
			cfg := Config{Lengths: []int{300, 1000, 4000}, Depths: []float64{0, 0.1, 0.5, 0.77, 1}, Variant: v, Seed: 7}
			prompts, err := Generate(b, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if len(prompts) != 15 {
				t.Fatalf("%d prompts, want 15", len(prompts))
			}
			for i, p := range prompts {
				length, depth := cfg.Lengths[i/5], cfg.Depths[i%5]
				checkPrompt(t, tok, true, p, v, length, depth)
			}
		})
	}
}

// checkPrompt verifies one needle prompt against the tokenizer: length and
// depth within one sentence, needles present exactly once, record fields.
func checkPrompt(t *testing.T, tok prompt.Tokenizer, addSpecial bool, p prompt.Prompt, v Variant, length int, depth float64) {
	t.Helper()
	count := func(s string, special bool) int {
		ids, err := tok.Encode(s, special)
		if err != nil {
			t.Fatal(err)
		}
		return len(ids)
	}
	id := p.SampleID
	if p.Task != Task || p.Variant != string(v) || p.TargetTokens != length || p.Depth != depth {
		t.Errorf("%s: record fields %q %q %d %v", id, p.Task, p.Variant, p.TargetTokens, p.Depth)
	}
	if p.MaxNewTokens != DefaultMaxNewTokens(v) {
		t.Errorf("%s: MaxNewTokens %d", id, p.MaxNewTokens)
	}
	if !strings.Contains(p.Text, p.Context) || !strings.Contains(p.Text, p.Question) {
		t.Errorf("%s: text lacks context or question", id)
	}
	n := count(p.Text, addSpecial)
	if n != p.PromptTokens {
		t.Errorf("%s: PromptTokens %d, text has %d", id, p.PromptTokens, n)
	}
	if c := count(p.Context, false); c != p.ContextTokens {
		t.Errorf("%s: ContextTokens %d, context has %d", id, p.ContextTokens, c)
	}

	// Split the context back into sentences: needles are recognisable.
	sentences := SplitSentences(p.Context)
	isNeedle := func(s string) bool { return strings.Contains(s, "secret number") }
	maxHay := 0
	var needles []string
	target := -1
	for i, s := range sentences {
		if isNeedle(s) {
			needles = append(needles, s)
			if strings.Contains(s, p.References[0]) {
				target = i
			}
			continue
		}
		maxHay = max(maxHay, count(s, false))
	}
	if target < 0 {
		t.Fatalf("%s: target needle with %q not found", id, p.References[0])
	}
	// Length: within budget, and no further sentence would have fit.
	if n > length || length-n > maxHay {
		t.Errorf("%s: prompt has %d tokens for length %d (longest sentence %d)", id, n, length, maxHay)
	}
	// Depth: the tokens before the target, as a share of the context less
	// the target, are within one neighbouring sentence of the request.
	before := count(strings.Join(sentences[:target], " "), false)
	rest := p.ContextTokens - count(sentences[target], false)
	neighbour := 0
	for _, j := range []int{target - 1, target + 1} {
		if j >= 0 && j < len(sentences) {
			neighbour = max(neighbour, count(sentences[j], false))
		}
	}
	if miss := abs(float64(before) - depth*float64(rest)); miss > float64(neighbour) {
		t.Errorf("%s: target after %d of %d tokens, want depth %v: off by %.1f tokens, more than the neighbouring sentence (%d)",
			id, before, rest, depth, miss, neighbour)
	}

	wantNeedles := 1
	if v != Single {
		wantNeedles = DefaultNeedles
	}
	if len(needles) != wantNeedles {
		t.Errorf("%s: %d needles, want %d", id, len(needles), wantNeedles)
	}
	values := append(append([]string{}, p.References...), p.Distractors...)
	if len(values) != wantNeedles {
		t.Errorf("%s: references %v and distractors %v, want %d values", id, p.References, p.Distractors, wantNeedles)
	}
	seen := map[string]bool{}
	for _, val := range values {
		if !regexp.MustCompile(`^[1-9][0-9]{6}$`).MatchString(val) {
			t.Errorf("%s: value %q is not seven digits", id, val)
		}
		if seen[val] {
			t.Errorf("%s: value %q repeated", id, val)
		}
		seen[val] = true
		if c := strings.Count(p.Text, val); c != 1 {
			t.Errorf("%s: value %q occurs %d times in the prompt", id, val, c)
		}
	}
	keys := map[string]bool{}
	for _, s := range needles {
		m := regexp.MustCompile(`secret numbers? for the (\w+ \w+) is`).FindStringSubmatch(s)
		if m == nil {
			t.Fatalf("%s: needle %q has no key", id, s)
		}
		keys[m[1]] = true
	}
	wantKeys := wantNeedles
	if v == MultiValue {
		wantKeys = 1
	}
	if len(keys) != wantKeys {
		t.Errorf("%s: %d distinct keys, want %d", id, len(keys), wantKeys)
	}
	for k := range keys {
		inQuestion := strings.Contains(p.Question, k)
		if inQuestion != (strings.Contains(sentences[target], k)) {
			t.Errorf("%s: key %q in question %v, in target needle %v", id, k, inQuestion, !inQuestion)
		}
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func TestGenerateDeterministic(t *testing.T) {
	tok := testtok.NewWords()
	b := newBuilder(t, tok, nil)
	cfg := Config{Lengths: []int{500, 2000}, Depths: []float64{0.3}, Variant: MultiKey, Needles: 3, PerCell: 2, Seed: 11}
	a, err := Generate(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Generate(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, again) {
		t.Error("same seed, different prompts")
	}
	if a[0].References[0] == a[1].References[0] || a[0].SampleID == a[1].SampleID {
		t.Errorf("two prompts of one cell share value or id: %v %v", a[0].SampleID, a[1].SampleID)
	}
	// A cell does not depend on the rest of the grid.
	cfg2 := cfg
	cfg2.Lengths = []int{2000}
	sub, err := Generate(b, cfg2)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(sub, a[2:]) {
		t.Error("the 2000-token cells changed when the 500-token cells were dropped")
	}
	cfg.Seed = 12
	other, err := Generate(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if other[0].Text == a[0].Text {
		t.Error("a different seed gave the same prompt")
	}
}

func TestGenerateTextHaystack(t *testing.T) {
	dir := t.TempDir()
	// Sentences of varied length, one of them long, over two files.
	var one, two strings.Builder
	for i := range 40 {
		fmt.Fprintf(&one, "Line %d of the first file tells of rivers and hills.\n", i)
		fmt.Fprintf(&two, "The second file, paragraph %d, is %s long!\n\n", i, strings.Repeat("very ", i%7))
	}
	for name, text := range map[string]string{"a.txt": one.String(), "b.txt": two.String(), "skip.md": "ignored."} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	hay, err := LoadHaystackDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if hay.Len() != 80 || hay.Sentence(0) != "Line 0 of the first file tells of rivers and hills." || hay.Sentence(80) != hay.Sentence(0) {
		t.Fatalf("haystack: %d sentences, first %q", hay.Len(), hay.Sentence(0))
	}
	tok := testtok.NewWords()
	b := newBuilder(t, tok, chat)
	// 3000 tokens needs the text more than once.
	cfg := Config{Lengths: []int{3000}, Depths: []float64{0.25, 0.9}, Variant: Single, Seed: 3, Haystack: hay}
	prompts, err := Generate(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range prompts {
		checkPrompt(t, tok, true, p, Single, 3000, cfg.Depths[i])
		if !strings.HasPrefix(p.Context, "Line 0") && !strings.HasPrefix(p.Context, "The secret") {
			t.Errorf("context does not start the haystack: %.40q", p.Context)
		}
	}
}

// TestGenerateMeasuresPlacement uses a haystack whose per-sentence token
// estimates are far off in its first half only (Prefixed counts a loud
// first word alone as several extra tokens): a needle placed by the
// estimates alone would land sentences away from its depth, and a
// haystack sized by them would fall well short of the length.
func TestGenerateMeasuresPlacement(t *testing.T) {
	var text strings.Builder
	for i := range 120 {
		fmt.Fprintf(&text, "LOUDLY SPOKEN words number %d fill the first half of this text. ", i)
	}
	for i := range 120 {
		fmt.Fprintf(&text, "quiet words number %d fill the second half of this text. ", i)
	}
	hay, err := NewTextHaystack("loud and quiet", text.String())
	if err != nil {
		t.Fatal(err)
	}
	tok := testtok.NewPrefixed()
	b := newBuilder(t, tok, chat)
	cfg := Config{Lengths: []int{2000, 3000}, Depths: []float64{0.2, 0.5, 0.8}, Variant: Single, Seed: 5, Haystack: hay}
	prompts, err := Generate(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range prompts {
		checkPrompt(t, tok, true, p, Single, cfg.Lengths[i/3], cfg.Depths[i%3])
	}
}

func TestGenerateKeyCollision(t *testing.T) {
	// A haystack that names every key: no draw can be unique.
	var text strings.Builder
	for _, a := range keyAdjectives {
		for _, n := range keyNouns {
			fmt.Fprintf(&text, "I saw the %s %s. ", a, n)
		}
	}
	hay, err := NewTextHaystack("all keys", text.String())
	if err != nil {
		t.Fatal(err)
	}
	b := newBuilder(t, testtok.NewWords(), nil)
	_, err = Generate(b, Config{Lengths: []int{20000}, Depths: []float64{0.5}, Variant: Single, Haystack: hay})
	if err == nil || !strings.Contains(err.Error(), "also occurs in the haystack all keys") {
		t.Errorf("err = %v", err)
	}
	// Keys in only the first sentences are avoided by redrawing.
	hay, _ = NewTextHaystack("some keys", "I saw the amber falcon. The jade harp sang. "+strings.Repeat("Nothing happened today. ", 200))
	prompts, err := Generate(b, Config{Lengths: []int{600}, Depths: []float64{0.5}, Variant: MultiKey, Seed: 1, Haystack: hay})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(prompts[0].Question, "amber falcon") || strings.Contains(prompts[0].Question, "jade harp") {
		t.Errorf("question uses a key the haystack holds: %q", prompts[0].Question)
	}
}

func TestGenerateErrors(t *testing.T) {
	b := newBuilder(t, testtok.NewWords(), nil)
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no lengths", Config{Depths: []float64{0}, Variant: Single}, "no lengths"},
		{"no depths", Config{Lengths: []int{100}, Variant: Single}, "no depths"},
		{"bad depth", Config{Lengths: []int{100}, Depths: []float64{1.5}, Variant: Single}, "outside [0, 1]"},
		{"bad length", Config{Lengths: []int{0}, Depths: []float64{0}, Variant: Single}, "not positive"},
		{"bad variant", Config{Lengths: []int{100}, Depths: []float64{0}, Variant: "double"}, "unknown needle variant"},
		{"single with needles", Config{Lengths: []int{100}, Depths: []float64{0}, Variant: Single, Needles: 3}, "one needle"},
		{"multikey with one", Config{Lengths: []int{100}, Depths: []float64{0}, Variant: MultiKey, Needles: 1}, "needs 2 to"},
		{"too short", Config{Lengths: []int{10}, Depths: []float64{0}, Variant: Single}, "length 10 is too short"},
		{"too short for needles", Config{Lengths: []int{60}, Depths: []float64{0}, Variant: MultiKey, Needles: 8}, "too short"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Generate(b, c.cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want %q", err, c.want)
			}
		})
	}
	budgeted, _ := prompt.NewBuilder(testtok.NewWords(), prompt.Options{Budget: 1000})
	if _, err := Generate(budgeted, Config{Lengths: []int{2000}, Depths: []float64{0}, Variant: Single}); err == nil || !strings.Contains(err.Error(), "exceeds the prompt budget") {
		t.Errorf("length over budget: err = %v", err)
	}
}
