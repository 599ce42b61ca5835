package attnbench

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"time"

	"github.com/longctx/longctx/engine/cuda"
	"github.com/longctx/longctx/engine/kernelrun"
	"github.com/longctx/longctx/engine/weights"
)

// Driver is the part of *cuda.Driver the benchmark uses; the calling
// goroutine must have the context bound (cuda.Driver.Bind). Tests
// substitute a fake.
type Driver interface {
	MemAlloc(n uint64) (cuda.DevicePtr, error)
	MemFree(p cuda.DevicePtr) error
	MemcpyHtoDAsync(dst cuda.DevicePtr, src []byte, s cuda.Stream) error
	MemcpyDtoDAsync(dst, src cuda.DevicePtr, n uint64, s cuda.Stream) error
	StreamSynchronize(s cuda.Stream) error
	EventCreate(flags uint32) (cuda.Event, error)
	EventRecord(e cuda.Event, s cuda.Stream) error
	EventSynchronize(e cuda.Event) error
	EventElapsed(start, end cuda.Event) (time.Duration, error)
	EventDestroy(e cuda.Event) error
	StreamBeginCapture(s cuda.Stream, mode int) error
	StreamEndCapture(s cuda.Stream) (cuda.Graph, error)
	GraphInstantiate(g cuda.Graph) (cuda.GraphExec, error)
	GraphLaunch(e cuda.GraphExec, s cuda.Stream) error
	GraphExecDestroy(e cuda.GraphExec) error
	GraphDestroy(g cuda.Graph) error
}

var _ Driver = (*cuda.Driver)(nil)

// Launcher is what the benchmark launches: a *kernelrun.Role.
type Launcher interface {
	Name() string
	Workspace(numSeqs, numHeads, numQ, maxKV int) int64
	Launch(s cuda.Stream, p kernelrun.Params) error
}

var _ Launcher = (*kernelrun.Role)(nil)

// Options say how long and how often a shape is timed. The zero value
// takes the defaults.
type Options struct {
	// MinTime is the least GPU time of one measurement (default 50 ms):
	// short launches are repeated back to back until their sum reaches it,
	// so event resolution and launch gaps do not count.
	MinTime time.Duration
	// MaxIters caps the launches of one measurement (default 10000),
	// except that a cold-L2 graph holds at least one turn through its
	// input sets (at most MaxInputSets launches).
	MaxIters int
	// Repeats is the number of measurements whose median is reported
	// (default 5).
	Repeats int
	// MaxTime bounds the measured GPU time of one shape (default 20 s):
	// a shape whose single measurement is long gets fewer repeats, at
	// least one.
	MaxTime time.Duration
	// NoGraph launches one by one instead of replaying the launches from a
	// captured CUDA graph. The graph, which is how the engine runs decode,
	// takes the CPU's launch cost out of short kernels' times.
	NoGraph bool
	// Seed seeds the random inputs.
	Seed uint64
	// ColdL2 makes every launch read inputs that the launches before it
	// did not leave in the L2 cache, as a decode step inside a model meets
	// them (other layers' weights and caches stream through in between).
	// Run then allocates ColdSets input sets, each with its own Q, K and V
	// and K/V descriptor arrays (output, positions and workspace are
	// shared: written, tiny, or rewritten by every launch), and the timed
	// launches rotate through them in order, within a captured graph too.
	// Without it (warm) every launch reads the same buffers, and what one
	// launch left in L2 serves the next: a shape whose inputs are not much
	// larger than L2 times faster than it would run in a model.
	ColdL2 bool
	// L2Bytes is the device's L2 cache size (cuda.DeviceInfo.L2Bytes),
	// which ColdL2 needs to size the input sets.
	L2Bytes int64
}

func (o Options) withDefaults() Options {
	if o.MinTime <= 0 {
		o.MinTime = 50 * time.Millisecond
	}
	if o.MaxIters <= 0 {
		o.MaxIters = 10000
	}
	if o.Repeats <= 0 {
		o.Repeats = 5
	}
	if o.MaxTime <= 0 {
		o.MaxTime = 20 * time.Second
	}
	return o
}

