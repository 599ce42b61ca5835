package expr

import (
	"go/ast"
	"math"
)

// preset is a named mask or score modification.
type preset struct {
	kind  Kind
	args  int
	usage string
}

// The presets, in the spirit of PyTorch FlexAttention's examples. Masks
// use absolute positions: after KV compaction a key keeps its position.
var presets = map[string]preset{
	// kv ≤ q.
	"causal": {MaskExpr, 0, "causal"},
	// The model's own mask: causal, and within the layer's sliding window
	// when it has one (Mistral, Qwen2 with use_sliding_window).
	"model": {MaskExpr, 0, "model"},
	// Causal, and fewer than W positions back: kv ≤ q && q − kv < W.
	"sliding_window": {MaskExpr, 1, "sliding_window(W) with W > 0"},
	// A bidirectional prefix of P tokens, causal after it: kv ≤ q || kv < P.
	"prefix_lm": {MaskExpr, 1, "prefix_lm(P)"},
	// Causal within chunks of C positions (Llama 4): kv ≤ q && q/C == kv/C.
	"chunked": {MaskExpr, 1, "chunked(C) with C > 0"},
	// score + slope(h)·(kv − q), the ALiBi bias with the paper's slopes.
	"alibi": {ScoreExpr, 0, "alibi"},
	// c·tanh(score/c) (Gemma 2's logit soft-capping).
	"softcap": {ScoreExpr, 1, "softcap(c) with c > 0"},
}

func (c *compiler) preset(at ast.Node, name string, args []node) (node, error) {
	p := presets[name]
	if p.kind != c.kind {
		return node{}, c.errorf(at, "%s is a %s preset, not usable in a %s expression", name, p.kind, c.kind)
	}
	if len(args) == 1 && args[0].t == Bool {
		return node{}, c.errorf(at, "%s needs a number", name)
	}
	pos := c.fset.Position(at.Pos())
	positive := func(e *env, v int64) bool {
		if v <= 0 && e.err == nil {
			e.err = errorAt(pos, "%s argument %d must be positive", name, v)
		}
		return v > 0
	}
	switch name {
	case "causal":
		return boolNode(func(e *env) bool { return e.KV <= e.Q }), nil
	case "model":
		return boolNode(func(e *env) bool { return e.KV <= e.Q && (e.Window <= 0 || e.Q-e.KV < e.Window) }), nil
	case "sliding_window", "prefix_lm", "chunked":
		if args[0].t != Int {
			return node{}, c.errorf(at, "%s needs an integer argument, got %s", name, args[0].t)
		}
		arg := args[0].i
		switch name {
		case "sliding_window":
			return boolNode(func(e *env) bool {
				w := arg(e)
				return positive(e, w) && e.KV <= e.Q && e.Q-e.KV < w
			}), nil
		case "prefix_lm":
			return boolNode(func(e *env) bool { return e.KV <= e.Q || e.KV < arg(e) }), nil
		default:
			return boolNode(func(e *env) bool {
				size := arg(e)
				return positive(e, size) && e.KV <= e.Q && e.Q/size == e.KV/size
			}), nil
		}
	case "alibi":
		c.usesHead = true
		return floatNode(func(e *env) float64 { return e.Score + alibiSlope(e.H, e.NumHeads)*float64(e.KV-e.Q) }), nil
	case "softcap":
		capf := args[0].asFloat()
		return floatNode(func(e *env) float64 {
			cp := capf(e)
			if !(cp > 0) && e.err == nil {
				e.err = errorAt(pos, "softcap argument %v must be positive", cp)
			}
			return cp * math.Tanh(e.Score/cp)
		}), nil
	}
	return node{}, c.errorf(at, "preset %s not implemented", name)
}

// alibiSlope returns the ALiBi slope of head h of n (Press et al., 2022):
// for n a power of two, 2^(−8(h+1)/n); otherwise the slopes of the next
// lower power of two followed by every other slope of the power above,
// as the paper's reference code and transformers' build_alibi_tensor do.
func alibiSlope(h, n int64) float64 {
	if n <= 0 || h < 0 || h >= n {
		return 0
	}
	pow := int64(1)
	for pow*2 <= n {
		pow *= 2
	}
	if h < pow {
		return math.Pow(2, -8*float64(h+1)/float64(pow))
	}
	// The extra heads take every other slope of the 2·pow sequence,
	// starting with its first: exponents −8k/(2·pow) for k = 1, 3, 5, ...
	k := 2*(h-pow) + 1
	return math.Pow(2, -8*float64(k)/float64(2*pow))
}
