// Host emulation of the CUDA subset the attention plugins' kernels use,
// for their CPU tests: one OS thread per CUDA thread, one block at a time,
// so __shared__ variables (made static) and the dynamic shared memory
// array are the block's. WMMA fragments are whole matrices in every lane;
// ldmatrix and mma.sync exchange their lanes' registers through the warp
// as the hardware does; wgmma (at issue, from 128-byte-swizzled
// descriptors), mbarriers and named barriers are emulated for the Hopper
// kernels. It checks the kernels' indexing, fragment layouts,
// masking, tiling, workspace layout and cp.async waits, not their speed or
// the GPU's memory model.
#pragma once
#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <cstdio>
#include <cstring>
#include <math.h>
#include <thread>
#include <type_traits>
#include <vector>

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))

struct emu_uint3 { unsigned x, y, z; };
struct dim3 { unsigned x = 1, y = 1, z = 1; };
extern thread_local emu_uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;

struct uint4 { unsigned x, y, z, w; };
struct uint2 { unsigned x, y; };
struct float2 { float x, y; };
struct float4 { float x, y, z, w; };
inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return {a, b, c, d}; }
inline float2 make_float2(float a, float b) { return {a, b}; }
inline float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }

inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
inline float __uint_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }
inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }

// A barrier whose threads may leave for good (a returning CUDA thread).
// One atomic word holds the phase, the threads arrived and the threads
// expected. Waiters spin and yield: the emulation runs far more threads
// than cores, and a futex wake per barrier costs more than polling.
class emu_barrier {
    std::atomic<uint64_t> state; // phase << 32 | arrived << 16 | expected
    static uint64_t pack(uint64_t phase, uint64_t arrived, uint64_t expected) { return phase << 32 | arrived << 16 | expected; }
public:
    explicit emu_barrier(int n) : state(pack(0, 0, n)) {}
    void wait() {
        uint64_t s = state.load();
        for (;;) {
            const uint64_t phase = s >> 32, arrived = s >> 16 & 0xffff, expected = s & 0xffff;
            const bool last = arrived + 1 == expected;
            if (state.compare_exchange_weak(s, last ? pack(phase + 1, 0, expected) : pack(phase, arrived + 1, expected))) {
                if (!last)
                    while (state.load() >> 32 == phase) std::this_thread::yield();
                return;
            }
        }
    }
    void drop() {
        uint64_t s = state.load();
        for (;;) {
            const uint64_t phase = s >> 32, arrived = s >> 16 & 0xffff, expected = (s & 0xffff) - 1;
            const bool release = arrived > 0 && arrived == expected;
            if (state.compare_exchange_weak(s, release ? pack(phase + 1, 0, expected) : pack(phase, arrived, expected))) return;
        }
    }
    // reset readmits n threads; none may be waiting.
    void reset(int n) { state.store(pack(state.load() >> 32, 0, n)); }
};

struct emu_block {
    emu_barrier *block;
    std::vector<emu_barrier *> warps;
    std::vector<uint32_t> lanes;     // shuffle exchange, 32 per warp
    std::vector<const void *> ptrs;  // ldmatrix row addresses, 32 per warp
    std::vector<uint32_t> frags;     // mma operands, 32 lanes x 10 words per warp
    std::atomic<uint64_t> named[16]; // bar.sync / bar.arrive: phase << 32 | arrived
};
extern thread_local emu_block *emu_this_block;

// Programmatic dependent launch: launch.h declares its helpers for the
// CUDA compiler only; the emulation runs kernels one after another.
inline void longctx_wait_previous() {}
inline void longctx_launch_dependents() {}

inline void __syncthreads() { emu_this_block->block->wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu_this_block->warps[threadIdx.x / 32]->wait(); }
template <class T> inline T __shfl_xor_sync(unsigned, T v, int lane_mask) {
    static_assert(sizeof(T) == 4, "32-bit shuffles only");
    const int w = threadIdx.x / 32, l = threadIdx.x % 32;
    memcpy(&emu_this_block->lanes[32 * w + l], &v, 4);
    emu_this_block->warps[w]->wait();
    T out;
    memcpy(&out, &emu_this_block->lanes[32 * w + (l ^ lane_mask)], 4);
    emu_this_block->warps[w]->wait();
    return out;
}

