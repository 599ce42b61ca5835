package model

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/longctx/longctx/engine/safetensors"
	"github.com/longctx/longctx/engine/weights"
)

// reference is what the lead's generator script wrote with transformers,
// running the checkpoint in fp32 with eager attention.
type reference struct {
	Family              string    `json:"family"`
	TransformersVersion string    `json:"transformers_version"`
	PromptIDs           []int     `json:"prompt_ids"`
	MaxNewTokens        int       `json:"max_new_tokens"`
	GreedyTokens        []int     `json:"greedy_tokens"`
	LastLogits          []float32 `json:"last_logits"`
	MinTop2Margin       float64   `json:"min_top2_margin"`
}

func openSafetensors(dir string) (weights.Source, error) { return safetensors.Open(dir) }

const referenceRoot = "testdata/tiny"

// referenceDir is referenceRoot, or the folder LONGCTX_TINY_REFERENCES
// names (to check freshly generated references before replacing the
// committed ones).
func referenceDir() string {
	if dir := os.Getenv("LONGCTX_TINY_REFERENCES"); dir != "" {
		return dir
	}
	return referenceRoot
}

// TestTransformersReference checks the forward pass and greedy generation
// against transformers on tiny random checkpoints of every family.
func TestTransformersReference(t *testing.T) {
	root := referenceDir()
	entries, err := os.ReadDir(root)
	if os.IsNotExist(err) {
		t.Skipf("%s is absent: no transformers reference checkpoints to compare against", root)
	}
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, e := range entries {
		dir := filepath.Join(root, e.Name())
		if _, err := os.Stat(filepath.Join(dir, "reference.json")); err != nil {
			continue
		}
		ran++
		t.Run(e.Name(), func(t *testing.T) { checkReference(t, dir) })
	}
	if ran == 0 {
		t.Skipf("%s holds no reference.json", root)
	}
}

func checkReference(t *testing.T, dir string) {
	raw, err := os.ReadFile(filepath.Join(dir, "reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref reference
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatalf("reference.json: %v", err)
	}
	if len(ref.PromptIDs) == 0 || len(ref.GreedyTokens) == 0 || len(ref.LastLogits) == 0 {
		t.Fatal("reference.json lacks prompt_ids, greedy_tokens or last_logits")
	}
	m, err := Load(dir, LoadOptions{Open: openSafetensors})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if string(m.Config().Family) != ref.Family {
		t.Fatalf("family %q, reference says %q", m.Config().Family, ref.Family)
	}
	if len(ref.LastLogits) != m.Config().VocabSize {
		t.Fatalf("reference has %d logits for a vocabulary of %d", len(ref.LastLogits), m.Config().VocabSize)
	}
	t.Logf("transformers %s, smallest top-2 logit margin along the greedy path %.4f", ref.TransformersVersion, ref.MinTop2Margin)

	for _, chunk := range []int{0, 7} {
		// Stop tokens are ignored and the length taken from the reference:
		// if transformers stopped at an eos, its last token is that eos.
		res, err := m.Generate(context.Background(), ref.PromptIDs, GenerateOptions{
			MaxNewTokens: len(ref.GreedyTokens),
			ChunkSize:    chunk,
			IgnoreStop:   true,
		})
		if err != nil {
			t.Fatalf("chunk %d: %v", chunk, err)
		}
		if !slices.Equal(res.Tokens, ref.GreedyTokens) {
			t.Errorf("chunk %d: greedy tokens\n got %v\nwant %v", chunk, res.Tokens, ref.GreedyTokens)
		}
		var worst float64
		worstAt := 0
		for i, want := range ref.LastLogits {
			if d := math.Abs(float64(res.PrefillLogits[i]) - float64(want)); d > worst {
				worst, worstAt = d, i
			}
		}
		if worst > 1e-3 {
			t.Errorf("chunk %d: last-position logits differ by up to %g (token %d: %v, want %v)", chunk, worst, worstAt, res.PrefillLogits[worstAt], ref.LastLogits[worstAt])
		} else {
			t.Logf("chunk %d: max |logit diff| %.2e", chunk, worst)
		}
	}
	if len(ref.GreedyTokens) < ref.MaxNewTokens {
		// transformers stopped early: it must have been on one of our stop tokens.
		last := ref.GreedyTokens[len(ref.GreedyTokens)-1]
		if !slices.Contains(m.Config().EOS, last) {
			t.Errorf("reference stopped after %d of %d tokens on %d, which is not an eos id %v", len(ref.GreedyTokens), ref.MaxNewTokens, last, m.Config().EOS)
		}
	}
}
