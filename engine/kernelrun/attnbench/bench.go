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
	// MaxIters caps the launches of one measurement (default 10000).
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
// hide the per-graph launch cost, few enough to instantiate quickly.
const maxGraphLaunches = 64

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
}

// Run allocates the inputs of shape on the device, launches role once to
// warm up and then times it (see Options). role must be the shape's
// phase's role. Everything allocated is freed before Run returns. Failures
// come back in the Result: StatusOOM when the device had not the memory,
// StatusError otherwise. A kernel that faults leaves the context unusable
// (CUDA's sticky errors), so later shapes fail too.
func Run(d Driver, s cuda.Stream, role Launcher, shape Shape, opts Options) (res Result) {
	res = Result{Shape: shape, Status: StatusOK}
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
	a := &arena{d: d}
	defer func() {
		// Kernels may still run after a failed launch sequence: wait
		// before freeing their buffers.
		err := errors.Join(d.StreamSynchronize(s), a.free())
		if err != nil && res.Status == StatusOK {
			res = fail(fmt.Errorf("%v: freeing: %w", shape, err))
		}
	}()
	p, err := upload(a, s, shape, opts.Seed)
	if err != nil {
		return fail(fmt.Errorf("%v: inputs: %w", shape, err))
	}
	res.WorkspaceBytes = role.Workspace(shape.Batch, shape.Heads, shape.NumQ(), shape.Capacity())
	if res.WorkspaceBytes > 0 {
		if p.Workspace, err = a.alloc(res.WorkspaceBytes, "workspace"); err != nil {
			return fail(fmt.Errorf("%v: %w", shape, err))
		}
		p.WorkspaceBytes = uint64(res.WorkspaceBytes)
	}
	res.DeviceBytes = a.bytes
	m, err := measure(d, s, func() error { return role.Launch(s, &p) }, opts, !opts.NoGraph)
	if err != nil {
		return fail(fmt.Errorf("%v: %w", shape, err))
	}
	res.MS, res.MinMS = m.median*1e3, m.min*1e3
	res.TFLOPS, res.GBps = shape.FLOPs()/m.median/1e12, shape.Bytes()/m.median/1e9
	res.Iters, res.Repeats, res.Graph = m.iters, m.repeats, m.graph
	return res
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
	m, err := measure(d, s, func() error { return d.MemcpyDtoDAsync(dst, src, uint64(bytes), s) }, opts, false)
	if err != nil {
		return CopyResult{}, fmt.Errorf("copy bandwidth of %d bytes: %w", bytes, err)
	}
	return CopyResult{Bytes: bytes, MS: m.median * 1e3, GBps: 2 * float64(bytes) / m.median / 1e9, Iters: m.iters, Repeat: m.repeats}, nil
}

// arena is every buffer of one shape, freed together.
type arena struct {
	d     Driver
	ptrs  []cuda.DevicePtr
	bytes int64
}

func (a *arena) alloc(n int64, what string) (cuda.DevicePtr, error) {
	p, err := a.d.MemAlloc(uint64(max(n, 1)))
	if err != nil {
		return 0, fmt.Errorf("%s (%d bytes): %w", what, n, err)
	}
	a.ptrs = append(a.ptrs, p)
	a.bytes += n
	return p, nil
}

func (a *arena) free() error {
	var errs []error
	for i := len(a.ptrs) - 1; i >= 0; i-- {
		if err := a.d.MemFree(a.ptrs[i]); err != nil {
			errs = append(errs, err)
		}
	}
	a.ptrs, a.bytes = nil, 0
	return errors.Join(errs...)
}

// poolElems is the size of the block of random bf16 values every input is
// tiled from: generating gigabytes on the host would take longer than
// timing them, and the kernels' speed does not depend on the values
// repeating.
const poolElems = 8 << 20

