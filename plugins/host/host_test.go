package host

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/longctx/longctx/engine/attention"
	"github.com/longctx/longctx/engine/kvcache"
	"github.com/longctx/longctx/engine/kvpolicy"
	"github.com/longctx/longctx/plugins/kvcache/l2"
	"github.com/longctx/longctx/plugins/kvcache/random"
	"github.com/longctx/longctx/plugins/sdk"
)

var tinyShape = sdk.ModelShape{Family: "llama", NumLayers: 2, NumHeads: 4, NumKVHeads: 2, HeadDim: 8, HiddenSize: 32}

func TestResolve(t *testing.T) {
	roots := []string{testRoot}
	flexDir := filepath.Join(testRoot, "attention", "flex")
	tests := []struct {
		name string
		kind sdk.Kind
		ref  string
		dir  string // expected Dir; "" for a bare executable
		err  string
	}{
		{"short name", sdk.KindAttention, "flex", flexDir, ""},
		{"short name any kind", 0, "l2", filepath.Join(testRoot, "kvcache", "l2"), ""},
		{"folder", sdk.KindAttention, flexDir, flexDir, ""},
		{"manifest file", sdk.KindAttention, filepath.Join(flexDir, "plugin.json"), flexDir, ""},
		{"executable", 0, filepath.Join(flexDir, "flex"), "", ""},
		{"wrong kind", sdk.KindKVCache, flexDir, "", "flex in " + flexDir + " is a attention plugin, not kvcache"},
		{"short name of other kind", sdk.KindKVCache, "flex", "", `no kvcache plugin named "flex"`},
		{"unknown", sdk.KindAttention, "nope", "", `no attention plugin named "nope" (searched ` + filepath.Join(testRoot, "attention", "nope")},
		{"missing path", 0, "./does/not/exist", "", "no such file"},
		{"folder without manifest", 0, testRoot, "", "has no plugin.json"},
		{"bad short name", 0, "a b", "", "want a short name"},
		{"empty", 0, "", "", "no plugin named"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loc, err := Resolve(tt.kind, tt.ref, roots)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if loc.Dir != tt.dir || (tt.dir != "" && loc.Manifest == nil) {
				t.Fatalf("Dir %q (manifest %v), want %q", loc.Dir, loc.Manifest != nil, tt.dir)
			}
			if _, err := os.Stat(loc.Executable); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDefaultSearchPathUsesEnv(t *testing.T) {
	t.Setenv(EnvPluginPath, filepath.Join(testRoot, "nowhere")+string(os.PathListSeparator)+filepath.Join(testRoot, "kvcache"))
	t.Setenv("XDG_DATA_HOME", filepath.Join(testRoot, "xdg"))
	path := DefaultSearchPath()
	want := []string{"plugins", filepath.Join(testRoot, "nowhere"), filepath.Join(testRoot, "kvcache"), filepath.Join(testRoot, "xdg", "longctx", "plugins")}
	if !slices.Equal(path, want) {
		t.Fatalf("DefaultSearchPath = %v, want %v", path, want)
	}
	// ROOT/NAME form: the kvcache folder itself is a root holding l2/.
	loc, err := Resolve(sdk.KindKVCache, "random", path)
	if err != nil || loc.Dir != filepath.Join(testRoot, "kvcache", "random") {
		t.Fatalf("Resolve via %s: %+v, %v", EnvPluginPath, loc, err)
	}
}

func TestListAndDescribe(t *testing.T) {
	cfg := testConfig(t)
	cfg.SearchPath = []string{testRoot, filepath.Join(testRoot, "faulty")}
	ls := List(context.Background(), cfg)
	byName := map[string]*sdk.Description{}
	var failed []string
	for _, l := range ls {
		if l.Err != nil {
			failed = append(failed, l.Location.String())
			continue
		}
		byName[l.Description.Name] = l.Description
	}
	for _, b := range builtins {
		d := byName[filepath.Base(b)]
		if d == nil {
			t.Fatalf("List lacks %s", b)
		}
		if d.Kind.String() != filepath.Dir(b) || d.ProtocolVersion != sdk.ProtocolVersion || d.Version == "" {
			t.Errorf("%s: %+v", b, d)
		}
	}
	if opts := byName["l2"].Options; len(opts) != 6 || opts[0].Name != "ratio" || opts[0].Default != "0.5" {
		t.Errorf("l2 options %+v", byName["l2"].Options)
	}
	// The fault plugins are listed as errors, not a failed list: the
	// gibberish, badproto and exitearly ones cannot even be described.
	for _, mode := range []string{"gibberish", "badproto", "exitearly"} {
		if !slices.ContainsFunc(failed, func(s string) bool { return strings.HasSuffix(s, mode) }) {
			t.Errorf("%s not reported as broken; broken: %v", mode, failed)
		}
	}
	var out bytes.Buffer
	if err := FormatList(&out, ls); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"KIND", "attention  flex", "kvcache    l2", "cpu f32 gqa causal window", "ratio=0.5", "speaks another plugin protocol"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("list output lacks %q:\n%s", want, out.String())
		}
	}
	noOrphans(t)

	d, loc, err := Describe(context.Background(), "flex", cfg)
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := FormatDescription(&out, d, loc); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"flex 0.1.0 (attention plugin, protocol 1)", "mask (string, default \"model\")", "block_q (int in [1, 1024], default \"64\")", "sha256:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("describe output lacks %q:\n%s", want, out.String())
		}
	}
	noOrphans(t)
}

