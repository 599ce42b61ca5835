package gpu

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/longctx/longctx/engine/cuda"
	"github.com/longctx/longctx/engine/model"
	"github.com/longctx/longctx/engine/weights"
)

// Request is one sequence of a batch.
type Request struct {
	Prompt       []int
	MaxNewTokens int
}

// GenerateOptions configure Generate.
type GenerateOptions struct {
	// ChunkSize is the prefill chunk in tokens; 0 prefills each prompt in
	// one pass, as transformers does.
	ChunkSize int
	// Sampler, when set, returns request i's sampler; the logits row is
	// then copied to the host each step. nil means greedy, with the argmax
	// taken on the device.
	Sampler func(i int) model.Sampler
	// StopTokens end a sequence (nil: the model's EOS ids); IgnoreStop
	// generates exactly MaxNewTokens whatever comes out.
	StopTokens []int
	IgnoreStop bool
	// KeepPrefillLogits copies each prompt's last-position logits to the
	// host (Result.PrefillLogits).
	KeepPrefillLogits bool
	// KeepStepLogits copies every decode step's logits to the host
	// (Result.StepLogits), for tests.
	KeepStepLogits bool
	// KeepKVPositions copies the positions each (layer, KV head) holds
	// after compression to Result.KVPositions, for tests.
	KeepKVPositions bool
	// KeepKVKeys copies the cached keys (post-RoPE, bf16 widened to
	// fp32) per [layer][kv head] once the prompt is in the cache and
	// compressed to Result.KVKeys, for tests.
	KeepKVKeys bool
}

// Result is one request's outcome. Times are wall-clock on the host with
// the stream synchronised at each boundary. In a batch the prompts are
// prefilled one after another, so a request's TTFT counts from the start
// of the batch; decode steps are shared by the batch.
type Result struct {
	model.Result
	// StepLogits are the logits each decode step produced (KeepStepLogits).
	StepLogits [][]float32
	// KVPositions are the cached positions per [layer][kv head] once the
	// prompt is in the cache and compressed (KeepKVPositions).
	KVPositions [][][]int32
	// KVKeys are the cached keys per [layer][kv head], row after row
	// (KeepKVKeys).
	KVKeys [][][]float32
	// Compress is the time of scoring and compaction after the prefill.
	Compress      time.Duration
	EvictedTokens int64
	// GraphCapture is the time to capture and instantiate the decode graph
	// (zero with NoGraph); it is counted in the second decode step, the
	// first replayed one.
	GraphCapture time.Duration
}

// BatchStats are the memory figures of one Generate call.
type BatchStats struct {
	// PeakEngineBytes is the allocator's high-water mark during the call
	// (weights included); PeakDeviceBytes the device's, from cuMemGetInfo,
	// less what was in use before the engine loaded; WorkspaceBytes the
	// largest attention workspace.
	PeakEngineBytes, PeakDeviceBytes, WorkspaceBytes int64
}

// Generate runs a batch: each prompt is prefilled (and its cache
// compressed by the KV policy), then all sequences decode together, one
// token per sequence per step, until each has its tokens or a stop token.
// An out-of-memory anywhere wraps model.ErrOutOfMemory and frees what the
// call allocated; the engine stays usable.
func (e *Engine) Generate(ctx context.Context, reqs []Request, opts GenerateOptions) ([]*Result, BatchStats, error) {
	if len(reqs) == 0 {
		return nil, BatchStats{}, errors.New("generate: no requests")
	}
	for i, r := range reqs {
		if len(r.Prompt) == 0 {
			return nil, BatchStats{}, fmt.Errorf("generate: request %d has an empty prompt", i)
		}
		if r.MaxNewTokens < 0 {
			return nil, BatchStats{}, fmt.Errorf("generate: request %d: MaxNewTokens %d is negative", i, r.MaxNewTokens)
		}
		for j, t := range r.Prompt {
			if t < 0 || t >= e.cfg.VocabSize {
				return nil, BatchStats{}, fmt.Errorf("generate: request %d: token %d (at %d) is outside the vocabulary [0,%d)", i, t, j, e.cfg.VocabSize)
			}
		}
	}
	var res []*Result
	var stats BatchStats
	err := e.th.do(func() error {
		var err error
		res, stats, err = e.generate(ctx, reqs, opts)
		return err
	})
	return res, stats, err
}

