// Package tokenizer turns text into token ids and back exactly as Hugging
// Face `tokenizers` does for a model's tokenizer.json (byte-level BPE as in
// Llama 3 and Qwen, SentencePiece-style BPE with byte fallback as in Llama 2
// and Mistral), plus a byte tokenizer for synthetic models that ship none.
//
// Encoding follows HF's pipeline: added tokens are cut out of the raw text,
// the pieces between them are normalized, pre-tokenized into words, and each
// word is encoded by the BPE model; the post-processor then adds special
// tokens such as BOS when asked.
package tokenizer

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Encoder is what the engine needs from a tokenizer; *Tokenizer and *Bytes
// implement it.
type Encoder interface {
	// Encode returns the ids of text; addSpecial adds the special tokens of
	// the model's template (BOS for Llama 2, say).
	Encode(text string, addSpecial bool) ([]int, error)
	// Decode returns the text of ids; skipSpecial leaves out special tokens.
	Decode(ids []int, skipSpecial bool) (string, error)
	// VocabSize is one more than the largest id the tokenizer can produce.
	VocabSize() int
}

// Tokenizer is a tokenizer.json tokenizer. It is safe for concurrent use.
type Tokenizer struct {
	normalizer   normalizer    // nil: none
	preTokenizer preTokenizer  // nil: the whole piece is one word
	model        *bpe          // never nil
	added        *addedVocab   // never nil
	decoder      decoder       // nil: tokens joined with spaces
	post         postProcessor // nil: adds nothing
	vocabSize    int
	specialIDs   []int
}

var (
	_ Encoder = (*Tokenizer)(nil)
	_ Encoder = (*Bytes)(nil)
)

// Encode returns the token ids of text. Added tokens that occur in the text
// (such as <|im_start|>) are always recognized, as in HF; addSpecial only
// controls what the post-processor adds around the sequence.
func (t *Tokenizer) Encode(text string, addSpecial bool) ([]int, error) {
	if !utf8.ValidString(text) {
		return nil, errors.New("tokenizer: text is not valid UTF-8")
	}
	segments, err := t.added.extract(text, t.normalizer)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: normalizing: %w", err)
	}
	ids := make([]int, 0, len(text)/3+2)
	for _, seg := range segments {
		if seg.id >= 0 {
			ids = append(ids, seg.id)
			continue
		}
		words := []word{{text: seg.text, first: seg.first}}
		if t.preTokenizer != nil {
			if words, err = t.preTokenizer.preTokenize(words); err != nil {
				return nil, fmt.Errorf("tokenizer: pre-tokenizing: %w", err)
			}
		}
		for _, w := range words {
			if ids, err = t.model.tokenize(w.text, ids); err != nil {
				return nil, fmt.Errorf("tokenizer: %w", err)
			}
		}
	}
	if t.post != nil {
		ids = t.post.process(ids, addSpecial)
	}
	if ids == nil {
		ids = []int{}
	}
	return ids, nil
}

// Decode returns the text of ids, with the tokenizer's decoder applied as HF
// does. Ids that name no token are skipped, as in HF; negative ids are an
// error.
func (t *Tokenizer) Decode(ids []int, skipSpecial bool) (string, error) {
	tokens := make([]string, 0, len(ids))
	for _, id := range ids {
		if id < 0 {
			return "", fmt.Errorf("tokenizer: negative token id %d", id)
		}
		tok, ok := t.IDToToken(id)
		if !ok || (skipSpecial && t.added.special[tok]) {
			continue
		}
		tokens = append(tokens, tok)
	}
	if t.decoder == nil {
		return strings.Join(tokens, " "), nil
	}
	parts, err := t.decoder.decodeChain(tokens)
	if err != nil {
		return "", fmt.Errorf("tokenizer: decoding: %w", err)
	}
	return strings.Join(parts, ""), nil
}

// TokenToID returns the id of a token (an added token or a vocabulary entry,
// spelled as in the vocabulary).
func (t *Tokenizer) TokenToID(token string) (int, bool) {
	if id, ok := t.added.byContent[token]; ok {
		return id, true
	}
	id, ok := t.model.vocab[token]
	return int(id), ok
}

// IDToToken returns the token an id stands for, spelled as in the
// vocabulary (byte-level characters for byte-level BPE).
func (t *Tokenizer) IDToToken(id int) (string, bool) {
	if tok, ok := t.added.byID[id]; ok {
		return tok.content, true
	}
	if id < 0 || id > 1<<31-1 {
		return "", false
	}
	tok, ok := t.model.vocabR[int32(id)]
	return tok, ok
}

// VocabSize is one more than the largest id of the vocabulary and the added
// tokens.
func (t *Tokenizer) VocabSize() int { return t.vocabSize }

// SpecialIDs returns the ids of the special added tokens, in increasing
// order.
func (t *Tokenizer) SpecialIDs() []int { return append([]int(nil), t.specialIDs...) }
