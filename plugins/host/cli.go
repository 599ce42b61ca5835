package host

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/longctx/longctx/engine/attention"
	"github.com/longctx/longctx/engine/kvpolicy"
	"github.com/longctx/longctx/engine/model"
	"github.com/longctx/longctx/plugins/manifest"
	"github.com/longctx/longctx/plugins/sdk"
)

// Selection is a plugin as picked on the command line: --attn or --kv and
// the repeated --attn-opt / --kv-opt key=value.
type Selection struct {
	Ref     string
	Options []string
}

// ShapeOf describes a model's shape to plugins. maxSeqLen is the longest
// sequence the run will use (0 if unknown).
func ShapeOf(c model.Config, maxSeqLen int) sdk.ModelShape {
	return sdk.ModelShape{
		Family: string(c.Family), NumLayers: c.NumLayers, NumHeads: c.NumHeads, NumKVHeads: c.NumKVHeads,
		HeadDim: c.HeadDim, HiddenSize: c.HiddenSize, LayerWindows: slices.Clone(c.LayerWindows), MaxSeqLen: maxSeqLen,
	}
}

// ShapeForModel describes the model that model.Load would load from path
// (a checkpoint folder or "synthetic:NAME") without loading its weights:
// an attention plugin must be prepared before the model is loaded, since
// model.LoadOptions takes its backend.
func ShapeForModel(path string, maxSeqLen int) (sdk.ModelShape, error) {
	if name, ok := strings.CutPrefix(path, model.SyntheticPrefix); ok {
		for _, p := range model.SyntheticPresets() {
			if p.Name == name {
				return ShapeOf(p.Config, maxSeqLen), nil
			}
		}
		return sdk.ModelShape{}, fmt.Errorf("unknown synthetic preset %q", name)
	}
	cfg, err := model.LoadConfig(path)
	if err != nil {
		return sdk.ModelShape{}, err
	}
	return ShapeOf(cfg, maxSeqLen), nil
}

// Attention is an opened and prepared attention plugin.
type Attention struct {
	Plugin *Plugin
	Plan   *AttentionPlan
}

// OpenAttention launches and prepares the attention plugin sel names.
// Close it when the run ends, whatever happened.
func OpenAttention(ctx context.Context, sel Selection, m sdk.ModelShape, d sdk.Device, cfg Config) (*Attention, error) {
	opts, err := sdk.ParseAssignments(sel.Options)
	if err != nil {
		return nil, fmt.Errorf("--attn-opt: %w", err)
	}
	p, err := Open(ctx, sdk.KindAttention, sel.Ref, cfg)
	if err != nil {
		return nil, err
	}
	plan, err := p.PrepareAttention(ctx, m, d, opts)
	if err != nil {
		p.Close()
		return nil, err
	}
	return &Attention{Plugin: p, Plan: plan}, nil
}

// Backend returns the attention backend for model.LoadOptions.Attention.
func (a *Attention) Backend() attention.Backend { return a.Plan.Backend }

// Close stops the plugin.
func (a *Attention) Close() error { return a.Plugin.Close() }

// KV is an opened and prepared KV-cache plugin.
type KV struct {
	Plugin *Plugin
	Plan   *KVPlan
}

// OpenKV launches and prepares the KV-cache plugin sel names.
func OpenKV(ctx context.Context, sel Selection, m sdk.ModelShape, d sdk.Device, cfg Config) (*KV, error) {
	opts, err := sdk.ParseAssignments(sel.Options)
	if err != nil {
		return nil, fmt.Errorf("--kv-opt: %w", err)
	}
	p, err := Open(ctx, sdk.KindKVCache, sel.Ref, cfg)
	if err != nil {
		return nil, err
	}
	plan, err := p.PrepareKV(ctx, m, d, opts)
	if err != nil {
		p.Close()
		return nil, err
	}
	return &KV{Plugin: p, Plan: plan}, nil
}

// NewCompressor returns a compressor for one sequence.
func (k *KV) NewCompressor() (*kvpolicy.Compressor, error) { return k.Plan.NewCompressor() }

// Apply sets the generation's AfterPrefill and AfterStep hooks to
// compress its sequence's cache with a fresh compressor, which it
// returns (for Evicted).
func (k *KV) Apply(opts *model.GenerateOptions) (*kvpolicy.Compressor, error) {
	comp, err := k.NewCompressor()
	if err != nil {
		return nil, err
	}
	opts.AfterPrefill = func(ctx context.Context, s *model.Sequence) error { return comp.AfterPrefill(ctx, s.Cache()) }
	opts.AfterStep = func(ctx context.Context, s *model.Sequence) error { return comp.AfterStep(ctx, s.Cache()) }
	return comp, nil
}

// Close stops the plugin.
func (k *KV) Close() error { return k.Plugin.Close() }

// Listing is one plugin found by List: its description, or why it could
// not be described.
type Listing struct {
	Location    Location
	Description *sdk.Description
	Err         error
}