// maxGraphLaunches bounds the launches captured in one graph: enough to
// hide the per-graph launch cost, few enough to instantiate quickly. A
// cold-L2 graph holds a whole number of cycles through its input sets
// instead, at least one (graphLaunches).
const maxGraphLaunches = 64

// ColdL2Factor is how many times the device's L2 cache the input sets of a
// cold-L2 run hold together, at least: with L2's replacement, nothing a
// launch reads is left when its set comes round again.
const ColdL2Factor = 4

// MinInputSets is the fewest input sets a cold-L2 run rotates through,
// however large a set is. Two sets were not enough on an H100: with an L2
// evict-first hint on its K/V copies, a decode kernel at batch 1 / 32k
// (two sets of 128 MiB) ran 2.2 µs faster than without, against 1.0 µs
// with ten sets, and cuDNN's 1.0 µs faster with two than with ten: such
// hints keep part of a set in L2 until it comes round again
// (bench/RESULTS.md).
const MinInputSets = 8

// MaxInputSets bounds the input sets of a cold-L2 run, and so the launches
// of one cycle. A shape that reads so little per launch that it would
// need more (on an H100's 50 MB L2, under 200 KB) cannot be timed cold.
const MaxInputSets = 1024

// ColdSets is the number of input sets a cold-L2 run of shape rotates
// through on a device with l2Bytes of L2: the fewest whose InputBytes
// together reach ColdL2Factor × l2Bytes, and never fewer than
// MinInputSets, so that a set comes round again only after several
// others have passed through the L2. tools/refgen's
// attn_bench.py --cold-l2 follows the same rule.
func ColdSets(shape Shape, l2Bytes int64) (int, error) {
	if l2Bytes <= 0 {
		return 0, fmt.Errorf("cold L2: the device's L2 cache size is not known (%d bytes)", l2Bytes)
	}
	per := shape.InputBytes()
	if per <= 0 {
		return 0, fmt.Errorf("cold L2: %v reads %d bytes per launch", shape, per)
	}
	n := max(MinInputSets, (ColdL2Factor*l2Bytes+per-1)/per)
	if n > MaxInputSets {
		return 0, fmt.Errorf("cold L2: %v reads %d bytes per launch: %d input sets would be needed to hold %d× the %d-byte L2, more than %d",
			shape, per, n, ColdL2Factor, l2Bytes, MaxInputSets)
	}
	return int(n), nil
}

// Status is the outcome of one shape.
type Status string

// The statuses, as the harness's result rows spell them.
const (
	StatusOK    Status = "ok"
	StatusOOM   Status = "oom"
	StatusError Status = "error"
)

// Result is the timing of one shape. Time figures are zero unless Status
// is ok.
type Result struct {
	Shape  Shape
	Status Status
	Err    error // why, unless ok

	// MS is the median over the repeats of the GPU milliseconds per
	// launch; MinMS the fastest repeat.
	MS, MinMS float64
	// TFLOPS is Shape.FLOPs per MS; GBps Shape.Bytes per MS.
	TFLOPS, GBps float64
	// Iters is the launches per measurement, Repeats the measurements.
	Iters, Repeats int
	// Graph says whether the timed launches were replayed from a CUDA
	// graph (false: launched one by one, or capture failed).
	Graph bool
	// WorkspaceBytes is the role's workspace for the shape, DeviceBytes
	// everything allocated for it (inputs, output, descriptors, workspace).
	WorkspaceBytes, DeviceBytes int64

	// ColdL2 is Options.ColdL2: the launches rotated through InputSets
	// input sets of InputSetBytes (Shape.InputBytes) each, on a device
	// with L2Bytes of L2. Warm: InputSets is 1, L2Bytes 0. A cold result
	// that failed before the sets were counted has InputSets 0.
	ColdL2        bool
	InputSets     int
	InputSetBytes int64
	L2Bytes       int64
	// Note says what the figures must be read with: a cold run that got
	// fewer input sets than ColdSets asked for because the device had not
	// the memory (at least 2: consecutive launches still read different
	// memory, but fewer sets, or less than ColdL2Factor × L2 of it).
	Note string
}

