package streaming

import (
	"context"
	"slices"
	"testing"

	"github.com/longctx/longctx/engine/kvpolicy"
	"github.com/longctx/longctx/plugins/sdk"
)

// TestKeepsSinksAndRecent: with the policy's selection, position scores
// keep the sinks and the most recent tokens, which is StreamingLLM.
func TestKeepsSinksAndRecent(t *testing.T) {
	pos := []int{0, 1, 2, 3, 10, 11, 12, 20, 21, 30}
	scores, err := Score(context.Background(), &kvpolicy.ScoreInput{HeadDim: 1, K: [][]float32{make([]float32, len(pos))}, Pos: [][]int{pos}})
	if err != nil {
		t.Fatal(err)
	}
	keep, err := kvpolicy.Select(scores[0], 6, 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{0, 1, 6, 7, 8, 9}; !slices.Equal(keep, want) {
		t.Fatalf("kept indices %v, want %v", keep, want)
	}
	if err := sdk.Check(Plugin()); err != nil {
		t.Fatal(err)
	}
}
