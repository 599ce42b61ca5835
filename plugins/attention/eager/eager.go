// Package eager is the eager attention plugin: it materialises each
// query's full score row, masks it and takes the softmax, like
// transformers' eager attention. Its reference implementation is the
// engine's own attention.Eager, so this plugin is also the baseline that
// the plugin path (process, gRPC, codec) is checked against.
//
// On CUDA in bf16 it delivers the kernels of eager.cu, which materialise
// the score matrix as transformers does (bf16 scores, fp32 and bf16
// probabilities: 8 bytes per score in the workspace), so it runs out of
// memory where transformers' eager attention does.
package eager

import (
	"context"
	_ "embed"
	"fmt"

	"github.com/longctx/longctx/engine/attention"
	"github.com/longctx/longctx/plugins/sdk"
)

// Version is the plugin's version.
const Version = "0.2.0"

//go:embed eager.cu
var cudaSource string

// Launch geometry of eager.cu. The kernels static_assert that these equal
// their own constants (EAGER_EXPECT_*), so the two cannot drift apart.
const (
	prefillTileQ   = 64  // query rows per eager_qk / eager_pv block, 16 per warp
	prefillThreads = 128 // 4 warps
	softmaxRows    = 8   // score rows per eager_softmax block, one warp each
	// Decode is bound by reading K and V once. eager_decode_qk and
	// eager_decode_pv blocks own 256 keys each and stream them through 3
	// shared-memory buffers of 64 keys (cp.async groups), so that loads
	// overlap the tensor-core work and 3 blocks fit an SM at head dim 128.
	decodeTileQK    = 256 // keys per eager_decode_qk block: the softmax statistics' tile
	decodeQKThreads = 128
	decodeTileKV    = 256 // keys per eager_decode_pv block: the partial sums' tile
	decodePVThreads = 256
	decodeStage     = 64  // keys per pipeline stage
	decodeBuffers   = 3   // stage buffers per block
	combineThreads  = 512 // one block per score row
)

// qkSharedMem is eager_qk's dynamic shared memory: Q and K tiles of
// 64 × (d+8) bf16, a 64 × 68 fp32 score tile and 2 × 64 positions.
func qkSharedMem(d int) int { return 2*prefillTileQ*(d+8)*2 + prefillTileQ*(64+4)*4 + 2*prefillTileQ*4 }

// pvSharedMem is eager_pv's: a 64 × 72 bf16 P tile and a 64 × (d+8) bf16 V
// tile, overlaid at the end by a 64 × (d+4) fp32 output tile, then 64
// query positions.
func pvSharedMem(d int) int {
	return max(prefillTileQ*(64+8)*2+64*(d+8)*2, prefillTileQ*(d+4)*4) + prefillTileQ*4
}

// decQKSharedMem is eager_decode_qk's dynamic shared memory: the stage
// buffers of 64 × (d+8) bf16 keys, a 16-row Q tile, a 16 × 68 fp32 score
// tile (one stage) and the stages' key positions.
func decQKSharedMem(d int) int {
	return decodeBuffers*decodeStage*(d+8)*2 + 16*(d+8)*2 + 16*(decodeStage+4)*4 + decodeBuffers*decodeStage*4
}

// decPVSharedMem is eager_decode_pv's: the stage buffers of 64 × (d+8)
// bf16 values, overlaid at the end by one 16 × (d+4) fp32 output tile per
// group of warps that splits the keys (8 warps over d/16 column tiles),
// then a 16 × 264 bf16 P tile and 16 rows' max and sum.
func decPVSharedMem(d int) int {
	splitK := 8 / min(8, d/16)
	return max(decodeBuffers*decodeStage*(d+8)*2, splitK*16*(d+4)*4) + 16*(decodeTileKV+8)*2 + 2*16*4
}

// Workspace per score (kernels/abi/launch.h): S in bf16, P32 in fp32 and P
// in bf16, as transformers holds them.
const bytesPerScore = 2 + 4 + 2

