/*
 * longctx kernel ABI: definitions shared by every role.
 *
 * Plugins deliver CUDA kernels for fixed roles; the engine compiles them
 * with NVRTC, allocates their memory and launches them on its own stream.
 * Each role's kernel takes one parameter struct by value, declared in the
 * role's header (attention.h, kv_score.h), and is launched with the grid
 * rule and block the plugin's Prepare returned (launch.h). A role may have
 * several kernels (version 2): the engine launches them in the order the
 * plugin lists them, on one stream, each with the same parameter struct and
 * its own launch geometry, all sharing one workspace, so a kernel may read
 * what an earlier kernel of the same launch wrote there. The headers use
 * no toolkit header, so NVRTC needs no include path to compile them.
 *
 * Layout rules: fields are in declaration order with natural alignment;
 * every pointer is a device pointer; sizes are element counts unless named
 * _bytes. A new field goes at the end of a struct and bumps
 * LONGCTX_ABI_VERSION; a plugin reports the version it was written against
 * in Kernel.abi_version and the engine refuses one it does not know.
 */
#ifndef LONGCTX_ABI_COMMON_H
#define LONGCTX_ABI_COMMON_H

/* 1: one kernel per role, fixed workspace.
 * 2: several kernels per role, workspace growing with the problem
 *    (launch.h), grid rule ROWS. The parameter structs are unchanged, so
 *    a version 1 kernel runs as it did.
 * 3: grid rule KV_SPLITS_KV_HEADS_SEQS (as many KV splits as fill the
 *    GPU once, launch.h). The parameter structs are unchanged, so
 *    version 1 and 2 kernels run as they did.
 * 4: grid rule KV_STREAM (the keys of every sequence's KV heads shared
 *    evenly among as many blocks as the GPU holds at once) and
 *    Launch.overlap_previous (programmatic dependent launch), both in
 *    launch.h. The parameter structs are unchanged, so version 1 to 3
 *    kernels run as they did. */
#define LONGCTX_ABI_VERSION 4

typedef int longctx_i32;
typedef unsigned int longctx_u32;
typedef long long longctx_i64;
typedef unsigned long long longctx_u64;

/* Element type of Q, K, V and attention output. The engine compiles a
 * kernel once per dtype with -DLONGCTX_DTYPE=<value>. */
enum longctx_dtype {
    LONGCTX_DTYPE_F32 = 1,
    LONGCTX_DTYPE_BF16 = 2,
    LONGCTX_DTYPE_F16 = 3
};

/* One sequence's cached keys or values for one KV head: tokens are rows
 * of head_dim elements, row_stride elements apart, len rows in use.
 * After KV compaction the heads of a layer may have different lengths. */
typedef struct longctx_kv_head {
    const void *data;
    const longctx_i32 *pos;  /* absolute position of each row, increasing */
    longctx_i32 len;
    longctx_i32 row_stride;
} longctx_kv_head;

#endif
