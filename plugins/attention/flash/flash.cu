// FlashAttention-2 in bf16 for the flash plugin: scores never leave the
// chip. Scores and the softmax are fp32; the probabilities are rounded to
// bf16 once, as the A operand of the P·V tensor-core product (as
// FlashAttention-2 does).
//
// Prefill (role attention.prefill): flash_prefill_sm90ws on Hopper (see
// there), flash_prefill elsewhere. A flash_prefill block of 4 warps owns
// 128 query rows of one head, 32 per warp (two 16-row tensor-core tiles,
// so each K or V fragment read from shared memory feeds two products), and
// walks the keys 64 at a time: S = Q·Kᵀ in registers (mma.sync
// m16n8k16), online softmax per row (running max and sum, exp2 with the
// scale folded in), P·V accumulated in registers with P taken straight
// from S's registers. K of the next tile is copied (cp.async) while the
// softmax and P·V of this one run, V of this tile while Q·Kᵀ runs. Only the
// key tiles some query of the block can see are visited (causal tile
// skipping by positions), and only tiles that cross the diagonal, the
// window's edge or the cache's end are masked element by element. Blocks
// start with the longest query tiles, the causal triangle's heavy end.
//
// Decode (role attention.decode): flash_decode, flash_decode_combine
// (flash-decoding). flash_decode's grid is (splits, KV heads, sequences)
// with as many splits as fill the GPU once (grid rule KV_SPLITS, ABI 3)
// whatever the batch; a block takes an equal share of one KV head's keys
// of one sequence, in whole stages (16 keys a warp: 128 at the default 8
// warps), with all of that head's query heads (up to 16, rows of one
// tensor-core tile), streams K and V through shared-memory stages (2 by
// default; on sm_90a 3, filled by bulk copies: FLASH_DECODE_BULK), and
// writes the unnormalised partial output and its softmax statistics to
// the workspace; flash_decode_combine, a warp per query head, merges a
// row's splits. Both are launched to overlap the kernel before them
// (overlap_previous, ABI 4): on an H100 that, the warp-per-row combine
// and Q loaded early took 1.1-1.4 µs off a 51.5 µs decode step at batch
// 1 / 32k. Workspace, rows
// R = num_seqs * num_heads, SMAX = ceil(max_kv_len / FLASH_DECODE_TILE)
// splits a row at most, S = gridDim.x <= SMAX of them used:
//
//   [0, 4)                     S, u32 (the combine's grid cannot say it)
//   [256, 256 + 4 R SMAX D)    partial P·V, fp32, [R][SMAX][D]
//   [256 + align16(4 R SMAX D), + 8 R SMAX)  (max, sum) per row and split, float2
//
// A split is a share of its head's real length, so a decode graph captured
// for the cache capacity touches only what the cache holds. (Measured no
// faster on an H100, bench/RESULTS.md: dividing all heads' keys evenly
// among every resident block, blocks spanning heads (grid rule KV_STREAM;
// commit e0f90ff has that kernel); merging in the last block of each KV
// head, found by a counter, instead of a second kernel; each warp
// refilling its own rows of a stage without block barriers.)
//
// Compile-time constants (NVRTC --define-macro): FLASH_HEAD_DIM (16, 32,
// 64 or 128), FLASH_GROUP (query heads per KV head, 1 to 16; decode);
// FLASH_EXPECT_* are the launch geometry the Go side declared, checked
// against the constants here.
#include "longctx/abi/attention.h"
#include "longctx/abi/launch.h"
#include <cuda_bf16.h>

#if !defined(LONGCTX_DTYPE) || LONGCTX_DTYPE != 2
#error "flash kernels are bf16 only: compile with LONGCTX_DTYPE=2"
#endif
#ifndef FLASH_HEAD_DIM
#error "define FLASH_HEAD_DIM"
#endif
#ifndef FLASH_GROUP
#define FLASH_GROUP 1
#endif

namespace flash {

typedef unsigned short bits16; // raw bf16

constexpr int D = FLASH_HEAD_DIM;
static_assert(D == 16 || D == 32 || D == 64 || D == 128, "head dim must be 16, 32, 64 or 128");
constexpr int G = FLASH_GROUP;
static_assert(G >= 1 && G <= 16, "FLASH_GROUP: 1 to 16 query heads per KV head");

constexpr int LDS = D + 8; // bf16 pitch of shared Q, K, V rows: 16-byte rows, ldmatrix conflict-free
constexpr int KT = D / 16; // 16-wide k steps of Q·Kᵀ
constexpr int OT = D / 8;  // 8-wide column tiles of the output

// Prefill geometry. FLASH_PREFILL_WARPS (default 4) share the block's
// FLASH_PREFILL_ROWS query rows (default 128).
#ifndef FLASH_PREFILL_WARPS
#define FLASH_PREFILL_WARPS 4
#endif
#ifndef FLASH_PREFILL_BN
#define FLASH_PREFILL_BN 64
#endif
#ifndef FLASH_PREFILL_ROWS
#define FLASH_PREFILL_ROWS 128
#endif
constexpr int BM = FLASH_PREFILL_ROWS, BN = FLASH_PREFILL_BN, WARPS = FLASH_PREFILL_WARPS, THREADS = 32 * WARPS;
// Blocks per SM the registers are budgeted for: 2 at 4 warps and 64-key
// tiles (255 registers: 128 of output and 64 of scores per thread).
#ifndef FLASH_PREFILL_MIN_BLOCKS
#define FLASH_PREFILL_MIN_BLOCKS (BN == 32 && WARPS == 4 ? 3 : 2)
#endif
constexpr int PREFILL_MIN_BLOCKS = FLASH_PREFILL_MIN_BLOCKS;
#define FLASH_PREFILL_BOUNDS THREADS, PREFILL_MIN_BLOCKS
constexpr int WM = BM / WARPS; // query rows per warp
constexpr int MT = WM / 16;    // 16-row tiles per warp
constexpr int NT = BN / 8;     // 8-key score tiles
constexpr int PREFILL_SMEM = (BM + 2 * BN) * LDS * 2;
static_assert(BM <= THREADS && WM % 16 == 0, "a query row's position per thread; 16-row tiles per warp");
static_assert(BN == 32 || BN == 64, "prefill key tile");

// Decode geometry: FLASH_DECODE_TILE (default 256), the fewest keys a split
// gets (the grid rule's tile_kv): splits are at most ceil(max_kv_len / it),
// which bounds the workspace.
#ifndef FLASH_DECODE_TILE
#define FLASH_DECODE_TILE 256
#endif
// FLASH_DECODE_WARPS (default 8) warps a decode block, each taking 16 keys
// of a stage; FLASH_DECODE_BUFFERS (default 2) shared-memory stages;
// FLASH_DECODE_MIN_BLOCKS (default 1) blocks per SM the registers are
// budgeted for. 8 warps and 2 stages of 128 keys (one block an SM at
// d 128) beat 4 warps and 3 stages of 64 (two blocks) by 2-4 % on an H100.
#ifndef FLASH_DECODE_WARPS
#define FLASH_DECODE_WARPS 8
#endif
#ifndef FLASH_DECODE_BUFFERS
#define FLASH_DECODE_BUFFERS 2
#endif
#ifndef FLASH_DECODE_MIN_BLOCKS
#define FLASH_DECODE_MIN_BLOCKS 1
#endif
// FLASH_DECODE_BULK (sm_90 and later; default 0): K and V reach the
// stages by bulk copies (the copy engine, cp.async.bulk) counted on an
// mbarrier per stage instead of cp.async by every thread: through 3
// stages they streamed a decode step's cache 2-3 % faster on an H100
// (tools/decodeprobe, bench/RESULTS.md). Bulk copies land rows unpadded; a stage
// holds its rows in pairs (one copy of 2 rows where rows are contiguous),
// the pairs DPAIR_PITCH bytes apart: 32 more than their size, so that
// ldmatrix's 8 rows fall in 4 bank groups (2-way conflicts; 16 bytes
// apart they would have none, but copies to addresses not 32-byte aligned
// streamed 3-4 % slower, as slowly as cp.async).
#ifndef FLASH_DECODE_BULK
#define FLASH_DECODE_BULK 0
#endif
constexpr bool DBULK = FLASH_DECODE_BULK;
constexpr int DTILE = FLASH_DECODE_TILE, DWARPS = FLASH_DECODE_WARPS, DTHREADS = 32 * DWARPS, DSTAGE = 16 * DWARPS, DNBUF = FLASH_DECODE_BUFFERS;
static_assert(DTILE % DSTAGE == 0, "decode tile: whole stages");
constexpr int DROW_BYTES = 2 * D, DPAIR_PITCH = 2 * DROW_BYTES + 32;
constexpr int DMAT_BYTES = DBULK ? DSTAGE / 2 * DPAIR_PITCH : DSTAGE * LDS * 2; // K or V of a stage
constexpr int DEC_BUF_BYTES = DNBUF * 2 * DMAT_BYTES;
constexpr int DEC_RED_BYTES = DWARPS * 16 * (D + 2) * 4; // per warp: 16 rows' output, max and sum
constexpr int DEC_SMEM = (DEC_BUF_BYTES > DEC_RED_BYTES ? DEC_BUF_BYTES : DEC_RED_BYTES) + 16 * LDS * 2 + (DBULK ? DNBUF * 8 : 0);
// Byte offset of row r of a stage's K or V.
__device__ __forceinline__ constexpr int drow(int r) { return DBULK ? r / 2 * DPAIR_PITCH + r % 2 * DROW_BYTES : r * LDS * 2; }
constexpr int CPL = D < 32 ? 1 : D / 32; // output columns per lane in the combine
constexpr int COMBINE_THREADS = 32, CWARPS = COMBINE_THREADS / 32; // flash_decode_combine: a row a warp
// Where the partial outputs start: after a 256-byte header holding the
// number of splits (flash_decode writes it, flash_decode_combine reads it).
constexpr long long DEC_PARTIAL_OFFSET = 256;
static_assert(DSTAGE == 16 * DWARPS, "decode: one 16-key slice of a stage per warp");

#ifdef FLASH_EXPECT_PREFILL_SMEM
static_assert(FLASH_EXPECT_PREFILL_SMEM == PREFILL_SMEM, "Go's flash_prefill shared memory differs from the kernel's");
#endif
#ifdef FLASH_EXPECT_DECODE_SMEM
static_assert(FLASH_EXPECT_DECODE_SMEM == DEC_SMEM, "Go's flash_decode shared memory differs from the kernel's");
#endif
#ifdef FLASH_EXPECT_TILE_Q
static_assert(FLASH_EXPECT_TILE_Q == BM && FLASH_EXPECT_TILE_KV == DTILE, "Go's tiles differ from the kernel's");
#endif
#ifdef FLASH_EXPECT_THREADS
static_assert(FLASH_EXPECT_THREADS == THREADS && FLASH_EXPECT_DECODE_THREADS == DTHREADS &&
                  FLASH_EXPECT_COMBINE_THREADS == COMBINE_THREADS,
              "Go's block sizes differ from the kernel's");
#endif

constexpr float LOG2E = 1.4426950408889634f;

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }
__device__ __forceinline__ bits16 f_to_bits(float x) { return __bfloat16_as_ushort(__float2bfloat16_rn(x)); }
__device__ __forceinline__ bool aligned(const void *p, int n) { return (reinterpret_cast<unsigned long long>(p) & (n - 1)) == 0; }
__device__ __forceinline__ long long align16(long long x) { return (x + 15) & ~15LL; }