template <class T> inline T __shfl_sync(unsigned, T v, int src) {
    static_assert(sizeof(T) == 4, "32-bit shuffles only");
    const int w = threadIdx.x / 32, l = threadIdx.x % 32;
    memcpy(&emu_this_block->lanes[32 * w + l], &v, 4);
    emu_this_block->warps[w]->wait();
    T out;
    memcpy(&out, &emu_this_block->lanes[32 * w + src % 32], 4);
    emu_this_block->warps[w]->wait();
    return out;
}

inline bool __any_sync(unsigned, bool pred) {
    const int w = threadIdx.x / 32, l = threadIdx.x % 32;
    emu_this_block->lanes[32 * w + l] = pred;
    emu_this_block->warps[w]->wait();
    bool any = false;
    for (int i = 0; i < 32; i++) any = any || emu_this_block->lanes[32 * w + i];
    emu_this_block->warps[w]->wait();
    return any;
}

// ldmatrix.x4 (.trans): lane l gives the address of row l % 8 of 8x8
// 16-bit matrix l / 8 and receives, of each matrix i, the pair at row
// l / 4, columns 2 (l % 4) and +1 (of the transpose with trans).
inline void emu_ldmatrix_x4(unsigned r[4], const void *p, bool trans) {
    const int w = threadIdx.x / 32, l = threadIdx.x % 32;
    emu_this_block->ptrs[32 * w + l] = p;
    emu_this_block->warps[w]->wait();
    const auto at = [&](int m, int row, int col) {
        uint16_t v;
        memcpy(&v, static_cast<const unsigned char *>(emu_this_block->ptrs[32 * w + 8 * m + row]) + 2 * col, 2);
        return (unsigned)v;
    };
    const int g = l / 4, t = l % 4;
    for (int m = 0; m < 4; m++)
        r[m] = trans ? at(m, 2 * t, g) | at(m, 2 * t + 1, g) << 16 : at(m, g, 2 * t) | at(m, g, 2 * t + 1) << 16;
    emu_this_block->warps[w]->wait();
}

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 with c as both the
// addend and the result: each lane's a (4 registers of bf16 pairs), b (2)
// and c (4) go through the warp, then every lane computes its own
// elements of c + a b.
inline void emu_mma_m16n8k16(float c[4], const unsigned a[4], unsigned b0, unsigned b1) {
    const int w = threadIdx.x / 32, l = threadIdx.x % 32;
    uint32_t *f = &emu_this_block->frags[320 * w];
    for (int i = 0; i < 4; i++) f[10 * l + i] = a[i];
    f[10 * l + 4] = b0;
    f[10 * l + 5] = b1;
    emu_this_block->warps[w]->wait();
    const auto half = [](uint32_t x, int hi) { return __uint_as_float((hi ? x >> 16 : x & 0xffffu) << 16); };
    // A[r][k] sits in lane (r % 8) * 4 + (k % 8) / 2, register (r >= 8) + 2 (k >= 8);
    // B[k][n] in lane n * 4 + (k % 8) / 2, register 4 + (k >= 8).
    const auto A = [&](int r, int k) { return half(f[10 * ((r % 8) * 4 + (k % 8) / 2) + (r >= 8) + 2 * (k >= 8)], k % 2); };
    const auto B = [&](int k, int n) { return half(f[10 * (n * 4 + (k % 8) / 2) + 4 + (k >= 8)], k % 2); };
    float out[4];
    for (int i = 0; i < 4; i++) {
        const int r = l / 4 + (i >= 2 ? 8 : 0), n = 2 * (l % 4) + i % 2;
        float s = c[i];
        for (int k = 0; k < 16; k++) s += A(r, k) * B(k, n);
        out[i] = s;
    }
    emu_this_block->warps[w]->wait();
    for (int i = 0; i < 4; i++) c[i] = out[i];
}