// List launches every plugin on the search path, one at a time, and
// collects its description; a broken plugin is a Listing with Err set,
// never a failure of the whole list.
func List(ctx context.Context, cfg Config) []Listing {
	locs, errs := Discover(cfg.searchPath())
	var out []Listing
	for _, err := range errs {
		out = append(out, Listing{Err: err})
	}
	for _, loc := range locs {
		p, err := Launch(ctx, 0, loc, cfg)
		if err != nil {
			out = append(out, Listing{Location: loc, Err: err})
			continue
		}
		d := p.Description()
		p.Close()
		out = append(out, Listing{Location: loc, Description: &d})
	}
	return out
}

// Describe launches the plugin ref names (of either kind), returns its
// description and stops it.
func Describe(ctx context.Context, ref string, cfg Config) (sdk.Description, Location, error) {
	loc, err := Resolve(0, ref, cfg.searchPath())
	if err != nil {
		return sdk.Description{}, Location{}, err
	}
	p, err := Launch(ctx, 0, loc, cfg)
	if err != nil {
		return sdk.Description{}, loc, err
	}
	defer p.Close()
	return p.Description(), loc, nil
}

// WriteManifest launches the executable, asks for its description and
// writes the manifest (with the executable's SHA-256) into its folder:
// what `make plugins` does after building each plugin.
func WriteManifest(ctx context.Context, exe string, cfg Config) (manifest.Manifest, error) {
	abs, err := filepath.Abs(exe)
	if err != nil {
		return manifest.Manifest{}, err
	}
	p, err := Launch(ctx, 0, Location{Executable: abs}, cfg)
	if err != nil {
		return manifest.Manifest{}, err
	}
	d := p.Description()
	p.Close()
	sum, err := manifest.FileSHA256(abs)
	if err != nil {
		return manifest.Manifest{}, err
	}
	m := manifest.Manifest{
		Name: d.Name, Kind: d.Kind.String(), Version: d.Version, ProtocolVersion: d.ProtocolVersion,
		Executable: filepath.Base(abs), SHA256: sum,
	}
	if err := manifest.Write(filepath.Dir(abs), m); err != nil {
		return manifest.Manifest{}, err
	}
	return m, nil
}

// FormatList writes a table of plugins: kind, name, version, where, and
// capabilities or the error.
func FormatList(w io.Writer, ls []Listing) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tNAME\tVERSION\tCAPABILITIES\tOPTIONS\tLOCATION")
	for _, l := range ls {
		if l.Err != nil {
			fmt.Fprintf(tw, "?\t?\t?\t?\t?\t%s: %s\n", l.Location, firstLine(l.Err.Error()))
			continue
		}
		d := l.Description
		names := make([]string, len(d.Options))
		for i, o := range d.Options {
			names[i] = o.Name + "=" + o.Default
		}
		opts := strings.Join(names, " ")
		if opts == "" {
			opts = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.Kind, d.Name, d.Version, capsSummary(d.Capabilities), opts, l.Location)
	}
	return tw.Flush()
}

// capsSummary is a one-word-per-feature digest: devices, dtypes, then
// gqa, causal, window when supported.
func capsSummary(c sdk.Capabilities) string {
	parts := []string{strings.Join(c.Devices, ","), strings.Join(c.DTypes, ",")}
	for _, f := range []struct {
		on   bool
		name string
	}{{c.GQA, "gqa"}, {c.Causal, "causal"}, {c.SlidingWindow, "window"}} {
		if f.on {
			parts = append(parts, f.name)
		}
	}
	return strings.Join(parts, " ")
}

// FormatDescription writes one plugin's description: capabilities and the
// option schema with types, defaults and help.
func FormatDescription(w io.Writer, d sdk.Description, loc Location) error {
	c := d.Capabilities
	dims := "any"
	if len(c.HeadDims) > 0 {
		dims = fmt.Sprint(c.HeadDims)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s (%s plugin, protocol %d)\n", d.Name, d.Version, d.Kind, d.ProtocolVersion)
	if d.Summary != "" {
		fmt.Fprintf(&b, "  %s\n", d.Summary)
	}
	fmt.Fprintf(&b, "location:      %s\n", loc)
	if loc.Manifest != nil {
		fmt.Fprintf(&b, "sha256:        %s\n", loc.Manifest.SHA256)
	}
	fmt.Fprintf(&b, "devices:       %s\n", strings.Join(c.Devices, ", "))
	fmt.Fprintf(&b, "dtypes:        %s\n", strings.Join(c.DTypes, ", "))
	fmt.Fprintf(&b, "head dims:     %s\n", dims)
	fmt.Fprintf(&b, "gqa: %v  causal: %v  sliding window: %v\n", c.GQA, c.Causal, c.SlidingWindow)
	if len(d.Options) == 0 {
		b.WriteString("options:       none\n")
	} else {
		b.WriteString("options:\n")
		for _, o := range d.Options {
			typ := o.Type.String()
			if o.Type == sdk.Enum {
				typ = strings.Join(o.Choices, "|")
			}
			if o.Min != nil || o.Max != nil {
				typ += " in [" + bound(o.Min, "-inf") + ", " + bound(o.Max, "inf") + "]"
			}
			fmt.Fprintf(&b, "  %s (%s, default %q)\n      %s\n", o.Name, typ, o.Default, o.Help)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func bound(v *float64, none string) string {
	if v == nil {
		return none
	}
	return fmt.Sprint(*v)
}