// Two fp32 values as the bf16 pair of one mma operand register: lo in
// bits 0-15 (the lower column). One instruction on the GPU.
__device__ __forceinline__ unsigned pack_bf16(float lo, float hi) {
#ifdef __CUDA_ARCH__
    unsigned r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
#else
    return (unsigned)f_to_bits(lo) | ((unsigned)f_to_bits(hi) << 16);
#endif
}

// 2^x with the hardware's approximation (2 ulp), denormal results flushed
// to zero: exact enough for probabilities that are rounded to bf16, and
// exp2(-inf) is 0.
__device__ __forceinline__ float fast_exp2(float x) {
#ifdef __CUDA_ARCH__
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
#else
    return exp2f(x);
#endif
}

// The mask of attention.h.
__device__ __forceinline__ bool visible(int qpos, int kpos, int window) {
    return kpos <= qpos && (window <= 0 || (long long)qpos - kpos < window);
}

// First index i in [0, n) with pos[i] >= x (n if none); pos increases.
__device__ __forceinline__ int lower_bound(const int *pos, int n, long long x) {
    int lo = 0, hi = n;
    while (lo < hi) {
        const int mid = (lo + hi) >> 1;
        if ((long long)pos[mid] < x) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

// Shared-memory address for PTX operands.
__device__ __forceinline__ unsigned smem_addr(const void *p) {
#ifdef __CUDA_ARCH__
    unsigned s;
    asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(s) : "l"(p));
    return s;
#else
    return emu_smem_addr(p);
#endif
}

// Asynchronous global → shared copies (cp.async): a thread's copies since
// its last copy_commit form a group; copy_wait<N> waits until at most its
// N latest groups are pending, and a barrier then shows them to the block.
// STREAM marks data read once (decode's K and V): L2 evicts it first, so
// what is reused stays, and fetches whole 128-byte lines from DRAM (each
// 1-5 % faster decode with cold inputs on an H100, bench/RESULTS.md;
// prefill rereads K and V and keeps the default).
template <bool STREAM = false> __device__ __forceinline__ void copy16_async(void *dst, const void *src) {
#ifdef __CUDA_ARCH__
    if constexpr (STREAM) {
        unsigned long long policy;
        asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
        asm volatile("cp.async.cg.shared.global.L2::cache_hint.L2::128B [%0], [%1], 16, %2;" ::"r"(smem_addr(dst)), "l"(src), "l"(policy) : "memory");
    } else {
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_addr(dst)), "l"(src) : "memory");
    }
#else
    emu_copy_async(dst, src, 16);
#endif
}
__device__ __forceinline__ void copy_commit() {
#ifdef __CUDA_ARCH__
    asm volatile("cp.async.commit_group;" ::: "memory");
#else
    emu_copy_commit();
#endif
}
template <int N> __device__ __forceinline__ void copy_wait() {
#ifdef __CUDA_ARCH__
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
#else
    emu_copy_wait(N);
#endif
}

// A shared-memory operand address for ldmatrix: 32 bits on the GPU, so
// that a fragment's address is a base register plus a constant; a pointer
// in the host emulation.
#ifdef __CUDA_ARCH__
typedef unsigned sptr;
__device__ __forceinline__ sptr sptr_of(const bits16 *p) { return smem_addr(p); }
__device__ __forceinline__ sptr sptr_add(sptr a, int elems) { return a + 2 * elems; }
#else
typedef const bits16 *sptr;
__device__ __forceinline__ sptr sptr_of(const bits16 *p) { return p; }
__device__ __forceinline__ sptr sptr_add(sptr a, int elems) { return a + elems; }
#endif

// ldmatrix: four 8×8 bf16 matrices from shared memory, lane l giving the
// address of row l % 8 of matrix l / 8; r[i] is this lane's pair of
// matrix i (row lane / 4, columns 2 (lane % 4) + {0, 1}), or with .trans
// of its transpose.
__device__ __forceinline__ void ldsm_x4(unsigned r[4], sptr a) {
#ifdef __CUDA_ARCH__
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
#else
    emu_ldmatrix_x4(r, a, false);
#endif
}
__device__ __forceinline__ void ldsm_x4_trans(unsigned r[4], sptr a) {
#ifdef __CUDA_ARCH__
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
#else
    emu_ldmatrix_x4(r, a, true);
#endif
}

// Lane addresses for the x4 loads of the fragments, relative to a tile at
// p of pitch LDS. A (16 rows × 16 k, row-major rows): matrices (rows 0-7,
// k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15).
// B from K (16 keys × 16 k, keys as rows): (keys 0-7, k 0-7), (keys 0-7,
// k 8-15), (keys 8-15, k 0-7), (keys 8-15, k 8-15): pairs b0 b1 of two
// 8-key tiles. B from V (16 keys × 16 columns, transposed): (keys 0-7,
// columns 0-7), (keys 8-15, columns 0-7), (keys 0-7, columns 8-15), (keys
// 8-15, columns 8-15): pairs b0 b1 of two 8-column tiles.
__device__ __forceinline__ sptr frag_a(const bits16 *p, int lane) { return sptr_of(p + (lane % 16) * LDS + lane / 16 * 8); }
__device__ __forceinline__ sptr frag_bk(const bits16 *p, int lane) { return sptr_of(p + (lane / 16 * 8 + lane % 8) * LDS + (lane / 8) % 2 * 8); }
__device__ __forceinline__ sptr frag_bv(const bits16 *p, int lane) { return sptr_of(p + ((lane / 8) % 2 * 8 + lane % 8) * LDS + lane / 16 * 8); }

// c += a · b on tensor cores: a 16×16 bf16 (row), b 16×8 bf16 (col), c
// 16×8 fp32. Lane l holds c rows l/4 (c[0], c[1]) and l/4 + 8 (c[2],
// c[3]), columns 2 (l % 4) + {0, 1}; a as four pairs: (row l/4, k 2(l%4)),
// (row +8), (k +8), (row +8, k +8); b as two pairs (k 2(l%4), n l/4),
// (k +8).
__device__ __forceinline__ void mma(float c[4], const unsigned a[4], unsigned b0, unsigned b1) {
#ifdef __CUDA_ARCH__
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
    emu_mma_m16n8k16(c, a, b0, b1);
#endif
}

__device__ __forceinline__ float quad_max(float v) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// Starts copying rows [0, n) of a D-wide bf16 matrix whose rows lie stride
// elements apart into ROWS rows of pitch LDS and zeroes rows [n, ROWS), so
// a product over them is zero, not NaN. vec: 16-byte aligned rows, copied
// asynchronously (STREAM: see copy16_async); otherwise element by element,
// at once.
template <int ROWS, int NTHREADS, bool STREAM = false>
__device__ __forceinline__ void load_rows(bits16 *dst, const bits16 *src, long long stride, int n, bool vec) {
    if (vec) {
        // Chunk threadIdx % CH of rows threadIdx / CH + RP k: one pointer
        // walks the rows, where computing each chunk's address from its
        // index cost 5-6 % of flash_prefill's speed on an H100
        // (bench/RESULTS.md).
        constexpr int CH = D / 8, RP = NTHREADS / CH;
        static_assert(NTHREADS % CH == 0, "whole rows a pass");
        const int c = threadIdx.x % CH * 8;
        int r = threadIdx.x / CH;
        const bits16 *s = src + r * stride + c;
        bits16 *d = dst + r * LDS + c;
#pragma unroll
        for (int k = 0; k < (ROWS + RP - 1) / RP; k++, r += RP, s += RP * stride, d += RP * LDS) {
            if (ROWS % RP != 0 && r >= ROWS) break;
            if (r < n) copy16_async<STREAM>(d, s);
            else *reinterpret_cast<uint4 *>(d) = make_uint4(0u, 0u, 0u, 0u);
        }
    } else {
        for (int idx = threadIdx.x; idx < ROWS * D; idx += NTHREADS) {
            const int r = idx / D, c = idx % D;
            dst[r * LDS + c] = r < n ? src[r * stride + c] : (bits16)0;
        }
    }
}

// mbarriers (sm_90's prefill stages; the bulk-copy decode's): a 64-bit
// word in shared memory at a; a phase completes when its count of
// arrivals has arrived and, for bulk copies, their bytes have landed.
__device__ __forceinline__ void mbar_init(unsigned a, unsigned count) {
#ifdef __CUDA_ARCH__
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(a), "r"(count) : "memory");
#else
    emu_mbar_init(a, count);
