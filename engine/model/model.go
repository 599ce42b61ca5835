// Package model runs decoder-only transformer checkpoints of the Llama,
// Mistral, Qwen2 and Qwen3 families on the CPU in fp32 (or, with
// NumericsBF16, in fp32 rounded to bf16 wherever the CUDA engine stores a
// bf16 tensor), structured exactly like their Hugging Face transformers
// implementations: it parses config.json, binds the checkpoint's tensors
// (kept in their stored bf16, f16 or f32, never copied whole into fp32),
// and runs chunked prefill and token-by-token generation over a
// per-sequence KV cache, with attention delegated to an attention.Backend.
//
// Synthetic presets ("synthetic:llama3-8b", ...) give the real shapes with
// seeded random weights for performance work without a download.
package model

import (
	"errors"
	"fmt"
	"runtime"
	"strings"

	"github.com/longctx/longctx/engine/attention"
	"github.com/longctx/longctx/engine/model/cpu"
	"github.com/longctx/longctx/engine/model/rope"
	"github.com/longctx/longctx/engine/weights"
)

// SyntheticPrefix marks a preset name in Load's path argument.
const SyntheticPrefix = "synthetic:"

// defaultChunk is the prefill chunk the load-time memory check assumes.
const defaultChunk = 512

// LoadOptions configure Load and FromSource.
type LoadOptions struct {
	// Open opens a checkpoint folder as a weights.Source (the engine's
	// safetensors.Open). Required to load a folder; unused for presets.
	Open func(dir string) (weights.Source, error)
	// Attention computes attention; nil means attention.Eager{}, or
	// attention.EagerBF16{} with NumericsBF16 (which accepts no other).
	Attention attention.Backend
	// Seed seeds a synthetic preset's weights.
	Seed uint64
	// Workers bounds the goroutines of the matrix kernels; 0 means
	// runtime.GOMAXPROCS(0).
	Workers int
	// MemoryLimit is the RAM the model may plan to use, in bytes. 0 reads
	// what the host has available (MemAvailable, capped by the cgroup
	// limit); negative disables the check.
	MemoryLimit int64
	// Numerics is the forward pass's arithmetic: NumericsFP32 (the zero
	// value) or NumericsBF16, which reproduces the bf16 GPU engine's
	// roundings and converts F16/F32 weights to bf16 as it does.
	Numerics Numerics
}

// Info describes a loaded model.
type Info struct {
	// Name is the path or "synthetic:NAME" the model was loaded from.
	Name   string
	Family Family
	// Synthetic is set when the weights are seeded random numbers: speed
	// and memory figures are real, quality figures mean nothing.
	Synthetic bool
	// Params counts weight elements; WeightBytes is their stored size.
	Params      int64
	WeightBytes int64
	// DType is the element type of the embedding matrix, the checkpoint's
	// main type (BF16 with NumericsBF16, which converts the weights).
	DType weights.DType
	// Numerics is the forward pass's arithmetic.
	Numerics Numerics
}

// Model is a loaded model. It is read-only once loaded: several Sequences
// may run on it concurrently.
type Model struct {
	cfg     Config
	info    Info
	src     weights.Source
	w       *binding
	invFreq []float32
	attn    attention.Backend
	ar      arith
	workers int
	// memOpt is LoadOptions.MemoryLimit, consulted again before each run.
	memOpt int64
}

