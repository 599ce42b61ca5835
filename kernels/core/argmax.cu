// argmax: the greedy token of each logits row, as torch.argmax: the
// largest value, the lowest index among equal ones (-0 equals +0). NaN is
// never chosen; a row with nothing but NaN gives 0, a valid token id, so
// that a captured decode loop cannot index out of bounds.
#include "common.cuh"

#define ARGMAX_THREADS 1024
#define ARGMAX_NONE 0x7fffffff

static __device__ __forceinline__ void better(float &bv, int &bi, float v, int i) {
    if (v > bv || (v == bv && i < bi)) {
        bv = v;
        bi = i;
    }
}

// One block per row; (value, index) pairs form a total order, so the
// reduction order does not change the result.
extern "C" __global__ void __launch_bounds__(ARGMAX_THREADS)
core_argmax(const bf16 *logits, int ld, int V, int *out, int rows) {
    __shared__ float sv[32];
    __shared__ int si[32];
    const int row = blockIdx.x;
    if (row >= rows) return;
    const bf16 *p = logits + (idx64)row * ld;
    float bv = neg_inf();
    int bi = ARGMAX_NONE;
    int done = 0;
    if (aligned16(p)) {
        const uint4 *q = reinterpret_cast<const uint4 *>(p);
        const int nch = V >> 3;
        for (int c = threadIdx.x; c < nch; c += blockDim.x) {
            const uint4 u = q[c];
            const int i = 8 * c;
            better(bv, bi, bf_lo(u.x), i + 0); better(bv, bi, bf_hi(u.x), i + 1);
            better(bv, bi, bf_lo(u.y), i + 2); better(bv, bi, bf_hi(u.y), i + 3);
            better(bv, bi, bf_lo(u.z), i + 4); better(bv, bi, bf_hi(u.z), i + 5);
            better(bv, bi, bf_lo(u.w), i + 6); better(bv, bi, bf_hi(u.w), i + 7);
        }
        done = nch << 3;
    }
    for (int i = done + threadIdx.x; i < V; i += blockDim.x) better(bv, bi, ld_bf(p + i), i);

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(CORE_FULL_MASK, bv, o);
        const int oi = __shfl_xor_sync(CORE_FULL_MASK, bi, o);
        better(bv, bi, ov, oi);
    }
    if (lane == 0) {
        sv[warp] = bv;
        si[warp] = bi;
    }
    __syncthreads();
    if (warp == 0) {
        bv = lane < nw ? sv[lane] : neg_inf();
        bi = lane < nw ? si[lane] : ARGMAX_NONE;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float ov = __shfl_xor_sync(CORE_FULL_MASK, bv, o);
            const int oi = __shfl_xor_sync(CORE_FULL_MASK, bi, o);
            better(bv, bi, ov, oi);
        }
        if (lane == 0) out[row] = bi == ARGMAX_NONE ? 0 : bi;
    }
}
