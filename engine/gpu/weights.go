package gpu

import (
	"fmt"
	"time"

	"github.com/longctx/longctx/engine/cuda"
	"github.com/longctx/longctx/engine/model"
	"github.com/longctx/longctx/engine/weights"
)

// layerWeights are one decoder layer's bf16 tensors on the device. The q,
// k and v projections are stacked into one matrix (and gate and up into
// another) so each takes one GEMM; a zero pointer is an absent tensor.
type layerWeights struct {
	inNorm, postNorm cuda.DevicePtr
	qkv, qkvBias     cuda.DevicePtr // [(heads+2·kvHeads)·headDim][hidden]
	qNorm, kNorm     cuda.DevicePtr
	o, oBias         cuda.DevicePtr
	gateUp, guBias   cuda.DevicePtr // [2·intermediate][hidden]
	down, downBias   cuda.DevicePtr
}

type deviceWeights struct {
	embed, norm, lmHead cuda.DevicePtr
	layers              []layerWeights
}

// part is one checkpoint tensor's place inside a device buffer.
type part struct {
	name   string
	offset int64 // elements
}

// uploader copies or generates tensors into device buffers.
type uploader struct {
	e     *Engine
	src   weights.Source
	synth *model.SyntheticSource
	bytes int64
}

// buffer allocates a bf16 buffer of n elements filled from parts, which
// must cover it exactly.
func (u *uploader) buffer(n int64, what string, parts ...part) (cuda.DevicePtr, error) {
	p, err := u.e.alloc.Alloc(Weights, 2*n, what)
	if err != nil {
		return 0, err
	}
	for _, pt := range parts {
		if err := u.fill(p+cuda.DevicePtr(2*pt.offset), pt.name); err != nil {
			return 0, err
		}
	}
	u.bytes += 2 * n
	return p, nil
}

func (u *uploader) fill(dst cuda.DevicePtr, name string) error {
	if u.synth != nil {
		r, err := u.synth.Recipe(name)
		if err != nil {
			return err
		}
		n := int64(1)
		for _, d := range r.Shape {
			n *= int64(d)
		}
		return u.e.own.synthFill(u.e.stream, dst, n, r.Key, r.Ones)
	}
	t, err := u.src.Tensor(name)
	if err != nil {
		return fmt.Errorf("tensor %q: %w", name, err)
	}
	data, err := toBF16(t)
	if err != nil {
		return err
	}
	if err := u.e.drv.MemcpyHtoDAsync(dst, data, u.e.stream); err != nil {
		return fmt.Errorf("uploading %q: %w", name, err)
	}
	return nil
}

// toBF16 returns t's data as bf16 bytes (a view when already bf16).
func toBF16(t weights.Tensor) ([]byte, error) {
	data, err := t.BF16Data()
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	return data, nil
}

// upload puts every weight on the device; runs on the CUDA thread.
func (e *Engine) upload(src weights.Source) error {
	start := time.Now()
	c := e.cfg
	u := &uploader{e: e, src: src}
	u.synth, _ = src.(*model.SyntheticSource)
	h, d, inter := int64(c.HiddenSize), int64(c.HeadDim), int64(c.IntermediateSize)
	qDim, kvDim := int64(c.NumHeads)*d, int64(c.NumKVHeads)*d
	var err error
	must := func(p cuda.DevicePtr, e error) cuda.DevicePtr {
		if err == nil && e != nil {
			err = e
		}
		return p
	}
	w := &e.w
	w.embed = must(u.buffer(int64(c.VocabSize)*h, "embedding", part{"model.embed_tokens.weight", 0}))
	w.layers = make([]layerWeights, c.NumLayers)
	for i := range w.layers {
		if err != nil {
			break
		}
		n := func(s string) string { return fmt.Sprintf("model.layers.%d.%s", i, s) }
		what := func(s string) string { return fmt.Sprintf("layer %d %s", i, s) }
		l := &w.layers[i]
		l.inNorm = must(u.buffer(h, what("input norm"), part{n("input_layernorm.weight"), 0}))
		l.qkv = must(u.buffer((qDim+2*kvDim)*h, what("qkv projection"),
			part{n("self_attn.q_proj.weight"), 0}, part{n("self_attn.k_proj.weight"), qDim * h},
			part{n("self_attn.v_proj.weight"), (qDim + kvDim) * h}))
		if c.QKVBias {
			l.qkvBias = must(u.buffer(qDim+2*kvDim, what("qkv bias"),
				part{n("self_attn.q_proj.bias"), 0}, part{n("self_attn.k_proj.bias"), qDim},
				part{n("self_attn.v_proj.bias"), qDim + kvDim}))
		}
		if c.QKNorm {
			l.qNorm = must(u.buffer(d, what("q norm"), part{n("self_attn.q_norm.weight"), 0}))
			l.kNorm = must(u.buffer(d, what("k norm"), part{n("self_attn.k_norm.weight"), 0}))
		}
		l.o = must(u.buffer(h*qDim, what("o projection"), part{n("self_attn.o_proj.weight"), 0}))
		if c.OBias {
			l.oBias = must(u.buffer(h, what("o bias"), part{n("self_attn.o_proj.bias"), 0}))
		}
		l.postNorm = must(u.buffer(h, what("post-attention norm"), part{n("post_attention_layernorm.weight"), 0}))
		l.gateUp = must(u.buffer(2*inter*h, what("gate/up projection"),
			part{n("mlp.gate_proj.weight"), 0}, part{n("mlp.up_proj.weight"), inter * h}))
		if c.MLPBias {
			l.guBias = must(u.buffer(2*inter, what("gate/up bias"),
				part{n("mlp.gate_proj.bias"), 0}, part{n("mlp.up_proj.bias"), inter}))
			l.downBias = must(u.buffer(h, what("down bias"), part{n("mlp.down_proj.bias"), 0}))
		}
		l.down = must(u.buffer(h*inter, what("down projection"), part{n("mlp.down_proj.weight"), 0}))
	}
	if err == nil {
		w.norm = must(u.buffer(h, "final norm", part{"model.norm.weight", 0}))
		if c.TieEmbeddings {
			w.lmHead = w.embed
		} else {
			w.lmHead = must(u.buffer(int64(c.VocabSize)*h, "lm_head", part{"lm_head.weight", 0}))
		}
	}
	if err != nil {
		return err
	}
	if err := e.drv.StreamSynchronize(e.stream); err != nil {
		return fmt.Errorf("uploading weights: %w", err)
	}
	e.info.WeightBytes = u.bytes
	e.syncPeak()
	e.logf("weights: %s on %s in %.1f s", FormatBytes(u.bytes), e.devInfo.Name, time.Since(start).Seconds())
	return nil
}

func (e *Engine) logf(format string, args ...any) {
	if e.opts.Log != nil {
		fmt.Fprintf(e.opts.Log, "gpu: "+format+"\n", args...)
	}
}
