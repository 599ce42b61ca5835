package gpu

import (
	"fmt"
	"math"

	"github.com/longctx/longctx/engine/cuda"
	"github.com/longctx/longctx/engine/gpu/ops"
	"github.com/longctx/longctx/engine/kernelrun"
)

// acts are the activations of one forward pass over T rows (the tokens of
// a prefill chunk, or one token per sequence in a decode step), all bf16
// [T][width] except the int32 token inputs.
type acts struct {
	T                        int
	ids, pos, tokSeq, tokOff cuda.DevicePtr // int32 [T]
	resid, normed, proj, mlp cuda.DevicePtr // [T][hidden]
	qkv                      cuda.DevicePtr // [T][(heads+2·kvHeads)·headDim]
	attn                     cuda.DevicePtr // [T][heads·headDim]
	gu                       cuda.DevicePtr // [T][2·intermediate]
	act                      cuda.DevicePtr // [T][intermediate]
	logits                   cuda.DevicePtr // [rows][vocab]
	next                     cuda.DevicePtr // int32 [rows]: argmax of each logits row
	rows                     int
	ws                       cuda.DevicePtr // attention workspace
	wsBytes                  int64
	arena                    arena
}

func (e *Engine) qkvWidth() int { return (e.cfg.NumHeads + 2*e.cfg.NumKVHeads) * e.cfg.HeadDim }

// newActs allocates the activations of T rows with rows logits rows.
func (e *Engine) newActs(T, rows int) (*acts, error) {
	c := e.cfg
	a := &acts{T: T, rows: rows, arena: arena{alloc: e.alloc}}
	h, t := int64(c.HiddenSize), int64(T)
	get := func(dst *cuda.DevicePtr, n int64, what string) error {
		p, err := a.arena.get(Activations, n, what)
		*dst = p
		return err
	}
	for _, b := range []struct {
		dst  *cuda.DevicePtr
		n    int64
		what string
	}{
		{&a.ids, 4 * t, "token ids"}, {&a.pos, 4 * t, "positions"}, {&a.tokSeq, 4 * t, "token sequences"}, {&a.tokOff, 4 * t, "token offsets"},
		{&a.resid, 2 * t * h, "residual stream"}, {&a.normed, 2 * t * h, "normed activations"},
		{&a.proj, 2 * t * h, "attention projection"}, {&a.mlp, 2 * t * h, "MLP output"},
		{&a.qkv, 2 * t * int64(e.qkvWidth()), "q/k/v"}, {&a.attn, 2 * t * int64(c.NumHeads*c.HeadDim), "attention output"},
		{&a.gu, 2 * t * 2 * int64(c.IntermediateSize), "gate/up"}, {&a.act, 2 * t * int64(c.IntermediateSize), "SwiGLU output"},
		{&a.logits, 2 * int64(rows) * int64(c.VocabSize), "logits"}, {&a.next, 4 * int64(rows), "next tokens"},
	} {
		if err := get(b.dst, b.n, b.what); err != nil {
			a.arena.free()
			return nil, err
		}
	}
	return a, nil
}

// workspace makes sure the attention workspace holds n bytes.
func (a *acts) workspace(n int64) error {
	if n <= a.wsBytes {
		return nil
	}
	if a.ws != 0 {
		a.arena.release(a.ws)
		a.ws, a.wsBytes = 0, 0
	}
	p, err := a.arena.get(Workspace, n, fmt.Sprintf("attention workspace (%s)", FormatBytes(n)))
	if err != nil {
		return err
	}
	a.ws, a.wsBytes = p, n
	return nil
}

// attnCall is the part of a layer's attention that differs between a
// prefill chunk and a decode step.
type attnCall struct {
	role          *kernelrun.Role
	kdesc, vdesc  func(l int) (cuda.DevicePtr, cuda.DevicePtr)
	numSeqs, numQ int
	maxKV         func(l int) int
	commitHeads   int // descriptors kv_commit advances
	commitN       int // tokens each of them gains
}

