package full

import (
	"context"
	"testing"

	"github.com/longctx/longctx/plugins/sdk"
)

func TestNeverEvicts(t *testing.T) {
	p := Plugin()
	if err := sdk.Check(p); err != nil {
		t.Fatal(err)
	}
	plan, err := p.Prepare(context.Background(), &sdk.PrepareRequest{})
	if err != nil || !plan.Policy.Inactive() || plan.Scorer != nil {
		t.Fatalf("plan %+v, %v", plan, err)
	}
}
