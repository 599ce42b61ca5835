package cpu

import (
	"math"

	"github.com/longctx/longctx/engine/vec"
)

// RMSNorm normalises each row of x (rows of len(w)) into out, as
// transformers' LlamaRMSNorm does in fp32: x · rsqrt(mean(x²) + eps) · w.
// out may alias x.
func RMSNorm(out, x, w []float32, eps float32) {
	d := len(w)
	for r := 0; r+d <= len(x); r += d {
		row := x[r : r+d]
		var ss float64
		for _, v := range row {
			ss += float64(v) * float64(v)
		}
		variance := float32(ss / float64(d))
		scale := float32(1 / math.Sqrt(float64(variance+eps)))
		o := out[r : r+d]
		for i, v := range row {
			o[i] = w[i] * (v * scale)
		}
	}
}

// SwiGLU sets gate[i] = silu(gate[i]) · up[i], the activation of the
// Llama/Mistral/Qwen MLP, with silu(x) = x·sigmoid(x).
func SwiGLU(gate, up []float32) {
	up = up[:len(gate)]
	for i, g := range gate {
		silu := float32(float64(g) / (1 + math.Exp(-float64(g))))
		gate[i] = silu * up[i]
	}
}

// Add sets dst[i] += src[i].
func Add(dst, src []float32) {
	src = src[:len(dst)]
	for i := range dst {
		dst[i] += src[i]
	}
}

// The bf16 variants below compute in fp32 and round to bf16 where the CUDA
// engine's kernels (kernels/core) store a bf16 tensor, which is where
// transformers running in bf16 rounds: every torch op computes in fp32
// and rounds its result once. The fp32 kernels above stay free of any
// rounding; the model picks one set of kernels when it is loaded.

// RMSNormBF16 is RMSNorm as kernels/core/rmsnorm.cu computes it (and
// transformers' LlamaRMSNorm on a bf16 tensor): the normalised row is
// rounded to bf16 (LlamaRMSNorm's .to(input_dtype)) before the weight
// multiplies it, and that product, a bf16 tensor op, is rounded again:
// out = bf16(w · bf16(x · rsqrt(mean(x²) + eps))). The mean and the
// reciprocal square root are fp32 as in the kernel; the sum of squares is
// accumulated in float64 and rounded to fp32 once, the exact sum that the
// kernel's fp32 tree sum approximates within its own rounding errors (no
// bf16 rounding sits inside it). out may alias x.
func RMSNormBF16(out, x, w []float32, eps float32) {
	d := len(w)
	invD := 1 / float32(d) // the kernel multiplies by __frcp_rn(H)
	for r := 0; r+d <= len(x); r += d {
		row := x[r : r+d]
		var ss float64
		for _, v := range row {
			ss += float64(v) * float64(v)
		}
		mean := float32(ss) * invD
		scale := float32(1 / math.Sqrt(float64(mean+eps)))
		o := out[r : r+d]
		for i, v := range row {
			o[i] = vec.RoundBF16(w[i] * vec.RoundBF16(v*scale))
		}
	}
}

// SwiGLUBF16 is SwiGLU as kernels/core/silu.cu computes it (transformers'
// act_fn(gate) * up on bf16 tensors): silu is an fp32 g / (1 + exp(-g))
// rounded to bf16 (ATen's SiLU stores a bf16 tensor), and the product
// with up is a second bf16 op: gate = bf16(bf16(silu(g)) · up).
func SwiGLUBF16(gate, up []float32) {
	up = up[:len(gate)]
	for i, g := range gate {
		e := float32(math.Exp(float64(-g))) // expf(-g) in the kernel
		silu := vec.RoundBF16(g / (1 + e))
		gate[i] = vec.RoundBF16(silu * up[i])
	}
}

// AddBF16 sets dst[i] = bf16(dst[i] + src[i]): the residual add of
// kernels/core/rmsnorm.cu's add_rmsnorm, which keeps the residual stream
// in bf16 (as transformers' hidden_states = residual + hidden_states does
// on bf16 tensors).
func AddBF16(dst, src []float32) {
	src = src[:len(dst)]
	for i := range dst {
		dst[i] = vec.RoundBF16(dst[i] + src[i])
	}
}
