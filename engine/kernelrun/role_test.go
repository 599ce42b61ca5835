package kernelrun

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"unsafe"

	"github.com/longctx/longctx/engine/cuda"
	"github.com/longctx/longctx/kernels/abi"
	"github.com/longctx/longctx/plugins/sdk"
)

// fakeDriver records what a Role asks of the driver.
type fakeDriver struct {
	images   [][]byte
	unloaded []cuda.Module
	attrs    map[cuda.Function][2]int
	launches []launch
	failLoad bool
	// blocksPerSM is what the occupancy query answers; occErr fails it.
	blocksPerSM int
	occErr      error
	occupancy   []occupancyCall
	// ops is every attribute, occupancy and launch call in order.
	ops []string
}

type occupancyCall struct {
	f             cuda.Function
	threads, smem int
}

type launch struct {
	f           cuda.Function
	grid, block cuda.Dim3
	shmem       uint32
	s           cuda.Stream
	params      AttentionParams
}

func (d *fakeDriver) ModuleLoadData(image []byte) (cuda.Module, error) {
	if d.failLoad {
		return 0, errors.New("CUDA_ERROR_INVALID_IMAGE")
	}
	d.images = append(d.images, image)
	return cuda.Module(len(d.images)), nil
}

func (d *fakeDriver) ModuleUnload(m cuda.Module) error {
	d.unloaded = append(d.unloaded, m)
	return nil
}

// Functions are numbered module*100 + the entry's last digit.
func (d *fakeDriver) ModuleFunction(m cuda.Module, name string) (cuda.Function, error) {
	if strings.HasPrefix(name, "missing") {
		return 0, fmt.Errorf("kernel %q: CUDA_ERROR_NOT_FOUND", name)
	}
	return cuda.Function(int(m)*100 + int(name[len(name)-1]-'0')), nil
}

func (d *fakeDriver) FuncSetAttribute(f cuda.Function, attr, value int) error {
	if d.attrs == nil {
		d.attrs = map[cuda.Function][2]int{}
	}
	d.attrs[f] = [2]int{attr, value}
	d.ops = append(d.ops, fmt.Sprintf("attr %d", f))
	return nil
}

func (d *fakeDriver) OccupancyMaxActiveBlocksPerMultiprocessor(f cuda.Function, threads, smem int) (int, error) {
	d.occupancy = append(d.occupancy, occupancyCall{f, threads, smem})
	d.ops = append(d.ops, fmt.Sprintf("occupancy %d", f))
	if d.occErr != nil {
		return 0, d.occErr
	}
	return d.blocksPerSM, nil
}

func (d *fakeDriver) Launch(f cuda.Function, grid, block cuda.Dim3, shmem uint32, s cuda.Stream, args ...unsafe.Pointer) error {
	if len(args) != 1 {
		return fmt.Errorf("%d kernel arguments, want the params struct alone", len(args))
	}
	d.launches = append(d.launches, launch{f, grid, block, shmem, s, *(*AttentionParams)(args[0])})
	d.ops = append(d.ops, fmt.Sprintf("launch %d", f))
	return nil
}

// LaunchEx records a launch as Launch does, its op "overlap f" when
// programmatic and "launchex f" when not.
func (d *fakeDriver) LaunchEx(f cuda.Function, grid, block cuda.Dim3, shmem uint32, s cuda.Stream, programmatic bool, args ...unsafe.Pointer) error {
	if err := d.Launch(f, grid, block, shmem, s, args...); err != nil {
		return err
	}
	op := "launchex"
	if programmatic {
		op = "overlap"
	}
	d.ops[len(d.ops)-1] = fmt.Sprintf("%s %d", op, f)
	return nil
}

type compileCall struct {
	src, name string
	opts      cuda.CompileOptions
}

func recordingCompiler(calls *[]compileCall) CompileFunc {
	return func(src, name string, opts cuda.CompileOptions) ([]byte, error) {
		*calls = append(*calls, compileCall{src, name, opts})
		if strings.Contains(src, "syntax error") {
			return nil, errors.New("compiling x.cu for sm_90a: NVRTC_ERROR_COMPILATION\nx.cu(1): error: expected a \";\"")
		}
		return []byte("cubin of " + src), nil
	}
}

func prefillKernels() []sdk.Kernel {
	k := func(entry string, l sdk.Launch, perScore int64) sdk.Kernel {
		return sdk.Kernel{Role: sdk.RoleAttentionPrefill, ABIVersion: 2, CUDASource: "// eager", Entry: entry, Launch: l,
			WorkspaceBytesPerScore: perScore, CompileOptions: []string{"--define-macro=EAGER_HEAD_DIM=128"}}
	}
	return []sdk.Kernel{
		k("qk1", sdk.Launch{Grid: sdk.GridQTilesHeadsSeqs, BlockX: 128, BlockY: 1, BlockZ: 1, TileQ: 64, SharedMemBytes: 52736}, 8),
		k("softmax2", sdk.Launch{Grid: sdk.GridRows, BlockX: 256, BlockY: 1, BlockZ: 1, TileQ: 8}, 8),
		k("pv3", sdk.Launch{Grid: sdk.GridQTilesHeadsSeqs, BlockX: 128, BlockY: 1, BlockZ: 1, TileQ: 64, SharedMemBytes: 34048}, 8),
	}
}

