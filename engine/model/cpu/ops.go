package cpu

import "math"

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