// TestAttentionPluginsOverRPC runs each attention plugin's reference
// implementation through its process on random problems: eager must equal
// the engine's Eager bit for bit (the RPC codec loses nothing), flash and
// flex within fp32 rounding.
func TestAttentionPluginsOverRPC(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(11, 12))
	for _, tt := range []struct {
		name string
		opts []string
		tol  float64
	}{
		{"eager", nil, 0},
		{"flash", []string{"block_q=5", "block_kv=3"}, 2e-6},
		{"flex", []string{"block_kv=16"}, 2e-6},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, err := OpenAttention(ctx, Selection{Ref: tt.name, Options: tt.opts}, tinyShape, sdk.CPU, testConfig(t))
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			if a.Backend().Name() != tt.name {
				t.Errorf("backend name %q", a.Backend().Name())
			}
			for _, shape := range []struct{ q, n, w int }{{30, 30, 0}, {1, 57, 0}, {20, 45, 9}} {
				p := randomProblem(rng, shape.q, shape.n, shape.w)
				want := clone(p)
				if err := (attention.Eager{}).Attend(ctx, want); err != nil {
					t.Fatal(err)
				}
				if err := a.Backend().Attend(ctx, p); err != nil {
					t.Fatal(err)
				}
				if d := maxDiff(p.Out, want.Out); d > tt.tol {
					t.Errorf("shape %+v: max diff %g > %g", shape, d, tt.tol)
				}
			}
		})
	}
	noOrphans(t)
}

func randomProblem(rng *rand.Rand, nq, n, window int) *attention.Problem {
	p := &attention.Problem{NumHeads: 4, NumKVHeads: 2, HeadDim: 8, Scale: 0.35, SlidingWindow: window}
	for i := range nq {
		p.QPos = append(p.QPos, n-nq+i)
	}
	p.Q = randn(rng, nq*4*8)
	p.Out = make([]float32, len(p.Q))
	for range 2 {
		var pos []int
		for t := range n {
			if t >= n-nq || rng.IntN(3) > 0 {
				pos = append(pos, t)
			}
		}
		p.KPos = append(p.KPos, pos)
		p.K = append(p.K, randn(rng, len(pos)*8))
		p.V = append(p.V, randn(rng, len(pos)*8))
	}
	return p
}

