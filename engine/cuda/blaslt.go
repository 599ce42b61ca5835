package cuda

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"unsafe"
)

// cublasLtLibraries are the sonames tried, newest first.
var cublasLtLibraries = []string{"libcublasLt.so.13", "libcublasLt.so.12"}

// ErrNoBlasLt is returned by OpenBlasLt when no libcublasLt can be loaded.
var ErrNoBlasLt = errors.New("no cuBLASLt found: libcublasLt.so.13 or libcublasLt.so.12 could not be loaded")

// The numbers below are cuBLASLt's ABI. They are stable across CUDA 11-13
// and were read from cublasLt.h / library_types.h / cublas_api.h as
// published (CUDA 11.x cublasLt.h as vendored in ggerganov/llama.cpp
// include/cuda/cublasLt.h) and cross-checked against NVIDIA's nvmath-python
// bindings documentation for the current release
// (docs.nvidia.com/cuda/nvmath-python/latest/bindings/generated/
// nvmath.bindings.cublasLt.{MatmulDescAttribute,MatmulPreferenceAttribute,
// Epilogue}.html, nvmath.bindings.cublas.ComputeType.html,
// nvmath.CudaDataType.html).
const (
	// cudaDataType_t (library_types.h).
	cudaR32F  = 0  // CUDA_R_32F
	cudaR16BF = 14 // CUDA_R_16BF

	// cublasComputeType_t (cublas_api.h): fp32 accumulation, no reduced
	// precision shortcuts.
	cublasCompute32F = 68 // CUBLAS_COMPUTE_32F

	// cublasOperation_t (cublas_api.h).
	cublasOpN = 0 // CUBLAS_OP_N
	cublasOpT = 1 // CUBLAS_OP_T

	// cublasLtMatmulDescAttributes_t.
	ltDescTransA      = 3 // CUBLASLT_MATMUL_DESC_TRANSA, int32 cublasOperation_t
	ltDescTransB      = 4 // CUBLASLT_MATMUL_DESC_TRANSB, int32 cublasOperation_t
	ltDescEpilogue    = 7 // CUBLASLT_MATMUL_DESC_EPILOGUE, uint32 cublasLtEpilogue_t
	ltDescBiasPointer = 8 // CUBLASLT_MATMUL_DESC_BIAS_POINTER, const void* (device)

	// cublasLtEpilogue_t. The bias vector has the type of D (here bf16)
	// unless CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE (26) says otherwise, has
	// one element per row of D and is broadcast over D's columns.
	ltEpilogueDefault = 1 // CUBLASLT_EPILOGUE_DEFAULT
	ltEpilogueBias    = 4 // CUBLASLT_EPILOGUE_BIAS

	// cublasLtMatmulPreferenceAttributes_t.
	ltPrefMaxWorkspaceBytes = 1 // CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, uint64
	ltPrefMinAlignmentA     = 5 // CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, uint32
	ltPrefMinAlignmentB     = 6 // CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, uint32
	ltPrefMinAlignmentC     = 7 // CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, uint32
	ltPrefMinAlignmentD     = 8 // CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, uint32

	// maxAlignment is the alignment cuBLASLt assumes by default (the
	// MIN_ALIGNMENT preferences default to 256 bytes).
	maxAlignment = 256
)

// ltHeuristicResult mirrors cublasLtMatmulHeuristicResult_t:
//
//	typedef struct {
//	  cublasLtMatmulAlgo_t algo;   // struct { uint64_t data[8]; }
//	  size_t workspaceSize;
//	  cublasStatus_t state;        // int enum
//	  float wavesCount;
//	  int reserved[4];
//	} cublasLtMatmulHeuristicResult_t;   // 96 bytes on LP64
//
// (TestBlasLtABISizes pins size and offsets.)
type ltHeuristicResult struct {
	algo          [8]uint64
	workspaceSize uint64
	state         int32
	wavesCount    float32
	reserved      [4]int32
}

// BlasError is a failed cuBLASLt call.
type BlasError struct {
	Func   string // e.g. "cublasLtMatmul"
	Status int    // the cublasStatus_t
	Name   string // cublasLtGetStatusName, e.g. "CUBLAS_STATUS_NOT_SUPPORTED"
	Text   string // cublasLtGetStatusString
}

func (e *BlasError) Error() string {
	return fmt.Sprintf("%s: %s (%d): %s", e.Func, e.Name, e.Status, e.Text)
}

