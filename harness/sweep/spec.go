package sweep

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// Defaults for the per-cell settings a spec may leave out. `harness run`
// should use the same values so a cell run by hand and one run by a sweep
// agree.
const (
	DefaultMaxNewTokens = 64
	DefaultWarmup       = 1
	DefaultRepeat       = 1
)

// Executors a spec may name.
const (
	ExecutorLocal = "local"
	ExecutorSlurm = "slurm"
)

// Spec is a parsed sweep description. See ParseSpec for the YAML form.
type Spec struct {
	Name     string
	Out      string // results folder
	Models   []string
	Attn     []Plugin
	KV       []Plugin
	Tasks    []Task
	Contexts []int // tokens
	Batches  []int

	MaxNewTokens int
	Warmup       int
	Repeat       int
	Seed         int64
	Backend      string // hint for the runner, e.g. "cpu" or "cuda"
	Device       string
	// CPUNumerics is "bf16" for the CPU engine's bf16 arithmetic, empty
	// for fp32 (the default).
	CPUNumerics string

	Executor string // ExecutorLocal or ExecutorSlurm
	GPUs     []int  // local executor: one worker per GPU; empty = one sequential worker
	Slurm    SlurmSpec
}

// Plugin is one attention or KV entry of the grid. An option with several
// values is swept: each value gives its own cells.
type Plugin struct {
	Name    string
	Options []Option // sorted by key
}

// Option is one plugin option and the values to sweep it over.
type Option struct {
	Key    string
	Values []string
}

// Task is one evaluation task of the grid.
type Task struct {
	Name    string // narrativeqa, hotpotqa, needle, synthetic, ...
	Data    string // dataset path; empty = the task's default
	Limit   int    // samples; 0 = all
	Depths  string // needle: comma-separated depths
	Variant string // needle variant
}

// SlurmSpec holds the user's sbatch settings. Empty fields are left to the
// cluster's defaults.
type SlurmSpec struct {
	Partition   string
	Time        string
	Gres        string
	CPUsPerTask int
	Mem         string
	ArrayLimit  int      // at most this many tasks at once (--array=0-N%P); 0 = no limit
	Extra       []string // raw sbatch options, with or without the leading "#SBATCH"
	Setup       []string // shell lines run before the harness (module load, venv, ...)
}

type rawSpec struct {
	Name         string   `yaml:"name"`
	Out          string   `yaml:"out"`
	Models       []string `yaml:"models"`
	Attn         ast.Node `yaml:"attn"`
	KV           ast.Node `yaml:"kv"`
	Tasks        ast.Node `yaml:"tasks"`
	Contexts     ast.Node `yaml:"contexts"`
	Batches      []int    `yaml:"batches"`
	MaxNewTokens *int     `yaml:"max_new_tokens"`
	Warmup       *int     `yaml:"warmup"`
	Repeat       *int     `yaml:"repeat"`
	Seed         int64    `yaml:"seed"`
	Backend      string   `yaml:"backend"`
	Device       string   `yaml:"device"`
	CPUNumerics  string   `yaml:"cpu_numerics"`
	Executor     string   `yaml:"executor"`
	GPUs         []int    `yaml:"gpus"`
	Slurm        rawSlurm `yaml:"slurm"`
}

type rawSlurm struct {
	Partition   string   `yaml:"partition"`
	Time        string   `yaml:"time"`
	Gres        string   `yaml:"gres"`
	CPUsPerTask int      `yaml:"cpus_per_task"`
	Mem         string   `yaml:"mem"`
	ArrayLimit  int      `yaml:"array_limit"`
	Extra       []string `yaml:"extra"`
	Setup       []string `yaml:"setup"`
}

type rawPlugin struct {
	Plugin  string              `yaml:"plugin"`
	Options map[string]ast.Node `yaml:"options"`
}

type rawTask struct {
	Name    string `yaml:"name"`
	Data    string `yaml:"data"`
	Limit   int    `yaml:"limit"`
	Depths  string `yaml:"depths"`
	Variant string `yaml:"variant"`
}

