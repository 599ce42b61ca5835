// Package gpu is the CUDA backend of the engine: it runs the same model
// families as engine/model in bf16 on an NVIDIA GPU, with every projection
// through cuBLASLt, the engine's own kernels (kernels/core) for the rest,
// attention and KV scoring from plugin-delivered kernels (kernels/abi), an
// accounting allocator, and decode steps replayed as a CUDA graph.
//
// Arithmetic mirrors Hugging Face transformers in bf16: the residual
// stream, projections and attention inputs are rounded to bf16 where
// transformers rounds them, so greedy tokens match a transformers bf16
// reference on the same card.
package gpu

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/longctx/longctx/engine/cuda"
	"github.com/longctx/longctx/engine/gpu/ops"
	"github.com/longctx/longctx/engine/kernelrun"
	"github.com/longctx/longctx/engine/kvpolicy"
	"github.com/longctx/longctx/engine/model"
	"github.com/longctx/longctx/engine/model/rope"
	"github.com/longctx/longctx/engine/weights"
	"github.com/longctx/longctx/plugins/sdk"
)

// DefaultGemmWorkspace is cuBLASLt's scratch, allocated once per engine.
const DefaultGemmWorkspace = 32 << 20

// Options configure Load.
type Options struct {
	// Device is the CUDA device ordinal.
	Device int
	// MemLimit caps the engine's device memory (weights, KV cache,
	// activations, workspaces) in bytes, to emulate a smaller card; 0 means
	// the card's memory.
	MemLimit int64
	// CacheDir holds compiled kernels; "" means cuda.DefaultCacheDir.
	CacheDir string
	// Attention are the attention plugin's kernels for the roles
	// attention.prefill and attention.decode.
	Attention []sdk.Kernel
	// KVScore are the KV plugin's kv.score kernels; KVPolicy its policy
	// (nil: the cache is never compressed).
	KVScore  []sdk.Kernel
	KVPolicy *kvpolicy.Policy
	// KVNeedsValues passes the values as well as the keys to kv.score.
	KVNeedsValues bool
	// Seed seeds synthetic weights (see model.SyntheticSource).
	Seed uint64
	// NoGraph runs decode steps as individual launches instead of
	// replaying a captured CUDA graph (to measure what the graph saves).
	NoGraph bool
	// Log receives progress lines (compilation, weight upload); nil
	// discards them.
	Log io.Writer
	// GEMVMinWeights is the smallest weight matrix (in elements) whose
	// products with at most ops.GEMVMaxRows rows use the engine's GEMV
	// instead of cuBLASLt; 0 means DefaultGEMVMinWeights, negative never.
	GEMVMinWeights int64
	// Profile times each part of the forward pass with CUDA events and
	// writes a breakdown to Log after each prefill and decode loop; it
	// turns the CUDA graph off (a graph has no events inside).
	Profile bool
}

// Engine is a model loaded on a GPU. Its methods may be called from any
// goroutine but run one at a time on the engine's CUDA thread.
type Engine struct {
	cfg  model.Config
	info model.Info
	opts Options

	th      *thread
	drv     *cuda.Driver
	dev     cuda.Device
	devInfo cuda.DeviceInfo
	stream  cuda.Stream
	nvrtc   *cuda.NVRTC
	cache   *cuda.Cache
	blas    *cuda.BlasLt
	ops     *ops.Kernels
	own     *ownKernels
	alloc   *Allocator

	attnPrefill, attnDecode, score *kernelrun.Role
	policy                         *kvpolicy.Policy

	w       deviceWeights
	invFreq cuda.DevicePtr
	gemmWS  cuda.DevicePtr
	// baseUsed is the device's used memory before the engine allocated
	// anything (other processes, the context itself).
	baseUsed uint64
	peakDev  uint64
	retained bool
	prof     *profiler
	gemvMin  int64
}

// DefaultGEMVMinWeights: below a million weights a product is too small
// for its bandwidth to matter, and cuBLASLt (whose rounding transformers
// shares bit for bit) is kept.
const DefaultGEMVMinWeights = 1 << 20

// Config returns the model's architecture.
func (e *Engine) Config() model.Config { return e.cfg }

// Info describes the loaded model.
func (e *Engine) Info() model.Info { return e.info }

// DeviceInfo describes the GPU.
func (e *Engine) DeviceInfo() cuda.DeviceInfo { return e.devInfo }

// DriverDescription names the driver and libraries, for result rows.
func (e *Engine) DriverDescription() string {
	v, _ := e.drv.DriverVersion()
	nv := e.nvrtc.VersionString()
	return fmt.Sprintf("CUDA driver %d.%d, NVRTC %s, cuBLASLt %s", v/1000, v%1000/10, nv, e.blas.Version())
}

