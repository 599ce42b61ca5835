// Eager attention in bf16, as Hugging Face transformers' eager attention
// computes it: the score matrix is materialised in the workspace.
//
//   S   = bf16(bf16(Q K^T) * scale)      tensor cores, fp32 accumulate
//   S   = -inf where the mask hides a key
//   P32 = softmax(S) in fp32             (softmax(dtype=float32))
//   P   = bf16(P32)                      (.to(query.dtype))
//   O   = bf16(P V)                      tensor cores, fp32 accumulate
//
// Workspace, rows = num_seqs * num_heads * num_q score rows of max_kv_len
// columns, row r = (seq * num_heads + head) * num_q + query:
//
//   [0, 4 R L)        P32, fp32
//   [4 R L, 6 R L)    S, bf16
//   [6 R L, 8 R L)    P, bf16
//   decode only, after align16(8 R L):
//     stats   [R][ceil(L / DEC_TILE_QK)] float2 (max, sum of exp(s - max))
//             per eager_decode_qk tile
//     partial [R][ceil(L / DEC_TILE)][D] fp32, P V over one eager_decode_pv
//             tile (after align16 of the stats' end)
//
// Only columns below a KV head's len are written or read, so a decode
// graph captured for the cache capacity touches what the cache holds.
//
// Prefill (role attention.prefill): eager_qk, eager_softmax, eager_pv.
// Decode (role attention.decode): eager_decode_qk, eager_decode_pv,
// eager_decode_combine. Decode reads each KV head's keys and values once
// for all the query rows that share it (its query heads, times num_q),
// which sit as up to 16 rows of one tensor-core tile. Decode is bound by
// the memory bandwidth of the K and V reads, so a block streams its K or
// V tile through a ring of shared-memory stage buffers with asynchronous
// 16-byte copies (tens of KiB in flight per block while it computes), and
// P V is split over KV tiles whose partial sums eager_decode_combine adds
// up.
//
// Compile-time constants (NVRTC --define-macro): EAGER_HEAD_DIM, the head
// dimension; EAGER_GROUP, query heads per KV head (decode kernels only);
// EAGER_EXPECT_* are the launch geometry the Go side declared, checked
// against the constants here.
#include "longctx/abi/attention.h"
#include <cuda_bf16.h>
#include <mma.h>

#if !defined(LONGCTX_DTYPE) || LONGCTX_DTYPE != 2
#error "eager kernels are bf16 only: compile with LONGCTX_DTYPE=2"
#endif
#ifndef EAGER_HEAD_DIM
#error "define EAGER_HEAD_DIM"
#endif
#ifndef EAGER_GROUP
#define EAGER_GROUP 1
#endif

