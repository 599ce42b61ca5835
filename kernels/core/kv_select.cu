// kv_select: which cached tokens each KV head keeps, with exactly the
// semantics of Go's kvpolicy.Select:
//   * a NaN score among the head's n = len tokens is an error (*err = 1);
//     a negative target too (*err = 2); the head then keeps everything, so
//     a following gather is a harmless copy;
//   * target >= n keeps every token;
//   * otherwise the protected tokens (index < sink or >= n - window) are
//     kept, and of the others the target - #protected highest scores,
//     equal scores favouring the lower index (-0 equals +0).
// keep_idx gets the kept indices in increasing order, keep_count their
// number.
//
// One block per head, streaming the scores from global memory (L2) so any
// n fits: a 64-bit key (ordered score bits << 32 | ~index) would rank the
// free tokens exactly; its score half is found by an MSB-first radix
// select (4 passes of 8-bit histograms, the first also checking for NaN),
// which yields the k-th largest score v and how many r of the tokens
// scoring exactly v are kept. Ranking by ~index means those are the r
// lowest-index ones, so the index half is settled by a prefix count during
// the final, order-preserving scan.
#include "common.cuh"

#define SEL_THREADS 512
#define SEL_WARPS (SEL_THREADS / 32)
#define SEL_ITEMS 8 // consecutive indices per thread in the final scan

