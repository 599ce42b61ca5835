// Streaming ceiling of the decode K/V read on one GPU: how fast can the
// K and V of a decode step (batch B, 8 KV heads, N keys, d 128, bf16,
// rows contiguous per head as the engine lays them out) be read, by which
// copy method and grid? flash_decode's time against these tells what its
// softmax and pipeline cost beyond the read itself (bench/RESULTS.md,
// seventh session on issue 8).
//
//   nvcc -O3 -std=c++17 -arch=sm_90a -o stream tools/decodeprobe/stream.cu
//   ./stream [N [variant]]   # batch 1 and 8, N 32768, every variant
//
// Every variant reads each key's K and V row once, from input sets that
// together hold >= 4x L2 (cold, as bench attention --cold-l2), and is
// timed by CUDA events over many back-to-back launches (plain launches,
// where bench attention replays a graph), sets in turn. Output: one line
// per variant, batch and round, µs per launch and GB/s of K/V read.
#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <cuda_runtime.h>
#include <vector>

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));     \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

constexpr int D = 128;          // head dim
constexpr int ROW = D * 2;      // bytes a key row
constexpr int KVH = 8;          // KV heads
constexpr int LDSB = ROW + 16;  // padded smem pitch, as flash_decode

__device__ __forceinline__ unsigned smem_addr(const void *p) {
    return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// HINT 0: plain; 1: whole 128-byte lines from DRAM (.L2::128B). (With
// the L2 evict-first policy as well, as flash_decode's cp.async path
// copies, this program's kernel stopped on an illegal instruction on an
// H100, the policy made inside or outside the copy's function, while
// flash_decode's own copy runs; that variant is left out.)
template <int HINT> __device__ __forceinline__ void cp16(void *dst, const void *src) {
    if constexpr (HINT == 1) {
        asm volatile("cp.async.cg.shared.global.L2::128B [%0], [%1], 16;" ::"r"(smem_addr(dst)), "l"(src) : "memory");
    } else {
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_addr(dst)), "l"(src) : "memory");
    }
}
__device__ __forceinline__ void commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> __device__ __forceinline__ void wait_group() { asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory"); }

// A block's share of the flattened (sequence, KV head, key) space when
// `flat`: blocks span heads, every block the same number of keys (132 on
// an H100 use every SM); otherwise grid (splits, KV heads, sequences) with
// an equal share of one head, as flash_decode.
struct Range {
    long long first, count; // in rows of the [B * KVH * N] K (and V) matrix
};
__device__ __forceinline__ Range block_range(long long rows_per_head, int heads, bool flat) {
    if (flat) {
        const long long total = rows_per_head * heads, nb = gridDim.x;
        return {total * blockIdx.x / nb, total * (blockIdx.x + 1) / nb - total * blockIdx.x / nb};
    }
    const long long head = (long long)blockIdx.z * KVH + blockIdx.y, S = gridDim.x;
    const long long a = rows_per_head * blockIdx.x / S, b = rows_per_head * (blockIdx.x + 1) / S;
    return {head * rows_per_head + a, b - a};
}

// cp.async 16 bytes a thread into NBUF padded stages of SK rows (K and V),
// the pipeline of flash_decode without its arithmetic: a block barrier,
// issue stage st + NBUF - 1, wait for stage st, barrier, touch it.
template <int SK, int NBUF, int THREADS, int HINT>
__global__ void __launch_bounds__(THREADS, 1) stream_cpasync(const uint4 *__restrict__ K, const uint4 *__restrict__ V, long long rows_per_head, int heads, bool flat, unsigned *sink) {
    extern __shared__ __align__(16) unsigned char smem[];
    const Range r = block_range(rows_per_head, heads, flat);
    constexpr int CH = ROW / 16, RP = THREADS / CH;
    const int c = threadIdx.x % CH, r0 = threadIdx.x / CH;
    const int nst = (int)((r.count + SK - 1) / SK);
    auto issue = [&](int st) {
        if (st < nst) {
            unsigned char *buf = smem + (st % NBUF) * 2 * SK * LDSB;
            const long long base = r.first + (long long)st * SK;
            const int n = (int)min((long long)SK, r.count - (long long)st * SK);
#pragma unroll
            for (int k = 0; k < SK / RP; k++) {
                const int row = r0 + k * RP;
                if (row < n) {
                    cp16<HINT>(buf + row * LDSB + c * 16, K + (base + row) * CH + c);
                    cp16<HINT>(buf + SK * LDSB + row * LDSB + c * 16, V + (base + row) * CH + c);
                }
            }
        }
        commit();
    };
#pragma unroll
    for (int st = 0; st < NBUF - 1; st++) issue(st);
    unsigned acc = 0;
    for (int st = 0; st < nst; st++) {
        if (st > 0) __syncthreads();
        issue(st + NBUF - 1);
        wait_group<NBUF - 1>();
        __syncthreads();
        acc ^= *reinterpret_cast<const unsigned *>(smem + (st % NBUF) * 2 * SK * LDSB + threadIdx.x * 4);
    }
    wait_group<0>();
    if (acc == 0x9e3779b9u) sink[blockIdx.x] = acc; // keeps the reads
}

__device__ __forceinline__ void mbar_init(unsigned a, unsigned n) { asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(a), "r"(n) : "memory"); }
__device__ __forceinline__ void mbar_expect(unsigned a, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(a), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_wait(unsigned a, unsigned parity) {
    asm volatile("{\n .reg .pred p;\n W: mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n @!p bra W;\n}" ::"r"(a), "r"(parity) : "memory");
}
__device__ __forceinline__ void bulk(unsigned dst, const void *src, unsigned bytes, unsigned mbar, unsigned long long pol) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1], %2, [%3], %4;" ::"r"(dst), "l"(src), "r"(bytes), "r"(mbar), "l"(pol)
                 : "memory");
}

