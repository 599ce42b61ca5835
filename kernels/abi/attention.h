/*
 * Roles attention.prefill and attention.decode.
 *
 * One layer's attention for num_seqs sequences of num_q query rows each
 * (prefill: one sequence, any num_q; decode: num_q == 1, any num_seqs).
 * Query head h reads KV head h / (num_heads / num_kv_heads). Key kv of a
 * sequence is visible to its query q when kv_pos <= q_pos and, with
 * sliding_window > 0, q_pos - kv_pos < sliding_window: the mask every
 * backend implements (a flex plugin's kernels implement their own mask
 * expression instead). Scores are (q . k) * scale, softmax in fp32. A
 * query row that sees no key produces zeros.
 *
 * Reference: engine/attention (Problem, Eager) states the same in Go.
 */
#ifndef LONGCTX_ABI_ATTENTION_H
#define LONGCTX_ABI_ATTENTION_H

#include "common.h"

typedef struct longctx_attention_params {
    longctx_i32 num_seqs;
    longctx_i32 num_q;         /* query rows per sequence */
    longctx_i32 num_heads;
    longctx_i32 num_kv_heads;
    longctx_i32 head_dim;
    longctx_i32 layer;
    longctx_i32 sliding_window; /* 0: none */
    longctx_i32 max_kv_len;     /* >= every KV head's len: the longest at
                                 * prefill, the cache capacity in a decode
                                 * graph; real lengths are in k and v */
    float scale;
    longctx_i32 dtype;          /* enum longctx_dtype */

    /* [num_seqs][num_q][num_heads][head_dim], rows q_row_stride apart
     * (in elements, per query row) */
    const void *q;
    longctx_i64 q_row_stride;
    const longctx_i32 *q_pos;   /* [num_seqs][num_q] */

    /* [num_seqs * num_kv_heads], indexed seq * num_kv_heads + kv_head */
    const longctx_kv_head *k;
    const longctx_kv_head *v;

    /* same layout as q; written for every element */
    void *out;
    longctx_i64 out_row_stride;

    /* scratch of the size the plugin asked for (launch.h), shared by the
     * role's kernels; contents undefined at the start of a launch */
    void *workspace;
    longctx_u64 workspace_bytes;
} longctx_attention_params;

#endif