// BlasLt is an opened libcublasLt with, once SetWorkspace has run, a
// cuBLASLt handle, its workspace and a cache of GEMM plans. Opening needs no
// GPU context (the doctor only reads the version); SetWorkspace, GemmBF16,
// Prepare and Close do: call them from a goroutine that did Driver.Bind on
// the context SetWorkspace ran in (cuBLASLt ties a handle to its device).
// The methods are safe for concurrent use, but GEMMs on different streams
// must not overlap on the GPU, since they share one workspace.
//
// Large GEMMs are autotuned: their plan times several of the heuristic's
// candidate algorithms once and keeps the fastest (AutotuneOptions;
// Tunings reports the choices).
type BlasLt struct {
	lib     *library
	version uint64
	f       struct {
		create, destroy, getVersion, getStatusName, getStatusString uintptr
		descCreate, descDestroy, descSetAttribute                   uintptr
		layoutCreate, layoutDestroy                                 uintptr
		prefCreate, prefDestroy, prefSetAttribute                   uintptr
		algoGetHeuristic, matmul                                    uintptr
	}

	tune autotuneConfig
	logf func(format string, args ...any)

	mu             sync.Mutex
	handle         uintptr // cublasLtHandle_t; 0 until SetWorkspace
	workspace      DevicePtr
	workspaceBytes uint64
	plans          map[planKey]*gemmPlan
	drv            *Driver // times the autotuner's candidates; nil until needed
	ownDrv         bool    // drv was opened by b, which closes it
	drvErr         error   // opening drv failed; not retried
}

// BlasLtOptions selects what OpenBlasLtWith loads; the zero value searches
// the usual places (as OpenNVRTC does).
type BlasLtOptions struct {
	Libraries []string            // sonames or paths to try instead of the defaults
	Getenv    func(string) string // environment lookup; nil means os.Getenv
	// Autotune controls timing cuBLASLt's candidate algorithms for large
	// GEMMs; the environment variable AutotuneEnv=0 also turns it off.
	Autotune AutotuneOptions
	// Driver times the candidates with CUDA events; nil means the BlasLt
	// opens the driver itself when it first tunes.
	Driver *Driver
	// Logf, when set, gets one line per tuned (or given-up) plan.
	Logf func(format string, args ...any)
}

// OpenBlasLt loads libcublasLt (13, else 12) from the loader's path, the
// CUDA toolkit folders or NVIDIA's pip wheels.
func OpenBlasLt() (*BlasLt, error) { return OpenBlasLtWith(BlasLtOptions{}) }

// OpenBlasLtWith is OpenBlasLt with options.
func OpenBlasLtWith(opt BlasLtOptions) (*BlasLt, error) {
	getenv := opt.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	tune, err := newAutotuneConfig(opt.Autotune, getenv)
	if err != nil {
		return nil, err
	}
	names := opt.Libraries
	if len(names) == 0 {
		names = cublasLtLibraries
	}
	lib, err := openFirst(names, libraryDirs(getenv))
	if err != nil {
		return nil, fmt.Errorf("%w (%v)", ErrNoBlasLt, err)
	}
	b := &BlasLt{lib: lib, plans: map[planKey]*gemmPlan{}, tune: tune, logf: opt.Logf, drv: opt.Driver}
	for _, e := range []struct {
		dst  *uintptr
		name string
	}{
		{&b.f.create, "cublasLtCreate"},
		{&b.f.destroy, "cublasLtDestroy"},
		{&b.f.getVersion, "cublasLtGetVersion"},
		{&b.f.getStatusName, "cublasLtGetStatusName"},
		{&b.f.getStatusString, "cublasLtGetStatusString"},
		{&b.f.descCreate, "cublasLtMatmulDescCreate"},
		{&b.f.descDestroy, "cublasLtMatmulDescDestroy"},
		{&b.f.descSetAttribute, "cublasLtMatmulDescSetAttribute"},
		{&b.f.layoutCreate, "cublasLtMatrixLayoutCreate"},
		{&b.f.layoutDestroy, "cublasLtMatrixLayoutDestroy"},
		{&b.f.prefCreate, "cublasLtMatmulPreferenceCreate"},
		{&b.f.prefDestroy, "cublasLtMatmulPreferenceDestroy"},
		{&b.f.prefSetAttribute, "cublasLtMatmulPreferenceSetAttribute"},
		{&b.f.algoGetHeuristic, "cublasLtMatmulAlgoGetHeuristic"},
		{&b.f.matmul, "cublasLtMatmul"},
	} {
		if *e.dst, err = lib.sym(e.name); err != nil {
			lib.close()
			return nil, fmt.Errorf("binding cuBLASLt: %w", err)
		}
	}
	b.version = uint64(call(b.f.getVersion)) // size_t
	return b, nil
}