// Bulk copies (the TMA engine, no tensor map), one per R consecutive rows
// (R * 256 bytes) of K or V, the pieces GAP bytes apart beyond their size
// (pitch R * 256 + GAP); an mbarrier per stage counts the bytes, thread 0
// arms it. R = SK, GAP 0: one copy a matrix and stage, rows unpadded. R =
// 1, GAP 16: a copy a row into rows padded as flash_decode's ldmatrix
// needs them (272 bytes). GAP 16 puts rows r and r + R in different banks,
// so 8 rows R apart load without conflicts; GAP also sets the
// destinations' alignment.
template <int SK, int NBUF, int R, int THREADS, int GAP>
__global__ void __launch_bounds__(THREADS, 1) stream_bulk(const uint4 *__restrict__ K, const uint4 *__restrict__ V, long long rows_per_head, int heads, bool flat, unsigned *sink) {
    constexpr int PIECES = SK / R, PITCH = R * ROW + GAP, MAT = PIECES * PITCH;
    static_assert(2 * PIECES <= THREADS, "a piece a thread");
    extern __shared__ __align__(16) unsigned char smem[];
    __shared__ __align__(8) unsigned long long bars[NBUF];
    const Range r = block_range(rows_per_head, heads, flat);
    unsigned long long pol;
    asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(pol));
    const int nst = (int)((r.count + SK - 1) / SK);
    if (threadIdx.x == 0)
        for (int i = 0; i < NBUF; i++) mbar_init(smem_addr(&bars[i]), 1);
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    __syncthreads();
    const int t = threadIdx.x, piece = t % PIECES;
    const uint4 *src = (t < PIECES ? K : V) + (r.first + piece * R) * (ROW / 16);
    auto issue = [&](int st) {
        if (st < nst) {
            const int n = (int)min((long long)SK, r.count - (long long)st * SK);
            const unsigned b = smem_addr(&bars[st % NBUF]);
            if (t == 0) mbar_expect(b, 2u * n * ROW);
            const int rows = min(R, n - piece * R);
            if (t < 2 * PIECES && rows > 0)
                bulk(smem_addr(smem + (st % NBUF) * 2 * MAT + (t / PIECES) * MAT + piece * PITCH), src + (long long)st * SK * (ROW / 16), rows * ROW, b, pol);
        }
    };
    for (int st = 0; st < NBUF - 1; st++) issue(st);
    unsigned acc = 0;
    for (int st = 0; st < nst; st++) {
        if (st > 0) __syncthreads();
        issue(st + NBUF - 1);
        mbar_wait(smem_addr(&bars[st % NBUF]), (st / NBUF) & 1);
        acc ^= *reinterpret_cast<const unsigned *>(smem + (st % NBUF) * 2 * MAT + threadIdx.x * 4);
    }
    if (acc == 0x9e3779b9u) sink[blockIdx.x] = acc;
}

// Plain loads into registers, 16 bytes a thread, UNROLL in flight: the
// classic read-bandwidth kernel, over the same ranges.
template <int THREADS, int UNROLL>
__global__ void __launch_bounds__(THREADS) stream_ldg(const uint4 *__restrict__ K, const uint4 *__restrict__ V, long long rows_per_head, int heads, bool flat, unsigned *sink) {
    const Range r = block_range(rows_per_head, heads, flat);
    const long long first = r.first * (ROW / 16), n = r.count * (ROW / 16);
    unsigned acc = 0;
    for (long long i = threadIdx.x; i < n; i += (long long)THREADS * UNROLL) {
        uint4 a[UNROLL], b[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            const long long j = i + (long long)u * THREADS;
            if (j < n) {
                a[u] = __ldcs(K + first + j);
                b[u] = __ldcs(V + first + j);
            } else {
                a[u] = b[u] = make_uint4(0, 0, 0, 0);
            }
        }
#pragma unroll
        for (int u = 0; u < UNROLL; u++) acc ^= a[u].x ^ a[u].w ^ b[u].y ^ b[u].z;
    }
    if (acc == 0x9e3779b9u) sink[blockIdx.x] = acc;
}

