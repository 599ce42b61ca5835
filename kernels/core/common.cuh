// Helpers shared by the engine's own kernels. The rounding rules follow
// transformers in bf16: every tensor op computes in fp32 and rounds its
// result to bf16 once, so a kernel that fuses several ops rounds between
// them exactly where the separate torch ops would. Products and sums that
// the Go reference replays are written with __fmul_rn/__fadd_rn, which
// the compiler never contracts into an FMA.
#ifndef LONGCTX_CORE_COMMON_CUH
#define LONGCTX_CORE_COMMON_CUH

#include <cuda_bf16.h>
#include "longctx/abi/common.h"

typedef __nv_bfloat16 bf16;

// 64-bit element offsets, without relying on size_t being declared under
// NVRTC.
typedef unsigned long long idx64;

#define CORE_FULL_MASK 0xffffffffu

static __device__ __forceinline__ float ld_bf(const bf16 *p) { return __bfloat162float(*p); }

static __device__ __forceinline__ bf16 rn_bf(float x) { return __float2bfloat16_rn(x); }

// round_bf is the value a bf16 tensor would hold for x.
static __device__ __forceinline__ float round_bf(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }

// A 32-bit word holds two bf16 values, element 2k in the low half
// (little-endian), so widening is a shift.
static __device__ __forceinline__ float bf_lo(unsigned w) { return __uint_as_float(w << 16); }
static __device__ __forceinline__ float bf_hi(unsigned w) { return __uint_as_float(w & 0xffff0000u); }

static __device__ __forceinline__ unsigned pack_bf2(float lo, float hi) {
    return (unsigned)__bfloat16_as_ushort(__float2bfloat16_rn(lo)) |
           ((unsigned)__bfloat16_as_ushort(__float2bfloat16_rn(hi)) << 16);
}

static __device__ __forceinline__ float neg_inf() { return __uint_as_float(0xff800000u); }

static __device__ __forceinline__ bool aligned16(const void *p) {
    return ((unsigned long long)p & 15ull) == 0;
}

// warp_sum adds v over the warp by a butterfly; every lane ends with the
// same bits (fp32 addition is commutative), in the order the Go reference
// replays: at each step lane i adds lane i^off, off = 16, 8, 4, 2, 1.
static __device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1)
        v = __fadd_rn(v, __shfl_xor_sync(CORE_FULL_MASK, v, off));
    return v;
}

// block_sum adds v over the block (blockDim.x a multiple of 32): a
// butterfly within each warp, then a butterfly over the warp totals padded
// with zeros to 32 lanes. Every thread gets the sum. scratch is 32 floats
// of shared memory, free again when the call returns.
static __device__ float block_sum(float v, float *scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float t = lane < nw ? scratch[lane] : 0.0f;
    t = warp_sum(t);
    __syncthreads();
    return t;
}

// block_excl_scan returns the sum of v over the threads before this one
// and stores the block's total in *total (every thread). Unsigned integer
// sums, so the order does not matter. scratch is 32 words of shared
// memory, free again when the call returns.
static __device__ unsigned block_excl_scan(unsigned v, unsigned *total, unsigned *scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    unsigned x = v;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        unsigned y = __shfl_up_sync(CORE_FULL_MASK, x, o);
        if (lane >= o) x += y;
    }
    if (lane == 31) scratch[warp] = x;
    __syncthreads();
    if (warp == 0) {
        unsigned w = lane < nw ? scratch[lane] : 0u;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            unsigned y = __shfl_up_sync(CORE_FULL_MASK, w, o);
            if (lane >= o) w += y;
        }
        scratch[lane] = w;
    }
    __syncthreads();
    const unsigned before = warp ? scratch[warp - 1] : 0u;
    *total = scratch[nw - 1];
    __syncthreads();
    return before + x - v;
}

#endif
