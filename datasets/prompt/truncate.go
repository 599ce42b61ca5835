package prompt

import (
	"fmt"
	"strings"
)

// Cut describes a middle truncation in tokens.
type Cut struct {
	From int // tokens before the cut
	Head int // tokens kept from the start
	Tail int // tokens kept from the end
}

// TruncateMiddle keeps the first keep/2 and the last keep-keep/2 tokens of
// text and drops the middle, as LongBench does: the question and the
// instructions usually sit at the ends of a prompt, and both ends of a long
// document carry more answerable content than an arbitrary cut would keep.
// Text that already fits is returned unchanged with Cut{From: n, Head: n}.
//
// The kept pieces are decoded separately and joined without a separator,
// so re-encoding the result may differ from keep by a token or two at the
// seam; Builder measures and corrects for that.
func TruncateMiddle(tok Tokenizer, text string, keep int) (string, Cut, error) {
	ids, err := tok.Encode(text, false)
	if err != nil {
		return "", Cut{}, fmt.Errorf("truncate: encode: %w", err)
	}
	return truncateIDs(tok, text, ids, keep)
}

func truncateIDs(tok Tokenizer, text string, ids []int, keep int) (string, Cut, error) {
	if keep < 0 {
		return "", Cut{}, fmt.Errorf("truncate: negative budget %d", keep)
	}
	if len(ids) <= keep {
		return text, Cut{From: len(ids), Head: len(ids)}, nil
	}
	head := keep / 2
	tail := keep - head
	h, err := tok.Decode(ids[:head], true)
	if err != nil {
		return "", Cut{}, fmt.Errorf("truncate: decode head: %w", err)
	}
	t, err := tok.Decode(ids[len(ids)-tail:], true)
	if err != nil {
		return "", Cut{}, fmt.Errorf("truncate: decode tail: %w", err)
	}
	// A cut inside a multi-byte character decodes to U+FFFD; drop those
	// halves rather than put a replacement character into the prompt.
	if !strings.ContainsRune(text, '\uFFFD') {
		h = strings.TrimRight(h, "\uFFFD")
		t = strings.TrimLeft(t, "\uFFFD")
	}
	return h + t, Cut{From: len(ids), Head: head, Tail: tail}, nil
}
