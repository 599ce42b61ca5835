// Package kernelrun compiles, loads and launches the kernels a plugin
// delivers for one role (attention.prefill, attention.decode, kv.score)
// against the ABI of kernels/abi: the Go mirrors of its parameter structs,
// the workspace size and grid of launch.h, and a launch of every kernel of
// the role in order. Launch only enqueues work, so it can be captured in a
// CUDA graph.
package kernelrun

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"strconv"
	"strings"
	"unsafe"

	"github.com/longctx/longctx/engine/cuda"
	"github.com/longctx/longctx/kernels/abi"
	"github.com/longctx/longctx/plugins/sdk"
	"github.com/longctx/longctx/plugins/sdk/pluginpb"
)

// Driver is the part of *cuda.Driver a Role uses; tests substitute a fake.
type Driver interface {
	ModuleLoadData(image []byte) (cuda.Module, error)
	ModuleUnload(m cuda.Module) error
	ModuleFunction(m cuda.Module, name string) (cuda.Function, error)
	FuncSetAttribute(f cuda.Function, attr, value int) error
	OccupancyMaxActiveBlocksPerMultiprocessor(f cuda.Function, blockSize, dynamicSharedMem int) (int, error)
	Launch(f cuda.Function, grid, block cuda.Dim3, sharedMem uint32, s cuda.Stream, args ...unsafe.Pointer) error
	LaunchEx(f cuda.Function, grid, block cuda.Dim3, sharedMem uint32, s cuda.Stream, programmatic bool, args ...unsafe.Pointer) error
}

var _ Driver = (*cuda.Driver)(nil)

// CompileFunc compiles CUDA source into a loadable image (cubin or
// NUL-terminated PTX). name is the program's name in diagnostics; the error
// of a failed compilation carries NVRTC's log.
type CompileFunc func(src, name string, opts cuda.CompileOptions) ([]byte, error)

// NVRTC compiles through n with the on-disk cache c (nil: no cache).
func NVRTC(n *cuda.NVRTC, c *cuda.Cache) CompileFunc {
	return func(src, name string, opts cuda.CompileOptions) ([]byte, error) {
		if c == nil {
			img, _, err := n.Compile(src, name, opts)
			return img, err
		}
		img, _, err := cuda.CompileCached(n, c, src, name, opts)
		return img, err
	}
}

// Config says how a role's CUDA source is compiled.
type Config struct {
	// Plugin names the plugin in errors and program names.
	Plugin string
	// Arch is the NVRTC target, e.g. "sm_90a" (cuda.DeviceInfo.Arch).
	Arch string
	// DType is the engine's Q/K/V element type, "bf16" etc.; kernels are
	// compiled with LONGCTX_DTYPE defined to its longctx_dtype value.
	DType string
	// Compile compiles CUDA source; required when a kernel has any.
	Compile CompileFunc
	// Multiprocessors is the device's SM count
	// (cuda.DeviceInfo.Multiprocessors); required when a kernel uses grid
	// rule sdk.GridKVSplitsKVHeadsSeqs or sdk.GridKVStream, whose grids
	// follow from how many blocks the device holds at once.
	Multiprocessors int
	// OverlapLaunch says the device and driver run programmatic dependent
	// launches (cuda.Driver.CanOverlapLaunch): kernels with
	// Launch.OverlapPrevious then start while the kernel before them
	// finishes. Without it they launch as any other kernel.
	OverlapLaunch bool
}

// maxStaticSharedMem is what a kernel may use without raising
// CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES.
const maxStaticSharedMem = 48 << 10

// Role is one role's kernels, loaded and ready to launch in order.
type Role struct {
	name    string
	plugin  string
	d       Driver
	sms     int
	kernels []sdk.Kernel
	funcs   []cuda.Function
	// resident is each kernel's blocks the device holds at once, for grid
	// rules sdk.GridKVSplitsKVHeadsSeqs and sdk.GridKVStream; 0 for the
	// other rules.
	resident []int
	// overlap is, per kernel, whether it is launched to overlap the one
	// before it (Launch.OverlapPrevious where Config.OverlapLaunch).
	overlap       []bool
	overlapLaunch bool
	modules       []cuda.Module
}