namespace eager {

typedef unsigned short bits16; // raw bf16

constexpr int D = EAGER_HEAD_DIM;
static_assert(D == 16 || D == 32 || D == 64 || D == 128 || D == 256, "head dim must be 16, 32, 64, 128 or 256");
constexpr int G = EAGER_GROUP;
static_assert(G >= 1, "EAGER_GROUP");

// Prefill: blocks of 4 warps own 64 query rows, 16 per warp, and walk the
// keys 64 at a time.
constexpr int BQ = 64, BK = 64, PREFILL_THREADS = 128;
constexpr int LDS = D + 8;  // bf16 pitch of Q, K, V tiles (16-byte rows, staggered banks)
constexpr int LDP = BK + 8; // bf16 pitch of a P tile
constexpr int LDC = BK + 4; // fp32 pitch of the score staging tile
constexpr int LDO = D + 4;  // fp32 pitch of the output staging tile
constexpr int QK_SMEM = 2 * BQ * LDS * 2 + BQ * LDC * 4 + 2 * BQ * 4;
constexpr int PV_STAGE = (BQ * LDP * 2 + BK * LDS * 2) > (BQ * LDO * 4) ? (BQ * LDP * 2 + BK * LDS * 2) : (BQ * LDO * 4);
constexpr int PV_SMEM = PV_STAGE + BQ * 4;
constexpr int SOFTMAX_ROWS = 8, SOFTMAX_THREADS = 32 * SOFTMAX_ROWS;

// Decode. Each eager_decode_qk block (4 warps) and eager_decode_pv block
// (8 warps) owns a tile of DEC_TILE_QK or DEC_TILE keys of one KV head and
// streams it through DEC_NBUF shared-memory buffers of DEC_STAGE keys:
// while one stage is multiplied the next DEC_NBUF - 1 are in flight, and
// the buffers are small enough for 3 blocks per SM at head dim 128, so an
// SM keeps loading while one of its blocks starts, reduces or stores.
// eager_decode_combine: a block per score row.
constexpr int DEC_TILE_QK = 256, DEC_QK_THREADS = 128, DEC_QK_WARPS = DEC_QK_THREADS / 32;
constexpr int DEC_TILE = 256, DEC_PV_THREADS = 256, DEC_PV_WARPS = DEC_PV_THREADS / 32;
constexpr int DEC_STAGE = 64, DEC_NBUF = 3;
constexpr int DEC_COMBINE_THREADS = 512;
constexpr int MR = 16;                  // query rows per tensor-core tile
constexpr int LDCQ = DEC_STAGE + 4;     // fp32 pitch of eager_decode_qk's score tile (one stage)
constexpr int LDPD = DEC_TILE + 8;      // bf16 pitch of eager_decode_pv's P tile
constexpr int QK_CH = DEC_STAGE / 8;    // 8-key chunks of a stage's score row, one lane each
constexpr int PV_NT = D / 16;           // 16-column tiles of the output
constexpr int PV_WN = PV_NT < DEC_PV_WARPS ? PV_NT : DEC_PV_WARPS; // warps across the columns
constexpr int PV_WK = DEC_PV_WARPS / PV_WN;                        // ... and across the keys
constexpr int PV_NACC = PV_NT / PV_WN;                             // column tiles per warp
constexpr int DEC_STAGE_ELEMS = DEC_STAGE * LDS;                   // bf16 of one stage buffer
constexpr int DEC_QK_SMEM = DEC_NBUF * DEC_STAGE_ELEMS * 2 + MR * LDS * 2 + MR * LDCQ * 4 + DEC_NBUF * DEC_STAGE * 4;
// eager_decode_pv's split-K reduction tile overlays its stage buffers.
constexpr int PV_RED_BYTES = PV_WK * MR * LDO * 4;
constexpr int PV_BUF_BYTES = DEC_NBUF * DEC_STAGE_ELEMS * 2 > PV_RED_BYTES ? DEC_NBUF * DEC_STAGE_ELEMS * 2 : PV_RED_BYTES;
constexpr int DEC_PV_SMEM = PV_BUF_BYTES + MR * LDPD * 2 + 2 * MR * 4;
constexpr int PV_PIT = MR * (DEC_TILE / 8) / DEC_PV_THREADS;      // 8-key P chunks per thread
// 3 eager_decode_pv blocks of 256 threads per SM leave 85 registers a
// thread; the bound keeps the compiler within them where the shared
// memory allows 3 blocks (head dim up to 128). A macro, as the attribute
// takes the two numbers as separate arguments.
constexpr int DEC_PV_MIN_BLOCKS = D <= 128 ? 3 : 1;
#define EAGER_DEC_PV_BOUNDS DEC_PV_THREADS, DEC_PV_MIN_BLOCKS
static_assert(DEC_QK_THREADS / QK_CH == MR && 32 % QK_CH == 0, "eager_decode_qk: a lane group per score row, within a warp");
static_assert(DEC_STAGE / 16 == DEC_QK_WARPS, "eager_decode_qk: one 16-key tile per warp and stage");
static_assert(DEC_TILE_QK % DEC_STAGE == 0 && DEC_TILE % DEC_STAGE == 0 && DEC_NBUF >= 2, "decode stages");
static_assert(DEC_TILE % DEC_TILE_QK == 0, "decode tiles");
static_assert(PV_WN * PV_WK == DEC_PV_WARPS && PV_NACC * PV_WN == PV_NT, "eager_decode_pv warp split");
static_assert(PV_PIT * DEC_PV_THREADS == MR * (DEC_TILE / 8), "eager_decode_pv P split");
static_assert(DEC_COMBINE_THREADS % (D / 4) == 0, "eager_decode_combine lane split");

#ifdef EAGER_EXPECT_QK_SMEM
static_assert(EAGER_EXPECT_QK_SMEM == QK_SMEM, "Go's eager_qk shared memory differs from the kernel's");
#endif
#ifdef EAGER_EXPECT_PV_SMEM
static_assert(EAGER_EXPECT_PV_SMEM == PV_SMEM, "Go's eager_pv shared memory differs from the kernel's");
#endif
#ifdef EAGER_EXPECT_TILE_Q
static_assert(EAGER_EXPECT_TILE_Q == BQ, "Go's prefill tile_q differs from the kernel's");
#endif
#ifdef EAGER_EXPECT_SOFTMAX_ROWS
static_assert(EAGER_EXPECT_SOFTMAX_ROWS == SOFTMAX_ROWS, "Go's softmax rows per block differ from the kernel's");
#endif
#ifdef EAGER_EXPECT_DECODE_TILE
static_assert(EAGER_EXPECT_DECODE_TILE == DEC_TILE, "Go's eager_decode_pv tile_kv differs from the kernel's");
#endif
#ifdef EAGER_EXPECT_DECODE_TILE_QK
static_assert(EAGER_EXPECT_DECODE_TILE_QK == DEC_TILE_QK, "Go's eager_decode_qk tile_kv differs from the kernel's");
#endif
#ifdef EAGER_EXPECT_DEC_QK_SMEM
static_assert(EAGER_EXPECT_DEC_QK_SMEM == DEC_QK_SMEM, "Go's eager_decode_qk shared memory differs from the kernel's");
#endif
#ifdef EAGER_EXPECT_DEC_PV_SMEM
static_assert(EAGER_EXPECT_DEC_PV_SMEM == DEC_PV_SMEM, "Go's eager_decode_pv shared memory differs from the kernel's");
#endif
#ifdef EAGER_EXPECT_DEC_QK_THREADS
static_assert(EAGER_EXPECT_DEC_QK_THREADS == DEC_QK_THREADS && EAGER_EXPECT_DEC_PV_THREADS == DEC_PV_THREADS &&
                  EAGER_EXPECT_DEC_COMBINE_THREADS == DEC_COMBINE_THREADS,
              "Go's decode block sizes differ from the kernel's");
#endif

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }
__device__ __forceinline__ float bits_to_f(bits16 b) { return __uint_as_float(((unsigned)b) << 16); }
__device__ __forceinline__ bits16 f_to_bits(float x) { return __bfloat16_as_ushort(__float2bfloat16_rn(x)); }
// bf16 rounding of an fp32 value, kept in fp32.
__device__ __forceinline__ float round_bf16(float x) { return bits_to_f(f_to_bits(x)); }
__device__ __forceinline__ bool aligned16(const void *p) { return (reinterpret_cast<unsigned long long>(p) & 15) == 0; }
__device__ __forceinline__ long long align16(long long x) { return (x + 15) & ~15LL; }

// The mask of attention.h.
__device__ __forceinline__ bool visible(int qpos, int kpos, int window) {
    return kpos <= qpos && (window <= 0 || (long long)qpos - kpos < window);
}

// True when no key of positions [kmin, kmax] is visible to any query of
// positions [qmin, qmax].
__device__ __forceinline__ bool all_hidden(int qmin, int qmax, int kmin, int kmax, int window) {
    return kmin > qmax || (window > 0 && (long long)qmin - kmax >= window);
}

