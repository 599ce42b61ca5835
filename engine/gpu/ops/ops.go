// Package ops launches the engine's own CUDA kernels (kernels/core): one
// typed method per kernel that checks its shapes, computes the grid and
// enqueues it. Launchers never allocate device memory nor synchronise, so
// they can be captured into a CUDA graph.
//
// Every kernel has a pure-Go reference here (Ref*) on bf16 bits
// ([]uint16) that rounds exactly as the kernel does, for tests and as the
// specification: transformers' bf16 arithmetic, fp32 inside each op and
// one rounding to bf16 per torch op.
package ops

import (
	"fmt"
	"unsafe"

	"github.com/longctx/longctx/engine/cuda"
	"github.com/longctx/longctx/kernels/core"
)

// Thread counts of the kernels, fixed in kernels/core; the references of
// the reductions replay the order these imply.
const (
	embedThreads  = 128
	normThreads   = 256 // NORM_THREADS in rmsnorm.cu
	ropeThreads   = 128
	commitThreads = 256
	siluThreads   = 256
	argmaxThreads = 1024
	selectThreads = 512 // SEL_THREADS in kv_select.cu
	gatherThreads = 256

	// MaxHeadDim is the largest head_dim qkv_rope_append handles
	// (ROPE_MAX_HD).
	MaxHeadDim = 256
)

// Kernels is the loaded kernels/core module.
type Kernels struct {
	d   *cuda.Driver
	mod cuda.Module
	fn  map[string]cuda.Function
}

// Load compiles kernels/core for arch (through the compile cache) and
// loads it into the current context.
func Load(d *cuda.Driver, nv *cuda.NVRTC, cache *cuda.Cache, arch string) (*Kernels, error) {
	src, err := core.Source()
	if err != nil {
		return nil, err
	}
	img, _, err := cuda.CompileCached(nv, cache, src, core.FileName, cuda.CompileOptions{Arch: arch})
	if err != nil {
		return nil, fmt.Errorf("kernels/core: %w", err)
	}
	mod, err := d.ModuleLoadData(img)
	if err != nil {
		return nil, fmt.Errorf("loading kernels/core for %s: %w", arch, err)
	}
	k := &Kernels{d: d, mod: mod, fn: map[string]cuda.Function{}}
	for _, name := range core.Entries() {
		f, err := d.ModuleFunction(mod, name)
		if err != nil {
			d.ModuleUnload(mod)
			return nil, fmt.Errorf("kernels/core: %w", err)
		}
		k.fn[name] = f
	}
	return k, nil
}

// Close unloads the module.
func (k *Kernels) Close() error {
	if err := k.d.ModuleUnload(k.mod); err != nil {
		return fmt.Errorf("unloading kernels/core: %w", err)
	}
	return nil
}

func (k *Kernels) launch(name string, grid, block cuda.Dim3, s cuda.Stream, args ...unsafe.Pointer) error {
	if err := k.d.Launch(k.fn[name], grid, block, 0, s, args...); err != nil {
		return fmt.Errorf("%s grid %v block %v: %w", name, grid, block, err)
	}
	return nil
}

func dim(x int) cuda.Dim3 { return cuda.Dim3{X: uint32(x), Y: 1, Z: 1} }

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// maxGrid bounds the first grid dimension of the grid-stride kernels.
const maxGrid = 1 << 20

// checkRows validates a row-major [T][width] operand with row stride ld.
func checkRows(what string, T, width, ld int) error {
	if T < 0 || width <= 0 || ld < width {
		return fmt.Errorf("%s: T=%d width=%d ld=%d: want T >= 0, width > 0, ld >= width", what, T, width, ld)
	}
	if int64(T)*int64(ld) >= 1<<62 {
		return fmt.Errorf("%s: T=%d ld=%d too large", what, T, ld)
	}
	return nil
}

