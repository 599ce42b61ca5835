// Runs eager.cu's kernels in host emulation on random bf16 problems and
// compares each output with a reference that rounds as transformers'
// eager attention does (bf16 scores, fp32 softmax, bf16 probabilities).
// Built by emu_test.go with EAGER_HEAD_DIM and EAGER_GROUP defined; exits
// non-zero on a mismatch.
#include "emu_cuda.h"
alignas(128) unsigned char eager_smem[1 << 20];
#include "kernel_emu.cu"
#include "emu_attention.h"

int main() {
    using namespace eager;
    EmuAttention a;
    a.D = D;
    a.G = G;
    a.workspace = [](long long R, long long L) { // eager.go's decode workspace
        const long long perTile = 8 * (DEC_TILE / DEC_TILE_QK) + 4 * D;
        return 64 + (8 + 4 * D) * R + (8 + (perTile + DEC_TILE - 1) / DEC_TILE) * R * L;
    };
    a.launch = [](const longctx_attention_params &p, bool decode) {
        const unsigned S = p.num_seqs, H = p.num_heads, KVH = p.num_kv_heads, L = p.max_kv_len, R = S * H * p.num_q;
        const unsigned qTiles = (p.num_q + BQ - 1) / BQ, qkTiles = (L + DEC_TILE_QK - 1) / DEC_TILE_QK, kvTiles = (L + DEC_TILE - 1) / DEC_TILE;
        if (!decode) {
            emu_launch(eager_qk, dim3{qTiles, H, S}, dim3{PREFILL_THREADS, 1, 1}, p);
            emu_launch(eager_softmax, dim3{(R + SOFTMAX_ROWS - 1) / SOFTMAX_ROWS, 1, 1}, dim3{SOFTMAX_THREADS, 1, 1}, p);
            emu_launch(eager_pv, dim3{qTiles, H, S}, dim3{PREFILL_THREADS, 1, 1}, p);
        } else {
            emu_launch(eager_decode_qk, dim3{qkTiles, KVH, S}, dim3{DEC_QK_THREADS, 1, 1}, p);
            emu_launch(eager_decode_pv, dim3{kvTiles, KVH, S}, dim3{DEC_PV_THREADS, 1, 1}, p);
            emu_launch(eager_decode_combine, dim3{R, 1, 1}, dim3{DEC_COMBINE_THREADS, 1, 1}, p);
        }
    };
    a.eagerRounding = true;
    a.tolerance = 4e-3;
    a.lateCopiesPrefill = false; // only the decode kernels stage K and V with cp.async
    const std::vector<EmuCase> cases = {
        {17, {{17, 17}}, false, 0, 0, 0, 0, false},
        {100, {{100, 100}}, false, 0, 0, 8, 0, false},
        {70, {{133, 133}}, false, 0, 0, 0, 16, false},        // a chunk at the end of a longer prompt
        {65, {{131, 77}}, false, 0, 5, 3, 3, true},           // uneven heads, odd strides, position gaps
        {40, {{150, 150}, {90, 60}}, false, 24, 0, 0, 0, false}, // two sequences, sliding window
        {1, {{1, 1}}, false, 0, 0, 0, 0, false},
        {1, {{300, 280}, {1, 17}, {513, 0}}, true, 0, 37, 0, 0, false}, // a head without keys
        {1, {{700, 650}}, true, 0, 300, 3, 5, true},
        {1, {{600, 400}, {257, 256}}, true, 100, 0, 0, 0, false},
        {3, {{300, 200}, {50, 60}}, true, 0, 10, 0, 0, true}, // several query rows through the decode kernels
    };
    return emu_attention_main(cases, a);
}
