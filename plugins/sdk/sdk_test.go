package sdk

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/protobuf/proto"

	"github.com/longctx/longctx/engine/attention"
	"github.com/longctx/longctx/engine/kvpolicy"
	"github.com/longctx/longctx/plugins/sdk/pluginpb"
)

var testSchema = []Option{
	{Name: "name", Type: String, Default: "x"},
	{Name: "count", Type: Int, Default: "3", Min: Bound(1), Max: Bound(10)},
	{Name: "rate", Type: Float, Default: "0.5", Min: Bound(0), Max: Bound(1)},
	{Name: "on", Type: Bool, Default: "false"},
	{Name: "mode", Type: Enum, Default: "a", Choices: []string{"a", "b"}},
	{Name: "layers", Type: IntList, Default: "", Min: Bound(0)},
}

func TestResolveOptions(t *testing.T) {
	o, err := ResolveOptions(testSchema, map[string]string{"count": " 7", "layers": "0, 2,5", "on": "true", "mode": "b"})
	if err != nil {
		t.Fatal(err)
	}
	if o.String("name") != "x" || o.Int("count") != 7 || o.Float("rate") != 0.5 || !o.Bool("on") || o.String("mode") != "b" || !slices.Equal(o.IntList("layers"), []int{0, 2, 5}) {
		t.Fatalf("values %v", o.Text())
	}
	if !o.IsSet("count") || o.IsSet("rate") {
		t.Fatal("IsSet wrong")
	}
	want := map[string]string{"name": "x", "count": "7", "rate": "0.5", "on": "true", "mode": "b", "layers": "0,2,5"}
	for k, v := range want {
		if o.Text()[k] != v {
			t.Errorf("Text()[%s] = %q, want %q", k, o.Text()[k], v)
		}
	}
	if g := o.Given(); len(g) != 4 || g["layers"] != "0,2,5" {
		t.Errorf("Given %v", g)
	}

	for _, tt := range []struct {
		given map[string]string
		err   string
	}{
		{map[string]string{"cnt": "1"}, `unknown option "cnt" (options: name, count, rate, on, mode, layers)`},
		{map[string]string{"count": "1.5"}, `option count=1.5: "1.5" is not an integer`},
		{map[string]string{"count": "11"}, "11 is above the maximum 10"},
		{map[string]string{"count": "0"}, "0 is below the minimum 1"},
		{map[string]string{"rate": "NaN"}, `"NaN" is not a finite number`},
		{map[string]string{"rate": "inf"}, "not a finite number"},
		{map[string]string{"on": "yes"}, `"yes" is not a boolean`},
		{map[string]string{"mode": "c"}, `"c" is not one of a, b`},
		{map[string]string{"layers": "1,,2"}, `element 1: "" is not an integer`},
		{map[string]string{"layers": "-1"}, "element 0: -1 is below the minimum 0"},
		{map[string]string{"count": "99999999999999999999"}, "is not an integer"},
	} {
		if _, err := ResolveOptions(testSchema, tt.given); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%v: error %v, want one containing %q", tt.given, err, tt.err)
		}
	}
}

