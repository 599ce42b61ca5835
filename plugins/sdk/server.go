package sdk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/longctx/longctx/plugins/sdk/pluginpb"
)

// Plugin is what Serve runs: an *Attention or a *KVCache.
type Plugin interface {
	description() Description
	goPlugin(log hclog.Logger) plugin.Plugin
}

// Attention is an attention plugin: its self-description and its Prepare.
type Attention struct {
	Info    Info
	Options []Option
	// Prepare picks the kernels for a model and device and returns the
	// reference implementation configured by the options.
	Prepare func(ctx context.Context, req *PrepareRequest) (*AttentionPlan, error)
}

// KVCache is a KV-cache compression plugin.
type KVCache struct {
	Info Info
	// Options usually start with PolicyOptions(...).
	Options []Option
	Prepare func(ctx context.Context, req *PrepareRequest) (*KVPlan, error)
}

func (a *Attention) description() Description {
	return Description{Info: a.Info, Kind: KindAttention, ProtocolVersion: ProtocolVersion, Options: a.Options}
}

func (k *KVCache) description() Description {
	return Description{Info: k.Info, Kind: KindKVCache, ProtocolVersion: ProtocolVersion, Options: k.Options}
}

// Check validates a plugin's declaration, as Serve does before serving.
func Check(p Plugin) error {
	d := p.description()
	if err := d.Validate(); err != nil {
		return err
	}
	switch p := p.(type) {
	case *Attention:
		if p.Prepare == nil {
			return fmt.Errorf("plugin %s: no Prepare function", d.Name)
		}
	case *KVCache:
		if p.Prepare == nil {
			return fmt.Errorf("plugin %s: no Prepare function", d.Name)
		}
	}
	return nil
}

// Serve runs the plugin until the harness ends it. It must be the only
// thing main does; a plugin run by hand prints a notice and exits. A
// declaration that fails Check is reported on stderr, with exit status 1.
// Log through Logger: its JSON lines on stderr end up in the harness log.
func Serve(p Plugin) {
	if err := Check(p); err != nil {
		fmt.Fprintln(os.Stderr, "longctx plugin:", err)
		os.Exit(1)
	}
	d := p.description()
	log := Logger(d.Name)
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{
			ProtocolVersion: {d.Kind.String(): p.goPlugin(log)},
		},
		GRPCServer: plugin.DefaultGRPCServer,
		Logger:     log,
	})
}

// Logger returns the logger a plugin process writes to: JSON lines on
// stderr, which go-plugin parses and folds into the harness log.
func Logger(name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: name, Output: os.Stderr, JSONFormat: true, Level: hclog.Info})
}

// ClientPlugins is the go-plugin plugin set a host dispenses from: the
// client halves of both kinds, keyed by kind name.
func ClientPlugins() plugin.PluginSet {
	return plugin.PluginSet{
		KindAttention.String(): &attentionPlugin{},
		KindKVCache.String():   &kvPlugin{},
	}
}

// plans holds the plugin's prepared plans under the ids it handed out.
type plans[P any] struct {
	mu   sync.Mutex
	byID map[string]P
	next int
}

func (s *plans[P]) add(p P) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byID == nil {
		s.byID = map[string]P{}
	}
	s.next++
	id := "plan-" + strconv.Itoa(s.next)
	s.byID[id] = p
	return id
}

func (s *plans[P]) get(id string) (P, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.byID[id]
	if !ok {
		return p, status.Errorf(codes.NotFound, "unknown plan id %q", id)
	}
	return p, nil
}

// guard runs f, turning a panic in plugin code into an Internal error
// rather than a dead process: the harness reports it either way, but a
// live plugin can still be shut down cleanly.
func guard(log hclog.Logger, what string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			log.Error("panic", "in", what, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = status.Errorf(codes.Internal, "%s panicked: %v", what, r)
		}
	}()
	return f()
}

// asStatus gives plain errors from plugin code a gRPC code, keeping
// context errors recognisable on the other side.
func asStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Unknown, err.Error())
}

// prepareRequest decodes and validates what every Prepare receives.
func prepareRequest(d Description, req *pluginpb.PrepareRequest) (*PrepareRequest, error) {
	m := modelFromPB(req.GetModel())
	if err := m.Validate(); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	dev := deviceFromPB(req.GetDevice())
	if err := d.Capabilities.Supports(m, dev); err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "plugin %s: %v", d.Name, err)
	}
	opts, err := ResolveOptions(d.Options, req.GetOptions())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "plugin %s: %v", d.Name, err)
	}
	return &PrepareRequest{Model: m, Device: dev, Options: opts}, nil
}

// attentionPlugin is the go-plugin glue of the attention kind: its server
// half (impl set, in the plugin process) and its client half (in the host).
type attentionPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	impl *Attention
	log  hclog.Logger
}

func (a *Attention) goPlugin(log hclog.Logger) plugin.Plugin {
	return &attentionPlugin{impl: a, log: log}
}

func (p *attentionPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pluginpb.RegisterAttentionServer(s, &attentionServer{impl: p.impl, desc: p.impl.description(), log: p.log})
	return nil
}

func (p *attentionPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &AttentionClient{rpc: pluginpb.NewAttentionClient(c)}, nil
}

