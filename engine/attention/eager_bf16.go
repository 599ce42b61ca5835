package attention

import "context"

// EagerBF16 is Eager with the roundings of transformers' eager attention on
// bf16 tensors, which the GPU eager plugin's kernels materialise
// (plugins/attention/eager/eager.cu):
//
//	S   = bf16(bf16(Q·Kᵀ) · Scale)   fp32 dot products; the matmul stores bf16, "* scaling" rounds again
//	S   = −Inf where Visible is false
//	P32 = softmax(S) in fp32         (softmax(dtype=float32)): exp(s − max) / Σ exp
//	P   = bf16(P32)                  (.to(query.dtype))
//	O   = bf16(P·V)                  fp32 accumulation, one rounding when the matmul stores O
//
// Q, K and V must hold bf16 values (the bf16 model stores them so), which
// makes every product in the two matmuls exact in fp32, as on tensor
// cores; only the order of the fp32 sums differs from the GPU's. A query
// row that sees no key gets zeros, as in Eager and the plugin.
type EagerBF16 struct {
	// Workers bounds the goroutines used; 0 means runtime.GOMAXPROCS(0).
	Workers int
}

var _ Backend = EagerBF16{}

// Name returns "eager-bf16".
func (EagerBF16) Name() string { return "eager-bf16" }

// Attend computes p.Out, every element a bf16 value.
func (e EagerBF16) Attend(ctx context.Context, p *Problem) error {
	return attendParallel(ctx, p, e.Workers, attendGroupBF16)
}