// Run allocates the inputs of shape on the device, launches role once to
// warm up and then times it (see Options). role must be the shape's
// phase's role. Everything allocated is freed before Run returns. Failures
// come back in the Result: StatusOOM when the device had not the memory,
// StatusError otherwise. A kernel that faults leaves the context unusable
// (CUDA's sticky errors), so later shapes fail too.
//
// With Options.ColdL2 the output, positions and workspace are allocated
// first, then the ColdSets input sets; when the device runs out of memory
// after two sets or more, the run goes on with those and says so in
// Result.Note, and before two it is StatusOOM.
func Run(d Driver, s cuda.Stream, role Launcher, shape Shape, opts Options) (res Result) {
	res = Result{Shape: shape, Status: StatusOK, ColdL2: opts.ColdL2, InputSetBytes: shape.InputBytes()}
	if !opts.ColdL2 {
		res.InputSets = 1
	}
	fail := func(err error) Result {
		res.Status, res.Err = StatusError, err
		if cuda.IsOutOfMemory(err) {
			res.Status = StatusOOM
		}
		res.MS, res.MinMS, res.TFLOPS, res.GBps = 0, 0, 0, 0
		return res
	}
	if err := shape.Validate(); err != nil {
		return fail(err)
	}
	if role.Name() != shape.Phase.Role() {
		return fail(fmt.Errorf("%v: role %s, want %s", shape, role.Name(), shape.Phase.Role()))
	}
	opts = opts.withDefaults()
	want := 1
	if opts.ColdL2 {
		res.L2Bytes = opts.L2Bytes
		n, err := ColdSets(shape, opts.L2Bytes)
		if err != nil {
			return fail(err)
		}
		want, res.InputSets = n, n
	}
	a := &arena{d: d}
	defer func() {
		// Kernels may still run after a failed launch sequence: wait
		// before freeing their buffers.
		err := errors.Join(d.StreamSynchronize(s), a.free())
		if err != nil && res.Status == StatusOK {
			res = fail(fmt.Errorf("%v: freeing: %w", shape, err))
		}
	}()
	u, err := newUploader(a, s, opts.Seed)
	if err != nil {
		return fail(fmt.Errorf("%v: inputs: %w", shape, err))
	}
	base, keyPos, err := u.shared(shape)
	if err != nil {
		return fail(fmt.Errorf("%v: inputs: %w", shape, err))
	}
	res.WorkspaceBytes = role.Workspace(shape.Batch, shape.Heads, shape.NumQ(), shape.Capacity())
	if res.WorkspaceBytes > 0 {
		if base.Workspace, err = a.alloc(res.WorkspaceBytes, "workspace"); err != nil {
			return fail(fmt.Errorf("%v: %w", shape, err))
		}
		base.WorkspaceBytes = uint64(res.WorkspaceBytes)
	}
	sets := make([]kernelrun.AttentionParams, 0, want)
	for i := range want {
		mark := a.mark()
		p, err := u.inputSet(shape, base, keyPos, i)
		if err == nil {
			sets = append(sets, p)
			continue
		}
		if !opts.ColdL2 {
			return fail(fmt.Errorf("%v: inputs: %w", shape, err))
		}
		if i < 2 || !cuda.IsOutOfMemory(err) {
			return fail(fmt.Errorf("%v: cold L2: input set %d of %d (%d bytes read per launch): %w", shape, i+1, want, res.InputSetBytes, err))
		}
		// Two sets or more fit: time with those, and say so. Copies into
		// the set given up may still be queued.
		if err := errors.Join(d.StreamSynchronize(s), a.rollback(mark)); err != nil {
			return fail(fmt.Errorf("%v: cold L2: giving up input set %d: %w", shape, i+1, err))
		}
		res.InputSets = i
		res.Note = fmt.Sprintf("cold L2: only %d of %d input sets fit in device memory, together %.1f× the L2",
			i, want, float64(int64(i)*res.InputSetBytes)/float64(opts.L2Bytes))
		break
	}
	if err := u.sync(); err != nil {
		return fail(fmt.Errorf("%v: inputs: %w", shape, err))
	}
	res.DeviceBytes = a.bytes
	m, err := measure(d, s, rotate(role, s, sets), opts, !opts.NoGraph, len(sets))
	if err != nil {
		return fail(fmt.Errorf("%v: %w", shape, err))
	}
	res.MS, res.MinMS = m.median*1e3, m.min*1e3
	res.TFLOPS, res.GBps = shape.FLOPs()/m.median/1e12, shape.Bytes()/m.median/1e9
	res.Iters, res.Repeats, res.Graph = m.iters, m.repeats, m.graph
	return res
}