// LoadSpec reads and parses a sweep file; errors name the file and line.
func LoadSpec(path string) (*Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read sweep spec: %w", err)
	}
	s, err := ParseSpec(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// ParseSpec parses a sweep description:
//
//	name: kv-ratio
//	out: results/kv-ratio
//	models: [synthetic:llama3-8b]
//	attn:                       # a plugin path, or {plugin, options}
//	  - plugins/attention/eager
//	kv:
//	  - plugins/kvcache/full
//	  - plugin: plugins/kvcache/l2
//	    options: {ratio: [0.25, 0.5, 0.75], sink: 4}   # a list is swept
//	tasks:                      # a name, or {name, data, limit, depths, variant}
//	  - {name: needle, limit: 4, depths: "0,0.5,1"}
//	contexts: [512, 1k, 32k]    # k = 1024 (see ParseSize)
//	batches: [1, 4]
//	max_new_tokens: 32          # default 64
//	warmup: 1                   # default 1
//	repeat: 3                   # default 1
//	seed: 7
//	backend: cpu                # optional runner hints
//	device: ""
//	cpu_numerics: bf16          # CPU engine arithmetic: fp32 (default) or bf16
//	executor: local             # or slurm
//	gpus: [0, 1]                # local: one worker per GPU
//	slurm: {partition: gpu, time: "02:00:00", gres: "gpu:1", cpus_per_task: 8,
//	        mem: 64G, array_limit: 4, extra: ["--constraint=h100"], setup: ["module load cuda"]}
//
// Decoding is strict: unknown keys, wrong types and duplicate keys are errors
// that name the line ("[line:column] message").
func ParseSpec(data []byte) (*Spec, error) {
	var file *ast.File
	if err := decodeYAML(func() (err error) { file, err = parser.ParseBytes(data, 0); return err }); err != nil {
		return nil, err
	}
	if len(file.Docs) > 1 {
		return nil, fmt.Errorf("%sthe sweep spec has %d YAML documents; want one", nodePos(file.Docs[1].Body), len(file.Docs))
	}
	for _, doc := range file.Docs {
		if err := checkNodes(doc); err != nil {
			return nil, err
		}
	}
	var raw rawSpec
	if err := decodeYAML(func() error { return yaml.UnmarshalWithOptions(data, &raw, yaml.Strict()) }); err != nil {
		return nil, err
	}
	loc := locator{file: file}
	s := &Spec{
		Name:         raw.Name,
		Out:          raw.Out,
		Models:       raw.Models,
		Batches:      raw.Batches,
		MaxNewTokens: DefaultMaxNewTokens,
		Warmup:       DefaultWarmup,
		Repeat:       DefaultRepeat,
		Seed:         raw.Seed,
		Backend:      raw.Backend,
		Device:       raw.Device,
		Executor:     raw.Executor,
		GPUs:         raw.GPUs,
		Slurm: SlurmSpec{
			Partition: raw.Slurm.Partition, Time: raw.Slurm.Time, Gres: raw.Slurm.Gres,
			CPUsPerTask: raw.Slurm.CPUsPerTask, Mem: raw.Slurm.Mem, ArrayLimit: raw.Slurm.ArrayLimit,
			Extra: raw.Slurm.Extra, Setup: raw.Slurm.Setup,
		},
	}
	var err error
	var errs []error
	fail := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s"+format, append([]any{loc.pos(path)}, args...)...))
	}
	if s.Attn, err = parsePlugins(raw.Attn, "attn"); err != nil {
		errs = append(errs, err)
	}
	if s.KV, err = parsePlugins(raw.KV, "kv"); err != nil {
		errs = append(errs, err)
	}
	if s.Tasks, err = parseTasks(raw.Tasks); err != nil {
		errs = append(errs, err)
	}
	if s.Contexts, err = parseContexts(raw.Contexts); err != nil {
		errs = append(errs, err)
	}
	if len(s.Models) == 0 {
		fail("$", "models: the list is empty or missing")
	}
	for i, m := range s.Models {
		if strings.TrimSpace(m) == "" {
			fail(fmt.Sprintf("$.models[%d]", i), "models[%d] is empty", i)
		}
	}
	if len(s.Batches) == 0 {
		fail("$", "batches: the list is empty or missing")
	}
	for i, b := range s.Batches {
		if b <= 0 {
			fail(fmt.Sprintf("$.batches[%d]", i), "batches[%d] = %d is not positive", i, b)
		}
	}
	if raw.MaxNewTokens != nil {
		s.MaxNewTokens = *raw.MaxNewTokens
		if s.MaxNewTokens <= 0 {
			fail("$.max_new_tokens", "max_new_tokens = %d is not positive", s.MaxNewTokens)
		}
	}
	if raw.Warmup != nil {
		s.Warmup = *raw.Warmup
		if s.Warmup < 0 {
			fail("$.warmup", "warmup = %d is negative", s.Warmup)
		}
	}
	if raw.Repeat != nil {
		s.Repeat = *raw.Repeat
		if s.Repeat <= 0 {
			fail("$.repeat", "repeat = %d is not positive", s.Repeat)
		}
	}
	switch raw.CPUNumerics {
	case "", "fp32":
	case "bf16":
		s.CPUNumerics = raw.CPUNumerics
		if s.Backend == "cuda" {
			fail("$.cpu_numerics", "cpu_numerics applies to the CPU engine; backend is cuda (bf16 always)")
		}
		for i, a := range s.Attn {
			if a.Name == "" {
				continue // the engine's own attention: EagerBF16
			}
			fail(fmt.Sprintf("$.attn[%d]", i), "cpu_numerics bf16 runs the built-in bf16 eager attention; attn plugin %q computes in fp32 on the CPU", a.Name)
		}
	default:
		fail("$.cpu_numerics", "cpu_numerics %q: want fp32 or bf16", raw.CPUNumerics)
	}
	switch s.Executor {
	case "":
		s.Executor = ExecutorLocal
	case ExecutorLocal, ExecutorSlurm:
	default:
		fail("$.executor", "executor %q: want %q or %q", s.Executor, ExecutorLocal, ExecutorSlurm)
	}
	seen := map[int]bool{}
	for i, g := range s.GPUs {
		if g < 0 {
			fail(fmt.Sprintf("$.gpus[%d]", i), "gpus[%d] = %d is negative", i, g)
		}
		if seen[g] {
			fail(fmt.Sprintf("$.gpus[%d]", i), "gpus[%d] = %d is listed twice", i, g)
		}
		seen[g] = true
	}
	if s.Slurm.CPUsPerTask < 0 {
		fail("$.slurm.cpus_per_task", "slurm.cpus_per_task = %d is negative", s.Slurm.CPUsPerTask)
	}
	if s.Slurm.ArrayLimit < 0 {
		fail("$.slurm.array_limit", "slurm.array_limit = %d is negative", s.Slurm.ArrayLimit)
	}
	// Values that end up on #SBATCH lines must stay on one line.
	for _, f := range []struct{ key, v string }{
		{"partition", s.Slurm.Partition}, {"time", s.Slurm.Time}, {"gres", s.Slurm.Gres}, {"mem", s.Slurm.Mem},
	} {
		if strings.ContainsAny(f.v, "\r\n") {
			fail("$.slurm."+f.key, "slurm.%s spans several lines", f.key)
		}
	}
	for i, e := range s.Slurm.Extra {
		if strings.ContainsAny(e, "\r\n") {
			fail(fmt.Sprintf("$.slurm.extra[%d]", i), "slurm.extra[%d] spans several lines", i)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// decodeYAML runs one go-yaml call, formats its error as "[line:col]
// message" and turns a panic (the library has some on malformed input) into
// an error.
func decodeYAML(call func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed YAML: %v", r)
		}
	}()
	if err := call(); err != nil {
		return errors.New(yaml.FormatError(err, false, false))
	}
	return nil
}

// standardTags are the YAML tags a spec may use; anything else (and
// anchors, aliases and merge keys) is refused before decoding: a sweep file
// needs none of them, and they are where the decoder is least robust.
var standardTags = map[string]bool{
	"!!str": true, "!!int": true, "!!float": true, "!!bool": true, "!!null": true, "!!seq": true, "!!map": true,
}

type nodeChecker struct{ err error }

func (c *nodeChecker) Visit(n ast.Node) ast.Visitor {
	if c.err != nil || n == nil {
		return nil
	}
	switch v := n.(type) {
	case *ast.TagNode:
		if tag := v.Start.Value; !standardTags[tag] {
			c.err = fmt.Errorf("%sYAML tag %s is not supported", nodePos(n), tag)
		}
	case *ast.AnchorNode, *ast.AliasNode:
		c.err = fmt.Errorf("%sYAML anchors and aliases are not supported", nodePos(n))
	case *ast.MergeKeyNode:
		c.err = fmt.Errorf("%sYAML merge keys are not supported", nodePos(n))
	}
	if c.err != nil {
		return nil
	}
	return c
}

func checkNodes(doc *ast.DocumentNode) error {
	if doc == nil || doc.Body == nil {
		return nil
	}
	c := &nodeChecker{}
	ast.Walk(c, doc.Body)
	return c.err
}

// locator finds the position of a path in the document, for errors about
// values that were decoded without their nodes.
type locator struct{ file *ast.File }

func (l locator) pos(p string) (pos string) {
	defer func() {
		if recover() != nil {
			pos = "" // a position is a courtesy; never fail for it
		}
	}()
	path, err := yaml.PathString(p)
	if err != nil {
		return ""
	}
	n, err := path.FilterFile(l.file)
	if err != nil || n == nil {
		return ""
	}
	return nodePos(n)
}

func nodePos(n ast.Node) string {
	if n == nil {
		return ""
	}
	tok := n.GetToken()
	if tok == nil || tok.Position == nil {
		return ""
	}
	return fmt.Sprintf("[%d:%d] ", tok.Position.Line, tok.Position.Column)
}

func isNull(n ast.Node) bool {
	if n == nil {
		return true
	}
	_, ok := n.(*ast.NullNode)
	return ok
}

// listItems returns the items of a YAML sequence; key names the field in
// errors.
func listItems(n ast.Node, key string) ([]ast.Node, error) {
	if isNull(n) {
		return nil, fmt.Errorf("%s: the list is empty or missing", key)
	}
	seq, ok := n.(*ast.SequenceNode)
	if !ok {
		return nil, fmt.Errorf("%s%s: want a list, got %s", nodePos(n), key, n.Type())
	}
	if len(seq.Values) == 0 {
		return nil, fmt.Errorf("%s%s: the list is empty", nodePos(n), key)
	}
	return seq.Values, nil
}

// scalar returns the text of a scalar node as written (numbers keep their
// spelling, so "0.50" stays "0.50").
func scalar(n ast.Node, what string) (string, error) {
	switch v := n.(type) {
	case *ast.StringNode:
		return v.Value, nil
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		return v.GetToken().Value, nil
	case nil:
		return "", fmt.Errorf("%s is missing", what)
	default:
		return "", fmt.Errorf("%s%s: want a scalar, got %s", nodePos(n), what, n.Type())
	}
}

// parsePlugins reads the attn or kv list. A missing list means the
// engine's own choice (built-in eager attention, no KV compression): one
// entry with an empty name.
func parsePlugins(n ast.Node, key string) ([]Plugin, error) {
	if isNull(n) {
		return []Plugin{{}}, nil
	}
	items, err := listItems(n, key)
	if err != nil {
		return nil, err
	}
	var out []Plugin
	var errs []error
	for i, item := range items {
		what := fmt.Sprintf("%s[%d]", key, i)
		p, err := parsePlugin(item, what)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, p)
	}
	return out, errors.Join(errs...)
}