// Load loads a model from a Hugging Face folder (config.json,
// generation_config.json when present, and the weights opts.Open reads) or
// from a synthetic preset named "synthetic:NAME".
func Load(path string, opts LoadOptions) (*Model, error) {
	if name, ok := strings.CutPrefix(path, SyntheticPrefix); ok {
		preset, err := FindPreset(name)
		if err != nil {
			return nil, err
		}
		src, err := NewSyntheticSource(preset.Config, opts.Seed)
		if err != nil {
			return nil, err
		}
		m, err := FromSource(preset.Config, src, opts)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		m.info.Name = path
		return m, nil
	}

	cfg, err := LoadConfig(path)
	if err != nil {
		return nil, err
	}
	if opts.Open == nil {
		return nil, errors.New("model: LoadOptions.Open is required to load a checkpoint folder")
	}
	src, err := opts.Open(path)
	if err != nil {
		return nil, err
	}
	m, err := FromSource(cfg, src, opts)
	if err != nil {
		src.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m.info.Name = path
	return m, nil
}

// FromSource binds src's tensors to cfg. The model owns src from then on:
// Close closes it (on error the caller still owns it).
func FromSource(cfg Config, src weights.Source, opts LoadOptions) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := opts.Numerics.validate(); err != nil {
		return nil, err
	}
	attn, err := attentionFor(opts.Numerics, opts.Attention, opts.Workers)
	if err != nil {
		return nil, err
	}
	invFreq, err := rope.InvFreq(cfg.RoPE, cfg.HeadDim)
	if err != nil {
		return nil, err
	}
	limit := opts.MemoryLimit
	if limit == 0 {
		limit = memoryLimit(0)
	}
	nworkers := workers(opts.Workers)
	_, synthetic := src.(*SyntheticSource)
	if synthetic {
		// Synthetic weights are generated on the heap as they are bound:
		// check before making them.
		need := EstimateMemory(cfg, syntheticBytes(cfg), defaultChunk, defaultChunk, nworkers)
		if err := checkFits("loading the model", need, limit); err != nil {
			return nil, err
		}
	}
	bindSrc := src
	if opts.Numerics == NumericsBF16 {
		bindSrc = bf16Source{src}
	}
	w, err := bind(cfg, bindSrc)
	if err != nil {
		return nil, err
	}
	if !synthetic {
		need := EstimateMemory(cfg, w.bytes, defaultChunk, defaultChunk, nworkers)
		if err := checkFits("running the model", need, limit); err != nil {
			return nil, err
		}
	}
	m := &Model{
		cfg:     cfg,
		src:     src,
		w:       w,
		invFreq: invFreq,
		attn:    attn,
		ar:      opts.Numerics.arith(),
		workers: nworkers,
		memOpt:  opts.MemoryLimit,
	}
	m.info = Info{
		Family:      cfg.Family,
		Synthetic:   synthetic,
		Params:      w.params,
		WeightBytes: w.bytes,
		DType:       w.embedDType,
		Numerics:    opts.Numerics,
	}
	return m, nil
}

func workers(n int) int {
	if n <= 0 {
		return runtime.GOMAXPROCS(0)
	}
	return n
}

// Config returns the model's architecture.
func (m *Model) Config() Config { return m.cfg }

// Info describes the model.
func (m *Model) Info() Info { return m.info }

// Attention returns the attention backend in use.
func (m *Model) Attention() attention.Backend { return m.attn }

// Close releases the weights. Sequences must not be used afterwards.
func (m *Model) Close() error { return m.src.Close() }

// EstimateMemory estimates a run of tokens tokens in total, prefilled in
// chunks of chunk tokens, on this model.
func (m *Model) EstimateMemory(tokens, chunk int) MemoryEstimate {
	return EstimateMemory(m.cfg, m.info.WeightBytes, tokens, chunk, m.workers)
}

// checkRun checks that a run of tokens tokens in chunks of chunk fits. With
// a fixed MemoryLimit the whole estimate must fit in it; otherwise the
// weights are already loaded, and the rest must fit in what the host has
// left now.
func (m *Model) checkRun(tokens, chunk int) error {
	need := m.EstimateMemory(tokens, chunk)
	limit := m.memOpt
	if limit == 0 {
		need.Weights = 0
		limit = memoryLimit(0)
	}
	return checkFits(fmt.Sprintf("a run of %d tokens", tokens), need, limit)
}

// mul computes out = x·matᵀ + bias with the model's worker count, and
// stores the result as the model's arithmetic does (bf16: rounded once,
// after the fp32 bias add, as the GPU's GEMM epilogue writes it).
func (m *Model) mul(mat cpu.Matrix, out, x []float32, n int, bias []float32) {
	mat.MulT(out, x, n, bias, m.workers)
	m.ar.store(out[:n*mat.Rows])
}
