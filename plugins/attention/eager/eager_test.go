package eager

import (
	"context"
	"testing"

	"github.com/longctx/longctx/engine/attention"
	"github.com/longctx/longctx/plugins/sdk"
)

func TestPlugin(t *testing.T) {
	p := Plugin()
	if err := sdk.Check(p); err != nil {
		t.Fatal(err)
	}
	o, err := sdk.ResolveOptions(p.Options, map[string]string{"workers": "3"})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := p.Prepare(context.Background(), &sdk.PrepareRequest{Options: o})
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := plan.Reference.(attention.Eager); !ok || e.Workers != 3 {
		t.Fatalf("reference %#v", plan.Reference)
	}
}
