// Package flash is the FlashAttention-2 plugin. Its reference
// implementation walks query tiles × key tiles with an online softmax
// (running max and sum per row, the accumulator rescaled as the max
// grows), never materialising a score row; it equals eager attention
// within fp32 rounding.
//
// On CUDA in bf16 it delivers the kernels of flash.cu: a tensor-core
// prefill kernel of that algorithm (wgmma on Hopper, mma.sync elsewhere)
// and split-KV (flash-decoding) decode kernels. Neither needs memory that grows with the score matrix.
package flash

import (
	"context"
	_ "embed"
	"fmt"

	"github.com/longctx/longctx/engine/attention"
	"github.com/longctx/longctx/plugins/attention/internal/tiled"
	"github.com/longctx/longctx/plugins/sdk"
)

// Version is the plugin's version.
const Version = "0.5.0"

//go:embed flash.cu
var cudaSource string

// maxGroup is the most query heads per KV head the decode kernel takes:
// rows of one tensor-core tile.
const maxGroup = 16

// prefillSharedMem is flash_prefill's dynamic shared memory: Q, K and V
// tiles of rows padded to d+8 bf16. This and the other launch figures
// below go to flash.cu as FLASH_EXPECT_*, which its static_asserts check
// against the kernels' own constants, so the two cannot drift apart.
func (g geometry) prefillSharedMem(d int) int { return (g.prefillRows + 2*g.prefillBN) * (d + 8) * 2 }

// decodeThreads is flash_decode's block; each warp takes 16 keys of a
// stage.
func (g geometry) decodeThreads() int { return 32 * g.decodeWarps }

// decodeSharedMem is flash_decode's: the K and V stage buffers (overlaid
// at the end by the warps' reduction tiles, 16 rows of d+2 floats each)
// and a 16-row Q tile; with bulk copies the stages hold row pairs 32 bytes
// apart (flash.cu's drow) and an mbarrier each.
func (g geometry) decodeSharedMem(d int) int {
	stage := 16 * g.decodeWarps
	matrix, barriers := stage*(d+8)*2, 0
	if g.decodeBulk {
		matrix, barriers = stage/2*(4*d+32), 8*g.decodeBuffers
	}
	buf := g.decodeBuffers * 2 * matrix
	red := g.decodeWarps * 16 * (d + 2) * 4
	return max(buf, red) + 16*(d+8)*2 + barriers
}

// combineThreads is flash_decode_combine's block: a warp per query head
// (score row), combineRows of them.
const (
	combineThreads = 32
	combineRows    = combineThreads / 32
)

// sm90DefaultBN is flash_prefill_sm90ws's key step: with 128 keys the
// scores, the output and P spill (bench/RESULTS.md).
const sm90DefaultBN = 64

// sm90WSSharedMem is flash_prefill_sm90ws's: Q and the stages of K and V.
func sm90WSSharedMem(d, bn, stages int) int { return 128*d*2 + stages*2*bn*d*2 + 1024 }

// sm90DefaultStages are flash_prefill_sm90ws's K/V stages where they fit
// sm90MaxSharedMem; fewer where not (128-key steps at d 128 fit 3).
const sm90DefaultStages = 4

// sm90MaxSharedMem is the dynamic shared memory a block may use on sm_90a
// (227 KiB) less flash_prefill_sm90ws's static shared memory (its key range
// and stage barriers, under 128 bytes).
const sm90MaxSharedMem = 227<<10 - 128

// sm90WSThreads is flash_prefill_sm90ws's block: a copying warpgroup and
// two computing ones.
const sm90WSThreads = 384

// The prefill kernels the option prefill_kernel chooses between.
const (
	// PrefillAuto picks wgmma where it runs (sm_90a, head dims 64 and
	// 128) and mma.sync elsewhere.
	PrefillAuto = "auto"
	// PrefillMMA is flash_prefill: mma.sync, any GPU from sm_80 on.
	PrefillMMA = "mma.sync"
	// PrefillWGMMA is flash_prefill_sm90ws: Hopper's warpgroup products,
	// warp-specialised.
	PrefillWGMMA = "wgmma"
)

