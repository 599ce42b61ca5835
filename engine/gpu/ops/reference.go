package ops

import (
	"fmt"
	"math"

	"github.com/longctx/longctx/engine/weights"
)

// BF16 rounds f to bf16 bits, nearest even (as the kernels' cvt.rn).
func BF16(f float32) uint16 { return weights.Float32ToBF16(f) }

// F32 widens bf16 bits.
func F32(b uint16) float32 { return math.Float32frombits(uint32(b) << 16) }

// round is the value a bf16 tensor holds for f.
func round(f float32) float32 { return F32(BF16(f)) }

// Libm is the fp32 functions the kernels call whose CUDA versions are not
// correctly rounded (rsqrtf, expf, cosf, sinf: up to 2 ulp off). HostLibm
// rounds the float64 results; GPU tests swap in the device's own values to
// compare bit for bit.
type Libm struct {
	Rsqrt, Exp, Cos, Sin func(float32) float32
}

// HostLibm computes each function in float64 and rounds once.
func HostLibm() Libm {
	return Libm{
		Rsqrt: func(x float32) float32 { return float32(1 / math.Sqrt(float64(x))) },
		Exp:   func(x float32) float32 { return float32(math.Exp(float64(x))) },
		Cos:   func(x float32) float32 { return float32(math.Cos(float64(x))) },
		Sin:   func(x float32) float32 { return float32(math.Sin(float64(x))) },
	}
}

// butterfly32 is warp_sum: at each step lane i adds lane i^off, off = 16,
// 8, 4, 2, 1; lanes i and i^off compute the same sum, so lane i < off of
// the next step reads v[i] and v[i+off].
func butterfly32(v [32]float32) float32 {
	for off := 16; off > 0; off >>= 1 {
		for i := range off {
			v[i] = v[i] + v[i+off]
		}
	}
	return v[0]
}

// blockSum is block_sum over per-thread partial sums (len a multiple of
// 32, at most 1024).
func blockSum(part []float32) float32 {
	var warps [32]float32
	for w := range len(part) / 32 {
		warps[w] = butterfly32([32]float32(part[32*w : 32*w+32]))
	}
	return butterfly32(warps)
}

// rowSumSq is rmsnorm.cu's sum of squares of a row: thread t of
// normThreads adds the squares of the 8-element chunks t, t+normThreads,
// ... in index order, then blockSum.
func rowSumSq(x []float32) float32 {
	var part [normThreads]float32
	for c := 0; 8*c < len(x); c++ {
		t := c % normThreads
		for _, v := range x[8*c : min(8*c+8, len(x))] {
			part[t] = part[t] + float32(v*v)
		}
	}
	return blockSum(part[:])
}

// normScale is rsqrt(sum/H + eps) as the kernels compute it: the mean as
// the sum times the rounded 1/H (ATen's MeanOps), then rsqrt.
func normScale(sum float32, H int, eps float32, m Libm) float32 {
	inv := float32(1) / float32(H)
	mean := float32(sum * inv)
	return m.Rsqrt(float32(mean + eps))
}

func widen(dst []float32, src []uint16) []float32 {
	dst = dst[:0]
	for _, b := range src {
		dst = append(dst, F32(b))
	}
	return dst
}

// normRow writes out[i] = bf16(w[i] * bf16(x[i] * r)).
func normRow(out []uint16, x []float32, w []uint16, r float32) {
	for i, v := range x {
		out[i] = BF16(F32(w[i]) * round(float32(v*r)))
	}
}

// RefEmbed is core_embed: out row t (dense, H wide) = table row ids[t].
func RefEmbed(table []uint16, ids []int32, out []uint16, T, H int) {
	for t := range T {
		copy(out[t*H:(t+1)*H], table[int(ids[t])*H:int(ids[t]+1)*H])
	}
}

// RefRMSNorm is core_rmsnorm.
func RefRMSNorm(x []uint16, ldx int, w, out []uint16, ldo, T, H int, eps float32, m Libm) {
	var row []float32
	for t := range T {
		row = widen(row, x[t*ldx:t*ldx+H])
		normRow(out[t*ldo:t*ldo+H], row, w, normScale(rowSumSq(row), H, eps, m))
	}
}

