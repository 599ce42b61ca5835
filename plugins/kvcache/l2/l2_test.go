package l2

import (
	"context"
	"math"
	"testing"

	"github.com/longctx/longctx/engine/kvpolicy"
	"github.com/longctx/longctx/plugins/sdk"
)

func TestScoreIsNegativeNorm(t *testing.T) {
	in := &kvpolicy.ScoreInput{HeadDim: 3,
		K:   [][]float32{{3, 4, 0, 1, 2, 2}, {0, 0, 0}},
		Pos: [][]int{{0, 5}, {7}},
	}
	got, err := Score(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]float32{{-5, -3}, {0}}
	for g := range want {
		for i := range want[g] {
			if math.Abs(float64(got[g][i]-want[g][i])) > 1e-6 {
				t.Fatalf("head %d token %d: %v, want %v", g, i, got[g][i], want[g][i])
			}
		}
	}
}

func TestPlugin(t *testing.T) {
	if err := sdk.Check(Plugin()); err != nil {
		t.Fatal(err)
	}
	o, err := sdk.ResolveOptions(Plugin().Options, nil)
	if err != nil || o.Float("ratio") != 0.5 || o.String("when") != "prefill" || len(o.IntList("skip_layers")) != 0 || o.Int("sink") != 0 || o.Int("window") != 0 {
		t.Fatalf("defaults %v, %v", o.Text(), err)
	}
}
