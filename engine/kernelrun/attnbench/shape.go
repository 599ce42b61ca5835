// Package attnbench times an attention plugin's GPU kernels (the
// attention.prefill and attention.decode roles of kernels/abi) on
// synthetic bf16 problems and the device's copy bandwidth, the yardstick a
// memory-bound decode kernel is held against. Each shape gets its own
// device buffers, freed before the next; an allocation the GPU cannot
// satisfy makes an "oom" result, not an error of the run.
package attnbench

import (
	"fmt"
	"math"
	"strings"

	"github.com/longctx/longctx/plugins/sdk"
)

// Phase is the attention role a shape exercises.
type Phase string

// The phases.
const (
	// Prefill: N causal queries per sequence (positions 0..N-1) against
	// the same N keys.
	Prefill Phase = "prefill"
	// Decode: one query per sequence (position N-1) against N cached keys.
	Decode Phase = "decode"
)

// ParsePhase reads "prefill" or "decode".
func ParsePhase(s string) (Phase, error) {
	switch p := Phase(strings.TrimSpace(s)); p {
	case Prefill, Decode:
		return p, nil
	}
	return "", fmt.Errorf("phase %q: want prefill or decode", s)
}

// Role is the kernel role of the phase.
func (p Phase) Role() string {
	if p == Decode {
		return sdk.RoleAttentionDecode
	}
	return sdk.RoleAttentionPrefill
}

// Shape is one benchmark problem: Batch sequences, each with N cached keys
// per KV head and NumQ queries, Heads query heads sharing KVHeads K/V heads
// (GQA), head dimension HeadDim, all bf16.
type Shape struct {
	Phase                   Phase
	Batch                   int
	N                       int // context length: keys per (sequence, KV head)
	Heads, KVHeads, HeadDim int
	// MaxKV is the capacity the launch is sized for (max_kv_len), as a
	// decode graph captured for a longer cache would be; 0 means N.
	MaxKV int
}

// NumQ is the number of query rows per sequence.
func (s Shape) NumQ() int {
	if s.Phase == Decode {
		return 1
	}
	return s.N
}

// Capacity is max_kv_len of the launch: MaxKV, or N when MaxKV is 0.
func (s Shape) Capacity() int {
	if s.MaxKV == 0 {
		return s.N
	}
	return s.MaxKV
}

// Validate checks the shape before anything is allocated.
func (s Shape) Validate() error {
	switch {
	case s.Phase != Prefill && s.Phase != Decode:
		return fmt.Errorf("shape %v: phase %q: want prefill or decode", s, s.Phase)
	case s.Batch < 1 || s.N < 1 || s.Heads < 1 || s.KVHeads < 1 || s.HeadDim < 1:
		return fmt.Errorf("shape %v: batch, N, heads, KV heads and head dim must be positive", s)
	case s.Heads%s.KVHeads != 0:
		return fmt.Errorf("shape %v: %d heads not a multiple of %d KV heads", s, s.Heads, s.KVHeads)
	case s.MaxKV != 0 && s.MaxKV < s.N:
		return fmt.Errorf("shape %v: capacity %d below N %d", s, s.MaxKV, s.N)
	case s.Capacity() > math.MaxInt32 || int64(s.Heads)*int64(s.HeadDim) > math.MaxInt32:
		return fmt.Errorf("shape %v: out of the ABI's int32 range", s)
	}
	return nil
}

// String is e.g. "prefill batch 1 N 8192 heads 32/8 d 128".
func (s Shape) String() string {
	out := fmt.Sprintf("%s batch %d N %d heads %d/%d d %d", s.Phase, s.Batch, s.N, s.Heads, s.KVHeads, s.HeadDim)
	if s.MaxKV != 0 && s.MaxKV != s.N {
		out += fmt.Sprintf(" capacity %d", s.MaxKV)
	}
	return out
}

// FLOPs is the floating-point work of one launch counted the usual way for
// attention, two matrix products of 2·d flops per (query, key) pair and
// head: prefill 4·N²·d·heads·batch halved for the causal mask, decode
// 4·N·d·heads·batch.
func (s Shape) FLOPs() float64 {
	perPair := 4 * float64(s.HeadDim) * float64(s.Heads) * float64(s.Batch)
	n := float64(s.N)
	if s.Phase == Decode {
		return perPair * n
	}
	return perPair * n * n / 2
}

// Bytes is the memory traffic GB/s is counted from. Decode: the K and V
// bytes read, 2·batch·kvHeads·N·d·2, what bounds a decode kernel. Prefill:
// Q, K and V read once and O written once (bf16), the least any kernel
// moves; a kernel that rereads K/V per query tile moves more.
func (s Shape) Bytes() float64 {
	kv := 2 * float64(s.Batch) * float64(s.KVHeads) * float64(s.N) * float64(s.HeadDim) * 2
	if s.Phase == Decode {
		return kv
	}
	qo := 2 * float64(s.Batch) * float64(s.N) * float64(s.Heads) * float64(s.HeadDim) * 2
	return kv + qo
}

// InputBytes is what one launch reads from its inputs: Q and rows 0..N-1
// of K and V, bf16 (the descriptor arrays and positions are left out). A
// cold-L2 run (Options.ColdL2) sizes its input sets by it, as
// tools/refgen/attn_bench.py --cold-l2 does.
func (s Shape) InputBytes() int64 {
	q := int64(s.Batch) * int64(s.NumQ()) * int64(s.Heads) * int64(s.HeadDim) * 2
	kv := 2 * int64(s.Batch) * int64(s.KVHeads) * int64(s.N) * int64(s.HeadDim) * 2
	return q + kv
}

// BytesCounted says in words what Bytes counts, for reports.
func (s Shape) BytesCounted() string {
	if s.Phase == Decode {
		return "K+V read"
	}
	return "Q+K+V read + O written"
}
