// Package sweep turns a sweep description (YAML) into run cells and runs
// them: locally, one after another or one worker per GPU, or on Slurm as a
// job array with one cell per task. Every cell writes one results file named
// by its ID, so a rerun skips what is finished and a killed sweep resumes
// without losing or duplicating rows.
package sweep

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
)

// Cell is one run configuration: everything `harness run` needs to produce
// one results file.
//
// Every field is omitempty in JSON: ID hashes that encoding, so a field added
// later with its zero value leaves the IDs (and so the resume state) of
// existing sweeps unchanged.
type Cell struct {
	Model        string   `json:"model,omitempty"`
	Attn         string   `json:"attn,omitempty"`
	AttnOpts     []string `json:"attn_opts,omitempty"` // key=value
	KV           string   `json:"kv,omitempty"`
	KVOpts       []string `json:"kv_opts,omitempty"` // key=value
	Task         string   `json:"task,omitempty"`
	Data         string   `json:"data,omitempty"`
	Limit        int      `json:"limit,omitempty"` // samples; 0 = all
	Depths       string   `json:"depths,omitempty"`
	Variant      string   `json:"variant,omitempty"`
	Context      int      `json:"context,omitempty"` // tokens
	Batch        int      `json:"batch,omitempty"`
	MaxNewTokens int      `json:"max_new_tokens,omitempty"`
	Warmup       int      `json:"warmup,omitempty"`
	Repeat       int      `json:"repeat,omitempty"`
	Seed         int64    `json:"seed,omitempty"`
	Backend      string   `json:"backend,omitempty"`
	// Numerics is the CPU engine's arithmetic when it is not fp32 ("bf16":
	// model.NumericsBF16); empty for fp32, so that older cells keep their IDs.
	Numerics string `json:"numerics,omitempty"`
	Device   string `json:"device,omitempty"`
}

// maxSlugLen keeps IDs well under the results package's 200-byte limit.
const maxSlugLen = 100

// ID names the cell's results file: a readable slug (model, attention and
// KV method with their options, task, context, batch; cut at 100 bytes)
// followed by the first 12 hex digits of a
// SHA-256 over the cell's canonical JSON. The slug only helps people; the
// hash makes IDs of different cells distinct. Option order does not matter:
// options are sorted before hashing.
func (c Cell) ID() string {
	canon := c.canonical()
	b, err := json.Marshal(canon)
	if err != nil {
		// A struct of strings and ints always marshals.
		panic(fmt.Sprintf("sweep: marshal cell: %v", err))
	}
	sum := sha256.Sum256(b)
	return c.slug() + "-" + hex.EncodeToString(sum[:6])
}

func (c Cell) canonical() Cell {
	c.AttnOpts = sortedCopy(c.AttnOpts)
	c.KVOpts = sortedCopy(c.KVOpts)
	return c
}

func sortedCopy(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

func (c Cell) slug() string {
	withOpts := func(name string, opts []string) string {
		return strings.Join(append([]string{baseName(name)}, sortedCopy(opts)...), "+")
	}
	parts := []string{
		baseName(c.Model), withOpts(c.Attn, c.AttnOpts), withOpts(c.KV, c.KVOpts), c.Task,
		fmt.Sprintf("c%d", c.Context), fmt.Sprintf("b%d", c.Batch),
	}
	if c.Numerics != "" {
		parts = append(parts, c.Numerics)
	}
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteByte('_')
		}
		for _, r := range p {
			switch {
			case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.', r == '+', r == '=':
				b.WriteRune(r)
			default:
				b.WriteByte('-')
			}
		}
	}
	s := b.String()
	if len(s) > maxSlugLen {
		s = s[:maxSlugLen]
	}
	// Results IDs may not start with '.' or '-'.
	if s = strings.TrimLeft(s, ".-"); s == "" {
		s = "cell"
	}
	return s
}

// baseName shortens plugin paths and model folders to their last element;
// "synthetic:llama3-8b" keeps its preset name.
func baseName(s string) string {
	s = strings.TrimRight(s, "/")
	if s == "" {
		return "none"
	}
	return path.Base(s)
}

// Validate reports the first field that makes the cell unrunnable.
func (c Cell) Validate() error {
	var errs []error
	// attn and kv may be empty: the engine's built-in eager attention and
	// no KV compression.
	for _, f := range []struct{ name, v string }{{"model", c.Model}, {"task", c.Task}} {
		if strings.TrimSpace(f.v) == "" {
			errs = append(errs, fmt.Errorf("%s is empty", f.name))
		}
	}
	if c.Attn == "" && len(c.AttnOpts) > 0 || c.KV == "" && len(c.KVOpts) > 0 {
		errs = append(errs, errors.New("plugin options without a plugin"))
	}
	for _, o := range append(append([]string(nil), c.AttnOpts...), c.KVOpts...) {
		if k, _, ok := strings.Cut(o, "="); !ok || k == "" {
			errs = append(errs, fmt.Errorf("option %q is not key=value", o))
		}
	}
	if c.Context <= 0 {
		errs = append(errs, fmt.Errorf("context %d is not positive", c.Context))
	}
	if c.Batch <= 0 {
		errs = append(errs, fmt.Errorf("batch %d is not positive", c.Batch))
	}
	if c.MaxNewTokens <= 0 {
		errs = append(errs, fmt.Errorf("max_new_tokens %d is not positive", c.MaxNewTokens))
	}
	if c.Warmup < 0 {
		errs = append(errs, fmt.Errorf("warmup %d is negative", c.Warmup))
	}
	if c.Repeat <= 0 {
		errs = append(errs, fmt.Errorf("repeat %d is not positive", c.Repeat))
	}
	if c.Limit < 0 {
		errs = append(errs, fmt.Errorf("limit %d is negative", c.Limit))
	}
	return errors.Join(errs...)
}