// Close destroys the plans and the handle, if any, and unloads the
// library. The workspace stays the caller's, and so does a Driver given in
// the options.
func (b *BlasLt) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.reset()
	if b.handle != 0 {
		err = errors.Join(err, b.check("cublasLtDestroy", call(b.f.destroy, b.handle)))
		b.handle = 0
	}
	if b.ownDrv {
		b.drv.Close()
		b.drv, b.ownDrv = nil, false
	}
	b.lib.close()
	return err
}

// reset destroys every cached plan. b.mu must be held.
func (b *BlasLt) reset() error {
	var errs []error
	for k, p := range b.plans {
		errs = append(errs, b.destroyPlan(p))
		delete(b.plans, k)
	}
	return errors.Join(errs...)
}

// SetWorkspace creates the cuBLASLt handle (cublasLtCreate) for the current
// context, if not done yet, and gives the GEMMs workspace bytes of device
// scratch memory at ws (NVIDIA recommends 32 MiB on Hopper); ws must
// outlive b. A zero workspace restricts cuBLASLt to algorithms that need
// none. Changing the workspace drops the cached plans, whose algorithms
// were chosen for the old size.
func (b *BlasLt) SetWorkspace(ws DevicePtr, bytes uint64) error {
	if ws == 0 {
		bytes = 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.handle == 0 {
		var h uintptr
		if err := b.check("cublasLtCreate", call(b.f.create, uintptr(unsafe.Pointer(&h)))); err != nil {
			return err
		}
		b.handle = h
	}
	if ws != b.workspace || bytes != b.workspaceBytes {
		if err := b.reset(); err != nil {
			return fmt.Errorf("cuBLASLt workspace: %w", err)
		}
		b.workspace, b.workspaceBytes = ws, bytes
	}
	return nil
}

// Plans is the number of cached plans (shapes times pointer alignments).
func (b *BlasLt) Plans() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.plans)
}

// Path is the file libcublasLt was loaded from, when known.
func (b *BlasLt) Path() string { return b.lib.path }

// Version is cuBLASLt's version, "major.minor.patch" (cublasLtGetVersion
// encodes it as major*10000 + minor*100 + patch, as CUBLAS_VERSION).
func (b *BlasLt) Version() string { return blasVersionString(b.version) }

func blasVersionString(v uint64) string {
	return fmt.Sprintf("%d.%d.%d", v/10000, v%10000/100, v%100)
}