// Embed copies row ids[t] of table [V][H] to out row t (dense [T][H]).
// Ids must be valid rows of the table; nothing checks them on the device.
func (k *Kernels) Embed(s cuda.Stream, table, ids, out cuda.DevicePtr, T, H int) error {
	if err := checkRows("embed", T, H, H); err != nil {
		return err
	}
	if T == 0 {
		return nil
	}
	t, h := int32(T), int32(H)
	return k.launch(core.Embed, dim(T), dim(embedThreads), s,
		unsafe.Pointer(&table), unsafe.Pointer(&ids), unsafe.Pointer(&out), unsafe.Pointer(&t), unsafe.Pointer(&h))
}

// RMSNorm writes out = bf16(w * bf16(x * rsqrt(mean(x²) + eps))) for T
// rows of H; out may be x.
func (k *Kernels) RMSNorm(s cuda.Stream, x cuda.DevicePtr, ldx int, w, out cuda.DevicePtr, ldo, T, H int, eps float32) error {
	if err := checkRows("rmsnorm x", T, H, ldx); err != nil {
		return err
	}
	if err := checkRows("rmsnorm out", T, H, ldo); err != nil {
		return err
	}
	if T == 0 {
		return nil
	}
	lx, lo, t, h := int32(ldx), int32(ldo), int32(T), int32(H)
	return k.launch(core.RMSNorm, dim(T), dim(normThreads), s,
		unsafe.Pointer(&x), unsafe.Pointer(&lx), unsafe.Pointer(&w), unsafe.Pointer(&out), unsafe.Pointer(&lo),
		unsafe.Pointer(&t), unsafe.Pointer(&h), unsafe.Pointer(&eps))
}

// AddRMSNorm adds delta into the residual stream, resid = bf16(resid +
// delta) (both with row stride ld), then writes RMSNorm(resid) to out.
func (k *Kernels) AddRMSNorm(s cuda.Stream, resid, delta cuda.DevicePtr, ld int, w, out cuda.DevicePtr, ldo, T, H int, eps float32) error {
	if err := checkRows("add_rmsnorm resid", T, H, ld); err != nil {
		return err
	}
	if err := checkRows("add_rmsnorm out", T, H, ldo); err != nil {
		return err
	}
	if T == 0 {
		return nil
	}
	l, lo, t, h := int32(ld), int32(ldo), int32(T), int32(H)
	return k.launch(core.AddRMSNorm, dim(T), dim(normThreads), s,
		unsafe.Pointer(&resid), unsafe.Pointer(&delta), unsafe.Pointer(&l), unsafe.Pointer(&w), unsafe.Pointer(&out),
		unsafe.Pointer(&lo), unsafe.Pointer(&t), unsafe.Pointer(&h), unsafe.Pointer(&eps))
}

