package needle

import (
	"testing"
	"time"

	"github.com/longctx/longctx/datasets/internal/testtok"
	"github.com/longctx/longctx/datasets/prompt"
)

// TestGenerateRealTokenizers checks the acceptance criteria with the real
// Llama 3, Qwen3 and Llama 2 tokenizers and their chat templates: every
// prompt within its token budget and within one sentence of it, the target
// within one sentence of its depth, values unique, distractors distinct.
func TestGenerateRealTokenizers(t *testing.T) {
	grids := []struct {
		variant Variant
		lengths []int
		depths  []float64
	}{
		{Single, []int{512, 4096}, []float64{0, 0.1, 0.25, 0.5, 0.75, 0.9, 1}},
		{Single, []int{32768}, []float64{0, 0.37, 1}},
		{MultiKey, []int{1024, 8192}, []float64{0, 0.5, 1}},
		{MultiValue, []int{2048}, []float64{0.2, 0.8}},
	}
	for _, name := range testtok.RealNames() {
		t.Run(name, func(t *testing.T) {
			m := testtok.Real(t, name)
			b, err := prompt.NewBuilder(m.Tok, prompt.Options{Chat: m.Chat, AddSpecial: m.AddSpecial})
			if err != nil {
				t.Fatal(err)
			}
			for _, grid := range grids {
				start := time.Now()
				prompts, err := Generate(b, Config{Lengths: grid.lengths, Depths: grid.depths, Variant: grid.variant, Seed: 42})
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%s %v: %d prompts in %v", grid.variant, grid.lengths, len(prompts), time.Since(start))
				for i, p := range prompts {
					checkPrompt(t, m.Tok, m.AddSpecial, p, grid.variant, grid.lengths[i/len(grid.depths)], grid.depths[i%len(grid.depths)])
				}
			}
		})
	}
}