func TestRoleCompilesOnceAndLaunchesInOrder(t *testing.T) {
	d := &fakeDriver{}
	var calls []compileCall
	r, err := NewRole(d, prefillKernels(), Config{Plugin: "eager", Arch: "sm_90a", DType: "bf16", Compile: recordingCompiler(&calls)})
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 1 || len(d.images) != 1 {
		t.Fatalf("%d compilations, %d modules for three kernels of one source", len(calls), len(d.images))
	}
	c := calls[0]
	if c.name != "eager.cu" || c.opts.Arch != "sm_90a" || c.opts.Defines["LONGCTX_DTYPE"] != "2" ||
		len(c.opts.Extra) != 1 || c.opts.Extra[0] != "--define-macro=EAGER_HEAD_DIM=128" {
		t.Errorf("compile call %+v", c)
	}
	for _, h := range []string{"common.h", "attention.h", "kv_score.h", "launch.h"} {
		if !strings.Contains(c.opts.Headers["longctx/abi/"+h], "#ifndef LONGCTX_ABI_") || c.opts.Headers[h] != c.opts.Headers["longctx/abi/"+h] {
			t.Errorf("header %s missing under longctx/abi/%[1]s or its bare name", h)
		}
	}
	// Only qk's 52736 bytes are above 48 KiB.
	if len(d.attrs) != 1 || d.attrs[101] != [2]int{cuda.FuncAttrMaxDynamicSharedSizeBytes, 52736} {
		t.Errorf("attributes %v", d.attrs)
	}

	const seqs, heads, q, kv = 1, 32, 100, 300
	ws := r.Workspace(seqs, heads, q, kv)
	if want := int64(8 * seqs * heads * q * kv); ws != want {
		t.Fatalf("Workspace = %d, want %d", ws, want)
	}
	p := &AttentionParams{NumSeqs: seqs, NumQ: q, NumHeads: heads, NumKVHeads: 8, MaxKVLen: kv, Workspace: 0x1000, WorkspaceBytes: uint64(ws), Scale: 0.125}
	if err := r.Launch(7, p); err != nil {
		t.Fatal(err)
	}
	want := []launch{
		{101, cuda.Dim3{X: 2, Y: 32, Z: 1}, cuda.Dim3{X: 128, Y: 1, Z: 1}, 52736, 7, *p},
		{102, cuda.Dim3{X: 400, Y: 1, Z: 1}, cuda.Dim3{X: 256, Y: 1, Z: 1}, 0, 7, *p},
		{103, cuda.Dim3{X: 2, Y: 32, Z: 1}, cuda.Dim3{X: 128, Y: 1, Z: 1}, 34048, 7, *p},
	}
	if fmt.Sprint(d.launches) != fmt.Sprint(want) {
		t.Errorf("launches\n got %v\nwant %v", d.launches, want)
	}
	// No occupancy query for kernels that need none.
	if len(d.occupancy) != 0 || fmt.Sprint(r.Resident()) != "[0 0 0]" {
		t.Errorf("occupancy calls %v, resident %v", d.occupancy, r.Resident())
	}

	p.WorkspaceBytes = uint64(ws - 1)
	if err := r.Launch(7, p); err == nil || !strings.Contains(err.Error(), "workspace") {
		t.Errorf("undersized workspace: %v", err)
	}
	if err := r.Close(); err != nil || len(d.unloaded) != 1 {
		t.Errorf("Close: %v, unloaded %v", err, d.unloaded)
	}
}

func TestRoleLoadsPTXAndCubin(t *testing.T) {
	d := &fakeDriver{}
	ks := []sdk.Kernel{
		{Role: sdk.RoleKVScore, ABIVersion: 1, PTX: []byte(".entry s1"), Entry: "s1", Launch: sdk.Launch{Grid: sdk.GridKVTilesKVHeadsSeqs, BlockX: 128, BlockY: 1, BlockZ: 1, TileKV: 128}},
		{Role: sdk.RoleKVScore, ABIVersion: 2, Cubin: []byte{0x7f, 'E', 'L', 'F'}, Entry: "s2", Launch: sdk.Launch{Grid: sdk.GridHeadsSeqs, BlockX: 32, BlockY: 1, BlockZ: 1}, WorkspaceBytes: 4096},
	}
	r, err := NewRole(d, ks, Config{Plugin: "l2", DType: "f32"})
	if err != nil {
		t.Fatal(err)
	}
	if string(d.images[0]) != ".entry s1\x00" || string(d.images[1]) != "\x7fELF" {
		t.Errorf("images %q", d.images)
	}
	if r.Workspace(2, 8, 1, 1000) != 4096 {
		t.Errorf("Workspace = %d", r.Workspace(2, 8, 1, 1000))
	}
	p := &KVScoreParams{NumSeqs: 2, NumKVHeads: 8, MaxKVLen: 1000, Workspace: 0x2000, WorkspaceBytes: 4096}
	if err := r.Launch(0, p); err != nil {
		t.Fatal(err)
	}
	if len(d.launches) != 2 || d.launches[0].grid != (cuda.Dim3{X: 8, Y: 8, Z: 2}) || d.launches[1].grid != (cuda.Dim3{X: 8, Y: 2, Z: 1}) {
		t.Errorf("launches %v", d.launches)
	}
}

