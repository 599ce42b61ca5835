// Package host is the harness's side of the plugin system: it finds
// plugins (folders with a manifest, executables, short names on a search
// path), verifies a folder's checksum before starting its program, starts
// plugins as go-plugin gRPC subprocesses with automatic mTLS, asks them to
// Describe and Prepare, and adapts their reference implementations to the
// engine's seams: attention.Backend and kvpolicy.Scorer.
//
// Every call has a deadline. A plugin that crashes, hangs past its
// deadline or answers garbage is stopped (its process killed and reaped)
// and reported with an error naming the plugin and the call; the harness
// process carries on. Close stops a plugin for good; nothing outlives it.
package host

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/longctx/longctx/engine/attention"
	"github.com/longctx/longctx/engine/kvpolicy"
	"github.com/longctx/longctx/plugins/manifest"
	"github.com/longctx/longctx/plugins/sdk"
)

// Config configures how plugins are found and run. The zero value works:
// default search path, logs to stderr at warn level, default timeouts.
type Config struct {
	// SearchPath are the roots short names are looked up in; nil means
	// DefaultSearchPath().
	SearchPath []string
	// Log receives the host's and the plugins' log lines (hclog text);
	// nil means os.Stderr.
	Log io.Writer
	// LogLevel is an hclog level name ("debug", "info", "warn", ...);
	// empty means warn, which keeps go-plugin's per-process chatter out of
	// command output.
	LogLevel string
	// StartTimeout bounds a plugin's start-up handshake (default 10s).
	StartTimeout time.Duration
	// CallTimeout bounds Describe, Attend and Score calls (default 60s).
	CallTimeout time.Duration
	// PrepareTimeout bounds Prepare, which may compile kernels (default 2m).
	PrepareTimeout time.Duration
}

func (c Config) searchPath() []string {
	if c.SearchPath == nil {
		return DefaultSearchPath()
	}
	return c.SearchPath
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (c Config) logger() hclog.Logger {
	out := c.Log
	if out == nil {
		out = os.Stderr
	}
	level := hclog.Warn
	if c.LogLevel != "" {
		level = hclog.LevelFromString(c.LogLevel)
	}
	return hclog.New(&hclog.LoggerOptions{Name: "plugin", Output: out, Level: level})
}

// Plugin is a running plugin process.
type Plugin struct {
	loc    Location
	kind   sdk.Kind
	desc   sdk.Description
	client *plugin.Client
	stub   sdk.Client
	pid    int
	cfg    Config
	stderr *stderrTail

	mu     sync.Mutex
	broken error // set once the plugin has been stopped for misbehaving
}

// Open resolves ref (see Resolve) and launches the plugin. kind, when
// non-zero, is the kind wanted.
func Open(ctx context.Context, kind sdk.Kind, ref string, cfg Config) (*Plugin, error) {
	loc, err := Resolve(kind, ref, cfg.searchPath())
	if err != nil {
		return nil, err
	}
	return Launch(ctx, kind, loc, cfg)
}

// Launch starts the plugin at loc and asks for its description. For a
// folder, the executable's SHA-256 must match the manifest and the
// manifest's protocol version must be this harness's. kind 0 accepts
// either kind (for `plugins describe` of a bare executable).
func Launch(ctx context.Context, kind sdk.Kind, loc Location, cfg Config) (*Plugin, error) {
	label := loc.String()
	var secure *plugin.SecureConfig
	if m := loc.Manifest; m != nil {
		mk, err := sdk.ParseKind(m.Kind)
		if err != nil {
			return nil, fmt.Errorf("plugin %s: %w", label, err)
		}
		if kind != 0 && mk != kind {
			return nil, fmt.Errorf("plugin %s is a %s plugin, not %s", label, mk, kind)
		}
		kind = mk
		if m.ProtocolVersion != sdk.ProtocolVersion {
			return nil, fmt.Errorf("plugin %s speaks protocol version %d (manifest); this harness speaks %d: rebuild it against this SDK", label, m.ProtocolVersion, sdk.ProtocolVersion)
		}
		sum, err := m.Checksum()
		if err != nil {
			return nil, fmt.Errorf("plugin %s: %w", label, err)
		}
		secure = &plugin.SecureConfig{Checksum: sum, Hash: sha256.New()}
	}
	tail := &stderrTail{}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{sdk.ProtocolVersion: sdk.ClientPlugins()},
		Cmd:              exec.Command(loc.Executable),
		SecureConfig:     secure,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		StartTimeout:     orDefault(cfg.StartTimeout, 10*time.Second),
		Logger:           cfg.logger(),
		Stderr:           tail,
	})
	p := &Plugin{loc: loc, kind: kind, client: client, cfg: cfg, stderr: tail}
	if err := p.start(ctx); err != nil {
		client.Kill()
		return nil, err
	}
	return p, nil
}