// RefAddRMSNorm is core_add_rmsnorm: resid = bf16(resid + delta), then
// out = RMSNorm(resid).
func RefAddRMSNorm(resid, delta []uint16, ld int, w, out []uint16, ldo, T, H int, eps float32, m Libm) {
	row := make([]float32, H)
	for t := range T {
		for i := range H {
			v := round(F32(resid[t*ld+i]) + F32(delta[t*ld+i]))
			resid[t*ld+i] = BF16(v)
			row[i] = v
		}
		normRow(out[t*ldo:t*ldo+H], row, w, normScale(rowSumSq(row), H, eps, m))
	}
}

// HostKVHead is a host copy of one longctx_kv_head: Data holds rows of
// RowStride bf16 values, Pos their positions. K and V heads may share Pos.
type HostKVHead struct {
	Data      []uint16
	Pos       []int32
	Len       int
	RowStride int
}

// RopeArgs are the inputs of RefQKVRoPEAppend besides the data it changes.
type RopeArgs struct {
	LD                  int
	QNorm, KNorm        []uint16 // nil: no per-head norm
	InvFreq             []float32
	Pos, TokSeq, TokOff []int32
	T, NH, NKV, HD      int
	Eps, AttnScaling    float32
}

// RefQKVRoPEAppend is core_qkv_rope_append: q rotated in place in qkv, k
// (rotated) and v appended at row Len+TokOff[t] of heads k[seq·NKV+kvh] /
// v[...], with their positions; Len unchanged.
func RefQKVRoPEAppend(qkv []uint16, k, v []HostKVHead, a RopeArgs, m Libm) {
	half := a.HD / 2
	cs, sn := make([]float32, half), make([]float32, half)
	x := make([]float32, a.HD)
	for t := range a.T {
		p := a.Pos[t]
		for i := range half {
			f := float32(float32(p) * a.InvFreq[i])
			cs[i] = round(float32(m.Cos(f) * a.AttnScaling))
			sn[i] = round(float32(m.Sin(f) * a.AttnScaling))
		}
		seq, off := int(a.TokSeq[t]), int(a.TokOff[t])
		row := qkv[t*a.LD:]
		for h := range a.NH + 2*a.NKV {
			src := row[h*a.HD : (h+1)*a.HD]
			if h >= a.NH+a.NKV {
				d := &v[seq*a.NKV+h-a.NH-a.NKV]
				r := d.Len + off
				copy(d.Data[r*d.RowStride:r*d.RowStride+a.HD], src)
				d.Pos[r] = p
				continue
			}
			x = widen(x, src)
			nw := a.QNorm
			if h >= a.NH {
				nw = a.KNorm
			}
			if nw != nil {
				headNorm(x, nw, a.Eps, m)
			}
			dst := src
			if h >= a.NH {
				d := &k[seq*a.NKV+h-a.NH]
				r := d.Len + off
				dst = d.Data[r*d.RowStride : r*d.RowStride+a.HD]
				d.Pos[r] = p
			}
			for i := range half {
				xa, xb, c, s := x[i], x[i+half], cs[i], sn[i]
				dst[i] = BF16(round(float32(xa*c)) + round(float32(-xb*s)))
				dst[i+half] = BF16(round(float32(xb*c)) + round(float32(xa*s)))
			}
		}
	}
}

// headNorm is the per-head RMSNorm of qkv_rope_append, in place on the
// widened head x: lane l of a warp adds, for j = 0, 1, ..., the squares of
// x[l+32j] and x[l+32j+hd/2], then warp_sum.
func headNorm(x []float32, w []uint16, eps float32, m Libm) {
	half := len(x) / 2
	var lanes [32]float32
	for j := 0; 32*j < half; j++ {
		for l := range 32 {
			if i := l + 32*j; i < half {
				lanes[l] = lanes[l] + float32(x[i]*x[i])
				lanes[l] = lanes[l] + float32(x[i+half]*x[i+half])
			}
		}
	}
	r := normScale(butterfly32(lanes), len(x), eps, m)
	for i, v := range x {
		x[i] = round(F32(w[i]) * round(float32(v*r)))
	}
}

// RefKVCommit is core_kv_commit.
func RefKVCommit(k, v []HostKVHead, nNew int) {
	for i := range k {
		k[i].Len += nNew
		v[i].Len += nNew
	}
}