// TestNewRoleOf: a role's kernels are picked out of a plugin's list in
// their order; a role without kernels is an error that names it.
func TestNewRoleOf(t *testing.T) {
	d := &fakeDriver{}
	decode := prefillKernels()[1]
	decode.Role, decode.Entry = sdk.RoleAttentionDecode, "dec"
	all := append([]sdk.Kernel{decode}, prefillKernels()...)
	r, err := NewRoleOf(d, all, sdk.RoleAttentionPrefill, Config{Plugin: "eager", Arch: "sm_90a", DType: "bf16", Compile: recordingCompiler(new([]compileCall))})
	if err != nil {
		t.Fatal(err)
	}
	var entries []string
	for _, k := range r.Kernels() {
		entries = append(entries, k.Entry)
	}
	if fmt.Sprint(entries) != "[qk1 softmax2 pv3]" {
		t.Errorf("prefill kernels %v", entries)
	}
	if _, err := NewRoleOf(d, all, sdk.RoleKVScore, Config{Plugin: "eager"}); err == nil || !strings.Contains(err.Error(), "no kv.score kernel") {
		t.Errorf("a role without kernels: %v", err)
	}
}

func TestRoleErrors(t *testing.T) {
	for _, tt := range []struct {
		name    string
		kernels func() []sdk.Kernel
		cfg     Config
		d       *fakeDriver
		want    []string
	}{
		{"compile error", func() []sdk.Kernel { ks := prefillKernels(); ks[0].CUDASource = "syntax error"; return ks[:1] },
			Config{Plugin: "eager", Arch: "sm_90a", DType: "bf16"}, &fakeDriver{},
			[]string{"plugin eager", "attention.prefill kernel qk1", `expected a ";"`}},
		{"missing entry", func() []sdk.Kernel { ks := prefillKernels(); ks[1].Entry = "missing2"; return ks },
			Config{Plugin: "eager", Arch: "sm_90a", DType: "bf16"}, &fakeDriver{},
			[]string{"plugin eager", "kernel missing2", "CUDA_ERROR_NOT_FOUND"}},
		{"two roles", func() []sdk.Kernel { ks := prefillKernels(); ks[2].Role = sdk.RoleAttentionDecode; return ks },
			Config{Plugin: "eager", Arch: "sm_90a", DType: "bf16"}, &fakeDriver{}, []string{"one role's kernels"}},
		{"future ABI", func() []sdk.Kernel { ks := prefillKernels(); ks[0].ABIVersion = abi.Version + 1; return ks },
			Config{Plugin: "eager", Arch: "sm_90a", DType: "bf16"}, &fakeDriver{}, []string{fmt.Sprintf("ABI version %d", abi.Version+1)}},
		{"no arch", prefillKernels, Config{Plugin: "eager", DType: "bf16"}, &fakeDriver{}, []string{"no target architecture"}},
		{"bad dtype", prefillKernels, Config{Plugin: "eager", Arch: "sm_90a", DType: "fp8"}, &fakeDriver{}, []string{"fp8"}},
		{"load fails", prefillKernels, Config{Plugin: "eager", Arch: "sm_90a", DType: "bf16"}, &fakeDriver{failLoad: true},
			[]string{"kernel qk1: loading the module", "INVALID_IMAGE"}},
		{"none", func() []sdk.Kernel { return nil }, Config{Plugin: "eager"}, &fakeDriver{}, []string{"no kernels"}},
	} {
		var calls []compileCall
		tt.cfg.Compile = recordingCompiler(&calls)
		_, err := NewRole(tt.d, tt.kernels(), tt.cfg)
		for _, w := range tt.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %v, want one containing %q", tt.name, err, w)
			}
		}
		if len(tt.d.images) != len(tt.d.unloaded) {
			t.Errorf("%s: %d modules loaded, %d unloaded after the failure", tt.name, len(tt.d.images), len(tt.d.unloaded))
		}
	}
}

