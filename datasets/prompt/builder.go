package prompt

import (
	"errors"
	"fmt"
	"log/slog"
)

// Options configure a Builder.
type Options struct {
	// Chat renders the model's chat template; nil sends the task template's
	// text as is (base models), with any system text before it.
	Chat ChatFunc
	// AddSpecial tells whether the engine encodes the final text with the
	// tokenizer's special tokens. Chat templates that write BOS into the
	// text (Llama 2, Llama 3) want false; a base model without a chat
	// template usually wants true. PromptTokens is counted the same way.
	AddSpecial bool
	// Budget is the most prompt tokens a sample may take; longer contexts
	// are cut in the middle until the whole prompt fits. 0 means no limit.
	Budget int
	// Logger receives a record for every truncation; nil uses slog.Default().
	Logger *slog.Logger
}

// Builder renders prompts for one model: its tokenizer, chat template and
// budget.
type Builder struct {
	tok  Tokenizer
	opts Options
	log  *slog.Logger
}

// NewBuilder returns a Builder for tok.
func NewBuilder(tok Tokenizer, opts Options) (*Builder, error) {
	if tok == nil {
		return nil, errors.New("prompt builder: nil tokenizer")
	}
	if opts.Budget < 0 {
		return nil, fmt.Errorf("prompt builder: negative budget %d", opts.Budget)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Builder{tok: tok, opts: opts, log: log}, nil
}

// Tokenizer returns the builder's tokenizer.
func (b *Builder) Tokenizer() Tokenizer { return b.tok }

// Budget returns the prompt token budget (0: none).
func (b *Builder) Budget() int { return b.opts.Budget }

// Input is one sample to render.
type Input struct {
	Task, SampleID    string
	Context, Question string
	References        []string
	MaxNewTokens      int
}

// Render returns the final prompt text for context and question: the task
// template, then the chat template when there is one.
func (b *Builder) Render(t *Template, context, question string) (string, error) {
	if t == nil {
		return "", errors.New("render prompt: nil template")
	}
	system, user := t.Render(context, question)
	if b.opts.Chat == nil {
		if system == "" {
			return user, nil
		}
		return system + "\n\n" + user, nil
	}
	text, err := b.opts.Chat(system, user)
	if err != nil {
		return "", fmt.Errorf("render prompt: chat template: %w", err)
	}
	return text, nil
}

// CountPrompt returns the tokens of a final prompt as the engine encodes it.
func (b *Builder) CountPrompt(text string) (int, error) {
	ids, err := b.tok.Encode(text, b.opts.AddSpecial)
	if err != nil {
		return 0, fmt.Errorf("count prompt tokens: %w", err)
	}
	return len(ids), nil
}

// CountText returns the tokens of a piece of text without special tokens.
func (b *Builder) CountText(text string) (int, error) {
	ids, err := b.tok.Encode(text, false)
	if err != nil {
		return 0, fmt.Errorf("count tokens: %w", err)
	}
	return len(ids), nil
}

// maxFitRounds bounds the measure-and-adjust loop of truncation: each round
// moves the context budget by the measured error, which is a token or two
// after the first round, so a few rounds always suffice in practice.
const maxFitRounds = 8

// Build renders one sample. When the prompt exceeds the budget, the context
// is cut in the middle so that the whole prompt, measured, takes exactly
// Budget tokens, and the cut is logged. It never takes more. Where the cuts
// fall inside multi-byte characters (emoji, CJK, byte-fallback tokens) the
// partial characters are dropped, and the prompt can come out a few tokens
// under the budget; PromptTokens always holds the measured count.
func (b *Builder) Build(t *Template, in Input) (Prompt, error) {
	p := Prompt{
		Task:         in.Task,
		SampleID:     in.SampleID,
		Question:     in.Question,
		References:   in.References,
		Depth:        -1,
		MaxNewTokens: in.MaxNewTokens,
	}
	text, err := b.Render(t, in.Context, in.Question)
	if err != nil {
		return Prompt{}, fmt.Errorf("sample %s: %w", in.SampleID, err)
	}
	n, err := b.CountPrompt(text)
	if err != nil {
		return Prompt{}, fmt.Errorf("sample %s: %w", in.SampleID, err)
	}
	ctxIDs, err := b.tok.Encode(in.Context, false)
	if err != nil {
		return Prompt{}, fmt.Errorf("sample %s: encode context: %w", in.SampleID, err)
	}
	budget := b.opts.Budget
	if budget == 0 || n <= budget {
		p.Text, p.Context, p.ContextTokens, p.PromptTokens = text, in.Context, len(ctxIDs), n
		return p, nil
	}

	type fit struct {
		keep          int
		text, context string
		tokens        int
	}
	var best *fit
	tried := map[int]int{} // keep -> measured prompt tokens
	try := func(keep int) (int, error) {
		if got, ok := tried[keep]; ok {
			return got, nil
		}
		ctx, _, err := truncateIDs(b.tok, in.Context, ctxIDs, keep)
		if err != nil {
			return 0, err
		}
		text, err := b.Render(t, ctx, in.Question)
		if err != nil {
			return 0, err
		}
		got, err := b.CountPrompt(text)
		if err != nil {
			return 0, err
		}
		tried[keep] = got
		if got <= budget && (best == nil || got > best.tokens) {
			best = &fit{keep: keep, text: text, context: ctx, tokens: got}
		}
		return got, nil
	}
	// First move the kept count by the measured error; a cut inside a
	// multi-byte character or a merge across the seam can make a step
	// change nothing, so then walk up one token at a time from the best
	// fit until the budget is reached or passed.
	keep := budget - (n - len(ctxIDs))
	for range maxFitRounds {
		keep = min(keep, len(ctxIDs)-1)
		if keep <= 0 {
			break
		}
		if _, seen := tried[keep]; seen {
			break
		}
		got, err := try(keep)
		if err != nil {
			return Prompt{}, fmt.Errorf("sample %s: %w", in.SampleID, err)
		}
		if got == budget {
			break
		}
		keep += budget - got
	}
	if best != nil && best.tokens < budget {
		from := best.keep
		for k := from + 1; k < len(ctxIDs) && k <= from+maxFitRounds; k++ {
			got, err := try(k)
			if err != nil {
				return Prompt{}, fmt.Errorf("sample %s: %w", in.SampleID, err)
			}
			if got >= budget {
				break
			}
		}
	}
	if best == nil {
		return Prompt{}, fmt.Errorf("sample %s: prompt of %d tokens cannot be cut to the budget of %d: the template, question and chat template alone take about %d tokens",
			in.SampleID, n, budget, n-len(ctxIDs))
	}
	ctxTokens, err := b.CountText(best.context)
	if err != nil {
		return Prompt{}, fmt.Errorf("sample %s: %w", in.SampleID, err)
	}
	p.Text, p.Context, p.PromptTokens, p.ContextTokens = best.text, best.context, best.tokens, ctxTokens
	p.Truncated, p.TruncatedFrom = true, len(ctxIDs)
	b.log.Warn("prompt context truncated in the middle",
		"task", in.Task, "sample", in.SampleID,
		"context_tokens_before", len(ctxIDs), "context_tokens_after", ctxTokens,
		"prompt_tokens_before", n, "prompt_tokens_after", best.tokens, "budget", budget)
	return p, nil
}