// geometry is what may vary between builds of flash.cu; benchmarks try
// other values.
type geometry struct {
	// sm90BN > 0 selects flash_prefill_sm90ws with that many keys per
	// step (64 or 128) for the prefill role; prefillRows, prefillWarps and
	// prefillBN then describe the unused mma.sync kernel.
	sm90BN       int
	sm90Stages   int // flash_prefill_sm90ws's K/V stages; 0 means sm90DefaultStages
	prefillRows  int // query rows per prefill block, 16 or 32 per warp
	prefillWarps int // share a prefill block's query rows
	prefillBN    int // keys per step of a prefill block: 32 or 64
	decodeTile   int // fewest keys a flash_decode split gets, a multiple of its stage (16 keys a warp)
	decodeWarps  int // warps of a flash_decode block
	// decodeBuffers are flash_decode's shared-memory stages, and
	// decodeMinBlocks the blocks per SM its registers are budgeted for.
	decodeBuffers, decodeMinBlocks int
	// decodeBulk: K and V reach flash_decode's stages by bulk copies
	// (sm_90 and later), not cp.async.
	decodeBulk bool
	// Experiments: extra --define-macro options for flash.cu.
	defines []string
}

var defaultGeometry = geometry{prefillRows: 128, prefillWarps: 4, prefillBN: 64, decodeTile: 256, decodeWarps: 8, decodeBuffers: 2, decodeMinBlocks: 1}

// largeSharedMemory are the targets whose blocks may use more than 160 KiB
// of shared memory (A100, H100, B200): there flash_decode's 8 warps stage
// 2 × 128 keys (141 KiB at d 128). The others (sm_86, sm_89, sm_120: 99
// KiB a block) get smallSharedMemoryDecodeWarps, 2 × 64 keys (69 KiB).
var largeSharedMemory = map[string]bool{"sm_80": true, "sm_90": true, "sm_90a": true, "sm_100": true, "sm_100a": true}

const smallSharedMemoryDecodeWarps = 4

// hopperDecodeBuffers are flash_decode's stages with bulk copies on
// sm_90a (decodeBulk): 3 of 128 keys. Bulk copies alone streamed a decode
// step's cache 3 % faster through 3 stages than through 2 on an H100
// (tools/decodeprobe); in flash_decode 3 were as fast at batch 1 and 0.4
// % faster at batch 8 (bench/RESULTS.md).
const hopperDecodeBuffers = 3

// withHopperDecode is g with the decode Kernels gives sm_90a: bulk copies
// through hopperDecodeBuffers stages.
func (g geometry) withHopperDecode() geometry {
	g.decodeBulk, g.decodeBuffers = true, hopperDecodeBuffers
	return g
}

// Kernels returns the CUDA kernels for model shape m on dev: the
// attention.prefill role (flash_prefill_sm90ws or flash_prefill, as prefill
// chooses: PrefillAuto, PrefillMMA or PrefillWGMMA) and the
// attention.decode role (flash_decode, flash_decode_combine).
func Kernels(m sdk.ModelShape, dev sdk.Device, prefill string) ([]sdk.Kernel, error) {
	geo := defaultGeometry
	if !largeSharedMemory[dev.Arch] {
		geo.decodeWarps = smallSharedMemoryDecodeWarps
	}
	hopper := dev.Arch == "sm_90a"
	if hopper {
		geo = geo.withHopperDecode()
	}
	wgmmaShape := m.HeadDim == 64 || m.HeadDim == 128
	switch prefill {
	case PrefillAuto, "":
		if hopper && wgmmaShape {
			geo.sm90BN = sm90DefaultBN
		}
	case PrefillMMA:
	case PrefillWGMMA:
		if !hopper {
			return nil, fmt.Errorf("flash: prefill_kernel=%s needs an sm_90a GPU (Hopper), this one is %q", prefill, dev.Arch)
		}
		if !wgmmaShape {
			return nil, fmt.Errorf("flash: prefill_kernel=%s takes head dims 64 and 128, not %d", prefill, m.HeadDim)
		}
		geo.sm90BN = sm90DefaultBN
	default:
		return nil, fmt.Errorf("flash: prefill_kernel %q: want %s, %s or %s", prefill, PrefillAuto, PrefillMMA, PrefillWGMMA)
	}
	return kernels(m, dev.DType, geo)
}