typedef void (*Kernel)(const uint4 *, const uint4 *, long long, int, bool, unsigned *);

struct Variant {
    const char *name;
    Kernel k;
    int threads, smem;
    bool flat;
    int blocks_per_sm; // resident blocks an SM, for the grid
};

int main(int argc, char **argv) {
    const long long N = argc > 1 ? atoll(argv[1]) : 32768;
    const int only = argc > 2 ? atoi(argv[2]) : -1; // one variant, by index
    int sms = 0;
    CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    int l2 = 0;
    CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, 0));
    cudaDeviceProp prop;
    CHECK(cudaGetDeviceProperties(&prop, 0));
    printf("# %s, %d SMs, L2 %d MiB, N %lld\n", prop.name, sms, l2 >> 20, N);

    const int cp_smem_128x2 = 2 * 2 * 128 * LDSB, cp_smem_64x4 = 4 * 2 * 64 * LDSB, cp_smem_64x2 = 2 * 2 * 64 * LDSB;
    const int bulk_smem_128x2 = 2 * 2 * 128 * ROW, bulk_smem_128x3 = 3 * 2 * 128 * ROW, bulk_smem_64x4 = 4 * 2 * 64 * ROW;
    std::vector<Variant> vs = {
        {"cp.async 2x128 keys, 256 thr, .L2::128B", stream_cpasync<128, 2, 256, 1>, 256, cp_smem_128x2, false, 1},
        {"cp.async 2x128, 256 thr, no 128B", stream_cpasync<128, 2, 256, 0>, 256, cp_smem_128x2, false, 1},
        {"cp.async 2x128, 256 thr, 128B, flat 1/SM", stream_cpasync<128, 2, 256, 1>, 256, cp_smem_128x2, true, 1},
        {"cp.async 4x64, 256 thr, 128B", stream_cpasync<64, 4, 256, 1>, 256, cp_smem_64x4, false, 1},
        {"cp.async 2x64, 128 thr, 128B, 2/SM", stream_cpasync<64, 2, 128, 1>, 128, cp_smem_64x2, false, 2},
        {"cp.async 2x64, 128 thr, 128B, flat 2/SM", stream_cpasync<64, 2, 128, 1>, 128, cp_smem_64x2, true, 2},
        {"bulk 2x128 keys", stream_bulk<128, 2, 128, 256, 0>, 256, bulk_smem_128x2, false, 1},
        {"bulk 3x128 keys", stream_bulk<128, 3, 128, 256, 0>, 256, bulk_smem_128x3, false, 1},
        {"bulk 4x64 keys", stream_bulk<64, 4, 64, 256, 0>, 256, bulk_smem_64x4, false, 1},
        {"bulk 3x128, flat 1/SM", stream_bulk<128, 3, 128, 256, 0>, 256, bulk_smem_128x3, true, 1},
        {"ldg 256 thr x4, 2/SM", stream_ldg<256, 4>, 256, 0, false, 2},
        {"ldg 512 thr x4, 2/SM, flat", stream_ldg<512, 4>, 512, 0, true, 2},
        {"ldg 256 thr x8, 4/SM, flat", stream_ldg<256, 8>, 256, 0, true, 4},
        {"bulk rows 3x128 (padded)", stream_bulk<128, 3, 1, 256, 16>, 256, 3 * 2 * 128 * LDSB, false, 1},
        {"bulk rows 4x64 (padded)", stream_bulk<64, 4, 1, 256, 16>, 256, 4 * 2 * 64 * LDSB, false, 1},
        {"bulk rows 2x128 (padded)", stream_bulk<128, 2, 1, 256, 16>, 256, 2 * 2 * 128 * LDSB, false, 1},
        {"bulk rows 6x64 (padded)", stream_bulk<64, 6, 1, 256, 16>, 256, 6 * 2 * 64 * LDSB, false, 1},
        {"bulk 2-row pieces 3x128", stream_bulk<128, 3, 2, 256, 16>, 256, 3 * 2 * 64 * (2 * ROW + 16), false, 1},
        {"bulk 4-row pieces 3x128", stream_bulk<128, 3, 4, 256, 16>, 256, 3 * 2 * 32 * (4 * ROW + 16), false, 1},
        {"bulk 8-row pieces 3x128", stream_bulk<128, 3, 8, 256, 16>, 256, 3 * 2 * 16 * (8 * ROW + 16), false, 1},
        {"bulk 16-row pieces 3x128", stream_bulk<128, 3, 16, 256, 16>, 256, 3 * 2 * 8 * (16 * ROW + 16), false, 1},
        {"bulk 2-row pieces 4x64", stream_bulk<64, 4, 2, 256, 16>, 256, 4 * 2 * 32 * (2 * ROW + 16), false, 1},
        {"bulk 2-row pieces 3x128 gap 0", stream_bulk<128, 3, 2, 256, 0>, 256, 3 * 2 * 64 * (2 * ROW + 0), false, 1},
        {"bulk 2-row pieces 3x128 gap 32", stream_bulk<128, 3, 2, 256, 32>, 256, 3 * 2 * 64 * (2 * ROW + 32), false, 1},
        {"bulk 2-row pieces 3x128 gap 64", stream_bulk<128, 3, 2, 256, 64>, 256, 3 * 2 * 64 * (2 * ROW + 64), false, 1},
        {"bulk 2-row pieces 4x64 gap 128", stream_bulk<64, 4, 2, 256, 128>, 256, 4 * 2 * 32 * (2 * ROW + 128), false, 1},
        {"bulk 16-row pieces 3x128 gap 0", stream_bulk<128, 3, 16, 256, 0>, 256, 3 * 2 * 8 * (16 * ROW + 0), false, 1},
        {"bulk 16-row pieces 3x128 gap 128", stream_bulk<128, 3, 16, 256, 128>, 256, 3 * 2 * 8 * (16 * ROW + 128), false, 1},
        {"bulk 2-row pieces 4x64 gap 32", stream_bulk<64, 4, 2, 256, 32>, 256, 4 * 2 * 32 * (2 * ROW + 32), false, 1},
    };
    std::vector<bool> fits(vs.size(), true);
    for (size_t i = 0; i < vs.size(); i++)
        if (vs[i].smem > 48 * 1024 && cudaFuncSetAttribute(vs[i].k, cudaFuncAttributeMaxDynamicSharedMemorySize, vs[i].smem) != cudaSuccess) {
            cudaGetLastError();
            fits[i] = false; // more shared memory than a block may have: skipped
        }
    unsigned *sink;
    CHECK(cudaMalloc(&sink, 4096 * sizeof(unsigned)));

    for (int B : {1, 8}) {
        const long long rows = (long long)B * KVH * N, bytes = rows * ROW; // per matrix
        int sets = 1;
        while (sets < 64 && (long long)sets * 2 * bytes < 4LL * l2) sets++;
        if (B == 1 && sets < 8) sets = 8;
        std::vector<uint4 *> Ks(sets), Vs(sets);
        for (int s = 0; s < sets; s++) {
            CHECK(cudaMalloc(&Ks[s], bytes));
            CHECK(cudaMalloc(&Vs[s], bytes));
            CHECK(cudaMemset(Ks[s], s + 1, bytes));
            CHECK(cudaMemset(Vs[s], s + 2, bytes));
        }
        cudaEvent_t e0, e1;
        CHECK(cudaEventCreate(&e0));
        CHECK(cudaEventCreate(&e1));
        for (int round = 0; round < 2; round++) {
            for (size_t vi = 0; vi < vs.size(); vi++) {
                const Variant &v = vs[vi];
                if ((only >= 0 && (int)vi != only) || !fits[vi]) continue;
                const int resident = sms * v.blocks_per_sm;
                const dim3 grid = v.flat ? dim3(resident) : dim3(std::max(1, resident / (KVH * B)), KVH, B);
                auto launch = [&](int i) { v.k<<<grid, v.threads, v.smem>>>(Ks[i % sets], Vs[i % sets], N, B * KVH, v.flat, sink); };
                for (int i = 0; i < 2 * sets; i++) launch(i);
                CHECK(cudaGetLastError());
                CHECK(cudaDeviceSynchronize());
                const int reps = std::max(4 * sets, B == 1 ? 200 : 40);
                CHECK(cudaEventRecord(e0));
                for (int i = 0; i < reps; i++) launch(i);
                CHECK(cudaEventRecord(e1));
                CHECK(cudaEventSynchronize(e1));
                float ms;
                CHECK(cudaEventElapsedTime(&ms, e0, e1));
                const double us = 1000.0 * ms / reps;
                printf("round %d batch %d grid %dx%dx%d %-52s %8.1f us %7.0f GB/s\n", round, B, grid.x, grid.y, grid.z, v.name, us, 2.0 * bytes / us / 1e3);
            }
        }
        for (int s = 0; s < sets; s++) {
            CHECK(cudaFree(Ks[s]));
            CHECK(cudaFree(Vs[s]));
        }
    }
    return 0;
}
