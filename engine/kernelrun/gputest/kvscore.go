package gputest

import (
	"context"
	"math"
	"math/rand/v2"

	"github.com/longctx/longctx/engine/cuda"
	"github.com/longctx/longctx/engine/kernelrun"
	"github.com/longctx/longctx/engine/kvpolicy"
)

// KVScoreCase is one kv.score launch: Lens[seq][kv head] cached rows of
// HeadDim bf16 elements, RowPad more elements apart.
type KVScoreCase struct {
	Name    string
	KVHeads int
	HeadDim int
	Lens    [][]int
	RowPad  int
	// Gaps gives positions holes, as after compaction.
	Gaps bool
	// Capacity is added to the longest head for max_kv_len.
	Capacity int
}

// CheckKVScore launches a kv.score role on random bf16 keys (values too)
// and compares each score with ref, the plugin's Go scorer, on the same
// keys in fp32: within tol relative (plus 1e-30 absolute). Scores past a
// head's length must stay unwritten.
func (e *Env) CheckKVScore(role *kernelrun.Role, c KVScoreCase, seed uint64, ref kvpolicy.Scorer, tol float64) {
	e.TB.Helper()
	rng := rand.New(rand.NewPCG(seed, 0x73636f7265))
	stride := c.HeadDim + c.RowPad
	const guard = 16
	nan := float32(math.NaN())
	var kh, vh []kernelrun.KVHead
	var scorePtrs []uint64
	var scoreBufs []cuda.DevicePtr
	in := &kvpolicy.ScoreInput{HeadDim: c.HeadDim}
	maxLen := 0
	for _, seq := range c.Lens {
		for _, n := range seq {
			maxLen = max(maxLen, n)
			pos, p := make([]int32, max(n, 1)), int32(-1)
			ipos := make([]int, n)
			for j := range n {
				p++
				if c.Gaps && rng.IntN(3) == 0 {
					p += int32(rng.IntN(5))
				}
				pos[j], ipos[j] = p, int(p)
			}
			k, v := make([]float32, n*c.HeadDim), make([]float32, n*c.HeadDim)
			rows := make([][]float32, 2)
			for t, x := range [][]float32{k, v} {
				rows[t] = make([]float32, max(n, 1)*stride)
				for i := range rows[t] {
					rows[t][i] = nan
				}
				for j := range n {
					for d := range c.HeadDim {
						// Spread over magnitudes, as keys after RoPE are.
						val := RoundBF16(float32(rng.NormFloat64() * math.Exp2(float64(rng.IntN(6)-2))))
						x[j*c.HeadDim+d], rows[t][j*stride+d] = val, val
					}
				}
			}
			in.K, in.V, in.Pos = append(in.K, k), append(in.V, v), append(in.Pos, ipos)
			posDev := e.Upload(I32(pos))
			kh = append(kh, kernelrun.KVHead{Data: e.Upload(BF16(rows[0])), Pos: posDev, Len: int32(n), RowStride: int32(stride)})
			vh = append(vh, kernelrun.KVHead{Data: e.Upload(BF16(rows[1])), Pos: posDev, Len: int32(n), RowStride: int32(stride)})
			buf := e.Alloc(int64(4 * (n + guard)))
			e.Poison(buf, int64(4*(n+guard)))
			scoreBufs = append(scoreBufs, buf)
			scorePtrs = append(scorePtrs, uint64(buf))
		}
	}
	p := &kernelrun.KVScoreParams{
		NumSeqs: int32(len(c.Lens)), NumKVHeads: int32(c.KVHeads), HeadDim: int32(c.HeadDim), MaxKVLen: int32(maxLen + c.Capacity),
		DType: kernelrun.DTypeBF16, K: e.Upload(kernelrun.KVHeadsBytes(kh)), V: e.Upload(kernelrun.KVHeadsBytes(vh)),
		Scores: e.Upload(U64(scorePtrs)),
	}
	if ws := role.Workspace(len(c.Lens), c.KVHeads, 1, maxLen+c.Capacity); ws > 0 {
		p.Workspace, p.WorkspaceBytes = e.Alloc(ws), uint64(ws)
	}
	if err := role.Launch(e.Stream, p); err != nil {
		e.TB.Fatal(err)
	}
	want, err := ref.Score(context.Background(), in)
	if err != nil {
		e.TB.Fatal(err)
	}
	var worst float64
	for g, buf := range scoreBufs {
		n := len(in.Pos[g])
		got := FromF32(e.Download(buf, 4*(n+guard)))
		for j := range n {
			w := float64(want[g][j])
			d := math.Abs(float64(got[j]) - w)
			if !(d <= tol*math.Abs(w)+1e-30) {
				e.TB.Fatalf("%s: head %d row %d: score %v, want %v", c.Name, g, j, got[j], want[g][j])
			}
			worst = max(worst, d/max(math.Abs(w), 1e-30))
		}
		for j := n; j < n+guard; j++ {
			if !math.IsNaN(float64(got[j])) {
				e.TB.Fatalf("%s: head %d: score %d past its %d rows written (%v)", c.Name, g, j, n, got[j])
			}
		}
	}
	e.TB.Logf("%s: worst relative difference %.2g", c.Name, worst)
}
