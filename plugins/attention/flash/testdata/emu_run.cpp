// Runs flash.cu's kernels in host emulation on random bf16 problems and
// compares each output with exact attention on the same bf16 inputs
// (scores and softmax in double; the kernels round the probabilities to
// bf16 for P·V and the output to bf16). Built by emu_test.go with
// FLASH_HEAD_DIM and FLASH_GROUP defined; exits non-zero on a mismatch.
#include "emu_cuda.h"
alignas(128) unsigned char flash_smem[1 << 20];
#include "kernel_emu.cu"
#include "emu_attention.h"

int main() {
    using namespace flash;
    EmuAttention a;
    a.D = D;
    a.G = G;
    a.workspace = [](long long R, long long L) { // flash.go's decode workspace
        const long long perSplit = 4 * D + 8;
        return 256 + 16 + perSplit * R + (perSplit + DTILE - 1) / DTILE * R * L;
    };
    // Blocks run in a scrambled order: no block may depend on another of
    // its launch having run first.
    emu_shuffle_blocks = true;
    emu_smem_base = flash_smem;
    a.launch = [](const longctx_attention_params &p, bool decode) {
        const unsigned S = p.num_seqs, H = p.num_heads, KVH = p.num_kv_heads;
        if (!decode) {
#ifdef FLASH_SM90 // Hopper's prefill, as flash.go picks it for sm_90a
            emu_launch(flash_prefill_sm90ws, dim3{(unsigned)((p.num_q + 127) / 128), H, S}, dim3{flash90::WS_THREADS, 1, 1}, p);
#else
            emu_launch(flash_prefill, dim3{(unsigned)((p.num_q + BM - 1) / BM), H, S}, dim3{THREADS, 1, 1}, p);
#endif
        } else {
            // The grid rule KV_SPLITS (engine/kernelrun.Grid) for a device
            // that holds 24 of these blocks at once.
            const long long resident = 24, tiles = (p.max_kv_len + DTILE - 1) / DTILE;
            const unsigned splits = (unsigned)std::max(1LL, std::min(tiles, resident / (long long)(KVH * S)));
            emu_launch(flash_decode, dim3{splits, KVH, S}, dim3{DTHREADS, 1, 1}, p);
            emu_launch(flash_decode_combine, dim3{(S * H * (unsigned)p.num_q + CWARPS - 1) / CWARPS, 1, 1}, dim3{COMBINE_THREADS, 1, 1}, p);
        }
    };
    a.eagerRounding = false;
    a.tolerance = 1e-2;
    a.lateCopiesPrefill = true; // the prefill stages K and V with cp.async too
    const std::vector<EmuCase> cases = {
        {17, {{17, 17}}, false, 0, 0, 0, 0, false},
        {300, {{300, 300}}, false, 0, 0, 8, 0, false},         // three query tiles, padded Q/out rows
        {70, {{333, 333}}, false, 0, 0, 0, 16, false},         // a chunk at the end of a longer prompt
        {130, {{131, 77}}, false, 0, 5, 3, 3, true},           // uneven heads, odd strides, position gaps
        {140, {{150, 150}, {90, 60}}, false, 24, 0, 0, 0, false}, // two sequences, sliding window
        {200, {{200, 200}}, false, 70, 0, 0, 0, false},        // window across tiles
        {1, {{1, 1}}, false, 0, 0, 0, 0, false},
        {1, {{300, 280}, {1, 17}, {513, 0}}, true, 0, 37, 0, 0, false}, // a head without keys
        {1, {{700, 650}}, true, 0, 300, 3, 5, true},
        {1, {{600, 400}, {257, 256}}, true, 100, 0, 0, 0, false},
        {1, {{1100, 1000}}, true, 300, 0, 0, 0, false},        // whole tiles behind the window
        {1, {{3000, 2900}}, true, 0, 0, 0, 0, false},          // 12 splits of 4 stages
        {1, {{0, 0}}, true, 0, 0, 0, 0, false},                // no keys at all: no split runs
        {1, {{3000, 2500}}, true, 700, 0, 0, 0, false},        // 12 splits, most behind the window
        {1, {{5, 40}, {33, 0}, {16, 17}, {1, 2}, {90, 64}, {15, 16}, {200, 3}, {7, 7}, {100, 31}}, true, 0, 0, 0, 0, true}, // nine sequences of short heads
    };
    return emu_attention_main(cases, a);
}