func (p *Plugin) start(ctx context.Context) error {
	label := p.loc.String()
	rpc, err := p.client.Client()
	if err != nil {
		return p.startError(err)
	}
	if rc := p.client.ReattachConfig(); rc != nil {
		p.pid = rc.Pid
	}
	kinds := []sdk.Kind{p.kind}
	if p.kind == 0 {
		kinds = sdk.Kinds
	}
	var lastErr error
	for _, k := range kinds {
		raw, err := rpc.Dispense(k.String())
		if err != nil {
			return fmt.Errorf("plugin %s: %w", label, err)
		}
		stub, ok := raw.(sdk.Client)
		if !ok {
			return fmt.Errorf("plugin %s: unexpected client type %T", label, raw)
		}
		var desc sdk.Description
		err = p.callRaw(ctx, "Describe", orDefault(p.cfg.CallTimeout, time.Minute), func(ctx context.Context) error {
			var err error
			desc, err = stub.Describe(ctx)
			return err
		})
		if status.Code(err) == codes.Unimplemented {
			lastErr = err
			continue // a bare executable of the other kind
		}
		if err != nil {
			return err
		}
		if m := p.loc.Manifest; m != nil && m.Name != desc.Name {
			return fmt.Errorf("plugin %s: manifest names it %q but it describes itself as %q", label, m.Name, desc.Name)
		}
		p.kind, p.stub, p.desc = k, stub, desc
		return nil
	}
	return fmt.Errorf("plugin %s serves neither attention nor kvcache: %w", label, lastErr)
}

// startError explains why go-plugin could not start the plugin.
func (p *Plugin) startError(err error) error {
	// go-plugin can report the exit before its goroutine has copied the
	// last lines of stderr into p.stderr; Kill waits for that goroutine.
	p.client.Kill()
	label := p.loc.String()
	msg := err.Error()
	switch {
	case errors.Is(err, plugin.ErrChecksumsDoNotMatch):
		got, herr := manifest.FileSHA256(p.loc.Executable)
		if herr != nil {
			got = herr.Error()
		}
		return fmt.Errorf("plugin %s: refusing to start %s: its sha256 is %s but the manifest says %s (rebuild the plugin or rewrite its manifest)",
			label, p.loc.Executable, got, p.loc.Manifest.SHA256)
	case strings.Contains(strings.ToLower(msg), "incompatible api version"):
		return fmt.Errorf("plugin %s speaks another plugin protocol version (%s); this harness speaks %d", label, firstLine(msg), sdk.ProtocolVersion)
	case strings.Contains(msg, "Unrecognized remote plugin message"):
		// go-plugin's message spans a paragraph; its first line holds what
		// the plugin printed instead of the handshake.
		_, said, _ := strings.Cut(firstLine(msg), "message:")
		if said = strings.TrimSpace(said); said == "" {
			return fmt.Errorf("plugin %s exited before the go-plugin handshake%s", label, p.stderr.suffix())
		}
		return fmt.Errorf("plugin %s is not a longctx plugin: it printed %q instead of the go-plugin handshake%s", label, said, p.stderr.suffix())
	case strings.Contains(msg, "timeout while waiting for plugin to start"):
		return fmt.Errorf("plugin %s did not complete its start-up handshake within %s%s", label, orDefault(p.cfg.StartTimeout, 10*time.Second), p.stderr.suffix())
	}
	return fmt.Errorf("plugin %s failed to start: %w%s", label, err, p.stderr.suffix())
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// Description returns what the plugin said about itself.
func (p *Plugin) Description() sdk.Description { return p.desc }

// Kind returns the plugin's kind.
func (p *Plugin) Kind() sdk.Kind { return p.kind }

// Location returns where the plugin was found.
func (p *Plugin) Location() Location { return p.loc }

// Pid returns the plugin process's id.
func (p *Plugin) Pid() int { return p.pid }

// Close stops the plugin process (gracefully, then by force) and waits
// for it to be reaped. It is safe to call more than once.
func (p *Plugin) Close() error {
	p.client.Kill()
	return nil
}

// Err returns why the plugin was stopped, or nil while it is usable.
func (p *Plugin) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.broken
}

