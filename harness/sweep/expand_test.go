package sweep

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/longctx/longctx/harness/results"
)

func TestExpandOrder(t *testing.T) {
	s, err := ParseSpec([]byte(`
models: [m1, m2]
attn: [a]
kv:
  - full
  - plugin: l2
    options: {ratio: [0.25, 0.5], sink: [0, 4]}
tasks: [t]
contexts: [512, 1k]
batches: [1]
`))
	if err != nil {
		t.Fatal(err)
	}
	cells, err := Expand(s)
	if err != nil {
		t.Fatal(err)
	}
	// The order documented on Expand: model slowest, then KV variant (options
	// by key, last key fastest), then context.
	var got []string
	for _, c := range cells {
		got = append(got, fmt.Sprintf("%s %s %v %d", c.Model, c.KV, c.KVOpts, c.Context))
	}
	var want []string
	for _, m := range []string{"m1", "m2"} {
		for _, kv := range []string{
			"full []",
			"l2 [ratio=0.25 sink=0]", "l2 [ratio=0.25 sink=4]",
			"l2 [ratio=0.5 sink=0]", "l2 [ratio=0.5 sink=4]",
		} {
			for _, c := range []int{512, 1024} {
				want = append(want, fmt.Sprintf("%s %s %d", m, kv, c))
			}
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("expansion order:\n got %q\nwant %q", got, want)
	}
	for _, c := range cells {
		if c.MaxNewTokens != DefaultMaxNewTokens || c.Repeat != DefaultRepeat || c.Warmup != DefaultWarmup || c.Batch != 1 || c.Attn != "a" || c.Task != "t" {
			t.Errorf("cell %+v does not carry the spec's settings", c)
		}
	}
}

func TestExpandFullCountAndIDs(t *testing.T) {
	s, err := LoadSpec(filepath.Join("testdata", "full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cells, err := Expand(s)
	if err != nil {
		t.Fatal(err)
	}
	// 2 models × 2 attn × (1 + 3) kv variants × 3 tasks × 3 contexts × 2 batches.
	if want := 2 * 2 * 4 * 3 * 3 * 2; len(cells) != want {
		t.Fatalf("got %d cells, want %d", len(cells), want)
	}
	seen := map[string]int{}
	for i, c := range cells {
		id := c.ID()
		if j, dup := seen[id]; dup {
			t.Fatalf("cells %d and %d share ID %s:\n%+v\n%+v", j, i, id, cells[j], c)
		}
		seen[id] = i
		if err := results.ValidateCellID(id); err != nil {
			t.Errorf("cell %d: %v", i, err)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("cell %d: %v", i, err)
		}
	}
	// Expanding again gives the same cells and IDs.
	again, err := Expand(s)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cells, again) {
		t.Error("a second expansion differs")
	}
}

func TestExpandRemovesDuplicates(t *testing.T) {
	s, err := ParseSpec([]byte("models: [m, m]\nattn: [a]\nkv: [k]\ntasks: [t]\ncontexts: [1k, 1024, 512]\nbatches: [1]\n"))
	if err != nil {
		t.Fatal(err)
	}
	cells, err := Expand(s)
	if err != nil {
		t.Fatal(err)
	}
	var ctxs []int
	for _, c := range cells {
		ctxs = append(ctxs, c.Context)
	}
	if !reflect.DeepEqual(ctxs, []int{1024, 512}) {
		t.Errorf("contexts after removing duplicates: %v, want [1024 512]", ctxs)
	}
}

func TestExpandTooLarge(t *testing.T) {
	vals := make([]string, 400)
	for i := range vals {
		vals[i] = fmt.Sprint(i)
	}
	list := "[" + strings.Join(vals, ", ") + "]"
	s, err := ParseSpec([]byte("models: [m]\nattn: [a]\nkv:\n  - plugin: k\n    options: {x: " + list + ", y: " + list + "}\ntasks: [t]\ncontexts: [1k]\nbatches: [1]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Expand(s); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("Expand of 160000 cells: %v, want a size error", err)
	}
}

func TestCellID(t *testing.T) {
	c := Cell{
		Model: "/models/Llama-3.1-8B", Attn: "plugins/attention/flex", KV: "plugins/kvcache/l2",
		KVOpts: []string{"sink=4", "ratio=0.5"}, Task: "needle", Context: 32768, Batch: 4,
		MaxNewTokens: 32, Repeat: 1,
	}
	id := c.ID()
	if !strings.HasPrefix(id, "Llama-3.1-8B_flex_l2+ratio=0.5+sink=4_needle_c32768_b4-") {
		t.Errorf("ID %q lacks the readable slug", id)
	}
	if err := results.ValidateCellID(id); err != nil {
		t.Error(err)
	}
	// Option order does not change the ID; every field does.
	reordered := c
	reordered.KVOpts = []string{"ratio=0.5", "sink=4"}
	if reordered.ID() != id {
		t.Error("reordering options changed the ID")
	}
	if c.KVOpts[0] != "sink=4" {
		t.Error("ID sorted the caller's option slice in place")
	}
	changes := []func(*Cell){
		func(c *Cell) { c.Model = "/other/Llama-3.1-8B" },
		func(c *Cell) { c.AttnOpts = []string{"mask=causal"} },
		func(c *Cell) { c.KVOpts = []string{"sink=4", "ratio=0.25"} },
		func(c *Cell) { c.Data = "x.jsonl" },
		func(c *Cell) { c.Limit = 3 },
		func(c *Cell) { c.Depths = "0.5" },
		func(c *Cell) { c.Variant = "multi" },
		func(c *Cell) { c.MaxNewTokens = 33 },
		func(c *Cell) { c.Warmup = 1 },
		func(c *Cell) { c.Repeat = 2 },
		func(c *Cell) { c.Seed = 1 },
		func(c *Cell) { c.Backend = "cpu" },
		func(c *Cell) { c.Device = "1" },
	}
	seen := map[string]int{id: -1}
	for i, change := range changes {
		d := c
		change(&d)
		did := d.ID()
		if j, dup := seen[did]; dup {
			t.Errorf("change %d gives the ID of change %d: %s", i, j, did)
		}
		seen[did] = i
	}
}

func TestCellIDOddNames(t *testing.T) {
	for _, m := range []string{"", "/", "...", "-x", "模型", strings.Repeat("a", 500), "a b/c:d"} {
		c := Cell{Model: m, Attn: ".", KV: "--", Task: "t?"}
		if err := results.ValidateCellID(c.ID()); err != nil {
			t.Errorf("model %q: %v", m, err)
		}
	}
}

// The ID hashes the cell's JSON with omitted zero fields: pinning that
// encoding catches a change that would make every existing sweep rerun.
func TestCellIDEncoding(t *testing.T) {
	c := Cell{Model: "m", Attn: "a", KV: "k", KVOpts: []string{"z=1", "b=2"}, Task: "t", Context: 512, Batch: 1, MaxNewTokens: 8, Repeat: 1}
	canon := `{"model":"m","attn":"a","kv":"k","kv_opts":["b=2","z=1"],"task":"t","context":512,"batch":1,"max_new_tokens":8,"repeat":1}`
	sum := sha256.Sum256([]byte(canon))
	if want := "m_a_k+b=2+z=1_t_c512_b1-" + hex.EncodeToString(sum[:])[:12]; c.ID() != want {
		t.Errorf("ID = %s, want %s", c.ID(), want)
	}
}

// Without attn or kv lists a sweep uses the engine's built-in attention and
// no compression: cells with empty plugin names, which are valid.
func TestSpecWithoutPluginsUsesBuiltins(t *testing.T) {
	spec, err := ParseSpec([]byte("models: [synthetic:tiny]\ntasks: [synthetic]\ncontexts: [64, 1k]\nbatches: [1]\n"))
	if err != nil {
		t.Fatal(err)
	}
	cells, err := Expand(spec)
	if err != nil {
		t.Fatal(err)
	}
	if len(cells) != 2 {
		t.Fatalf("want 2 cells, got %d", len(cells))
	}
	for _, c := range cells {
		if c.Attn != "" || c.KV != "" {
			t.Errorf("cell %+v: want no plugins", c)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("cell %s: %v", c.ID(), err)
		}
	}
	bad := cells[0]
	bad.KVOpts = []string{"ratio=0.5"}
	if err := bad.Validate(); err == nil {
		t.Error("kv options without a kv plugin must be refused")
	}
}
