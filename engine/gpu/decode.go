package gpu

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/longctx/longctx/engine/cuda"
)

// decodeLoop generates one token per unfinished sequence per step until
// every sequence is done. The forward pass of a step is captured once as a
// CUDA graph and replayed (unless Options.NoGraph): its inputs are the
// token ids and positions copied in before each replay, the KV lengths
// advance on the device, and the attention sees the batch's largest
// capacity as max_kv_len so nothing in the graph changes between steps.
// A finished sequence keeps decoding its last token (its slot has room
// for the batch's longest output) and its results are not recorded.
func (e *Engine) decodeLoop(ctx context.Context, kv *batchKV, reqs []Request, opts GenerateOptions, res []*Result, cur []int, done []bool, stop []int) (int64, error) {
	c := e.cfg
	B := len(reqs)
	a, err := e.newActs(B, B)
	if err != nil {
		return 0, err
	}
	defer a.arena.free()
	seq := make([]int32, B)
	zero := make([]int32, B)
	for i := range seq {
		seq[i] = int32(i)
	}
	if err := e.drv.MemcpyHtoDAsync(a.tokSeq, i32Bytes(seq), e.stream); err != nil {
		return 0, err
	}
	if err := e.drv.MemcpyHtoDAsync(a.tokOff, i32Bytes(zero), e.stream); err != nil {
		return 0, err
	}
	capacity := kv.maxCapacity()
	call := attnCall{
		role:        e.attnDecode,
		kdesc:       func(l int) (cuda.DevicePtr, cuda.DevicePtr) { return kv.kdesc[l], kv.vdesc[l] },
		numSeqs:     B,
		numQ:        1,
		maxKV:       func(int) int { return capacity },
		commitHeads: B * c.NumKVHeads,
		commitN:     1,
	}
	if err := a.workspace(e.attnDecode.Workspace(B, c.NumHeads, 1, capacity)); err != nil {
		return 0, err
	}
	step := func() error {
		if err := e.mark("start"); err != nil {
			return err
		}
		if err := e.ops.Embed(e.stream, e.w.embed, a.ids, a.resid, B, c.HiddenSize); err != nil {
			return err
		}
		if err := e.mark("embed"); err != nil {
			return err
		}
		if err := e.layers(a, call); err != nil {
			return err
		}
		return e.head(a, 0, B)
	}
	// The first step runs launch by launch: it loads every kernel (CUDA
	// and cuBLASLt load lazily, which cannot happen during a capture).
	// The second step is captured and every later one replays the graph.
	var graph *decodeGraph
	defer func() {
		if graph != nil {
			graph.destroy()
		}
	}()
	e.syncPeak()
	keepLogits := opts.Sampler != nil || opts.KeepStepLogits
	for steps := 0; !allDone(done); steps++ {
		var captureTime time.Duration
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		t0 := time.Now()
		ids := make([]int32, B)
		pos := make([]int32, B)
		for i := range B {
			ids[i], pos[i] = int32(cur[i]), int32(kv.next[i])
		}
		if err := e.drv.MemcpyHtoDAsync(a.ids, i32Bytes(ids), e.stream); err != nil {
			return 0, err
		}
		if err := e.drv.MemcpyHtoDAsync(a.pos, i32Bytes(pos), e.stream); err != nil {
			return 0, err
		}
		if graph == nil && !e.opts.NoGraph && steps == 1 {
			t1 := time.Now()
			if graph, err = e.capture(step); err != nil {
				return 0, fmt.Errorf("capturing the decode step: %w", err)
			}
			captureTime = time.Since(t1)
		}
		if graph != nil {
			err = e.drv.GraphLaunch(graph.exec, e.stream)
		} else {
			err = step()
		}
		if err != nil {
			return 0, fmt.Errorf("decode step %d: %w", len(res[0].Tokens), err)
		}
		for i := range B {
			kv.committed(i, 1)
		}
		next, logits, err := e.readHead(a, B, keepLogits)
		if err != nil {
			return 0, err
		}
		if e.prof != nil {
			if err := e.prof.collect(); err != nil {
				return 0, err
			}
		}
		elapsed := time.Since(t0)
		for i := range B {
			if done[i] {
				continue
			}
			tok := next[i]
			if opts.Sampler != nil {
				if tok, err = opts.Sampler(i).Sample(logits[i]); err != nil {
					return 0, fmt.Errorf("request %d: %w", i, err)
				}
			}
			r := res[i]
			if opts.KeepStepLogits {
				r.StepLogits = append(r.StepLogits, logits[i])
			}
			if captureTime > 0 {
				r.GraphCapture = captureTime
			}
			r.Decode = append(r.Decode, elapsed)
			r.E2E += elapsed
			r.Tokens = append(r.Tokens, tok)
			cur[i] = tok
			if slices.Contains(stop, tok) {
				r.StopReason, done[i] = "stop", true
			} else if len(r.Tokens) >= reqs[i].MaxNewTokens {
				done[i] = true
			}
		}
	}
	e.syncPeak()
	if e.prof != nil && e.opts.Log != nil {
		e.prof.report(e.opts.Log, fmt.Sprintf("decode, batch %d, %d steps", B, len(res[0].Decode)))
	}
	return a.wsBytes, nil
}

// decodeGraph is a captured and instantiated decode step.
type decodeGraph struct {
	drv   *cuda.Driver
	graph cuda.Graph
	exec  cuda.GraphExec
}

// capture records step's launches on the engine's stream into a graph.
func (e *Engine) capture(step func() error) (*decodeGraph, error) {
	if err := e.drv.StreamBeginCapture(e.stream, cuda.CaptureModeThreadLocal); err != nil {
		return nil, err
	}
	stepErr := step()
	g, err := e.drv.StreamEndCapture(e.stream)
	if stepErr != nil {
		if g != 0 {
			e.drv.GraphDestroy(g)
		}
		return nil, stepErr
	}
	if err != nil {
		return nil, err
	}
	exec, err := e.drv.GraphInstantiate(g)
	if err != nil {
		e.drv.GraphDestroy(g)
		return nil, err
	}
	return &decodeGraph{drv: e.drv, graph: g, exec: exec}, nil
}

func (g *decodeGraph) destroy() {
	g.drv.GraphExecDestroy(g.exec)
	g.drv.GraphDestroy(g.graph)
}