func (p *Plugin) label() string {
	if p.desc.Name != "" {
		return fmt.Sprintf("%s plugin %s", p.kind, p.desc.Name)
	}
	return "plugin " + p.loc.String()
}

// call runs one RPC under a deadline, after checking the plugin is usable.
func (p *Plugin) call(ctx context.Context, op string, timeout time.Duration, f func(context.Context) error) error {
	if err := p.Err(); err != nil {
		return err
	}
	return p.callRaw(ctx, op, timeout, f)
}

func (p *Plugin) callRaw(ctx context.Context, op string, timeout time.Duration, f func(context.Context) error) error {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := f(cctx)
	if err == nil {
		return nil
	}
	return p.classify(ctx, op, timeout, err)
}

// classify turns a failed call into a clear error. The plugin's own
// errors (bad options, unsupported shapes) leave it usable; a crash, a
// missed deadline or a malformed answer stops it for good.
func (p *Plugin) classify(ctx context.Context, op string, timeout time.Duration, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %s: %w", p.label(), op, ctx.Err())
	}
	st, isStatus := status.FromError(err)
	switch {
	case !isStatus:
		return p.stop(fmt.Errorf("%s: %s returned an invalid answer: %w; plugin stopped", p.label(), op, err))
	case st.Code() == codes.DeadlineExceeded:
		return p.stop(fmt.Errorf("%s: %s did not answer within %s; plugin stopped", p.label(), op, timeout))
	case st.Code() == codes.Unavailable || st.Code() == codes.Canceled || p.exited(time.Second):
		if p.exited(2 * time.Second) {
			return p.stop(fmt.Errorf("%s: plugin process exited during %s%s", p.label(), op, p.stderr.suffix()))
		}
		return p.stop(fmt.Errorf("%s: lost the connection during %s: %s; plugin stopped", p.label(), op, st.Message()))
	case st.Code() == codes.Unimplemented:
		return err
	}
	return fmt.Errorf("%s: %s: %s", p.label(), op, st.Message())
}