// check turns a cublasStatus_t into a *BlasError naming the function.
func (b *BlasLt) check(fn string, r uintptr) error {
	status := int32(r) // a C enum: only the low 32 bits are defined
	if status == 0 {
		return nil
	}
	return &BlasError{
		Func:   fn,
		Status: int(status),
		Name:   orDefault(goString(call(b.f.getStatusName, uintptr(status))), "unknown cublasStatus_t"),
		Text:   orDefault(goString(call(b.f.getStatusString, uintptr(status))), "no description"),
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// GemmShape describes one row-major bf16 GEMM with fp32 accumulation:
//
//	Y[M][N] = X[M][K] · W[N][K]ᵀ (+ bias[N]) (+ Y when Accumulate)
//
// which is a linear layer: X holds M tokens of K features, W is the
// weight in the PyTorch/safetensors [out][in] layout. The Ld fields are the
// row strides in elements (0 means packed: K, K and N), so X, W or Y may be
// column slices of wider matrices.
type GemmShape struct {
	M, N, K       int
	LdX, LdW, LdY int
	// Bias adds a bf16 vector of N elements to every row of Y
	// (CUBLASLT_EPILOGUE_BIAS).
	Bias bool
	// Accumulate adds the product to Y's old contents (beta = 1), e.g. to
	// fuse a residual add; otherwise Y is overwritten (beta = 0).
	Accumulate bool
}

func (g GemmShape) String() string {
	s := fmt.Sprintf("bf16 GEMM M=%d N=%d K=%d ldX=%d ldW=%d ldY=%d", g.M, g.N, g.K, g.LdX, g.LdW, g.LdY)
	if g.Bias {
		s += " +bias"
	}
	if g.Accumulate {
		s += " +=Y"
	}
	return s
}

// normalized fills in packed strides and rejects impossible shapes.
func (g GemmShape) normalized() (GemmShape, error) {
	if g.LdX == 0 {
		g.LdX = g.K
	}
	if g.LdW == 0 {
		g.LdW = g.K
	}
	if g.LdY == 0 {
		g.LdY = g.N
	}
	switch {
	case g.M <= 0 || g.N <= 0 || g.K <= 0:
		return g, errors.New("M, N and K must be positive")
	case g.LdX < g.K || g.LdW < g.K || g.LdY < g.N:
		return g, errors.New("a leading dimension is smaller than its row")
	case g.M > 1<<31-1 || g.N > 1<<31-1 || g.K > 1<<31-1:
		return g, errors.New("a dimension does not fit in int32")
	}
	return g, nil
}

// ltLayout is a cublasLtMatrixLayout_t's shape: the stored matrix,
// column-major, before any transpose.
type ltLayout struct {
	rows, cols uint64
	ld         int64
}

// ltOperands maps the row-major GEMM onto column-major cuBLASLt, which
// computes D = op(A)·op(B). A row-major R×C matrix with row stride ld is a
// column-major C×R matrix with the same ld, so Yᵀ (N×M, ld LdY) =
// W (stored K×N, ld LdW; op T gives N×K) · Xᵀ (stored K×M, ld LdX; op N):
// m = N, n = M, k = K.
func (g GemmShape) ltOperands() (a, b, d ltLayout) {
	a = ltLayout{uint64(g.K), uint64(g.N), int64(g.LdW)}
	b = ltLayout{uint64(g.K), uint64(g.M), int64(g.LdX)}
	d = ltLayout{uint64(g.N), uint64(g.M), int64(g.LdY)}
	return a, b, d
}

// planKey is what a cached algorithm depends on: the shape and the
// alignment of every pointer (an algorithm picked for 256-byte aligned
// operands may fault on a column slice that is only 2-byte aligned).
type planKey struct {
	g                              GemmShape
	alignX, alignW, alignY, alignB uint32
}

// gemmPlan is one shape's descriptors and chosen algorithm, created once
// and reused by every GEMM of that shape.
type gemmPlan struct {
	desc, a, b, d uintptr             // cublasLtMatmulDesc_t, cublasLtMatrixLayout_t ×3 (C shares D's)
	heur          ltHeuristicResult   // the algorithm in use
	cands         []ltHeuristicResult // the heuristic's offers, best guess first
	tuning        GemmTuning
}

// alignment is the largest power of two, up to maxAlignment, dividing p.
func alignment(p DevicePtr) uint32 {
	a := uint32(1)
	for a < maxAlignment && p&DevicePtr(2*a-1) == 0 {
		a *= 2
	}
	return a
}

// GemmBF16 enqueues y = x·wᵀ (+ bias) (+ y) as g describes, on stream s (which
// may be capturing into a graph). The first call of a shape (and pointer
// alignment) asks cuBLASLt's heuristic for algorithms and caches a plan;
// Prepare does that ahead of a capture. A plan large enough to autotune
// (see AutotuneOptions) is tuned by the first call on a stream that is not
// capturing: that call times the candidates on s into a scratch buffer
// and waits for s. bias is ignored unless g.Bias.
func (b *BlasLt) GemmBF16(s Stream, g GemmShape, y, x, w, bias DevicePtr) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	g, p, err := b.plan(g, y, x, w, bias)
	if err != nil {
		return err
	}
	if p.tuning.Pending {
		if err := b.autotune(s, g, p, x, w, bias); err != nil {
			return err
		}
	}
	if g.Bias {
		// The bias pointer lives in the shared descriptor; the lock keeps
		// another call from changing it before cublasLtMatmul reads it.
		if err := b.setDesc(p.desc, ltDescBiasPointer, unsafe.Pointer(&bias), 8); err != nil {
			return fmt.Errorf("cublasLt %v: %w", g, err)
		}
	}
	if err := b.matmul(s, p, &p.heur, g.Accumulate, y, x, w); err != nil {
		return fmt.Errorf("cublasLt %v: %w", g, err)
	}
	return nil
}

// matmul enqueues one cublasLtMatmul of p with algorithm h, in place on y
// (C and D are both y). b.mu must be held.
func (b *BlasLt) matmul(s Stream, p *gemmPlan, h *ltHeuristicResult, accumulate bool, y, x, w DevicePtr) error {
	alpha, beta := float32(1), float32(0)
	if accumulate {
		beta = 1
	}
	// Host-mode alpha and beta are read during the call (also when the
	// stream is capturing), so locals suffice.
	r := call(b.f.matmul, b.handle, p.desc,
		uintptr(unsafe.Pointer(&alpha)), uintptr(w), p.a, uintptr(x), p.b,
		uintptr(unsafe.Pointer(&beta)), uintptr(y), p.d, uintptr(y), p.d,
		uintptr(unsafe.Pointer(&h.algo)), uintptr(b.workspace), uintptr(b.workspaceBytes), uintptr(s))
	return b.check("cublasLtMatmul", r)
}

// Prepare chooses and caches the algorithm GemmBF16 will use for these
// arguments, without enqueuing anything, so that a later capture records
// only the GEMMs themselves. It has no stream to time on, so a plan to be
// autotuned stays pending until the first uncaptured GemmBF16; PrepareOn
// tunes at once. It does not load cuBLASLt's kernel: with CUDA's lazy
// module loading, run a step once uncaptured before capturing it.
func (b *BlasLt) Prepare(g GemmShape, y, x, w, bias DevicePtr) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, _, err := b.plan(g, y, x, w, bias)
	return err
}