// RefSiLUMul is core_silu_mul: out = bf16(bf16(g / (1 + exp(-g))) * u).
func RefSiLUMul(gu []uint16, ldgu int, out []uint16, ldo, T, I int, m Libm) {
	for t := range T {
		for i := range I {
			g, u := F32(gu[t*ldgu+i]), F32(gu[t*ldgu+I+i])
			s := round(g / float32(1+m.Exp(-g)))
			out[t*ldo+i] = BF16(s * u)
		}
	}
}

// RefArgmax is core_argmax: per row the index of the largest value, the
// lowest on ties, NaN skipped, 0 when every value is NaN.
func RefArgmax(logits []uint16, ld, V, rows int, out []int32) {
	for r := range rows {
		best, bi := float32(math.Inf(-1)), -1
		for i := range V {
			if v := F32(logits[r*ld+i]); v > best || (v == best && bi < 0) {
				best, bi = v, i
			}
		}
		out[r] = int32(max(bi, 0))
	}
}

// Error codes of core_kv_select's err flag.
const (
	SelectNaN            = 1
	SelectNegativeTarget = 2
)

// orderedBits maps a non-NaN float32 to a uint32 of the same order, -0
// and +0 alike (kv_select.cu's ordered).
func orderedBits(f float32) uint32 {
	u := math.Float32bits(f)
	if u == 0x80000000 {
		u = 0
	}
	if u&0x80000000 != 0 {
		return ^u
	}
	return u | 0x80000000
}

// RefKVSelect is core_kv_select for one head, step for step: the radix
// select of the k-th largest score among the unprotected tokens and the
// index-ordered final scan. code is 0, SelectNaN or SelectNegativeTarget
// (the head then keeps every token). Its result equals kvpolicy.Select's.
func RefKVSelect(scores []float32, target, sink, window int) (keep []int32, code int) {
	n := len(scores)
	if sink < 0 || window < 0 {
		panic(fmt.Sprintf("RefKVSelect: sink %d, window %d", sink, window))
	}
	for _, s := range scores {
		if s != s {
			code = SelectNaN
			break
		}
	}
	if code == 0 && target < 0 {
		code = SelectNegativeTarget
	}
	if code != 0 || target >= n {
		keep = make([]int32, n)
		for i := range keep {
			keep[i] = int32(i)
		}
		return keep, code
	}
	lo := min(sink, n)
	hi := max(lo, n-window)
	k := target - (n - (hi - lo))
	if k <= 0 {
		for i := range n {
			if i < lo || i >= hi {
				keep = append(keep, int32(i))
			}
		}
		return keep, 0
	}
	var prefix, mask uint32
	rem := k
	for shift := 24; shift >= 0; shift -= 8 {
		var hist [256]int
		for _, s := range scores[lo:hi] {
			if u := orderedBits(s); u&mask == prefix {
				hist[(u>>shift)&255]++
			}
		}
		cum, digit := 0, -1
		for d := 255; d >= 0; d-- {
			if cum+hist[d] >= rem {
				digit = d
				break
			}
			cum += hist[d]
		}
		if digit < 0 {
			panic("RefKVSelect: radix select lost its count")
		}
		rem -= cum
		prefix |= uint32(digit) << shift
		mask |= 255 << shift
	}
	eq := 0
	for i := range n {
		if i < lo || i >= hi {
			keep = append(keep, int32(i))
			continue
		}
		switch u := orderedBits(scores[i]); {
		case u > prefix:
			keep = append(keep, int32(i))
		case u == prefix:
			if eq < rem {
				keep = append(keep, int32(i))
			}
			eq++
		}
	}
	return keep, 0
}

// RefKVGather is core_kv_gather for one head: row j of dst (K or V) and
// its position become row keep[j] of src; dst.Len = len(keep).
func RefKVGather(dst, src *HostKVHead, keep []int32, hd int) {
	for j, i := range keep {
		copy(dst.Data[j*dst.RowStride:j*dst.RowStride+hd], src.Data[int(i)*src.RowStride:int(i)*src.RowStride+hd])
		dst.Pos[j] = src.Pos[i]
	}
	dst.Len = len(keep)
}