func TestOptionsPanicOnPluginBugs(t *testing.T) {
	o, err := ResolveOptions(testSchema, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func(){
		"unknown":    func() { o.Int("nope") },
		"wrong type": func() { o.Int("rate") },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

func TestCheckSchema(t *testing.T) {
	if err := CheckSchema(testSchema); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		opt Option
		err string
	}{
		{Option{Name: "Bad", Type: Int, Default: "1"}, "name \"Bad\""},
		{Option{Name: "x", Type: 99}, "unknown type"},
		{Option{Name: "x", Type: Enum, Default: "a"}, "enums need them"},
		{Option{Name: "x", Type: Int, Default: "a"}, "default"},
		{Option{Name: "x", Type: Int, Default: "5", Max: Bound(3)}, "above the maximum"},
		{Option{Name: "x", Type: Float, Default: "0", Min: Bound(math.Inf(-1))}, "bounds must be finite"},
	} {
		if err := CheckSchema([]Option{tt.opt}); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%+v: error %v, want %q", tt.opt, err, tt.err)
		}
	}
	if err := CheckSchema([]Option{{Name: "a", Type: String}, {Name: "a", Type: String}}); err == nil {
		t.Error("duplicate accepted")
	}
}

func TestParseAssignments(t *testing.T) {
	got, err := ParseAssignments([]string{"mask=q >= kv && q - kv < 8", "skip_layers=0,1", "empty="})
	if err != nil {
		t.Fatal(err)
	}
	if got["mask"] != "q >= kv && q - kv < 8" || got["skip_layers"] != "0,1" || got["empty"] != "" {
		t.Fatalf("%v", got)
	}
	for _, bad := range [][]string{{"novalue"}, {"=x"}, {"a=1", "a=2"}} {
		if _, err := ParseAssignments(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

// The Go option types mirror the protocol's enum value for value.
func TestOptionTypesMatchProtocol(t *testing.T) {
	for typ, pb := range map[OptionType]pluginpb.OptionType{
		String: pluginpb.OptionType_OPTION_TYPE_STRING, Int: pluginpb.OptionType_OPTION_TYPE_INT,
		Float: pluginpb.OptionType_OPTION_TYPE_FLOAT, Bool: pluginpb.OptionType_OPTION_TYPE_BOOL,
		Enum: pluginpb.OptionType_OPTION_TYPE_ENUM, IntList: pluginpb.OptionType_OPTION_TYPE_INT_LIST,
	} {
		if int32(typ) != int32(pb) {
			t.Errorf("%s = %d, protocol %d", typ, typ, pb)
		}
	}
	if int32(kvpolicy.Prefill) != int32(pluginpb.KVPolicy_WHEN_PREFILL) || int32(kvpolicy.Decode) != int32(pluginpb.KVPolicy_WHEN_DECODE) {
		t.Error("kvpolicy.When does not match the protocol")
	}
}

func FuzzResolveOptions(f *testing.F) {
	f.Add("count=3", "layers=1,2")
	f.Add("rate=0.25", "mode=b")
	f.Add("on=1", "name=")
	f.Add("=", "x=y=z")
	f.Fuzz(func(t *testing.T, a, b string) {
		given, err := ParseAssignments([]string{a, b})
		if err != nil {
			return
		}
		o, err := ResolveOptions(testSchema, given)
		if err != nil {
			return
		}
		// Canonical text must resolve to the same values.
		again, err := ResolveOptions(testSchema, o.Text())
		if err != nil {
			t.Fatalf("canonical %v rejected: %v", o.Text(), err)
		}
		for k, v := range o.Text() {
			if again.Text()[k] != v {
				t.Fatalf("%s: %q then %q", k, v, again.Text()[k])
			}
		}
	})
}

func randomProblem(rng *rand.Rand) *attention.Problem {
	p := &attention.Problem{NumHeads: 4, NumKVHeads: 2, HeadDim: 4, Scale: 0.5, SlidingWindow: 3, Layer: 2, QPos: []int{5, 6}}
	p.Q = make([]float32, 2*4*4)
	for i := range p.Q {
		p.Q[i] = float32(rng.NormFloat64())
	}
	p.Out = make([]float32, len(p.Q))
	for g := range 2 {
		n := 5 + g
		var pos []int
		for i := range n {
			pos = append(pos, i+g)
		}
		k, v := make([]float32, n*4), make([]float32, n*4)
		for i := range k {
			k[i], v[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
		}
		p.K, p.V, p.KPos = append(p.K, k), append(p.V, v), append(p.KPos, pos)
	}
	return p
}

func TestProblemCodecRoundTrip(t *testing.T) {
	p := randomProblem(rand.New(rand.NewPCG(1, 2)))
	p.Q[3] = float32(math.Inf(1)) // bit patterns travel unchanged
	got, err := decodeProblem(encodeProblem("plan-1", p))
	if err != nil {
		t.Fatal(err)
	}
	if got.NumHeads != 4 || got.NumKVHeads != 2 || got.HeadDim != 4 || got.Scale != 0.5 || got.SlidingWindow != 3 || got.Layer != 2 ||
		!slices.Equal(got.Q, p.Q) || !slices.Equal(got.QPos, p.QPos) || len(got.Out) != len(p.Out) {
		t.Fatalf("decoded %+v", got)
	}
	for g := range 2 {
		if !slices.Equal(got.K[g], p.K[g]) || !slices.Equal(got.V[g], p.V[g]) || !slices.Equal(got.KPos[g], p.KPos[g]) {
			t.Fatalf("kv head %d differs", g)
		}
	}
	bad := encodeProblem("p", p)
	bad.Kv[1].K = bad.Kv[1].K[:7]
	if _, err := decodeProblem(bad); err == nil || !strings.Contains(err.Error(), "kv head 1 keys: 7 bytes") {
		t.Errorf("truncated keys: %v", err)
	}
	bad = encodeProblem("p", p)
	bad.QPos[0] = -1
	if _, err := decodeProblem(bad); err == nil || !strings.Contains(err.Error(), "q_pos[0] = -1") {
		t.Errorf("negative position: %v", err)
	}
	bad = encodeProblem("p", p)
	bad.NumHeads = 3
	if _, err := decodeProblem(bad); err == nil {
		t.Error("inconsistent heads accepted")
	}
}

func FuzzDecodeRequests(f *testing.F) {
	p := randomProblem(rand.New(rand.NewPCG(1, 2)))
	seed, _ := proto.Marshal(encodeProblem("plan-1", p))
	f.Add(seed)
	view := &kvpolicy.ScoreInput{Layer: 1, HeadDim: 4, K: p.K, V: p.V, Pos: p.KPos}
	score, _ := proto.Marshal(encodeScoreInput("plan-1", true, view))
	f.Add(score)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var a pluginpb.AttendRequest
		if proto.Unmarshal(data, &a) == nil {
			if p, err := decodeProblem(&a); err == nil {
				if err := (attention.Eager{}).Attend(context.Background(), p); err != nil {
					t.Fatalf("decoded problem fails: %v", err)
				}
			}
		}
		var s pluginpb.ScoreRequest
		if proto.Unmarshal(data, &s) == nil {
			if in, err := decodeScoreInput(&s); err == nil {
				for g := range in.Pos {
					if len(in.K[g]) != len(in.Pos[g])*in.HeadDim {
						t.Fatal("inconsistent score input accepted")
					}
				}
			}
		}
	})
}

// connect serves impl in-process over a real gRPC connection (no
// subprocess) and returns the host's stub.
func connect[C any](t *testing.T, kind Kind, impl Plugin) C {
	t.Helper()
	client, _ := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{kind.String(): impl.goPlugin(hclog.NewNullLogger())})
	t.Cleanup(func() { client.Close() })
	raw, err := client.Dispense(kind.String())
	if err != nil {
		t.Fatal(err)
	}
	return raw.(C)
}

var shape = ModelShape{Family: "llama", NumLayers: 2, NumHeads: 4, NumKVHeads: 2, HeadDim: 4, HiddenSize: 16}

var caps = Capabilities{DTypes: []string{"f32"}, GQA: true, Causal: true, SlidingWindow: true, Devices: []string{"cpu"}}

type scaled struct{ by float32 }

func (scaled) Name() string { return "scaled" }

func (s scaled) Attend(ctx context.Context, p *attention.Problem) error {
	if err := (attention.Eager{}).Attend(ctx, p); err != nil {
		return err
	}
	for i := range p.Out {
		p.Out[i] *= s.by
	}
	return nil
}

func TestAttentionOverGRPC(t *testing.T) {
	impl := &Attention{
		Info:    Info{Name: "scaled", Version: "1.2.3", Summary: "eager times a factor", Capabilities: caps},
		Options: []Option{{Name: "by", Type: Float, Default: "2"}, {Name: "explode", Type: Bool, Default: "false"}},
		Prepare: func(_ context.Context, req *PrepareRequest) (*AttentionPlan, error) {
			if req.Options.Bool("explode") {
				panic("kaboom")
			}
			return &AttentionPlan{Reference: scaled{float32(req.Options.Float("by"))}}, nil
		},
	}
	if err := Check(impl); err != nil {
		t.Fatal(err)
	}
	c := connect[*AttentionClient](t, KindAttention, impl)
	ctx := context.Background()
	d, err := c.Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "scaled" || d.Kind != KindAttention || d.Version != "1.2.3" || d.ProtocolVersion != ProtocolVersion || len(d.Options) != 2 || d.Options[0].Default != "2" || !d.Capabilities.GQA {
		t.Fatalf("description %+v", d)
	}
	prep, err := c.Prepare(ctx, shape, CPU, map[string]string{"by": "3"})
	if err != nil {
		t.Fatal(err)
	}
	if prep.Options["by"] != "3" || prep.Options["explode"] != "false" || prep.Policy != nil {
		t.Fatalf("prepared %+v", prep)
	}
	p := randomProblem(rand.New(rand.NewPCG(3, 4)))
	want := *p
	want.Out = make([]float32, len(p.Out))
	if err := (scaled{3}).Attend(ctx, &want); err != nil {
		t.Fatal(err)
	}
	if err := c.Attend(ctx, prep.PlanID, p); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.Out, want.Out) {
		t.Fatal("output over gRPC differs from the reference run in-process")
	}
	for _, tt := range []struct {
		opts map[string]string
		dev  Device
		err  string
	}{
		{map[string]string{"explode": "true"}, CPU, "Prepare panicked: kaboom"},
		{map[string]string{"by": "x"}, CPU, `option by=x: "x" is not a finite number`},
		{nil, Device{Kind: "cuda"}, "device cuda not supported"},
	} {
		if _, err := c.Prepare(ctx, shape, tt.dev, tt.opts); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%v: error %v, want %q", tt.opts, err, tt.err)
		}
	}
	if err := c.Attend(ctx, "plan-99", p); err == nil || !strings.Contains(err.Error(), `unknown plan id "plan-99"`) {
		t.Errorf("unknown plan: %v", err)
	}
	if _, err := c.Prepare(ctx, ModelShape{NumLayers: 1}, CPU, nil); err == nil {
		t.Error("invalid shape accepted")
	}
}

