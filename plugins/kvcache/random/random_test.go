package random

import (
	"context"
	"slices"
	"testing"

	"github.com/longctx/longctx/engine/kvpolicy"
	"github.com/longctx/longctx/plugins/sdk"
)

func TestScores(t *testing.T) {
	pos := make([]int, 1000)
	for i := range pos {
		pos[i] = i
	}
	in := func(layer int) *kvpolicy.ScoreInput {
		return &kvpolicy.ScoreInput{Layer: layer, HeadDim: 1, K: [][]float32{make([]float32, 1000), make([]float32, 1000)}, Pos: [][]int{pos, pos}}
	}
	ctx := context.Background()
	a, _ := Scorer{Seed: 1}.Score(ctx, in(0))
	b, _ := Scorer{Seed: 1}.Score(ctx, in(0))
	c, _ := Scorer{Seed: 2}.Score(ctx, in(0))
	d, _ := Scorer{Seed: 1}.Score(ctx, in(1))
	if !slices.Equal(a[0], b[0]) {
		t.Fatal("same seed, different scores")
	}
	if slices.Equal(a[0], c[0]) || slices.Equal(a[0], a[1]) || slices.Equal(a[0], d[0]) {
		t.Fatal("scores do not depend on seed, head and layer")
	}
	// A token's score depends on its position only, not on its index.
	sub, _ := Scorer{Seed: 1}.Score(ctx, &kvpolicy.ScoreInput{HeadDim: 1, K: [][]float32{{0}}, Pos: [][]int{{500}}})
	if sub[0][0] != a[0][500] {
		t.Fatal("score depends on the token's index")
	}
	var mean float64
	for _, s := range a[0] {
		if s < 0 || s >= 1 {
			t.Fatalf("score %v outside [0, 1)", s)
		}
		mean += float64(s) / 1000
	}
	if mean < 0.45 || mean > 0.55 { // 1000 uniforms: standard error 0.009
		t.Fatalf("mean score %v", mean)
	}
	if err := sdk.Check(Plugin()); err != nil {
		t.Fatal(err)
	}
}
