// gemv: Y[m][n] = sum_k X[m][k] · W[n][k] (+ bias[n]) for a few rows m —
// the projections of a decode step, where cuBLASLt's kernels read the
// weights well below the device's bandwidth. bf16 in and out, fp32
// accumulation, the bias added in fp32 before the one rounding (as
// cuBLASLt's bias epilogue). The summation order differs from cuBLASLt's,
// so results may differ from it in the last bf16 bit.
//
// Each warp computes GEMV_ROWS outputs n for every m (or a slice of their
// columns): its lanes stream the weight rows in 16-byte loads, GEMV_UNROLL
// loads per row in flight, and read the X rows (small, L1/L2-resident)
// alongside. Requires K, ldx and
// ldw multiples of 8 and X and W 16-byte aligned (the launcher checks).
#include "common.cuh"

#define GEMV_THREADS 256
#define GEMV_WARPS (GEMV_THREADS / 32)
#define GEMV_ROWS 2
#define GEMV_UNROLL 8
#define GEMV_MAX_M 8

static __device__ __forceinline__ float dot8(uint4 a, uint4 b, float acc) {
    acc = fmaf(bf_lo(a.x), bf_lo(b.x), acc);
    acc = fmaf(bf_hi(a.x), bf_hi(b.x), acc);
    acc = fmaf(bf_lo(a.y), bf_lo(b.y), acc);
    acc = fmaf(bf_hi(a.y), bf_hi(b.y), acc);
    acc = fmaf(bf_lo(a.z), bf_lo(b.z), acc);
    acc = fmaf(bf_hi(a.z), bf_hi(b.z), acc);
    acc = fmaf(bf_lo(a.w), bf_lo(b.w), acc);
    acc = fmaf(bf_hi(a.w), bf_hi(b.w), acc);
    return acc;
}

// ksplit warps share each pair of rows, each taking every ksplit-th
// stretch of 256·GEMV_UNROLL columns, and add their sums in shared memory:
// for a short N (the attention projections, the down projection) that
// keeps enough loads in flight on every SM. ksplit divides GEMV_WARPS.
extern "C" __global__ void __launch_bounds__(GEMV_THREADS)
core_gemv(const bf16 *X, long long ldx, const bf16 *W, long long ldw, const bf16 *bias,
          bf16 *Y, long long ldy, int M, int N, int K, int ksplit) {
    __shared__ float part[GEMV_WARPS][GEMV_ROWS][GEMV_MAX_M];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int pairs = GEMV_WARPS / ksplit;        // row pairs per block
    const int pair = warp / ksplit, slice = warp % ksplit;
    const int n0 = (blockIdx.x * pairs + pair) * GEMV_ROWS;
    float acc[GEMV_ROWS][GEMV_MAX_M];
#pragma unroll
    for (int r = 0; r < GEMV_ROWS; r++) {
#pragma unroll
        for (int m = 0; m < GEMV_MAX_M; m++) acc[r][m] = 0.f;
    }
    if (n0 < N) {
        const uint4 *wrow[GEMV_ROWS];
#pragma unroll
        for (int r = 0; r < GEMV_ROWS; r++) {
            // A missing last row re-reads row n0 and is never written.
            const int n = n0 + r < N ? n0 + r : n0;
            wrow[r] = reinterpret_cast<const uint4 *>(W + (idx64)n * ldw);
        }
        const int chunks = K / 8;
        const int stride = 32 * GEMV_UNROLL * ksplit;
        for (int c0 = slice * 32 * GEMV_UNROLL + lane; c0 < chunks; c0 += stride) {
            uint4 w[GEMV_ROWS][GEMV_UNROLL];
#pragma unroll
            for (int u = 0; u < GEMV_UNROLL; u++) {
                const int c = c0 + u * 32;
#pragma unroll
                for (int r = 0; r < GEMV_ROWS; r++) w[r][u] = c < chunks ? __ldg(wrow[r] + c) : make_uint4(0, 0, 0, 0);
            }
#pragma unroll
            for (int u = 0; u < GEMV_UNROLL; u++) {
                const int c = c0 + u * 32;
                if (c >= chunks) break;
#pragma unroll
                for (int m = 0; m < GEMV_MAX_M; m++) {
                    if (m >= M) break;
                    const uint4 x = __ldg(reinterpret_cast<const uint4 *>(X + (idx64)m * ldx) + c);
#pragma unroll
                    for (int r = 0; r < GEMV_ROWS; r++) acc[r][m] = dot8(w[r][u], x, acc[r][m]);
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < GEMV_ROWS; r++) {
#pragma unroll
        for (int m = 0; m < GEMV_MAX_M; m++) {
            if (m >= M) break;
            const float s = warp_sum(acc[r][m]);
            if (lane == 0) part[warp][r][m] = s;
        }
    }
    __syncthreads();
    // The first warp of each pair adds the slices in a fixed order.
    if (slice != 0 || n0 >= N) return;
    for (int i = lane; i < GEMV_ROWS * M; i += 32) {
        const int r = i / M, m = i % M, n = n0 + r;
        if (n >= N) continue;
        float s = 0.f;
        for (int k = 0; k < ksplit; k++) s += part[warp + k][r][m];
        const float b = bias ? ld_bf(bias + n) : 0.f;
        Y[(idx64)m * ldy + n] = rn_bf(s + b);
    }
}