// Usage returns the allocator's counters.
func (e *Engine) Usage() Usage { return e.alloc.Usage() }

// Load opens the GPU, compiles the kernels and uploads the model. It owns
// src only for the call: weights are copied to the device (synthetic ones
// generated there) and src may be closed afterwards.
func Load(cfg model.Config, src weights.Source, name string, opts Options) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.KVPolicy != nil {
		if err := opts.KVPolicy.Validate(cfg.NumLayers); err != nil {
			return nil, err
		}
		if !opts.KVPolicy.Inactive() && len(opts.KVScore) == 0 {
			return nil, errors.New("the KV plugin's policy evicts tokens but the plugin delivered no kv.score kernel for the GPU")
		}
		if opts.KVPolicy.When == kvpolicy.Decode {
			return nil, errors.New("decode-time KV budgets (when=decode) are not supported by the cuda backend yet; use when=prefill or the cpu backend")
		}
	}
	drv, err := cuda.Open()
	if err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg, opts: opts, drv: drv, policy: opts.KVPolicy}
	e.info = model.Info{Name: name, Family: cfg.Family, Params: cfg.ParamCount(), WeightBytes: 2 * cfg.ParamCount(), DType: weights.BF16, Numerics: model.NumericsBF16}
	_, e.info.Synthetic = src.(*model.SyntheticSource)
	th, err := startThread(e.setupOrUndo)
	if err != nil {
		drv.Close()
		return nil, err
	}
	e.th = th
	if err := th.do(func() error { return e.upload(src) }); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// Warm compiles every kernel an engine for cfg with opts would use, or
// finds it in the disk cache, without loading any weights; it returns how
// long that took.
func Warm(cfg model.Config, opts Options) (time.Duration, error) {
	if err := cfg.Validate(); err != nil {
		return 0, err
	}
	drv, err := cuda.Open()
	if err != nil {
		return 0, err
	}
	defer drv.Close()
	e := &Engine{cfg: cfg, opts: opts, drv: drv}
	start := time.Now()
	th, err := startThread(e.setupOrUndo)
	if err != nil {
		return 0, err
	}
	took := time.Since(start)
	err = th.do(e.teardown)
	th.stop()
	return took, err
}

// setupOrUndo is setup, releasing what it got on failure; it runs on the
// CUDA thread, where the context is current.
func (e *Engine) setupOrUndo() error {
	if err := e.setup(); err != nil {
		return errors.Join(err, e.teardown())
	}
	return nil
}

// setup runs on the CUDA thread: context, stream, libraries, kernels.
func (e *Engine) setup() error {
	var err error
	if e.devInfo, err = e.drv.DeviceInfo(e.opts.Device); err != nil {
		return err
	}
	if e.dev, err = e.drv.Device(e.opts.Device); err != nil {
		return err
	}
	ctx, err := e.drv.RetainPrimaryContext(e.dev)
	if err != nil {
		return err
	}
	e.retained = true
	if err := e.drv.SetCurrent(ctx); err != nil {
		return err
	}
	free, total, err := e.drv.MemGetInfo()
	if err != nil {
		return err
	}
	e.baseUsed = total - free
	limit := e.opts.MemLimit
	if limit > int64(total) {
		return fmt.Errorf("--mem-limit %s is more than the %s the GPU has", FormatBytes(limit), FormatBytes(int64(total)))
	}
	e.alloc = NewAllocator(e.drv, limit)
	e.gemvMin = e.opts.GEMVMinWeights
	if e.gemvMin == 0 {
		e.gemvMin = DefaultGEMVMinWeights
	}
	if e.opts.Profile {
		e.prof = newProfiler(e.drv)
		e.opts.NoGraph = true
	}
	if e.stream, err = e.drv.StreamCreate(cuda.StreamNonBlocking); err != nil {
		return err
	}
	if e.nvrtc, err = cuda.OpenNVRTC(); err != nil {
		return err
	}
	dir := e.opts.CacheDir
	if dir == "" {
		if dir, err = cuda.DefaultCacheDir(); err != nil {
			return err
		}
	}
	e.cache = &cuda.Cache{Dir: dir}
	if e.blas, err = cuda.OpenBlasLt(); err != nil {
		return err
	}
	arch := e.devInfo.Arch()
	if e.ops, err = ops.Load(e.drv, e.nvrtc, e.cache, arch); err != nil {
		return err
	}
	if e.own, err = loadOwnKernels(e.drv, e.nvrtc, e.cache, arch); err != nil {
		return err
	}
	if e.attnPrefill, err = e.role(sdk.RoleAttentionPrefill, e.opts.Attention, arch); err != nil {
		return err
	}
	if e.attnDecode, err = e.role(sdk.RoleAttentionDecode, e.opts.Attention, arch); err != nil {
		return err
	}
	if len(e.opts.KVScore) > 0 {
		if e.score, err = e.role(sdk.RoleKVScore, e.opts.KVScore, arch); err != nil {
			return err
		}
	}
	if e.gemmWS, err = e.alloc.Alloc(Workspace, DefaultGemmWorkspace, "cuBLASLt workspace"); err != nil {
		return err
	}
	if err := e.blas.SetWorkspace(e.gemmWS, DefaultGemmWorkspace); err != nil {
		return err
	}
	inv, err := rope.InvFreq(e.cfg.RoPE, e.cfg.HeadDim)
	if err != nil {
		return err
	}
	if e.invFreq, err = e.alloc.Alloc(Weights, int64(4*len(inv)), "RoPE inverse frequencies"); err != nil {
		return err
	}
	return e.drv.MemcpyHtoDAsync(e.invFreq, f32Bytes(inv), e.stream)
}

