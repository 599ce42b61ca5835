package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/longctx/longctx/engine/cuda"
	"github.com/longctx/longctx/engine/gpu"
	"github.com/longctx/longctx/engine/model"
	"github.com/longctx/longctx/engine/weights"
	"github.com/longctx/longctx/harness/results"
	"github.com/longctx/longctx/plugins/host"
	"github.com/longctx/longctx/plugins/sdk"
)

// Backend names of --backend.
const (
	backendAuto = "auto"
	backendCPU  = "cpu"
	backendCUDA = "cuda"
)

// resolveBackend turns --backend into the backend cells record: auto picks
// cuda when a GPU, NVRTC and cuBLASLt are all there, and says why not
// otherwise. The CPU backend is recorded as "" in cells so their IDs stay
// those of runs made before there was a choice.
func resolveBackend(flag string, log io.Writer) (string, error) {
	switch flag {
	case backendCPU, "":
		return "", nil
	case backendCUDA:
		if err := cudaUsable(); err != nil {
			return "", fmt.Errorf("--backend cuda: %w (run 'harness doctor')", err)
		}
		return backendCUDA, nil
	case backendAuto:
		if err := cudaUsable(); err != nil {
			fmt.Fprintf(log, "backend: cpu (no usable GPU: %v)\n", err)
			return "", nil
		}
		fmt.Fprintln(log, "backend: cuda")
		return backendCUDA, nil
	}
	return "", fmt.Errorf("--backend %q: want auto, cpu or cuda", flag)
}

// cudaUsable checks that the driver sees a GPU and the run-time libraries
// load.
func cudaUsable() error {
	drv, err := cuda.Open()
	if err != nil {
		return err
	}
	defer drv.Close()
	n, err := drv.DeviceCount()
	if err != nil {
		return err
	}
	if n == 0 {
		return errors.New("the CUDA driver sees no GPU")
	}
	nv, err := cuda.OpenNVRTC()
	if err != nil {
		return err
	}
	nv.Close()
	bl, err := cuda.OpenBlasLt()
	if err != nil {
		return err
	}
	bl.Close()
	return nil
}

// gpuDevice describes GPU ordinal i for the plugins' Prepare.
func gpuDevice(i int) (sdk.Device, cuda.DeviceInfo, error) {
	drv, err := cuda.Open()
	if err != nil {
		return sdk.Device{}, cuda.DeviceInfo{}, err
	}
	defer drv.Close()
	info, err := drv.DeviceInfo(i)
	if err != nil {
		return sdk.Device{}, cuda.DeviceInfo{}, err
	}
	return sdk.Device{Kind: "cuda", Arch: info.Arch(), DType: "bf16", MemoryBytes: int64(info.TotalMemory)}, info, nil
}

// modelConfig reads a checkpoint folder's config.json or a synthetic
// preset's architecture.
func modelConfig(path string) (model.Config, error) {
	if name, ok := strings.CutPrefix(path, model.SyntheticPrefix); ok {
		p, err := model.FindPreset(name)
		return p.Config, err
	}
	return model.LoadConfig(path)
}

// gpuOptions hands the plugins' GPU kernels and KV policy to the engine.
func (s *pluginSet) gpuOptions(opts *gpu.Options) {
	if s.attn != nil {
		opts.Attention = s.attn.Plan.Kernels
	}
	if s.kv != nil {
		pol := s.kv.Plan.Policy
		opts.KVPolicy, opts.KVScore, opts.KVNeedsValues = &pol, s.kv.Plan.Kernels, s.kv.Plan.NeedsValues
	}
}