// cp.async. A copy lands at its issue (emu_copy_late false) or as late as
// the wait allows (true), so that a missing wait or a miscounted group
// shows as stale data in one of the two runs. A thread that ends with a
// non-empty group it never waited for counts in emu_copy_unwaited.
extern bool emu_copy_late;
extern std::atomic<int> emu_copy_unwaited;
struct emu_copy { void *dst; const void *src; int n; };
struct emu_copies {
    std::vector<emu_copy> open;
    std::deque<std::vector<emu_copy>> groups;
};
extern thread_local emu_copies emu_this_copies;
inline void emu_copy_async(void *dst, const void *src, int n) {
    if (emu_copy_late) emu_this_copies.open.push_back({dst, src, n});
    else memcpy(dst, src, n);
}
inline void emu_copy_commit() {
    emu_this_copies.groups.push_back(std::move(emu_this_copies.open));
    emu_this_copies.open.clear();
}
inline void emu_copy_wait(int n) {
    auto &g = emu_this_copies.groups;
    for (; (int)g.size() > n; g.pop_front())
        for (const emu_copy &c : g.front()) memcpy(c.dst, c.src, c.n);
}
inline void emu_copy_end() {
    auto &c = emu_this_copies;
    bool pending = !c.open.empty();
    for (auto &g : c.groups) pending = pending || !g.empty();
    if (pending) emu_copy_unwaited++;
    c.open.clear();
    c.groups.clear();
}

// Shared-memory addresses (the 32-bit operands of ldmatrix, cp.async,
// wgmma descriptors, mbarriers): offsets from the driver's dynamic shared
// memory array, emu_smem_base (static __shared__ variables lie elsewhere
// and get offsets that wrap; they only round-trip through emu_smem_ptr).
extern unsigned char *emu_smem_base;
inline unsigned emu_smem_addr(const void *p) { return (unsigned)((uintptr_t)p - (uintptr_t)emu_smem_base); }
inline unsigned char *emu_smem_ptr(unsigned a) { return emu_smem_base + (int32_t)a; }

// mbarrier: a 64-bit word in shared memory holding phase << 48 |
// tx << 32 | pending << 16 | expected, tx the transaction count (bytes
// still to land, in 16-byte units, signed: a bulk copy may land before
// the arrival that expects it); a phase completes when no arrival is
// pending and tx is 0. try_wait.parity(P) succeeds once the phase of
// parity P has completed.
inline std::atomic<uint64_t> *emu_mbar(unsigned a) { return reinterpret_cast<std::atomic<uint64_t> *>(emu_smem_ptr(a)); }
inline void emu_mbar_init(unsigned a, unsigned count) { emu_mbar(a)->store((uint64_t)count << 16 | count); }
// Adds dtx units to the transaction count and, with arrive, one arrival.
inline void emu_mbar_update(unsigned a, int dtx, bool arrive) {
    auto *m = emu_mbar(a);
    uint64_t s = m->load();
    for (;;) {
        const uint64_t phase = s >> 48, expected = s & 0xffff;
        uint64_t pending = s >> 16 & 0xffff;
        const int tx = (int16_t)(s >> 32 & 0xffff) + dtx;
        if (arrive) {
            if (pending == 0) {
                fprintf(stderr, "emu: arrival on a completed mbarrier\n");
                abort();
            }
            pending--;
        }
        if (tx < -32768 || tx > 32767) {
            fprintf(stderr, "emu: mbarrier transaction count %d out of range\n", tx);
            abort();
        }
        const uint64_t next = pending == 0 && tx == 0 ? (phase + 1) << 48 | expected << 16 | expected
                                                      : phase << 48 | (uint64_t)(uint16_t)tx << 32 | pending << 16 | expected;
        if (m->compare_exchange_weak(s, next)) return;
    }
}
inline void emu_mbar_arrive(unsigned a) { emu_mbar_update(a, 0, true); }
inline int emu_tx_units(int bytes) {
    if (bytes % 16 != 0) {
        fprintf(stderr, "emu: bulk copy of %d bytes, not a multiple of 16\n", bytes);
        abort();
    }
    return bytes / 16;
}
// mbarrier.arrive.expect_tx: the phase now also waits for bytes more.
inline void emu_mbar_arrive_expect_tx(unsigned a, int bytes) { emu_mbar_update(a, emu_tx_units(bytes), true); }
// cp.async.mbarrier.arrive: with emu_copy_late the thread's copies and
// its arrival wait on the mbarrier until a thread waits on it, so that
// data read without waiting on the right barrier is stale; otherwise the
// copies land now. cp.async.bulk the same, its bytes counted off the
// transaction count instead of an arrival.
struct emu_deferred_landing {
    std::vector<emu_copy> copies;
    bool arrive; // else each copy completes its bytes
};
struct emu_deferred_arrivals {
    std::mutex mu;
    std::map<unsigned, std::vector<emu_deferred_landing>> at; // by mbarrier address
};
extern emu_deferred_arrivals emu_deferred;
inline void emu_mbar_arrive_copies(unsigned a) {
    emu_copy_commit();
    if (!emu_copy_late) {
        emu_copy_wait(0);
        emu_mbar_arrive(a);
        return;
    }
    std::vector<emu_copy> mine;
    for (auto &g : emu_this_copies.groups)
        for (const emu_copy &c : g) mine.push_back(c);
    emu_this_copies.groups.clear();
    std::lock_guard<std::mutex> lock(emu_deferred.mu);
    emu_deferred.at[a].push_back({std::move(mine), true});
}
inline void emu_bulk_copy(void *dst, const void *src, int bytes, unsigned a) {
    const int units = emu_tx_units(bytes);
    if (((uintptr_t)dst | (uintptr_t)src) % 16 != 0) {
        fprintf(stderr, "emu: bulk copy between addresses not 16-byte aligned\n");
        abort();
    }
    if (!emu_copy_late) {
        memcpy(dst, src, bytes);
        emu_mbar_update(a, -units, false);
        return;
    }
    std::lock_guard<std::mutex> lock(emu_deferred.mu);
    emu_deferred.at[a].push_back({{{dst, src, bytes}}, false});
}
inline void emu_mbar_land(unsigned a) {
    std::vector<emu_deferred_landing> due;
    {
        std::lock_guard<std::mutex> lock(emu_deferred.mu);
        auto it = emu_deferred.at.find(a);
        if (it == emu_deferred.at.end()) return;
        due.swap(it->second);
    }
    for (auto &d : due) {
        for (const emu_copy &c : d.copies) {
            memcpy(c.dst, c.src, c.n);
            if (!d.arrive) emu_mbar_update(a, -emu_tx_units(c.n), false);
        }
        if (d.arrive) emu_mbar_arrive(a);
    }
}
inline void emu_mbar_wait(unsigned a, unsigned parity) {
    for (;;) {
        emu_mbar_land(a);
        if ((emu_mbar(a)->load() >> 48 & 1) != parity) return;
        std::this_thread::yield();
    }
}