func TestGrid(t *testing.T) {
	p := Problem{NumSeqs: 3, NumHeads: 32, NumKVHeads: 8, NumQ: 17, MaxKVLen: 32769}
	for _, tt := range []struct {
		l    sdk.Launch
		want cuda.Dim3
	}{
		{sdk.Launch{Grid: sdk.GridQTilesHeadsSeqs, TileQ: 16}, cuda.Dim3{X: 2, Y: 32, Z: 3}},
		{sdk.Launch{Grid: sdk.GridHeadsSeqs}, cuda.Dim3{X: 32, Y: 3, Z: 1}},
		{sdk.Launch{Grid: sdk.GridKVTilesKVHeadsSeqs, TileKV: 256}, cuda.Dim3{X: 129, Y: 8, Z: 3}},
		{sdk.Launch{Grid: sdk.GridRows, TileQ: 8}, cuda.Dim3{X: (3*32*17 + 7) / 8, Y: 1, Z: 1}},
	} {
		got, err := Grid(tt.l, p, 0)
		if err != nil || got != tt.want {
			t.Errorf("rule %d: %v, %v; want %v", tt.l.Grid, got, err, tt.want)
		}
	}
	for _, l := range []sdk.Launch{{Grid: 0}, {Grid: 9}, {Grid: sdk.GridRows}, {Grid: sdk.GridKVTilesKVHeadsSeqs}, {Grid: sdk.GridKVSplitsKVHeadsSeqs}} {
		if _, err := Grid(l, p, 100); err == nil {
			t.Errorf("rule %d tiles %d/%d accepted", l.Grid, l.TileQ, l.TileKV)
		}
	}
	if _, err := Grid(sdk.Launch{Grid: sdk.GridHeadsSeqs}, Problem{NumHeads: 32, NumSeqs: 70000}, 0); err == nil {
		t.Error("70000 sequences in grid y accepted")
	}
	// A problem without queries launches nothing.
	if g, err := Grid(sdk.Launch{Grid: sdk.GridRows, TileQ: 8}, Problem{NumSeqs: 1, NumHeads: 4}, 0); err != nil || g.X != 0 {
		t.Errorf("empty problem: %v, %v", g, err)
	}
}

func TestEmptyProblemLaunchesNothing(t *testing.T) {
	d := &fakeDriver{}
	var calls []compileCall
	r, err := NewRole(d, prefillKernels(), Config{Plugin: "eager", Arch: "sm_90a", DType: "bf16", Compile: recordingCompiler(&calls)})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Launch(0, &AttentionParams{NumSeqs: 1, NumHeads: 4, NumKVHeads: 2}); err != nil || len(d.launches) != 0 {
		t.Errorf("launches %v, err %v", d.launches, err)
	}
}

// TestGridKVSplits: grid rule KV_SPLITS_KV_HEADS_SEQS fills the resident
// blocks once, never with more splits than tile_kv-key tiles, at least one
// split, none without keys.
func TestGridKVSplits(t *testing.T) {
	l := sdk.Launch{Grid: sdk.GridKVSplitsKVHeadsSeqs, TileKV: 256}
	const resident = 132 * 2 // an H100's SMs, two blocks each
	for _, tt := range []struct {
		name     string
		p        Problem
		resident int
		want     cuda.Dim3
	}{
		{"batch 1", Problem{NumSeqs: 1, NumHeads: 32, NumKVHeads: 8, NumQ: 1, MaxKVLen: 32768}, resident, cuda.Dim3{X: 33, Y: 8, Z: 1}},
		{"batch 4", Problem{NumSeqs: 4, NumHeads: 32, NumKVHeads: 8, NumQ: 1, MaxKVLen: 32768}, resident, cuda.Dim3{X: 8, Y: 8, Z: 4}},
		{"batch 16", Problem{NumSeqs: 16, NumHeads: 32, NumKVHeads: 8, NumQ: 1, MaxKVLen: 32768}, resident, cuda.Dim3{X: 2, Y: 8, Z: 16}},
		{"batch exactly filling", Problem{NumSeqs: 33, NumHeads: 32, NumKVHeads: 8, NumQ: 1, MaxKVLen: 32768}, resident, cuda.Dim3{X: 1, Y: 8, Z: 33}},
		{"huge batch", Problem{NumSeqs: 512, NumHeads: 32, NumKVHeads: 8, NumQ: 1, MaxKVLen: 32768}, resident, cuda.Dim3{X: 1, Y: 8, Z: 512}},
		{"short cache caps", Problem{NumSeqs: 1, NumHeads: 32, NumKVHeads: 8, NumQ: 1, MaxKVLen: 1000}, resident, cuda.Dim3{X: 4, Y: 8, Z: 1}},
		{"one tile", Problem{NumSeqs: 1, NumHeads: 32, NumKVHeads: 8, NumQ: 1, MaxKVLen: 256}, resident, cuda.Dim3{X: 1, Y: 8, Z: 1}},
		{"one key", Problem{NumSeqs: 1, NumHeads: 32, NumKVHeads: 8, NumQ: 1, MaxKVLen: 1}, resident, cuda.Dim3{X: 1, Y: 8, Z: 1}},
		{"no keys", Problem{NumSeqs: 1, NumHeads: 32, NumKVHeads: 8, NumQ: 1, MaxKVLen: 0}, resident, cuda.Dim3{X: 0, Y: 8, Z: 1}},
		{"no keys, huge batch", Problem{NumSeqs: 512, NumHeads: 32, NumKVHeads: 8, NumQ: 1, MaxKVLen: 0}, resident, cuda.Dim3{X: 0, Y: 8, Z: 512}},
		{"no sequences", Problem{NumSeqs: 0, NumHeads: 32, NumKVHeads: 8, NumQ: 1, MaxKVLen: 4096}, resident, cuda.Dim3{X: 16, Y: 8, Z: 0}},
		{"one resident block", Problem{NumSeqs: 1, NumHeads: 1, NumKVHeads: 1, NumQ: 1, MaxKVLen: 4096}, 1, cuda.Dim3{X: 1, Y: 1, Z: 1}},
		{"prefill-sized q ignored", Problem{NumSeqs: 1, NumHeads: 32, NumKVHeads: 8, NumQ: 4096, MaxKVLen: 32768}, resident, cuda.Dim3{X: 33, Y: 8, Z: 1}},
	} {
		got, err := Grid(l, tt.p, tt.resident)
		if err != nil || got != tt.want {
			t.Errorf("%s: %v, %v; want %v", tt.name, got, err, tt.want)
		}
	}
	for _, tt := range []struct {
		name     string
		l        sdk.Launch
		p        Problem
		resident int
		err      string
	}{
		{"no resident count", l, Problem{NumSeqs: 1, NumKVHeads: 8, MaxKVLen: 100}, 0, "resident"},
		{"negative resident count", l, Problem{NumSeqs: 1, NumKVHeads: 8, MaxKVLen: 100}, -4, "resident"},
		{"no tile", sdk.Launch{Grid: sdk.GridKVSplitsKVHeadsSeqs}, Problem{NumSeqs: 1, NumKVHeads: 8, MaxKVLen: 100}, resident, "tile_kv"},
		{"too many sequences", l, Problem{NumSeqs: 70000, NumKVHeads: 8, MaxKVLen: 100}, resident, "out of range"},
	} {
		if g, err := Grid(tt.l, tt.p, tt.resident); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: %v, %v; want an error containing %q", tt.name, g, err, tt.err)
		}
	}
}