// rotate is the launch of role on sets[0], sets[1], …, sets[n-1],
// sets[0], … in turn, one set per call; a graph captured from it holds
// the same rotation.
func rotate(role Launcher, s cuda.Stream, sets []kernelrun.AttentionParams) func() error {
	next := 0
	return func() error {
		p := &sets[next]
		next = (next + 1) % len(sets)
		return role.Launch(s, p)
	}
}

// CopyResult is the device-to-device copy bandwidth.
type CopyResult struct {
	// Bytes is the size of the buffer copied per copy.
	Bytes int64
	// MS is the median milliseconds of one copy.
	MS float64
	// GBps counts each byte read and written: 2·Bytes per MS, as
	// tools/refgen's PyTorch measurements do.
	GBps          float64
	Iters, Repeat int
}

// CopyBandwidth times cuMemcpyDtoDAsync of bytes (at least 1 GiB for a
// figure that reflects HBM rather than L2) between two fresh buffers,
// as Run times kernels, launch by launch.
func CopyBandwidth(d Driver, s cuda.Stream, bytes int64, opts Options) (_ CopyResult, err error) {
	if bytes <= 0 {
		return CopyResult{}, fmt.Errorf("copy bandwidth: %d bytes", bytes)
	}
	opts = opts.withDefaults()
	a := &arena{d: d}
	defer func() { err = errors.Join(err, d.StreamSynchronize(s), a.free()) }()
	src, err := a.alloc(bytes, "copy source")
	if err != nil {
		return CopyResult{}, fmt.Errorf("copy bandwidth: %w", err)
	}
	dst, err := a.alloc(bytes, "copy destination")
	if err != nil {
		return CopyResult{}, fmt.Errorf("copy bandwidth: %w", err)
	}
	m, err := measure(d, s, func() error { return d.MemcpyDtoDAsync(dst, src, uint64(bytes), s) }, opts, false, 1)
	if err != nil {
		return CopyResult{}, fmt.Errorf("copy bandwidth of %d bytes: %w", bytes, err)
	}
	return CopyResult{Bytes: bytes, MS: m.median * 1e3, GBps: 2 * float64(bytes) / m.median / 1e9, Iters: m.iters, Repeat: m.repeats}, nil
}

// arena is every buffer of one shape, freed together.
type arena struct {
	d     Driver
	ptrs  []cuda.DevicePtr
	sizes []int64
	bytes int64
}

func (a *arena) alloc(n int64, what string) (cuda.DevicePtr, error) {
	p, err := a.d.MemAlloc(uint64(max(n, 1)))
	if err != nil {
		return 0, fmt.Errorf("%s (%d bytes): %w", what, n, err)
	}
	a.ptrs, a.sizes = append(a.ptrs, p), append(a.sizes, n)
	a.bytes += n
	return p, nil
}

// mark is the point rollback goes back to.
func (a *arena) mark() int { return len(a.ptrs) }

// rollback frees what was allocated after mark, last first.
func (a *arena) rollback(mark int) error {
	var errs []error
	for i := len(a.ptrs) - 1; i >= mark; i-- {
		if err := a.d.MemFree(a.ptrs[i]); err != nil {
			errs = append(errs, err)
		}
		a.bytes -= a.sizes[i]
	}
	a.ptrs, a.sizes = a.ptrs[:mark], a.sizes[:mark]
	return errors.Join(errs...)
}

func (a *arena) free() error { return a.rollback(0) }

