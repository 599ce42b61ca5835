package sdk

import (
	"errors"
	"fmt"
	"slices"

	"github.com/longctx/longctx/plugins/manifest"
	"github.com/longctx/longctx/plugins/sdk/pluginpb"
)

// Info is what a plugin says about itself.
type Info struct {
	// Name is the plugin's short name (lowercase letters, digits, '_' and
	// '-'), the name --attn and --kv find it by.
	Name string
	// Version is the plugin's own version, semver recommended.
	Version      string
	Summary      string
	Capabilities Capabilities
}

// Capabilities say which problems a plugin handles.
type Capabilities struct {
	// DTypes of Q/K/V its kernels accept: "f32", "bf16", "f16".
	DTypes []string
	// HeadDims it supports; empty means any.
	HeadDims []int
	// GQA: fewer KV heads than query heads.
	GQA           bool
	Causal        bool
	SlidingWindow bool
	// Devices it prepares for: "cpu" (reference mode), "cuda".
	Devices []string
}

// Description is the answer to Describe: a plugin's Info with its kind,
// protocol version and option schema.
type Description struct {
	Info
	Kind            Kind
	ProtocolVersion int
	Options         []Option
}

// Validate checks a description received from a plugin, so that a plugin
// answering garbage is refused with a clear error.
func (d *Description) Validate() error {
	if !manifest.ValidName(d.Name) {
		return fmt.Errorf("plugin name %q: want 1-64 lowercase letters, digits, '_' or '-'", d.Name)
	}
	if !d.Kind.valid() {
		return fmt.Errorf("plugin %s: unknown kind %d", d.Name, int(d.Kind))
	}
	if d.ProtocolVersion != ProtocolVersion {
		return fmt.Errorf("plugin %s: built for protocol version %d, this harness speaks %d", d.Name, d.ProtocolVersion, ProtocolVersion)
	}
	if len(d.Version) > 128 || len(d.Summary) > 4096 {
		return fmt.Errorf("plugin %s: version or summary implausibly long", d.Name)
	}
	for _, dev := range d.Capabilities.Devices {
		if dev != "cpu" && dev != "cuda" {
			return fmt.Errorf("plugin %s: unknown device %q (want cpu or cuda)", d.Name, dev)
		}
	}
	for _, dt := range d.Capabilities.DTypes {
		if !slices.Contains([]string{"f32", "bf16", "f16"}, dt) {
			return fmt.Errorf("plugin %s: unknown dtype %q (want f32, bf16 or f16)", d.Name, dt)
		}
	}
	if err := CheckSchema(d.Options); err != nil {
		return fmt.Errorf("plugin %s: option schema: %w", d.Name, err)
	}
	return nil
}

// Supports checks a model shape and device against the capabilities.
func (c Capabilities) Supports(m ModelShape, d Device) error {
	if !slices.Contains(c.Devices, d.Kind) {
		return fmt.Errorf("device %s not supported (plugin supports %v)", d.Kind, c.Devices)
	}
	if d.DType != "" && len(c.DTypes) > 0 && !slices.Contains(c.DTypes, d.DType) {
		return fmt.Errorf("dtype %s not supported (plugin supports %v)", d.DType, c.DTypes)
	}
	if len(c.HeadDims) > 0 && !slices.Contains(c.HeadDims, m.HeadDim) {
		return fmt.Errorf("head dim %d not supported (plugin supports %v)", m.HeadDim, c.HeadDims)
	}
	if !c.GQA && m.NumKVHeads != m.NumHeads {
		return fmt.Errorf("grouped-query attention (%d heads, %d KV heads) not supported", m.NumHeads, m.NumKVHeads)
	}
	if !c.SlidingWindow && slices.ContainsFunc(m.LayerWindows, func(w int) bool { return w > 0 }) {
		return errors.New("sliding-window attention not supported")
	}
	return nil
}

func (d *Description) toPB() *pluginpb.Description {
	opts := make([]*pluginpb.OptionSpec, len(d.Options))
	for i, o := range d.Options {
		opts[i] = optionToPB(o)
	}
	c := d.Capabilities
	return &pluginpb.Description{
		Name: d.Name, Kind: d.Kind.pb(), Version: d.Version, ProtocolVersion: int32(d.ProtocolVersion),
		Summary: d.Summary,
		Capabilities: &pluginpb.Capabilities{
			Dtypes: slices.Clone(c.DTypes), HeadDims: toInt32s(c.HeadDims), Gqa: c.GQA,
			Causal: c.Causal, SlidingWindow: c.SlidingWindow, Devices: slices.Clone(c.Devices),
		},
		Options: opts,
	}
}

func descriptionFromPB(p *pluginpb.Description) Description {
	c := p.GetCapabilities()
	d := Description{
		Info: Info{
			Name: p.GetName(), Version: p.GetVersion(), Summary: p.GetSummary(),
			Capabilities: Capabilities{
				DTypes: slices.Clone(c.GetDtypes()), HeadDims: fromInt32s(c.GetHeadDims()), GQA: c.GetGqa(),
				Causal: c.GetCausal(), SlidingWindow: c.GetSlidingWindow(), Devices: slices.Clone(c.GetDevices()),
			},
		},
		Kind:            kindFromPB(p.GetKind()),
		ProtocolVersion: int(p.GetProtocolVersion()),
	}
	for _, o := range p.GetOptions() {
		d.Options = append(d.Options, optionFromPB(o))
	}
	return d
}

func toInt32s(v []int) []int32 {
	out := make([]int32, len(v))
	for i, x := range v {
		out[i] = int32(x)
	}
	return out
}

func fromInt32s(v []int32) []int {
	if len(v) == 0 {
		return nil
	}
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(x)
	}
	return out
}