// QKVRoPEAppend takes the QKV projection's rows, [T][ld] holding [q: nh·hd
// | k: nkv·hd | v: nkv·hd] each, applies the optional per-head q/k norms
// (qNorm, kNorm: bf16 [hd] weights, 0 for none), rotates q in place and
// writes the rotated k and the v of token t to row len+tokOff[t] of head
// (tokSeq[t], kv head) of the descriptor arrays kDesc / vDesc
// (longctx_kv_head [seqs·nkv]), with pos[t] as the row's position. invFreq
// is fp32 [hd/2]; pos, tokSeq and tokOff are int32 [T]. Lengths are not
// changed (KVCommit does that).
func (k *Kernels) QKVRoPEAppend(s cuda.Stream, qkv cuda.DevicePtr, ld int, qNorm, kNorm, invFreq, pos, tokSeq, tokOff,
	kDesc, vDesc cuda.DevicePtr, T, nh, nkv, hd int, eps, attnScaling float32) error {
	if nh <= 0 || nkv <= 0 || nh%nkv != 0 {
		return fmt.Errorf("qkv_rope_append: %d query heads and %d KV heads", nh, nkv)
	}
	if hd <= 0 || hd%2 != 0 || hd > MaxHeadDim {
		return fmt.Errorf("qkv_rope_append: head_dim %d must be even and at most %d", hd, MaxHeadDim)
	}
	if err := checkRows("qkv_rope_append qkv", T, (nh+2*nkv)*hd, ld); err != nil {
		return err
	}
	if T == 0 {
		return nil
	}
	l, t, h, hk, d := int32(ld), int32(T), int32(nh), int32(nkv), int32(hd)
	return k.launch(core.QKVRoPEAppend, dim(T), dim(ropeThreads), s,
		unsafe.Pointer(&qkv), unsafe.Pointer(&l), unsafe.Pointer(&qNorm), unsafe.Pointer(&kNorm), unsafe.Pointer(&invFreq),
		unsafe.Pointer(&pos), unsafe.Pointer(&tokSeq), unsafe.Pointer(&tokOff), unsafe.Pointer(&kDesc), unsafe.Pointer(&vDesc),
		unsafe.Pointer(&t), unsafe.Pointer(&h), unsafe.Pointer(&hk), unsafe.Pointer(&d), unsafe.Pointer(&eps), unsafe.Pointer(&attnScaling))
}

// KVCommit adds nNew to len of the first heads descriptors of kDesc and
// of vDesc.
func (k *Kernels) KVCommit(s cuda.Stream, kDesc, vDesc cuda.DevicePtr, heads, nNew int) error {
	if heads < 0 || nNew < 0 {
		return fmt.Errorf("kv_commit: %d heads, %d new tokens", heads, nNew)
	}
	if heads == 0 {
		return nil
	}
	h, n := int32(heads), int32(nNew)
	return k.launch(core.KVCommit, dim(ceilDiv(heads, commitThreads)), dim(commitThreads), s,
		unsafe.Pointer(&kDesc), unsafe.Pointer(&vDesc), unsafe.Pointer(&h), unsafe.Pointer(&n))
}

// SiLUMul computes out = bf16(bf16(silu(g)) · u) for rows [g: I | u: I]
// of gu (row stride ldgu) into out (row stride ldo).
func (k *Kernels) SiLUMul(s cuda.Stream, gu cuda.DevicePtr, ldgu int, out cuda.DevicePtr, ldo, T, I int) error {
	if err := checkRows("silu_mul gu", T, 2*I, ldgu); err != nil {
		return err
	}
	if err := checkRows("silu_mul out", T, I, ldo); err != nil {
		return err
	}
	if T == 0 {
		return nil
	}
	work := int64(T) * int64(I)
	vec := int32(0)
	if I%8 == 0 && ldgu%8 == 0 && ldo%8 == 0 && gu%16 == 0 && out%16 == 0 {
		vec, work = 1, work/8
	}
	grid := int(min((work+siluThreads-1)/siluThreads, maxGrid))
	lg, lo, t, i := int32(ldgu), int32(ldo), int32(T), int32(I)
	return k.launch(core.SiLUMul, dim(grid), dim(siluThreads), s,
		unsafe.Pointer(&gu), unsafe.Pointer(&lg), unsafe.Pointer(&out), unsafe.Pointer(&lo),
		unsafe.Pointer(&t), unsafe.Pointer(&i), unsafe.Pointer(&vec))
}

// Argmax writes to out (int32 [rows]) the index of each row's largest
// logit (bf16 [rows][ld], V wide), the lowest on ties, NaN never (0 for a
// row of NaN only).
func (k *Kernels) Argmax(s cuda.Stream, logits cuda.DevicePtr, ld, V int, out cuda.DevicePtr, rows int) error {
	if err := checkRows("argmax", rows, V, ld); err != nil {
		return err
	}
	if rows == 0 {
		return nil
	}
	l, v, r := int32(ld), int32(V), int32(rows)
	return k.launch(core.Argmax, dim(rows), dim(argmaxThreads), s,
		unsafe.Pointer(&logits), unsafe.Pointer(&l), unsafe.Pointer(&v), unsafe.Pointer(&out), unsafe.Pointer(&r))
}

