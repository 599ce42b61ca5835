package model

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/longctx/longctx/engine/sample"
)

// Sampler picks the next token from a row of logits; *sample.Sampler is one.
type Sampler interface {
	Sample(logits []float32) (int, error)
}

// StopReason says why generation ended.
type StopReason string

// Stop reasons.
const (
	StopLength StopReason = "length" // MaxNewTokens reached
	StopToken  StopReason = "stop"   // a stop token was generated
)

// GenerateOptions configure Generate.
type GenerateOptions struct {
	// MaxNewTokens bounds the generated tokens; 0 runs the prefill only.
	MaxNewTokens int
	// ChunkSize is the prefill chunk in tokens; 0 prefills in one pass.
	ChunkSize int
	// Sampler picks tokens; nil means greedy.
	Sampler Sampler
	// StopTokens end generation (the stop token is kept in the output, as
	// transformers keeps the eos). nil means the model's EOS ids.
	StopTokens []int
	// IgnoreStop generates exactly MaxNewTokens tokens whatever they are,
	// for benchmarks of a fixed output length.
	IgnoreStop bool
	// AfterPrefill, when set, runs once the prompt is in the KV cache and
	// before the first token is sampled: where KV compression acts on the
	// prefilled cache.
	AfterPrefill func(ctx context.Context, s *Sequence) error
	// AfterStep, when set, runs after each decode step's forward pass (the
	// token fed in that step is then in the KV cache) and before its logits
	// are sampled: where a decode-time KV budget is enforced. Its time
	// counts in the step's.
	AfterStep func(ctx context.Context, s *Sequence) error
	// OnToken receives each token as soon as it is chosen (streaming); an
	// error from it stops generation and is returned. Its time is not
	// counted in the timings.
	OnToken func(id int) error
}

// Result is the outcome of Generate.
type Result struct {
	// Tokens are the generated ids, the stop token included.
	Tokens     []int
	StopReason StopReason
	// PrefillLogits are the logits at the last prompt position.
	PrefillLogits []float32
	PromptTokens  int
	// Prefill is the time of the prompt's forward passes.
	Prefill time.Duration
	// TTFT runs from the call to the first token chosen: prefill,
	// AfterPrefill and the first sampling.
	TTFT time.Duration
	// Decode holds each later token's time: one forward pass and sampling.
	Decode []time.Duration
	// E2E is TTFT plus the decode steps.
	E2E time.Duration
	// KVBytesPrefill is the cache's live size when decoding starts (after
	// AfterPrefill); KVBytesEnd its size at the end. The last token is
	// never fed back, so the cache ends one short of prompt + output.
	KVBytesPrefill, KVBytesEnd int64
}

// Generate runs prompt through a new sequence and generates up to
// opts.MaxNewTokens tokens.
func (m *Model) Generate(ctx context.Context, prompt []int, opts GenerateOptions) (*Result, error) {
	s, err := m.NewSequence()
	if err != nil {
		return nil, err
	}
	return s.Generate(ctx, prompt, opts)
}

// Generate continues the sequence with prompt and generates up to
// opts.MaxNewTokens tokens. The first token comes from the prompt's
// last-position logits.
func (s *Sequence) Generate(ctx context.Context, prompt []int, opts GenerateOptions) (*Result, error) {
	if opts.MaxNewTokens < 0 {
		return nil, fmt.Errorf("generate: MaxNewTokens %d is negative", opts.MaxNewTokens)
	}
	if len(prompt) == 0 {
		return nil, errors.New("generate: empty prompt")
	}
	sampler := opts.Sampler
	if sampler == nil {
		sampler = sample.Greedy()
	}
	stop := opts.StopTokens
	if stop == nil {
		stop = s.m.cfg.EOS
	}
	if opts.IgnoreStop {
		stop = nil
	}
	total := s.Len() + len(prompt) + opts.MaxNewTokens
	if err := s.m.checkRun(total, opts.ChunkSize); err != nil {
		return nil, err
	}
	s.cache.Reserve(len(prompt) + opts.MaxNewTokens)

	start := time.Now()
	logits, err := s.Prefill(ctx, prompt, opts.ChunkSize)
	if err != nil {
		return nil, fmt.Errorf("prefill: %w", err)
	}
	res := &Result{PrefillLogits: logits, PromptTokens: len(prompt), Prefill: time.Since(start), StopReason: StopLength}
	if opts.AfterPrefill != nil {
		if err := opts.AfterPrefill(ctx, s); err != nil {
			return nil, fmt.Errorf("after prefill: %w", err)
		}
		// Compaction leaves each head exactly sized: make the decode room again.
		s.cache.Reserve(opts.MaxNewTokens)
	}
	res.KVBytesPrefill = s.cache.Bytes()
	if opts.MaxNewTokens == 0 {
		res.TTFT, res.E2E = time.Since(start), time.Since(start)
		res.KVBytesEnd = res.KVBytesPrefill
		return res, nil
	}

	tok, err := sampler.Sample(logits)
	if err != nil {
		return nil, err
	}
	res.TTFT = time.Since(start)
	res.E2E = res.TTFT
	for {
		res.Tokens = append(res.Tokens, tok)
		if opts.OnToken != nil {
			if err := opts.OnToken(tok); err != nil {
				return nil, err
			}
		}
		if slices.Contains(stop, tok) {
			res.StopReason = StopToken
			break
		}
		if len(res.Tokens) == opts.MaxNewTokens {
			break
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		stepStart := time.Now()
		logits, err := s.Decode(ctx, tok)
		if err != nil {
			return nil, fmt.Errorf("decode step %d: %w", len(res.Tokens), err)
		}
		if opts.AfterStep != nil {
			if err := opts.AfterStep(ctx, s); err != nil {
				return nil, fmt.Errorf("decode step %d: after step: %w", len(res.Tokens), err)
			}
		}
		if tok, err = sampler.Sample(logits); err != nil {
			return nil, fmt.Errorf("decode step %d: %w", len(res.Tokens), err)
		}
		step := time.Since(stepStart)
		res.Decode = append(res.Decode, step)
		res.E2E += step
	}
	res.KVBytesEnd = s.cache.Bytes()
	return res, nil
}