func (e *Engine) generate(ctx context.Context, reqs []Request, opts GenerateOptions) ([]*Result, BatchStats, error) {
	c := e.cfg
	B := len(reqs)
	stop := opts.StopTokens
	if stop == nil {
		stop = c.EOS
	}
	if opts.IgnoreStop {
		stop = nil
	}
	maxNew := 0
	for _, r := range reqs {
		maxNew = max(maxNew, r.MaxNewTokens)
	}
	e.alloc.ResetPeak()
	e.peakDev = 0
	e.syncPeak()
	var wsPeak int64
	kv, err := e.newBatchKV(B)
	defer func() {
		// Wait for the stream before freeing what its kernels may still use
		// (after an error mid-launch sequence).
		e.drv.StreamSynchronize(e.stream)
		kv.free()
	}()
	if err != nil {
		return nil, BatchStats{}, err
	}
	res := make([]*Result, B)
	cur := make([]int, B) // each sequence's latest token
	done := make([]bool, B)
	start := time.Now()
	for i, r := range reqs {
		if err := ctx.Err(); err != nil {
			return nil, BatchStats{}, err
		}
		res[i] = &Result{Result: model.Result{PromptTokens: len(r.Prompt), StopReason: model.StopLength}}
		if err := kv.allocSlot(i, len(r.Prompt)+maxNew); err != nil {
			return nil, BatchStats{}, fmt.Errorf("request %d: %w", i, err)
		}
		t0 := time.Now()
		logits, next, ws, err := e.prefill(ctx, kv, i, r.Prompt, opts.ChunkSize, opts.KeepPrefillLogits || opts.Sampler != nil)
		if err != nil {
			return nil, BatchStats{}, fmt.Errorf("request %d: prefill: %w", i, err)
		}
		wsPeak = max(wsPeak, ws)
		res[i].Prefill = time.Since(t0)
		res[i].PrefillLogits = logits
		t1 := time.Now()
		if err := kv.compress(i, maxNew); err != nil {
			return nil, BatchStats{}, fmt.Errorf("request %d: %w", i, err)
		}
		res[i].Compress = time.Since(t1)
		res[i].EvictedTokens = kv.evicted[i]
		if opts.KeepKVKeys {
			if res[i].KVKeys, err = kv.keys(i); err != nil {
				return nil, BatchStats{}, err
			}
		}
		if opts.KeepKVPositions {
			if res[i].KVPositions, err = kv.positions(i); err != nil {
				return nil, BatchStats{}, err
			}
		}
		res[i].KVBytesPrefill = kv.bytes(i)
		if r.MaxNewTokens == 0 {
			done[i] = true
			res[i].TTFT = time.Since(start)
			res[i].E2E = res[i].TTFT
			continue
		}
		if opts.Sampler != nil {
			if next, err = opts.Sampler(i).Sample(logits); err != nil {
				return nil, BatchStats{}, fmt.Errorf("request %d: %w", i, err)
			}
		}
		res[i].TTFT = time.Since(start)
		res[i].E2E = res[i].TTFT
		cur[i] = next
		res[i].Tokens = append(res[i].Tokens, next)
		if slices.Contains(stop, next) {
			res[i].StopReason, done[i] = model.StopToken, true
		} else if len(res[i].Tokens) == r.MaxNewTokens {
			done[i] = true
		}
	}
	if !allDone(done) {
		ws, err := e.decodeLoop(ctx, kv, reqs, opts, res, cur, done, stop)
		if err != nil {
			return nil, BatchStats{}, err
		}
		wsPeak = max(wsPeak, ws)
	}
	for i := range res {
		res[i].KVBytesEnd = kv.bytes(i)
	}
	e.syncPeak()
	u := e.alloc.Usage()
	return res, BatchStats{PeakEngineBytes: u.Peak, PeakDeviceBytes: e.PeakDeviceBytes(), WorkspaceBytes: wsPeak}, nil
}

func allDone(done []bool) bool {
	for _, d := range done {
		if !d {
			return false
		}
	}
	return true
}

