// WMMA for the host emulation: 16x16x16 bf16 fragments with fp32
// accumulators, each lane holding the whole matrix.
#pragma once
#include "cuda_bf16.h"
namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };
template <class Use, int M, int N, int K, class T, class Layout = void> struct fragment { float v[16][16]; };

template <class Use, class L> void load_matrix_sync(fragment<Use, 16, 16, 16, __nv_bfloat16, L> &f, const __nv_bfloat16 *p, unsigned ld) {
    // v[r][c] is row r, column c of the 16x16 operand.
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 16; c++)
            f.v[r][c] = __bfloat162float(std::is_same<L, row_major>::value ? p[r * ld + c] : p[c * ld + r]);
}
inline void fill_fragment(fragment<accumulator, 16, 16, 16, float> &f, float x) {
    for (auto &r : f.v)
        for (auto &e : r) e = x;
}
template <class LA, class LB>
void mma_sync(fragment<accumulator, 16, 16, 16, float> &d, const fragment<matrix_a, 16, 16, 16, __nv_bfloat16, LA> &a,
              const fragment<matrix_b, 16, 16, 16, __nv_bfloat16, LB> &b, const fragment<accumulator, 16, 16, 16, float> &c) {
    fragment<accumulator, 16, 16, 16, float> r;
    for (int i = 0; i < 16; i++)
        for (int n = 0; n < 16; n++) {
            float s = c.v[i][n];
            for (int k = 0; k < 16; k++) s += a.v[i][k] * b.v[k][n];
            r.v[i][n] = s;
        }
    d = r;
}
inline void store_matrix_sync(float *p, const fragment<accumulator, 16, 16, 16, float> &f, unsigned ld, layout_t l) {
    for (int i = 0; i < 16; i++)
        for (int n = 0; n < 16; n++) (l == mem_row_major ? p[i * ld + n] : p[n * ld + i]) = f.v[i][n];
}
} // namespace wmma
} // namespace nvcuda