__device__ __forceinline__ int warp_min(int v) {
    for (int o = 16; o > 0; o >>= 1) v = min(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ int warp_max(int v) {
    for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float warp_maxf(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Online softmax statistics: (m, l) with l = sum of exp(x - m).
__device__ __forceinline__ void stats_add(float &m, float &l, float x) {
    if (x > m) {
        l = l * expf(m - x) + 1.f; // m = -inf: l is 0 and expf(-inf) is 0
        m = x;
    } else if (x > neg_inf()) {
        l += expf(x - m);
    }
}
__device__ __forceinline__ void stats_merge(float &m, float &l, float m2, float l2) {
    const float M = fmaxf(m, m2);
    if (M == neg_inf()) {
        l = 0.f;
    } else {
        l = (m == neg_inf() ? 0.f : l * expf(m - M)) + (m2 == neg_inf() ? 0.f : l2 * expf(m2 - M));
    }
    m = M;
}
__device__ __forceinline__ void warp_stats(float &m, float &l) {
    for (int o = 16; o > 0; o >>= 1) {
        const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
        const float l2 = __shfl_xor_sync(0xffffffffu, l, o);
        stats_merge(m, l, m2, l2);
    }
}

// Minimum and maximum of v[0, n), n >= 1, computed by every warp alike.
__device__ __forceinline__ void warp_range(const int *v, int n, int &lo, int &hi) {
    const int lane = threadIdx.x & 31;
    lo = 0x7fffffff;
    hi = -0x7fffffff - 1;
    for (int i = lane; i < n; i += 32) {
        lo = min(lo, v[i]);
        hi = max(hi, v[i]);
    }
    lo = warp_min(lo);
    hi = warp_max(hi);
}

// Copies rows [0, 64) of a D-wide bf16 matrix whose rows lie stride
// elements apart into shared memory of pitch LDS; rows at or past valid are
// zero, so the tensor-core product over them is zero (never NaN).
__device__ __forceinline__ void load_tile(bits16 *dst, const bits16 *src, long long stride, int valid, bool vec) {
    if (vec) {
        constexpr int CH = D / 8;
        for (int idx = threadIdx.x; idx < 64 * CH; idx += blockDim.x) {
            const int r = idx / CH, c = idx % CH;
            uint4 v = make_uint4(0u, 0u, 0u, 0u);
            if (r < valid) v = *reinterpret_cast<const uint4 *>(src + r * stride + c * 8);
            *reinterpret_cast<uint4 *>(dst + r * LDS + c * 8) = v;
        }
    } else {
        for (int idx = threadIdx.x; idx < 64 * D; idx += blockDim.x) {
            const int r = idx / D, c = idx % D;
            dst[r * LDS + c] = r < valid ? src[r * stride + c] : (bits16)0;
        }
    }
}

// Loads 8 consecutive bf16 values as fp32.
__device__ __forceinline__ void load8(float out[8], const bits16 *src, bool vec) {
    if (vec) {
        const uint4 u = *reinterpret_cast<const uint4 *>(src);
        const unsigned w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int e = 0; e < 4; e++) {
            out[2 * e] = __uint_as_float(w[e] << 16);
            out[2 * e + 1] = __uint_as_float(w[e] & 0xffff0000u);
        }
    } else {
#pragma unroll
        for (int e = 0; e < 8; e++) out[e] = bits_to_f(src[e]);
    }
}

// Loads 4 consecutive bf16 values as fp32.
__device__ __forceinline__ void load4(float out[4], const bits16 *src, bool vec) {
    if (vec) {
        const uint2 u = *reinterpret_cast<const uint2 *>(src);
        out[0] = __uint_as_float(u.x << 16);
        out[1] = __uint_as_float(u.x & 0xffff0000u);
        out[2] = __uint_as_float(u.y << 16);
        out[3] = __uint_as_float(u.y & 0xffff0000u);
    } else {
#pragma unroll
        for (int e = 0; e < 4; e++) out[e] = bits_to_f(src[e]);
    }
}

// Asynchronous copies from global to shared memory (cp.async), which do
// not hold the data in registers. A thread's copies since its last
// copy_commit form a group; copy_wait_group<N> waits until at most its N
// most recent groups are pending, and a barrier then shows the copies to
// the block. Empty groups are complete at once, so a loop may commit one
// every pass and wait for a constant N. (The host emulation, which has no
// __CUDA_ARCH__, copies at issue or at the wait: emu_cuda.h.)
__device__ __forceinline__ unsigned smem_addr(const void *p) {
#ifdef __CUDA_ARCH__
    unsigned s;
    asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(s) : "l"(p));
    return s;
#else
    return 0;
#endif
}
// 16 bytes; both addresses 16-byte aligned. .cg: through L2 only, the
// data is read once.
__device__ __forceinline__ void copy16_async(void *dst, const void *src) {
#ifdef __CUDA_ARCH__
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_addr(dst)), "l"(src) : "memory");
#else
    emu_copy_async(dst, src, 16);
#endif
}
// 4 bytes; both addresses 4-byte aligned.
__device__ __forceinline__ void copy4_async(void *dst, const void *src) {
#ifdef __CUDA_ARCH__
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(smem_addr(dst)), "l"(src) : "memory");
#else
    emu_copy_async(dst, src, 4);
#endif
}
__device__ __forceinline__ void copy_commit() {
#ifdef __CUDA_ARCH__
    asm volatile("cp.async.commit_group;" ::: "memory");
#else
    emu_copy_commit();
#endif
}
template <int N> __device__ __forceinline__ void copy_wait_group() {
#ifdef __CUDA_ARCH__
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
#else
    emu_copy_wait(N);
#endif
}

// Starts copying rows [0, n) of a D-wide bf16 matrix whose rows lie stride
// elements apart into ROWS rows of shared memory of pitch LDS, and zeroes
// rows [n, ROWS): a tensor-core product over them is then zero, not NaN.
// All of a thread's copies are issued before any completes. Complete with
// copy_commit, copy_wait_group and a barrier.
template <int ROWS, int THREADS>
__device__ __forceinline__ void stage_rows(bits16 *dst, const bits16 *src, long long stride, int n, bool vec) {
    if (vec) {
        constexpr int CH = D / 8, N = ROWS * CH;
#pragma unroll
        for (int k = 0; k < (N + THREADS - 1) / THREADS; k++) {
            const int idx = threadIdx.x + k * THREADS;
            const int r = idx / CH, c = idx % CH * 8;
            if (N % THREADS != 0 && idx >= N) {
                // past the tile: this thread has fewer chunks
            } else if (r < n) {
                copy16_async(dst + r * LDS + c, src + r * stride + c);
            } else {
                *reinterpret_cast<uint4 *>(dst + r * LDS + c) = make_uint4(0u, 0u, 0u, 0u);
            }
        }
    } else {
        for (int idx = threadIdx.x; idx < ROWS * D; idx += THREADS) {
            const int r = idx / D, c = idx % D;
            dst[r * LDS + c] = r < n ? src[r * stride + c] : (bits16)0;
        }
    }
}

// Packs 8 bf16 values into 16 bytes.
__device__ __forceinline__ uint4 pack8(const unsigned b[8]) {
    return make_uint4(b[0] | b[1] << 16, b[2] | b[3] << 16, b[4] | b[5] << 16, b[6] | b[7] << 16);
}

// Workspace regions (see the top of the file).
struct Workspace {
    float *p32;
    bits16 *s, *p;
    float2 *stats;
    float *partial;
    long long rows, cols;
    int ntq, ntiles; // eager_decode_qk's and eager_decode_pv's tiles per row

