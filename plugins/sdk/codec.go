package sdk

import (
	"fmt"

	"github.com/longctx/longctx/engine/attention"
	"github.com/longctx/longctx/engine/kvpolicy"
	"github.com/longctx/longctx/plugins/sdk/pluginpb"
)

// maxDim bounds the shape fields of a request read off the wire, so a
// hostile or corrupt message cannot make the receiver allocate absurdly
// or overflow size arithmetic.
const maxDim = 1 << 16

func encodeProblem(planID string, p *attention.Problem) *pluginpb.AttendRequest {
	req := &pluginpb.AttendRequest{
		PlanId: planID, Layer: int32(p.Layer), NumHeads: int32(p.NumHeads), NumKvHeads: int32(p.NumKVHeads),
		HeadDim: int32(p.HeadDim), Scale: p.Scale, SlidingWindow: int32(p.SlidingWindow),
		Q: packF32(p.Q), QPos: toInt64s(p.QPos), Kv: make([]*pluginpb.KVHead, len(p.K)),
	}
	for g := range p.K {
		req.Kv[g] = &pluginpb.KVHead{K: packF32(p.K[g]), V: packF32(p.V[g]), Pos: toInt64s(p.KPos[g])}
	}
	return req
}

// decodeProblem rebuilds the attention problem of a request, with Out
// allocated, and validates it.
func decodeProblem(req *pluginpb.AttendRequest) (*attention.Problem, error) {
	for _, f := range []struct {
		name string
		v    int32
	}{{"num_heads", req.GetNumHeads()}, {"num_kv_heads", req.GetNumKvHeads()}, {"head_dim", req.GetHeadDim()}, {"layer", req.GetLayer()}, {"sliding_window", req.GetSlidingWindow()}} {
		if f.v < 0 || f.v > maxDim {
			return nil, fmt.Errorf("attend request: %s %d out of range", f.name, f.v)
		}
	}
	p := &attention.Problem{
		NumHeads: int(req.GetNumHeads()), NumKVHeads: int(req.GetNumKvHeads()), HeadDim: int(req.GetHeadDim()),
		Scale: req.GetScale(), SlidingWindow: int(req.GetSlidingWindow()), Layer: int(req.GetLayer()),
	}
	var err error
	if p.QPos, err = fromInt64s(req.GetQPos(), "q_pos"); err != nil {
		return nil, err
	}
	if p.Q, err = unpackF32(req.GetQ(), "q"); err != nil {
		return nil, err
	}
	for g, h := range req.GetKv() {
		k, err := unpackF32(h.GetK(), fmt.Sprintf("kv head %d keys", g))
		if err != nil {
			return nil, err
		}
		v, err := unpackF32(h.GetV(), fmt.Sprintf("kv head %d values", g))
		if err != nil {
			return nil, err
		}
		pos, err := fromInt64s(h.GetPos(), fmt.Sprintf("kv head %d pos", g))
		if err != nil {
			return nil, err
		}
		p.K, p.V, p.KPos = append(p.K, k), append(p.V, v), append(p.KPos, pos)
	}
	p.Out = make([]float32, len(p.Q))
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

func encodeScoreInput(planID string, needsValues bool, in *kvpolicy.ScoreInput) *pluginpb.ScoreRequest {
	req := &pluginpb.ScoreRequest{PlanId: planID, Layer: int32(in.Layer), HeadDim: int32(in.HeadDim), Kv: make([]*pluginpb.KVHead, len(in.K))}
	for g := range in.K {
		h := &pluginpb.KVHead{K: packF32(in.K[g]), Pos: toInt64s(in.Pos[g])}
		if needsValues {
			h.V = packF32(in.V[g])
		}
		req.Kv[g] = h
	}
	return req
}

// decodeScoreInput rebuilds a score request and checks its shapes. V is
// nil per head when values were not sent.
func decodeScoreInput(req *pluginpb.ScoreRequest) (*kvpolicy.ScoreInput, error) {
	d := int(req.GetHeadDim())
	if d <= 0 || d > maxDim || req.GetLayer() < 0 {
		return nil, fmt.Errorf("score request: head dim %d, layer %d out of range", d, req.GetLayer())
	}
	in := &kvpolicy.ScoreInput{Layer: int(req.GetLayer()), HeadDim: d}
	for g, h := range req.GetKv() {
		pos, err := fromInt64s(h.GetPos(), fmt.Sprintf("kv head %d pos", g))
		if err != nil {
			return nil, err
		}
		k, err := unpackF32(h.GetK(), fmt.Sprintf("kv head %d keys", g))
		if err != nil {
			return nil, err
		}
		if len(k) != len(pos)*d {
			return nil, fmt.Errorf("score request: kv head %d: %d key values for %d positions × %d", g, len(k), len(pos), d)
		}
		var v []float32
		if len(h.GetV()) > 0 {
			if v, err = unpackF32(h.GetV(), fmt.Sprintf("kv head %d values", g)); err != nil {
				return nil, err
			}
			if len(v) != len(k) {
				return nil, fmt.Errorf("score request: kv head %d: %d values for %d keys", g, len(v), len(k))
			}
		}
		in.K, in.V, in.Pos = append(in.K, k), append(in.V, v), append(in.Pos, pos)
	}
	return in, nil
}

// checkScores checks a scorer's answer against its input.
func checkScores(scores [][]float32, in *kvpolicy.ScoreInput) error {
	if len(scores) != len(in.Pos) {
		return fmt.Errorf("%d score lists for %d KV heads", len(scores), len(in.Pos))
	}
	for g, s := range scores {
		if len(s) != len(in.Pos[g]) {
			return fmt.Errorf("kv head %d: %d scores for %d tokens", g, len(s), len(in.Pos[g]))
		}
	}
	return nil
}