#endif
}
__device__ __forceinline__ void mbar_wait(unsigned a, unsigned parity) {
#ifdef __CUDA_ARCH__
    asm volatile("{ .reg .pred done; WAIT: mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1; @!done bra WAIT; }" ::"r"(a), "r"(parity) : "memory");
#else
    emu_mbar_wait(a, parity);
#endif
}
__device__ __forceinline__ void mbar_arrive(unsigned a) {
#ifdef __CUDA_ARCH__
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(a) : "memory");
#else
    emu_mbar_arrive(a);
#endif
}

#if FLASH_DECODE_BULK
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
#error "FLASH_DECODE_BULK: bulk copies need sm_90 or later"
#endif
// Arrives on the mbarrier and adds bytes to what its phase waits for.
__device__ __forceinline__ void mbar_arrive_expect_tx(unsigned a, unsigned bytes) {
#ifdef __CUDA_ARCH__
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(a), "r"(bytes) : "memory");
#else
    emu_mbar_arrive_expect_tx(a, (int)bytes);
#endif
}
// Makes mbarrier.init visible to the async proxy (the bulk copies).
__device__ __forceinline__ void fence_mbarrier_init() {
#ifdef __CUDA_ARCH__
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
#endif
}
// cp.async.bulk: bytes (a multiple of 16, both addresses 16-byte
// aligned) from global to shared memory by the copy engine, counted off
// the mbarrier's transaction count as they land; read once (decode's K
// and V): L2 evicts them first.
__device__ __forceinline__ void bulk_copy(void *dst, const void *src, unsigned bytes, unsigned mbar) {
#ifdef __CUDA_ARCH__
    unsigned long long policy;
    asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1], %2, [%3], %4;" ::"r"(smem_addr(dst)), "l"(src),
                 "r"(bytes), "r"(mbar), "l"(policy)
                 : "memory");
#else
    emu_bulk_copy(dst, src, (int)bytes, mbar);
#endif
}
#endif

// Online softmax, one row held by a quad of lanes: given this lane's max
// of the row's new scores (raw q·k, -inf where hidden), updates the
// running max m, sets base so that exp2(s · scale · log2 e - base) are the
// new probabilities (unnormalised), and returns the factor that the
// accumulated output and sum must be scaled by.
__device__ __forceinline__ float softmax_rescale(float &m, float lane_max, float sl2, float &base) {
    const float mx = quad_max(fmaxf(m, lane_max));
    // A row that has seen only hidden keys keeps max -inf; a base of 0
    // keeps exp2 at 0 rather than NaN.
    base = mx == neg_inf() ? 0.f : mx * sl2;
    const float corr = fast_exp2(m * sl2 - base); // m = -inf: 0 (sum and output are 0 too)
    m = mx;
    return corr;
}

} // namespace flash

using namespace flash;

extern "C" __global__ void __launch_bounds__(FLASH_PREFILL_BOUNDS) flash_prefill(longctx_attention_params p) {
    extern __shared__ __align__(16) unsigned char flash_smem[];
    bits16 *sQ = reinterpret_cast<bits16 *>(flash_smem);
    bits16 *sK = sQ + BM * LDS;
    bits16 *sV = sK + BN * LDS;
    __shared__ int range[2][WARPS];

    // Blocks start in linear order. One sequence after another (the blocks
    // running at a time then share its K and V in L2); within a sequence
    // heads vary fastest and query tiles go from the last (the most keys
    // under the causal mask) to the first, so the heaviest tiles of every
    // head start first and the lightest fill the end.
    const unsigned lin = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    const unsigned perSeq = gridDim.x * gridDim.y, inSeq = lin % perSeq;
    const int seq = lin / perSeq, head = inSeq % gridDim.y;
    const int q0 = (gridDim.x - 1 - inSeq / gridDim.y) * BM;
    const int nq = min(BM, p.num_q - q0);
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int kvh = head / (p.num_heads / p.num_kv_heads);
    const longctx_kv_head kh = p.k[seq * p.num_kv_heads + kvh];
    const longctx_kv_head vh = p.v[seq * p.num_kv_heads + kvh];
    const long long qrow0 = (long long)seq * p.num_q + q0;
    const bits16 *qsrc = static_cast<const bits16 *>(p.q) + qrow0 * p.q_row_stride + (long long)head * D;
    const int *qpos = p.q_pos + qrow0;
    const int window = p.sliding_window;

    // The range of the block's query positions.
    int lo = tid < nq ? qpos[tid] : 0x7fffffff, hi = tid < nq ? qpos[tid] : -0x7fffffff - 1;
    for (int o = 16; o > 0; o >>= 1) {
        lo = min(lo, __shfl_xor_sync(0xffffffffu, lo, o));
        hi = max(hi, __shfl_xor_sync(0xffffffffu, hi, o));
    }
    if (lane == 0) range[0][warp] = lo, range[1][warp] = hi;
    __syncthreads();
    int qmin = range[0][0], qmax = range[1][0];
    for (int w = 1; w < WARPS; w++) qmin = min(qmin, range[0][w]), qmax = max(qmax, range[1][w]);
    // Keys [kbegin, kend) are visible to some row of the block; a tile
    // needs the element mask where it reaches past kfull (keys visible to
    // every row by causality), the cache's end, or below kwin (keys some
    // row's window hides).
    const int *kpos = kh.pos;
    const int kend = lower_bound(kpos, kh.len, (long long)qmax + 1);
    const int kbegin = window > 0 ? lower_bound(kpos, kend, (long long)qmin - window + 1) : 0;
    const int kfull = lower_bound(kpos, kend, (long long)qmin + 1);
    const int kwin = window > 0 ? lower_bound(kpos, kend, (long long)qmax - window + 1) : 0;

    const bits16 *ksrc = static_cast<const bits16 *>(kh.data);
    const bits16 *vsrc = static_cast<const bits16 *>(vh.data);
    const bool vq = aligned(qsrc, 16) && p.q_row_stride % 8 == 0;
    const bool vk = aligned(ksrc, 16) && kh.row_stride % 8 == 0;
    const bool vv = aligned(vsrc, 16) && vh.row_stride % 8 == 0;

    load_rows<BM, THREADS>(sQ, qsrc, p.q_row_stride, nq, vq);
    load_rows<BN, THREADS>(sK, ksrc + (long long)kbegin * kh.row_stride, kh.row_stride, min(BN, kend - kbegin), vk);
    copy_commit();

    float o[MT][OT][4];
    float m[MT][2], l[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int t = 0; t < OT; t++) o[mt][t][0] = o[mt][t][1] = o[mt][t][2] = o[mt][t][3] = 0.f;
        m[mt][0] = m[mt][1] = neg_inf();
        l[mt][0] = l[mt][1] = 0.f;
    }
    const float sl2 = p.scale * LOG2E;
    const sptr qfrag = frag_a(sQ + warp * WM * LDS, lane), kfrag = frag_bk(sK, lane), vfrag = frag_bv(sV, lane);

    for (int n0 = kbegin; n0 < kend; n0 += BN) {
        const int nk = min(BN, kend - n0);
        copy_wait<0>();
        __syncthreads(); // K of this tile landed; every warp is done with the last V
        load_rows<BN, THREADS>(sV, vsrc + (long long)n0 * vh.row_stride, vh.row_stride, nk, vv);
        copy_commit();

        float s[MT][NT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int t = 0; t < NT; t++) s[mt][t][0] = s[mt][t][1] = s[mt][t][2] = s[mt][t][3] = 0.f;
#pragma unroll
        for (int kt = 0; kt < KT; kt++) {
            unsigned a[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++) ldsm_x4(a[mt], sptr_add(qfrag, mt * 16 * LDS + kt * 16));
#pragma unroll
            for (int np = 0; np < NT / 2; np++) {
                unsigned b[4];
                ldsm_x4(b, sptr_add(kfrag, np * 16 * LDS + kt * 16));
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    mma(s[mt][2 * np], a[mt], b[0], b[1]);
                    mma(s[mt][2 * np + 1], a[mt], b[2], b[3]);
                }
            }
        }
        if (nk < BN || n0 + BN > kfull || (window > 0 && n0 < kwin)) {
            // Rows past num_q take the last real position (never written).
            int rowpos[MT][2];
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int hf = 0; hf < 2; hf++) {
                    const int r = warp * WM + mt * 16 + lane / 4 + hf * 8;
                    rowpos[mt][hf] = r < nq ? qpos[r] : qmax;
                }
#pragma unroll
            for (int t = 0; t < NT; t++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int j = t * 8 + 2 * (lane % 4) + e;
                    const int kp = j < nk ? kpos[n0 + j] : 0;
#pragma unroll
                    for (int mt = 0; mt < MT; mt++)
#pragma unroll
                        for (int hf = 0; hf < 2; hf++)
                            if (j >= nk || !visible(rowpos[mt][hf], kp, window)) s[mt][t][hf * 2 + e] = neg_inf();
                }
        }

        copy_wait<0>();
        __syncthreads(); // V of this tile landed; every warp is done with K
        if (n0 + BN < kend) {
            load_rows<BN, THREADS>(sK, ksrc + (long long)(n0 + BN) * kh.row_stride, kh.row_stride, min(BN, kend - n0 - BN), vk);
            copy_commit();
        }

        // Online softmax of this lane's 2 MT rows at once, reductions as
        // trees, so that the rows' dependency chains interleave.
        float mx[MT][2];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int hf = 0; hf < 2; hf++) {
                float v[NT];
#pragma unroll
                for (int t = 0; t < NT; t++) v[t] = fmaxf(s[mt][t][hf * 2], s[mt][t][hf * 2 + 1]);
#pragma unroll
                for (int w = NT / 2; w > 0; w /= 2)
#pragma unroll
                    for (int t = 0; t < w; t++) v[t] = fmaxf(v[t], v[t + w]);
                mx[mt][hf] = fmaxf(v[0], m[mt][hf]);
            }
