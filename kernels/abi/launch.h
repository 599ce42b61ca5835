/*
 * How the engine launches a role's kernels. A role has one or more
 * kernels (Prepare's Kernel messages of that role, in order); the engine
 * launches each of them, in that order and on one stream, with the same
 * parameter struct. The block is each kernel's own (Launch.block_x/y/z,
 * dynamic shared memory Launch.shared_mem_bytes; above 48 KiB the engine
 * raises the function's dynamic shared memory limit first); the grid
 * follows from the problem by the kernel's grid rule:
 *
 *   GRID_RULE_Q_TILES_HEADS_SEQS      (ceil(num_q / tile_q), num_heads, num_seqs)
 *   GRID_RULE_HEADS_SEQS              (num_heads, num_seqs, 1)
 *   GRID_RULE_KV_TILES_KV_HEADS_SEQS  (ceil(max_kv_len / tile_kv), num_kv_heads, num_seqs)
 *   GRID_RULE_ROWS                    (ceil(num_seqs * num_heads * num_q / tile_q), 1, 1)
 *   GRID_RULE_KV_SPLITS_KV_HEADS_SEQS (splits, num_kv_heads, num_seqs), with
 *       splits = max(1, min(ceil(max_kv_len / tile_kv),
 *                           floor(resident / (num_kv_heads * num_seqs))))
 *       and splits = 0 when max_kv_len is 0
 *   GRID_RULE_KV_STREAM               (blocks, 1, 1), with
 *       blocks = min(resident, ceil(max_kv_len / tile_kv) * num_kv_heads * num_seqs)
 *       and blocks = 0 when max_kv_len is 0
 *
 * (kv.score has no query heads: there num_heads is num_kv_heads and
 * num_q is 1.) A kernel whose grid has a zero dimension is not launched.
 *
 * KV_SPLITS_KV_HEADS_SEQS (ABI version 3) is for split-KV (flash-decoding)
 * kernels: the grid fills the GPU once whatever the batch, instead of
 * growing with max_kv_len. resident is how many blocks of this kernel the
 * device holds at once: its multiprocessor count times
 * cuOccupancyMaxActiveBlocksPerMultiprocessor for the kernel's block
 * (block_x * block_y * block_z threads, shared_mem_bytes of dynamic
 * shared memory), computed once when the engine loads the kernel. tile_kv
 * is about the fewest keys a split gets: there are never more splits than
 * tile_kv-key tiles of max_kv_len, so a short cache gets fewer splits.
 * The split count is passed only as gridDim.x: the kernel derives each
 * split's key range from gridDim.x and its own KV head's len, never from
 * max_kv_len (within a CUDA graph that is the cache's capacity, longer
 * than the heads in use, and heads differ in length after compaction);
 * e.g. split s covers keys [s * per, min((s + 1) * per, len)) with
 * per = ceil(len / gridDim.x), which may be none.
 *
 * KV_STREAM (ABI version 4) is for stream-K style split-KV decoding: one
 * row of as many blocks as the device holds at once (resident, computed
 * as for KV_SPLITS_KV_HEADS_SEQS), fewer only when all (sequence, KV
 * head) pairs together have fewer tile_kv-key tiles of max_kv_len. The
 * kernel divides the keys of all the pairs evenly among the gridDim.x
 * blocks, so a block may span the end of one KV head and the start of
 * the next, and every SM gets the same number of keys even when
 * compaction left the heads with different lengths (KV_SPLITS_KV_HEADS_SEQS
 * gives each head the same number of splits, so the splits of short
 * heads finish early and leave their SMs idle). The kernel derives
 * everything from gridDim.x and the heads' real lengths (the len of each
 * KV head descriptor), never from max_kv_len; e.g. with the pairs in the
 * order seq * num_kv_heads + kv_head and total the sum of their lens,
 * block b covers keys [b * per, min((b + 1) * per, total)) of the pairs'
 * keys laid end to end, per = ceil(total / gridDim.x), and leaves a
 * partial result for each pair it touches for a combine kernel.
 *
 * Launch.overlap_previous (ABI version 4) lets the engine start the
 * kernel while the kernel enqueued before it on the stream is still
 * finishing (the role's previous kernel; for a role's first kernel,
 * whatever the engine enqueued last): CUDA's programmatic dependent
 * launch, cuLaunchKernelEx with
 * CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION = 1, which hides
 * the launch and the kernel's prologue (index arithmetic, shared memory
 * set-up) behind the previous kernel's last blocks. Such a kernel must
 * call longctx_wait_previous() (below: PTX griddepcontrol.wait, what
 * cudaGridDependencySynchronize does) before it reads or writes any
 * memory reachable from its parameters (the KV head descriptors and the
 * workspace included); it waits until the previous kernel has completed
 * and its writes are visible. Every block should call it, before any
 * early return too, so that the kernel never completes before the one it
 * overlaps. The previous kernel may call longctx_launch_dependents()
 * (griddepcontrol.launch_dependents) to let the next kernel start before
 * its own last blocks do; that makes none of its writes visible, it only
 * starts the overlap sooner. Where the device or driver cannot overlap
 * launches (compute capability below 9.0, or a driver without
 * cuLaunchKernelEx) the engine launches the kernel as any other, and
 * griddepcontrol.wait returns at once.
 *
 * Workspace: the kernels of a role share one scratch buffer of
 *
 *   max over the role's kernels of
 *     workspace_bytes
 *     + workspace_bytes_per_row   * rows
 *     + workspace_bytes_per_score * rows * max_kv_len
 *
 * bytes, rows = num_seqs * num_heads * num_q (a score matrix's rows: one
 * per query row of each query head), aligned to at least 256 bytes and
 * passed as params.workspace / workspace_bytes. Its contents are undefined
 * at the start of a launch.
 *
 * Each kernel is declared
 *
 *   extern "C" __global__ void ENTRY(longctx_attention_params p);
 *   extern "C" __global__ void ENTRY(longctx_kv_score_params p);
 *
 * with ENTRY the plugin's Kernel.entry. Decode launches are captured in
 * the engine's CUDA graph, so a kernel must not allocate, synchronise with
 * the host or depend on state from an earlier launch; within a graph,
 * max_kv_len is the cache's capacity and the real lengths are in the KV
 * head descriptors.
 */
#ifndef LONGCTX_ABI_LAUNCH_H
#define LONGCTX_ABI_LAUNCH_H

#define LONGCTX_GRID_RULE_Q_TILES_HEADS_SEQS 1
#define LONGCTX_GRID_RULE_HEADS_SEQS 2
#define LONGCTX_GRID_RULE_KV_TILES_KV_HEADS_SEQS 3
#define LONGCTX_GRID_RULE_ROWS 4
#define LONGCTX_GRID_RULE_KV_SPLITS_KV_HEADS_SEQS 5
#define LONGCTX_GRID_RULE_KV_STREAM 6

#ifdef __CUDACC__
/* Programmatic dependent launch (overlap_previous, above). Both are empty
 * below sm_90, where the engine never overlaps launches; the "memory"
 * clobber keeps the compiler from moving loads above the wait. */
static __device__ __forceinline__ void longctx_wait_previous(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

static __device__ __forceinline__ void longctx_launch_dependents(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
#endif

#endif