// poolElems is the size of the block of random bf16 values every input is
// tiled from: generating gigabytes on the host would take longer than
// timing them, and the kernels' speed does not depend on the values
// repeating.
const poolElems = 8 << 20

// uploader fills the buffers of one shape: copies of host data, and tiles
// of a block of random values on the device. The host data are kept until
// sync.
type uploader struct {
	a    *arena
	s    cuda.Stream
	pool cuda.DevicePtr
	host [][]byte
}

func newUploader(a *arena, s cuda.Stream, seed uint64) (*uploader, error) {
	u := &uploader{a: a, s: s}
	var err error
	u.pool, err = u.put(randomBF16(poolElems, seed), "random pool")
	return u, err
}

// put allocates a buffer and copies b into it.
func (u *uploader) put(b []byte, what string) (cuda.DevicePtr, error) {
	p, err := u.a.alloc(int64(len(b)), what)
	if err != nil {
		return 0, err
	}
	u.host = append(u.host, b)
	if err := u.a.d.MemcpyHtoDAsync(p, b, u.s); err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	return p, nil
}

// random allocates n bytes and tiles them from the pool, starting at a
// place that differs with salt; a negative salt leaves them unset.
func (u *uploader) random(n int64, what string, salt int) (cuda.DevicePtr, error) {
	const poolBytes = 2 * poolElems
	p, err := u.a.alloc(n, what)
	if err != nil || salt < 0 {
		return p, err
	}
	dst, off := p, int64(salt)*2*7919%poolBytes
	for n > 0 {
		c := min(n, poolBytes-off)
		if err := u.a.d.MemcpyDtoDAsync(dst, u.pool+cuda.DevicePtr(off), uint64(c), u.s); err != nil {
			return p, fmt.Errorf("%s: %w", what, err)
		}
		dst, n, off = dst+cuda.DevicePtr(c), n-c, 0
	}
	return p, nil
}

// sync waits until the stream has read the host data.
func (u *uploader) sync() error {
	err := u.a.d.StreamSynchronize(u.s)
	runtime.KeepAlive(u.host)
	u.host = nil
	if err != nil {
		return fmt.Errorf("uploading: %w", err)
	}
	return nil
}

// shared puts on the device what every input set of shape shares: an
// output of Q's shape, [batch][numQ][heads·d]; the query positions
// (prefill 0..N-1, decode N-1); and the key positions 0..capacity-1 the
// K/V descriptors point to. The parameters come back without Q, K and V.
func (u *uploader) shared(sh Shape) (p kernelrun.AttentionParams, keyPos cuda.DevicePtr, err error) {
	B, Q, H, KVH, D, C := sh.Batch, sh.NumQ(), sh.Heads, sh.KVHeads, sh.HeadDim, sh.Capacity()
	p = kernelrun.AttentionParams{
		NumSeqs: int32(B), NumQ: int32(Q), NumHeads: int32(H), NumKVHeads: int32(KVH), HeadDim: int32(D),
		MaxKVLen: int32(C), Scale: float32(1 / math.Sqrt(float64(D))), DType: kernelrun.DTypeBF16,
		QRowStride: int64(H * D), OutRowStride: int64(H * D),
	}
	if p.Out, err = u.random(qBytes(sh), "output", -1); err != nil {
		return p, 0, err
	}
	qPos := make([]int32, B*Q)
	for i := range qPos {
		qPos[i] = int32(sh.N - Q + i%Q)
	}
	if p.QPos, err = u.put(i32Bytes(qPos), "query positions"); err != nil {
		return p, 0, err
	}
	kPos := make([]int32, C)
	for i := range kPos {
		kPos[i] = int32(i)
	}
	keyPos, err = u.put(i32Bytes(kPos), "key positions")
	return p, keyPos, err
}

