package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/longctx/longctx/engine/cuda"
	"github.com/longctx/longctx/engine/kernelrun"
	"github.com/longctx/longctx/engine/kernelrun/attnbench"
	"github.com/longctx/longctx/harness/sweep"
	"github.com/longctx/longctx/plugins/host"
	"github.com/longctx/longctx/plugins/sdk"
)

func newBenchCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Time plugin kernels on the GPU, outside a model",
		Example: `  harness bench attention --attn eager --n 1k,8k --batch 1
  bench/attention.sh flash   # with PyTorch SDPA and FlexAttention on the same shapes`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newBenchAttentionCommand())
	return cmd
}

// benchAttnFlags are the flags of 'bench attention' as given.
type benchAttnFlags struct {
	attn, logLevel      string
	attnOpts            []string
	phases, ns, batches string
	heads, kvHeads, dim int
	capacity            string
	minTime, maxTime    time.Duration
	repeats, maxIters   int
	copyBytes           string
	graph, coldL2       bool
	out                 string
	seed                uint64
}

// benchAttnConfig is the checked sweep.
type benchAttnConfig struct {
	shapes    []attnbench.Shape
	phases    []attnbench.Phase
	opts      attnbench.Options
	copyBytes int64
	maxSeq    int
}

const benchAttnDefaultNs = "1024,2048,4096,8192,16384,32768,65536"

func newBenchAttentionCommand() *cobra.Command { return benchAttentionCommand(&benchAttnFlags{}) }