    __device__ explicit Workspace(const longctx_attention_params &prm) {
        rows = (long long)prm.num_seqs * prm.num_heads * prm.num_q;
        cols = prm.max_kv_len;
        unsigned char *w = static_cast<unsigned char *>(prm.workspace);
        const long long n = rows * cols;
        p32 = reinterpret_cast<float *>(w);
        s = reinterpret_cast<bits16 *>(w + 4 * n);
        p = reinterpret_cast<bits16 *>(w + 6 * n);
        ntq = (int)((cols + DEC_TILE_QK - 1) / DEC_TILE_QK);
        ntiles = (int)((cols + DEC_TILE - 1) / DEC_TILE);
        const long long st = align16(8 * n);
        stats = reinterpret_cast<float2 *>(w + st);
        partial = reinterpret_cast<float *>(w + align16(st + 8 * rows * ntq));
    }
};

// Row of a decode score matrix: the rr-th (query, head) row of KV head kvh
// of sequence seq, rr = query * G + head within the group; qi is the query.
__device__ __forceinline__ long long decode_row(const longctx_attention_params &p, int seq, int kvh, int rr, int &qi) {
    qi = rr / G;
    return ((long long)seq * p.num_heads + kvh * G + rr % G) * p.num_q + qi;
}

} // namespace eager

using namespace eager;
using namespace nvcuda;

// S for a tile of 64 query rows of one head against all of its keys.
// grid (ceil(num_q / 64), num_heads, num_seqs), block 128, QK_SMEM bytes.
extern "C" __global__ void __launch_bounds__(PREFILL_THREADS) eager_qk(longctx_attention_params p) {
    extern __shared__ __align__(128) unsigned char eager_smem[];
    bits16 *Qs = reinterpret_cast<bits16 *>(eager_smem);
    bits16 *Ks = Qs + BQ * LDS;
    float *Cs = reinterpret_cast<float *>(Ks + BK * LDS);
    int *qpos = reinterpret_cast<int *>(Cs + BQ * LDC);
    int *kpos = qpos + BQ;

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int i0 = blockIdx.x * BQ, h = blockIdx.y, seq = blockIdx.z;
    const int H = p.num_heads, Q = p.num_q, window = p.sliding_window;
    const longctx_kv_head kd = p.k[seq * p.num_kv_heads + h / (H / p.num_kv_heads)];
    const int qn = min(BQ, Q - i0);
    const Workspace ws(p);
    const long long row0 = ((long long)seq * H + h) * Q + i0;

    const bits16 *qsrc = static_cast<const bits16 *>(p.q) + ((long long)seq * Q + i0) * p.q_row_stride + (long long)h * D;
    load_tile(Qs, qsrc, p.q_row_stride, qn, aligned16(p.q) && p.q_row_stride % 8 == 0);
    for (int r = threadIdx.x; r < BQ; r += blockDim.x) qpos[r] = r < qn ? p.q_pos[seq * Q + i0 + r] : 0;
    __syncthreads();
    int qmin, qmax;
    warp_range(qpos, qn, qmin, qmax);

    const bits16 *kdata = static_cast<const bits16 *>(kd.data);
    const bool kvec = aligned16(kd.data) && kd.row_stride % 8 == 0;
    const bits16 hidden = f_to_bits(neg_inf());
    for (int j0 = 0; j0 < kd.len; j0 += BK) {
        const int jn = min(BK, kd.len - j0);
        __syncthreads(); // the last tile's readers of Ks and kpos are done
        for (int c = threadIdx.x; c < BK; c += blockDim.x) kpos[c] = c < jn ? kd.pos[j0 + c] : 0;
        __syncthreads();
        int kmin, kmax;
        warp_range(kpos, jn, kmin, kmax);
        if (all_hidden(qmin, qmax, kmin, kmax, window)) {
            // Above the causal diagonal or behind the window: no product,
            // but the softmax reads the row, so it gets -inf.
            for (int idx = threadIdx.x; idx < qn * jn; idx += blockDim.x) {
                const int r = idx / jn, c = idx % jn;
                ws.s[(row0 + r) * ws.cols + j0 + c] = hidden;
            }
            continue;
        }
        load_tile(Ks, kdata + (long long)j0 * kd.row_stride, kd.row_stride, jn, kvec);
        __syncthreads();

        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> b;
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[BK / 16];
#pragma unroll
        for (int n = 0; n < BK / 16; n++) wmma::fill_fragment(acc[n], 0.f);
#pragma unroll
        for (int k0 = 0; k0 < D; k0 += 16) {
            wmma::load_matrix_sync(a, reinterpret_cast<const __nv_bfloat16 *>(Qs + warp * 16 * LDS + k0), LDS);
#pragma unroll
            for (int n = 0; n < BK / 16; n++) {
                // K row-major [key][dim] is K^T column-major.
                wmma::load_matrix_sync(b, reinterpret_cast<const __nv_bfloat16 *>(Ks + n * 16 * LDS + k0), LDS);
                wmma::mma_sync(acc[n], a, b, acc[n]);
            }
        }
#pragma unroll
        for (int n = 0; n < BK / 16; n++) wmma::store_matrix_sync(Cs + warp * 16 * LDC + n * 16, acc[n], LDC, wmma::mem_row_major);
        __syncwarp();

        for (int idx = lane; idx < 16 * BK; idx += 32) {
            const int r = warp * 16 + idx / BK, c = idx % BK;
            if (r >= qn || c >= jn) continue;
            // matmul rounds to bf16; "* scaling" rounds again.
            bits16 s = f_to_bits(__fmul_rn(round_bf16(Cs[r * LDC + c]), p.scale));
            if (!visible(qpos[r], kpos[c], window)) s = hidden;
            ws.s[(row0 + r) * ws.cols + j0 + c] = s;
        }
    }
}