func parsePlugin(n ast.Node, what string) (Plugin, error) {
	if _, isMap := n.(ast.MapNode); !isMap {
		name, err := scalar(n, what)
		if err != nil {
			return Plugin{}, fmt.Errorf("%w (want a plugin path or {plugin, options})", err)
		}
		if strings.TrimSpace(name) == "" {
			return Plugin{}, fmt.Errorf("%s%s: the plugin is empty", nodePos(n), what)
		}
		return Plugin{Name: name}, nil
	}
	var raw rawPlugin
	if err := decodeYAML(func() error { return yaml.NodeToValue(n, &raw, yaml.Strict()) }); err != nil {
		return Plugin{}, fmt.Errorf("%s: %w", what, err)
	}
	if strings.TrimSpace(raw.Plugin) == "" {
		return Plugin{}, fmt.Errorf("%s%s: plugin is empty or missing", nodePos(n), what)
	}
	p := Plugin{Name: raw.Plugin}
	keys := make([]string, 0, len(raw.Options))
	for k := range raw.Options {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		owhat := fmt.Sprintf("%s.options.%s", what, k)
		if k == "" || strings.ContainsAny(k, "= \t\r\n") {
			return Plugin{}, fmt.Errorf("%s%s: option names may not be empty or hold '=' or spaces", nodePos(n), owhat)
		}
		v := raw.Options[k]
		var vals []string
		if seq, ok := v.(*ast.SequenceNode); ok {
			if len(seq.Values) == 0 {
				return Plugin{}, fmt.Errorf("%s%s: the list of values is empty", nodePos(v), owhat)
			}
			for j, item := range seq.Values {
				s, err := scalar(item, fmt.Sprintf("%s[%d]", owhat, j))
				if err != nil {
					return Plugin{}, err
				}
				vals = append(vals, s)
			}
		} else {
			s, err := scalar(v, owhat)
			if err != nil {
				return Plugin{}, err
			}
			vals = []string{s}
		}
		p.Options = append(p.Options, Option{Key: k, Values: vals})
	}
	return p, nil
}