// layers runs every decoder layer over a's T rows; the residual stream
// a.resid must hold the embeddings. The last layer's MLP output is left in
// a.mlp, not yet added (the final norm adds it).
func (e *Engine) layers(a *acts, call attnCall) error {
	c := e.cfg
	H, I, hd := c.HiddenSize, c.IntermediateSize, c.HeadDim
	eps := float32(c.RMSNormEps)
	qkvW := e.qkvWidth()
	scale := float32(1 / math.Sqrt(float64(hd)))
	for l := range c.NumLayers {
		w := &e.w.layers[l]
		// done wraps an op's error with the layer and marks its end for
		// the profiler.
		done := func(what string, err error) error {
			if err != nil {
				return fmt.Errorf("layer %d %s: %w", l, what, err)
			}
			return e.mark(what)
		}
		var err error
		if l == 0 {
			err = e.ops.RMSNorm(e.stream, a.resid, H, w.inNorm, a.normed, H, a.T, H, eps)
		} else {
			err = e.ops.AddRMSNorm(e.stream, a.resid, a.mlp, H, w.inNorm, a.normed, H, a.T, H, eps)
		}
		if err := done("norm", err); err != nil {
			return err
		}
		if err := done("qkv projection", e.gemm(a.qkv, a.normed, w.qkv, w.qkvBias, a.T, qkvW, H)); err != nil {
			return err
		}
		kd, vd := call.kdesc(l)
		if err := done("rope+kv append", e.ops.QKVRoPEAppend(e.stream, a.qkv, qkvW, w.qNorm, w.kNorm, e.invFreq, a.pos, a.tokSeq, a.tokOff,
			kd, vd, a.T, c.NumHeads, c.NumKVHeads, hd, eps, 1)); err != nil {
			return err
		}
		if err := done("kv commit", e.ops.KVCommit(e.stream, kd, vd, call.commitHeads, call.commitN)); err != nil {
			return err
		}
		maxKV := call.maxKV(l)
		if err := a.workspace(call.role.Workspace(call.numSeqs, c.NumHeads, call.numQ, maxKV)); err != nil {
			return err
		}
		p := kernelrun.AttentionParams{
			NumSeqs: int32(call.numSeqs), NumQ: int32(call.numQ), NumHeads: int32(c.NumHeads), NumKVHeads: int32(c.NumKVHeads),
			HeadDim: int32(hd), Layer: int32(l), SlidingWindow: int32(c.Window(l)), MaxKVLen: int32(maxKV),
			Scale: scale, DType: kernelrun.DTypeBF16,
			Q: a.qkv, QRowStride: int64(qkvW), QPos: a.pos,
			K: kd, V: vd,
			Out: a.attn, OutRowStride: int64(c.NumHeads * hd),
			Workspace: a.ws, WorkspaceBytes: uint64(a.wsBytes),
		}
		if err := done("attention", call.role.Launch(e.stream, &p)); err != nil {
			return err
		}
		if err := done("o projection", e.gemm(a.proj, a.attn, w.o, w.oBias, a.T, H, c.NumHeads*hd)); err != nil {
			return err
		}
		if err := done("norm", e.ops.AddRMSNorm(e.stream, a.resid, a.proj, H, w.postNorm, a.normed, H, a.T, H, eps)); err != nil {
			return err
		}
		if err := done("gate/up projection", e.gemm(a.gu, a.normed, w.gateUp, w.guBias, a.T, 2*I, H)); err != nil {
			return err
		}
		if err := done("silu*up", e.ops.SiLUMul(e.stream, a.gu, 2*I, a.act, I, a.T, I)); err != nil {
			return err
		}
		if err := done("down projection", e.gemm(a.mlp, a.act, w.down, w.downBias, a.T, H, I)); err != nil {
			return err
		}
	}
	return nil
}

// head adds the last layer's MLP output to rows consecutive residual rows
// from firstRow, normalises them, and computes their logits and argmax
// into a.logits / a.next.
func (e *Engine) head(a *acts, firstRow, rows int) error {
	c := e.cfg
	H := c.HiddenSize
	off := cuda.DevicePtr(2 * firstRow * H)
	if err := e.ops.AddRMSNorm(e.stream, a.resid+off, a.mlp+off, H, e.w.norm, a.normed, H, rows, H, float32(c.RMSNormEps)); err != nil {
		return fmt.Errorf("final norm: %w", err)
	}
	if err := e.mark("norm"); err != nil {
		return err
	}
	if err := e.gemm(a.logits, a.normed, e.w.lmHead, 0, rows, c.VocabSize, H); err != nil {
		return fmt.Errorf("lm_head: %w", err)
	}
	if err := e.mark("lm_head"); err != nil {
		return err
	}
	if err := e.ops.Argmax(e.stream, a.logits, c.VocabSize, c.VocabSize, a.next, rows); err != nil {
		return fmt.Errorf("argmax: %w", err)
	}
	return e.mark("argmax")
}

// gemvRows is the most rows the engine gives its GEMV: measured on an H100,
// it reads Llama-3-8B's weights at 2.1–3.1 TB/s for one row, but at 8 rows
// (0.55–2.1 TB/s) cuBLASLt's kernels are faster.
const gemvRows = 2

// gemm computes Y[M][N] = X[M][K] · W[N][K]ᵀ (+ bias[N]) in bf16 with fp32
// accumulation, rows densely packed. Decode-sized products (a few rows of
// X against a large W) go to the engine's GEMV, which streams the weights
// near the device's bandwidth; everything else to cuBLASLt.
func (e *Engine) gemm(y, x, w, bias cuda.DevicePtr, M, N, K int) error {
	if e.gemvMin >= 0 && M <= gemvRows && int64(N)*int64(K) >= e.gemvMin && ops.GEMVFits(x, K, w, K, M, K) {
		return e.ops.GEMV(e.stream, x, K, w, K, bias, y, N, M, N, K)
	}
	return e.blas.GemmBF16(e.stream, cuda.GemmShape{M: M, N: N, K: K, LdX: K, LdW: K, LdY: N, Bias: bias != 0}, y, x, w, bias)
}
