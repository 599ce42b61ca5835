// Package host runs evaluator modules (WASI, wasip1) inside wazero with the
// machine walled off: no filesystem, no network, no environment, a memory
// cap, a wall-clock timeout and bounded output. It finds modules by name or
// path, compiles each once (with an on-disk compilation cache), asks it for
// its descriptor, and scores batches of items, one instantiation per batch,
// checking every output line against the contract.
//
// Each run happens in a short-lived worker process: the calling executable
// started again with LONGCTX_EVALUATOR_WORKER set, which this package's
// init function turns into a worker. The timeout kills that process. This
// replaces wazero's WithCloseOnContextDone, which makes compiled code call
// back into Go at every loop header: measured on the built-ins, that made
// Go-built modules about ten times slower (see evaluators/README.md). The
// process boundary also keeps a crashing runtime away from the harness.
package host

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// Options sets the sandbox limits and where modules and compiled code live.
// Zero values take the defaults below.
type Options struct {
	// CacheDir holds wazero's compiled machine code, so each module is
	// compiled once per machine. Default: DefaultCacheDir().
	CacheDir string
	// NoDiskCache keeps compiled code in a private temporary folder that
	// Close removes, instead of CacheDir.
	NoDiskCache bool
	// MemoryLimit caps a module's linear memory in bytes. Default 512 MiB.
	MemoryLimit uint64
	// Timeout bounds the wall-clock time of one run (one batch), the
	// worker's start included. Default 2 minutes.
	Timeout time.Duration
	// OutputBase and OutputPerItem bound a batch's stdout to
	// OutputBase + OutputPerItem×items bytes. Defaults 1 MiB and 16 KiB.
	OutputBase, OutputPerItem int
	// StderrLimit bounds a run's stderr. Default 1 MiB.
	StderrLimit int
	// BatchSize is the number of items per instantiation; 0 scores all
	// items of a Score call in one run.
	BatchSize int
	// SearchPath is where names are looked up. Default: DefaultSearchPath().
	SearchPath []string
	// WorkerCommand is the executable started as the worker; default
	// os.Executable(). Any program that imports this package works.
	WorkerCommand string
}

// Defaults for Options' zero values.
const (
	DefaultMemoryLimit   = 512 << 20
	DefaultTimeout       = 2 * time.Minute
	DefaultOutputBase    = 1 << 20
	DefaultOutputPerItem = 16 << 10
	DefaultStderrLimit   = 1 << 20
	describeOutputLimit  = 64 << 10
)

func (o Options) withDefaults() Options {
	if o.MemoryLimit == 0 {
		o.MemoryLimit = DefaultMemoryLimit
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.OutputBase <= 0 {
		o.OutputBase = DefaultOutputBase
	}
	if o.OutputPerItem <= 0 {
		o.OutputPerItem = DefaultOutputPerItem
	}
	if o.StderrLimit <= 0 {
		o.StderrLimit = DefaultStderrLimit
	}
	if o.SearchPath == nil {
		o.SearchPath = DefaultSearchPath()
	}
	return o
}

// DefaultCacheDir is the compilation cache under the user cache folder, for
// example ~/.cache/longctx/wazero.
func DefaultCacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "longctx", "wazero"), nil
}

// Host compiles evaluator modules and runs them in worker processes. It is
// safe for concurrent use.
type Host struct {
	opts     Options
	cacheDir string
	tempDir  string // removed by Close; set with NoDiskCache
	worker   string
	runtime  wazero.Runtime
	cache    wazero.CompilationCache

	mu       sync.Mutex
	compiled map[[sha256.Size]byte]bool
}

// New prepares the compilation cache and a wazero runtime used to compile
// and check modules; Close releases them.
func New(ctx context.Context, opts Options) (*Host, error) {
	opts = opts.withDefaults()
	if opts.MemoryLimit < 1<<16 {
		return nil, fmt.Errorf("evaluator memory limit %d bytes is below one 64 KiB page", opts.MemoryLimit)
	}
	h := &Host{opts: opts, compiled: make(map[[sha256.Size]byte]bool)}
	h.worker = opts.WorkerCommand
	if h.worker == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("evaluator worker: cannot find this executable: %w", err)
		}
		h.worker = exe
	}
	switch {
	case opts.NoDiskCache:
		dir, err := os.MkdirTemp("", "longctx-wazero-")
		if err != nil {
			return nil, fmt.Errorf("evaluator compilation cache: %w", err)
		}
		h.tempDir, h.cacheDir = dir, dir
	case opts.CacheDir != "":
		h.cacheDir = opts.CacheDir
	default:
		dir, err := DefaultCacheDir()
		if err != nil {
			return nil, fmt.Errorf("evaluator compilation cache: %w (set Options.CacheDir or NoDiskCache)", err)
		}
		h.cacheDir = dir
	}
	var err error
	h.runtime, h.cache, err = newRuntime(ctx, h.cacheDir)
	if err != nil {
		h.removeTemp()
		return nil, err
	}
	return h, nil
}

