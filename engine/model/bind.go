package model

import (
	"fmt"
	"strings"

	"github.com/longctx/longctx/engine/model/cpu"
	"github.com/longctx/longctx/engine/weights"
)

// tensorSpec is one tensor the architecture reads, with its expected shape.
type tensorSpec struct {
	name  string
	shape []int
}

// isNorm reports whether a tensor is an RMSNorm weight (initialised to ones).
func (s tensorSpec) isNorm() bool { return strings.HasSuffix(s.name, "norm.weight") }

// Hugging Face tensor names.
const (
	embedName  = "model.embed_tokens.weight"
	normName   = "model.norm.weight"
	lmHeadName = "lm_head.weight"
)

func layerName(i int, suffix string) string { return fmt.Sprintf("model.layers.%d.%s", i, suffix) }

// tensorSpecs lists every tensor a model of this config reads, in
// checkpoint order: embedding, layers, final norm, then lm_head unless tied.
func tensorSpecs(c Config) []tensorSpec {
	h, d := c.HiddenSize, c.HeadDim
	qDim, kvDim := c.NumHeads*d, c.NumKVHeads*d
	specs := []tensorSpec{{embedName, []int{c.VocabSize, h}}}
	for i := range c.NumLayers {
		add := func(suffix string, shape ...int) {
			specs = append(specs, tensorSpec{layerName(i, suffix), shape})
		}
		add("input_layernorm.weight", h)
		add("self_attn.q_proj.weight", qDim, h)
		add("self_attn.k_proj.weight", kvDim, h)
		add("self_attn.v_proj.weight", kvDim, h)
		if c.QKVBias {
			add("self_attn.q_proj.bias", qDim)
			add("self_attn.k_proj.bias", kvDim)
			add("self_attn.v_proj.bias", kvDim)
		}
		if c.QKNorm {
			add("self_attn.q_norm.weight", d)
			add("self_attn.k_norm.weight", d)
		}
		add("self_attn.o_proj.weight", h, qDim)
		if c.OBias {
			add("self_attn.o_proj.bias", h)
		}
		add("post_attention_layernorm.weight", h)
		add("mlp.gate_proj.weight", c.IntermediateSize, h)
		add("mlp.up_proj.weight", c.IntermediateSize, h)
		add("mlp.down_proj.weight", h, c.IntermediateSize)
		if c.MLPBias {
			add("mlp.gate_proj.bias", c.IntermediateSize)
			add("mlp.up_proj.bias", c.IntermediateSize)
			add("mlp.down_proj.bias", h)
		}
	}
	specs = append(specs, tensorSpec{normName, []int{h}})
	if !c.TieEmbeddings {
		specs = append(specs, tensorSpec{lmHeadName, []int{c.VocabSize, h}})
	}
	return specs
}

// layer holds one decoder layer's weights. Matrices stay in their stored
// type; norm weights and biases (small) are fp32.
type layer struct {
	inNorm, postNorm    []float32
	q, k, v, o          cpu.Matrix
	qBias, kBias, vBias []float32
	oBias               []float32
	qNorm, kNorm        []float32
	gate, up, down      cpu.Matrix
	gateBias, upBias    []float32
	downBias            []float32
}

// binding is the model's weights, bound to a Source.
type binding struct {
	embed, lmHead cpu.Matrix
	norm          []float32
	layers        []layer
	params, bytes int64
	embedDType    weights.DType
}

// binder fetches and checks tensors, keeping the first error.
type binder struct {
	src  weights.Source
	want map[string][]int
	b    *binding
	err  error
	// lastDType is the element type of the last tensor fetched.
	lastDType weights.DType
}

func (bd *binder) tensor(name string) (weights.Tensor, bool) {
	if bd.err != nil {
		return weights.Tensor{}, false
	}
	t, err := bd.src.Tensor(name)
	if err != nil {
		bd.err = fmt.Errorf("tensor %q: %w", name, err)
		return weights.Tensor{}, false
	}
	if t.DType.Size() == 0 {
		bd.err = fmt.Errorf("tensor %q: dtype %q is not supported (BF16, F16, F32)", name, t.DType)
		return weights.Tensor{}, false
	}
	if err := t.CheckShape(bd.want[name]...); err != nil {
		bd.err = err
		return weights.Tensor{}, false
	}
	if n := t.Elems() * t.DType.Size(); n != len(t.Data) {
		bd.err = fmt.Errorf("tensor %q: %d bytes of data, want %d for shape %v of %s", name, len(t.Data), n, t.Shape, t.DType)
		return weights.Tensor{}, false
	}
	bd.lastDType = t.DType
	bd.b.params += int64(t.Elems())
	bd.b.bytes += int64(len(t.Data))
	return t, true
}

func (bd *binder) matrix(name string) cpu.Matrix {
	t, ok := bd.tensor(name)
	if !ok {
		return cpu.Matrix{}
	}
	m, err := cpu.NewMatrix(t)
	if err != nil {
		bd.err = err
	}
	return m
}

// vector returns a 1-D tensor as fp32 (a view when stored as F32).
func (bd *binder) vector(name string) []float32 {
	t, ok := bd.tensor(name)
	if !ok {
		return nil
	}
	v, err := t.Float32Slice()
	if err != nil {
		bd.err = err
	}
	return v
}

// bind fetches every tensor c needs from src, checking names, shapes and
// element types; errors name the tensor.
func bind(c Config, src weights.Source) (*binding, error) {
	bd := &binder{src: src, want: map[string][]int{}, b: &binding{}}
	for _, s := range tensorSpecs(c) {
		bd.want[s.name] = s.shape
	}
	b := bd.b
	b.embed = bd.matrix(embedName)
	b.embedDType = bd.lastDType
	b.layers = make([]layer, c.NumLayers)
	for i := range b.layers {
		l := &b.layers[i]
		name := func(s string) string { return layerName(i, s) }
		l.inNorm = bd.vector(name("input_layernorm.weight"))
		l.q = bd.matrix(name("self_attn.q_proj.weight"))
		l.k = bd.matrix(name("self_attn.k_proj.weight"))
		l.v = bd.matrix(name("self_attn.v_proj.weight"))
		if c.QKVBias {
			l.qBias = bd.vector(name("self_attn.q_proj.bias"))
			l.kBias = bd.vector(name("self_attn.k_proj.bias"))
			l.vBias = bd.vector(name("self_attn.v_proj.bias"))
		}
		if c.QKNorm {
			l.qNorm = bd.vector(name("self_attn.q_norm.weight"))
			l.kNorm = bd.vector(name("self_attn.k_norm.weight"))
		}
		l.o = bd.matrix(name("self_attn.o_proj.weight"))
		if c.OBias {
			l.oBias = bd.vector(name("self_attn.o_proj.bias"))
		}
		l.postNorm = bd.vector(name("post_attention_layernorm.weight"))
		l.gate = bd.matrix(name("mlp.gate_proj.weight"))
		l.up = bd.matrix(name("mlp.up_proj.weight"))
		l.down = bd.matrix(name("mlp.down_proj.weight"))
		if c.MLPBias {
			l.gateBias = bd.vector(name("mlp.gate_proj.bias"))
			l.upBias = bd.vector(name("mlp.up_proj.bias"))
			l.downBias = bd.vector(name("mlp.down_proj.bias"))
		}
	}
	b.norm = bd.vector(normName)
	if c.TieEmbeddings {
		b.lmHead = b.embed
	} else {
		b.lmHead = bd.matrix(lmHeadName)
	}
	if bd.err != nil {
		return nil, bd.err
	}
	return b, nil
}
