// Runs flash.cu's kernels in host emulation on random bf16 problems and
// compares each output with exact attention on the same bf16 inputs
// (scores and softmax in double; the kernels round the probabilities to
// bf16 for P·V and the output to bf16). Built by emu_test.go with
// FLASH_HEAD_DIM and FLASH_GROUP defined; exits non-zero on a mismatch.
#include "emu_cuda.h"
thread_local emu_uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;
thread_local emu_block *emu_this_block;
bool emu_copy_late;
std::atomic<int> emu_copy_unwaited;
thread_local emu_copies emu_this_copies;
alignas(128) unsigned char flash_smem[1 << 20];
#include "kernel_emu.cu"
#include <algorithm>
#include <random>

static float round_bf(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }
static unsigned short to_bits(float x) { return __float2bfloat16_rn(x).x; }
static float from_bits(unsigned short b) { return __uint_as_float((unsigned)b << 16); }

struct Case {
    int numQ;
    std::vector<std::vector<int>> lens; // [seq][kv head]
    bool decode;
    int window, capacity, qPad, kvPad;
    bool gaps;
};

static bool run(const Case &c, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0, 1);
    const int D = flash::D, G = flash::G, KVH = (int)c.lens[0].size(), H = KVH * G, Q = c.numQ, S = (int)c.lens.size();
    int maxLen = 0;
    for (auto &s : c.lens)
        for (int n : s) maxLen = std::max(maxLen, n);
    const int L = maxLen + c.capacity;
    const long long qStride = (long long)H * D + c.qPad;
    const int kvStride = D + c.kvPad;
    std::vector<unsigned short> q(S * Q * qStride, 0xffff), out(S * Q * qStride, 0xffff);
    for (int r = 0; r < S * Q; r++)
        for (int e = 0; e < H * D; e++) q[r * qStride + e] = to_bits(normal(rng));
    std::vector<std::vector<unsigned short>> k(S * KVH), v(S * KVH);
    std::vector<std::vector<int>> pos(S * KVH);
    std::vector<int> qPos;
    for (int s = 0; s < S; s++) {
        int last = 0;
        for (int h = 0; h < KVH; h++) {
            const int n = c.lens[s][h], g = s * KVH + h;
            for (int j = 0, p = -1; j < n; j++) {
                p += 1 + (c.gaps && rng() % 3 == 0 ? rng() % 4 : 0);
                pos[g].push_back(p);
            }
            if (n) last = std::max(last, pos[g].back());
            k[g].assign(std::max(n, 1) * kvStride, 0xffff);
            v[g].assign(std::max(n, 1) * kvStride, 0xffff);
            for (int j = 0; j < n; j++)
                for (int e = 0; e < D; e++) {
                    k[g][j * kvStride + e] = to_bits(normal(rng));
                    v[g][j * kvStride + e] = to_bits(normal(rng));
                }
        }
        for (int i = 0; i < Q; i++) qPos.push_back(c.decode ? last + 1 : last - Q + 1 + i);
    }
    std::vector<longctx_kv_head> kh(S * KVH), vh(S * KVH);
    for (int g = 0; g < S * KVH; g++) {
        kh[g] = {k[g].data(), pos[g].data(), (int)pos[g].size(), kvStride};
        vh[g] = {v[g].data(), pos[g].data(), (int)pos[g].size(), kvStride};
    }
    // The decode workspace bound of flash.go, plus a guard that must stay 0xff.
    const long long R = (long long)S * H * Q, guard = 256;
    using namespace flash;
    const long long perTile = 4 * D + 8;
    const long long wsBytes = 64 + perTile * R + (perTile + DTILE - 1) / DTILE * R * L;
    std::vector<unsigned char> ws(wsBytes + guard, 0xff);

    longctx_attention_params p{};
    p.num_seqs = S; p.num_q = Q; p.num_heads = H; p.num_kv_heads = KVH; p.head_dim = D;
    p.sliding_window = c.window; p.max_kv_len = L; p.scale = 1.0f / sqrtf((float)D); p.dtype = 2;
    p.q = q.data(); p.q_row_stride = qStride; p.q_pos = qPos.data(); p.k = kh.data(); p.v = vh.data();
    p.out = out.data(); p.out_row_stride = qStride; p.workspace = ws.data(); p.workspace_bytes = wsBytes;
    if (!c.decode) {
        emu_launch(flash_prefill, dim3{(unsigned)((Q + BM - 1) / BM), (unsigned)H, (unsigned)S}, dim3{THREADS, 1, 1}, p);
    } else {
        emu_launch(flash_decode, dim3{(unsigned)((L + DTILE - 1) / DTILE), (unsigned)KVH, (unsigned)S}, dim3{DTHREADS, 1, 1}, p);
        emu_launch(flash_decode_combine, dim3{(unsigned)R, 1, 1}, dim3{COMBINE_THREADS, 1, 1}, p);
    }

    double maxRef = 0, maxErr = 0;
    int bad = 0;
    for (int s = 0; s < S; s++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < Q; i++) {
                const int g = s * KVH + h / G, n = kh[g].len, qp = qPos[s * Q + i];
                const unsigned short *qr = &q[(s * Q + i) * qStride + h * D];
                std::vector<float> sc(n);
                float m = -INFINITY;
                for (int j = 0; j < n; j++) {
                    float dot = 0;
                    for (int e = 0; e < D; e++) dot += from_bits(qr[e]) * from_bits(k[g][j * kvStride + e]);
                    const int kp = pos[g][j];
                    const bool vis = kp <= qp && (c.window <= 0 || qp - kp < c.window);
                    sc[j] = vis ? dot * p.scale : -INFINITY;
                    m = std::max(m, sc[j]);
                }
                double sum = 0;
                for (int j = 0; j < n; j++)
                    if (sc[j] != -INFINITY) sum += exp((double)sc[j] - m);
                for (int e = 0; e < D; e++) {
                    double o = 0;
                    for (int j = 0; m != -INFINITY && j < n; j++)
                        if (sc[j] != -INFINITY) o += exp((double)sc[j] - m) / sum * from_bits(v[g][j * kvStride + e]);
                    const float want = round_bf((float)o), got = from_bits(out[(s * Q + i) * qStride + h * D + e]);
                    maxRef = std::max(maxRef, (double)fabsf(want));
                    const double err = fabs((double)got - want);
                    if (!(err < 1e30)) bad++;
                    else maxErr = std::max(maxErr, err);
                }
            }
    for (int r = 0; r < S * Q; r++)
        for (long long e = H * D; e < qStride; e++)
            if (out[r * qStride + e] != 0xffff) bad++; // row padding written
    for (long long b = wsBytes; b < wsBytes + guard; b++)
        if (ws[b] != 0xff) bad++; // past the workspace
    bad += emu_copy_unwaited.exchange(0); // asynchronous copies never waited for
    const double rel = maxErr / std::max(maxRef, 1e-30);
    const bool ok = bad == 0 && rel <= 1e-2;
    printf("%s d=%d heads=%d/%d q=%d seqs=%d max_kv=%d window=%d%s: max err %.3g of %.3g, %d unwritten or stray%s\n",
           c.decode ? "decode " : "prefill", D, H, KVH, Q, S, L, c.window, emu_copy_late ? " late copies" : "", maxErr, maxRef, bad,
           ok ? "" : "  FAIL");
    return ok;
}

int main() {
    const std::vector<Case> cases = {
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
    };
    int failed = 0;
    for (size_t i = 0; i < cases.size(); i++) {
        for (int late = 0; late < 2; late++) { // copies land at issue, then as late as the waits allow
            emu_copy_late = late;
            if (!run(cases[i], (unsigned)i + 1)) failed++;
        }
    }
    return failed != 0;
}