// newRuntime makes the wazero runtime the host and the workers share the
// configuration of, so that the host's compile fills the cache entry the
// workers read.
func newRuntime(ctx context.Context, cacheDir string) (wazero.Runtime, wazero.CompilationCache, error) {
	cache, err := wazero.NewCompilationCacheWithDir(cacheDir)
	if err != nil {
		return nil, nil, fmt.Errorf("evaluator compilation cache %s: %w", cacheDir, err)
	}
	cfg := wazero.NewRuntimeConfig().
		WithCompilationCache(cache).
		// Debug info only helps read stack traces of a crashing module;
		// parsing it costs compile time and memory for untrusted input.
		WithDebugInfoEnabled(false)
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		_ = rt.Close(ctx)
		_ = cache.Close(ctx)
		return nil, nil, fmt.Errorf("instantiating WASI for evaluators: %w", err)
	}
	return rt, cache, nil
}

// Close releases the runtime and the cache handle, and removes a private
// cache folder.
func (h *Host) Close(ctx context.Context) error {
	err := errors.Join(h.runtime.Close(ctx), h.cache.Close(ctx))
	h.removeTemp()
	return err
}

func (h *Host) removeTemp() {
	if h.tempDir != "" {
		_ = os.RemoveAll(h.tempDir)
	}
}

// SearchPath is the search path names are resolved on.
func (h *Host) SearchPath() []string { return h.opts.SearchPath }

// Load resolves an evaluator by name (on the host's search path) or path,
// checks and compiles it (once per content; the disk cache makes later
// processes fast) and asks it for its descriptor.
func (h *Host) Load(ctx context.Context, ref string) (*Evaluator, error) {
	path, err := Resolve(ref, h.opts.SearchPath)
	if err != nil {
		return nil, err
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	bin, err := os.ReadFile(path)
	if err != nil {
		return nil, &RunError{Evaluator: ref, Phase: "load", Kind: ErrNotFound, Detail: err.Error()}
	}
	sum, err := h.compile(ctx, ref, bin)
	if err != nil {
		return nil, err
	}
	e := &Evaluator{host: h, ref: ref, name: strings.TrimSuffix(filepath.Base(path), Ext), path: path, sum: sum}
	if err := e.describe(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// compile checks a module and compiles it into the cache.
func (h *Host) compile(ctx context.Context, ref string, bin []byte) ([sha256.Size]byte, error) {
	sum := sha256.Sum256(bin)
	invalid := func(format string, args ...any) error {
		return &RunError{Evaluator: ref, Phase: "load", Kind: ErrInvalidModule, Detail: fmt.Sprintf(format, args...)}
	}
	minPages, _, err := initialMemoryPages(bin)
	if err != nil {
		return sum, invalid("%v", err)
	}
	if minPages<<16 > h.opts.MemoryLimit {
		return sum, invalid("declares %d MiB of initial memory, over the %d MiB cap", minPages>>4, h.opts.MemoryLimit>>20)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.compiled[sum] {
		return sum, nil
	}
	mod, err := h.runtime.CompileModule(ctx, bin)
	if err != nil {
		return sum, invalid("%v", err)
	}
	defer mod.Close(ctx)
	if err := checkImportsExports(mod); err != nil {
		return sum, invalid("%v", err)
	}
	h.compiled[sum] = true
	return sum, nil
}

// checkImportsExports requires a WASI command: a _start export and imports
// from wasi_snapshot_preview1 only.
func checkImportsExports(mod wazero.CompiledModule) error {
	if _, ok := mod.ExportedFunctions()["_start"]; !ok {
		return errors.New("no _start export: not a WASI command module (build with GOOS=wasip1 GOARCH=wasm, or as a wasm32-wasip1 binary)")
	}
	for _, f := range mod.ImportedFunctions() {
		if m, n, _ := f.Import(); m != wasi_snapshot_preview1.ModuleName {
			return fmt.Errorf("imports %s from module %q; evaluators may import only %s", n, m, wasi_snapshot_preview1.ModuleName)
		}
	}
	for _, mem := range mod.ImportedMemories() {
		m, n, _ := mem.Import()
		return fmt.Errorf("imports memory %s from module %q; an evaluator must define its own", n, m)
	}
	return nil
}