// Kernels returns the CUDA kernels for model shape m in dtype: the
// attention.prefill role (eager_qk, eager_softmax, eager_pv) and the
// attention.decode role (eager_decode_qk, eager_decode_pv,
// eager_decode_combine).
func Kernels(m sdk.ModelShape, dtype string) ([]sdk.Kernel, error) {
	if dtype != "bf16" {
		return nil, fmt.Errorf("eager: CUDA kernels are bf16, the engine runs %s", dtype)
	}
	d := m.HeadDim
	switch d {
	case 16, 32, 64, 128, 256:
	default:
		return nil, fmt.Errorf("eager: CUDA kernels take head dim 16, 32, 64, 128 or 256, not %d", d)
	}
	if m.NumKVHeads <= 0 || m.NumHeads%m.NumKVHeads != 0 {
		return nil, fmt.Errorf("eager: %d heads, %d KV heads", m.NumHeads, m.NumKVHeads)
	}
	opts := []string{
		fmt.Sprintf("--define-macro=EAGER_HEAD_DIM=%d", d),
		fmt.Sprintf("--define-macro=EAGER_GROUP=%d", m.NumHeads/m.NumKVHeads),
		fmt.Sprintf("--define-macro=EAGER_EXPECT_QK_SMEM=%d", qkSharedMem(d)),
		fmt.Sprintf("--define-macro=EAGER_EXPECT_PV_SMEM=%d", pvSharedMem(d)),
		fmt.Sprintf("--define-macro=EAGER_EXPECT_TILE_Q=%d", prefillTileQ),
		fmt.Sprintf("--define-macro=EAGER_EXPECT_SOFTMAX_ROWS=%d", softmaxRows),
		fmt.Sprintf("--define-macro=EAGER_EXPECT_DECODE_TILE=%d", decodeTileKV),
		fmt.Sprintf("--define-macro=EAGER_EXPECT_DECODE_TILE_QK=%d", decodeTileQK),
		fmt.Sprintf("--define-macro=EAGER_EXPECT_DEC_QK_SMEM=%d", decQKSharedMem(d)),
		fmt.Sprintf("--define-macro=EAGER_EXPECT_DEC_PV_SMEM=%d", decPVSharedMem(d)),
		fmt.Sprintf("--define-macro=EAGER_EXPECT_DEC_QK_THREADS=%d", decodeQKThreads),
		fmt.Sprintf("--define-macro=EAGER_EXPECT_DEC_PV_THREADS=%d", decodePVThreads),
		fmt.Sprintf("--define-macro=EAGER_EXPECT_DEC_COMBINE_THREADS=%d", combineThreads),
	}
	kernel := func(role, entry string, l sdk.Launch) sdk.Kernel {
		if l.BlockY == 0 {
			l.BlockY, l.BlockZ = 1, 1
		}
		return sdk.Kernel{
			Role: role, ABIVersion: 2, CUDASource: cudaSource, Entry: entry, Launch: l,
			WorkspaceBytesPerScore: bytesPerScore, CompileOptions: opts,
		}
	}
	prefill := []sdk.Kernel{
		kernel(sdk.RoleAttentionPrefill, "eager_qk", sdk.Launch{Grid: sdk.GridQTilesHeadsSeqs, BlockX: prefillThreads, TileQ: prefillTileQ, SharedMemBytes: qkSharedMem(d)}),
		kernel(sdk.RoleAttentionPrefill, "eager_softmax", sdk.Launch{Grid: sdk.GridRows, BlockX: 32 * softmaxRows, TileQ: softmaxRows}),
		kernel(sdk.RoleAttentionPrefill, "eager_pv", sdk.Launch{Grid: sdk.GridQTilesHeadsSeqs, BlockX: prefillThreads, TileQ: prefillTileQ, SharedMemBytes: pvSharedMem(d)}),
	}
	// Decode also keeps, per score row, each qk tile's softmax statistics
	// (2 floats) and each pv tile's share of P·V (d floats). ceil(kv/tile)
	// tiles are at most kv/tile + 1, so a per-score term (8 bytes per qk
	// tile, 4d per pv tile, rounded up) and a per-row term cover them, and
	// 64 bytes the alignment of the two regions.
	perTile := int64(8*(decodeTileKV/decodeTileQK) + 4*d)
	decode := []sdk.Kernel{
		kernel(sdk.RoleAttentionDecode, "eager_decode_qk", sdk.Launch{Grid: sdk.GridKVTilesKVHeadsSeqs, BlockX: decodeQKThreads, TileKV: decodeTileQK, SharedMemBytes: decQKSharedMem(d)}),
		kernel(sdk.RoleAttentionDecode, "eager_decode_pv", sdk.Launch{Grid: sdk.GridKVTilesKVHeadsSeqs, BlockX: decodePVThreads, TileKV: decodeTileKV, SharedMemBytes: decPVSharedMem(d)}),
		kernel(sdk.RoleAttentionDecode, "eager_decode_combine", sdk.Launch{Grid: sdk.GridRows, BlockX: combineThreads, TileQ: 1}),
	}
	for i := range decode {
		decode[i].WorkspaceBytes = 64
		decode[i].WorkspaceBytesPerRow = int64(8 + 4*d)
		decode[i].WorkspaceBytesPerScore = bytesPerScore + (perTile+decodeTileKV-1)/decodeTileKV
	}
	return append(prefill, decode...), nil
}

// Plugin returns the plugin's declaration for sdk.Serve.
func Plugin() *sdk.Attention {
	return &sdk.Attention{
		Info: sdk.Info{
			Name:    "eager",
			Version: Version,
			Summary: "materialises the full score matrix, like transformers' eager attention",
			Capabilities: sdk.Capabilities{
				DTypes: []string{"f32", "bf16"}, GQA: true, Causal: true, SlidingWindow: true,
				Devices: []string{"cpu", "cuda"},
			},
		},
		Options: []sdk.Option{
			{Name: "workers", Type: sdk.Int, Default: "0", Min: sdk.Bound(0), Help: "goroutines of the reference implementation; 0 means all CPUs"},
		},
		Prepare: func(_ context.Context, req *sdk.PrepareRequest) (*sdk.AttentionPlan, error) {
			plan := &sdk.AttentionPlan{Reference: attention.Eager{Workers: req.Options.Int("workers")}}
			if req.Device.Kind == "cuda" {
				ks, err := Kernels(req.Model, req.Device.DType)
				if err != nil {
					return nil, err
				}
				plan.Kernels = ks
			}
			return plan, nil
		},
	}
}