func TestKVCacheOverGRPC(t *testing.T) {
	var sawValues bool
	impl := &KVCache{
		Info:    Info{Name: "sum", Version: "0.1.0", Capabilities: caps},
		Options: append(PolicyOptions(PolicyDefaults{Ratio: 0.5, Sink: 1}), Option{Name: "values", Type: Bool, Default: "true"}),
		Prepare: func(_ context.Context, req *PrepareRequest) (*KVPlan, error) {
			pol, err := PolicyFrom(req.Options, req.Model)
			if err != nil {
				return nil, err
			}
			score := func(_ context.Context, in *kvpolicy.ScoreInput) ([][]float32, error) {
				sawValues = in.V[0] != nil
				out := make([][]float32, len(in.K))
				for g, k := range in.K {
					for i := range in.Pos[g] {
						out[g] = append(out[g], k[i*in.HeadDim]+float32(in.Layer))
					}
				}
				return out, nil
			}
			return &KVPlan{Policy: pol, Scorer: kvpolicy.ScorerFunc(score), NeedsValues: req.Options.Bool("values")}, nil
		},
	}
	c := connect[*KVClient](t, KindKVCache, impl)
	ctx := context.Background()
	prep, err := c.Prepare(ctx, shape, CPU, map[string]string{"ratio": "0.25", "skip_layers": "1"})
	if err != nil {
		t.Fatal(err)
	}
	if prep.Policy == nil || prep.Policy.String() != "when=prefill ratio=0.25 skip_layers=1 sink=1" || !prep.NeedsValues {
		t.Fatalf("policy %v, needs values %v", prep.Policy, prep.NeedsValues)
	}
	p := randomProblem(rand.New(rand.NewPCG(5, 6)))
	in := &kvpolicy.ScoreInput{Layer: 1, HeadDim: 4, K: p.K, V: p.V, Pos: p.KPos}
	scores, err := c.Score(ctx, prep.PlanID, prep.NeedsValues, in)
	if err != nil {
		t.Fatal(err)
	}
	for g := range in.K {
		for i := range in.Pos[g] {
			if scores[g][i] != in.K[g][i*4]+1 {
				t.Fatalf("head %d token %d: score %v", g, i, scores[g][i])
			}
		}
	}
	if !sawValues {
		t.Error("values were asked for but not sent")
	}
	if _, err := c.Score(ctx, prep.PlanID, false, in); err != nil || sawValues {
		t.Errorf("values sent though not asked for (%v)", err)
	}
	if _, err := c.Prepare(ctx, shape, CPU, map[string]string{"when": "decode", "budget": "4", "ratio": "0.3"}); err == nil || !strings.Contains(err.Error(), "ratio applies only with when=prefill") {
		t.Errorf("ratio with decode: %v", err)
	}
	// A description of the other kind is refused.
	other := connect[*AttentionClient](t, KindAttention, &Attention{Info: Info{Name: "x", Capabilities: caps}, Prepare: func(context.Context, *PrepareRequest) (*AttentionPlan, error) { return nil, errors.New("no") }})
	if _, err := other.Prepare(ctx, shape, CPU, nil); err == nil || !strings.Contains(err.Error(), "no") {
		t.Errorf("plugin error not passed on: %v", err)
	}
}

func TestCheck(t *testing.T) {
	ok := func(context.Context, *PrepareRequest) (*AttentionPlan, error) { return nil, nil }
	for _, tt := range []struct {
		p   Plugin
		err string
	}{
		{&Attention{Info: Info{Name: "Bad Name", Capabilities: caps}, Prepare: ok}, `plugin name "Bad Name"`},
		{&Attention{Info: Info{Name: "a", Capabilities: caps}}, "no Prepare function"},
		{&Attention{Info: Info{Name: "a", Capabilities: Capabilities{Devices: []string{"tpu"}}}, Prepare: ok}, `unknown device "tpu"`},
		{&Attention{Info: Info{Name: "a", Capabilities: caps}, Options: []Option{{Name: "x", Type: Int, Default: "y"}}, Prepare: ok}, "option schema"},
	} {
		if err := Check(tt.p); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("error %v, want %q", err, tt.err)
		}
	}
}
