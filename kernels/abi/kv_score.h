/*
 * Role kv.score: one score per cached token per KV head of one layer,
 * higher meaning more worth keeping (L2: -||k||_2 computed in fp32 on the
 * post-RoPE key). The engine reads the scores back, chooses what to keep
 * with the plugin's policy and compacts the cache itself.
 *
 * Reference: engine/kvpolicy (ScoreInput, Select) states the same in Go.
 */
#ifndef LONGCTX_ABI_KV_SCORE_H
#define LONGCTX_ABI_KV_SCORE_H

#include "common.h"

typedef struct longctx_kv_score_params {
    longctx_i32 num_seqs;
    longctx_i32 num_kv_heads;
    longctx_i32 head_dim;
    longctx_i32 layer;
    longctx_i32 max_kv_len;    /* >= every KV head's len */
    longctx_i32 dtype;         /* enum longctx_dtype */

    /* [num_seqs * num_kv_heads], indexed seq * num_kv_heads + kv_head;
     * v is null unless the plugin's policy set needs_values */
    const longctx_kv_head *k;
    const longctx_kv_head *v;

    /* [num_seqs * num_kv_heads] pointers to fp32 outputs, one per cached
     * row: scores[seq * num_kv_heads + h][row] for row < that head's len */
    float *const *scores;

    void *workspace;
    longctx_u64 workspace_bytes;
} longctx_kv_score_params;

#endif
