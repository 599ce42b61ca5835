package kernelrun_test

import (
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/longctx/longctx/engine/cuda"
	"github.com/longctx/longctx/engine/kernelrun"
	"github.com/longctx/longctx/engine/kernelrun/gputest"
	"github.com/longctx/longctx/plugins/sdk"
)

type mirror struct {
	file, cName, param string
	goType             reflect.Type
}

var mirrors = []mirror{
	{"common.h", "longctx_kv_head", "", reflect.TypeFor[kernelrun.KVHead]()},
	{"attention.h", "longctx_attention_params", "attn", reflect.TypeFor[kernelrun.AttentionParams]()},
	{"kv_score.h", "longctx_kv_score_params", "score", reflect.TypeFor[kernelrun.KVScoreParams]()},
}

// layoutSource is two kernels that write, as long longs, NVRTC's sizeof
// and offsetof of every ABI struct field and then the value of every field
// of the params they were launched with.
func layoutSource(t *testing.T) string {
	var b strings.Builder
	b.WriteString("#include \"longctx/abi/attention.h\"\n#include \"longctx/abi/kv_score.h\"\n")
	b.WriteString("__device__ void layout(long long *o) {\n  int i = 0;\n")
	// NVRTC has no offsetof (no <stddef.h>, no __builtin_offsetof): take
	// the distance from a local struct's start to the field instead.
	for _, m := range mirrors {
		fmt.Fprintf(&b, "  { %s x;\n  o[i++] = sizeof(%s);\n", m.cName, m.cName)
		for _, f := range kernelrun.HeaderFields(t, m.file, m.cName) {
			fmt.Fprintf(&b, "  o[i++] = (long long)((const char *)&x.%s - (const char *)&x);\n", f.Name)
		}
		b.WriteString("  }\n")
	}
	b.WriteString("}\n")
	for _, m := range mirrors[1:] {
		out := "p.out"
		if m.param == "score" {
			out = "p.scores"
		}
		fmt.Fprintf(&b, "extern \"C\" __global__ void echo_%s(%s p) {\n  long long *o = (long long *)%s;\n  layout(o);\n  int i = 100;\n", m.param, m.cName, out)
		for _, f := range kernelrun.HeaderFields(t, m.file, m.cName) {
			switch {
			case strings.Contains(f.Type, "*"):
				fmt.Fprintf(&b, "  o[i++] = (long long)p.%s;\n", f.Name)
			case f.Type == "float":
				fmt.Fprintf(&b, "  o[i++] = __float_as_int(p.%s);\n", f.Name)
			default:
				fmt.Fprintf(&b, "  o[i++] = (long long)p.%s;\n", f.Name)
			}
		}
		b.WriteString("}\n")
	}
	return b.String()
}

// wantLayout is what layout() writes by the Go mirrors.
func wantLayout() []int64 {
	var out []int64
	for _, m := range mirrors {
		out = append(out, int64(m.goType.Size()))
		for i := range m.goType.NumField() {
			out = append(out, int64(m.goType.Field(i).Offset))
		}
	}
	return out
}

// fieldValues is each field of a params struct as echo_* writes it.
func fieldValues(p any) []int64 {
	v := reflect.ValueOf(p).Elem()
	var out []int64
	for i := range v.NumField() {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.Float32:
			out = append(out, int64(int32(math.Float32bits(float32(f.Float())))))
		case reflect.Int32, reflect.Int64:
			out = append(out, f.Int())
		default:
			out = append(out, int64(f.Uint()))
		}
	}
	return out
}