// inputSet puts input set number set of shape on the device and returns
// base with its Q, K and V: Q [batch][numQ][heads·d]; per sequence K and V
// [kvHeads][capacity][d] (the engine's cache layout) with rows 0..N-1 at
// positions 0..N-1 (keyPos); and the K and V descriptor arrays,
// seq·kvHeads + head. Every set has buffers of its own and its own place
// in the random pool; set 0 is the only set of a warm run.
func (u *uploader) inputSet(sh Shape, base kernelrun.AttentionParams, keyPos cuda.DevicePtr, set int) (kernelrun.AttentionParams, error) {
	p := base
	B, KVH, D, C := sh.Batch, sh.KVHeads, sh.HeadDim, sh.Capacity()
	salt := set * (2*B + 1)
	what := func(s string) string {
		if set == 0 {
			return s
		}
		return fmt.Sprintf("%s of input set %d", s, set)
	}
	var err error
	if p.Q, err = u.random(qBytes(sh), what("Q"), salt); err != nil {
		return p, err
	}
	headBytes := int64(C) * int64(D) * 2
	var kh, vh []kernelrun.KVHead
	for seq := range B {
		k, err := u.random(int64(KVH)*headBytes, what(fmt.Sprintf("K of sequence %d", seq)), salt+1+2*seq)
		if err != nil {
			return p, err
		}
		v, err := u.random(int64(KVH)*headBytes, what(fmt.Sprintf("V of sequence %d", seq)), salt+2+2*seq)
		if err != nil {
			return p, err
		}
		for h := range KVH {
			off := cuda.DevicePtr(int64(h) * headBytes)
			kh = append(kh, kernelrun.KVHead{Data: k + off, Pos: keyPos, Len: int32(sh.N), RowStride: int32(D)})
			vh = append(vh, kernelrun.KVHead{Data: v + off, Pos: keyPos, Len: int32(sh.N), RowStride: int32(D)})
		}
	}
	if p.K, err = u.put(kernelrun.KVHeadsBytes(kh), what("K descriptors")); err != nil {
		return p, err
	}
	p.V, err = u.put(kernelrun.KVHeadsBytes(vh), what("V descriptors"))
	return p, err
}

// qBytes is the size of Q, and of the output.
func qBytes(sh Shape) int64 {
	return int64(sh.Batch) * int64(sh.NumQ()) * int64(sh.Heads) * int64(sh.HeadDim) * 2
}

// randomBF16 is n standard-normal bf16 values, little-endian.
func randomBF16(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 0x617474656e))
	out := make([]byte, 2*n)
	for i := range n {
		v := weights.Float32ToBF16(float32(rng.NormFloat64()))
		out[2*i], out[2*i+1] = byte(v), byte(v>>8)
	}
	return out
}

func i32Bytes(v []int32) []byte {
	out := make([]byte, 4*len(v))
	for i, x := range v {
		out[4*i], out[4*i+1], out[4*i+2], out[4*i+3] = byte(x), byte(x>>8), byte(x>>16), byte(x>>24)
	}
	return out
}

// measurement is the outcome of measure, in seconds per launch.
type measurement struct {
	median, min    float64
	iters, repeats int
	graph          bool
}