#pragma unroll
        for (int o = 1; o <= 2; o *= 2)
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int hf = 0; hf < 2; hf++) mx[mt][hf] = fmaxf(mx[mt][hf], __shfl_xor_sync(0xffffffffu, mx[mt][hf], o));
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int hf = 0; hf < 2; hf++) {
                // A row that has seen only hidden keys keeps max -inf; a base
                // of 0 keeps exp2 at 0 rather than NaN.
                const float base = mx[mt][hf] == neg_inf() ? 0.f : mx[mt][hf] * sl2;
                const float corr = fast_exp2(m[mt][hf] * sl2 - base); // old max -inf: 0
                m[mt][hf] = mx[mt][hf];
                float v[NT];
#pragma unroll
                for (int t = 0; t < NT; t++) {
                    const float x0 = fast_exp2(fmaf(s[mt][t][hf * 2], sl2, -base));
                    const float x1 = fast_exp2(fmaf(s[mt][t][hf * 2 + 1], sl2, -base));
                    s[mt][t][hf * 2] = x0;
                    s[mt][t][hf * 2 + 1] = x1;
                    v[t] = x0 + x1;
                }
#pragma unroll
                for (int w = NT / 2; w > 0; w /= 2)
#pragma unroll
                    for (int t = 0; t < w; t++) v[t] += v[t + w];
                l[mt][hf] = l[mt][hf] * corr + v[0];
                // Once the rows' maxima settle most tiles leave them be:
                // skip the multiplications by 1 when the whole warp can.
#ifdef FLASH_PREFILL_RESCALE_ALWAYS
                {
#else
                if (__any_sync(0xffffffffu, corr != 1.f)) {
#endif
#pragma unroll
                    for (int t = 0; t < OT; t++) o[mt][t][hf * 2] *= corr, o[mt][t][hf * 2 + 1] *= corr;
                }
            }

#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++) {
            unsigned pa[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                pa[mt][0] = pack_bf16(s[mt][2 * kk][0], s[mt][2 * kk][1]);
                pa[mt][1] = pack_bf16(s[mt][2 * kk][2], s[mt][2 * kk][3]);
                pa[mt][2] = pack_bf16(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                pa[mt][3] = pack_bf16(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
            }
#pragma unroll
            for (int dp = 0; dp < OT / 2; dp++) {
                unsigned b[4];
                ldsm_x4_trans(b, sptr_add(vfrag, kk * 16 * LDS + dp * 16));
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    mma(o[mt][2 * dp], pa[mt], b[0], b[1]);
                    mma(o[mt][2 * dp + 1], pa[mt], b[2], b[3]);
                }
            }
        }
    }
    copy_wait<0>();

    bits16 *out = static_cast<bits16 *>(p.out) + qrow0 * p.out_row_stride + (long long)head * D;
    const bool vo = aligned(out, 4) && p.out_row_stride % 2 == 0;
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
            const int r = warp * WM + mt * 16 + lane / 4 + hf * 8;
            const float sum = quad_sum(l[mt][hf]);
            const float inv = sum > 0.f ? 1.f / sum : 0.f;
            if (r >= nq) continue;
            bits16 *dst = out + r * p.out_row_stride + 2 * (lane % 4);
#pragma unroll
            for (int t = 0; t < OT; t++) {
                const float x = o[mt][t][hf * 2] * inv, y = o[mt][t][hf * 2 + 1] * inv;
                if (vo) {
                    *reinterpret_cast<unsigned *>(dst + t * 8) = pack_bf16(x, y);
                } else {
                    dst[t * 8] = f_to_bits(x);
                    dst[t * 8 + 1] = f_to_bits(y);
                }
            }
        }
}

// Prefill on Hopper (sm_90a), head dims 64 and 128 (FLASH_SM90):
// flash_prefill_sm90ws, below, with the helpers here. Warpgroup
// tensor-core products (wgmma) read both operands of S = Q·Kᵀ and the B
// operand of P·V straight from shared memory and leave the threads free
// while they run; P stays in registers as the A operand of P·V. Keys go
// FLASH_SM90_BN (default 64) at a time. Shared tiles use the 128-byte
// swizzle wgmma reads: a tile is D/64 panels of 64 columns, rows of 128
// bytes, 16-byte chunk c of row r stored at chunk c ^ (r % 8), each panel
// 1024-byte aligned. The host emulation (internal/hostemu) runs it in CI.
#ifdef FLASH_SM90
#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
#error "FLASH_SM90: the wgmma prefill needs an sm_90a target"
#endif
namespace flash90 {

using flash::bits16;
using flash::D;

#ifndef FLASH_SM90_BN
#define FLASH_SM90_BN 128
#endif
constexpr int HBM = 128, HBN = FLASH_SM90_BN;
static_assert(D == 64 || D == 128, "the sm_90 prefill takes head dims 64 and 128");
static_assert(HBN == 64 || HBN == 128, "sm_90 prefill key tile: 64 or 128");
constexpr int HQ_BYTES = HBM * D * 2, HKV_BYTES = HBN * D * 2;
constexpr int HNT = HBN / 8;                          // 8-key score tiles per row

// Byte offset of 16-byte chunk c of row r in a swizzled tile of ROWS rows.
template <int ROWS> __device__ __forceinline__ unsigned swizzled(int r, int c) {
    return (c / 8) * (ROWS * 128) + r * 128 + (((c % 8) ^ (r % 8)) << 4);
}

// A wgmma shared-memory matrix descriptor: start address, leading and
// stride byte offsets (each in 16-byte units), 128-byte swizzle.
__device__ __forceinline__ unsigned long long descriptor(unsigned addr, unsigned lead, unsigned stride) {
    return (unsigned long long)((addr & 0x3ffff) >> 4) | (unsigned long long)(lead >> 4) << 16 |
           (unsigned long long)(stride >> 4) << 32 | 1ull << 62;
}

// Shared memory written by this thread's generic stores and cp.async
// copies becomes visible to wgmma (the async proxy) after this fence and
// a barrier.
__device__ __forceinline__ void fence_proxy_async() {
#ifdef __CUDA_ARCH__
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_fence() {
#ifdef __CUDA_ARCH__
    asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_commit() {
#ifdef __CUDA_ARCH__
    asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
#endif
}
template <int N> __device__ __forceinline__ void wgmma_wait() {
#ifdef __CUDA_ARCH__
    asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
#endif
}
// Ties registers to this point, so that the compiler neither reads an
// accumulator before the wgmma that writes it has been waited for nor
// moves a write past the wgmma that reads it.
template <int N> __device__ __forceinline__ void pin(float (&r)[N]) {
#ifdef __CUDA_ARCH__
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+f"(r[i])::"memory");
#endif
}

// d (+)= a · b for one warpgroup, a 64×16 and b 16×N bf16, d 64×N fp32
// (per warp 16 rows, laid out as mma.sync's accumulators, one 8-column
// tile after another). _ss: a and b from shared memory, both K-major;
// accumulate 0 overwrites d. _rs: a from registers (mma.sync's A
// fragment), b MN-major (transposed), d accumulated.
__device__ __forceinline__ void wgmma_ss(float (&d)[32], unsigned long long da, unsigned long long db, int accumulate) {
#ifdef __CUDA_ARCH__
    asm volatile("{ .reg .pred p; setp.ne.b32 p, %34, 0;"
                 " wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, 0; }"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                 : "l"(da), "l"(db), "r"(accumulate));
#else
    emu_wgmma(d, da, db, nullptr, accumulate != 0, false);
#endif
}
__device__ __forceinline__ void wgmma_ss(float (&d)[64], unsigned long long da, unsigned long long db, int accumulate) {
#ifdef __CUDA_ARCH__
    asm volatile("{ .reg .pred p; setp.ne.b32 p, %66, 0;"
                 " wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0; }"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
                 : "l"(da), "l"(db), "r"(accumulate));
#else
    emu_wgmma(d, da, db, nullptr, accumulate != 0, false);
#endif
}
__device__ __forceinline__ void wgmma_rs(float (&d)[32], const unsigned (&a)[4], unsigned long long db) {
#ifdef __CUDA_ARCH__
    asm volatile("{ .reg .pred p; setp.eq.u32 p, 1, 1;"
                 " wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, p, 1, 1, 1; }"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db));
#else
    emu_wgmma(d, 0, db, a, true, true);
#endif
}
__device__ __forceinline__ void wgmma_rs(float (&d)[64], const unsigned (&a)[4], unsigned long long db) {
#ifdef __CUDA_ARCH__
    asm volatile("{ .reg .pred p; setp.eq.u32 p, 1, 1;"
                 " wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1, 1; }"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db));
#else
    emu_wgmma(d, 0, db, a, true, true);
#endif
}


// Hides, in a tile of scores s (this thread's two rows, at positions
// rowpos, against keys n0 + j of kpos, nk of them real), what the mask
// hides: -inf.
__device__ __forceinline__ void mask_scores(float (&s)[HBN / 2], const int (&rowpos)[2], const int *kpos, int n0, int nk, int window) {
    const int lane = threadIdx.x % 32;
#pragma unroll
    for (int t = 0; t < HNT; t++)
#pragma unroll
        for (int e = 0; e < 2; e++) {
            const int j = t * 8 + 2 * (lane % 4) + e;
            const int kp = j < nk ? kpos[n0 + j] : 0;
#pragma unroll
            for (int hf = 0; hf < 2; hf++)
                if (j >= nk || !flash::visible(rowpos[hf], kp, window)) s[4 * t + 2 * hf + e] = flash::neg_inf();
        }
}

// Online softmax of a tile of raw scores s (this thread's two rows, a
// quad of lanes per row): updates the running max m and sum l, turns s
// into unnormalised probabilities and returns in corr the factor the
// output accumulated so far must be scaled by.
__device__ __forceinline__ void online_softmax(float (&s)[HBN / 2], float (&m)[2], float (&l)[2], float (&corr)[2], float sl2) {
    float mx[2];
#pragma unroll
    for (int hf = 0; hf < 2; hf++) {
        float v[HNT];
#pragma unroll
        for (int t = 0; t < HNT; t++) v[t] = fmaxf(s[4 * t + 2 * hf], s[4 * t + 2 * hf + 1]);
#pragma unroll
        for (int w = HNT / 2; w > 0; w /= 2)
#pragma unroll
            for (int t = 0; t < w; t++) v[t] = fmaxf(v[t], v[t + w]);
        mx[hf] = fmaxf(v[0], m[hf]);
    }
#pragma unroll
    for (int sh = 1; sh <= 2; sh *= 2)
#pragma unroll
        for (int hf = 0; hf < 2; hf++) mx[hf] = fmaxf(mx[hf], __shfl_xor_sync(0xffffffffu, mx[hf], sh));
#pragma unroll
    for (int hf = 0; hf < 2; hf++) {
        // A row that has seen only hidden keys keeps max -inf; a base of 0
        // keeps exp2 at 0 rather than NaN.
        const float base = mx[hf] == flash::neg_inf() ? 0.f : mx[hf] * sl2;
        corr[hf] = flash::fast_exp2(m[hf] * sl2 - base);
        m[hf] = mx[hf];
        float v[HNT];
#pragma unroll
        for (int t = 0; t < HNT; t++) {
            const float x0 = flash::fast_exp2(fmaf(s[4 * t + 2 * hf], sl2, -base));
            const float x1 = flash::fast_exp2(fmaf(s[4 * t + 2 * hf + 1], sl2, -base));
            s[4 * t + 2 * hf] = x0;
            s[4 * t + 2 * hf + 1] = x1;
            v[t] = x0 + x1;
        }
#pragma unroll
        for (int w = HNT / 2; w > 0; w /= 2)
#pragma unroll
            for (int t = 0; t < w; t++) v[t] += v[t + w];
        l[hf] = l[hf] * corr[hf] + v[0];
    }
}

// The output's rescale. Always: skipping it under a branch, as
// flash_prefill does, was 4-5 % slower here (bench/RESULTS.md).
__device__ __forceinline__ void rescale(float (&o)[D / 2], const float (&corr)[2]) {
#pragma unroll
    for (int hf = 0; hf < 2; hf++)
#pragma unroll
        for (int t = 0; t < D / 8; t++) o[4 * t + 2 * hf] *= corr[hf], o[4 * t + 2 * hf + 1] *= corr[hf];
}

// Probabilities as the A fragments of P·V, 16 keys each.
__device__ __forceinline__ void p_fragments(const float (&s)[HBN / 2], unsigned (&pa)[HBN / 16][4]) {
#pragma unroll
    for (int kk = 0; kk < HBN / 16; kk++) {
        pa[kk][0] = flash::pack_bf16(s[8 * kk], s[8 * kk + 1]);
        pa[kk][1] = flash::pack_bf16(s[8 * kk + 2], s[8 * kk + 3]);
        pa[kk][2] = flash::pack_bf16(s[8 * kk + 4], s[8 * kk + 5]);
        pa[kk][3] = flash::pack_bf16(s[8 * kk + 6], s[8 * kk + 7]);
    }
}

// Writes this thread's two rows of the normalised output.
__device__ __forceinline__ void store_rows(const float (&o)[D / 2], const float (&l)[2], bits16 *out, long long stride, int r0, int nq) {
    const int lane = threadIdx.x % 32;
    const bool vo = flash::aligned(out, 4) && stride % 2 == 0;
#pragma unroll
    for (int hf = 0; hf < 2; hf++) {
        const int r = r0 + hf * 8;
        const float sum = flash::quad_sum(l[hf]);
        const float inv = sum > 0.f ? 1.f / sum : 0.f;
        if (r >= nq) continue;
        bits16 *dst = out + r * stride + 2 * (lane % 4);
#pragma unroll
        for (int t = 0; t < D / 8; t++) {
            const float x = o[4 * t + 2 * hf] * inv, y = o[4 * t + 2 * hf + 1] * inv;
            if (vo) {
                *reinterpret_cast<unsigned *>(dst + t * 8) = flash::pack_bf16(x, y);
            } else {
                dst[t * 8] = flash::f_to_bits(x);
                dst[t * 8 + 1] = flash::f_to_bits(y);
            }
        }
    }
}

} // namespace flash90