// abiHeaders maps "longctx/abi/<name>.h", the names kernels include, to
// each header's text. The headers include each other by bare name
// ("common.h"), so each is also there under that name: NVRTC may resolve
// such an include next to the including header or among the bare names.
func abiHeaders() (map[string]string, error) {
	out := map[string]string{}
	err := fs.WalkDir(abi.Headers, ".", func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := abi.Headers.ReadFile(path)
		if err != nil {
			return err
		}
		out["longctx/abi/"+path] = string(b)
		out[path] = string(b)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the ABI headers: %w", err)
	}
	return out, nil
}

// NewRoleOf is NewRole for the kernels of role among all of a plugin's
// kernels (in their order); it fails when there are none.
func NewRoleOf(d Driver, all []sdk.Kernel, role string, cfg Config) (*Role, error) {
	var ks []sdk.Kernel
	for _, k := range all {
		if k.Role == role {
			ks = append(ks, k)
		}
	}
	if len(ks) == 0 {
		return nil, fmt.Errorf("the plugin delivered no %s kernel for the GPU", role)
	}
	return NewRole(d, ks, cfg)
}

// NewRole compiles (CUDA source) or takes (PTX, cubin) the kernels of one
// role, loads them and raises the dynamic shared memory limit of those
// that need more than 48 KiB. For a kernel with grid rule
// sdk.GridKVSplitsKVHeadsSeqs or sdk.GridKVStream it then asks the driver
// how many of its blocks fit on an SM, which times cfg.Multiprocessors is
// the kernel's resident block count (Resident). Whether a kernel overlaps
// the one before it is decided here too (Overlap). kernels are in launch
// order and all of one role.
func NewRole(d Driver, kernels []sdk.Kernel, cfg Config) (_ *Role, err error) {
	if len(kernels) == 0 {
		return nil, fmt.Errorf("plugin %s: no kernels for the role", cfg.Plugin)
	}
	r := &Role{name: kernels[0].Role, plugin: cfg.Plugin, d: d, sms: cfg.Multiprocessors, overlapLaunch: cfg.OverlapLaunch}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	dtype, err := DType(cfg.DType)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %s: %w", cfg.Plugin, r.name, err)
	}
	var headers map[string]string
	// Kernels sharing a source and options come from one module.
	loaded := map[string]cuda.Module{}
	for _, k := range kernels {
		where := fmt.Sprintf("plugin %s: %s kernel %s", cfg.Plugin, k.Role, k.Entry)
		if k.Role != r.name {
			return nil, fmt.Errorf("%s: one role's kernels expected, got %s and %s", where, r.name, k.Role)
		}
		if k.ABIVersion < 1 || k.ABIVersion > abi.Version {
			return nil, fmt.Errorf("%s: ABI version %d (this engine runs 1 to %d)", where, k.ABIVersion, abi.Version)
		}
		if err := k.Validate(kindOf(k.Role)); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if needsResident(k.Launch.Grid) && cfg.Multiprocessors <= 0 {
			return nil, fmt.Errorf("%s: grid rule %s needs the device's multiprocessor count, the engine gave %d", where, ruleName(k.Launch.Grid), cfg.Multiprocessors)
		}
		var image []byte
		var key string
		switch {
		case k.CUDASource != "":
			if cfg.Compile == nil {
				return nil, fmt.Errorf("%s: CUDA source but no compiler", where)
			}
			if cfg.Arch == "" {
				return nil, fmt.Errorf("%s: no target architecture", where)
			}
			if headers == nil {
				if headers, err = abiHeaders(); err != nil {
					return nil, err
				}
			}
			opts := cuda.CompileOptions{
				Arch:    cfg.Arch,
				Defines: map[string]string{"LONGCTX_DTYPE": strconv.Itoa(int(dtype))},
				Extra:   append([]string(nil), k.CompileOptions...),
				Headers: headers,
			}
			key = k.CUDASource + "\x00" + strings.Join(k.CompileOptions, "\x00")
			if m, ok := loaded[key]; ok {
				if err := r.addFunc(k, m, where); err != nil {
					return nil, err
				}
				continue
			}
			// One name per plugin, so that roles compiled from the same
			// source and options share a cache entry.
			name := cfg.Plugin + ".cu"
			if image, err = cfg.Compile(k.CUDASource, name, opts); err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
		case len(k.PTX) > 0:
			image = k.PTX
			if image[len(image)-1] != 0 { // cuModuleLoadData reads PTX up to a NUL
				image = append(append([]byte(nil), image...), 0)
			}
		default:
			image = k.Cubin
		}
		m, err := d.ModuleLoadData(image)
		if err != nil {
			return nil, fmt.Errorf("%s: loading the module: %w", where, err)
		}
		r.modules = append(r.modules, m)
		if key != "" {
			loaded[key] = m
		}
		if err := r.addFunc(k, m, where); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// residentRule checks what the rules that fill the device need: a key tile
// and the resident block count.
func residentRule(l sdk.Launch, resident int) error {
	if l.TileKV <= 0 {
		return fmt.Errorf("grid rule %d: tile_kv %d", l.Grid, l.TileKV)
	}
	if resident <= 0 {
		return fmt.Errorf("grid rule %d: %d resident blocks", l.Grid, resident)
	}
	return nil
}

// needsResident reports whether a grid rule follows from how many blocks
// of the kernel the device holds at once.
func needsResident(g sdk.GridRule) bool {
	return g == sdk.GridKVSplitsKVHeadsSeqs || g == sdk.GridKVStream
}

// ruleName is a grid rule as launch.h names it, for errors.
func ruleName(g sdk.GridRule) string {
	return strings.TrimPrefix(pluginpb.GridRule(g).String(), "GRID_RULE_")
}

func kindOf(role string) sdk.Kind {
	if role == sdk.RoleKVScore {
		return sdk.KindKVCache
	}
	return sdk.KindAttention
}

func (r *Role) addFunc(k sdk.Kernel, m cuda.Module, where string) error {
	f, err := r.d.ModuleFunction(m, k.Entry)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	if k.Launch.SharedMemBytes > maxStaticSharedMem {
		if err := r.d.FuncSetAttribute(f, cuda.FuncAttrMaxDynamicSharedSizeBytes, k.Launch.SharedMemBytes); err != nil {
			return fmt.Errorf("%s: %d bytes of shared memory: %w", where, k.Launch.SharedMemBytes, err)
		}
	}
	resident := 0
	if needsResident(k.Launch.Grid) {
		// After the shared memory limit is raised: the occupancy
		// calculation refuses more dynamic shared memory than the limit.
		threads := k.Launch.BlockX * k.Launch.BlockY * k.Launch.BlockZ
		perSM, err := r.d.OccupancyMaxActiveBlocksPerMultiprocessor(f, threads, k.Launch.SharedMemBytes)
		if err != nil {
			return fmt.Errorf("%s: occupancy of %d threads with %d bytes of shared memory: %w", where, threads, k.Launch.SharedMemBytes, err)
		}
		if perSM <= 0 {
			return fmt.Errorf("%s: no block fits on an SM (%d threads, %d bytes of shared memory)", where, threads, k.Launch.SharedMemBytes)
		}
		resident = perSM * r.sms
	}
	r.kernels = append(r.kernels, k)
	r.funcs = append(r.funcs, f)
	r.resident = append(r.resident, resident)
	r.overlap = append(r.overlap, k.Launch.OverlapPrevious && r.overlapLaunch)
	return nil
}

// Name is the role, e.g. "attention.prefill".
func (r *Role) Name() string { return r.name }

// Kernels are the role's kernel descriptions in launch order.
func (r *Role) Kernels() []sdk.Kernel { return append([]sdk.Kernel(nil), r.kernels...) }

// Resident is, per kernel in launch order, how many of its blocks the
// device holds at once (multiprocessors × blocks per SM), the argument
// Grid takes: set for kernels with grid rule sdk.GridKVSplitsKVHeadsSeqs
// or sdk.GridKVStream, 0 for the others.
func (r *Role) Resident() []int { return append([]int(nil), r.resident...) }

// Overlap is, per kernel in launch order, whether Launch starts it while
// the kernel before it on the stream finishes (programmatic dependent
// launch): the kernel asked for it (Launch.OverlapPrevious) and the
// device can (Config.OverlapLaunch).
func (r *Role) Overlap() []bool { return append([]bool(nil), r.overlap...) }

// Workspace is the bytes of workspace a launch of the role needs: the
// largest of its kernels' WorkspaceBytes + WorkspaceBytesPerRow × rows +
// WorkspaceBytesPerScore × rows × maxKV, rows = numSeqs × numHeads × numQ
// (for kv.score, numHeads is the KV heads and numQ 1).
func (r *Role) Workspace(numSeqs, numHeads, numQ, maxKV int) int64 {
	rows := int64(numSeqs) * int64(numHeads) * int64(numQ)
	var need int64
	for i := range r.kernels {
		need = max(need, r.kernels[i].Workspace(rows, int64(maxKV)))
	}
	return need
}

// Grid is the grid of a kernel with launch geometry l for problem p
// (kernels/abi/launch.h). A zero dimension means the kernel is not
// launched. resident is how many blocks of the kernel the device holds at
// once (Role.Resident); only grid rules sdk.GridKVSplitsKVHeadsSeqs and
// sdk.GridKVStream use it, and need it positive.
func Grid(l sdk.Launch, p Problem, resident int) (cuda.Dim3, error) {
	ceil := func(n, d int) int64 { return (int64(n) + int64(d) - 1) / int64(d) }
	var x, y, z int64
	switch l.Grid {
	case sdk.GridQTilesHeadsSeqs:
		if l.TileQ <= 0 {
			return cuda.Dim3{}, fmt.Errorf("grid rule %d: tile_q %d", l.Grid, l.TileQ)
		}
		x, y, z = ceil(p.NumQ, l.TileQ), int64(p.NumHeads), int64(p.NumSeqs)
	case sdk.GridHeadsSeqs:
		x, y, z = int64(p.NumHeads), int64(p.NumSeqs), 1
	case sdk.GridKVTilesKVHeadsSeqs:
		if l.TileKV <= 0 {
			return cuda.Dim3{}, fmt.Errorf("grid rule %d: tile_kv %d", l.Grid, l.TileKV)
		}
		x, y, z = ceil(p.MaxKVLen, l.TileKV), int64(p.NumKVHeads), int64(p.NumSeqs)
	case sdk.GridKVSplitsKVHeadsSeqs:
		if err := residentRule(l, resident); err != nil {
			return cuda.Dim3{}, err
		}
		y, z = int64(p.NumKVHeads), int64(p.NumSeqs)
		// As many splits as fill the device once, no more than there are
		// tiles, at least one; none without keys.
		x = ceil(p.MaxKVLen, l.TileKV)
		if y*z > 0 {
			x = min(x, int64(resident)/(y*z))
		}
		if p.MaxKVLen > 0 {
			x = max(x, 1)
		}
	case sdk.GridKVStream:
		if err := residentRule(l, resident); err != nil {
			return cuda.Dim3{}, err
		}
		if p.MaxKVLen < 0 || p.NumKVHeads < 0 || p.NumSeqs < 0 {
			return cuda.Dim3{}, fmt.Errorf("grid rule %d: negative size in %+v", l.Grid, p)
		}
		// One row of as many blocks as the device holds at once, fewer
		// only when all (sequence, KV head) pairs have fewer tiles.
		x, y, z = streamBlocks(p, l.TileKV, resident), 1, 1
	case sdk.GridRows:
		if l.TileQ <= 0 {
			return cuda.Dim3{}, fmt.Errorf("grid rule %d: tile_q %d", l.Grid, l.TileQ)
		}
		rows := p.Rows()
		x, y, z = (rows+int64(l.TileQ)-1)/int64(l.TileQ), 1, 1
	default:
		return cuda.Dim3{}, fmt.Errorf("unknown grid rule %d", l.Grid)
	}
	// CUDA's limits: 2^31-1 blocks in x, 65535 in y and z.
	if x < 0 || y < 0 || z < 0 || x > math.MaxInt32 || y > 65535 || z > 65535 {
		return cuda.Dim3{}, fmt.Errorf("grid rule %d: grid %dx%dx%d out of range for %+v", l.Grid, x, y, z, p)
	}
	return cuda.Dim3{X: uint32(x), Y: uint32(y), Z: uint32(z)}, nil
}

// streamBlocks is grid rule sdk.GridKVStream's block count: min(resident,
// ceil(max_kv_len / tile) × num_kv_heads × num_seqs), with non-negative
// sizes and positive tile and resident. Each factor is applied to a count
// already capped at resident, so no product overflows.
func streamBlocks(p Problem, tile, resident int) int64 {
	if p.MaxKVLen == 0 {
		return 0
	}
	r := int64(resident)
	n := min(r, int64(p.MaxKVLen-1)/int64(tile)+1)
	for _, f := range []int64{int64(p.NumKVHeads), int64(p.NumSeqs)} {
		if f != 0 && n > r/f {
			n = r
		} else {
			n = min(r, n*f)
		}
	}
	return n
}

// Launch enqueues every kernel of the role on s, in order, with params p.
// It checks that p's workspace is as large as Workspace says, and neither
// allocates device memory nor synchronises, so a capture of s records it.
func (r *Role) Launch(s cuda.Stream, p Params) error {
	prob := p.Problem()
	ws, wsBytes := p.workspace()
	need := r.Workspace(prob.NumSeqs, prob.NumHeads, prob.NumQ, prob.MaxKVLen)
	if need > 0 && (ws == 0 || wsBytes < uint64(need)) {
		return fmt.Errorf("plugin %s: %s for %+v: workspace of %d bytes at %#x, need %d", r.plugin, r.name, prob, wsBytes, uint64(ws), need)
	}
	// Every grid first, so that a bad one enqueues nothing.
	// (Roles have a few kernels: the array keeps the launch path free of
	// allocations.)
	var gridBuf [4]cuda.Dim3
	grids := gridBuf[:0]
	for i, k := range r.kernels {
		grid, err := Grid(k.Launch, prob, r.resident[i])
		if err != nil {
			return fmt.Errorf("plugin %s: %s kernel %s: %w", r.plugin, r.name, k.Entry, err)
		}
		grids = append(grids, grid)
	}
	for i, k := range r.kernels {
		grid := grids[i]
		if grid.X == 0 || grid.Y == 0 || grid.Z == 0 {
			continue
		}
		block := cuda.Dim3{X: uint32(k.Launch.BlockX), Y: uint32(k.Launch.BlockY), Z: uint32(k.Launch.BlockZ)}
		var err error
		if r.overlap[i] {
			err = r.d.LaunchEx(r.funcs[i], grid, block, uint32(k.Launch.SharedMemBytes), s, true, p.pointer())
		} else {
			// Every other kernel keeps cuLaunchKernel, which every
			// driver has.
			err = r.d.Launch(r.funcs[i], grid, block, uint32(k.Launch.SharedMemBytes), s, p.pointer())
		}
		if err != nil {
			return fmt.Errorf("plugin %s: %s kernel %s grid %v block %v: %w", r.plugin, r.name, k.Entry, grid, block, err)
		}
	}
	return nil
}

// Close unloads the role's modules.
func (r *Role) Close() error {
	var errs []error
	for _, m := range r.modules {
		if err := r.d.ModuleUnload(m); err != nil {
			errs = append(errs, err)
		}
	}
	r.modules, r.funcs, r.kernels, r.resident, r.overlap = nil, nil, nil, nil, nil
	if len(errs) > 0 {
		return fmt.Errorf("plugin %s: %s: unloading: %w", r.plugin, r.name, errors.Join(errs...))
	}
	return nil
}