// plan validates g and returns it normalized with its cached plan,
// creating the plan on first use. b.mu must be held.
func (b *BlasLt) plan(g GemmShape, y, x, w, bias DevicePtr) (GemmShape, *gemmPlan, error) {
	g, err := g.normalized()
	if err != nil {
		return g, nil, fmt.Errorf("cublasLt %v: %w", g, err)
	}
	if y == 0 || x == 0 || w == 0 || (g.Bias && bias == 0) {
		return g, nil, fmt.Errorf("cublasLt %v: nil device pointer (y=%#x x=%#x w=%#x bias=%#x)", g, y, x, w, bias)
	}
	if b.handle == 0 {
		return g, nil, fmt.Errorf("cublasLt %v: no handle: call SetWorkspace first", g)
	}
	key := planKey{g: g, alignX: alignment(x), alignW: alignment(w), alignY: alignment(y)}
	if g.Bias {
		key.alignB = alignment(bias)
	}
	if p, ok := b.plans[key]; ok {
		return g, p, nil
	}
	p, err := b.newPlan(key, bias)
	if err != nil {
		return g, nil, fmt.Errorf("cublasLt %v: %w", g, err)
	}
	b.plans[key] = p
	return g, p, nil
}

// setDesc sets one matmul descriptor attribute from size bytes at v.
func (b *BlasLt) setDesc(desc uintptr, attr int, v unsafe.Pointer, size uintptr) error {
	return b.check("cublasLtMatmulDescSetAttribute", call(b.f.descSetAttribute, desc, uintptr(attr), uintptr(v), size))
}

func (b *BlasLt) setPref(pref uintptr, attr int, v unsafe.Pointer, size uintptr) error {
	return b.check("cublasLtMatmulPreferenceSetAttribute", call(b.f.prefSetAttribute, pref, uintptr(attr), uintptr(v), size))
}