// ordered maps a non-NaN float to an unsigned int with the same order,
// -0 and +0 alike.
static __device__ __forceinline__ unsigned ordered(float f) {
    unsigned u = __float_as_uint(f);
    if (u == 0x80000000u) u = 0;
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

static __device__ __forceinline__ bool is_nan(float f) { return (__float_as_uint(f) & 0x7fffffffu) > 0x7f800000u; }

// for_scores calls f(i, sc[i]) for every i in [begin, end), spread over
// the block in no particular order. One block per head leaves few blocks
// per SM, so each thread keeps two 16-byte loads in flight where the row
// is aligned.
template <class F>
static __device__ __forceinline__ void for_scores(const float *sc, int begin, int end, F f) {
    const int tid = threadIdx.x, bd = blockDim.x;
    if (begin >= end) return;
    if (!aligned16(sc)) {
        for (int i = begin + tid; i < end; i += bd) f(i, sc[i]);
        return;
    }
    const int a = min(end, (begin + 3) & ~3);
    for (int i = begin + tid; i < a; i += bd) f(i, sc[i]);
    const int nv = (end - a) >> 2;
    const float4 *v = reinterpret_cast<const float4 *>(sc + a);
    int j = tid;
    for (; j + bd < nv; j += 2 * bd) {
        const float4 x = v[j], y = v[j + bd];
        const int i = a + 4 * j, k = a + 4 * (j + bd);
        f(i, x.x); f(i + 1, x.y); f(i + 2, x.z); f(i + 3, x.w);
        f(k, y.x); f(k + 1, y.y); f(k + 2, y.z); f(k + 3, y.w);
    }
    if (j < nv) {
        const float4 x = v[j];
        const int i = a + 4 * j;
        f(i, x.x); f(i + 1, x.y); f(i + 2, x.z); f(i + 3, x.w);
    }
    for (int i = a + 4 * nv + tid; i < end; i += bd) f(i, sc[i]);
}

extern "C" __global__ void __launch_bounds__(SEL_THREADS)
core_kv_select(const float *scores, int score_stride, const longctx_kv_head *k_desc, int heads,
               const int *target, int sink, int window, int *keep_idx, int idx_stride, int *keep_count, int *err) {
    __shared__ unsigned hist[SEL_WARPS][256];
    __shared__ unsigned tot[256];
    __shared__ unsigned scratch[32];
    __shared__ unsigned s_digit, s_rem;

    const int h = blockIdx.x;
    if (h >= heads) return;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const float *sc = scores + (idx64)h * score_stride;
    int *out = keep_idx + (idx64)h * idx_stride;
    const int n = k_desc[h].len;
    const int tgt = target[h];

    // Free (unprotected) tokens are [lo, hi); sink and window are >= 0.
    const int lo = min(sink, n);
    const int hi = max(lo, n - window);
    const int k = tgt - (n - (hi - lo)); // free tokens to keep
    const bool selecting = tgt >= 0 && tgt < n && k > 0;

    // Radix select of the k-th largest ordered score among the free tokens,
    // MSB first. Invariant: rem of the tokens matching prefix under mask
    // are kept, and at least rem match (k < hi - lo since tgt < n). The
    // first pass also looks for NaN over the whole head.
    unsigned prefix = 0, mask = 0, rem = (unsigned)k;
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int j = tid; j < SEL_WARPS * 256; j += blockDim.x) (&hist[0][0])[j] = 0;
        __syncthreads();
        if (shift == 24) {
            int bad = 0;
            for_scores(sc, 0, n, [&](int i, float v) {
                bad |= is_nan(v);
                if (selecting && i >= lo && i < hi) atomicAdd(&hist[warp][ordered(v) >> 24], 1u);
            });
            bad = __syncthreads_or(bad);
            if (bad || tgt < 0 || tgt >= n) {
                if (tid == 0 && (bad || tgt < 0)) *err = bad ? 1 : 2;
                for (int i = tid; i < n; i += blockDim.x) out[i] = i;
                if (tid == 0) keep_count[h] = n;
                return;
            }
            if (k <= 0) {
                for (int i = tid; i < lo; i += blockDim.x) out[i] = i;
                for (int i = hi + tid; i < n; i += blockDim.x) out[lo + i - hi] = i;
                if (tid == 0) keep_count[h] = lo + n - hi;
                return;
            }
        } else {
            for_scores(sc, lo, hi, [&](int, float v) {
                const unsigned u = ordered(v);
                if ((u & mask) == prefix) atomicAdd(&hist[warp][(u >> shift) & 255u], 1u);
            });
            __syncthreads();
        }
        for (int d = tid; d < 256; d += blockDim.x) {
            unsigned s = 0;
            for (int w = 0; w < SEL_WARPS; w++) s += hist[w][d];
            tot[d] = s;
        }
        __syncthreads();
        if (warp == 0) {
            // Lane l holds digits 255-8l down to 248-8l; counts from the top.
            unsigned cnt[8], local = 0;
            const int top = 255 - 8 * lane;
#pragma unroll
            for (int q = 0; q < 8; q++) {
                cnt[q] = tot[top - q];
                local += cnt[q];
            }
            unsigned incl = local;
#pragma unroll
            for (int o = 1; o < 32; o <<= 1) {
                const unsigned y = __shfl_up_sync(CORE_FULL_MASK, incl, o);
                if (lane >= o) incl += y;
            }
            const unsigned excl = incl - local;
            if (excl < rem && rem <= incl) {
                unsigned cum = excl;
                for (int q = 0; q < 8; q++) {
                    if (cum + cnt[q] >= rem) {
                        s_digit = (unsigned)(top - q);
                        s_rem = rem - cum;
                        break;
                    }
                    cum += cnt[q];
                }
            }
        }
        __syncthreads();
        prefix |= s_digit << shift;
        mask |= 255u << shift;
        rem = s_rem;
        __syncthreads(); // s_digit, s_rem and hist are rewritten next pass
    }
    const unsigned v = prefix; // the k-th largest ordered score
    const unsigned r = rem;    // tokens scoring exactly v that are kept

    // Final scan in index order. A token is kept if protected, if it scores
    // above v, or if it scores v and fewer than r earlier free tokens do.
    // Per thread: bit q of kb / eq for index i0 + q.
    // SEL_ITEMS = 8 consecutive floats are two aligned float4 in an
    // aligned row.
    const bool vec = aligned16(sc);
    unsigned carry_kb = 0, carry_eq = 0;
    for (int base = 0; base < n; base += SEL_THREADS * SEL_ITEMS) {
        const int i0 = base + tid * SEL_ITEMS;
        float x[SEL_ITEMS];
        if (vec && i0 + SEL_ITEMS <= n) {
            const float4 a = reinterpret_cast<const float4 *>(sc + i0)[0];
            const float4 b = reinterpret_cast<const float4 *>(sc + i0)[1];
            x[0] = a.x; x[1] = a.y; x[2] = a.z; x[3] = a.w;
            x[4] = b.x; x[5] = b.y; x[6] = b.z; x[7] = b.w;
        } else {
#pragma unroll
            for (int q = 0; q < SEL_ITEMS; q++) x[q] = i0 + q < n ? sc[i0 + q] : 0.0f;
        }
        unsigned kb = 0, eq = 0;
#pragma unroll
        for (int q = 0; q < SEL_ITEMS; q++) {
            const int i = i0 + q;
            if (i >= n) break;
            if (i < lo || i >= hi) {
                kb |= 1u << q;
            } else {
                const unsigned u = ordered(x[q]);
                if (u > v) kb |= 1u << q;
                else if (u == v) eq |= 1u << q;
            }
        }
        // Both counts stay below 2^16 per chunk, so one scan carries both.
        unsigned total;
        const unsigned ex = block_excl_scan((unsigned)__popc(kb) | ((unsigned)__popc(eq) << 16), &total, scratch);
        unsigned kbn = carry_kb + (ex & 0xffffu), eqn = carry_eq + (ex >> 16);
#pragma unroll
        for (int q = 0; q < SEL_ITEMS; q++) {
            if (kb & (1u << q)) {
                out[kbn + min(eqn, r)] = i0 + q;
                kbn++;
            } else if (eq & (1u << q)) {
                if (eqn < r) out[kbn + eqn] = i0 + q;
                eqn++;
            }
        }
        carry_kb += total & 0xffffu;
        carry_eq += total >> 16;
    }
    if (tid == 0) keep_count[h] = (int)(carry_kb + min(carry_eq, r));
}
