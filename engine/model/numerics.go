package model

import (
	"fmt"

	"github.com/longctx/longctx/engine/attention"
	"github.com/longctx/longctx/engine/model/cpu"
	"github.com/longctx/longctx/engine/model/rope"
	"github.com/longctx/longctx/engine/vec"
	"github.com/longctx/longctx/engine/weights"
)

// Numerics selects the arithmetic of the CPU forward pass.
type Numerics uint8

const (
	// NumericsFP32 computes in fp32 throughout and never rounds to a
	// narrower type: transformers running the checkpoint in fp32.
	NumericsFP32 Numerics = iota
	// NumericsBF16 computes in fp32 but rounds to bf16 wherever the CUDA
	// engine (engine/gpu) stores a bf16 tensor: the weights, every
	// projection's output, the residual stream, the norms, RoPE, SwiGLU,
	// the keys and values in the KV cache, attention's scores,
	// probabilities and output (attention.EagerBF16), and the logits. It
	// is the CPU twin of the GPU engine with the eager plugin, and of
	// transformers in bf16 with eager attention, up to the order of fp32
	// sums.
	NumericsBF16
)

// String returns "fp32" or "bf16", the names ParseNumerics reads.
func (n Numerics) String() string {
	switch n {
	case NumericsFP32:
		return "fp32"
	case NumericsBF16:
		return "bf16"
	}
	return fmt.Sprintf("Numerics(%d)", uint8(n))
}

// ParseNumerics reads "fp32" or "bf16".
func ParseNumerics(s string) (Numerics, error) {
	for _, n := range []Numerics{NumericsFP32, NumericsBF16} {
		if s == n.String() {
			return n, nil
		}
	}
	return 0, fmt.Errorf("numerics %q: want fp32 or bf16", s)
}

// validate rejects a value that is not one of the constants.
func (n Numerics) validate() error {
	if n > NumericsBF16 {
		return fmt.Errorf("model: LoadOptions.Numerics %d is not a known mode (fp32, bf16)", uint8(n))
	}
	return nil
}

// arith is the forward pass's arithmetic, chosen once when the model is
// loaded, so the fp32 path runs the fp32 kernels with no per-element test.
// Each function works on whole buffers.
type arith struct {
	rmsNorm  func(out, x, w []float32, eps float32)
	swiGLU   func(gate, up []float32)
	residual func(dst, src []float32) // dst += src
	rotate   func(t rope.Table, x []float32, r int)
	// store is applied to every matrix product's output (bias included):
	// a no-op in fp32, bf16 rounding where the GPU's GEMM writes bf16.
	store func(s []float32)
}

func fp32Arith() arith {
	return arith{
		rmsNorm:  cpu.RMSNorm,
		swiGLU:   cpu.SwiGLU,
		residual: cpu.Add,
		rotate:   rope.Table.Rotate,
		store:    func([]float32) {},
	}
}

// bf16Arith mirrors the rounding points of engine/gpu/forward.go and the
// kernels it launches (kernels/core):
//   - rmsNorm: core_rmsnorm / core_add_rmsnorm (and the q/k norm inside
//     core_qkv_rope_append) write bf16(w · bf16(x · r));
//   - residual: core_add_rmsnorm stores the residual stream in bf16,
//     resid = bf16(resid + delta), before normalising it;
//   - rotate: core_qkv_rope_append's RoPE with bf16 cos/sin and a rounding
//     after each product and after the sum; its output is what the KV
//     cache holds for keys (values are the v projection's bf16 output);
//   - swiGLU: core_silu_mul's bf16(bf16(silu(g)) · u);
//   - store: cuBLASLt (and the engine's GEMV) multiply bf16 operands with
//     fp32 accumulation, add the bf16 bias in fp32 (the BIAS epilogue) and
//     round once when writing the bf16 output: q/k/v, o, gate/up, down and
//     lm_head alike.
func bf16Arith() arith {
	return arith{
		rmsNorm:  cpu.RMSNormBF16,
		swiGLU:   cpu.SwiGLUBF16,
		residual: cpu.AddBF16,
		rotate:   rope.Table.RotateBF16,
		store:    vec.RoundBF16s,
	}
}

func (n Numerics) arith() arith {
	if n == NumericsBF16 {
		return bf16Arith()
	}
	return fp32Arith()
}

// attentionFor returns the attention backend for numerics n: the caller's,
// or the built-in eager backend of that arithmetic when it gave none. bf16
// numerics need attention that rounds as the GPU eager kernels do; a
// backend computing in fp32 (a plugin's Go reference) would silently mix
// the two, so only attention.EagerBF16 is accepted.
func attentionFor(n Numerics, given attention.Backend, workers int) (attention.Backend, error) {
	switch {
	case given == nil && n == NumericsBF16:
		return attention.EagerBF16{Workers: workers}, nil
	case given == nil:
		return attention.Eager{Workers: workers}, nil
	case n == NumericsBF16:
		if _, ok := given.(attention.EagerBF16); !ok {
			return nil, fmt.Errorf("model: bf16 numerics run the built-in bf16 eager attention; attention backend %q computes in fp32 (leave LoadOptions.Attention unset)", given.Name())
		}
	}
	return given, nil
}

// bf16Source hands out every floating-point tensor of a Source as BF16,
// converting F16 and F32 ones as the GPU engine does when it uploads them
// (weights.Tensor.BF16Data). BF16 tensors and
// tensors of a type the engine cannot read pass through unchanged, so the
// binder reports those as it would otherwise. A converted tensor is a
// bf16 copy on the heap (half the size of an F32 original).
type bf16Source struct {
	weights.Source
}

func (s bf16Source) Tensor(name string) (weights.Tensor, error) {
	t, err := s.Source.Tensor(name)
	if err != nil || (t.DType != weights.F16 && t.DType != weights.F32) {
		return t, err
	}
	data, err := t.BF16Data()
	if err != nil {
		return weights.Tensor{}, fmt.Errorf("converting to bf16: %w", err)
	}
	return weights.Tensor{Name: t.Name, DType: weights.BF16, Shape: t.Shape, Data: data}, nil
}
