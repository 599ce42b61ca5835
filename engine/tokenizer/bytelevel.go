package tokenizer

import "strings"

// byteLevelTable is GPT-2's bytes_to_unicode: every byte gets a printable
// character, so byte-level vocabularies never contain spaces or control
// characters. Printable Latin-1 bytes map to themselves; the rest take the
// characters from U+0100 on, in byte order.
type byteLevelTable struct {
	encode [256]string
	decode map[rune]byte
}

func newByteLevelTable() *byteLevelTable {
	t := &byteLevelTable{decode: make(map[rune]byte, 256)}
	next := rune(256)
	for b := 0; b < 256; b++ {
		r := rune(b)
		printable := (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
		if !printable {
			r = next
			next++
		}
		t.encode[b] = string(r)
		t.decode[r] = byte(b)
	}
	return t
}

// byteLevel is immutable once built, so one table serves every tokenizer.
var byteLevel = newByteLevelTable()

// byteLevelEncode spells the UTF-8 bytes of s with byte-level characters.
func byteLevelEncode(s string) string {
	var b strings.Builder
	b.Grow(2 * len(s))
	for i := 0; i < len(s); i++ {
		b.WriteString(byteLevel.encode[s[i]])
	}
	return b.String()
}

// byteLevelDecode appends the bytes a byte-level token stands for. A token
// holding any character outside the table (an added token, say) is taken
// as its own UTF-8 text, as HF's ByteLevel decoder does.
func byteLevelDecode(dst []byte, token string) []byte {
	start := len(dst)
	for _, r := range token {
		b, ok := byteLevel.decode[r]
		if !ok {
			return append(dst[:start], token...)
		}
		dst = append(dst, b)
	}
	return dst
}