type attentionServer struct {
	pluginpb.UnimplementedAttentionServer
	impl  *Attention
	desc  Description
	log   hclog.Logger
	plans plans[*AttentionPlan]
}

func (s *attentionServer) Describe(context.Context, *pluginpb.DescribeRequest) (*pluginpb.Description, error) {
	return s.desc.toPB(), nil
}

func (s *attentionServer) Prepare(ctx context.Context, req *pluginpb.PrepareRequest) (*pluginpb.Preparation, error) {
	r, err := prepareRequest(s.desc, req)
	if err != nil {
		return nil, err
	}
	var plan *AttentionPlan
	err = guard(s.log, "Prepare", func() error {
		plan, err = s.impl.Prepare(ctx, r)
		return err
	})
	if err != nil {
		return nil, asStatus(err)
	}
	if plan == nil || plan.Reference == nil {
		return nil, status.Errorf(codes.Internal, "plugin %s: Prepare returned no reference implementation", s.desc.Name)
	}
	out := &pluginpb.Preparation{PlanId: s.plans.add(plan), ResolvedOptions: r.Options.Text()}
	for _, k := range plan.Kernels {
		if err := k.Validate(KindAttention); err != nil {
			return nil, status.Errorf(codes.Internal, "plugin %s: %v", s.desc.Name, err)
		}
		out.Kernels = append(out.Kernels, kernelToPB(k))
	}
	return out, nil
}

func (s *attentionServer) Attend(ctx context.Context, req *pluginpb.AttendRequest) (*pluginpb.AttendResponse, error) {
	plan, err := s.plans.get(req.GetPlanId())
	if err != nil {
		return nil, err
	}
	p, err := decodeProblem(req)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := guard(s.log, "Attend", func() error { return plan.Reference.Attend(ctx, p) }); err != nil {
		return nil, asStatus(err)
	}
	return &pluginpb.AttendResponse{Out: packF32(p.Out)}, nil
}

// kvPlugin is the go-plugin glue of the kvcache kind.
type kvPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	impl *KVCache
	log  hclog.Logger
}

func (k *KVCache) goPlugin(log hclog.Logger) plugin.Plugin {
	return &kvPlugin{impl: k, log: log}
}

func (p *kvPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pluginpb.RegisterKVCacheServer(s, &kvServer{impl: p.impl, desc: p.impl.description(), log: p.log})
	return nil
}

func (p *kvPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &KVClient{rpc: pluginpb.NewKVCacheClient(c)}, nil
}

type kvServer struct {
	pluginpb.UnimplementedKVCacheServer
	impl  *KVCache
	desc  Description
	log   hclog.Logger
	plans plans[*KVPlan]
}

func (s *kvServer) Describe(context.Context, *pluginpb.DescribeRequest) (*pluginpb.Description, error) {
	return s.desc.toPB(), nil
}

func (s *kvServer) Prepare(ctx context.Context, req *pluginpb.PrepareRequest) (*pluginpb.Preparation, error) {
	r, err := prepareRequest(s.desc, req)
	if err != nil {
		return nil, err
	}
	var plan *KVPlan
	err = guard(s.log, "Prepare", func() error {
		plan, err = s.impl.Prepare(ctx, r)
		return err
	})
	if err != nil {
		return nil, asStatus(err)
	}
	if plan == nil {
		return nil, status.Errorf(codes.Internal, "plugin %s: Prepare returned no plan", s.desc.Name)
	}
	if err := plan.Policy.Validate(r.Model.NumLayers); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "plugin %s: %v", s.desc.Name, err)
	}
	if plan.Scorer == nil && !plan.Policy.Inactive() {
		return nil, status.Errorf(codes.Internal, "plugin %s: policy %s needs a scorer and Prepare returned none", s.desc.Name, plan.Policy)
	}
	out := &pluginpb.Preparation{
		PlanId: s.plans.add(plan), ResolvedOptions: r.Options.Text(),
		Policy: policyToPB(plan.Policy, plan.NeedsValues),
	}
	for _, k := range plan.Kernels {
		if err := k.Validate(KindKVCache); err != nil {
			return nil, status.Errorf(codes.Internal, "plugin %s: %v", s.desc.Name, err)
		}
		out.Kernels = append(out.Kernels, kernelToPB(k))
	}
	return out, nil
}

func (s *kvServer) Score(ctx context.Context, req *pluginpb.ScoreRequest) (*pluginpb.ScoreResponse, error) {
	plan, err := s.plans.get(req.GetPlanId())
	if err != nil {
		return nil, err
	}
	if plan.Scorer == nil {
		return nil, status.Errorf(codes.FailedPrecondition, "plugin %s: this plan has no scorer", s.desc.Name)
	}
	in, err := decodeScoreInput(req)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	var scores [][]float32
	err = guard(s.log, "Score", func() error {
		scores, err = plan.Scorer.Score(ctx, in)
		return err
	})
	if err != nil {
		return nil, asStatus(err)
	}
	if err := checkScores(scores, in); err != nil {
		return nil, status.Errorf(codes.Internal, "plugin %s: scorer returned %v", s.desc.Name, err)
	}
	out := &pluginpb.ScoreResponse{Scores: make([][]byte, len(scores))}
	for g, sc := range scores {
		out.Scores[g] = packF32(sc)
	}
	return out, nil
}
