// embed: out[t] = table[ids[t]], rows of H bf16, densely packed.
#include "common.cuh"

#define EMBED_THREADS 128

// One block per token. 16-byte copies when rows allow them; otherwise one
// element at a time (odd H in tests).
extern "C" __global__ void __launch_bounds__(EMBED_THREADS)
core_embed(const bf16 *table, const int *ids, bf16 *out, int T, int H) {
    const int t = blockIdx.x;
    if (t >= T) return;
    const bf16 *src = table + (idx64)ids[t] * H;
    bf16 *dst = out + (idx64)t * H;
    if ((H & 7) == 0 && aligned16(src) && aligned16(dst)) {
        const uint4 *s = reinterpret_cast<const uint4 *>(src);
        uint4 *d = reinterpret_cast<uint4 *>(dst);
        for (int c = threadIdx.x; c < (H >> 3); c += blockDim.x) d[c] = s[c];
    } else {
        for (int i = threadIdx.x; i < H; i += blockDim.x) dst[i] = src[i];
    }
}