// exited waits up to d for the process to have exited.
func (p *Plugin) exited(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if p.client.Exited() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop marks the plugin unusable with err and kills its process.
func (p *Plugin) stop(err error) error {
	p.mu.Lock()
	if p.broken == nil {
		p.broken = err
	}
	p.mu.Unlock()
	p.client.Kill()
	return err
}

// ResolveOptions checks the user's options against the plugin's schema,
// with errors naming the plugin and the option.
func (p *Plugin) ResolveOptions(given map[string]string) (sdk.Options, error) {
	o, err := sdk.ResolveOptions(p.desc.Options, given)
	if err != nil {
		return sdk.Options{}, fmt.Errorf("%s: %w", p.label(), err)
	}
	return o, nil
}

// prepare validates options locally, then asks the plugin for a plan.
func (p *Plugin) prepare(ctx context.Context, want sdk.Kind, m sdk.ModelShape, d sdk.Device, options map[string]string) (*sdk.Prepared, error) {
	if p.kind != want {
		return nil, fmt.Errorf("%s cannot be used as a %s plugin", p.label(), want)
	}
	if _, err := p.ResolveOptions(options); err != nil {
		return nil, err
	}
	if err := p.desc.Capabilities.Supports(m, d); err != nil {
		return nil, fmt.Errorf("%s: %w", p.label(), err)
	}
	var prep *sdk.Prepared
	err := p.call(ctx, "Prepare", orDefault(p.cfg.PrepareTimeout, 2*time.Minute), func(ctx context.Context) error {
		var err error
		prep, err = p.stub.Prepare(ctx, m, d, options)
		return err
	})
	return prep, err
}

// AttentionPlan is a prepared attention plugin.
type AttentionPlan struct {
	sdk.Prepared
	// Backend calls the plugin's reference implementation: what the CPU
	// engine uses as its attention.
	Backend attention.Backend
}

// PrepareAttention prepares an attention plugin for a model and device.
func (p *Plugin) PrepareAttention(ctx context.Context, m sdk.ModelShape, d sdk.Device, options map[string]string) (*AttentionPlan, error) {
	prep, err := p.prepare(ctx, sdk.KindAttention, m, d, options)
	if err != nil {
		return nil, err
	}
	return &AttentionPlan{Prepared: *prep, Backend: &backend{p: p, plan: prep.PlanID}}, nil
}

// backend is attention.Backend over a plugin's Attend.
type backend struct {
	p    *Plugin
	plan string
}

func (b *backend) Name() string { return b.p.desc.Name }

func (b *backend) Attend(ctx context.Context, prob *attention.Problem) error {
	stub := b.p.stub.(*sdk.AttentionClient)
	return b.p.call(ctx, "Attend", orDefault(b.p.cfg.CallTimeout, time.Minute), func(ctx context.Context) error {
		return stub.Attend(ctx, b.plan, prob)
	})
}

// KVPlan is a prepared KV-cache plugin.
type KVPlan struct {
	sdk.Prepared
	Policy kvpolicy.Policy
	// Scorer calls the plugin's reference scoring.
	Scorer kvpolicy.Scorer
}

// PrepareKV prepares a KV-cache plugin for a model and device.
func (p *Plugin) PrepareKV(ctx context.Context, m sdk.ModelShape, d sdk.Device, options map[string]string) (*KVPlan, error) {
	prep, err := p.prepare(ctx, sdk.KindKVCache, m, d, options)
	if err != nil {
		return nil, err
	}
	return &KVPlan{Prepared: *prep, Policy: *prep.Policy, Scorer: &scorer{p: p, plan: prep.PlanID, values: prep.NeedsValues}}, nil
}

// NewCompressor returns the engine-side compressor for the plan.
func (k *KVPlan) NewCompressor() (*kvpolicy.Compressor, error) {
	return kvpolicy.NewCompressor(k.Policy, k.Scorer)
}

// scorer is kvpolicy.Scorer over a plugin's Score.
type scorer struct {
	p      *Plugin
	plan   string
	values bool
}

func (s *scorer) Score(ctx context.Context, in *kvpolicy.ScoreInput) ([][]float32, error) {
	stub := s.p.stub.(*sdk.KVClient)
	var out [][]float32
	err := s.p.call(ctx, "Score", orDefault(s.p.cfg.CallTimeout, time.Minute), func(ctx context.Context) error {
		var err error
		out, err = stub.Score(ctx, s.plan, s.values, in)
		return err
	})
	return out, err
}

// stderrTail keeps the last lines a plugin wrote to stderr that are not
// hclog JSON (those reach the log): a panic's message and trace, or what
// a broken plugin printed before dying, to quote in errors.
type stderrTail struct {
	mu    sync.Mutex
	panic string // the first "panic: ..." or "fatal error: ..." line
	lines []string
	part  []byte
}

const tailLines = 8

func (t *stderrTail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.part = append(t.part, b...)
	for {
		i := bytes.IndexByte(t.part, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimSpace(string(t.part[:i]))
		t.part = t.part[i+1:]
		if line == "" || strings.HasPrefix(line, "{") {
			continue
		}
		if t.panic == "" && (strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ")) {
			t.panic = line
		}
		t.lines = append(t.lines, line)
		if len(t.lines) > tailLines {
			t.lines = t.lines[1:]
		}
	}
	if len(t.part) > 4096 {
		t.part = t.part[len(t.part)-4096:]
	}
	return len(b), nil
}

// suffix quotes the tail for an error message, or returns "".
func (t *stderrTail) suffix() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.panic != "":
		return "; it wrote: " + t.panic
	case len(t.lines) > 0:
		return "; its stderr ends: " + strings.Join(t.lines, " | ")
	}
	return ""
}