// loadGPUModel loads a checkpoint folder or synthetic preset on the GPU
// with the plugins' kernels; tokPath, when set, overrides the tokenizer
// found beside the weights.
func loadGPUModel(path, tokPath string, plugins *pluginSet, opts gpu.Options) (*loadedModel, error) {
	cfg, err := modelConfig(path)
	if err != nil {
		return nil, err
	}
	plugins.gpuOptions(&opts)
	// The engine copies (or, for a preset, generates) the weights onto the
	// device during Load, so the source is closed right after.
	var src weights.Source
	if strings.HasPrefix(path, model.SyntheticPrefix) {
		src, err = model.NewSyntheticSource(cfg, opts.Seed)
	} else {
		src, err = openSafetensors(path)
	}
	if err != nil {
		return nil, err
	}
	eng, err := gpu.Load(cfg, src, path, opts)
	src.Close()
	if err != nil {
		return nil, err
	}
	l := &loadedModel{GPU: eng}
	if err := l.attachText(path, tokPath); err != nil {
		eng.Close()
		return nil, err
	}
	return l, nil
}

// runBatchesGPU runs reqs in batches of c.Batch sequences, each batch one
// engine.Generate call: prompts prefilled one after another, then decoded
// together.
func (cr *cellRun) runBatchesGPU(ctx context.Context, reqs []request, rep int, warmup bool) []results.Row {
	eng := cr.lm.GPU
	batch := max(cr.c.Batch, 1)
	var rows []results.Row
	for start := 0; start < len(reqs); start += batch {
		part := reqs[start:min(start+batch, len(reqs))]
		greqs := make([]gpu.Request, len(part))
		for i, r := range part {
			greqs[i] = gpu.Request{Prompt: r.ids, MaxNewTokens: r.maxNew}
		}
		res, stats, err := eng.Generate(ctx, greqs, gpu.GenerateOptions{ChunkSize: cr.chunk, IgnoreStop: cr.c.Task == "synthetic"})
		for i, r := range part {
			row := cr.base
			row.SampleID, row.Depth, row.References = r.sampleID, r.depth, r.references
			if row.References == nil {
				row.References = []string{}
			}
			row.PromptTokens = int64(len(r.ids))
			row.RepeatIndex, row.BatchIndex, row.Warmup = int64(rep), int64(start/batch), warmup
			if err != nil {
				row.Status = results.StatusError
				if errors.Is(err, model.ErrOutOfMemory) {
					row.Status = results.StatusOOM
				}
				msg := err.Error()
				row.Error = &msg
				rows = append(rows, row)
				continue
			}
			cr.fillRow(&row, r.ids, &res[i].Result)
			row.PeakEngineBytes, row.PeakDeviceBytes = ptr(stats.PeakEngineBytes), ptr(stats.PeakDeviceBytes)
			row.WorkspaceBytes = ptr(stats.WorkspaceBytes)
			row.PrefillMS = ptr(ms(res[i].Prefill))
			if cr.plugins.kv != nil {
				row.KVEvictedTokens = ptr(res[i].EvictedTokens)
				if res[i].Compress > 0 {
					row.KVCompressMS = ptr(ms(res[i].Compress))
				}
			}
			rows = append(rows, row)
		}
	}
	return rows
}

// autoBackend refines an auto-resolved cuda backend by the chosen plugins:
// a plugin without GPU kernels (flash and flex until they get theirs) runs
// on the CPU instead, with a line saying so; an explicit --backend cuda is
// left to fail with the plugin's own message. Plugins that cannot be
// started are left for the run to report.
func autoBackend(ctx context.Context, log io.Writer, flag, resolved string, p pluginFlags) string {
	if flag != backendAuto || resolved != backendCUDA {
		return resolved
	}
	for _, sel := range []struct {
		kind sdk.Kind
		ref  string
	}{{sdk.KindAttention, p.attn}, {sdk.KindKVCache, p.kv}} {
		if sel.ref == "" {
			continue
		}
		pl, err := host.Open(ctx, sel.kind, sel.ref, hostConfig(log, p.logLevel))
		if err != nil {
			continue
		}
		devices := pl.Description().Capabilities.Devices
		pl.Close()
		if !slices.Contains(devices, "cuda") {
			fmt.Fprintf(log, "backend: cpu (plugin %s has no GPU kernels; --backend cuda to insist)\n", sel.ref)
			return ""
		}
	}
	return resolved
}