// P32 and P for 8 score rows, one warp each, over the row's len columns.
// grid (ceil(rows / 8)), block 256.
extern "C" __global__ void __launch_bounds__(SOFTMAX_THREADS) eager_softmax(longctx_attention_params p) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const Workspace ws(p);
    const long long r = (long long)blockIdx.x * SOFTMAX_ROWS + warp;
    if (r >= ws.rows) return;
    const int Q = p.num_q, H = p.num_heads;
    const long long sh = r / Q;
    const int h = (int)(sh % H), seq = (int)(sh / H);
    const int len = p.k[seq * p.num_kv_heads + h / (H / p.num_kv_heads)].len;
    const bits16 *S = ws.s + r * ws.cols;
    float *P32 = ws.p32 + r * ws.cols;
    bits16 *P = ws.p + r * ws.cols;
    // Rows start 16-byte aligned when the row length is a multiple of 8.
    const bool vec = ws.cols % 8 == 0;
    const int n8 = vec ? len / 8 : 0;

    float m = neg_inf(), l = 0.f;
    for (int c = lane; c < n8; c += 32) {
        float x[8];
        load8(x, S + 8 * c, true);
#pragma unroll
        for (int e = 0; e < 8; e++) stats_add(m, l, x[e]);
    }
    for (int j = 8 * n8 + lane; j < len; j += 32) stats_add(m, l, bits_to_f(S[j]));
    warp_stats(m, l);

    // A row that sees no key gets zeros (attention.h).
    const bool none = m == neg_inf();
    for (int c = lane; c < n8; c += 32) {
        float x[8];
        load8(x, S + 8 * c, true);
        float y[8];
        bits16 b[8];
#pragma unroll
        for (int e = 0; e < 8; e++) {
            y[e] = (none || x[e] == neg_inf()) ? 0.f : expf(x[e] - m) / l;
            b[e] = f_to_bits(y[e]);
        }
        float4 *dst = reinterpret_cast<float4 *>(P32 + 8 * c);
        dst[0] = make_float4(y[0], y[1], y[2], y[3]);
        dst[1] = make_float4(y[4], y[5], y[6], y[7]);
        *reinterpret_cast<uint4 *>(P + 8 * c) =
            make_uint4(b[0] | (unsigned)b[1] << 16, b[2] | (unsigned)b[3] << 16, b[4] | (unsigned)b[5] << 16, b[6] | (unsigned)b[7] << 16);
    }
    for (int j = 8 * n8 + lane; j < len; j += 32) {
        const float x = bits_to_f(S[j]);
        const float y = (none || x == neg_inf()) ? 0.f : expf(x - m) / l;
        P32[j] = y;
        P[j] = f_to_bits(y);
    }
}

// O = bf16(P V) for a tile of 64 query rows of one head.
// grid (ceil(num_q / 64), num_heads, num_seqs), block 128, PV_SMEM bytes.
extern "C" __global__ void __launch_bounds__(PREFILL_THREADS) eager_pv(longctx_attention_params p) {
    extern __shared__ __align__(128) unsigned char eager_smem[];
    bits16 *Ps = reinterpret_cast<bits16 *>(eager_smem);
    bits16 *Vs = Ps + BQ * LDP;
    float *Os = reinterpret_cast<float *>(eager_smem); // after the last tile
    int *qpos = reinterpret_cast<int *>(eager_smem + PV_STAGE);

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int i0 = blockIdx.x * BQ, h = blockIdx.y, seq = blockIdx.z;
    const int H = p.num_heads, Q = p.num_q, window = p.sliding_window;
    const int kvi = seq * p.num_kv_heads + h / (H / p.num_kv_heads);
    const longctx_kv_head kd = p.k[kvi], vd = p.v[kvi];
    const int qn = min(BQ, Q - i0);
    const Workspace ws(p);
    const long long row0 = ((long long)seq * H + h) * Q + i0;

    for (int r = threadIdx.x; r < BQ; r += blockDim.x) qpos[r] = r < qn ? p.q_pos[seq * Q + i0 + r] : 0;
    __syncthreads();
    int qmin, qmax;
    warp_range(qpos, qn, qmin, qmax);

    wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> b;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[D / 16];
#pragma unroll
    for (int n = 0; n < D / 16; n++) wmma::fill_fragment(acc[n], 0.f);

    const bits16 *vdata = static_cast<const bits16 *>(vd.data);
    const bool vvec = aligned16(vd.data) && vd.row_stride % 8 == 0;
    const bool pvec = ws.cols % 8 == 0;
    for (int j0 = 0; j0 < kd.len; j0 += BK) {
        const int jn = min(BK, kd.len - j0);
        int kmin, kmax;
        warp_range(kd.pos + j0, jn, kmin, kmax);
        if (all_hidden(qmin, qmax, kmin, kmax, window)) continue; // P is 0 there
        __syncthreads();                                          // the last tile's products are done
        if (pvec) {
            for (int idx = threadIdx.x; idx < BQ * (BK / 8); idx += blockDim.x) {
                const int r = idx / (BK / 8), c = idx % (BK / 8) * 8;
                uint4 v = make_uint4(0u, 0u, 0u, 0u);
                if (r < qn && c < jn) {
                    const bits16 *src = ws.p + (row0 + r) * ws.cols + j0 + c;
                    if (c + 8 <= jn) {
                        v = *reinterpret_cast<const uint4 *>(src);
                    } else {
                        unsigned e[8];
                        for (int k = 0; k < 8; k++) e[k] = c + k < jn ? src[k] : 0u;
                        v = make_uint4(e[0] | e[1] << 16, e[2] | e[3] << 16, e[4] | e[5] << 16, e[6] | e[7] << 16);
                    }
                }
                *reinterpret_cast<uint4 *>(Ps + r * LDP + c) = v;
            }
        } else {
            for (int idx = threadIdx.x; idx < BQ * BK; idx += blockDim.x) {
                const int r = idx / BK, c = idx % BK;
                Ps[r * LDP + c] = (r < qn && c < jn) ? ws.p[(row0 + r) * ws.cols + j0 + c] : (bits16)0;
            }
        }
        load_tile(Vs, vdata + (long long)j0 * vd.row_stride, vd.row_stride, jn, vvec);
        __syncthreads();
#pragma unroll
        for (int k0 = 0; k0 < BK; k0 += 16) {
            wmma::load_matrix_sync(a, reinterpret_cast<const __nv_bfloat16 *>(Ps + warp * 16 * LDP + k0), LDP);
#pragma unroll
            for (int n = 0; n < D / 16; n++) {
                wmma::load_matrix_sync(b, reinterpret_cast<const __nv_bfloat16 *>(Vs + k0 * LDS + n * 16), LDS);
                wmma::mma_sync(acc[n], a, b, acc[n]);
            }
        }
    }
    __syncthreads(); // Os overlays Ps and Vs
#pragma unroll
    for (int n = 0; n < D / 16; n++) wmma::store_matrix_sync(Os + warp * 16 * LDO + n * 16, acc[n], LDO, wmma::mem_row_major);
    __syncwarp();
    bits16 *out = static_cast<bits16 *>(p.out);
    for (int idx = lane; idx < 16 * D; idx += 32) {
        const int r = warp * 16 + idx / D, c = idx % D;
        if (r < qn) out[((long long)seq * Q + i0 + r) * p.out_row_stride + (long long)h * D + c] = f_to_bits(Os[r * LDO + c]);
    }
}

