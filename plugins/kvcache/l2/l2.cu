// kv.score for L2 compression: score = -||k||_2 of each cached key, summed
// in fp32 in dimension order with unfused multiply and add, so that it
// equals the Go reference (Score) bit for bit.
//
// grid (ceil(max_kv_len / L2_TILE), num_kv_heads, num_seqs), block L2_TILE:
// one thread per cached row.
#include "longctx/abi/kv_score.h"

#if !defined(LONGCTX_DTYPE) || (LONGCTX_DTYPE != 1 && LONGCTX_DTYPE != 2)
#error "l2_score reads f32 (LONGCTX_DTYPE=1) or bf16 (LONGCTX_DTYPE=2) keys"
#endif

#define L2_TILE 128
#ifdef L2_EXPECT_TILE
static_assert(L2_EXPECT_TILE == L2_TILE, "Go's tile_kv differs from the kernel's");
#endif

#if LONGCTX_DTYPE == 2
typedef unsigned short l2_elem; // raw bf16
__device__ __forceinline__ float l2_float(l2_elem x) { return __uint_as_float(((unsigned)x) << 16); }
// The elements of one 32-bit word, in memory order.
constexpr int L2_PER_WORD = 2;
__device__ __forceinline__ float l2_word(unsigned w, int k) { return __uint_as_float(k == 0 ? w << 16 : w & 0xffff0000u); }
#else
typedef float l2_elem;
__device__ __forceinline__ float l2_float(l2_elem x) { return x; }
constexpr int L2_PER_WORD = 1;
__device__ __forceinline__ float l2_word(unsigned w, int) { return __uint_as_float(w); }
#endif

extern "C" __global__ void __launch_bounds__(L2_TILE) l2_score(longctx_kv_score_params p) {
    const int g = blockIdx.z * p.num_kv_heads + blockIdx.y;
    const longctx_kv_head kd = p.k[g];
    const int j = blockIdx.x * L2_TILE + threadIdx.x;
    if (j >= kd.len) return;
    const l2_elem *row = static_cast<const l2_elem *>(kd.data) + (long long)j * kd.row_stride;
    const int d = p.head_dim;
    float sum = 0.f;
    // 16-byte loads where the rows allow them; the order of the sum is the
    // same either way.
    constexpr int V = 16 / sizeof(l2_elem);
    const bool vec = (reinterpret_cast<unsigned long long>(kd.data) & 15) == 0 && kd.row_stride % V == 0 && d % V == 0;
    if (vec) {
        for (int c = 0; c < d; c += V) {
            const uint4 u = *reinterpret_cast<const uint4 *>(row + c);
            const unsigned w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
            for (int k = 0; k < V; k++) {
                const float x = l2_word(w[k / L2_PER_WORD], k % L2_PER_WORD);
                sum = __fadd_rn(sum, __fmul_rn(x, x));
            }
        }
    } else {
        for (int c = 0; c < d; c++) {
            const float x = l2_float(row[c]);
            sum = __fadd_rn(sum, __fmul_rn(x, x));
        }
    }
    p.scores[g][j] = -sqrtf(sum);
}