// bar.sync (wait) and bar.arrive (not) on named barrier id of n threads.
inline void emu_named_barrier(int id, int n, bool wait) {
    std::atomic<uint64_t> &b = emu_this_block->named[id];
    uint64_t s = b.load();
    for (;;) {
        const uint64_t phase = s >> 32, arrived = s & 0xffffffffu;
        const bool last = (int)arrived + 1 == n;
        if (b.compare_exchange_weak(s, last ? (phase + 1) << 32 : phase << 32 | (arrived + 1))) {
            if (wait && !last)
                while (b.load() >> 32 == phase) std::this_thread::yield();
            return;
        }
    }
}

// wgmma.mma_async m64nNk16 bf16 → f32 for one warpgroup, at issue (the
// emulation does not defer it to the wait). Operands in shared memory come
// through 128-byte-swizzled matrix descriptors: A and B K-major (B as N
// rows of K), or with tnsp_b B MN-major (K rows of N). With a_regs, A is
// the warp's mma.sync-style fragments, exchanged through the warp. Each
// thread computes its own accumulators: warp w of the group holds rows
// 16 w + lane / 4 (+ 8), columns 8 (i / 4) + 2 (lane % 4) + i % 2.
struct emu_desc {
    unsigned start, lead, stride;
    explicit emu_desc(unsigned long long d) : start((d & 0x3fff) << 4), lead((d >> 16 & 0x3fff) << 4), stride((d >> 32 & 0x3fff) << 4) {
        if (d >> 62 != 1) {
            fprintf(stderr, "emu: wgmma descriptor without the 128-byte swizzle\n");
            abort();
        }
    }
    static float at(unsigned addr) {
        addr ^= (addr >> 7 & 7) << 4; // Swizzle<3,4,3>
        uint16_t v;
        memcpy(&v, emu_smem_base + addr, 2);
        return __uint_as_float((unsigned)v << 16);
    }
    // Element (r, k) of a K-major matrix: 8-row groups stride bytes apart.
    float kmajor(int r, int k) const { return at(start + r / 8 * stride + r % 8 * 128 + 2 * k); }
    // Element (k, n) of an MN-major matrix: 64-column panels lead bytes
    // apart, 8-row groups of k stride bytes apart.
    float mnmajor(int k, int n) const { return at(start + n % 64 * 2 + n / 64 * lead + k % 8 * 128 + k / 8 * stride); }
};
template <int R>
inline void emu_wgmma(float (&d)[R], unsigned long long da, unsigned long long db, const unsigned *a_regs, bool accumulate, bool tnsp_b) {
    const int w = threadIdx.x / 32, l = threadIdx.x % 32, w4 = w % 4;
    uint32_t *f = &emu_this_block->frags[320 * w];
    if (a_regs) {
        for (int i = 0; i < 4; i++) f[10 * l + i] = a_regs[i];
        emu_this_block->warps[w]->wait();
    }
    const auto half = [](uint32_t x, int hi) { return __uint_as_float((hi ? x >> 16 : x & 0xffffu) << 16); };
    const emu_desc a(a_regs ? db : da), b(db); // a unused with a_regs
    for (int i = 0; i < R; i++) {
        const int r = l / 4 + 8 * (i / 2 % 2), n = 8 * (i / 4) + 2 * (l % 4) + i % 2;
        float s = 0.f;
        for (int k = 0; k < 16; k++) {
            const float av = a_regs ? half(f[10 * ((r % 8) * 4 + (k % 8) / 2) + (r >= 8) + 2 * (k >= 8)], k % 2) : a.kmajor(16 * w4 + r, k);
            const float bv = tnsp_b ? b.mnmajor(k, n) : b.kmajor(n, k);
            s += av * bv;
        }
        d[i] = accumulate ? d[i] + s : s;
    }
    if (a_regs) emu_this_block->warps[w]->wait();
}