// Decode S for DEC_TILE_QK keys of one KV head and every (query, head)
// row that reads it, with each row's (max, sum) over the tile. The keys
// stream through the stage buffers (see DEC_STAGE). grid
// (ceil(max_kv_len / DEC_TILE_QK), num_kv_heads, num_seqs), block
// DEC_QK_THREADS, DEC_QK_SMEM bytes.
extern "C" __global__ void __launch_bounds__(DEC_QK_THREADS) eager_decode_qk(longctx_attention_params p) {
    extern __shared__ __align__(128) unsigned char eager_smem[];
    bits16 *Kb = reinterpret_cast<bits16 *>(eager_smem); // DEC_NBUF stages of keys
    bits16 *Qs = Kb + DEC_NBUF * DEC_STAGE_ELEMS;
    float *Cs = reinterpret_cast<float *>(Qs + MR * LDS);
    int *kposb = reinterpret_cast<int *>(Cs + MR * LDCQ); // DEC_NBUF stages of key positions

    const int warp = threadIdx.x / 32;
    const int t = blockIdx.x, kvh = blockIdx.y, seq = blockIdx.z;
    const int Q = p.num_q, window = p.sliding_window;
    const longctx_kv_head kd = p.k[seq * p.num_kv_heads + kvh];
    const int j0 = t * DEC_TILE_QK;
    if (j0 >= kd.len) return; // past this head's keys (the graph is sized for the capacity)
    const int jn = min(DEC_TILE_QK, kd.len - j0);
    const int nst = (jn + DEC_STAGE - 1) / DEC_STAGE;
    const Workspace ws(p);
    const bits16 *kbase = static_cast<const bits16 *>(kd.data) + (long long)j0 * kd.row_stride;
    const int *pbase = kd.pos + j0;
    const bool kvec = aligned16(kd.data) && kd.row_stride % 8 == 0;
    // Starts copying stage st's keys and positions into buffer st % DEC_NBUF.
    const auto issue = [&](int st) {
        const int k0 = st * DEC_STAGE, sn = min(DEC_STAGE, jn - k0), b = st % DEC_NBUF;
        stage_rows<DEC_STAGE, DEC_QK_THREADS>(Kb + b * DEC_STAGE_ELEMS, kbase + (long long)k0 * kd.row_stride, kd.row_stride, sn, kvec);
        for (int c = threadIdx.x; c < sn; c += DEC_QK_THREADS) copy4_async(kposb + b * DEC_STAGE + c, pbase + k0 + c);
    };
    const bool qvec = aligned16(p.q) && p.q_row_stride % 8 == 0;
    const bool svec = ws.cols % 8 == 0; // score rows start 16-byte aligned
    const bits16 *qbase = static_cast<const bits16 *>(p.q) + (long long)seq * Q * p.q_row_stride + (long long)kvh * G * D;
    // The epilogue's lanes: QK_CH per score row, 8 keys each.
    const int er = threadIdx.x / QK_CH, ec = threadIdx.x % QK_CH * 8;

    const int rows = G * Q;
    for (int r0 = 0; r0 < rows; r0 += MR) {
        const int rn = min(MR, rows - r0);
        // The first DEC_NBUF stages fly while Q is read.
        for (int st = 0; st < DEC_NBUF; st++) {
            if (st < nst) issue(st);
            copy_commit();
        }
        // Q rows r0.. as a 16-row bf16 tile, zero past rn.
        for (int idx = threadIdx.x; idx < MR * (D / 8); idx += DEC_QK_THREADS) {
            const int r = idx / (D / 8), c = idx % (D / 8) * 8;
            bits16 *dst = Qs + r * LDS + c;
            const int rr = r0 + r;
            const bits16 *src = qbase + (long long)(rr / G) * p.q_row_stride + (rr % G) * D + c;
            if (r >= rn) {
                *reinterpret_cast<uint4 *>(dst) = make_uint4(0u, 0u, 0u, 0u);
            } else if (qvec) {
                *reinterpret_cast<uint4 *>(dst) = *reinterpret_cast<const uint4 *>(src);
            } else {
#pragma unroll
                for (int e = 0; e < 8; e++) dst[e] = src[e];
            }
        }
        const bool active = er < rn;
        long long row = 0;
        int qp = 0;
        if (active) {
            int qi;
            row = decode_row(p, seq, kvh, r0 + er, qi);
            qp = p.q_pos[seq * Q + qi];
        }
        float M = neg_inf(), L = 0.f; // the row's statistics over the stages so far

        for (int st = 0; st < nst; st++) {
            // Stage st has landed: groups are committed one per stage.
            if (st == 0) {
                copy_wait_group<DEC_NBUF - 1>();
            } else {
                copy_wait_group<DEC_NBUF - 2>();
            }
            __syncthreads(); // also: stage st - 1's buffer and Cs are read
            if (st > 0) {
                if (st - 1 + DEC_NBUF < nst) issue(st - 1 + DEC_NBUF);
                copy_commit();
            }
            const int b = st % DEC_NBUF, k0 = st * DEC_STAGE, sn = min(DEC_STAGE, jn - k0);
            const bits16 *Ks = Kb + b * DEC_STAGE_ELEMS;
            const int *kpos = kposb + b * DEC_STAGE;

            // C = Q K^T on tensor cores, fp32: each warp owns 16 keys.
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> bf;
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.f);
            const int n0 = warp * 16;
            if (n0 < sn) {
#pragma unroll
                for (int kk = 0; kk < D; kk += 16) {
                    wmma::load_matrix_sync(a, reinterpret_cast<const __nv_bfloat16 *>(Qs + kk), LDS);
                    // K row-major [key][dim] is K^T column-major.
                    wmma::load_matrix_sync(bf, reinterpret_cast<const __nv_bfloat16 *>(Ks + n0 * LDS + kk), LDS);
                    wmma::mma_sync(acc, a, bf, acc);
                }
            }
            wmma::store_matrix_sync(Cs + n0, acc, LDCQ, wmma::mem_row_major);
            __syncthreads();

            // S, 8 keys a lane, and the row's (max, sum) over the stage
            // across the QK_CH lanes that share it.
            float s[8];
            if (active) {
                const float4 c0 = *reinterpret_cast<const float4 *>(Cs + er * LDCQ + ec);
                const float4 c1 = *reinterpret_cast<const float4 *>(Cs + er * LDCQ + ec + 4);
                const float cv[8] = {c0.x, c0.y, c0.z, c0.w, c1.x, c1.y, c1.z, c1.w};
                unsigned b16[8];
#pragma unroll
                for (int e = 0; e < 8; e++) {
                    // matmul rounds to bf16; "* scaling" rounds again.
                    const int jj = ec + e;
                    s[e] = jj < sn && visible(qp, kpos[jj], window) ? round_bf16(__fmul_rn(round_bf16(cv[e]), p.scale)) : neg_inf();
                    b16[e] = f_to_bits(s[e]);
                }
                bits16 *dst = ws.s + row * ws.cols + j0 + k0 + ec;
                if (svec && ec + 8 <= sn) {
                    *reinterpret_cast<uint4 *>(dst) = pack8(b16);
                } else {
                    for (int e = 0; e < 8 && ec + e < sn; e++) dst[e] = (bits16)b16[e];
                }
            } else {
#pragma unroll
                for (int e = 0; e < 8; e++) s[e] = neg_inf();
            }
            float m = s[0];
#pragma unroll
            for (int e = 1; e < 8; e++) m = fmaxf(m, s[e]);
#pragma unroll
            for (int o = QK_CH / 2; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
            float l = 0.f;
            if (m != neg_inf()) {
#pragma unroll
                for (int e = 0; e < 8; e++) l += s[e] == neg_inf() ? 0.f : expf(s[e] - m);
            }
#pragma unroll
            for (int o = QK_CH / 2; o > 0; o >>= 1) l += __shfl_xor_sync(0xffffffffu, l, o);
            stats_merge(M, L, m, l);
        }
        if (active && ec == 0) ws.stats[row * ws.ntq + t] = make_float2(M, L);
        __syncthreads(); // Qs, Cs and the buffers are rewritten by the next rows
    }
}

