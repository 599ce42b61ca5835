// The kernel-independent part of an attention plugin's emulator driver:
// random bf16 problems (GQA, per-head lengths, position gaps, padded rows,
// windows, several sequences, a decode graph's spare capacity), a host
// reference, and the checks (error against the reference, no write to row
// padding or past the workspace, every cp.async group waited for). A
// driver (a plugin's testdata/emu_run.cpp) includes emu_cuda.h, defines its
// dynamic shared memory array, includes its kernel as kernel_emu.cu, then
// this, and returns emu_attention_main(cases, its EmuAttention).
#pragma once
#include "emu_cuda.h"
#include "cuda_bf16.h"
#include <algorithm>
#include <functional>
#include <random>
#include <vector>

thread_local emu_uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;
thread_local emu_block *emu_this_block;
bool emu_copy_late;
unsigned char *emu_smem_base;
emu_deferred_arrivals emu_deferred;
std::atomic<int> emu_copy_unwaited;
thread_local emu_copies emu_this_copies;

static float round_bf(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }
static unsigned short to_bits(float x) { return __float2bfloat16_rn(x).x; }
static float from_bits(unsigned short b) { return __uint_as_float((unsigned)b << 16); }

// One problem: numQ query rows per sequence against KV heads of lens[seq]
// [kv head] rows, after `capacity` spare rows of max_kv_len (a decode
// graph's cache), padded Q/out rows (qPad) and K/V rows (kvPad), and with
// gaps in the key positions as after compaction.
struct EmuCase {
    int numQ;
    std::vector<std::vector<int>> lens; // [seq][kv head]
    bool decode;
    int window, capacity, qPad, kvPad;
    bool gaps;
};

// What a plugin's driver supplies.
struct EmuAttention {
    int D, G; // head dim, query heads per KV head
    // The workspace the plugin asks for (its Go declaration) for R score
    // rows of max_kv_len L.
    std::function<long long(long long R, long long L)> workspace;
    // Launches the prefill (decode false) or decode kernels on p.
    std::function<void(const longctx_attention_params &p, bool decode)> launch;
    // The reference rounds scores and probabilities to bf16 as
    // transformers' eager attention does; else they stay exact.
    bool eagerRounding;
    double tolerance;      // largest error, relative to the largest |output|
    bool lateCopiesPrefill; // also run prefill cases with late copies
};

static bool emu_attention_run(const EmuCase &c, unsigned seed, const EmuAttention &a) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0, 1);
    const int D = a.D, G = a.G, KVH = (int)c.lens[0].size(), H = KVH * G, Q = c.numQ, S = (int)c.lens.size();
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
    // The plugin's workspace, plus a guard that must stay 0xff.
    const long long R = (long long)S * H * Q, guard = 256;
    const long long wsBytes = a.workspace(R, L);
    std::vector<unsigned char> ws(wsBytes + guard, 0xff);

    longctx_attention_params p{};
    p.num_seqs = S; p.num_q = Q; p.num_heads = H; p.num_kv_heads = KVH; p.head_dim = D;
    p.sliding_window = c.window; p.max_kv_len = L; p.scale = 1.0f / sqrtf((float)D); p.dtype = 2;
    p.q = q.data(); p.q_row_stride = qStride; p.q_pos = qPos.data(); p.k = kh.data(); p.v = vh.data();
    p.out = out.data(); p.out_row_stride = qStride; p.workspace = ws.data(); p.workspace_bytes = wsBytes;
    a.launch(p, c.decode);

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
                    sc[j] = !vis ? -INFINITY : a.eagerRounding ? round_bf(round_bf(dot) * p.scale) : dot * p.scale;
                    m = std::max(m, sc[j]);
                }
                double sum = 0;
                for (int j = 0; j < n; j++)
                    if (sc[j] != -INFINITY) sum += exp((double)sc[j] - m);
                for (int e = 0; e < D; e++) {
                    double o = 0;
                    for (int j = 0; m != -INFINITY && j < n; j++)
                        if (sc[j] != -INFINITY) {
                            const double pr = exp((double)sc[j] - m) / sum;
                            o += (a.eagerRounding ? (double)round_bf((float)pr) : pr) * from_bits(v[g][j * kvStride + e]);
                        }
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
    const bool ok = bad == 0 && rel <= a.tolerance;
    printf("%s d=%d heads=%d/%d q=%d seqs=%d max_kv=%d window=%d%s: max err %.3g of %.3g, %d unwritten or stray%s\n",
           c.decode ? "decode " : "prefill", D, H, KVH, Q, S, L, c.window, emu_copy_late ? " late copies" : "", maxErr, maxRef, bad,
           ok ? "" : "  FAIL");
    return ok;
}

// Runs every case with copies landing at issue and, for decode cases (and
// prefill ones with lateCopiesPrefill), as late as the waits allow, so
// that a missing wait shows as stale data; exits non-zero on a failure.
static int emu_attention_main(const std::vector<EmuCase> &cases, const EmuAttention &a) {
    int failed = 0;
    for (size_t i = 0; i < cases.size(); i++) {
        for (int late = 0; late < 2; late++) {
            if (late && !cases[i].decode && !a.lateCopiesPrefill) continue;
            emu_copy_late = late;
            if (!emu_attention_run(cases[i], (unsigned)i + 1, a)) failed++;
        }
    }
    return failed != 0;
}