namespace flash90 {

// What a prefill block works on: 128 query rows of one head of one
// sequence, and the keys [kbegin, kend) some of them can see.
struct BlockWork {
    int head, nq, qmax, kbegin, kend, kfull, kwin, window;
    long long qrow0;
    const bits16 *qsrc, *ksrc, *vsrc;
    const int *qpos, *kpos;
    long long kstride, vstride;
    bool vq, vk, vv; // 16-byte aligned rows: cp.async
};

// Block order as flash_prefill's: sequence by sequence, heaviest query
// tiles of every head first. Threads 0-127 read the rows' positions; every
// thread of the block must call this (it synchronises the block).
__device__ __forceinline__ BlockWork block_work(const longctx_attention_params &p, int (&range)[2][4]) {
    BlockWork b;
    const unsigned lin = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    const unsigned perSeq = gridDim.x * gridDim.y, inSeq = lin % perSeq;
    const int seq = lin / perSeq;
    b.head = inSeq % gridDim.y;
    const int q0 = (gridDim.x - 1 - inSeq / gridDim.y) * HBM;
    b.nq = min(HBM, p.num_q - q0);
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int kvh = b.head / (p.num_heads / p.num_kv_heads);
    const longctx_kv_head kh = p.k[seq * p.num_kv_heads + kvh];
    const longctx_kv_head vh = p.v[seq * p.num_kv_heads + kvh];
    b.qrow0 = (long long)seq * p.num_q + q0;
    b.qsrc = static_cast<const bits16 *>(p.q) + b.qrow0 * p.q_row_stride + (long long)b.head * D;
    b.qpos = p.q_pos + b.qrow0;
    b.window = p.sliding_window;

    int lo = tid < b.nq ? b.qpos[tid] : 0x7fffffff, hi = tid < b.nq ? b.qpos[tid] : -0x7fffffff - 1;
    for (int o = 16; o > 0; o >>= 1) {
        lo = min(lo, __shfl_xor_sync(0xffffffffu, lo, o));
        hi = max(hi, __shfl_xor_sync(0xffffffffu, hi, o));
    }
    if (lane == 0 && warp < 4) range[0][warp] = lo, range[1][warp] = hi;
    __syncthreads();
    int qmin = range[0][0];
    b.qmax = range[1][0];
    for (int w = 1; w < 4; w++) qmin = min(qmin, range[0][w]), b.qmax = max(b.qmax, range[1][w]);
    b.kpos = kh.pos;
    b.kend = flash::lower_bound(b.kpos, kh.len, (long long)b.qmax + 1);
    b.kbegin = b.window > 0 ? flash::lower_bound(b.kpos, b.kend, (long long)qmin - b.window + 1) : 0;
    b.kfull = flash::lower_bound(b.kpos, b.kend, (long long)qmin + 1);
    b.kwin = b.window > 0 ? flash::lower_bound(b.kpos, b.kend, (long long)b.qmax - b.window + 1) : 0;
    b.ksrc = static_cast<const bits16 *>(kh.data);
    b.vsrc = static_cast<const bits16 *>(vh.data);
    b.kstride = kh.row_stride;
    b.vstride = vh.row_stride;
    b.vq = flash::aligned(b.qsrc, 16) && p.q_row_stride % 8 == 0;
    b.vk = flash::aligned(b.ksrc, 16) && kh.row_stride % 8 == 0;
    b.vv = flash::aligned(b.vsrc, 16) && vh.row_stride % 8 == 0;
    return b;
}

} // namespace flash90

// flash_prefill_sm90ws: the wgmma prefill with warp specialisation, as in
// FlashAttention-3 but fed by cp.async instead of TMA. A block owns 128
// query rows of one head. Warpgroup 0 only copies K and V into 4 stages
// (mbarriers "full": the copies of a stage landed, "empty": both
// consumers are done with it), with as few instructions as it can
// (copy_kv_lean): its warps share the SM's schedulers with the consumers,
// and a copying loop that computed every chunk's address apart ran 8-12 %
// slower on an H100 (bench/RESULTS.md). Warpgroups 1 and 2 each own 64
// query rows and take turns on the tensor cores (named barriers 1 and 2),
// so that one's softmax runs while the other's products do. Per key tile
// i a consumer issues S(i+1) and P·V(i) in its turn, then turns S(i+1)
// into probabilities while both run.
namespace flash90 {

// K/V stages: 4 measured 1-2 % faster than 3 on an H100, 2 a third
// slower (bench/RESULTS.md).
#ifndef FLASH_SM90_STAGES
#define FLASH_SM90_STAGES 4
#endif
constexpr int WS_STAGES = FLASH_SM90_STAGES, WS_THREADS = 384;
constexpr int WS_SMEM = HQ_BYTES + WS_STAGES * 2 * HKV_BYTES + 1024;
#ifdef FLASH_EXPECT_SM90WS_SMEM
static_assert(FLASH_EXPECT_SM90WS_SMEM == WS_SMEM, "Go's flash_prefill_sm90ws shared memory differs from the kernel's");
#endif

// Arrives on the mbarrier once this thread's cp.async copies so far land.
__device__ __forceinline__ void mbar_arrive_copies(unsigned a) {
#ifdef __CUDA_ARCH__
    asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];" ::"r"(a) : "memory");
#else
    emu_mbar_arrive_copies(a);
#endif
}
__device__ __forceinline__ void bar_sync(int id, int n) {
#ifdef __CUDA_ARCH__
    asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(n) : "memory");
#else
    emu_named_barrier(id, n, true);
#endif
}
__device__ __forceinline__ void bar_arrive(int id, int n) {
#ifdef __CUDA_ARCH__
    asm volatile("bar.arrive %0, %1;" ::"r"(id), "r"(n) : "memory");
#else
    emu_named_barrier(id, n, false);
#endif
}
__device__ __forceinline__ void copy_wait_all() {
#ifdef __CUDA_ARCH__
    asm volatile("cp.async.wait_all;" ::: "memory");
#else
    emu_copy_commit();
    emu_copy_wait(0);
#endif
}
// cp.async of 16 bytes, or 16 zero bytes where !valid (src unread).
__device__ __forceinline__ void copy16_or_zero(void *dst, const void *src, bool valid) {
#ifdef __CUDA_ARCH__
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(flash::smem_addr(dst)), "l"(src), "r"(valid ? 16 : 0) : "memory");
#else
    static const unsigned char zeros[16] = {};
    emu_copy_async(dst, valid ? src : zeros, 16);
