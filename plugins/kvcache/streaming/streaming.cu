// kv.score for StreamingLLM: a cached row's score is its position, so the
// engine's top-k keeps the newest rows (the policy protects the sinks).
// Equal to the Go reference (Score): float(position), rounded to nearest.
//
// grid (ceil(max_kv_len / STREAMING_TILE), num_kv_heads, num_seqs), block
// STREAMING_TILE: one thread per cached row. Keys are not read, so any
// LONGCTX_DTYPE will do.
#include "longctx/abi/kv_score.h"

#define STREAMING_TILE 256
#ifdef STREAMING_EXPECT_TILE
static_assert(STREAMING_EXPECT_TILE == STREAMING_TILE, "Go's tile_kv differs from the kernel's");
#endif

extern "C" __global__ void __launch_bounds__(STREAMING_TILE) streaming_score(longctx_kv_score_params p) {
    const int g = blockIdx.z * p.num_kv_heads + blockIdx.y;
    const longctx_kv_head kd = p.k[g];
    const int j = blockIdx.x * STREAMING_TILE + threadIdx.x;
    if (j < kd.len) p.scores[g][j] = (float)kd.pos[j];
}