// prefill runs prompt through sequence s's slot in chunks and returns the
// greedy next token (and the logits row when keepLogits).
func (e *Engine) prefill(ctx context.Context, kv *batchKV, s int, prompt []int, chunk int, keepLogits bool) ([]float32, int, int64, error) {
	n := len(prompt)
	if chunk <= 0 || chunk > n {
		chunk = n
	}
	a, err := e.newActs(chunk, 1)
	if err != nil {
		return nil, 0, 0, err
	}
	defer a.arena.free()
	kd, vd := kv.descAt(0, s)
	_ = kd
	_ = vd
	for start := 0; start < n; start += chunk {
		if err := ctx.Err(); err != nil {
			return nil, 0, 0, err
		}
		T := min(chunk, n-start)
		ids := make([]int32, T)
		pos := make([]int32, T)
		seq := make([]int32, T)
		off := make([]int32, T)
		for j := range T {
			ids[j], pos[j], off[j] = int32(prompt[start+j]), int32(kv.next[s]+j), int32(j)
		}
		for _, up := range []struct {
			dst cuda.DevicePtr
			v   []int32
		}{{a.ids, ids}, {a.pos, pos}, {a.tokSeq, seq}, {a.tokOff, off}} {
			if err := e.drv.MemcpyHtoDAsync(up.dst, i32Bytes(up.v), e.stream); err != nil {
				return nil, 0, 0, err
			}
		}
		a.T = T
		if err := e.mark("start"); err != nil {
			return nil, 0, 0, err
		}
		if err := e.ops.Embed(e.stream, e.w.embed, a.ids, a.resid, T, e.cfg.HiddenSize); err != nil {
			return nil, 0, 0, err
		}
		if err := e.mark("embed"); err != nil {
			return nil, 0, 0, err
		}
		call := attnCall{
			role:        e.attnPrefill,
			kdesc:       func(l int) (cuda.DevicePtr, cuda.DevicePtr) { return kv.descAt(l, s) },
			numSeqs:     1,
			numQ:        T,
			maxKV:       func(l int) int { return kv.maxLen(s, l) + T },
			commitHeads: e.cfg.NumKVHeads,
			commitN:     T,
		}
		if err := e.layers(a, call); err != nil {
			return nil, 0, 0, err
		}
		kv.committed(s, T)
		if start+T == n {
			if err := e.head(a, T-1, 1); err != nil {
				return nil, 0, 0, err
			}
		}
		// The host slices above are read by the async copies: wait before
		// the next chunk reuses them (and to time the prefill honestly).
		if err := e.drv.StreamSynchronize(e.stream); err != nil {
			return nil, 0, 0, fmt.Errorf("prefill: %w", err)
		}
		if e.prof != nil {
			if err := e.prof.collect(); err != nil {
				return nil, 0, 0, err
			}
		}
	}
	if e.prof != nil && e.opts.Log != nil {
		e.prof.report(e.opts.Log, fmt.Sprintf("prefill of %d tokens in chunks of %d", n, chunk))
	}
	e.syncPeak()
	next, logits, err := e.readHead(a, 1, keepLogits)
	if err != nil {
		return nil, 0, 0, err
	}
	return logits[0], next[0], a.wsBytes, nil
}

// readHead copies the argmax of rows logits rows (and the rows themselves
// when keepLogits) to the host.
func (e *Engine) readHead(a *acts, rows int, keepLogits bool) ([]int, [][]float32, error) {
	// The stream is non-blocking: a synchronous copy would not wait for it.
	if err := e.drv.StreamSynchronize(e.stream); err != nil {
		return nil, nil, err
	}
	buf := make([]byte, 4*rows)
	if err := e.drv.MemcpyDtoH(buf, a.next); err != nil {
		return nil, nil, fmt.Errorf("reading the next tokens: %w", err)
	}
	next := make([]int, rows)
	for i := range next {
		next[i] = int(int32(binary.LittleEndian.Uint32(buf[4*i:])))
	}
	logits := make([][]float32, rows)
	if keepLogits {
		V := e.cfg.VocabSize
		raw := make([]byte, 2*rows*V)
		if err := e.drv.MemcpyDtoH(raw, a.logits); err != nil {
			return nil, nil, fmt.Errorf("reading the logits: %w", err)
		}
		for i := range rows {
			logits[i] = make([]float32, V)
			weights.BF16ToFloat32(logits[i], raw[2*i*V:2*(i+1)*V])
		}
	}
	return next, logits, nil
}