// measure times launch: one warm-up launch (two when short), then
// measurements of iters launches each, iters chosen so that one takes
// about MinTime, replayed from a captured graph when useGraph is set and
// capture works, and the median of Repeats measurements (fewer when they
// would take more than MaxTime). cycle is the number of input sets launch
// rotates through (1: the same inputs every time); a graph holds whole
// cycles (graphLaunches).
func measure(d Driver, s cuda.Stream, launch func() error, o Options, useGraph bool, cycle int) (m measurement, err error) {
	t, err := newTimer(d, s)
	if err != nil {
		return m, err
	}
	defer func() { err = errors.Join(err, t.destroy()) }()
	one, err := t.time(1, launch)
	if err != nil {
		return m, fmt.Errorf("warm-up launch: %w", err)
	}
	if one < o.MinTime {
		// The first launch may have paid for lazy module loading.
		if one, err = t.time(1, launch); err != nil {
			return m, err
		}
	}
	one = max(one, time.Microsecond)
	want := int(min(int64(o.MaxIters), int64(math.Ceil(float64(o.MinTime)/float64(one)))))
	perCall, call := 1, launch
	if useGraph && want > 1 {
		n := graphLaunches(want, cycle)
		g, capErr := capture(d, s, launch, n)
		if capErr == nil {
			defer func() { err = errors.Join(err, d.GraphExecDestroy(g)) }()
			perCall = n
			call = func() error { return d.GraphLaunch(g, s) }
			m.graph = true
		}
		// A plugin's launch that cannot be captured is still timed, one
		// launch at a time.
	}
	maxCalls := max(1, o.MaxIters/perCall)
	calls := min(maxCalls, max(1, (want+perCall-1)/perCall))
	var times []float64
	// The estimate from one launch includes its launch latency: grow the
	// count until a measurement reaches about MinTime. That measurement
	// is the first repeat.
	for try := 0; ; try++ {
		el, err := t.time(calls, call)
		if err != nil {
			return m, err
		}
		if el >= o.MinTime/2 || calls >= maxCalls || try == 3 {
			times = append(times, el.Seconds()/float64(calls*perCall))
			break
		}
		per := max(el/time.Duration(calls), time.Nanosecond)
		calls = min(maxCalls, max(calls+1, int(math.Ceil(float64(o.MinTime)/float64(per)))))
	}
	each := times[0] * float64(calls*perCall)
	repeats := o.Repeats
	if each*float64(repeats) > o.MaxTime.Seconds() {
		repeats = max(1, int(o.MaxTime.Seconds()/each))
	}
	for len(times) < repeats {
		el, err := t.time(calls, call)
		if err != nil {
			return m, err
		}
		times = append(times, el.Seconds()/float64(calls*perCall))
	}
	m.median, m.min = median(times), slices.Min(times)
	m.iters, m.repeats = calls*perCall, len(times)
	return m, nil
}

// graphLaunches is the launches one captured graph holds: want, at most
// maxGraphLaunches; and when the launches rotate through cycle input sets,
// a whole number of cycles, at least one (so beyond maxGraphLaunches when
// cycle is), so that every replay reads all sets in the same order and
// the last launch of one replay and the first of the next read different
// sets.
func graphLaunches(want, cycle int) int {
	n := min(want, maxGraphLaunches)
	if cycle > 1 {
		n = max(1, n/cycle) * cycle
	}
	return n
}

// capture records n launches into an executable graph.
func capture(d Driver, s cuda.Stream, launch func() error, n int) (cuda.GraphExec, error) {
	if err := d.StreamBeginCapture(s, cuda.CaptureModeThreadLocal); err != nil {
		return 0, err
	}
	for range n {
		if err := launch(); err != nil {
			g, endErr := d.StreamEndCapture(s)
			if endErr == nil && g != 0 {
				endErr = d.GraphDestroy(g)
			}
			return 0, errors.Join(err, endErr)
		}
	}
	g, err := d.StreamEndCapture(s)
	if err != nil {
		return 0, err
	}
	exec, err := d.GraphInstantiate(g)
	return exec, errors.Join(err, d.GraphDestroy(g))
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// timer times work on a stream with a pair of events.
type timer struct {
	d          Driver
	s          cuda.Stream
	start, end cuda.Event
}

func newTimer(d Driver, s cuda.Stream) (*timer, error) {
	start, err := d.EventCreate(0)
	if err != nil {
		return nil, err
	}
	end, err := d.EventCreate(0)
	if err != nil {
		return nil, errors.Join(err, d.EventDestroy(start))
	}
	return &timer{d: d, s: s, start: start, end: end}, nil
}

// time is the GPU time between events around n calls of f.
func (t *timer) time(n int, f func() error) (time.Duration, error) {
	if err := t.d.EventRecord(t.start, t.s); err != nil {
		return 0, err
	}
	for range n {
		if err := f(); err != nil {
			return 0, err
		}
	}
	if err := t.d.EventRecord(t.end, t.s); err != nil {
		return 0, err
	}
	if err := t.d.EventSynchronize(t.end); err != nil {
		return 0, err
	}
	return t.d.EventElapsed(t.start, t.end)
}

func (t *timer) destroy() error {
	return errors.Join(t.d.EventDestroy(t.start), t.d.EventDestroy(t.end))
}
