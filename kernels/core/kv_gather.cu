// kv_gather: compaction after kv_select. For each head h, row j of the
// destination K and V (and its position) is row keep_idx[h][j] of the
// source, for j < keep_count[h]; the destination descriptors' len becomes
// keep_count[h]. Source and destination must not overlap (the engine
// copies into new, smaller buffers and frees the old ones).
#include "common.cuh"

#define GATHER_THREADS 256

// grid = (blocks per head, heads). Every thread copies 16-byte chunks of
// one row of K and the same chunk of V when head_dim and both layouts
// allow, else single elements; blocks stride over a head's rows*chunks.
extern "C" __global__ void __launch_bounds__(GATHER_THREADS)
core_kv_gather(const longctx_kv_head *src_k, const longctx_kv_head *src_v, longctx_kv_head *dst_k,
               longctx_kv_head *dst_v, const int *keep_idx, int idx_stride, const int *keep_count, int heads, int hd) {
    const int h = blockIdx.y;
    if (h >= heads) return;
    const int cnt = keep_count[h];
    const longctx_kv_head sk = src_k[h], sv = src_v[h];
    const longctx_kv_head dk = dst_k[h], dv = dst_v[h];
    const int *idx = keep_idx + (idx64)h * idx_stride;
    const bf16 *skd = (const bf16 *)sk.data, *svd = (const bf16 *)sv.data;
    bf16 *dkd = (bf16 *)const_cast<void *>(dk.data), *dvd = (bf16 *)const_cast<void *>(dv.data);
    int *dkp = const_cast<int *>(dk.pos), *dvp = const_cast<int *>(dv.pos);
    const bool vpos = dv.pos != dk.pos;

    const bool vec = (hd & 7) == 0 && ((sk.row_stride | sv.row_stride | dk.row_stride | dv.row_stride) & 7) == 0 &&
                     aligned16(skd) && aligned16(svd) && aligned16(dkd) && aligned16(dvd);
    const int cpr = vec ? hd >> 3 : hd; // copies per row
    // The launcher checks idx_stride * hd < 2^31, so 32-bit indices do.
    const unsigned total = (unsigned)cnt * (unsigned)cpr;
    const unsigned stride = gridDim.x * blockDim.x;
    for (unsigned e = blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
        const unsigned j = e / (unsigned)cpr;
        const unsigned c = e - j * (unsigned)cpr;
        const int src = idx[j];
        if (vec) {
            const uint4 kx = reinterpret_cast<const uint4 *>(skd + (idx64)src * sk.row_stride)[c];
            const uint4 vx = reinterpret_cast<const uint4 *>(svd + (idx64)src * sv.row_stride)[c];
            reinterpret_cast<uint4 *>(dkd + (idx64)j * dk.row_stride)[c] = kx;
            reinterpret_cast<uint4 *>(dvd + (idx64)j * dv.row_stride)[c] = vx;
        } else {
            dkd[(idx64)j * dk.row_stride + c] = skd[(idx64)src * sk.row_stride + c];
            dvd[(idx64)j * dv.row_stride + c] = svd[(idx64)src * sv.row_stride + c];
        }
        if (c == 0) {
            dkp[j] = sk.pos[src];
            if (vpos) dvp[j] = sv.pos[src];
        }
    }
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        dst_k[h].len = cnt;
        dst_v[h].len = cnt;
    }
}