// benchAttentionCommand is the command with its flags parsed into f.
func benchAttentionCommand(f *benchAttnFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "attention",
		Short: "Time an attention plugin's prefill and decode kernels over context lengths and batch sizes",
		Long: `attention starts the attention plugin --attn, prepares it for a model of
--heads/--kv-heads/--head-dim, compiles its GPU kernels (attention.prefill and
attention.decode) for GPU 0 and times them on random bf16 inputs for every
--phase × --batch × --n:

  prefill: N causal queries per sequence (positions 0..N-1) against N keys;
           TFLOP/s counts 4·N²·d·heads·batch / 2,
           GB/s counts Q, K and V read once and O written once.
  decode:  one query per sequence (position N-1) against N cached keys;
           TFLOP/s counts 4·N·d·heads·batch, GB/s the K and V bytes read
           (2·batch·kv_heads·N·d·2), shown also as a percentage of the
           device-to-device copy bandwidth measured at the start of the run
           (cuMemcpyDtoDAsync of --copy-bytes, read + write counted).

Each figure is the median of --repeats measurements of CUDA-event GPU time,
each at least --min-time of back-to-back launches, replayed from a captured
CUDA graph unless --graph=false (as the engine replays decode). Shapes that
do not fit in GPU memory are reported as "oom" rows and the sweep goes on.

By default every launch reads the same inputs (L2 "warm"), so what one
launch leaves in L2 (50 MB on an H100) serves the next: shapes whose Q, K
and V are not much larger than L2 time faster than inside a model, where
other layers stream through L2 in between. --cold-l2 gives every launch
inputs of its own: as many input sets (Q, K, V and K/V descriptors; the
output, positions and workspace are shared) as together hold at least 4×
the device's L2, never fewer than 8, launched in turn (a captured graph
holds whole turns). Rows record "l2" (cold or warm) and "input_sets"; a
cold shape whose sets do not fit in GPU memory runs with the sets that do
(at least 2, with a note) or is an "oom" row.

tools/refgen/attn_bench.py times PyTorch SDPA and FlexAttention on the
same shapes, with the same --cold-l2; bench/attention.sh runs both and
compares (COLD_L2=1 for --cold-l2 on both sides).`,
		Example: `  harness bench attention --attn eager --n 1k,8k --batch 1
  harness bench attention --attn flash --phase decode --n 32k --batch 1,8 --out flash.jsonl
  harness bench attention --attn plugins/attention/flash --n 8k,16k,32k --out results/attn.jsonl
  harness bench attention --attn flash --phase decode --n 4k,32k --batch 1 --cold-l2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBenchAttention(cmd, *f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.attn, "attn", "flash", "attention plugin: folder, executable or short name")
	fl.StringArrayVar(&f.attnOpts, "attn-opt", nil, "attention plugin option key=value (repeatable)")
	fl.StringVar(&f.logLevel, "plugin-log-level", "warn", "log level of the plugin host and plugin: trace, debug, info, warn, error")
	fl.StringVar(&f.phases, "phase", "prefill,decode", "phases to time, comma-separated: prefill, decode")
	fl.StringVar(&f.ns, "n", benchAttnDefaultNs, "context lengths N, e.g. 1k,8k,32k")
	fl.StringVar(&f.batches, "batch", "1,8", "batch sizes (sequences per launch)")
	fl.IntVar(&f.heads, "heads", 32, "query heads")
	fl.IntVar(&f.kvHeads, "kv-heads", 8, "K/V heads (GQA: --heads must be a multiple)")
	fl.IntVar(&f.dim, "head-dim", 128, "head dimension d")
	fl.StringVar(&f.capacity, "kv-capacity", "", "size every launch for this many cached tokens (max_kv_len), as a CUDA graph captured for a longer cache is; default: N")
	fl.DurationVar(&f.minTime, "min-time", 50*time.Millisecond, "least GPU time of one measurement: short launches are repeated back to back until they reach it")
	fl.DurationVar(&f.maxTime, "max-time", 20*time.Second, "GPU time budget per shape: long launches get fewer repeats (at least one)")
	fl.IntVar(&f.repeats, "repeats", 5, "measurements per shape; the median is reported")
	fl.IntVar(&f.maxIters, "max-iters", 10000, "most launches in one measurement")
	fl.StringVar(&f.copyBytes, "copy-bytes", "1GiB", "buffer size of the copy-bandwidth measurement")
	fl.BoolVar(&f.graph, "graph", true, "replay the timed launches from a captured CUDA graph (false: launch one by one, CPU launch cost included)")
	fl.BoolVar(&f.coldL2, "cold-l2", false, "give every launch its own inputs, rotating through sets that together hold at least 4× the GPU's L2, so no launch reads what an earlier one left in L2")
	fl.StringVar(&f.out, "out", "", "also write the rows to this file as JSON lines")
	fl.Uint64Var(&f.seed, "seed", 0, "seed of the random inputs")
	_ = cmd.RegisterFlagCompletionFunc("attn", completePlugins(sdk.KindAttention))
	_ = cmd.RegisterFlagCompletionFunc("phase", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"prefill", "decode", "prefill,decode"}, cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
}

// check turns the flags into the sweep; errors name the flag.
func (f benchAttnFlags) check(cmd *cobra.Command) (benchAttnConfig, error) {
	var c benchAttnConfig
	if strings.TrimSpace(f.attn) == "" {
		return c, usagef(cmd, "--attn is required: a plugin name or path, e.g. flash or eager")
	}
	for _, part := range strings.Split(f.phases, ",") {
		p, err := attnbench.ParsePhase(part)
		if err != nil {
			return c, usagef(cmd, "--phase: %v", err)
		}
		if !containsPhase(c.phases, p) {
			c.phases = append(c.phases, p)
		}
	}
	ns, err := sweep.ParseSizeList(f.ns)
	if err != nil {
		return c, usagef(cmd, "--n: %v", err)
	}
	batches, err := parseIntList(f.batches, 1)
	if err != nil {
		return c, usagef(cmd, "--batch: %v", err)
	}
	switch {
	case f.heads < 1:
		return c, usagef(cmd, "--heads %d: want at least 1", f.heads)
	case f.kvHeads < 1:
		return c, usagef(cmd, "--kv-heads %d: want at least 1", f.kvHeads)
	case f.heads%f.kvHeads != 0:
		return c, usagef(cmd, "--kv-heads %d: --heads %d is not a multiple of it", f.kvHeads, f.heads)
	case f.dim < 1:
		return c, usagef(cmd, "--head-dim %d: want at least 1", f.dim)
	case f.minTime <= 0:
		return c, usagef(cmd, "--min-time %v: want a positive duration", f.minTime)
	case f.maxTime <= 0:
		return c, usagef(cmd, "--max-time %v: want a positive duration", f.maxTime)
	case f.repeats < 1:
		return c, usagef(cmd, "--repeats %d: want at least 1", f.repeats)
	case f.maxIters < 1:
		return c, usagef(cmd, "--max-iters %d: want at least 1", f.maxIters)
	}
	if c.copyBytes, err = parseBytes(f.copyBytes); err != nil || c.copyBytes < 1<<20 {
		return c, usagef(cmd, "--copy-bytes %q: want a size of at least 1MiB, like 1GiB", f.copyBytes)
	}
	capacity := 0
	if f.capacity != "" {
		if capacity, err = sweep.ParseSize(f.capacity); err != nil {
			return c, usagef(cmd, "--kv-capacity: %v", err)
		}
	}
	c.maxSeq = capacity
	for _, n := range ns {
		if capacity != 0 && capacity < n {
			return c, usagef(cmd, "--kv-capacity %d is less than --n %d", capacity, n)
		}
		c.maxSeq = max(c.maxSeq, n)
	}
	for _, p := range c.phases {
		for _, b := range batches {
			for _, n := range ns {
				c.shapes = append(c.shapes, attnbench.Shape{Phase: p, Batch: b, N: n, Heads: f.heads, KVHeads: f.kvHeads, HeadDim: f.dim, MaxKV: capacity})
			}
		}
	}
	c.opts = attnbench.Options{MinTime: f.minTime, MaxTime: f.maxTime, Repeats: f.repeats, MaxIters: f.maxIters, NoGraph: !f.graph, Seed: f.seed, ColdL2: f.coldL2}
	return c, nil
}

func containsPhase(ps []attnbench.Phase, p attnbench.Phase) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// benchAttnRow is one line of --out and of tools/refgen/attn_bench.py's
// output: the field names are shared, so the two can be joined on
// (phase, batch, n, heads, kv_heads, head_dim).
type benchAttnRow struct {
	Source        string   `json:"source"` // "harness" here, "torch" from attn_bench.py
	Card          string   `json:"card"`
	Driver        string   `json:"driver"`
	Date          string   `json:"date"`
	Plugin        string   `json:"plugin"`
	PluginVersion string   `json:"plugin_version,omitempty"`
	Phase         string   `json:"phase"`
	Batch         int      `json:"batch"`
	N             int      `json:"n"`
	Heads         int      `json:"heads"`
	KVHeads       int      `json:"kv_heads"`
	HeadDim       int      `json:"head_dim"`
	KVCapacity    int      `json:"kv_capacity"`
	Status        string   `json:"status"`
	Error         string   `json:"error,omitempty"`
	MS            *float64 `json:"ms"`
	MinMS         *float64 `json:"min_ms,omitempty"`
	TFLOPS        *float64 `json:"tflops"`
	GBPS          *float64 `json:"gbps"`
	GBPSCounts    string   `json:"gbps_counts"`
	// L2 is "cold" when the launches rotated through InputSets input sets
	// holding together at least 4× the device's L2Bytes (--cold-l2),
	// "warm" when they all read the same inputs.
	L2            string   `json:"l2"`
	L2Bytes       int64    `json:"l2_bytes,omitempty"`
	InputSets     int      `json:"input_sets,omitempty"`
	InputSetBytes int64    `json:"input_set_bytes,omitempty"` // Q + K/V read per launch
	CopyGBPS      *float64 `json:"copy_gbps"`
	PctCopy       *float64 `json:"pct_copy,omitempty"` // decode: gbps as % of copy_gbps
	Timing        string   `json:"timing,omitempty"`   // "graph" or "stream"
	Iters         int      `json:"iters,omitempty"`
	Repeats       int      `json:"repeats,omitempty"`
	Workspace     int64    `json:"workspace_bytes,omitempty"`
	Note          string   `json:"note,omitempty"` // e.g. fewer cold-L2 input sets than asked for
}

// benchGPU is the opened device the sweep runs on.
type benchGPU struct {
	drv    *cuda.Driver
	info   cuda.DeviceInfo
	stream cuda.Stream
	nvrtc  *cuda.NVRTC
	cache  *cuda.Cache
	close  []func() error
}

// openBenchGPU opens GPU 0 and binds its primary context to the calling
// goroutine's OS thread until Close.
func openBenchGPU() (g *benchGPU, err error) {
	g = &benchGPU{}
	defer func() {
		if err != nil {
			g.Close()
		}
	}()
	if g.drv, err = cuda.Open(); err != nil {
		return g, err
	}
	g.close = append(g.close, func() error { g.drv.Close(); return nil })
	if g.info, err = g.drv.DeviceInfo(0); err != nil {
		return g, err
	}
	dev, err := g.drv.Device(0)
	if err != nil {
		return g, err
	}
	ctx, err := g.drv.RetainPrimaryContext(dev)
	if err != nil {
		return g, err
	}
	g.close = append(g.close, func() error { return g.drv.ReleasePrimaryContext(dev) })
	unbind, err := g.drv.Bind(ctx)
	if err != nil {
		return g, err
	}
	g.close = append(g.close, func() error { unbind(); return nil })
	if g.stream, err = g.drv.StreamCreate(cuda.StreamNonBlocking); err != nil {
		return g, err
	}
	g.close = append(g.close, func() error { return g.drv.StreamDestroy(g.stream) })
	if g.nvrtc, err = cuda.OpenNVRTC(); err != nil {
		return g, err
	}
	g.close = append(g.close, func() error { g.nvrtc.Close(); return nil })
	dir, err := cuda.DefaultCacheDir()
	if err != nil {
		return g, err
	}
	g.cache = &cuda.Cache{Dir: dir}
	return g, nil
}

// Close releases what openBenchGPU got, last first.
func (g *benchGPU) Close() error {
	var errs []error
	for i := len(g.close) - 1; i >= 0; i-- {
		errs = append(errs, g.close[i]())
	}
	g.close = nil
	return errors.Join(errs...)
}

// role compiles and loads the kernels of one role.
func (g *benchGPU) role(plugin string, all []sdk.Kernel, name string) (*kernelrun.Role, error) {
	return kernelrun.NewRoleOf(g.drv, all, name, kernelrun.Config{Plugin: plugin, Arch: g.info.Arch(), DType: "bf16", Compile: kernelrun.NVRTC(g.nvrtc, g.cache),
		Multiprocessors: g.info.Multiprocessors, OverlapLaunch: g.drv.CanOverlapLaunch(g.info)})
}

func runBenchAttention(cmd *cobra.Command, f benchAttnFlags) error {
	c, err := f.check(cmd)
	if err != nil {
		return err
	}
	if err := cudaUsable(); err != nil {
		return fmt.Errorf("harness bench attention needs a GPU: %w (run 'harness doctor')", err)
	}
	stdout, log := cmd.OutOrStdout(), cmd.ErrOrStderr()
	var out *os.File
	if f.out != "" {
		if out, err = os.Create(f.out); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		defer out.Close()
	}

	device, _, err := gpuDevice(0)
	if err != nil {
		return err
	}
	shape := sdk.ModelShape{NumLayers: 1, NumHeads: f.heads, NumKVHeads: f.kvHeads, HeadDim: f.dim, HiddenSize: f.heads * f.dim, MaxSeqLen: c.maxSeq}
	pl, err := host.OpenAttention(cmd.Context(), host.Selection{Ref: f.attn, Options: f.attnOpts}, shape, device, hostConfig(log, f.logLevel))
	if err != nil {
		return fmt.Errorf("--attn %s: %w", f.attn, err)
	}
	desc := pl.Plugin.Description()
	kernels := pl.Plan.Kernels
	// The kernels are all the run needs from the plugin process.
	pl.Close()

	g, err := openBenchGPU()
	if err != nil {
		return err
	}
	defer g.Close()
	roles := map[attnbench.Phase]*kernelrun.Role{}
	start := time.Now()
	for _, p := range c.phases {
		r, err := g.role(desc.Name, kernels, p.Role())
		if err != nil {
			return fmt.Errorf("--attn %s (--phase %s): %w", f.attn, p, err)
		}
		defer r.Close()
		roles[p] = r
	}
	fmt.Fprintf(log, "%s %s: kernels ready for %s in %.2f s\n", desc.Name, desc.Version, g.info.Arch(), time.Since(start).Seconds())

	driver := "unknown"
	if v, err := g.drv.DriverVersion(); err == nil {
		driver = fmt.Sprintf("%d.%d", v/1000, v%1000/10)
	}
	base := benchAttnRow{
		Source: "harness", Card: g.info.Name, Driver: driver, Date: time.Now().UTC().Format(time.RFC3339),
		Plugin: desc.Name, PluginVersion: desc.Version, L2: "warm", L2Bytes: int64(g.info.L2Bytes),
	}
	c.opts.L2Bytes = int64(g.info.L2Bytes)
	if c.opts.ColdL2 {
		if g.info.L2Bytes <= 0 {
			return fmt.Errorf("--cold-l2: %s reports no L2 cache size", g.info.Name)
		}
		base.L2 = "cold"
	}
	var copyGBPS *float64
	cp, err := attnbench.CopyBandwidth(g.drv, g.stream, c.copyBytes, c.opts)
	if err != nil {
		fmt.Fprintf(log, "copy bandwidth: %v\n", err)
	} else {
		copyGBPS = ptr(cp.GBps)
		fmt.Fprintf(log, "copy bandwidth: %.0f GB/s (%s cuMemcpyDtoDAsync, read + write)\n", cp.GBps, f.copyBytes)
	}
	base.CopyGBPS = copyGBPS

	var enc *json.Encoder
	if out != nil {
		enc = json.NewEncoder(out)
	}
	var rows []benchAttnRow
	for _, sh := range c.shapes {
		if err := cmd.Context().Err(); err != nil {
			return err
		}
		r := attnbench.Run(g.drv, g.stream, roles[sh.Phase], sh, c.opts)
		row := benchRow(base, r)
		fmt.Fprintln(log, benchProgress(row))
		rows = append(rows, row)
		if enc != nil {
			if err := enc.Encode(row); err != nil {
				return fmt.Errorf("--out: %w", err)
			}
		}
	}
	printBenchTable(stdout, base, f.copyBytes, rows)
	if out != nil {
		if err := out.Close(); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
	}
	return nil
}

// benchRow is the output row of one result.
func benchRow(base benchAttnRow, r attnbench.Result) benchAttnRow {
	row := base
	sh := r.Shape
	row.Phase, row.Batch, row.N = string(sh.Phase), sh.Batch, sh.N
	row.Heads, row.KVHeads, row.HeadDim, row.KVCapacity = sh.Heads, sh.KVHeads, sh.HeadDim, sh.Capacity()
	row.GBPSCounts = sh.BytesCounted()
	row.Status = string(r.Status)
	row.Workspace = r.WorkspaceBytes
	row.L2 = "warm"
	if r.ColdL2 {
		row.L2 = "cold"
	}
	row.InputSets, row.InputSetBytes, row.Note = r.InputSets, r.InputSetBytes, r.Note
	if !r.ColdL2 {
		row.InputSets = 1
	}
	if r.Status != attnbench.StatusOK {
		if r.Err != nil {
			row.Error = r.Err.Error()
		}
		return row
	}
	row.MS, row.MinMS, row.TFLOPS, row.GBPS = ptr(r.MS), ptr(r.MinMS), ptr(r.TFLOPS), ptr(r.GBps)
	row.Iters, row.Repeats = r.Iters, r.Repeats
	row.Timing = "stream"
	if r.Graph {
		row.Timing = "graph"
	}
	if sh.Phase == attnbench.Decode && base.CopyGBPS != nil && *base.CopyGBPS > 0 {
		row.PctCopy = ptr(100 * r.GBps / *base.CopyGBPS)
	}
	return row
}

func benchProgress(r benchAttnRow) string {
	s := fmt.Sprintf("%s batch %d N %d: %s", r.Phase, r.Batch, r.N, r.Status)
	if r.MS != nil {
		s += fmt.Sprintf(" %.4f ms, %.1f TFLOP/s, %.0f GB/s", *r.MS, *r.TFLOPS, *r.GBPS)
	}
	if r.L2 == "cold" && r.InputSets > 0 {
		s += fmt.Sprintf(" (L2 cold: %d input sets)", r.InputSets)
	}
	if r.Note != "" {
		s += "; " + r.Note
	}
	if r.Error != "" {
		s += ": " + r.Error
	}
	return s
}

func printBenchTable(w io.Writer, base benchAttnRow, copyBytes string, rows []benchAttnRow) {
	fmt.Fprintf(w, "attention kernels of %s %s on %s (driver %s), %s\n", base.Plugin, base.PluginVersion, base.Card, base.Driver, base.Date)
	if base.CopyGBPS != nil {
		fmt.Fprintf(w, "device copy bandwidth: %.0f GB/s (%s device-to-device, read + write)\n", *base.CopyGBPS, copyBytes)
	} else {
		fmt.Fprintln(w, "device copy bandwidth: not measured")
	}
	fmt.Fprintln(w, "TFLOP/s: prefill 4·N²·d·heads·batch/2 (causal), decode 4·N·d·heads·batch; GB/s: prefill Q+K+V+O, decode K+V read")
	cold := base.L2 == "cold"
	l2 := "L2 size unknown"
	if base.L2Bytes > 0 {
		l2 = fmt.Sprintf("%d MiB L2", base.L2Bytes>>20)
	}
	if cold {
		fmt.Fprintf(w, "L2: cold (--cold-l2): launches take input sets (Q, K, V of their own) in turn, as many (\"sets\") as hold ≥ %d× the %s together, at least %d\n", attnbench.ColdL2Factor, l2, attnbench.MinInputSets)
	} else {
		fmt.Fprintf(w, "L2: warm: every launch reads the same inputs, and what one leaves in the %s serves the next (--cold-l2: not)\n", l2)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "phase\tbatch\tN\tstatus\tms\tTFLOP/s\tGB/s\t% copy\t"
	if cold {
		head += "sets\t"
	}
	fmt.Fprintln(tw, head)
	dash := func(v *float64, format string) string {
		if v == nil {
			return "-"
		}
		return fmt.Sprintf(format, *v)
	}
	for _, r := range rows {
		line := fmt.Sprintf("%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t", r.Phase, r.Batch, r.N, r.Status,
			dash(r.MS, "%.4f"), dash(r.TFLOPS, "%.1f"), dash(r.GBPS, "%.0f"), dash(r.PctCopy, "%.0f%%"))
		if cold {
			sets := "-"
			if r.Status == string(attnbench.StatusOK) && r.InputSets > 0 {
				sets = fmt.Sprint(r.InputSets)
				if r.Note != "" {
					sets += "*"
				}
			}
			line += sets + "\t"
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
	for _, r := range rows {
		if r.Error != "" {
			fmt.Fprintf(w, "%s batch %d N %d: %s: %s\n", r.Phase, r.Batch, r.N, r.Status, r.Error)
		}
		if r.Note != "" {
			fmt.Fprintf(w, "%s batch %d N %d: * %s\n", r.Phase, r.Batch, r.N, r.Note)
		}
	}
}