// upload puts shape's inputs on the device: Q [batch][numQ][heads·d];
// per sequence K and V [kvHeads][capacity][d] (the engine's cache layout)
// with rows 0..N-1 at positions 0..N-1; the K and V descriptor arrays,
// seq·kvHeads + head; query positions (prefill 0..N-1, decode N-1); and an
// output of Q's shape.
func upload(a *arena, s cuda.Stream, sh Shape, seed uint64) (kernelrun.AttentionParams, error) {
	d := a.d
	var host [][]byte // kept until the stream has read them
	put := func(b []byte, what string) (cuda.DevicePtr, error) {
		p, err := a.alloc(int64(len(b)), what)
		if err != nil {
			return 0, err
		}
		host = append(host, b)
		if err := d.MemcpyHtoDAsync(p, b, s); err != nil {
			return 0, fmt.Errorf("%s: %w", what, err)
		}
		return p, nil
	}
	pool, err := put(randomBF16(poolElems, seed), "random pool")
	if err != nil {
		return kernelrun.AttentionParams{}, err
	}
	const poolBytes = 2 * poolElems
	// fill tiles n bytes at dst from the pool, starting at a place that
	// differs per buffer.
	fill := func(dst cuda.DevicePtr, n int64, salt int) error {
		off := int64(salt) * 2 * 7919 % poolBytes
		for n > 0 {
			c := min(n, poolBytes-off)
			if err := d.MemcpyDtoDAsync(dst, pool+cuda.DevicePtr(off), uint64(c), s); err != nil {
				return err
			}
			dst, n, off = dst+cuda.DevicePtr(c), n-c, 0
		}
		return nil
	}
	alloc := func(n int64, what string, salt int) (cuda.DevicePtr, error) {
		p, err := a.alloc(n, what)
		if err == nil && salt >= 0 {
			if err = fill(p, n, salt); err != nil {
				err = fmt.Errorf("%s: %w", what, err)
			}
		}
		return p, err
	}

	B, Q, H, KVH, D, C := sh.Batch, sh.NumQ(), sh.Heads, sh.KVHeads, sh.HeadDim, sh.Capacity()
	qBytes := int64(B) * int64(Q) * int64(H) * int64(D) * 2
	p := kernelrun.AttentionParams{
		NumSeqs: int32(B), NumQ: int32(Q), NumHeads: int32(H), NumKVHeads: int32(KVH), HeadDim: int32(D),
		MaxKVLen: int32(C), Scale: float32(1 / math.Sqrt(float64(D))), DType: kernelrun.DTypeBF16,
		QRowStride: int64(H * D), OutRowStride: int64(H * D),
	}
	if p.Q, err = alloc(qBytes, "Q", 0); err != nil {
		return p, err
	}
	if p.Out, err = alloc(qBytes, "output", -1); err != nil {
		return p, err
	}
	qPos := make([]int32, B*Q)
	for i := range qPos {
		qPos[i] = int32(sh.N - Q + i%Q)
	}
	if p.QPos, err = put(i32Bytes(qPos), "query positions"); err != nil {
		return p, err
	}
	kPos := make([]int32, C)
	for i := range kPos {
		kPos[i] = int32(i)
	}
	posDev, err := put(i32Bytes(kPos), "key positions")
	if err != nil {
		return p, err
	}
	headBytes := int64(C) * int64(D) * 2
	var kh, vh []kernelrun.KVHead
	for seq := range B {
		k, err := alloc(int64(KVH)*headBytes, fmt.Sprintf("K of sequence %d", seq), 1+2*seq)
		if err != nil {
			return p, err
		}
		v, err := alloc(int64(KVH)*headBytes, fmt.Sprintf("V of sequence %d", seq), 2+2*seq)
		if err != nil {
			return p, err
		}
		for h := range KVH {
			off := cuda.DevicePtr(int64(h) * headBytes)
			kh = append(kh, kernelrun.KVHead{Data: k + off, Pos: posDev, Len: int32(sh.N), RowStride: int32(D)})
			vh = append(vh, kernelrun.KVHead{Data: v + off, Pos: posDev, Len: int32(sh.N), RowStride: int32(D)})
		}
	}
	if p.K, err = put(kernelrun.KVHeadsBytes(kh), "K descriptors"); err != nil {
		return p, err
	}
	if p.V, err = put(kernelrun.KVHeadsBytes(vh), "V descriptors"); err != nil {
		return p, err
	}
	err = d.StreamSynchronize(s)
	runtime.KeepAlive(host)
	if err != nil {
		return p, fmt.Errorf("uploading: %w", err)
	}
	return p, nil
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
// would take more than MaxTime).
func measure(d Driver, s cuda.Stream, launch func() error, o Options, useGraph bool) (m measurement, err error) {
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
		g, capErr := capture(d, s, launch, min(want, maxGraphLaunches))
		if capErr == nil {
			defer func() { err = errors.Join(err, d.GraphExecDestroy(g)) }()
			perCall = min(want, maxGraphLaunches)
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
