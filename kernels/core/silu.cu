// silu_mul: the gated MLP's act(gate) * up, from a row [gate: I | up: I]
// (the fused gate/up projection):
//   out = bf16( bf16(g / (1 + exp(-g))) * u )
// as transformers' SiLU (ATen computes x / (1 + exp(-x)) in fp32 and
// rounds) followed by a bf16 multiply.
#include "common.cuh"

#define SILU_THREADS 256

static __device__ __forceinline__ float silu_mul1(float g, float u) {
    const float s = round_bf(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))));
    return __fmul_rn(s, u);
}

// silu_rows runs the grid-stride loop with index type Idx: 32-bit
// division where the element count allows it, as it is several times
// cheaper than 64-bit.
template <class Idx>
static __device__ __forceinline__ void silu_rows(const bf16 *gu, int ldgu, bf16 *out, int ldo, int T, int I, bool vec) {
    const Idx stride = (Idx)gridDim.x * blockDim.x;
    const Idx first = (Idx)blockIdx.x * blockDim.x + threadIdx.x;
    if (vec) {
        const Idx cpr = (Idx)(I >> 3);
        const Idx total = (Idx)T * cpr;
        for (Idx e = first; e < total; e += stride) {
            const Idx t = e / cpr, c = e - t * cpr;
            const bf16 *g = gu + (idx64)t * ldgu + 8 * c;
            const uint4 gv = *reinterpret_cast<const uint4 *>(g);
            const uint4 uv = *reinterpret_cast<const uint4 *>(g + I);
            uint4 o;
            o.x = pack_bf2(silu_mul1(bf_lo(gv.x), bf_lo(uv.x)), silu_mul1(bf_hi(gv.x), bf_hi(uv.x)));
            o.y = pack_bf2(silu_mul1(bf_lo(gv.y), bf_lo(uv.y)), silu_mul1(bf_hi(gv.y), bf_hi(uv.y)));
            o.z = pack_bf2(silu_mul1(bf_lo(gv.z), bf_lo(uv.z)), silu_mul1(bf_hi(gv.z), bf_hi(uv.z)));
            o.w = pack_bf2(silu_mul1(bf_lo(gv.w), bf_lo(uv.w)), silu_mul1(bf_hi(gv.w), bf_hi(uv.w)));
            *reinterpret_cast<uint4 *>(out + (idx64)t * ldo + 8 * c) = o;
        }
        return;
    }
    const Idx total = (Idx)T * (Idx)I;
    for (Idx e = first; e < total; e += stride) {
        const Idx t = e / (Idx)I, i = e - t * (Idx)I;
        const bf16 *g = gu + (idx64)t * ldgu + i;
        out[(idx64)t * ldo + i] = rn_bf(silu_mul1(ld_bf(g), ld_bf(g + I)));
    }
}

// vec != 0 (chosen by the launcher: I, ldgu, ldo multiples of 8 and both
// bases 16-byte aligned): one thread per 8 outputs. Otherwise one per
// output. Grid-stride, so any grid covers the T*I outputs.
extern "C" __global__ void __launch_bounds__(SILU_THREADS)
core_silu_mul(const bf16 *gu, int ldgu, bf16 *out, int ldo, int T, int I, int vec) {
    const long long work = (long long)T * (vec ? (I >> 3) : I) + (long long)gridDim.x * blockDim.x;
    if (work < (1ll << 32)) silu_rows<unsigned>(gu, ldgu, out, ldo, T, I, vec != 0);
    else silu_rows<unsigned long long>(gu, ldgu, out, ldo, T, I, vec != 0);
}
