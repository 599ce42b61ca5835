// qkv_rope_append and kv_commit: the step between the QKV projection and
// attention.
//
// qkv rows hold [q: nh*hd | k: nkv*hd | v: nkv*hd]. Per token:
//   * optional per-head RMSNorm of q and k (Qwen3's q_norm / k_norm), with
//     rmsnorm.cu's rounding;
//   * RoPE as transformers' rotate_half: with f = pos * inv_freq[i] (fp32),
//     c = bf16(cos(f) * scaling) and s = bf16(sin(f) * scaling) shared by
//     i and i + hd/2,
//       out[i]        = bf16(bf16(x[i] * c)        + bf16(-x[i+hd/2] * s))
//       out[i + hd/2] = bf16(bf16(x[i+hd/2] * c)   + bf16(x[i] * s))
//     (x*c and x*s are exact in fp32 for bf16 operands; each bf16 tensor op
//     of transformers rounds once);
//   * q is rotated in place; the rotated k and the plain v go to row
//     len + tok_off of the sequence's cache head, and the token's position
//     to that row of the head's pos array. len is left alone: kv_commit
//     advances it, so attention of this step sees len + n_new rows.
#include "common.cuh"

#define ROPE_THREADS 128
#define ROPE_MAX_HD 256
#define ROPE_PAIRS (ROPE_MAX_HD / 64) // pairs (i, i + hd/2) per lane

static __device__ __forceinline__ float rope_lo(float a, float b, float c, float s) {
    return round_bf(__fadd_rn(round_bf(__fmul_rn(a, c)), round_bf(__fmul_rn(-b, s))));
}

static __device__ __forceinline__ float rope_hi(float a, float b, float c, float s) {
    return round_bf(__fadd_rn(round_bf(__fmul_rn(b, c)), round_bf(__fmul_rn(a, s))));
}

// One block per token; warp w handles heads w, w + nwarps, ... of the
// nh + 2*nkv in the row. Lane l holds the pairs i = l + 32j (j < 4).
// The norm's sum of squares is per lane, for j = 0.. : x[i]^2 then
// x[i+hd/2]^2, then warp_sum; the Go reference replays that order.
extern "C" __global__ void __launch_bounds__(ROPE_THREADS)
core_qkv_rope_append(bf16 *qkv, int ld, const bf16 *q_norm_w, const bf16 *k_norm_w, const float *inv_freq,
                     const int *pos, const int *tok_seq, const int *tok_off,
                     longctx_kv_head *k_desc, longctx_kv_head *v_desc,
                     int T, int nh, int nkv, int hd, float eps, float attn_scaling) {
    __shared__ float cs[ROPE_MAX_HD / 2], sn[ROPE_MAX_HD / 2];
    const int t = blockIdx.x;
    if (t >= T) return;
    const int half = hd >> 1;
    const int p = pos[t];
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        const float f = __fmul_rn((float)p, inv_freq[i]);
        cs[i] = round_bf(__fmul_rn(cosf(f), attn_scaling));
        sn[i] = round_bf(__fmul_rn(sinf(f), attn_scaling));
    }
    __syncthreads();

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    const int seq = tok_seq[t], off = tok_off[t];
    bf16 *row = qkv + (idx64)t * ld;
    const int nheads = nh + 2 * nkv;
    for (int h = warp; h < nheads; h += nwarps) {
        bf16 *x = row + (idx64)h * hd;
        if (h >= nh + nkv) {
            const int kvh = h - nh - nkv;
            const longctx_kv_head *kd = k_desc + (idx64)seq * nkv + kvh;
            const longctx_kv_head *vd = v_desc + (idx64)seq * nkv + kvh;
            const int r = vd->len + off;
            bf16 *dst = (bf16 *)const_cast<void *>(vd->data) + (idx64)r * vd->row_stride;
            for (int i = lane; i < hd; i += 32) dst[i] = x[i];
            if (lane == 0 && vd->pos != kd->pos) const_cast<int *>(vd->pos)[r] = p;
            continue;
        }
        const bool isq = h < nh;
        const bf16 *nw = isq ? q_norm_w : k_norm_w;
        float a[ROPE_PAIRS], b[ROPE_PAIRS];
#pragma unroll
        for (int j = 0; j < ROPE_PAIRS; j++) {
            const int i = lane + 32 * j;
            a[j] = i < half ? ld_bf(x + i) : 0.0f;
            b[j] = i < half ? ld_bf(x + i + half) : 0.0f;
        }
        if (nw != nullptr) {
            float acc = 0.0f;
#pragma unroll
            for (int j = 0; j < ROPE_PAIRS; j++) {
                if (lane + 32 * j < half) {
                    acc = __fadd_rn(acc, __fmul_rn(a[j], a[j]));
                    acc = __fadd_rn(acc, __fmul_rn(b[j], b[j]));
                }
            }
            const float r = rsqrtf(__fadd_rn(__fmul_rn(warp_sum(acc), __frcp_rn((float)hd)), eps));
#pragma unroll
            for (int j = 0; j < ROPE_PAIRS; j++) {
                const int i = lane + 32 * j;
                if (i < half) {
                    a[j] = round_bf(__fmul_rn(ld_bf(nw + i), round_bf(__fmul_rn(a[j], r))));
                    b[j] = round_bf(__fmul_rn(ld_bf(nw + i + half), round_bf(__fmul_rn(b[j], r))));
                }
            }
        }
        bf16 *dst = x;
        if (!isq) {
            const longctx_kv_head *kd = k_desc + (idx64)seq * nkv + (h - nh);
            const int r = kd->len + off;
            dst = (bf16 *)const_cast<void *>(kd->data) + (idx64)r * kd->row_stride;
            if (lane == 0) const_cast<int *>(kd->pos)[r] = p;
        }
#pragma unroll
        for (int j = 0; j < ROPE_PAIRS; j++) {
            const int i = lane + 32 * j;
            if (i < half) {
                const float c = cs[i], s = sn[i];
                dst[i] = rn_bf(rope_lo(a[j], b[j], c, s));
                dst[i + half] = rn_bf(rope_hi(a[j], b[j], c, s));
            }
        }
    }
}

// kv_commit: len += n_new for the n descriptors of K and of V, once the
// step's rows are written. Kept apart from the append so that a captured
// decode graph advances lengths that live only on the device.
extern "C" __global__ void core_kv_commit(longctx_kv_head *k_desc, longctx_kv_head *v_desc, int n, int n_new) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    k_desc[i].len += n_new;
    if (v_desc != k_desc) v_desc[i].len += n_new;
}
