package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/longctx/longctx/engine/kvpolicy"
	"github.com/longctx/longctx/engine/model"
	"github.com/longctx/longctx/plugins/host"
	"github.com/longctx/longctx/plugins/sdk"
)

// pluginFlags are the plugin choices shared by generate (and later run).
type pluginFlags struct {
	attn, kv         string
	attnOpts, kvOpts []string
	logLevel         string
}

func (p *pluginFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&p.attn, "attn", "", "attention plugin: folder, executable or short name (default: the built-in eager reference, in process)")
	fl.StringVar(&p.kv, "kv", "", "KV-cache plugin: folder, executable or short name (default: no compression)")
	fl.StringArrayVar(&p.attnOpts, "attn-opt", nil, "attention plugin option key=value (repeatable)")
	fl.StringArrayVar(&p.kvOpts, "kv-opt", nil, "KV-cache plugin option key=value (repeatable)")
	fl.StringVar(&p.logLevel, "plugin-log-level", "warn", "log level of the plugin host and plugins: trace, debug, info, warn, error")
	_ = cmd.RegisterFlagCompletionFunc("attn", completePlugins(sdk.KindAttention))
	_ = cmd.RegisterFlagCompletionFunc("kv", completePlugins(sdk.KindKVCache))
}

func (p *pluginFlags) validate(cmd *cobra.Command) error {
	if len(p.attnOpts) > 0 && p.attn == "" {
		return usagef(cmd, "--attn-opt needs --attn")
	}
	if len(p.kvOpts) > 0 && p.kv == "" {
		return usagef(cmd, "--kv-opt needs --kv")
	}
	return nil
}

func hostConfig(log io.Writer, level string) host.Config {
	return host.Config{SearchPath: pluginSearchPath(), Log: log, LogLevel: level}
}

// pluginSearchPath adds, after the default roots, the plugins folder of the
// checkout the harness binary was built in (bin/harness → plugins/), so a
// built harness finds the built-in plugins from any working directory.
func pluginSearchPath() []string {
	roots := host.DefaultSearchPath()
	if exe, err := os.Executable(); err == nil {
		if dir := filepath.Join(filepath.Dir(exe), "..", "plugins"); isDir(dir) {
			roots = append(roots, dir)
		}
	}
	return roots
}

func completePlugins(kind sdk.Kind) cobra.CompletionFunc {
	return func(_ *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
		locs, _ := host.Discover(pluginSearchPath())
		var out []string
		for _, l := range locs {
			if l.Manifest != nil && l.Manifest.Kind == kind.String() {
				out = append(out, l.Manifest.Name)
			}
		}
		return out, cobra.ShellCompDirectiveDefault
	}
}

// pluginSet is the plugins one generation runs with; Close stops them.
type pluginSet struct {
	attn *host.Attention
	kv   *host.KV
}

// openPlugins launches and prepares the chosen plugins for the model at
// modelPath. The attention plugin must exist before the model is loaded,
// since the model takes its backend at load time.
func openPlugins(ctx context.Context, log io.Writer, p pluginFlags, modelPath string, device sdk.Device) (*pluginSet, error) {
	set := &pluginSet{}
	if p.attn == "" && p.kv == "" {
		return set, nil
	}
	shape, err := host.ShapeForModel(modelPath, 0)
	if err != nil {
		return nil, err
	}
	cfg := hostConfig(log, p.logLevel)
	if p.attn != "" {
		if set.attn, err = host.OpenAttention(ctx, host.Selection{Ref: p.attn, Options: p.attnOpts}, shape, device, cfg); err != nil {
			return nil, fmt.Errorf("--attn %s: %w", p.attn, err)
		}
	}
	if p.kv != "" {
		if set.kv, err = host.OpenKV(ctx, host.Selection{Ref: p.kv, Options: p.kvOpts}, shape, device, cfg); err != nil {
			set.Close()
			return nil, fmt.Errorf("--kv %s: %w", p.kv, err)
		}
	}
	return set, nil
}

func (s *pluginSet) loadOptions(opts *model.LoadOptions) {
	if s.attn != nil {
		opts.Attention = s.attn.Backend()
	}
}

// apply installs the KV plugin's compression hooks; the compressor it
// returns (nil without --kv) counts the evicted tokens.
func (s *pluginSet) apply(opts *model.GenerateOptions) (*kvpolicy.Compressor, error) {
	if s.kv == nil {
		return nil, nil
	}
	return s.kv.Apply(opts)
}

// pluginRecord describes a plugin as run, for --json output.
type pluginRecord struct {
	Name    string            `json:"name"`
	Version string            `json:"version"`
	Path    string            `json:"path"`
	Options map[string]string `json:"options"`
}

func (s *pluginSet) records() (attn, kv *pluginRecord) {
	rec := func(p *host.Plugin, opts map[string]string) *pluginRecord {
		d := p.Description()
		return &pluginRecord{Name: d.Name, Version: d.Version, Path: p.Location().String(), Options: opts}
	}
	if s.attn != nil {
		attn = rec(s.attn.Plugin, s.attn.Plan.Options)
	}
	if s.kv != nil {
		kv = rec(s.kv.Plugin, s.kv.Plan.Options)
	}
	return attn, kv
}

func (s *pluginSet) Close() {
	if s.attn != nil {
		s.attn.Close()
	}
	if s.kv != nil {
		s.kv.Close()
	}
}

func newPluginsCommand() *cobra.Command {
	var level string
	cmd := &cobra.Command{
		Use:   "plugins",
		Short: "List and describe attention and KV-cache plugins",
		Long: `Plugins are go-plugin subprocesses that deliver an attention backend or a
KV-cache compression method (kernels for the GPU, a Go reference the CPU
engine calls). They are found as a folder holding plugin.json, an
executable, or a short name looked up in ./plugins/<kind>/,
$LONGCTX_PLUGIN_PATH and the user data folder (…/longctx/plugins); 'make
plugins' builds the built-in ones. See plugins/README.md to write one.`,
		Example: `  harness plugins list
  harness plugins describe l2
  harness plugins describe plugins/attention/flex`,
		Args: cobra.NoArgs,
	}
	cmd.PersistentFlags().StringVar(&level, "plugin-log-level", "warn", "log level of the plugin host and plugins")
	list := &cobra.Command{
		Use:     "list",
		Short:   "List the plugins found, with kind, version, capabilities and options",
		Example: "  harness plugins list\n  LONGCTX_PLUGIN_PATH=~/my-plugins harness plugins list --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ls := host.List(cmd.Context(), hostConfig(cmd.ErrOrStderr(), level))
			if asJSON, _ := cmd.Flags().GetBool("json"); asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(ls)
			}
			if len(ls) == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "no plugins found in %v (run 'make plugins' in the repository)\n", pluginSearchPath())
				return nil
			}
			return host.FormatList(cmd.OutOrStdout(), ls)
		},
	}
	list.Flags().Bool("json", false, "print JSON")
	describe := &cobra.Command{
		Use:   "describe NAME|PATH",
		Short: "Describe one plugin: capabilities and every option with its default",
		Example: `  harness plugins describe flash
  harness plugins describe ./plugins/kvcache/l2`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, loc, err := host.Describe(cmd.Context(), args[0], hostConfig(cmd.ErrOrStderr(), level))
			if err != nil {
				return err
			}
			return host.FormatDescription(cmd.OutOrStdout(), d, loc)
		},
	}
	cmd.AddCommand(list, describe)
	return cmd
}