func randn(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

func clone(p *attention.Problem) *attention.Problem {
	c := *p
	c.Out = make([]float32, len(p.Out))
	return &c
}

func maxDiff(a, b []float32) float64 {
	var d float64
	for i := range a {
		x := float64(a[i]) - float64(b[i])
		d = max(d, x, -x)
	}
	return d
}

// TestKVPluginsOverRPC checks that scores through the plugin process equal
// the in-process reference, and that a compressor built on the plugin
// compacts a cache as the policy says.
func TestKVPluginsOverRPC(t *testing.T) {
	ctx := context.Background()
	cache := filledCache(t, 2, 2, 8, 40)
	view := cache.View(1)
	in := &kvpolicy.ScoreInput{Layer: 1, HeadDim: 8, K: view.K, V: view.V, Pos: view.Pos}
	for _, tt := range []struct {
		name string
		opts []string
		want func() ([][]float32, error)
	}{
		{"l2", nil, func() ([][]float32, error) { return l2.Score(ctx, in) }},
		{"random", []string{"seed=42"}, func() ([][]float32, error) { return random.Scorer{Seed: 42}.Score(ctx, in) }},
	} {
		kv, err := OpenKV(ctx, Selection{Ref: tt.name, Options: tt.opts}, tinyShape, sdk.CPU, testConfig(t))
		if err != nil {
			t.Fatal(err)
		}
		got, err := kv.Plan.Scorer.Score(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		want, err := tt.want()
		if err != nil {
			t.Fatal(err)
		}
		for g := range want {
			if !slices.Equal(got[g], want[g]) {
				t.Errorf("%s head %d: scores over RPC differ", tt.name, g)
			}
		}
		kv.Close()
	}

	kv, err := OpenKV(ctx, Selection{Ref: "l2", Options: []string{"ratio=0.25", "skip_layers=0"}}, tinyShape, sdk.CPU, testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	want := kvpolicy.Policy{When: kvpolicy.Prefill, Ratio: 0.25, SkipLayers: []int{0}}
	if p := kv.Plan.Policy; p.String() != want.String() {
		t.Fatalf("policy %s, want %s", p, want)
	}
	if kv.Plan.Options["ratio"] != "0.25" || kv.Plan.Options["when"] != "prefill" || kv.Plan.Options["sink"] != "0" {
		t.Errorf("resolved options %v", kv.Plan.Options)
	}
	comp, err := kv.NewCompressor()
	if err != nil {
		t.Fatal(err)
	}
	if err := comp.AfterPrefill(ctx, cache); err != nil {
		t.Fatal(err)
	}
	for g := range 2 {
		if cache.Len(0, g) != 40 || cache.Len(1, g) != 30 {
			t.Fatalf("head %d: layer lengths %d, %d, want 40, 30", g, cache.Len(0, g), cache.Len(1, g))
		}
	}
}

func filledCache(t *testing.T, layers, heads, dim, n int) *kvcache.Cache {
	t.Helper()
	c, err := kvcache.New(layers, heads, dim)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 3))
	pos := make([]int, n)
	for i := range pos {
		pos[i] = i
	}
	for l := range layers {
		if err := c.Append(l, randn(rng, n*heads*dim), randn(rng, n*heads*dim), pos); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// TestOptionErrors checks that bad options are refused with messages that
// name the plugin and the option, and that a refused Prepare leaves the
// plugin usable.
func TestOptionErrors(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	tests := []struct {
		kind sdk.Kind
		ref  string
		opts []string
		dev  sdk.Device
		err  string
	}{
		{sdk.KindAttention, "flash", []string{"blok_q=3"}, sdk.CPU, `attention plugin flash: unknown option "blok_q" (options: block_q, block_kv, prefill_kernel, workers)`},
		{sdk.KindAttention, "flash", []string{"prefill_kernel=tma"}, sdk.CPU, `"tma" is not one of auto, mma.sync, wgmma`},
		{sdk.KindAttention, "flash", []string{"prefill_kernel=wgmma"}, sdk.Device{Kind: "cuda", Arch: "sm_80", DType: "bf16"}, `prefill_kernel=wgmma needs an sm_90a GPU (Hopper), this one is "sm_80"`},
		{sdk.KindAttention, "flash", []string{"block_q=x"}, sdk.CPU, `option block_q=x: "x" is not an integer`},
		{sdk.KindAttention, "flash", []string{"block_q=0"}, sdk.CPU, "0 is below the minimum 1"},
		{sdk.KindAttention, "eager", []string{"x"}, sdk.CPU, `--attn-opt: option "x": want key=value`},
		{sdk.KindAttention, "flex", []string{"mask=q >"}, sdk.CPU, "attention plugin flex: Prepare: mask expression \"q >\": mask:1:4: expected operand"},
		{sdk.KindAttention, "flex", []string{"score=causal"}, sdk.CPU, "causal is a mask preset"},
		{sdk.KindAttention, "flex", nil, sdk.Device{Kind: "cuda", DType: "bf16"}, "attention plugin flex: device cuda not supported (plugin supports [cpu])"},
		{sdk.KindAttention, "flash", nil, sdk.Device{Kind: "cuda", DType: "bf16"}, "attention plugin flash: Prepare: flash: CUDA kernels take head dim 16, 32, 64 or 128, not 8"},
		{sdk.KindKVCache, "l2", []string{"ratio=1.5"}, sdk.CPU, "option ratio=1.5: 1.5 is above the maximum 1"},
		{sdk.KindKVCache, "l2", []string{"ratio=1"}, sdk.CPU, "kvcache plugin l2: Prepare: kv policy: ratio 1 must be in [0, 1)"},
		{sdk.KindKVCache, "l2", []string{"when=decode"}, sdk.CPU, "when=decode needs a positive budget, got 0"},
		{sdk.KindKVCache, "l2", []string{"when=decode", "budget=8", "ratio=0.5"}, sdk.CPU, "ratio applies only with when=prefill"},
		{sdk.KindKVCache, "l2", []string{"budget=8"}, sdk.CPU, "budget applies only with when=decode"},
		{sdk.KindKVCache, "l2", []string{"when=sometimes"}, sdk.CPU, `"sometimes" is not one of prefill, decode`},
		{sdk.KindKVCache, "l2", []string{"skip_layers=0,7"}, sdk.CPU, "skip_layers[1] = 7 out of range [0,2)"},
		{sdk.KindKVCache, "full", []string{"ratio=0.5"}, sdk.CPU, `unknown option "ratio" (this plugin takes no options)`},
		{sdk.KindKVCache, "l2", []string{"ratio=0.5", "ratio=0.4"}, sdk.CPU, `option "ratio" given twice`},
	}
	for _, tt := range tests {
		var err error
		if tt.kind == sdk.KindAttention {
			var a *Attention
			if a, err = OpenAttention(ctx, Selection{Ref: tt.ref, Options: tt.opts}, tinyShape, tt.dev, cfg); err == nil {
				a.Close()
			}
		} else {
			var k *KV
			if k, err = OpenKV(ctx, Selection{Ref: tt.ref, Options: tt.opts}, tinyShape, tt.dev, cfg); err == nil {
				k.Close()
			}
		}
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s %v: error %v\nwant one containing %q", tt.ref, tt.opts, err, tt.err)
		}
	}
	noOrphans(t)

	// The plugin's own refusal leaves it usable.
	p, err := Open(ctx, sdk.KindKVCache, "l2", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.PrepareKV(ctx, tinyShape, sdk.CPU, map[string]string{"when": "decode"}); err == nil {
		t.Fatal("decode without budget accepted")
	}
	if _, err := p.PrepareKV(ctx, tinyShape, sdk.CPU, map[string]string{"when": "decode", "budget": "16", "sink": "4"}); err != nil {
		t.Fatalf("good options after a refusal: %v", err)
	}
	if _, err := p.PrepareAttention(ctx, tinyShape, sdk.CPU, nil); err == nil || !strings.Contains(err.Error(), "cannot be used as a attention plugin") {
		t.Fatalf("kv plugin prepared as attention: %v", err)
	}
}

func newRand() *rand.Rand { return rand.New(rand.NewPCG(99, 100)) }