// Decode P32 and P for one KV tile of DEC_TILE keys (each row's max and
// sum come from every qk tile's statistics) and that tile's share of P V,
// in fp32, for every (query, head) row of the KV head. The values stream
// through the stage buffers (see DEC_STAGE) and are read once for up to
// MR rows. grid (ceil(max_kv_len / DEC_TILE), num_kv_heads, num_seqs),
// block DEC_PV_THREADS, DEC_PV_SMEM bytes.
extern "C" __global__ void __launch_bounds__(EAGER_DEC_PV_BOUNDS) eager_decode_pv(longctx_attention_params p) {
    extern __shared__ __align__(128) unsigned char eager_smem[];
    bits16 *Vb = reinterpret_cast<bits16 *>(eager_smem); // DEC_NBUF stages of values
    float *red = reinterpret_cast<float *>(eager_smem);  // overlays Vb once P V is done
    bits16 *Ps = reinterpret_cast<bits16 *>(eager_smem + PV_BUF_BYTES);
    float *Mx = reinterpret_cast<float *>(Ps + MR * LDPD);
    float *Ls = Mx + MR;

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int t = blockIdx.x, kvh = blockIdx.y, seq = blockIdx.z;
    const int kvi = seq * p.num_kv_heads + kvh;
    const longctx_kv_head vd = p.v[kvi];
    const int len = p.k[kvi].len;
    const int j0 = t * DEC_TILE;
    if (j0 >= len) return;
    const int jn = min(DEC_TILE, len - j0);
    const int nst = (jn + DEC_STAGE - 1) / DEC_STAGE;
    const int nq = (len + DEC_TILE_QK - 1) / DEC_TILE_QK; // qk tiles with statistics
    const Workspace ws(p);
    const bits16 *vbase = static_cast<const bits16 *>(vd.data) + (long long)j0 * vd.row_stride;
    const bool vvec = aligned16(vd.data) && vd.row_stride % 8 == 0;
    const auto issue = [&](int st) {
        const int k0 = st * DEC_STAGE;
        stage_rows<DEC_STAGE, DEC_PV_THREADS>(Vb + st % DEC_NBUF * DEC_STAGE_ELEMS, vbase + (long long)k0 * vd.row_stride, vd.row_stride,
                                              min(DEC_STAGE, jn - k0), vvec);
    };
    const bool pvec = ws.cols % 8 == 0;
    const bits16 hidden = f_to_bits(neg_inf());
    const int rows = G * p.num_q;
    const int wn = warp % PV_WN, wk = warp / PV_WN;
    for (int r0 = 0; r0 < rows; r0 += MR) {
        const int rn = min(MR, rows - r0);
        // The values first: the first stages fly while P is made.
        for (int st = 0; st < DEC_NBUF; st++) {
            if (st < nst) issue(st);
            copy_commit();
        }
        // This thread's S chunks (8 keys each), read before the statistics
        // so that the two reads overlap.
        uint4 sv[PV_PIT];
        long long e0[PV_PIT];
#pragma unroll
        for (int i = 0; i < PV_PIT; i++) {
            const int idx = threadIdx.x + i * DEC_PV_THREADS;
            const int r = idx / (DEC_TILE / 8), c = idx % (DEC_TILE / 8) * 8;
            sv[i] = make_uint4(0u, 0u, 0u, 0u);
            e0[i] = 0;
            if (r < rn && c < jn) {
                int qi;
                e0[i] = decode_row(p, seq, kvh, r0 + r, qi) * ws.cols + j0 + c;
                if (pvec && c + 8 <= jn) {
                    sv[i] = *reinterpret_cast<const uint4 *>(ws.s + e0[i]);
                } else {
                    unsigned b[8];
#pragma unroll
                    for (int e = 0; e < 8; e++) b[e] = c + e < jn ? ws.s[e0[i] + e] : hidden;
                    sv[i] = pack8(b);
                }
            }
        }
        // The row's max and sum over all qk tiles, a warp per row, 4 loads
        // in flight a lane.
        for (int r = warp; r < rn; r += DEC_PV_WARPS) {
            int qi;
            const float2 *st = ws.stats + decode_row(p, seq, kvh, r0 + r, qi) * ws.ntq;
            float m = neg_inf(), l = 0.f;
            for (int u0 = lane; u0 < nq; u0 += 4 * 32) {
                float2 v[4];
#pragma unroll
                for (int i = 0; i < 4; i++) v[i] = u0 + 32 * i < nq ? st[u0 + 32 * i] : make_float2(neg_inf(), 0.f);
#pragma unroll
                for (int i = 0; i < 4; i++) stats_merge(m, l, v[i].x, v[i].y);
            }
            warp_stats(m, l);
            if (lane == 0) {
                Mx[r] = m;
                Ls[r] = l;
            }
        }
        __syncthreads();
        // P32 and P for the tile, and P as a bf16 tile of 16 rows, zero
        // past rn rows and jn keys.
#pragma unroll
        for (int i = 0; i < PV_PIT; i++) {
            const int idx = threadIdx.x + i * DEC_PV_THREADS;
            const int r = idx / (DEC_TILE / 8), c = idx % (DEC_TILE / 8) * 8;
            unsigned b16[8] = {0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u};
            if (r < rn && c < jn) {
                const float M = Mx[r], L = Ls[r];
                const unsigned w[4] = {sv[i].x, sv[i].y, sv[i].z, sv[i].w};
                float y[8];
#pragma unroll
                for (int e = 0; e < 8; e++) {
                    const float x = __uint_as_float(e % 2 == 0 ? w[e / 2] << 16 : w[e / 2] & 0xffff0000u);
                    y[e] = (M == neg_inf() || x == neg_inf()) ? 0.f : expf(x - M) / L;
                    b16[e] = f_to_bits(y[e]);
                }
                if (pvec && c + 8 <= jn) {
                    float4 *dst = reinterpret_cast<float4 *>(ws.p32 + e0[i]);
                    dst[0] = make_float4(y[0], y[1], y[2], y[3]);
                    dst[1] = make_float4(y[4], y[5], y[6], y[7]);
                    *reinterpret_cast<uint4 *>(ws.p + e0[i]) = pack8(b16);
                } else {
                    for (int e = 0; e < 8 && c + e < jn; e++) { // keys past jn have P 0
                        ws.p32[e0[i] + e] = y[e];
                        ws.p[e0[i] + e] = (bits16)b16[e];
                    }
                }
            }
            *reinterpret_cast<uint4 *>(Ps + r * LDPD + c) = pack8(b16);
        }

        // P V on tensor cores, fp32, stage by stage: warp (wn, wk) owns
        // column tiles wn, wn + PV_WN, ... over the key steps wk, wk + PV_WK, ...
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> bf;
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[PV_NACC];
#pragma unroll
        for (int x = 0; x < PV_NACC; x++) wmma::fill_fragment(acc[x], 0.f);
        for (int st = 0; st < nst; st++) {
            if (st == 0) {
                copy_wait_group<DEC_NBUF - 1>();
            } else {
                copy_wait_group<DEC_NBUF - 2>();
            }
            __syncthreads(); // also: Ps is written, stage st - 1's buffer is read
            if (st > 0) {
                if (st - 1 + DEC_NBUF < nst) issue(st - 1 + DEC_NBUF);
                copy_commit();
            }
            const int k0 = st * DEC_STAGE, ksteps = (min(DEC_STAGE, jn - k0) + 15) / 16;
            const bits16 *Vs = Vb + st % DEC_NBUF * DEC_STAGE_ELEMS;
            for (int kk = wk; kk < ksteps; kk += PV_WK) {
                wmma::load_matrix_sync(a, reinterpret_cast<const __nv_bfloat16 *>(Ps + k0 + kk * 16), LDPD);
#pragma unroll
                for (int x = 0; x < PV_NACC; x++) {
                    wmma::load_matrix_sync(bf, reinterpret_cast<const __nv_bfloat16 *>(Vs + kk * 16 * LDS + (wn + x * PV_WN) * 16), LDS);
                    wmma::mma_sync(acc[x], a, bf, acc[x]);
                }
            }
        }
        __syncthreads(); // red overlays the stage buffers
#pragma unroll
        for (int x = 0; x < PV_NACC; x++)
            wmma::store_matrix_sync(red + wk * MR * LDO + (wn + x * PV_WN) * 16, acc[x], LDO, wmma::mem_row_major);
        __syncthreads();
        for (int idx = threadIdx.x; idx < rn * (D / 4); idx += DEC_PV_THREADS) {
            const int r = idx / (D / 4), d = idx % (D / 4) * 4;
            float4 s = *reinterpret_cast<const float4 *>(red + r * LDO + d);
            for (int w = 1; w < PV_WK; w++) {
                const float4 v = *reinterpret_cast<const float4 *>(red + (w * MR + r) * LDO + d);
                s.x += v.x;
                s.y += v.y;
                s.z += v.z;
                s.w += v.w;
            }
            int qi;
            const long long row = decode_row(p, seq, kvh, r0 + r, qi);
            *reinterpret_cast<float4 *>(ws.partial + (row * ws.ntiles + t) * D + d) = s;
        }
        __syncthreads(); // Mx, Ls, Ps and red (the buffers) are rewritten by the next rows
    }
}