// KVSelect picks the tokens each of heads KV heads keeps, with
// kvpolicy.Select's rule: n = the head's len in kDesc, target[h] (int32
// [heads]) tokens kept besides the protected first sink and last window,
// fp32 scores [heads][scoreStride]. keepIdx (int32 [heads][idxStride]) gets
// the kept indices in increasing order and keepCount (int32 [heads]) their
// number. errFlag (one int32) is set to 1 if a score is NaN, 2 if a target
// is negative (that head then keeps everything); it is never cleared.
// idxStride must be at least every head's len.
func (k *Kernels) KVSelect(s cuda.Stream, scores cuda.DevicePtr, scoreStride int, kDesc cuda.DevicePtr, heads int,
	target cuda.DevicePtr, sink, window int, keepIdx cuda.DevicePtr, idxStride int, keepCount, errFlag cuda.DevicePtr) error {
	if heads < 0 || heads > 1<<31-1 || sink < 0 || window < 0 || scoreStride < 0 || idxStride < 0 {
		return fmt.Errorf("kv_select: heads %d, sink %d, window %d, score stride %d, index stride %d must not be negative",
			heads, sink, window, scoreStride, idxStride)
	}
	if heads == 0 {
		return nil
	}
	ss, h, si, wi, is := int32(scoreStride), int32(heads), int32(min(sink, 1<<31-1)), int32(min(window, 1<<31-1)), int32(idxStride)
	return k.launch(core.KVSelect, dim(heads), dim(selectThreads), s,
		unsafe.Pointer(&scores), unsafe.Pointer(&ss), unsafe.Pointer(&kDesc), unsafe.Pointer(&h), unsafe.Pointer(&target),
		unsafe.Pointer(&si), unsafe.Pointer(&wi), unsafe.Pointer(&keepIdx), unsafe.Pointer(&is),
		unsafe.Pointer(&keepCount), unsafe.Pointer(&errFlag))
}

// KVGather copies, for each of heads heads, rows keepIdx[h][j] (j <
// keepCount[h]) of K, V and positions from the srcK / srcV descriptors to
// row j of dstK / dstV, and sets the destinations' len to keepCount[h].
// head_dim is hd; source and destination memory must not overlap.
// idxStride bounds keepCount and sizes the grid.
func (k *Kernels) KVGather(s cuda.Stream, srcK, srcV, dstK, dstV, keepIdx cuda.DevicePtr, idxStride int, keepCount cuda.DevicePtr, heads, hd int) error {
	if heads < 0 || heads > 65535 || hd <= 0 || idxStride < 0 {
		return fmt.Errorf("kv_gather: heads %d (at most 65535), head_dim %d, index stride %d", heads, hd, idxStride)
	}
	if int64(idxStride)*int64(hd) >= 1<<31 {
		return fmt.Errorf("kv_gather: %d rows of head_dim %d overflow the kernel's 32-bit indexing", idxStride, hd)
	}
	if heads == 0 {
		return nil
	}
	// Enough blocks that each thread copies a few 16-byte chunks of a head
	// that keeps idxStride rows.
	perHead := min(max(ceilDiv(idxStride*max(hd/8, 1), gatherThreads*4), 1), 65535)
	is, h, d := int32(idxStride), int32(heads), int32(hd)
	return k.launch(core.KVGather, cuda.Dim3{X: uint32(perHead), Y: uint32(heads), Z: 1}, dim(gatherThreads), s,
		unsafe.Pointer(&srcK), unsafe.Pointer(&srcV), unsafe.Pointer(&dstK), unsafe.Pointer(&dstV), unsafe.Pointer(&keepIdx),
		unsafe.Pointer(&is), unsafe.Pointer(&keepCount), unsafe.Pointer(&h), unsafe.Pointer(&d))
}