func readInt64s(b []byte) []int64 {
	out := make([]int64, len(b)/8)
	for i := range out {
		out[i] = int64(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return out
}

// TestGPUParamsLayout: NVRTC lays the ABI structs out as the Go mirrors,
// and a params struct launched by value through Role.Launch arrives field
// for field.
func TestGPUParamsLayout(t *testing.T) {
	env := gputest.Open(t)
	src := layoutSource(t)
	one := sdk.Launch{Grid: sdk.GridHeadsSeqs, BlockX: 1, BlockY: 1, BlockZ: 1}
	attn := env.Role("layout", []sdk.Kernel{{Role: sdk.RoleAttentionPrefill, ABIVersion: 2, CUDASource: src, Entry: "echo_attn", Launch: one}}, sdk.RoleAttentionPrefill)
	score := env.Role("layout", []sdk.Kernel{{Role: sdk.RoleKVScore, ABIVersion: 2, CUDASource: src, Entry: "echo_score", Launch: one}}, sdk.RoleKVScore)

	const n = 200
	out := env.Alloc(8 * n)
	env.Poison(out, 8*n)
	ap := &kernelrun.AttentionParams{NumSeqs: 1, NumQ: 3, NumHeads: 1, NumKVHeads: 5, HeadDim: 6, Layer: 7, SlidingWindow: -8, MaxKVLen: 9,
		Scale: 0.0883883, DType: 2, Q: 0x7f0000001111, QRowStride: -12, QPos: 0x2222, K: 0x3333, V: 0x4444, Out: out, OutRowStride: 1 << 40,
		Workspace: 0x5555, WorkspaceBytes: 1<<63 + 5}
	if err := attn.Launch(env.Stream, ap); err != nil {
		t.Fatal(err)
	}
	got := readInt64s(env.Download(out, 8*n))
	want := wantLayout()
	if !reflect.DeepEqual(got[:len(want)], want) {
		t.Errorf("NVRTC layout (sizeof, offsetof... per struct)\n got %v\nwant %v", got[:len(want)], want)
	}
	if echo := fieldValues(ap); !reflect.DeepEqual(got[100:100+len(echo)], echo) {
		t.Errorf("attention params as the kernel saw them\n got %v\nwant %v", got[100:100+len(echo)], echo)
	}

	// The scores pointer is where echo_score writes.
	env.Poison(out, 8*n)
	sp := &kernelrun.KVScoreParams{NumSeqs: 1, NumKVHeads: 1, HeadDim: 128, Layer: 31, MaxKVLen: 32768, DType: 2, K: 0x6666, V: 0, Scores: out, Workspace: 0x7777, WorkspaceBytes: 3}
	if err := score.Launch(env.Stream, sp); err != nil {
		t.Fatal(err)
	}
	got = readInt64s(env.Download(out, 8*n))
	if echo := fieldValues(sp); !reflect.DeepEqual(got[100:100+len(echo)], echo) {
		t.Errorf("kv score params as the kernel saw them\n got %v\nwant %v", got[100:100+len(echo)], echo)
	}
}

const graphSource = `
#include "longctx/abi/attention.h"
// Two kernels of one role: the first fills dynamic shared memory (more
// than 48 KiB) and leaves a checksum in the workspace, the second reads
// it, so order and the shared workspace both show.
extern "C" __global__ void fill(longctx_attention_params p) {
    extern __shared__ int smem[];
    const int n = SMEM_BYTES / 4;
    for (int i = threadIdx.x; i < n; i += blockDim.x) smem[i] = i ^ p.layer;
    __syncthreads();
    if (threadIdx.x == 0) {
        long long s = 0;
        for (int i = 0; i < n; i++) s += smem[i];
        ((long long *)p.workspace)[blockIdx.x] = s;
    }
}
extern "C" __global__ void sum(longctx_attention_params p) {
    if (blockIdx.x != 0) return;
    long long s = 0;
    for (int h = 0; h < p.num_heads; h++) s += ((long long *)p.workspace)[h];
    *(long long *)p.out = s + p.max_kv_len;
}
`

// TestGPUGraphCapture: a role's launch is recorded by stream capture and
// replays with the buffers' contents at replay time; a kernel above 48 KiB
// of dynamic shared memory runs because NewRole raised its limit.
func TestGPUGraphCapture(t *testing.T) {
	env := gputest.Open(t)
	const smem = 100 << 10
	opts := []string{fmt.Sprintf("--define-macro=SMEM_BYTES=%d", smem)}
	role := env.Role("graph", []sdk.Kernel{
		{Role: sdk.RoleAttentionDecode, ABIVersion: 2, CUDASource: graphSource, Entry: "fill", CompileOptions: opts, WorkspaceBytesPerRow: 8,
			Launch: sdk.Launch{Grid: sdk.GridHeadsSeqs, BlockX: 256, BlockY: 1, BlockZ: 1, SharedMemBytes: smem}},
		{Role: sdk.RoleAttentionDecode, ABIVersion: 2, CUDASource: graphSource, Entry: "sum", CompileOptions: opts,
			Launch: sdk.Launch{Grid: sdk.GridHeadsSeqs, BlockX: 1, BlockY: 1, BlockZ: 1}},
	}, sdk.RoleAttentionDecode)
	const heads = 4
	wsBytes := role.Workspace(1, heads, 1, 1000)
	if wsBytes != 8*heads {
		t.Fatalf("workspace %d", wsBytes)
	}
	ws, out := env.Alloc(wsBytes), env.Alloc(8)
	p := &kernelrun.AttentionParams{NumSeqs: 1, NumQ: 1, NumHeads: heads, NumKVHeads: 1, Layer: 5, MaxKVLen: 1000, Out: out, Workspace: ws, WorkspaceBytes: uint64(wsBytes)}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	exec := env.Graph(func() error { return role.Launch(env.Stream, p) })
	for rep := range 3 {
		env.Poison(out, 8)
		env.Poison(ws, wsBytes)
		must(env.D.GraphLaunch(exec, env.Stream))
		got := readInt64s(env.Download(out, 8))[0]
		var want int64
		for i := range smem / 4 {
			want += int64(i ^ 5)
		}
		want = want*heads + 1000
		if got != want {
			t.Fatalf("replay %d: %d, want %d", rep, got, want)
		}
	}
}

const splitSource = `
#include "longctx/abi/attention.h"
// A split-KV kernel's grid without the attention: each block writes the
// split count it was launched with into its own slot, (seq, kv head,
// split).
extern "C" __global__ void split(longctx_attention_params p) {
    if (threadIdx.x == 0) {
        const long long i = ((long long)blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
        ((long long *)p.out)[i] = gridDim.x;
    }
}
`

// TestGPUKVSplits: a kernel with grid rule KV_SPLITS_KV_HEADS_SEQS gets
// the resident-filling split count from the real occupancy, and every
// block of that grid runs.
func TestGPUKVSplits(t *testing.T) {
	env := gputest.Open(t)
	const smem = 64 << 10
	k := sdk.Kernel{Role: sdk.RoleAttentionDecode, ABIVersion: 3, CUDASource: splitSource, Entry: "split",
		Launch: sdk.Launch{Grid: sdk.GridKVSplitsKVHeadsSeqs, BlockX: 128, BlockY: 1, BlockZ: 1, TileKV: 256, SharedMemBytes: smem}}
	role := env.Role("splits", []sdk.Kernel{k}, sdk.RoleAttentionDecode)
	resident := role.Resident()[0]
	// 64 KiB of shared memory: at most 3 blocks on any SM so far.
	if resident < env.Info.Multiprocessors || resident > 3*env.Info.Multiprocessors {
		t.Fatalf("%d resident blocks on %d SMs", resident, env.Info.Multiprocessors)
	}
	t.Logf("%d SMs, %d resident blocks", env.Info.Multiprocessors, resident)
	for _, c := range []struct{ seqs, kvHeads, maxKV int }{{1, 8, 32768}, {4, 8, 32768}, {64, 8, 32768}, {1, 8, 700}} {
		t.Run(fmt.Sprintf("seqs%d_kv%d", c.seqs, c.maxKV), func(t *testing.T) {
			env := env.For(t)
			const heads = 32
			prob := kernelrun.Problem{NumSeqs: c.seqs, NumHeads: heads, NumKVHeads: c.kvHeads, NumQ: 1, MaxKVLen: c.maxKV}
			grid, err := kernelrun.Grid(k.Launch, prob, resident)
			if err != nil {
				t.Fatal(err)
			}
			if want := min((c.maxKV+255)/256, max(1, resident/(c.seqs*c.kvHeads))); int(grid.X) != want {
				t.Fatalf("grid %v, want %d splits", grid, want)
			}
			n := c.seqs * c.kvHeads * int(grid.X)
			out := env.Alloc(int64(8 * n))
			env.Poison(out, int64(8*n))
			p := &kernelrun.AttentionParams{NumSeqs: int32(c.seqs), NumQ: 1, NumHeads: heads, NumKVHeads: int32(c.kvHeads), MaxKVLen: int32(c.maxKV), Out: out}
			if err := role.Launch(env.Stream, p); err != nil {
				t.Fatal(err)
			}
			for i, v := range readInt64s(env.Download(out, 8*n)) {
				if v != int64(grid.X) {
					t.Fatalf("(seq, kv head, split) %d: %d, want %d", i, v, grid.X)
				}
			}
			t.Logf("grid %v", grid)
		})
	}
}

const streamSource = `
#include "longctx/abi/attention.h"
// A KV_STREAM kernel's grid without the attention: each block writes the
// block count it was launched with into its own slot.
extern "C" __global__ void stream(longctx_attention_params p) {
    if (threadIdx.x == 0) ((long long *)p.out)[blockIdx.x] = gridDim.x;
}
`

// TestGPUKVStream: a kernel with grid rule KV_STREAM gets min(resident
// blocks from the real occupancy, the pairs' tiles) blocks in one row, and
// every block runs; without keys it is not launched.
func TestGPUKVStream(t *testing.T) {
	env := gputest.Open(t)
	const smem, tile = 64 << 10, 256
	k := sdk.Kernel{Role: sdk.RoleAttentionDecode, ABIVersion: 4, CUDASource: streamSource, Entry: "stream",
		Launch: sdk.Launch{Grid: sdk.GridKVStream, BlockX: 128, BlockY: 1, BlockZ: 1, TileKV: tile, SharedMemBytes: smem}}
	role := env.Role("stream", []sdk.Kernel{k}, sdk.RoleAttentionDecode)
	resident := role.Resident()[0]
	if resident < env.Info.Multiprocessors || resident > 3*env.Info.Multiprocessors {
		t.Fatalf("%d resident blocks on %d SMs", resident, env.Info.Multiprocessors)
	}
	t.Logf("%d SMs, %d resident blocks", env.Info.Multiprocessors, resident)
	for _, c := range []struct{ seqs, kvHeads, maxKV int }{{1, 8, 32768}, {8, 8, 32768}, {1, 8, 700}, {1, 1, 1}, {2, 8, 0}} {
		t.Run(fmt.Sprintf("seqs%d_kvheads%d_kv%d", c.seqs, c.kvHeads, c.maxKV), func(t *testing.T) {
			env := env.For(t)
			prob := kernelrun.Problem{NumSeqs: c.seqs, NumHeads: 4 * c.kvHeads, NumKVHeads: c.kvHeads, NumQ: 1, MaxKVLen: c.maxKV}
			grid, err := kernelrun.Grid(k.Launch, prob, resident)
			if err != nil {
				t.Fatal(err)
			}
			want := min(resident, (c.maxKV+tile-1)/tile*c.kvHeads*c.seqs)
			if grid != (cuda.Dim3{X: uint32(want), Y: 1, Z: 1}) {
				t.Fatalf("grid %v, want %d blocks", grid, want)
			}
			n := max(want, 1)
			out := env.Alloc(int64(8 * n))
			env.Poison(out, int64(8*n))
			p := &kernelrun.AttentionParams{NumSeqs: int32(c.seqs), NumQ: 1, NumHeads: int32(4 * c.kvHeads), NumKVHeads: int32(c.kvHeads), MaxKVLen: int32(c.maxKV), Out: out}
			if err := role.Launch(env.Stream, p); err != nil {
				t.Fatal(err)
			}
			got := readInt64s(env.Download(out, 8*n))
			if want == 0 {
				if got[0] != -1 {
					t.Fatalf("no keys, yet a block ran: %d", got[0])
				}
				return
			}
			for i, v := range got {
				if v != int64(want) {
					t.Fatalf("block %d: %d, want %d", i, v, want)
				}
			}
			t.Logf("grid %v", grid)
		})
	}
}

const overlapSource = `
#include "longctx/abi/attention.h"
#include "longctx/abi/launch.h"
// Two kernels of one role over n = max_kv_len unsigned ints at p.out. fill
// lets check start at once and then writes the buffer slowly (a spin of
// p.layer clocks per element) from *p.q, a seed; check (overlap_previous)
// waits for it, then counts the elements that are not what fill wrote.
// p.k: counters {wrong, checked}; p.v: times {fill's last write, check's
// first start} from the global timer, for the log.
__device__ unsigned long long now() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}
__device__ unsigned expected(unsigned seed, int i) { return seed * 1000003u + (unsigned)i; }

extern "C" __global__ void fill(longctx_attention_params p) {
    longctx_launch_dependents();
    const unsigned seed = *(const unsigned *)p.q;
    unsigned *buf = (unsigned *)p.out;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < p.max_kv_len; i += gridDim.x * blockDim.x) {
        const long long t0 = clock64();
        while (clock64() - t0 < p.layer) {
        }
        buf[i] = expected(seed, i);
    }
    __syncthreads();
    if (threadIdx.x == 0) atomicMax((unsigned long long *)p.v, now());
}

extern "C" __global__ void check(longctx_attention_params p) {
    const unsigned long long start = now();
    longctx_wait_previous();
    if (threadIdx.x == 0) atomicMin((unsigned long long *)p.v + 1, start);
    const unsigned seed = *(const unsigned *)p.q;
    const unsigned *buf = (const unsigned *)p.out;
    unsigned long long wrong = 0, checked = 0;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < p.max_kv_len; i += gridDim.x * blockDim.x) {
        wrong += buf[i] != expected(seed, i);
        checked++;
    }
    atomicAdd((unsigned long long *)p.k, wrong);
    atomicAdd((unsigned long long *)p.k + 1, checked);
}
`

// TestGPUOverlapPrevious: a kernel launched to overlap the one before it
// (Launch.OverlapPrevious) and waiting for it with longctx_wait_previous
// sees every value that one wrote, although the first lets it start at
// once and writes slowly: on the stream and replayed from a captured
// graph, with a new seed (so new values) each time.
func TestGPUOverlapPrevious(t *testing.T) {
	env := gputest.Open(t)
	launch := sdk.Launch{Grid: sdk.GridHeadsSeqs, BlockX: 256, BlockY: 1, BlockZ: 1}
	overlap := launch
	overlap.OverlapPrevious = true
	role := env.Role("overlap", []sdk.Kernel{
		{Role: sdk.RoleAttentionDecode, ABIVersion: 4, CUDASource: overlapSource, Entry: "fill", Launch: launch},
		{Role: sdk.RoleAttentionDecode, ABIVersion: 4, CUDASource: overlapSource, Entry: "check", Launch: overlap},
	}, sdk.RoleAttentionDecode)
	can := env.D.CanOverlapLaunch(env.Info)
	if got := role.Overlap(); !reflect.DeepEqual(got, []bool{false, can}) {
		t.Fatalf("Overlap = %v on compute capability %d.%d", got, env.Info.Major, env.Info.Minor)
	}
	t.Logf("compute capability %d.%d: check overlaps fill: %v", env.Info.Major, env.Info.Minor, can)

	const n = 1 << 22
	seed, buf, counts, times := env.Alloc(4), env.Alloc(4*n), env.Alloc(16), env.Alloc(16)
	// Two blocks per SM each: both kernels' blocks fit on the GPU at once,
	// so check's wait in fill's shadow is real.
	p := &kernelrun.AttentionParams{NumSeqs: 1, NumQ: 1, NumHeads: int32(2 * env.Info.Multiprocessors), NumKVHeads: 1,
		MaxKVLen: n, Layer: 2000, Q: seed, Out: buf, K: counts, V: times}
	round := uint32(0)
	// prepare sets a new seed and resets the counters and times, on the
	// stream ahead of the launch.
	prepare := func() uint32 {
		round++
		must := func(err error) {
			if err != nil {
				t.Fatal(err)
			}
		}
		must(env.D.MemsetD32Async(seed, round, 1, env.Stream))
		must(env.D.MemsetD8Async(counts, 0, 16, env.Stream))
		must(env.D.MemsetD8Async(times, 0, 8, env.Stream))
		must(env.D.MemsetD8Async(times+8, 0xFF, 8, env.Stream))
		return round
	}
	verify := func(what string, seed uint32) {
		t.Helper()
		c := readInt64s(env.Download(counts, 16))
		if c[0] != 0 || c[1] != n {
			t.Fatalf("%s: check saw %d of %d elements wrong, checked %d", what, c[0], n, c[1])
		}
		b := env.Download(buf, 4*n)
		for i := range n {
			if v, want := binary.LittleEndian.Uint32(b[4*i:]), seed*1000003+uint32(i); v != want {
				t.Fatalf("%s: element %d is %d, want %d", what, i, v, want)
			}
		}
		tm := readInt64s(env.Download(times, 16))
		t.Logf("%s: check's first block started %.1f µs before fill's last write", what, float64(tm[0]-tm[1])/1e3)
	}
	for rep := range 2 {
		s := prepare()
		if err := role.Launch(env.Stream, p); err != nil {
			t.Fatal(err)
		}
		verify(fmt.Sprintf("stream launch %d", rep), s)
	}

	exec := env.Graph(func() error { return role.Launch(env.Stream, p) })
	for rep := range 4 {
		s := prepare()
		if err := env.D.GraphLaunch(exec, env.Stream); err != nil {
			t.Fatal(err)
		}
		verify(fmt.Sprintf("graph replay %d", rep), s)
	}
}