#endif
}

// K and V of one tile into a stage, by the copying warpgroup's 128
// threads, for rows 16-byte aligned: thread t copies 16-byte chunk t % CH
// of rows t / CH + RP k (CH chunks a row, RP = 128 / CH rows a pass, a
// multiple of 8, so the swizzle is the same on every pass and the offsets
// are RP · 128 bytes apart): one pointer per matrix walks the tile, a
// handful of registers where the unrolled copy_rows holds every chunk's
// address.
__device__ __forceinline__ void copy_kv_lean(unsigned char *dst, const bits16 *k, const bits16 *v, long long kstride, long long vstride, int n, int t) {
    constexpr int CH = D / 8, RP = 128 / CH;
    static_assert(RP % 8 == 0, "whole swizzle periods a pass");
    const int c = t % CH, r0 = t / CH;
    unsigned char *d = dst + swizzled<HBN>(r0, c);
    const bits16 *pk = k + r0 * kstride + c * 8, *pv = v + r0 * vstride + c * 8;
#pragma unroll 2
    for (int r = r0; r < HBN; r += RP) {
        const bool ok = r < n;
        copy16_or_zero(d, ok ? pk : k, ok);
        copy16_or_zero(d + HKV_BYTES, ok ? pv : v, ok);
        d += RP * 128;
        pk += RP * kstride;
        pv += RP * vstride;
    }
}

// Rows [r0, r0 + ROWS) of a swizzled tile of TILE rows from a D-wide
// matrix (rows stride elements apart, n of the tile's rows real, the rest
// zero), by NT threads of which this is thread t. Returns whether it used
// plain stores (rows not 16-byte aligned) rather than cp.async.
template <int TILE, int ROWS, int NT>
__device__ __forceinline__ bool copy_rows(unsigned char *dst, const bits16 *src, long long stride, int n, bool vec, int r0, int t) {
    constexpr int CH = D / 8;
    static_assert(ROWS * CH % NT == 0, "whole chunks per thread");
    if (vec) {
#pragma unroll
        for (int k = 0; k < ROWS * CH / NT; k++) {
            const int idx = t + k * NT, r = r0 + idx / CH, c = idx % CH;
            copy16_or_zero(dst + swizzled<TILE>(r, c), src + (long long)(r < n ? r : 0) * stride + c * 8, r < n);
        }
        return false;
    }
    for (int idx = t; idx < ROWS * D; idx += NT) {
        const int r = r0 + idx / D, col = idx % D;
        reinterpret_cast<bits16 *>(dst + swizzled<TILE>(r, col / 8))[col % 8] = r < n ? src[r * stride + col] : (bits16)0;
    }
    return true;
}

} // namespace flash90

extern "C" __global__ void __launch_bounds__(flash90::WS_THREADS, 1) flash_prefill_sm90ws(longctx_attention_params p) {
    using namespace flash90;
    extern __shared__ __align__(16) unsigned char flash_smem[];
    __shared__ int range[2][4];
    __shared__ __align__(8) unsigned long long bars[2 * WS_STAGES]; // full[stage], empty[stage]
    unsigned char *sQ = flash_smem + ((1024 - flash::smem_addr(flash_smem) % 1024) % 1024);
    unsigned char *sKV = sQ + HQ_BYTES; // [stage][K, V][HKV_BYTES]
    const unsigned full0 = flash::smem_addr(bars), empty0 = full0 + 8 * WS_STAGES;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, wg = tid / 128;
    if (tid == 0) {
        for (int st = 0; st < WS_STAGES; st++) {
            mbar_init(full0 + 8 * st, 128); // the producer's threads
            mbar_init(empty0 + 8 * st, 8);  // the consumers' warps
        }
    }
    const BlockWork bw = block_work(p, range); // synchronises the block after the init
    const int tiles = (bw.kend - bw.kbegin + HBN - 1) / HBN;

    if (wg == 0) {
        // Producer: tile j into stage j % WS_STAGES once its last tenant
        // (j - WS_STAGES) is released.
        for (int j = 0; j < tiles; j++) {
            const int st = j % WS_STAGES, n0 = bw.kbegin + j * HBN, nk = min(HBN, bw.kend - n0);
            if (j >= WS_STAGES) mbar_wait(empty0 + 8 * st, (j / WS_STAGES - 1) & 1);
            unsigned char *k = sKV + st * 2 * HKV_BYTES;
            if (bw.vk && bw.vv) {
                copy_kv_lean(k, bw.ksrc + (long long)n0 * bw.kstride, bw.vsrc + (long long)n0 * bw.vstride, bw.kstride, bw.vstride, nk, tid);
                mbar_arrive_copies(full0 + 8 * st);
                continue;
            }
            const bool plain = copy_rows<HBN, HBN, 128>(k, bw.ksrc + (long long)n0 * bw.kstride, bw.kstride, nk, bw.vk, 0, tid) |
                               copy_rows<HBN, HBN, 128>(k + HKV_BYTES, bw.vsrc + (long long)n0 * bw.vstride, bw.vstride, nk, bw.vv, 0, tid);
            if (plain) {
                copy_wait_all();
                mbar_arrive(full0 + 8 * st);
            } else {
                mbar_arrive_copies(full0 + 8 * st);
            }
        }
        return;
    }

    const int c = wg - 1; // consumer 0 or 1
    const int ct = tid - 128 * wg;
    copy_rows<HBM, 64, 128>(sQ, bw.qsrc, p.q_row_stride, bw.nq, bw.vq, 64 * c, ct);
    copy_wait_all();
    fence_proxy_async();
    bar_sync(3 + c, 128); // this consumer's Q rows landed

    float o[D / 2];
#pragma unroll
    for (int i = 0; i < D / 2; i++) o[i] = 0.f;
    float m[2] = {flash::neg_inf(), flash::neg_inf()}, l[2] = {0.f, 0.f}, corr[2];
    const float sl2 = p.scale * flash::LOG2E;
    const int r0 = c * 64 + (warp % 4) * 16 + lane / 4;
    int rowpos[2];
#pragma unroll
    for (int hf = 0; hf < 2; hf++) rowpos[hf] = r0 + hf * 8 < bw.nq ? bw.qpos[r0 + hf * 8] : bw.qmax;
    const unsigned qaddr = flash::smem_addr(sQ) + c * 64 * 128, kvaddr = flash::smem_addr(sKV);

    float s[HBN / 2];
    auto issue_scores = [&](int i) {
        const unsigned kaddr = kvaddr + (i % WS_STAGES) * 2 * HKV_BYTES;
        wgmma_fence();
#pragma unroll
        for (int kt = 0; kt < D / 16; kt++)
            wgmma_ss(s, descriptor(qaddr + kt / 4 * (HBM * 128) + kt % 4 * 32, 16, 1024),
                     descriptor(kaddr + kt / 4 * (HBN * 128) + kt % 4 * 32, 16, 1024), kt > 0);
        wgmma_commit();
    };
    // Masks (where the tile needs it) and softmaxes S(i) in s.
    auto probabilities = [&](int i) {
        const int n0 = bw.kbegin + i * HBN, nk = min(HBN, bw.kend - n0);
        if (nk < HBN || n0 + HBN > bw.kfull || (bw.window > 0 && n0 < bw.kwin)) mask_scores(s, rowpos, bw.kpos, n0, nk, bw.window);
        online_softmax(s, m, l, corr, sl2);
    };
    const int mine = 1 + c, other = 2 - c; // named barriers: consumer 0's turn, consumer 1's turn

    if (tiles > 0) {
        if (c == 1) bar_arrive(1, 256); // consumer 0 goes first
        mbar_wait(full0, 0);
        fence_proxy_async();
        bar_sync(mine, 256);
        issue_scores(0);
        bar_arrive(other, 256);
        wgmma_wait<0>();
        pin(s);
        probabilities(0);
        for (int i = 0; i < tiles; i++) {
            const bool next = i + 1 < tiles;
            unsigned pa[HBN / 16][4];
            p_fragments(s, pa);
            if (next) {
                mbar_wait(full0 + 8 * ((i + 1) % WS_STAGES), ((i + 1) / WS_STAGES) & 1);
                fence_proxy_async();
            }
            bar_sync(mine, 256);
            // Issued after the last tile too (stale keys, the result
            // unused): ptxas serialises wgmma issued under a branch.
            issue_scores(i + 1);
            rescale(o, corr);
            pin(o);
            wgmma_fence();
#pragma unroll
            for (int kk = 0; kk < HBN / 16; kk++)
                wgmma_rs(o, pa[kk], descriptor(kvaddr + (i % WS_STAGES) * 2 * HKV_BYTES + HKV_BYTES + kk * 16 * 128, HBN * 128, 1024));
            wgmma_commit();
            if (c == 0 || next) bar_arrive(other, 256); // consumer 1's last turn hands over to no one
            wgmma_wait<1>(); // S(i+1)
            pin(s);
            if (next) probabilities(i + 1);
            wgmma_wait<0>(); // P·V(i)
            pin(o);
            if (lane == 0) mbar_arrive(empty0 + 8 * (i % WS_STAGES));
        }
    }
    store_rows(o, l, static_cast<bits16 *>(p.out) + bw.qrow0 * p.out_row_stride + (long long)bw.head * D, p.out_row_stride, r0, bw.nq);
}
#endif // FLASH_SM90