// role compiles the kernels of one role from a plugin's list.
func (e *Engine) role(name string, all []sdk.Kernel, arch string) (*kernelrun.Role, error) {
	r, err := kernelrun.NewRoleOf(e.drv, all, name, kernelrun.Config{Plugin: name, Arch: arch, DType: "bf16", Compile: kernelrun.NVRTC(e.nvrtc, e.cache),
		Multiprocessors: e.devInfo.Multiprocessors, OverlapLaunch: e.drv.CanOverlapLaunch(e.devInfo)})
	if err != nil {
		return nil, fmt.Errorf("%s kernels: %w", name, err)
	}
	return r, nil
}

// Close frees the device memory and stops the CUDA thread.
func (e *Engine) Close() error {
	var err error
	if e.th != nil {
		err = e.th.do(func() error { return e.teardown() })
		e.th.stop()
		e.th = nil
	}
	if e.drv != nil {
		e.drv.Close()
		e.drv = nil
	}
	return err
}

func (e *Engine) teardown() error {
	if e.prof != nil {
		e.prof.destroy()
		e.prof = nil
	}
	if e.blas != nil {
		e.blas.Close()
		e.blas = nil
	}
	if e.nvrtc != nil {
		e.nvrtc.Close()
		e.nvrtc = nil
	}
	// A faulted kernel leaves the context broken for the whole process
	// ("sticky" errors): then nothing can be freed one by one, and the
	// context is reset instead, which destroys everything in it, so the
	// next engine on the device starts clean.
	if e.retained {
		if err := e.drv.Synchronize(); err != nil {
			errs := []error{fmt.Errorf("the CUDA context failed and is reset: %w", err)}
			errs = append(errs, e.drv.ReleasePrimaryContext(e.dev), e.drv.ResetPrimaryContext(e.dev))
			e.retained = false
			return errors.Join(errs...)
		}
	}
	var errs []error
	if e.alloc != nil {
		errs = append(errs, e.alloc.FreeAll())
	}
	if e.stream != 0 {
		errs = append(errs, e.drv.StreamDestroy(e.stream))
		e.stream = 0
	}
	for _, r := range []*kernelrun.Role{e.attnPrefill, e.attnDecode, e.score} {
		if r != nil {
			errs = append(errs, r.Close())
		}
	}
	if e.ops != nil {
		errs = append(errs, e.ops.Close())
	}
	if e.retained {
		errs = append(errs, e.drv.ReleasePrimaryContext(e.dev))
		e.retained = false
	}
	return errors.Join(errs...)
}

// syncPeak samples the device's used memory; the result rows' peak
// device memory is the largest sample minus what was in use before the
// engine started.
func (e *Engine) syncPeak() {
	free, total, err := e.drv.MemGetInfo()
	if err == nil && total-free > e.peakDev {
		e.peakDev = total - free
	}
}

// PeakDeviceBytes is the highest device memory in use seen by cuMemGetInfo
// since the last ResetPeaks, less what was in use before the engine loaded.
func (e *Engine) PeakDeviceBytes() int64 {
	if e.peakDev < e.baseUsed {
		return 0
	}
	return int64(e.peakDev - e.baseUsed)
}

func f32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		u := math.Float32bits(f)
		b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
	}
	return b
}

func i32Bytes(v []int32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		u := uint32(x)
		b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
	}
	return b
}

// names joins kernel entries for messages.
func names(ks []sdk.Kernel) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = k.Entry
	}
	return strings.Join(s, ", ")
}
