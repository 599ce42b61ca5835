package sdk

import (
	"context"
	"fmt"

	"github.com/longctx/longctx/engine/attention"
	"github.com/longctx/longctx/engine/kvpolicy"
	"github.com/longctx/longctx/plugins/sdk/pluginpb"
)

// Client is what both kinds of plugin answer, seen from the host.
type Client interface {
	// Describe asks the plugin for its description and checks it.
	Describe(ctx context.Context) (Description, error)
	// Prepare asks for a plan; options are the user's, as text.
	Prepare(ctx context.Context, m ModelShape, d Device, options map[string]string) (*Prepared, error)
}

// AttentionClient is the host's stub of an attention plugin.
type AttentionClient struct{ rpc pluginpb.AttentionClient }

// KVClient is the host's stub of a KV-cache plugin.
type KVClient struct{ rpc pluginpb.KVCacheClient }

var (
	_ Client = (*AttentionClient)(nil)
	_ Client = (*KVClient)(nil)
)

func describe(ctx context.Context, want Kind, call func(context.Context, *pluginpb.DescribeRequest) (*pluginpb.Description, error)) (Description, error) {
	resp, err := call(ctx, &pluginpb.DescribeRequest{})
	if err != nil {
		return Description{}, err
	}
	d := descriptionFromPB(resp)
	if err := d.Validate(); err != nil {
		return Description{}, fmt.Errorf("description: %w", err)
	}
	if d.Kind != want {
		return Description{}, fmt.Errorf("plugin %s describes itself as a %s plugin, served as %s", d.Name, d.Kind, want)
	}
	return d, nil
}

func prepare(ctx context.Context, kind Kind, m ModelShape, d Device, options map[string]string,
	call func(context.Context, *pluginpb.PrepareRequest) (*pluginpb.Preparation, error)) (*Prepared, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	resp, err := call(ctx, &pluginpb.PrepareRequest{Model: modelToPB(m), Device: deviceToPB(d), Options: options})
	if err != nil {
		return nil, err
	}
	p, err := preparedFromPB(kind, m, resp)
	if err != nil {
		return nil, fmt.Errorf("preparation: %w", err)
	}
	return p, nil
}

// Describe implements Client.
func (c *AttentionClient) Describe(ctx context.Context) (Description, error) {
	return describe(ctx, KindAttention, func(ctx context.Context, r *pluginpb.DescribeRequest) (*pluginpb.Description, error) {
		return c.rpc.Describe(ctx, r)
	})
}

// Prepare implements Client.
func (c *AttentionClient) Prepare(ctx context.Context, m ModelShape, d Device, options map[string]string) (*Prepared, error) {
	return prepare(ctx, KindAttention, m, d, options, func(ctx context.Context, r *pluginpb.PrepareRequest) (*pluginpb.Preparation, error) {
		return c.rpc.Prepare(ctx, r)
	})
}

// Attend runs the plugin's reference implementation on p under a plan and
// writes p.Out. An answer of the wrong size is an error that is not a gRPC
// status, and leaves p.Out unspecified.
func (c *AttentionClient) Attend(ctx context.Context, planID string, p *attention.Problem) error {
	if err := p.Validate(); err != nil {
		return err
	}
	resp, err := c.rpc.Attend(ctx, encodeProblem(planID, p))
	if err != nil {
		return err
	}
	return unpackF32Into(p.Out, resp.GetOut(), "attention output")
}

// Describe implements Client.
func (c *KVClient) Describe(ctx context.Context) (Description, error) {
	return describe(ctx, KindKVCache, func(ctx context.Context, r *pluginpb.DescribeRequest) (*pluginpb.Description, error) {
		return c.rpc.Describe(ctx, r)
	})
}

// Prepare implements Client.
func (c *KVClient) Prepare(ctx context.Context, m ModelShape, d Device, options map[string]string) (*Prepared, error) {
	return prepare(ctx, KindKVCache, m, d, options, func(ctx context.Context, r *pluginpb.PrepareRequest) (*pluginpb.Preparation, error) {
		return c.rpc.Prepare(ctx, r)
	})
}

// Score runs the plugin's reference scoring on one layer's cache.
func (c *KVClient) Score(ctx context.Context, planID string, needsValues bool, in *kvpolicy.ScoreInput) ([][]float32, error) {
	if len(in.K) != len(in.Pos) || len(in.V) != len(in.Pos) {
		return nil, fmt.Errorf("score input: %d key, %d value and %d position lists", len(in.K), len(in.V), len(in.Pos))
	}
	resp, err := c.rpc.Score(ctx, encodeScoreInput(planID, needsValues, in))
	if err != nil {
		return nil, err
	}
	if len(resp.GetScores()) != len(in.Pos) {
		return nil, fmt.Errorf("%d score lists for %d KV heads", len(resp.GetScores()), len(in.Pos))
	}
	out := make([][]float32, len(in.Pos))
	for g, b := range resp.GetScores() {
		out[g] = make([]float32, len(in.Pos[g]))
		if err := unpackF32Into(out[g], b, fmt.Sprintf("kv head %d scores", g)); err != nil {
			return nil, err
		}
	}
	return out, nil
}
