package flash

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/longctx/longctx/engine/attention"
	"github.com/longctx/longctx/plugins/attention/internal/attntest"
)

// TestEqualsEager compares the tiled online softmax with the engine's
// eager reference on random problems, for tile sizes that divide the
// problem, that do not, and that exceed it.
func TestEqualsEager(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	ctx := context.Background()
	for si, s := range attntest.Shapes {
		p := attntest.Problem(rng, s)
		want := attntest.Clone(p)
		if err := (attention.Eager{}).Attend(ctx, want); err != nil {
			t.Fatal(err)
		}
		for _, blocks := range [][2]int{{64, 64}, {1, 1}, {5, 7}, {16, 3}, {256, 512}} {
			got := attntest.Clone(p)
			if err := (Backend{BlockQ: blocks[0], BlockKV: blocks[1]}).Attend(ctx, got); err != nil {
				t.Fatal(err)
			}
			// fp32 rounding of a reordered sum of O(100) terms of size O(1).
			if d := attntest.MaxDiff(got.Out, want.Out); d > 2e-6 {
				t.Errorf("shape %d %+v blocks %v: max |flash − eager| = %g", si, s, blocks, d)
			}
		}
	}
}

func TestRejectsBadProblem(t *testing.T) {
	p := &attention.Problem{NumHeads: 3, NumKVHeads: 2, HeadDim: 4}
	if err := (Backend{BlockQ: 4, BlockKV: 4}).Attend(context.Background(), p); err == nil {
		t.Fatal("accepted 3 heads over 2 KV heads")
	}
	ok := attntest.Problem(rand.New(rand.NewPCG(1, 1)), attntest.Shapes[0])
	if err := (Backend{}).Attend(context.Background(), ok); err == nil {
		t.Fatal("accepted zero block sizes")
	}
}

func TestCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p := attntest.Problem(rand.New(rand.NewPCG(1, 1)), attntest.Shapes[1])
	if err := (Backend{BlockQ: 8, BlockKV: 8}).Attend(ctx, p); err == nil {
		t.Fatal("cancelled context ignored")
	}
}
