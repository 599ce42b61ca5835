// Synthetic weights generated on the device, element for element equal to
// engine/model's SyntheticSource (see model.Recipe), so a synthetic 8B
// model needs no 16 GB host buffer and no upload.

__device__ __forceinline__ unsigned long long longctx_mix64(unsigned long long z) {
    z ^= z >> 30;
    z *= 0xbf58476d1ce4e5b9ULL;
    z ^= z >> 27;
    z *= 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return z;
}

// Round to nearest even, as engine/weights.Float32ToBF16.
__device__ __forceinline__ unsigned short longctx_f32_to_bf16(float f) {
    unsigned int b = __float_as_uint(f);
    if ((b & 0x7fffffffu) > 0x7f800000u) {
        return (unsigned short)((b >> 16) | 0x40u);
    }
    b += 0x7fffu + ((b >> 16) & 1u);
    return (unsigned short)(b >> 16);
}

extern "C" __global__ void synth_fill(unsigned short *out, unsigned long long n,
                                      unsigned long long key, int ones) {
    unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        if (ones) {
            out[i] = 0x3f80;
            continue;
        }
        unsigned long long u = longctx_mix64(key + i * 0x9e3779b97f4a7c15ULL);
        double s = (double)((u & 0xffffULL) + ((u >> 16) & 0xffffULL) + ((u >> 32) & 0xffffULL) + (u >> 48)) / 65536.0;
        // __dmul_rn/__fmul_rn keep the products unfused, as Go computes them.
        float v = (float)__dmul_rn(s - 2.0, 1.7320508075688772);
        out[i] = longctx_f32_to_bf16(__fmul_rn(0.02f, v));
    }
}