func parseTasks(n ast.Node) ([]Task, error) {
	items, err := listItems(n, "tasks")
	if err != nil {
		return nil, err
	}
	var out []Task
	var errs []error
	for i, item := range items {
		what := fmt.Sprintf("tasks[%d]", i)
		var t Task
		if _, isMap := item.(ast.MapNode); isMap {
			var raw rawTask
			if err := decodeYAML(func() error { return yaml.NodeToValue(item, &raw, yaml.Strict()) }); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", what, err))
				continue
			}
			t = Task(raw)
		} else {
			name, err := scalar(item, what)
			if err != nil {
				errs = append(errs, fmt.Errorf("%w (want a task name or {name, data, limit, depths, variant})", err))
				continue
			}
			t.Name = name
		}
		if strings.TrimSpace(t.Name) == "" {
			errs = append(errs, fmt.Errorf("%s%s: name is empty or missing", nodePos(item), what))
			continue
		}
		if t.Limit < 0 {
			errs = append(errs, fmt.Errorf("%s%s: limit = %d is negative", nodePos(item), what, t.Limit))
			continue
		}
		out = append(out, t)
	}
	return out, errors.Join(errs...)
}

func parseContexts(n ast.Node) ([]int, error) {
	items, err := listItems(n, "contexts")
	if err != nil {
		return nil, err
	}
	var out []int
	var errs []error
	for i, item := range items {
		what := fmt.Sprintf("contexts[%d]", i)
		s, err := scalar(item, what)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		size, err := ParseSize(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s%s: %w", nodePos(item), what, err))
			continue
		}
		out = append(out, size)
	}
	return out, errors.Join(errs...)
}