// splitDecodeKernels is a split-KV decode role of ABI version 3: the split
// kernel (rule KV_SPLITS_KV_HEADS_SEQS, 64 KiB of shared memory) and a
// combine kernel.
func splitDecodeKernels() []sdk.Kernel {
	return []sdk.Kernel{
		{Role: sdk.RoleAttentionDecode, ABIVersion: 3, CUDASource: "// flash", Entry: "split1",
			Launch:               sdk.Launch{Grid: sdk.GridKVSplitsKVHeadsSeqs, BlockX: 128, BlockY: 1, BlockZ: 1, TileKV: 256, SharedMemBytes: 64 << 10},
			WorkspaceBytesPerRow: 16 + 4*128, WorkspaceBytesPerScore: 2},
		{Role: sdk.RoleAttentionDecode, ABIVersion: 3, CUDASource: "// flash", Entry: "combine2",
			Launch:               sdk.Launch{Grid: sdk.GridRows, BlockX: 128, BlockY: 1, BlockZ: 1, TileQ: 1},
			WorkspaceBytesPerRow: 16},
	}
}

// TestRoleKVSplits: NewRole asks the occupancy of the split kernel alone,
// after raising its shared memory limit; Launch sizes the split grid from
// the resident blocks.
func TestRoleKVSplits(t *testing.T) {
	d := &fakeDriver{blocksPerSM: 2}
	cfg := Config{Plugin: "flash", Arch: "sm_90a", DType: "bf16", Compile: recordingCompiler(new([]compileCall)), Multiprocessors: 132}
	r, err := NewRole(d, splitDecodeKernels(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if want := []occupancyCall{{101, 128, 64 << 10}}; fmt.Sprint(d.occupancy) != fmt.Sprint(want) {
		t.Errorf("occupancy calls %v, want %v", d.occupancy, want)
	}
	if want := "[attr 101 occupancy 101]"; fmt.Sprint(d.ops) != want {
		t.Errorf("driver calls %v, want %s", d.ops, want)
	}
	if got := r.Resident(); fmt.Sprint(got) != "[264 0]" {
		t.Errorf("Resident = %v, want [264 0]", got)
	}

	for _, tt := range []struct {
		name                 string
		seqs, kvHeads, maxKV int
		ops                  []string
		splits               uint32
	}{
		{"batch 1", 1, 8, 32768, []string{"launch 101", "launch 102"}, 33},
		{"batch 8", 8, 8, 32768, []string{"launch 101", "launch 102"}, 4},
		{"huge batch", 300, 8, 32768, []string{"launch 101", "launch 102"}, 1},
		{"short cache", 2, 8, 600, []string{"launch 101", "launch 102"}, 3},
		// No keys: the split kernel is not launched, the combine still is.
		{"no keys", 2, 8, 0, []string{"launch 102"}, 0},
		{"no sequences", 0, 8, 1000, nil, 0},
	} {
		d.ops, d.launches = nil, nil
		const heads = 32
		ws := r.Workspace(tt.seqs, heads, 1, tt.maxKV)
		if want := int64(tt.seqs*heads) * (16 + 4*128 + 2*int64(tt.maxKV)); ws != want {
			t.Errorf("%s: Workspace = %d, want %d", tt.name, ws, want)
		}
		p := &AttentionParams{NumSeqs: int32(tt.seqs), NumQ: 1, NumHeads: heads, NumKVHeads: int32(tt.kvHeads), MaxKVLen: int32(tt.maxKV),
			Workspace: 0x10000, WorkspaceBytes: uint64(ws)}
		if err := r.Launch(5, p); err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if fmt.Sprint(d.ops) != fmt.Sprint(tt.ops) {
			t.Errorf("%s: driver calls\n got %v\nwant %v", tt.name, d.ops, tt.ops)
		}
		if tt.splits > 0 {
			if want := (cuda.Dim3{X: tt.splits, Y: uint32(tt.kvHeads), Z: uint32(tt.seqs)}); len(d.launches) == 0 || d.launches[0].grid != want {
				t.Errorf("%s: launches %v, want the split kernel's grid %v", tt.name, d.launches, want)
			}
		}
	}

	// The workspace check comes first: too small a workspace is not
	// launched on.
	d.ops = nil
	ws := r.Workspace(2, 32, 1, 4096)
	for _, bytes := range []uint64{uint64(ws - 1), 0} {
		p := &AttentionParams{NumSeqs: 2, NumQ: 1, NumHeads: 32, NumKVHeads: 8, MaxKVLen: 4096, Workspace: 0x10000, WorkspaceBytes: bytes}
		if err := r.Launch(5, p); err == nil || !strings.Contains(err.Error(), "workspace") {
			t.Errorf("workspace of %d bytes, need %d: %v", bytes, ws, err)
		}
	}
	if p := (&AttentionParams{NumSeqs: 2, NumQ: 1, NumHeads: 32, NumKVHeads: 8, MaxKVLen: 4096, WorkspaceBytes: uint64(ws)}); r.Launch(5, p) == nil {
		t.Error("a null workspace accepted")
	}
	if len(d.ops) != 0 {
		t.Errorf("driver calls after failed checks: %v", d.ops)
	}

	// Every grid is checked before the first launch: the combine kernel's
	// grid out of range (2^32 rows, one per block) launches not even the
	// split kernel, whose grid is fine.
	const numQ = 1 << 27
	ws = r.Workspace(1, 32, numQ, 4096)
	p := &AttentionParams{NumSeqs: 1, NumQ: numQ, NumHeads: 32, NumKVHeads: 8, MaxKVLen: 4096, Workspace: 0x10000, WorkspaceBytes: uint64(ws)}
	if err := r.Launch(5, p); err == nil || !strings.Contains(err.Error(), "kernel combine2") || !strings.Contains(err.Error(), "out of range") {
		t.Errorf("combine grid out of range: %v", err)
	}
	if len(d.ops) != 0 {
		t.Errorf("driver calls after a bad grid: %v", d.ops)
	}
}

// TestRoleKVSplitsErrors: the split rule needs the SM count, a block that
// fits and an occupancy query that works; what was loaded is unloaded.
func TestRoleKVSplitsErrors(t *testing.T) {
	cfg := Config{Plugin: "flash", Arch: "sm_90a", DType: "bf16", Multiprocessors: 132}
	for _, tt := range []struct {
		name    string
		kernels func() []sdk.Kernel
		sms     int
		d       *fakeDriver
		want    []string
	}{
		{"no SM count", splitDecodeKernels, 0, &fakeDriver{blocksPerSM: 2},
			[]string{"plugin flash: attention.decode kernel split1", "multiprocessor count"}},
		{"no block fits", splitDecodeKernels, 132, &fakeDriver{blocksPerSM: 0},
			[]string{"plugin flash: attention.decode kernel split1: no block fits on an SM (128 threads, 65536 bytes of shared memory)"}},
		{"occupancy fails", splitDecodeKernels, 132, &fakeDriver{occErr: errors.New("CUDA_ERROR_INVALID_VALUE")},
			[]string{"kernel split1", "occupancy", "INVALID_VALUE"}},
		{"version 2 split rule", func() []sdk.Kernel {
			ks := splitDecodeKernels()
			ks[0].ABIVersion = 2
			return ks
		}, 132, &fakeDriver{blocksPerSM: 2}, []string{"kernel split1", "needs ABI version 3"}},
	} {
		c := cfg
		c.Multiprocessors = tt.sms
		c.Compile = recordingCompiler(new([]compileCall))
		_, err := NewRole(tt.d, tt.kernels(), c)
		for _, w := range tt.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %v, want one containing %q", tt.name, err, w)
			}
		}
		if len(tt.d.images) != len(tt.d.unloaded) {
			t.Errorf("%s: %d modules loaded, %d unloaded after the failure", tt.name, len(tt.d.images), len(tt.d.unloaded))
		}
	}
	// Without the split rule, neither the SM count nor the occupancy is
	// needed.
	ks := splitDecodeKernels()[1:]
	d := &fakeDriver{occErr: errors.New("must not be asked")}
	if _, err := NewRole(d, ks, Config{Plugin: "flash", Arch: "sm_90a", DType: "bf16", Compile: recordingCompiler(new([]compileCall))}); err != nil || len(d.occupancy) != 0 {
		t.Errorf("a role without the split rule: %v, occupancy calls %v", err, d.occupancy)
	}
}

