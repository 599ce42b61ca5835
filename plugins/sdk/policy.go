package sdk

import (
	"fmt"

	"github.com/longctx/longctx/engine/kvpolicy"
)

// PolicyDefaults are a KV method's defaults for the shared policy options.
type PolicyDefaults struct {
	Ratio        float64
	Sink, Window int
}

// PolicyOptions returns the option schema every KV-cache method shares:
// ratio, when, budget, skip_layers, sink and window. A method appends its
// own options to it.
func PolicyOptions(d PolicyDefaults) []Option {
	return []Option{
		{Name: "ratio", Type: Float, Default: formatValue(d.Ratio), Min: Bound(0), Max: Bound(1),
			Help: "fraction of each head's tokens removed after the prefill (when=prefill), in [0, 1)"},
		{Name: "when", Type: Enum, Default: "prefill", Choices: []string{"prefill", "decode"},
			Help: "prefill: compress once after the prompt; decode: keep each head within budget tokens"},
		{Name: "budget", Type: Int, Default: "0", Min: Bound(0),
			Help: "tokens each head may hold (when=decode); the lowest-scoring token is evicted past it"},
		{Name: "skip_layers", Type: IntList, Default: "", Min: Bound(0),
			Help: "layers left uncompressed, e.g. 0,1"},
		{Name: "sink", Type: Int, Default: formatValue(d.Sink), Min: Bound(0),
			Help: "first tokens of each head that are never evicted"},
		{Name: "window", Type: Int, Default: formatValue(d.Window), Min: Bound(0),
			Help: "most recent tokens of each head that are never evicted"},
	}
}

// PolicyFrom builds and checks the policy from options declared with
// PolicyOptions. Ratio applies to when=prefill and budget to when=decode;
// setting one with the other mode is an error rather than silently ignored.
func PolicyFrom(o Options, m ModelShape) (kvpolicy.Policy, error) {
	when, err := kvpolicy.ParseWhen(o.String("when"))
	if err != nil {
		return kvpolicy.Policy{}, err
	}
	p := kvpolicy.Policy{
		When:       when,
		SkipLayers: o.IntList("skip_layers"),
		Sink:       o.Int("sink"),
		Window:     o.Int("window"),
	}
	switch when {
	case kvpolicy.Prefill:
		if o.IsSet("budget") {
			return kvpolicy.Policy{}, fmt.Errorf("budget applies only with when=decode")
		}
		p.Ratio = o.Float("ratio")
	case kvpolicy.Decode:
		if o.IsSet("ratio") {
			return kvpolicy.Policy{}, fmt.Errorf("ratio applies only with when=prefill; use budget with when=decode")
		}
		p.Budget = o.Int("budget")
	}
	if err := p.Validate(m.NumLayers); err != nil {
		return kvpolicy.Policy{}, err
	}
	return p, nil
}
