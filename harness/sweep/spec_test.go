package sweep

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestLoadSpecFull(t *testing.T) {
	s, err := LoadSpec(filepath.Join("testdata", "full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Spec{
		Name:   "kv-ratio",
		Out:    "results/kv-ratio",
		Models: []string{"synthetic:llama3-8b", "/models/Qwen2.5-7B"},
		Attn: []Plugin{
			{Name: "plugins/attention/eager"},
			{Name: "plugins/attention/flex", Options: []Option{{Key: "mask", Values: []string{"causal"}}}},
		},
		KV: []Plugin{
			{Name: "plugins/kvcache/full"},
			{Name: "plugins/kvcache/l2", Options: []Option{
				{Key: "ratio", Values: []string{"0.25", "0.5", "0.75"}},
				{Key: "sink", Values: []string{"4"}},
			}},
		},
		Tasks: []Task{
			{Name: "needle", Limit: 4, Depths: "0,0.5,1", Variant: "single"},
			{Name: "narrativeqa", Data: "data/nqa.jsonl"},
			{Name: "synthetic"},
		},
		Contexts:     []int{512, 1024, 32768},
		Batches:      []int{1, 4},
		MaxNewTokens: 32, Warmup: 2, Repeat: 3, Seed: 7, Backend: "cpu",
		Executor: ExecutorSlurm,
		GPUs:     []int{0, 1},
		Slurm: SlurmSpec{
			Partition: "gpu", Time: "02:00:00", Gres: "gpu:1", CPUsPerTask: 8, Mem: "64G", ArrayLimit: 4,
			Extra: []string{"--constraint=h100", "#SBATCH --exclusive"},
			Setup: []string{"module load cuda", "source venv/bin/activate"},
		},
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("parsed spec:\n got %+v\nwant %+v", s, want)
	}
}

func TestParseSpecDefaults(t *testing.T) {
	s, err := ParseSpec([]byte("models: [m]\nattn: [a]\nkv: [k]\ntasks: [t]\ncontexts: [1k]\nbatches: [1]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.MaxNewTokens != DefaultMaxNewTokens || s.Warmup != DefaultWarmup || s.Repeat != DefaultRepeat || s.Executor != ExecutorLocal {
		t.Errorf("defaults: got max_new_tokens %d warmup %d repeat %d executor %q", s.MaxNewTokens, s.Warmup, s.Repeat, s.Executor)
	}
	// An explicit zero warmup is a setting, not a missing value.
	s, err = ParseSpec([]byte("models: [m]\nattn: [a]\nkv: [k]\ntasks: [t]\ncontexts: [1k]\nbatches: [1]\nwarmup: 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Warmup != 0 {
		t.Errorf("warmup: 0 gave %d", s.Warmup)
	}
}

// cpu_numerics bf16 reaches the cells, and only then: fp32 (given or not)
// leaves the cell IDs of older sweeps unchanged.
func TestParseSpecCPUNumerics(t *testing.T) {
	const noAttn = "models: [m]\nkv: [k]\ntasks: [t]\ncontexts: [1k]\nbatches: [1]\n"
	ids := map[string]string{}
	for _, v := range []string{"", "fp32", "bf16"} {
		y := noAttn
		if v != "" {
			y += "cpu_numerics: " + v + "\n"
		}
		s, err := ParseSpec([]byte(y))
		if err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		cells, err := Expand(s)
		if err != nil || len(cells) != 1 {
			t.Fatalf("%q: %d cells, %v", v, len(cells), err)
		}
		if want := map[string]string{"": "", "fp32": "", "bf16": "bf16"}[v]; cells[0].Numerics != want {
			t.Errorf("%q: cell numerics %q, want %q", v, cells[0].Numerics, want)
		}
		ids[v] = cells[0].ID()
	}
	if ids["fp32"] != ids[""] || ids["bf16"] == ids[""] {
		t.Errorf("cell IDs %v: fp32 must keep the default's, bf16 must differ", ids)
	}
}

// base is a valid spec; each error case appends or replaces one line, so
// the expected line number is where that line lands.
const base = "models: [m]\nattn: [a]\nkv: [k]\ntasks: [t]\ncontexts: [1k]\nbatches: [1]\n"

func TestParseSpecErrors(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string // substrings of the error
	}{
		{"unknown top-level key", base + "modles: [x]\n", []string{"[7:1]", "modles"}},
		{"unknown slurm key", base + "slurm:\n  partition: gpu\n  partiton: gpu\n", []string{"[9:3]", "partiton"}},
		{"unknown plugin key", strings.Replace(base, "kv: [k]", "kv:\n  - plugin: l2\n    option: {ratio: 0.5}", 1), []string{"kv[0]", "[5:5]", "option"}},
		{"unknown task key", strings.Replace(base, "tasks: [t]", "tasks:\n  - {name: needle, limt: 3}", 1), []string{"tasks[0]", "[5:20]", "limt"}},
		{"batch type", strings.Replace(base, "batches: [1]", "batches: [1, four]", 1), []string{"[6:"}},
		{"warmup type", base + "warmup: lots\n", []string{"[7:"}},
		{"negative batch", strings.Replace(base, "batches: [1]", "batches: [1, -4]", 1), []string{"[6:14]", "batches[1]"}},
		{"bad context", strings.Replace(base, "contexts: [1k]", "contexts: [1k, 2q]", 1), []string{"[5:16]", "contexts[1]", "2q"}},
		{"zero context", strings.Replace(base, "contexts: [1k]", "contexts: [0]", 1), []string{"[5:12]", "zero"}},
		{"context mapping", strings.Replace(base, "contexts: [1k]", "contexts: [{a: 1}]", 1), []string{"[5:", "contexts[0]", "scalar"}},
		{"contexts not a list", strings.Replace(base, "contexts: [1k]", "contexts: 1k", 1), []string{"[5:11]", "want a list"}},
		{"missing models", strings.Replace(base, "models: [m]\n", "", 1), []string{"models"}},
		{"empty attn", strings.Replace(base, "attn: [a]", "attn: []", 1), []string{"[2:7]", "attn", "empty"}},
		{"plugin without name", strings.Replace(base, "kv: [k]", "kv:\n  - options: {ratio: 0.5}", 1), []string{"[4:", "kv[0]", "plugin is empty"}},
		{"nested option value", strings.Replace(base, "kv: [k]", "kv:\n  - plugin: l2\n    options: {ratio: [[0.5]]}", 1), []string{"[5:", "ratio[0]", "scalar"}},
		{"empty option list", strings.Replace(base, "kv: [k]", "kv:\n  - plugin: l2\n    options: {ratio: []}", 1), []string{"[5:", "ratio", "empty"}},
		{"bad executor", base + "executor: k8s\n", []string{"[7:11]", "k8s"}},
		{"bad cpu_numerics", base + "cpu_numerics: fp16\n", []string{"[7:15]", "fp16", "want fp32 or bf16"}},
		{"cpu_numerics on cuda", base + "backend: cuda\ncpu_numerics: bf16\n", []string{"[8:15]", "CPU engine", "backend is cuda"}},
		{"cpu_numerics with a plugin", base + "cpu_numerics: bf16\n", []string{"[2:", "attn plugin \"a\"", "fp32"}},
		{"duplicate gpu", base + "gpus: [0, 0]\n", []string{"[7:11]", "twice"}},
		{"negative repeat", base + "repeat: -1\n", []string{"[7:9]", "repeat"}},
		{"zero max_new_tokens", base + "max_new_tokens: 0\n", []string{"[7:17]", "max_new_tokens"}},
		{"duplicate key", base + "seed: 1\nseed: 2\n", []string{"[8:1]", "seed"}},
		{"two documents", base + "---\nmodels: [x]\n", []string{"[8:", "2 YAML documents"}},
		{"syntax error", base + "attn: [a\n", []string{"["}},
		{"task without name", strings.Replace(base, "tasks: [t]", "tasks:\n  - {data: x.jsonl}", 1), []string{"[5:", "tasks[0]", "name"}},
		{"custom tag", base + "seed: !secret 3\n", []string{"[7:7]", "tag !secret"}},
		{"custom tag on a list (a go-yaml panic)", "models: !0000000000\n0000000000000000000000000000000000000000000000", []string{"[1:9]", "tag"}},
		{"anchor", strings.Replace(base, "attn: [a]", "attn: &plugins [a]", 1), []string{"[2:7]", "anchors"}},
		{"multi-line extra", base + "slurm:\n  extra: [\"a\\nb\"]\n", []string{"[8:", "extra[0]"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseSpec([]byte(c.yaml))
			if err == nil {
				t.Fatalf("no error for\n%s", c.yaml)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadSpecNamesFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(p, []byte(base+"bogus: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadSpec(p)
	if err == nil || !strings.Contains(err.Error(), p+": [7:1]") {
		t.Errorf("error %v does not name %s and the line", err, p)
	}
}

func TestParseSize(t *testing.T) {
	ok := []struct {
		in   string
		want int
	}{
		{"512", 512}, {"1k", 1 << 10}, {"1K", 1 << 10}, {"32k", 32 << 10}, {" 2k ", 2 << 10}, {"1m", 1 << 20}, {"1024", 1024},
	}
	for _, c := range ok {
		got, err := ParseSize(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "k", "-1", "+5", "0", "1.5k", "1kk", "1g", "0x10", "99999999999", "1048577k"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got)
		}
	}
	got, err := ParseSizeList("512,1k,32k")
	if err != nil || !reflect.DeepEqual(got, []int{512, 1024, 32768}) {
		t.Errorf("ParseSizeList = %v, %v", got, err)
	}
	if _, err := ParseSizeList("512,,1k"); err == nil {
		t.Error("ParseSizeList accepted an empty element")
	}
}

func FuzzParseSpec(f *testing.F) {
	full, err := os.ReadFile(filepath.Join("testdata", "full.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(full)
	f.Add([]byte(base))
	f.Add([]byte(base + "kv:\n  - plugin: l2\n    options: {ratio: [0.1, 0.2], x: [a, b]}\n"))
	f.Add([]byte("attn: &a [x]\nkv: *a\n"))
	f.Add([]byte("contexts: [!!str 1k, .inf, ~]\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSpec(data)
		if err != nil {
			return
		}
		cells, err := Expand(s)
		if err != nil {
			return
		}
		for i, c := range cells {
			if err := c.Validate(); err != nil {
				t.Fatalf("cell %d from an accepted spec is invalid: %v", i, err)
			}
		}
	})
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"512", "1k", "32K", "1m", "-3", "", "1048576k"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			return
		}
		if n <= 0 || n > maxContext {
			t.Fatalf("ParseSize(%q) = %d, outside (0, %d]", s, n, maxContext)
		}
		// The plain decimal spelling must read back the same.
		if m, err := ParseSize(fmt.Sprint(n)); err != nil || m != n {
			t.Fatalf("ParseSize(%d) = %d, %v", n, m, err)
		}
	})
}