// TestGridKVStream: grid rule KV_STREAM is one row of min(resident, tiles
// of all (sequence, KV head) pairs) blocks, none without keys, and no
// product of the sizes overflows on the way.
func TestGridKVStream(t *testing.T) {
	l := sdk.Launch{Grid: sdk.GridKVStream, TileKV: 256}
	const resident = 132 * 2 // an H100's SMs, two blocks each
	dec := func(seqs, kvHeads, maxKV int) Problem {
		return Problem{NumSeqs: seqs, NumHeads: 4 * kvHeads, NumKVHeads: kvHeads, NumQ: 1, MaxKVLen: maxKV}
	}
	for _, tt := range []struct {
		name     string
		p        Problem
		resident int
		want     uint32
	}{
		{"batch 1 fills the GPU", dec(1, 8, 32768), resident, resident},
		{"batch 8 fills the GPU", dec(8, 8, 32768), resident, resident},
		{"batch 1, short cache", dec(1, 8, 1000), resident, 4 * 8},
		{"batch 8, short cache", dec(8, 8, 1000), resident, 4 * 8 * 8},
		{"batch 9, short cache", dec(9, 8, 1000), resident, resident},
		{"batch 8, one tile each", dec(8, 8, 256), resident, 64},
		{"work exactly the resident blocks", dec(33, 8, 256), resident, resident},
		{"one key", dec(1, 8, 1), resident, 8},
		{"one key, one head", dec(1, 1, 1), resident, 1},
		{"no keys", dec(1, 8, 0), resident, 0},
		{"no keys, huge batch", dec(512, 8, 0), resident, 0},
		{"no sequences", dec(0, 8, 4096), resident, 0},
		{"no KV heads", dec(4, 0, 4096), resident, 0},
		{"one resident block", dec(8, 8, 32768), 1, 1},
		{"resident larger than the work", dec(1, 8, 32768), 1 << 20, 128 * 8},
		{"prefill-sized q ignored", Problem{NumSeqs: 1, NumHeads: 32, NumKVHeads: 8, NumQ: 4096, MaxKVLen: 600}, resident, 3 * 8},
		// The product of the sizes is far beyond int64; the grid is not.
		{"overflowing work", Problem{NumSeqs: math.MaxInt32, NumKVHeads: math.MaxInt64 / 2, MaxKVLen: math.MaxInt64}, resident, resident},
		{"overflowing work, tile 1", Problem{NumSeqs: math.MaxInt64, NumKVHeads: math.MaxInt64, MaxKVLen: math.MaxInt64}, math.MaxInt32, math.MaxInt32},
	} {
		ll := l
		if strings.HasSuffix(tt.name, "tile 1") {
			ll.TileKV = 1
		}
		got, err := Grid(ll, tt.p, tt.resident)
		if want := (cuda.Dim3{X: tt.want, Y: 1, Z: 1}); err != nil || got != want {
			t.Errorf("%s: %v, %v; want %v", tt.name, got, err, want)
		}
	}
	for _, tt := range []struct {
		name     string
		l        sdk.Launch
		p        Problem
		resident int
		err      string
	}{
		{"no resident count", l, dec(1, 8, 100), 0, "resident"},
		{"negative resident count", l, dec(1, 8, 100), -4, "resident"},
		{"no tile", sdk.Launch{Grid: sdk.GridKVStream}, dec(1, 8, 100), resident, "tile_kv"},
		{"negative tile", sdk.Launch{Grid: sdk.GridKVStream, TileKV: -256}, dec(1, 8, 100), resident, "tile_kv"},
		{"negative keys", l, dec(1, 8, -1), resident, "negative"},
		{"negative heads", l, dec(1, -8, 100), resident, "negative"},
		{"negative sequences", l, dec(-1, 8, 100), resident, "negative"},
		// More resident blocks than a grid may have in x.
		{"beyond CUDA's grid", l, dec(1<<20, 8, 1<<20), 1 << 32, "out of range"},
	} {
		if g, err := Grid(tt.l, tt.p, tt.resident); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: %v, %v; want an error containing %q", tt.name, g, err, tt.err)
		}
	}
}