// Loads CPL consecutive floats of a partial output (read once: through L2,
// ld.global.cg).
__device__ __forceinline__ void load_cg(float (&x)[CPL], const float *p) {
    if constexpr (CPL == 4) {
        const float4 v = __ldcg(reinterpret_cast<const float4 *>(p));
        x[0] = v.x, x[1 % CPL] = v.y, x[2 % CPL] = v.z, x[3 % CPL] = v.w;
    } else if constexpr (CPL == 2) {
        const float2 v = __ldcg(reinterpret_cast<const float2 *>(p));
        x[0] = v.x, x[1 % CPL] = v.y;
    } else {
        x[0] = __ldcg(p);
    }
}

// Starts copying rows [0, n) of a stage's K or V (rows stride elements
// apart) to dst, laid out as drow says, by bulk copies counted on the
// stage's mbarrier: one a row pair where rows are contiguous (mode 2),
// one a row where they are only 16-byte aligned (mode 1); mode 0 copies
// element by element at once. Rows [n, DSTAGE) get zeros (P·V over them
// must be 0, not NaN). Bulk copies are issued by threads [t0, t0 +
// DSTAGE / 2), a row pair each.
__device__ __forceinline__ void stage_rows(unsigned char *dst, const bits16 *src, long long stride, int n, int mode, int t0, unsigned bar) {
    const int tid = threadIdx.x;
    if (mode == 0) {
        for (int idx = tid; idx < DSTAGE * D; idx += DTHREADS) {
            const int r = idx / D, c = idx % D;
            reinterpret_cast<bits16 *>(dst + drow(r))[c] = r < n ? src[r * stride + c] : (bits16)0;
        }
        return;
    }
#if FLASH_DECODE_BULK
    const int pair = tid - t0;
    if (pair >= 0 && pair < DSTAGE / 2 && 2 * pair < n) {
        const bits16 *s = src + 2LL * pair * stride;
        unsigned char *d = dst + drow(2 * pair);
        if (mode == 2) {
            bulk_copy(d, s, (2 * pair + 1 < n ? 2 : 1) * DROW_BYTES, bar);
        } else {
            bulk_copy(d, s, DROW_BYTES, bar);
            if (2 * pair + 1 < n) bulk_copy(d + DROW_BYTES, s + stride, DROW_BYTES, bar);
        }
    }
    constexpr int CH = DROW_BYTES / 16;
    for (int idx = tid; idx < (DSTAGE - n) * CH; idx += DTHREADS)
        reinterpret_cast<uint4 *>(dst + drow(n + idx / CH))[idx % CH] = make_uint4(0u, 0u, 0u, 0u);
#endif
}

extern "C" __global__ void __launch_bounds__(DTHREADS, FLASH_DECODE_MIN_BLOCKS) flash_decode(longctx_attention_params p) {
    extern __shared__ __align__(16) unsigned char flash_smem[];
    unsigned char *sKV = flash_smem; // [DNBUF][K, V] stage matrices of DMAT_BYTES, rows at drow
    bits16 *sQ = reinterpret_cast<bits16 *>(flash_smem + (DEC_BUF_BYTES > DEC_RED_BYTES ? DEC_BUF_BYTES : DEC_RED_BYTES));

    // Launched to overlap the kernel before it (overlap_previous): what
    // that kernel writes (the query, the cache's new row) is read only
    // after this wait. flash_decode_combine, launched to overlap this
    // kernel, may put its blocks beside these at once; it waits for this
    // kernel to complete.
    longctx_wait_previous();
    longctx_launch_dependents();
    const int seq = blockIdx.z, kvh = blockIdx.y, split = blockIdx.x, S = gridDim.x;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    // flash_decode_combine merges the splits; it learns their number here.
    if (split == 0 && kvh == 0 && seq == 0 && tid == 0) *static_cast<unsigned *>(p.workspace) = S;
    const longctx_kv_head kh = p.k[seq * p.num_kv_heads + kvh];
    const longctx_kv_head vh = p.v[seq * p.num_kv_heads + kvh];
    // This split's keys: an equal share of this head's own length in whole
    // stages, so that heads compacted to different lengths and a graph
    // captured for the cache's capacity still divide their real keys evenly.
    const int units = (kh.len + DSTAGE - 1) / DSTAGE;
    const int t0 = (int)((long long)units * split / S) * DSTAGE;
    const int nkeys = min((int)((long long)units * (split + 1) / S) * DSTAGE, kh.len) - t0;
    const int qpos = p.q_pos[seq];
    const int window = p.sliding_window;
    const long long R = (long long)p.num_seqs * p.num_heads;
    const long long row0 = (long long)seq * p.num_heads + (long long)kvh * G; // first query head's row
    const int SMAX = (p.max_kv_len + DTILE - 1) / DTILE; // the workspace's splits a row, >= S
    float *partial = reinterpret_cast<float *>(static_cast<unsigned char *>(p.workspace) + DEC_PARTIAL_OFFSET);
    float2 *stats = reinterpret_cast<float2 *>(static_cast<unsigned char *>(p.workspace) + DEC_PARTIAL_OFFSET + align16(R * SMAX * D * 4));
    const float sl2 = p.scale * LOG2E;

    const bits16 *ksrc = static_cast<const bits16 *>(kh.data) + (long long)t0 * kh.row_stride;
    const bits16 *vsrc = static_cast<const bits16 *>(vh.data) + (long long)t0 * vh.row_stride;
    const int *kpos = kh.pos + t0;
    const bool vk = aligned(ksrc, 16) && kh.row_stride % 8 == 0;
    const bool vv = aligned(vsrc, 16) && vh.row_stride % 8 == 0;
    const int nstages = nkeys > 0 ? (nkeys + DSTAGE - 1) / DSTAGE : 0;

#if FLASH_DECODE_BULK
    const unsigned bars = smem_addr(sQ + 16 * LDS); // an mbarrier a stage
    const int kmode = vk ? (kh.row_stride == D ? 2 : 1) : 0, vmode = vv ? (vh.row_stride == D ? 2 : 1) : 0;
    if (tid == 0)
        for (int b = 0; b < DNBUF; b++) mbar_init(bars + 8 * b, 1);
    fence_mbarrier_init();
    __syncthreads(); // the mbarriers, before any copy counts on them
    auto issue = [&](int st) {
        if (st < nstages) {
            unsigned char *buf = sKV + (st % DNBUF) * 2 * DMAT_BYTES;
            const int n = min(DSTAGE, nkeys - st * DSTAGE);
            const unsigned bar = bars + 8 * (st % DNBUF);
            if (tid == 0) mbar_arrive_expect_tx(bar, ((kmode != 0) + (vmode != 0)) * n * DROW_BYTES);
            stage_rows(buf, ksrc + (long long)st * DSTAGE * kh.row_stride, kh.row_stride, n, kmode, 0, bar);
            stage_rows(buf + DMAT_BYTES, vsrc + (long long)st * DSTAGE * vh.row_stride, vh.row_stride, n, vmode, DSTAGE / 2, bar);
        }
    };
    auto await = [&](int st) { mbar_wait(bars + 8 * (st % DNBUF), (st / DNBUF) & 1); };
#else
    auto issue = [&](int st) {
        if (st < nstages) {
            unsigned char *buf = sKV + (st % DNBUF) * 2 * DMAT_BYTES;
            const int n = min(DSTAGE, nkeys - st * DSTAGE);
            load_rows<DSTAGE, DTHREADS, true>(reinterpret_cast<bits16 *>(buf), ksrc + (long long)st * DSTAGE * kh.row_stride, kh.row_stride, n, vk);
            load_rows<DSTAGE, DTHREADS, true>(reinterpret_cast<bits16 *>(buf + DMAT_BYTES), vsrc + (long long)st * DSTAGE * vh.row_stride, vh.row_stride, n, vv);
        }
        copy_commit();
    };
    auto await = [&](int) {
        copy_wait<DNBUF - 1>();
        __syncthreads(); // stage st landed
    };
#endif
    // The first stages go out before anything else is known: the DRAM
    // latency of the copies then hides that of the positions and Q below.
#pragma unroll
    for (int st = 0; st < DNBUF - 1; st++) issue(st);

    // A split no query sees (no keys, a window behind it, or keys ahead of
    // it) contributes max -inf, which the combine skips. Positions
    // increase: where the query sees the split's first and last keys it
    // sees them all (the usual decode step), and no key's position is read.
    // Q's rows (the G heads of this KV head, rows past G zero) are loaded
    // meanwhile, whether the split is seen or not: the two waits on memory
    // then overlap (and both the copies'), where one after the other they
    // held back the first refill.
    const int first = nkeys > 0 ? kpos[0] : 0, last = nkeys > 0 ? kpos[nkeys - 1] : 0;
    const bits16 *qsrc = static_cast<const bits16 *>(p.q) + (long long)seq * p.q_row_stride + (long long)kvh * G * D;
    if (aligned(qsrc, 16)) {
        for (int idx = tid; idx < 16 * D / 8; idx += DTHREADS) {
            const int r = idx / (D / 8), c = idx % (D / 8) * 8;
            *reinterpret_cast<uint4 *>(sQ + r * LDS + c) = r < G ? *reinterpret_cast<const uint4 *>(qsrc + r * D + c) : make_uint4(0u, 0u, 0u, 0u);
        }
    } else {
        for (int idx = tid; idx < 16 * D; idx += DTHREADS) {
            const int r = idx / D, c = idx % D;
            sQ[r * LDS + c] = r < G ? qsrc[r * D + c] : (bits16)0;
        }
    }
    const bool seen = nkeys > 0 && first <= qpos && !(window > 0 && (long long)qpos - last >= window);
    const bool all_seen = seen && last <= qpos && (window <= 0 || (long long)qpos - first < window);
    if (!seen) {
        // The speculative copies land before the block leaves.
#if FLASH_DECODE_BULK
        for (int st = 0; st < DNBUF - 1 && st < nstages; st++) await(st);
#else
        copy_wait<0>();
#endif
        if (tid < G) stats[(row0 + tid) * SMAX + split] = make_float2(neg_inf(), 0.f);
        return;
    }
    __syncthreads(); // Q

    unsigned qa[KT][4];
#pragma unroll
    for (int kt = 0; kt < KT; kt++) ldsm_x4(qa[kt], sptr_add(frag_a(sQ, lane), kt * 16));

    float o[OT][4];
#pragma unroll
    for (int t = 0; t < OT; t++) o[t][0] = o[t][1] = o[t][2] = o[t][3] = 0.f;
    float m[2] = {neg_inf(), neg_inf()}, l[2] = {0.f, 0.f};
    // This lane's ldmatrix rows in its warp's 16 keys of a stage (frag_bk
    // and frag_bv's, for rows at drow).
    const int krow = warp * 16 + lane / 16 * 8 + lane % 8, kcol = (lane / 8) % 2 * 8;
    const int vrow = warp * 16 + (lane / 8) % 2 * 8 + lane % 8, vcol = lane / 16 * 8;

    // Stage st + DNBUF - 1 goes into stage st - 1's buffer as soon as
    // every warp is done with it, before waiting for stage st: DNBUF
    // stages are then in flight while a block waits.
    for (int st = 0; st < nstages; st++) {
        if (st > 0) __syncthreads(); // every warp is done with stage st - 1's buffer
        issue(st + DNBUF - 1);
        await(st);
        const int kb = st * DSTAGE + warp * 16; // this warp's first key in the split
        if (kb >= nkeys) continue;
        const unsigned char *bK = sKV + (st % DNBUF) * 2 * DMAT_BYTES;
        const sptr kfrag = sptr_of(reinterpret_cast<const bits16 *>(bK + drow(krow)) + kcol);
        const sptr vfrag = sptr_of(reinterpret_cast<const bits16 *>(bK + DMAT_BYTES + drow(vrow)) + vcol);

        float s[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
        for (int kt = 0; kt < KT; kt++) {
            unsigned b[4];
            ldsm_x4(b, sptr_add(kfrag, kt * 16));
            mma(s[0], qa[kt], b[0], b[1]);
            mma(s[1], qa[kt], b[2], b[3]);
        }
#pragma unroll
        for (int t = 0; t < 2; t++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int j = kb + t * 8 + 2 * (lane % 4) + e;
                if (j >= nkeys || (!all_seen && !visible(qpos, kpos[j], window))) s[t][e] = s[t][2 + e] = neg_inf();
            }
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
            float base;
            const float mx = fmaxf(fmaxf(s[0][hf * 2], s[0][hf * 2 + 1]), fmaxf(s[1][hf * 2], s[1][hf * 2 + 1]));
            const float corr = softmax_rescale(m[hf], mx, sl2, base);
            float sum = 0.f;
#pragma unroll
            for (int t = 0; t < 2; t++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const float x = fast_exp2(fmaf(s[t][hf * 2 + e], sl2, -base));
                    s[t][hf * 2 + e] = x;
                    sum += x;
                }
            l[hf] = l[hf] * corr + sum;
#pragma unroll
            for (int t = 0; t < OT; t++) o[t][hf * 2] *= corr, o[t][hf * 2 + 1] *= corr;
        }
        const unsigned pa[4] = {pack_bf16(s[0][0], s[0][1]), pack_bf16(s[0][2], s[0][3]), pack_bf16(s[1][0], s[1][1]),
                                pack_bf16(s[1][2], s[1][3])};
#pragma unroll
        for (int dp = 0; dp < OT / 2; dp++) {
            unsigned b[4];
            ldsm_x4_trans(b, sptr_add(vfrag, dp * 16));
            mma(o[2 * dp], pa, b[0], b[1]);
            mma(o[2 * dp + 1], pa, b[2], b[3]);
        }
    }
#if !FLASH_DECODE_BULK
    copy_wait<0>(); // the last, empty groups
#endif
    __syncthreads(); // the stage buffers become the warps' reduction tiles

    // Per warp, 16 rows of D + 2 floats: the output, then max and sum.
    float *red = reinterpret_cast<float *>(flash_smem);
#pragma unroll
    for (int hf = 0; hf < 2; hf++) {
        const int r = lane / 4 + hf * 8;
        float *w = red + (warp * 16 + r) * (D + 2);
#pragma unroll
        for (int t = 0; t < OT; t++) w[t * 8 + 2 * (lane % 4)] = o[t][hf * 2], w[t * 8 + 2 * (lane % 4) + 1] = o[t][hf * 2 + 1];
        const float sum = quad_sum(l[hf]);
        if (lane % 4 == 0) w[D] = m[hf], w[D + 1] = sum;
    }
    __syncthreads();
    for (int idx = tid; idx < G * D; idx += DTHREADS) {
        const int r = idx / D, c = idx % D;
        float M = neg_inf();
        for (int w = 0; w < DWARPS; w++) M = fmaxf(M, red[(w * 16 + r) * (D + 2) + D]);
        float acc = 0.f, L = 0.f;
        if (M != neg_inf()) {
            for (int w = 0; w < DWARPS; w++) {
                const float *x = red + (w * 16 + r) * (D + 2);
                if (x[D] == neg_inf()) continue;
                const float f = fast_exp2((x[D] - M) * sl2);
                acc += f * x[c];
                L += f * x[D + 1];
            }
        }
        partial[((row0 + r) * SMAX + split) * D + c] = acc;
        if (c == 0) stats[(row0 + r) * SMAX + split] = make_float2(M, L);
    }
}

