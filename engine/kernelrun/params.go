package kernelrun

import (
	"fmt"
	"unsafe"

	"github.com/longctx/longctx/engine/cuda"
)

// Element types of Q/K/V (enum longctx_dtype in kernels/abi/common.h).
const (
	DTypeF32  = 1
	DTypeBF16 = 2
	DTypeF16  = 3
)

// DType returns the longctx_dtype value of a dtype name ("f32", "bf16",
// "f16"), the value LONGCTX_DTYPE is defined to.
func DType(name string) (int32, error) {
	switch name {
	case "f32":
		return DTypeF32, nil
	case "bf16":
		return DTypeBF16, nil
	case "f16":
		return DTypeF16, nil
	}
	return 0, fmt.Errorf("unknown dtype %q (want f32, bf16 or f16)", name)
}

// The Go mirrors below have the C structs' layout on 64-bit targets: fields
// in declaration order, natural alignment, pointers as 8-byte device
// addresses. params_test.go checks offsets and sizes against the C rules
// and, with a host C compiler, against the headers; gpu_test.go against
// NVRTC.

// KVHead mirrors longctx_kv_head: one sequence's cached keys or values of
// one KV head, Len rows of head_dim elements RowStride elements apart.
type KVHead struct {
	Data      cuda.DevicePtr // const void *
	Pos       cuda.DevicePtr // const longctx_i32 *: each row's position, increasing
	Len       int32
	RowStride int32
}

// AttentionParams mirrors longctx_attention_params (kernels/abi/attention.h).
type AttentionParams struct {
	NumSeqs       int32
	NumQ          int32
	NumHeads      int32
	NumKVHeads    int32
	HeadDim       int32
	Layer         int32
	SlidingWindow int32
	MaxKVLen      int32
	Scale         float32
	DType         int32

	Q          cuda.DevicePtr // [num_seqs][num_q] rows, QRowStride elements apart
	QRowStride int64
	QPos       cuda.DevicePtr // [num_seqs][num_q] longctx_i32

	K cuda.DevicePtr // [num_seqs * num_kv_heads] KVHead
	V cuda.DevicePtr

	Out          cuda.DevicePtr
	OutRowStride int64

	Workspace      cuda.DevicePtr
	WorkspaceBytes uint64
}

// KVScoreParams mirrors longctx_kv_score_params (kernels/abi/kv_score.h).
type KVScoreParams struct {
	NumSeqs    int32
	NumKVHeads int32
	HeadDim    int32
	Layer      int32
	MaxKVLen   int32
	DType      int32

	K cuda.DevicePtr // [num_seqs * num_kv_heads] KVHead
	V cuda.DevicePtr // null unless the policy needs values

	Scores cuda.DevicePtr // [num_seqs * num_kv_heads] float * to [len] outputs

	Workspace      cuda.DevicePtr
	WorkspaceBytes uint64
}

// Problem is what a launch's grid and workspace follow from
// (kernels/abi/launch.h).
type Problem struct {
	NumSeqs, NumHeads, NumKVHeads, NumQ, MaxKVLen int
}

// Rows is the number of score-matrix rows: num_seqs × num_heads × num_q.
func (p Problem) Rows() int64 { return int64(p.NumSeqs) * int64(p.NumHeads) * int64(p.NumQ) }

// Params is a role's parameter struct: *AttentionParams or *KVScoreParams.
type Params interface {
	// Problem is the shape the grid and workspace follow from.
	Problem() Problem
	workspace() (cuda.DevicePtr, uint64)
	pointer() unsafe.Pointer
}

// Problem of an attention launch.
func (p *AttentionParams) Problem() Problem {
	return Problem{NumSeqs: int(p.NumSeqs), NumHeads: int(p.NumHeads), NumKVHeads: int(p.NumKVHeads), NumQ: int(p.NumQ), MaxKVLen: int(p.MaxKVLen)}
}

func (p *AttentionParams) workspace() (cuda.DevicePtr, uint64) { return p.Workspace, p.WorkspaceBytes }
func (p *AttentionParams) pointer() unsafe.Pointer             { return unsafe.Pointer(p) }

// Problem of a kv.score launch: it has no query heads, so NumHeads is
// NumKVHeads and NumQ is 1 (launch.h).
func (p *KVScoreParams) Problem() Problem {
	return Problem{NumSeqs: int(p.NumSeqs), NumHeads: int(p.NumKVHeads), NumKVHeads: int(p.NumKVHeads), NumQ: 1, MaxKVLen: int(p.MaxKVLen)}
}

func (p *KVScoreParams) workspace() (cuda.DevicePtr, uint64) { return p.Workspace, p.WorkspaceBytes }
func (p *KVScoreParams) pointer() unsafe.Pointer             { return unsafe.Pointer(p) }

// KVHeadBytes is sizeof(longctx_kv_head): the stride of a descriptor array.
const KVHeadBytes = int(unsafe.Sizeof(KVHead{}))

// KVHeadsBytes encodes descriptors as the little-endian bytes of a
// longctx_kv_head array, for a copy to the device.
func KVHeadsBytes(heads []KVHead) []byte {
	out := make([]byte, 0, len(heads)*KVHeadBytes)
	for _, h := range heads {
		out = appendU64(out, uint64(h.Data))
		out = appendU64(out, uint64(h.Pos))
		out = appendU32(out, uint32(h.Len))
		out = appendU32(out, uint32(h.RowStride))
	}
	return out
}

func appendU64(b []byte, v uint64) []byte {
	return append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24), byte(v>>32), byte(v>>40), byte(v>>48), byte(v>>56))
}

func appendU32(b []byte, v uint32) []byte {
	return append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
}
