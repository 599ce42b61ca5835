// rmsnorm and add_rmsnorm: transformers' LlamaRMSNorm in bf16,
//   h   = bf16(x * rsqrt(mean(x^2) + eps))   (x widened to fp32)
//   out = bf16(w * h)
// One block per row. The fp32 sum of squares runs in a fixed order the Go
// reference replays: thread t takes the 8-element chunks t, t+256, ... of
// the row, adding each chunk's squares in index order, then block_sum.
// The vectorised and the scalar path visit elements in that same order,
// so the result does not depend on alignment.
#include "common.cuh"

#define NORM_THREADS 256

static __device__ __forceinline__ float sq_add(float acc, float x) { return __fadd_rn(acc, __fmul_rn(x, x)); }

static __device__ __forceinline__ float norm_one(float x, float w, float r) {
    return __fmul_rn(w, round_bf(__fmul_rn(x, r)));
}

// norm_finish writes out = bf16(w * bf16(x * r)) for the row.
static __device__ void norm_finish(const bf16 *x, const bf16 *w, bf16 *out, int H, float r) {
    const int nch = (H + 7) >> 3;
    const bool vec = (H & 7) == 0 && aligned16(x) && aligned16(w) && aligned16(out);
    for (int c = threadIdx.x; c < nch; c += blockDim.x) {
        if (vec) {
            const uint4 xv = reinterpret_cast<const uint4 *>(x)[c];
            const uint4 wv = reinterpret_cast<const uint4 *>(w)[c];
            uint4 o;
            o.x = pack_bf2(norm_one(bf_lo(xv.x), bf_lo(wv.x), r), norm_one(bf_hi(xv.x), bf_hi(wv.x), r));
            o.y = pack_bf2(norm_one(bf_lo(xv.y), bf_lo(wv.y), r), norm_one(bf_hi(xv.y), bf_hi(wv.y), r));
            o.z = pack_bf2(norm_one(bf_lo(xv.z), bf_lo(wv.z), r), norm_one(bf_hi(xv.z), bf_hi(wv.z), r));
            o.w = pack_bf2(norm_one(bf_lo(xv.w), bf_lo(wv.w), r), norm_one(bf_hi(xv.w), bf_hi(wv.w), r));
            reinterpret_cast<uint4 *>(out)[c] = o;
        } else {
            const int end = min(8 * c + 8, H);
            for (int i = 8 * c; i < end; i++) out[i] = rn_bf(norm_one(ld_bf(x + i), ld_bf(w + i), r));
        }
    }
}

// norm_scale is rsqrt(mean + eps) as torch computes it: the mean is the
// sum times 1/H (ATen's MeanOps), and rsqrtf is what torch.rsqrt runs.
static __device__ __forceinline__ float norm_scale(float sum, int H, float eps) {
    return rsqrtf(__fadd_rn(__fmul_rn(sum, __frcp_rn((float)H)), eps));
}

extern "C" __global__ void __launch_bounds__(NORM_THREADS)
core_rmsnorm(const bf16 *x, int ldx, const bf16 *w, bf16 *out, int ldo, int T, int H, float eps) {
    __shared__ float scratch[32];
    const int t = blockIdx.x;
    if (t >= T) return;
    const bf16 *xr = x + (idx64)t * ldx;
    const int nch = (H + 7) >> 3;
    const bool vec = (H & 7) == 0 && aligned16(xr);
    float acc = 0.0f;
    for (int c = threadIdx.x; c < nch; c += blockDim.x) {
        if (vec) {
            const uint4 v = reinterpret_cast<const uint4 *>(xr)[c];
            acc = sq_add(acc, bf_lo(v.x)); acc = sq_add(acc, bf_hi(v.x));
            acc = sq_add(acc, bf_lo(v.y)); acc = sq_add(acc, bf_hi(v.y));
            acc = sq_add(acc, bf_lo(v.z)); acc = sq_add(acc, bf_hi(v.z));
            acc = sq_add(acc, bf_lo(v.w)); acc = sq_add(acc, bf_hi(v.w));
        } else {
            const int end = min(8 * c + 8, H);
            for (int i = 8 * c; i < end; i++) acc = sq_add(acc, ld_bf(xr + i));
        }
    }
    const float r = norm_scale(block_sum(acc, scratch), H, eps);
    norm_finish(xr, w, out + (idx64)t * ldo, H, r);
}

static __device__ __forceinline__ unsigned add2(unsigned a, unsigned b, float &acc) {
    const float lo = round_bf(__fadd_rn(bf_lo(a), bf_lo(b)));
    const float hi = round_bf(__fadd_rn(bf_hi(a), bf_hi(b)));
    acc = sq_add(acc, lo);
    acc = sq_add(acc, hi);
    return pack_bf2(lo, hi);
}

// add_rmsnorm: resid = bf16(resid + delta) in place (the residual add of
// a decoder layer), then out = rmsnorm(resid). Each thread re-reads only
// the chunks it wrote itself.
extern "C" __global__ void __launch_bounds__(NORM_THREADS)
core_add_rmsnorm(bf16 *resid, const bf16 *delta, int ld, const bf16 *w, bf16 *out, int ldo, int T, int H, float eps) {
    __shared__ float scratch[32];
    const int t = blockIdx.x;
    if (t >= T) return;
    bf16 *rr = resid + (idx64)t * ld;
    const bf16 *dr = delta + (idx64)t * ld;
    const int nch = (H + 7) >> 3;
    const bool vec = (H & 7) == 0 && aligned16(rr) && aligned16(dr);
    float acc = 0.0f;
    for (int c = threadIdx.x; c < nch; c += blockDim.x) {
        if (vec) {
            const uint4 a = reinterpret_cast<const uint4 *>(rr)[c];
            const uint4 b = reinterpret_cast<const uint4 *>(dr)[c];
            uint4 s;
            s.x = add2(a.x, b.x, acc);
            s.y = add2(a.y, b.y, acc);
            s.z = add2(a.z, b.z, acc);
            s.w = add2(a.w, b.w, acc);
            reinterpret_cast<uint4 *>(rr)[c] = s;
        } else {
            const int end = min(8 * c + 8, H);
            for (int i = 8 * c; i < end; i++) {
                const float v = round_bf(__fadd_rn(ld_bf(rr + i), ld_bf(dr + i)));
                rr[i] = rn_bf(v);
                acc = sq_add(acc, v);
            }
        }
    }
    const float r = norm_scale(block_sum(acc, scratch), H, eps);
    norm_finish(rr, w, out + (idx64)t * ldo, H, r);
}