func kernels(m sdk.ModelShape, dtype string, geo geometry) ([]sdk.Kernel, error) {
	if dtype != "bf16" {
		return nil, fmt.Errorf("flash: CUDA kernels are bf16, the engine runs %s", dtype)
	}
	d := m.HeadDim
	switch d {
	case 16, 32, 64, 128:
	default:
		return nil, fmt.Errorf("flash: CUDA kernels take head dim 16, 32, 64 or 128, not %d", d)
	}
	if m.NumKVHeads <= 0 || m.NumHeads%m.NumKVHeads != 0 {
		return nil, fmt.Errorf("flash: %d heads, %d KV heads", m.NumHeads, m.NumKVHeads)
	}
	group := m.NumHeads / m.NumKVHeads
	if group > maxGroup {
		return nil, fmt.Errorf("flash: CUDA decode kernels take up to %d query heads per KV head, not %d", maxGroup, group)
	}
	opts := []string{
		fmt.Sprintf("--define-macro=FLASH_HEAD_DIM=%d", d),
		fmt.Sprintf("--define-macro=FLASH_GROUP=%d", group),
		fmt.Sprintf("--define-macro=FLASH_EXPECT_PREFILL_SMEM=%d", geo.prefillSharedMem(d)),
		fmt.Sprintf("--define-macro=FLASH_EXPECT_DECODE_SMEM=%d", geo.decodeSharedMem(d)),
		fmt.Sprintf("--define-macro=FLASH_PREFILL_ROWS=%d", geo.prefillRows),
		fmt.Sprintf("--define-macro=FLASH_EXPECT_TILE_Q=%d", geo.prefillRows),
		fmt.Sprintf("--define-macro=FLASH_DECODE_TILE=%d", geo.decodeTile),
		fmt.Sprintf("--define-macro=FLASH_EXPECT_TILE_KV=%d", geo.decodeTile),
		fmt.Sprintf("--define-macro=FLASH_PREFILL_WARPS=%d", geo.prefillWarps),
		fmt.Sprintf("--define-macro=FLASH_PREFILL_BN=%d", geo.prefillBN),
		fmt.Sprintf("--define-macro=FLASH_EXPECT_THREADS=%d", 32*geo.prefillWarps),
		fmt.Sprintf("--define-macro=FLASH_EXPECT_DECODE_THREADS=%d", geo.decodeThreads()),
		fmt.Sprintf("--define-macro=FLASH_EXPECT_COMBINE_THREADS=%d", combineThreads),
		fmt.Sprintf("--define-macro=FLASH_DECODE_WARPS=%d", geo.decodeWarps),
		fmt.Sprintf("--define-macro=FLASH_DECODE_BUFFERS=%d", geo.decodeBuffers),
		fmt.Sprintf("--define-macro=FLASH_DECODE_MIN_BLOCKS=%d", geo.decodeMinBlocks),
	}
	if geo.decodeBulk {
		opts = append(opts, "--define-macro=FLASH_DECODE_BULK=1")
	}
	prefill := sdk.Launch{Grid: sdk.GridQTilesHeadsSeqs, BlockX: 32 * geo.prefillWarps, TileQ: geo.prefillRows, SharedMemBytes: geo.prefillSharedMem(d)}
	prefillEntry := "flash_prefill"
	if geo.sm90BN > 0 {
		prefillEntry = "flash_prefill_sm90ws"
		stages := geo.sm90Stages
		if stages == 0 {
			stages = sm90DefaultStages
			for stages > 2 && sm90WSSharedMem(d, geo.sm90BN, stages) > sm90MaxSharedMem {
				stages--
			}
		}
		if smem := sm90WSSharedMem(d, geo.sm90BN, stages); smem > sm90MaxSharedMem {
			return nil, fmt.Errorf("flash: wgmma prefill with %d-key steps and %d stages needs %d bytes of shared memory, more than sm_90a's %d", geo.sm90BN, stages, smem, sm90MaxSharedMem)
		}
		prefill = sdk.Launch{Grid: sdk.GridQTilesHeadsSeqs, BlockX: sm90WSThreads, TileQ: 128, SharedMemBytes: sm90WSSharedMem(d, geo.sm90BN, stages)}
		opts = append(opts, "--define-macro=FLASH_SM90=1",
			fmt.Sprintf("--define-macro=FLASH_SM90_BN=%d", geo.sm90BN),
			fmt.Sprintf("--define-macro=FLASH_SM90_STAGES=%d", stages),
			fmt.Sprintf("--define-macro=FLASH_EXPECT_SM90WS_SMEM=%d", prefill.SharedMemBytes))
	}
	for _, d := range geo.defines {
		opts = append(opts, "--define-macro="+d)
	}
	kernel := func(role, entry string, l sdk.Launch) sdk.Kernel {
		l.BlockY, l.BlockZ = 1, 1
		return sdk.Kernel{Role: role, ABIVersion: 4, CUDASource: cudaSource, Entry: entry, Launch: l, CompileOptions: opts}
	}
	// Decode splits each KV head into as many shares as fill the GPU once
	// (at least geo.decodeTile keys each); per score row and split the
	// workspace holds the partial output (d floats) and its softmax
	// statistics (2 floats). The splits are at most ceil(kv/tile) ≤
	// kv/tile + 1, which a per-score term rounded up and a per-row term
	// cover; a 256-byte header (the number of splits) and 16 bytes of
	// alignment between the regions are the fixed part.
	perSplit := int64(4*d + 8)
	ks := []sdk.Kernel{
		kernel(sdk.RoleAttentionPrefill, prefillEntry, prefill),
		kernel(sdk.RoleAttentionDecode, "flash_decode", sdk.Launch{Grid: sdk.GridKVSplitsKVHeadsSeqs, BlockX: geo.decodeThreads(), TileKV: geo.decodeTile, SharedMemBytes: geo.decodeSharedMem(d), OverlapPrevious: true}),
		kernel(sdk.RoleAttentionDecode, "flash_decode_combine", sdk.Launch{Grid: sdk.GridRows, BlockX: combineThreads, TileQ: combineRows, OverlapPrevious: true}),
	}
	for i := 1; i < len(ks); i++ {
		ks[i].WorkspaceBytes = 256 + 16
		ks[i].WorkspaceBytesPerRow = perSplit
		ks[i].WorkspaceBytesPerScore = (perSplit + int64(geo.decodeTile) - 1) / int64(geo.decodeTile)
	}
	return ks, nil
}

