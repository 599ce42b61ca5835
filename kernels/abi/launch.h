/*
 * How the engine launches a role's kernel. The block is the plugin's
 * (Launch.block_x/y/z, dynamic shared memory Launch.shared_mem_bytes);
 * the grid follows from the problem by the plugin's grid rule:
 *
 *   GRID_RULE_Q_TILES_HEADS_SEQS      (ceil(num_q / tile_q), num_heads, num_seqs)
 *   GRID_RULE_HEADS_SEQS              (num_heads, num_seqs, 1)
 *   GRID_RULE_KV_TILES_KV_HEADS_SEQS  (ceil(max_kv_len / tile_kv), num_kv_heads, num_seqs)
 *
 * The kernel is declared
 *
 *   extern "C" __global__ void ENTRY(longctx_attention_params p);
 *   extern "C" __global__ void ENTRY(longctx_kv_score_params p);
 *
 * with ENTRY the plugin's Kernel.entry. Decode launches are captured in
 * the engine's CUDA graph, so a kernel must not allocate, synchronise with
 * the host or depend on state from an earlier launch.
 */
#ifndef LONGCTX_ABI_LAUNCH_H
#define LONGCTX_ABI_LAUNCH_H

#define LONGCTX_GRID_RULE_Q_TILES_HEADS_SEQS 1
#define LONGCTX_GRID_RULE_HEADS_SEQS 2
#define LONGCTX_GRID_RULE_KV_TILES_KV_HEADS_SEQS 3

#endif