// streamDecodeKernels is a stream-K decode role of ABI version 4: the
// stream kernel (rule KV_STREAM, 96 KiB of shared memory) and a combine
// kernel that overlaps it.
func streamDecodeKernels() []sdk.Kernel {
	return []sdk.Kernel{
		{Role: sdk.RoleAttentionDecode, ABIVersion: 4, CUDASource: "// stream", Entry: "stream1",
			Launch:               sdk.Launch{Grid: sdk.GridKVStream, BlockX: 256, BlockY: 1, BlockZ: 1, TileKV: 128, SharedMemBytes: 96 << 10},
			WorkspaceBytesPerRow: 16 + 4*128},
		{Role: sdk.RoleAttentionDecode, ABIVersion: 4, CUDASource: "// stream", Entry: "combine2",
			Launch: sdk.Launch{Grid: sdk.GridRows, BlockX: 128, BlockY: 1, BlockZ: 1, TileQ: 1, OverlapPrevious: true}},
	}
}

// TestRoleKVStream: NewRole asks the occupancy of the stream kernel;
// Launch sizes its grid from the resident blocks and launches the combine
// kernel to overlap it only where the device can.
func TestRoleKVStream(t *testing.T) {
	for _, tt := range []struct {
		name    string
		overlap bool
		ops     []string
	}{
		{"overlapping", true, []string{"launch 101", "overlap 102"}},
		{"no overlap on this device", false, []string{"launch 101", "launch 102"}},
	} {
		d := &fakeDriver{blocksPerSM: 1}
		cfg := Config{Plugin: "flash", Arch: "sm_90a", DType: "bf16", Compile: recordingCompiler(new([]compileCall)), Multiprocessors: 132, OverlapLaunch: tt.overlap}
		r, err := NewRole(d, streamDecodeKernels(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if want := "[attr 101 occupancy 101]"; fmt.Sprint(d.ops) != want {
			t.Errorf("%s: driver calls %v, want %s", tt.name, d.ops, want)
		}
		if got := r.Resident(); fmt.Sprint(got) != "[132 0]" {
			t.Errorf("%s: Resident = %v, want [132 0]", tt.name, got)
		}
		if got, want := r.Overlap(), []bool{false, tt.overlap}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: Overlap = %v, want %v", tt.name, got, want)
		}
		d.ops = nil
		ws := r.Workspace(2, 32, 1, 4096)
		p := &AttentionParams{NumSeqs: 2, NumQ: 1, NumHeads: 32, NumKVHeads: 8, MaxKVLen: 4096, Workspace: 0x10000, WorkspaceBytes: uint64(ws)}
		if err := r.Launch(5, p); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if fmt.Sprint(d.ops) != fmt.Sprint(tt.ops) {
			t.Errorf("%s: driver calls %v, want %v", tt.name, d.ops, tt.ops)
		}
		// min(132, 32 tiles × 8 KV heads × 2 sequences); then one combine
		// block per row.
		if len(d.launches) != 2 || d.launches[0].grid != (cuda.Dim3{X: 132, Y: 1, Z: 1}) || d.launches[1].grid != (cuda.Dim3{X: 64, Y: 1, Z: 1}) {
			t.Errorf("%s: launches %v", tt.name, d.launches)
		}
		// Without keys the stream kernel is not launched; the combine
		// kernel is, overlapping whatever came before.
		d.ops = nil
		p.MaxKVLen = 0
		if err := r.Launch(5, p); err != nil || fmt.Sprint(d.ops) != fmt.Sprint(tt.ops[1:]) {
			t.Errorf("%s, no keys: driver calls %v, %v; want %v", tt.name, d.ops, err, tt.ops[1:])
		}
	}
}

// TestRoleABI4Errors: the stream rule needs the SM count; kernels of
// older versions may use neither ABI 4 feature.
func TestRoleABI4Errors(t *testing.T) {
	for _, tt := range []struct {
		name string
		edit func([]sdk.Kernel)
		sms  int
		want []string
	}{
		{"no SM count", func([]sdk.Kernel) {}, 0,
			[]string{"plugin flash: attention.decode kernel stream1", "grid rule KV_STREAM needs the device's multiprocessor count"}},
		{"version 3 stream rule", func(ks []sdk.Kernel) { ks[0].ABIVersion = 3 }, 132,
			[]string{"kernel stream1", "grid rule KV_STREAM needs ABI version 4"}},
		{"version 3 overlapping", func(ks []sdk.Kernel) { ks[1].ABIVersion = 3 }, 132,
			[]string{"kernel combine2", "overlap_previous needs ABI version 4"}},
	} {
		d := &fakeDriver{blocksPerSM: 1}
		ks := streamDecodeKernels()
		tt.edit(ks)
		cfg := Config{Plugin: "flash", Arch: "sm_90a", DType: "bf16", Compile: recordingCompiler(new([]compileCall)), Multiprocessors: tt.sms, OverlapLaunch: true}
		_, err := NewRole(d, ks, cfg)
		for _, w := range tt.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %v, want one containing %q", tt.name, err, w)
			}
		}
		if len(d.images) != len(d.unloaded) {
			t.Errorf("%s: %d modules loaded, %d unloaded after the failure", tt.name, len(d.images), len(d.unloaded))
		}
	}
}