// An L2-only load (ld.global.cg) is a load: there is no L1 here.
template <class T> inline T __ldcg(const T *p) { return *p; }

// emu_shuffle_blocks makes emu_launch run a grid's blocks in a fixed
// pseudo-random order instead of x fastest, so that a kernel whose blocks
// wrongly depend on one another's order fails.
inline bool emu_shuffle_blocks = false;

// emu_launch runs the grid one block at a time on blockDim threads that
// are created once per launch.
template <class P> void emu_launch(void (*kernel)(P), dim3 grid, dim3 block, P p) {
    gridDim = grid;
    blockDim = block;
    std::vector<emu_uint3> order;
    for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
            for (unsigned bx = 0; bx < grid.x; bx++) order.push_back({bx, by, bz});
    if (emu_shuffle_blocks) {
        uint64_t x = 0x9e3779b97f4a7c15ull ^ order.size();
        for (size_t i = order.size(); i > 1; i--) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            std::swap(order[i - 1], order[x % i]);
        }
    }
    const int n = block.x * block.y * block.z, nw = (n + 31) / 32;
    const auto warpSize = [&](int w) { return w + 1 < nw || n % 32 == 0 ? 32 : n % 32; };
    emu_barrier all(n), done(n);
    std::deque<emu_barrier> warps;
    for (int w = 0; w < nw; w++) warps.emplace_back(warpSize(w));
    emu_block b{&all, {}, std::vector<uint32_t>(32 * nw), std::vector<const void *>(32 * nw), std::vector<uint32_t>(320 * nw)};
    for (auto &w : warps) b.warps.push_back(&w);
    std::vector<std::thread> threads;
    for (int t = 0; t < n; t++) {
        threads.emplace_back([&, t] {
            threadIdx = {t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
            emu_this_block = &b;
            for (const emu_uint3 &bi : order) {
                blockIdx = bi;
                kernel(p);
                emu_copy_end();
                // A returned thread no longer counts for the block's
                // barriers; all rejoin for the next block.
                b.warps[t / 32]->drop();
                all.drop();
                done.wait();
                if (t == 0) {
                    all.reset(n);
                    for (auto &x : b.named) x.store(0);
                    emu_deferred.at.clear();
                    for (int w = 0; w < nw; w++) b.warps[w]->reset(warpSize(w));
                }
                done.wait();
            }
        });
    }
    for (auto &t : threads) t.join();
}