// Backend is the reference implementation.
type Backend struct {
	BlockQ, BlockKV, Workers int
}

var _ attention.Backend = Backend{}

// Name returns "flash".
func (Backend) Name() string { return "flash" }

// Attend computes p.Out with the tiled online softmax.
func (b Backend) Attend(ctx context.Context, p *attention.Problem) error {
	_, err := tiled.Attend(ctx, p, tiled.Config{BlockQ: b.BlockQ, BlockKV: b.BlockKV, Workers: b.Workers})
	return err
}

// Plugin returns the plugin's declaration for sdk.Serve.
func Plugin() *sdk.Attention {
	return &sdk.Attention{
		Info: sdk.Info{
			Name:    "flash",
			Version: Version,
			Summary: "tiled online-softmax attention (FlashAttention-2 algorithm)",
			Capabilities: sdk.Capabilities{
				DTypes: []string{"f32", "bf16"}, GQA: true, Causal: true, SlidingWindow: true,
				Devices: []string{"cpu", "cuda"},
			},
		},
		Options: []sdk.Option{
			{Name: "block_q", Type: sdk.Int, Default: "64", Min: sdk.Bound(1), Max: sdk.Bound(1024), Help: "query rows per tile of the CPU reference (the CUDA kernels have their own tiles)"},
			{Name: "block_kv", Type: sdk.Int, Default: "64", Min: sdk.Bound(1), Max: sdk.Bound(1024), Help: "keys per tile of the CPU reference"},
			{Name: "prefill_kernel", Type: sdk.Enum, Default: PrefillAuto, Choices: []string{PrefillAuto, PrefillMMA, PrefillWGMMA},
				Help: "CUDA prefill kernel: wgmma (Hopper warpgroup products, sm_90a, head dims 64 and 128), mma.sync (any GPU from sm_80), or auto (wgmma where it runs)"},
			{Name: "workers", Type: sdk.Int, Default: "0", Min: sdk.Bound(0), Help: "goroutines of the reference implementation; 0 means all CPUs"},
		},
		Prepare: func(_ context.Context, req *sdk.PrepareRequest) (*sdk.AttentionPlan, error) {
			o := req.Options
			plan := &sdk.AttentionPlan{Reference: Backend{BlockQ: o.Int("block_q"), BlockKV: o.Int("block_kv"), Workers: o.Int("workers")}}
			if req.Device.Kind == "cuda" {
				ks, err := Kernels(req.Model, req.Device, o.String("prefill_kernel"))
				if err != nil {
					return nil, err
				}
				plan.Kernels = ks
			}
			return plan, nil
		},
	}
}