// Decode O = bf16(sum over the KV tiles of the partial P V) for one score
// row (query, head); writes every output element, also of heads without
// keys. grid (num_seqs * num_heads * num_q) (rule ROWS, tile_q 1), block
// DEC_COMBINE_THREADS: D / 4 lanes across a row, 4 columns each, times
// slices of the tiles, so a block reads the row's partial sums, which lie
// contiguous, in one coalesced sweep.
extern "C" __global__ void __launch_bounds__(DEC_COMBINE_THREADS) eager_decode_combine(longctx_attention_params p) {
    constexpr int C4N = D / 4, SL = DEC_COMBINE_THREADS / C4N;
    __shared__ float4 red[DEC_COMBINE_THREADS];
    const int H = p.num_heads, Q = p.num_q;
    const long long row = blockIdx.x; // ((seq * H) + h) * Q + i
    const int i = (int)(row % Q), h = (int)(row / Q % H), seq = (int)(row / ((long long)Q * H));
    if (seq >= p.num_seqs) return;
    const int len = p.k[seq * p.num_kv_heads + h / (H / p.num_kv_heads)].len;
    const int nvalid = (len + DEC_TILE - 1) / DEC_TILE;
    const Workspace ws(p);
    const int c4 = threadIdx.x % C4N, sl = threadIdx.x / C4N;
    const float *part = ws.partial + row * ws.ntiles * D + c4 * 4;
    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll 8
    for (int u = sl; u < nvalid; u += SL) {
        const float4 v = *reinterpret_cast<const float4 *>(part + (long long)u * D);
        acc.x += v.x;
        acc.y += v.y;
        acc.z += v.z;
        acc.w += v.w;
    }
    red[threadIdx.x] = acc;
    __syncthreads();
    bits16 *o = static_cast<bits16 *>(p.out) + ((long long)seq * Q + i) * p.out_row_stride + (long long)h * D;
    for (int d = threadIdx.x; d < D; d += DEC_COMBINE_THREADS) {
        float s = 0.f;
        for (int u = 0; u < SL; u++) {
            const float4 v = red[u * C4N + d / 4];
            s += d % 4 == 0 ? v.x : d % 4 == 1 ? v.y : d % 4 == 2 ? v.z : v.w;
        }
        o[d] = f_to_bits(s);
    }
}