// A warp per score row (a query head of a sequence), CWARPS rows a block:
// merges the row's S splits. The kernel is launched to overlap
// flash_decode (overlap_previous), so that its blocks, a warp each, sit
// beside flash_decode's and start as soon as it completes. The splits'
// statistics and partial outputs lie at a fixed stride, SMAX splits a row
// (the most a launch can have), so that the first CPF splits' outputs,
// the first 32 splits' statistics and the number of splits are all
// loaded at once: one wait on memory for up to CPF splits. (A block of 16
// warps a row, reading the number of splits, then the statistics, then
// the outputs, without overlap, measured 0.7 µs slower at batch 1 / 32k
// on an H100: bench/RESULTS.md.) Lane j holds split j's statistics (j <
// 32; later splits are read again), the warp finds their max, and each
// lane adds CPL columns of every split's output weighted by exp2 of its
// max's distance, passed by shuffles.
extern "C" __global__ void __launch_bounds__(COMBINE_THREADS) flash_decode_combine(longctx_attention_params p) {
    longctx_wait_previous(); // flash_decode's writes
    longctx_launch_dependents();
    constexpr int CPF = 16;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const long long R = (long long)p.num_seqs * p.num_heads;
    const long long row = (long long)blockIdx.x * CWARPS + warp; // seq * num_heads + head
    // No split ran when no head holds a key (max_kv_len 0: an empty grid),
    // and the header is unwritten then.
    if (row >= R) return;
    const int seq = (int)(row / p.num_heads), head = (int)(row % p.num_heads);
    const int SMAX = (p.max_kv_len + DTILE - 1) / DTILE;
    const unsigned header = SMAX > 0 ? __ldcg(static_cast<const unsigned *>(p.workspace)) : 0u;
    const float *partial = reinterpret_cast<const float *>(static_cast<const unsigned char *>(p.workspace) + DEC_PARTIAL_OFFSET) + row * SMAX * D;
    const float2 *stats = reinterpret_cast<const float2 *>(static_cast<const unsigned char *>(p.workspace) + DEC_PARTIAL_OFFSET + align16(R * SMAX * D * 4)) + row * SMAX;
    const float sl2 = p.scale * LOG2E;
    const int col = lane * CPL;
    const bool cols = col < D;

    // Loaded before the number of splits is known: within the workspace
    // (j < SMAX), used only where j < S.
    float early[CPF][CPL];
#pragma unroll
    for (int j = 0; j < CPF; j++)
        if (j < SMAX && cols) load_cg(early[j], partial + (long long)j * D + col);
    float2 first = lane < SMAX ? __ldcg(stats + lane) : make_float2(neg_inf(), 0.f);
    const int S = min((int)header, SMAX); // never more than the workspace holds
    if (lane >= S) first = make_float2(neg_inf(), 0.f);
    float M = first.x;
    for (int j = lane + 32; j < S; j += 32) M = fmaxf(M, __ldcg(stats + j).x);
    for (int o = 16; o > 0; o >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, o));

    // A split no key of which the query sees has max -inf, weight 0 and
    // an unwritten output, which must not be read as a number.
    auto weight = [&](float2 st, float &L) {
        if (st.x == neg_inf()) return 0.f;
        const float w = fast_exp2((st.x - M) * sl2);
        L += w * st.y;
        return w;
    };
    float acc[CPL], L = 0.f;
#pragma unroll
    for (int c = 0; c < CPL; c++) acc[c] = 0.f;
    float wt = weight(first, L);
#pragma unroll
    for (int j = 0; j < CPF; j++) {
        const float f = __shfl_sync(0xffffffffu, wt, j);
        if (j < S && cols && f != 0.f)
#pragma unroll
            for (int c = 0; c < CPL; c++) acc[c] += f * early[j][c];
    }
    for (int j0 = 0; j0 < S; j0 += 32) {
        if (j0 > 0) wt = j0 + lane < S ? weight(__ldcg(stats + j0 + lane), L) : 0.f;
        const int n = min(32, S - j0);
#pragma unroll 8
        for (int j = j0 == 0 ? CPF : 0; j < n; j++) {
            const float f = __shfl_sync(0xffffffffu, wt, j);
            if (cols && f != 0.f) {
                float x[CPL];
                load_cg(x, partial + (long long)(j0 + j) * D + col);
#pragma unroll
                for (int c = 0; c < CPL; c++) acc[c] += f * x[c];
            }
        }
    }
    for (int o = 16; o > 0; o >>= 1) L += __shfl_xor_sync(0xffffffffu, L, o);
    if (cols) {
        bits16 *out = static_cast<bits16 *>(p.out) + (long long)seq * p.out_row_stride + (long long)head * D + col;
#pragma unroll
        for (int c = 0; c < CPL; c++) out[c] = f_to_bits(L > 0.f ? acc[c] / L : 0.f);
    }
}