// GEMVMaxRows is the most rows of X GEMV takes.
const GEMVMaxRows = 8

// gemv geometry, as kernels/core/gemv.cu defines it.
const (
	gemvThreads     = 256
	gemvRowsPerWarp = 2
)

// GEMVFits reports whether GEMV can compute a product of these operands:
// at most GEMVMaxRows rows, K and the leading dimensions of X and W
// multiples of 8 elements and both 16-byte aligned (it reads them in
// 16-byte loads).
func GEMVFits(x cuda.DevicePtr, ldx int, w cuda.DevicePtr, ldw, M, K int) bool {
	return M >= 1 && M <= GEMVMaxRows && K%8 == 0 && ldx%8 == 0 && ldw%8 == 0 && x%16 == 0 && w%16 == 0
}

// GEMV computes Y[m][n] = Σ_k X[m][k]·W[n][k] (+ bias[n]) for M ≤
// GEMVMaxRows rows in bf16 with fp32 accumulation, rows ldx, ldw, ldy
// elements apart; bias may be 0. Operands must pass GEMVFits.
func (k *Kernels) GEMV(s cuda.Stream, x cuda.DevicePtr, ldx int, w cuda.DevicePtr, ldw int, bias, y cuda.DevicePtr, ldy, M, N, K int) error {
	if !GEMVFits(x, ldx, w, ldw, M, K) || N <= 0 || ldy < N || ldx < K || ldw < K {
		return fmt.Errorf("gemv: M=%d N=%d K=%d ldx=%d ldw=%d ldy=%d (x %#x, w %#x): want 1 <= M <= %d, K, ldx, ldw multiples of 8, 16-byte aligned operands",
			M, N, K, ldx, ldw, ldy, uint64(x), uint64(w), GEMVMaxRows)
	}
	return k.gemv(s, x, ldx, w, ldw, bias, y, ldy, M, N, K, gemvSplit(K))
}

// gemv launches core_gemv with split warps per pair of output rows.
func (k *Kernels) gemv(s cuda.Stream, x cuda.DevicePtr, ldx int, w cuda.DevicePtr, ldw int, bias, y cuda.DevicePtr, ldy, M, N, K, split int) error {
	lx, lw, ly := int64(ldx), int64(ldw), int64(ldy)
	m, n, kk, ks := int32(M), int32(N), int32(K), int32(split)
	blocks := ceilDiv(N, gemvThreads/32/split*gemvRowsPerWarp)
	return k.launch(core.GEMV, dim(blocks), dim(gemvThreads), s,
		unsafe.Pointer(&x), unsafe.Pointer(&lx), unsafe.Pointer(&w), unsafe.Pointer(&lw), unsafe.Pointer(&bias),
		unsafe.Pointer(&y), unsafe.Pointer(&ly), unsafe.Pointer(&m), unsafe.Pointer(&n), unsafe.Pointer(&kk), unsafe.Pointer(&ks))
}

// gemvSplit is how many warps share a pair of output rows: the most (up
// to the block's 8 warps) that leaves each warp at least 1536 columns,
// about one full unrolled pass of its lanes (32 lanes × 8 loads × 8
// columns = 2048). Measured on an H100 (BenchmarkGPUGEMV, weights from
// HBM): Llama-3-8B's projections at K = 4096 are fastest split in two
// (gate/up 2.87 vs 2.75 TB/s unsplit, lm_head 3.13 vs 3.08) and the
// down projection (K = 14336) split in eight (2.58 TB/s, 2.01 unsplit);
// splitting K = 4096 in four leaves half the lanes idle and is slower.
func gemvSplit(K int) int {
	split := 1
	for split < gemvThreads/32 && K/(2*split) >= 1536 {
		split *= 2
	}
	return split
}
