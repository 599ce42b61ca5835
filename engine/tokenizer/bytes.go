package tokenizer

import (
	"fmt"
	"strconv"
)

// Ids of the Bytes tokenizer's special tokens; byte b is id BytesOffset+b.
const (
	BytesPad    = 0
	BytesBOS    = 1
	BytesEOS    = 2
	BytesOffset = 3
	// BytesMinVocab is the smallest vocabulary that holds every byte.
	BytesMinVocab = BytesOffset + 256
)

var bytesSpecialNames = [BytesOffset]string{"<pad>", "<s>", "</s>"}

// Bytes is the tokenizer of synthetic models, which have no tokenizer file:
// every UTF-8 byte is one token. Ids past the bytes exist only so that the
// vocabulary can have a real model's size; they decode to "<|id|>".
type Bytes struct {
	vocabSize int
}

// NewBytes returns a byte tokenizer with the given vocabulary size, which
// must be at least BytesMinVocab.
func NewBytes(vocabSize int) (*Bytes, error) {
	if vocabSize < BytesMinVocab {
		return nil, fmt.Errorf("tokenizer: byte vocabulary size %d is below the minimum %d", vocabSize, BytesMinVocab)
	}
	return &Bytes{vocabSize: vocabSize}, nil
}

// Encode returns one id per byte of text, after BOS when addSpecial is set.
func (b *Bytes) Encode(text string, addSpecial bool) ([]int, error) {
	ids := make([]int, 0, len(text)+1)
	if addSpecial {
		ids = append(ids, BytesBOS)
	}
	for i := 0; i < len(text); i++ {
		ids = append(ids, BytesOffset+int(text[i]))
	}
	return ids, nil
}

// Decode returns the text of ids; bytes that do not form valid UTF-8 become
// U+FFFD as in the byte-level tokenizers.
func (b *Bytes) Decode(ids []int, skipSpecial bool) (string, error) {
	buf := make([]byte, 0, len(ids))
	for _, id := range ids {
		switch {
		case id < 0 || id >= b.vocabSize:
			return "", fmt.Errorf("tokenizer: token id %d outside the byte vocabulary of %d", id, b.vocabSize)
		case id < BytesOffset:
			if !skipSpecial {
				buf = append(buf, bytesSpecialNames[id]...)
			}
		case id < BytesMinVocab:
			buf = append(buf, byte(id-BytesOffset))
		default:
			buf = append(buf, "<|"...)
			buf = strconv.AppendInt(buf, int64(id), 10)
			buf = append(buf, "|>"...)
		}
	}
	return lossyUTF8(buf), nil
}

// VocabSize returns the vocabulary size given to NewBytes.
func (b *Bytes) VocabSize() int { return b.vocabSize }

// SpecialIDs returns the ids of <pad>, <s> and </s>.
func (b *Bytes) SpecialIDs() []int { return []int{BytesPad, BytesBOS, BytesEOS} }