// newPlan creates the descriptors of key's shape and asks the heuristic
// for the algorithms that fit the workspace and the alignments: one, or
// the configured number of candidates when the shape is to be autotuned.
func (b *BlasLt) newPlan(key planKey, bias DevicePtr) (plan *gemmPlan, err error) {
	p := &gemmPlan{tuning: GemmTuning{Shape: key.g}}
	want := 1
	switch {
	case !b.tune.enabled:
		p.tuning.Skipped = "autotuning is off"
	case !b.tune.worth(key.g):
		p.tuning.Skipped = fmt.Sprintf("M·N·K below the autotune threshold %d", b.tune.minMNK)
	default:
		want = b.tune.candidates
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, b.destroyPlan(p))
		}
	}()
	if err := b.check("cublasLtMatmulDescCreate", call(b.f.descCreate, uintptr(unsafe.Pointer(&p.desc)), cublasCompute32F, cudaR32F)); err != nil {
		return nil, err
	}
	transA, transB := int32(cublasOpT), int32(cublasOpN)
	epilogue := uint32(ltEpilogueDefault)
	if key.g.Bias {
		epilogue = ltEpilogueBias
	}
	if err := b.setDesc(p.desc, ltDescTransA, unsafe.Pointer(&transA), 4); err != nil {
		return nil, err
	}
	if err := b.setDesc(p.desc, ltDescTransB, unsafe.Pointer(&transB), 4); err != nil {
		return nil, err
	}
	if err := b.setDesc(p.desc, ltDescEpilogue, unsafe.Pointer(&epilogue), 4); err != nil {
		return nil, err
	}
	if key.g.Bias {
		// The heuristic reads the pointer's value for its alignment.
		if err := b.setDesc(p.desc, ltDescBiasPointer, unsafe.Pointer(&bias), 8); err != nil {
			return nil, err
		}
	}
	la, lb, ld := key.g.ltOperands()
	for _, l := range []struct {
		dst *uintptr
		l   ltLayout
	}{{&p.a, la}, {&p.b, lb}, {&p.d, ld}} {
		if err := b.check("cublasLtMatrixLayoutCreate", call(b.f.layoutCreate, uintptr(unsafe.Pointer(l.dst)), cudaR16BF,
			uintptr(l.l.rows), uintptr(l.l.cols), uintptr(l.l.ld))); err != nil {
			return nil, err
		}
	}

	var pref uintptr
	if err := b.check("cublasLtMatmulPreferenceCreate", call(b.f.prefCreate, uintptr(unsafe.Pointer(&pref)))); err != nil {
		return nil, err
	}
	defer call(b.f.prefDestroy, pref)
	ws := b.workspaceBytes
	if err := b.setPref(pref, ltPrefMaxWorkspaceBytes, unsafe.Pointer(&ws), 8); err != nil {
		return nil, err
	}
	// cublasLt's operand A is W, B is X, C and D are Y.
	for _, a := range []struct {
		attr  int
		align uint32
	}{
		{ltPrefMinAlignmentA, key.alignW},
		{ltPrefMinAlignmentB, key.alignX},
		{ltPrefMinAlignmentC, key.alignY},
		{ltPrefMinAlignmentD, key.alignY},
	} {
		v := a.align
		if err := b.setPref(pref, a.attr, unsafe.Pointer(&v), 4); err != nil {
			return nil, err
		}
	}
	results := make([]ltHeuristicResult, want)
	var found int32
	if err := b.check("cublasLtMatmulAlgoGetHeuristic", call(b.f.algoGetHeuristic, b.handle, p.desc, p.a, p.b, p.d, p.d, pref,
		uintptr(want), uintptr(unsafe.Pointer(&results[0])), uintptr(unsafe.Pointer(&found)))); err != nil {
		return nil, err
	}
	if found < 1 {
		return nil, fmt.Errorf("cublasLtMatmulAlgoGetHeuristic: no algorithm for this shape within %d bytes of workspace", ws)
	}
	for _, r := range results[:min(int(found), want)] {
		if r.state == 0 {
			p.cands = append(p.cands, r)
		}
	}
	if len(p.cands) == 0 {
		st := results[0].state
		return nil, &BlasError{Func: "cublasLtMatmulAlgoGetHeuristic (result state)", Status: int(st),
			Name: orDefault(goString(call(b.f.getStatusName, uintptr(st))), "unknown cublasStatus_t")}
	}
	p.heur = p.cands[0]
	p.tuning.Candidates = len(p.cands)
	if want > 1 {
		if len(p.cands) > 1 {
			p.tuning.Pending = true
		} else {
			p.tuning.Skipped = "the heuristic offered one algorithm"
		}
	}
	return p, nil
}

func (b *BlasLt) destroyPlan(p *gemmPlan) error {
	var errs []error
	for _, l := range []*uintptr{&p.a, &p.b, &p.d} {
		if *l != 0 {
			errs = append(errs, b.check("cublasLtMatrixLayoutDestroy", call(b.f.layoutDestroy, *l)))
			*l = 0
		}
	}
	if p.desc != 0 {
		errs = append(errs, b.check("cublasLtMatmulDescDestroy", call(b.f.descDestroy, p.desc)))
		p.desc = 0
	}
	return errors.Join(errs...)
}
