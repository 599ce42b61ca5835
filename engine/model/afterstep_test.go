package model

import (
	"context"
	"errors"
	"slices"
	"testing"
)

// TestAfterStep checks the decode-time hook: it runs once per decode step
// with that step's token in the cache, what it evicts stays evicted, and
// its error ends generation.
func TestAfterStep(t *testing.T) {
	cfg := smallConfig(Llama)
	m := newModel(t, cfg, 5, LoadOptions{})
	prompt := randomPrompt(11, 10, cfg.VocabSize)
	var seen []int // cache positions' last entry at each call
	dropFirst := func(_ context.Context, s *Sequence) error {
		c := s.Cache()
		seen = append(seen, c.NextPosition())
		for l := range c.Layers() {
			keep := make([][]int, c.KVHeads())
			for g := range keep {
				keep[g] = span(1, c.Len(l, g))
			}
			if err := c.Compact(l, keep); err != nil {
				return err
			}
		}
		return nil
	}
	res, err := m.Generate(context.Background(), prompt, GenerateOptions{MaxNewTokens: 6, IgnoreStop: true, AfterStep: dropFirst})
	if err != nil {
		t.Fatal(err)
	}
	// Five decode steps feed tokens at positions 10..14.
	if want := []int{11, 12, 13, 14, 15}; !slices.Equal(seen, want) {
		t.Fatalf("AfterStep saw next positions %v, want %v", seen, want)
	}
	// Each step appended one token and evicted the oldest one.
	if pos := lastPositions(t, m, prompt, dropFirst); !slices.Equal(pos, span(5, 15)) {
		t.Fatalf("positions kept %v, want %v", pos, span(5, 15))
	}
	if res.KVBytesEnd != res.KVBytesPrefill {
		t.Fatalf("KV bytes grew from %d to %d though every step evicted one token", res.KVBytesPrefill, res.KVBytesEnd)
	}
	full, err := m.Generate(context.Background(), prompt, GenerateOptions{MaxNewTokens: 6, IgnoreStop: true})
	if err != nil {
		t.Fatal(err)
	}
	if full.Tokens[0] != res.Tokens[0] || full.Tokens[1] != res.Tokens[1] {
		t.Fatal("the first two tokens come before any eviction and must not change")
	}

	boom := errors.New("budget failed")
	if _, err := m.Generate(context.Background(), prompt, GenerateOptions{MaxNewTokens: 3, AfterStep: func(context.Context, *Sequence) error { return boom }}); !errors.Is(err, boom) {
		t.Fatalf("AfterStep error: %v", err)
	}
}

// lastPositions runs the generation of TestAfterStep on a sequence it
// keeps, and returns the positions left in layer 0, head 0.
func lastPositions(t *testing.T, m *Model, prompt []int, hook func(context.Context, *Sequence) error) []int {
	t.Helper()
	s, err := m.NewSequence()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Generate(context.Background(), prompt, GenerateOptions{MaxNewTokens: 6, IgnoreStop: true, AfterStep: hook}); err != nil {
		t.Fatal(err)
	}
	return s.Cache().View(0).Pos[0]
}
