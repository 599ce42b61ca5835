// Package prompt turns a task's context and question into the exact text a
// model is given: a per-task template, the model's chat template, and a
// LongBench-style middle truncation to a token budget that is always logged.
//
// It depends only on two small interfaces (Tokenizer, ChatFunc), so it works
// with any tokenizer and chat-template implementation the caller wires in.
package prompt

// Tokenizer is the part of a model tokenizer that prompt building needs.
// engine/tokenizer's *Tokenizer satisfies it.
type Tokenizer interface {
	// Encode returns the token ids of text; addSpecial adds the
	// tokenizer's special tokens (BOS etc.) as its post-processor would.
	Encode(text string, addSpecial bool) ([]int, error)
	// Decode returns the text of ids; skipSpecial drops special tokens.
	Decode(ids []int, skipSpecial bool) (string, error)
}

// ChatFunc renders one system + user turn through a model's chat template,
// ending with the generation prompt for the assistant. system may be empty.
type ChatFunc func(system, user string) (string, error)

// Prompt is one request for the engine and everything the results need to
// score and bucket it.
type Prompt struct {
	Task     string `json:"task"`
	SampleID string `json:"sample_id"`
	// Variant is the needle variant (single, multikey, multivalue); empty
	// for dataset tasks.
	Variant string `json:"variant,omitempty"`
	// Text is the final prompt, after the task template and chat template.
	Text string `json:"text"`
	// Context is the context as placed in Text (after any truncation).
	Context    string   `json:"context"`
	Question   string   `json:"question"`
	References []string `json:"references"`
	// Distractors are the values of distractor needles (multikey), which a
	// correct answer must not give.
	Distractors []string `json:"distractors,omitempty"`
	// ContextTokens counts Context encoded alone, without special tokens.
	ContextTokens int `json:"context_tokens"`
	// PromptTokens counts Text encoded as the engine encodes it
	// (Builder.AddSpecial).
	PromptTokens int `json:"prompt_tokens"`
	// TargetTokens is the prompt length a needle grid cell asked for; 0 for
	// dataset samples.
	TargetTokens int `json:"target_tokens,omitempty"`
	// Depth is the needle's requested depth in [0, 1]; -1 when not a needle.
	Depth        float64 `json:"depth"`
	MaxNewTokens int     `json:"max_new_tokens"`
	// Truncated reports a middle truncation of the context; TruncatedFrom is
	// the context's token count before it.
	Truncated     bool `json:"truncated"`
	TruncatedFrom int  `json:"truncated_from,omitempty"`
}
