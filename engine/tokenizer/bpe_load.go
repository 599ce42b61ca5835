package tokenizer

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
)

// buildBPE reads a BPE model section; other model types are reported as
// unsupported.
func buildBPE(o *jsonObject) (*bpe, error) {
	typ, ok, err := o.optString("type")
	if err != nil {
		return nil, err
	}
	if ok && typ != "BPE" {
		return nil, o.unsupported(typ)
	}
	if !ok && o.get("merges") == nil {
		return nil, fmt.Errorf("%s: missing (only BPE models are supported)", o.at("type"))
	}
	if raw := o.get("dropout"); raw != nil {
		var d float64
		if err := json.Unmarshal(raw, &d); err != nil || d != 0 {
			return nil, fmt.Errorf("%s: BPE dropout %s is not supported (use null)", o.at("dropout"), raw)
		}
	}
	m := &bpe{cache: newWordCache(wordCacheLimit)}
	if m.unkToken, m.hasUnk, err = o.optString("unk_token"); err != nil {
		return nil, err
	}
	if m.prefix, _, err = o.optString("continuing_subword_prefix"); err != nil {
		return nil, err
	}
	if m.suffix, _, err = o.optString("end_of_word_suffix"); err != nil {
		return nil, err
	}
	if m.fuseUnk, err = o.boolOr("fuse_unk", false); err != nil {
		return nil, err
	}
	if m.byteFallback, err = o.boolOr("byte_fallback", false); err != nil {
		return nil, err
	}
	if m.ignoreMerges, err = o.boolOr("ignore_merges", false); err != nil {
		return nil, err
	}
	if err := m.readVocab(o); err != nil {
		return nil, err
	}
	if err := m.readMerges(o); err != nil {
		return nil, err
	}
	for b := range m.byteIDs {
		m.byteIDs[b] = -1
		if id, ok := m.vocab[fmt.Sprintf("<0x%02X>", b)]; ok {
			m.byteIDs[b] = id
		}
	}
	return m, nil
}

// readVocab reads the token: id map, which must give each token its own
// non-negative 32-bit id.
func (m *bpe) readVocab(o *jsonObject) error {
	var vocab map[string]int64
	ok, err := o.decode("vocab", &vocab, "an object of token: integer id")
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s: missing", o.at("vocab"))
	}
	m.vocab = make(map[string]int32, len(vocab))
	m.vocabR = make(map[int32]string, len(vocab))
	for tok, id := range vocab {
		if id < 0 || id > math.MaxInt32 {
			return fmt.Errorf("%s[%q]: id %d is not a non-negative 32-bit integer", o.at("vocab"), tok, id)
		}
		if other, dup := m.vocabR[int32(id)]; dup {
			a, b := min(other, tok), max(other, tok)
			return fmt.Errorf("%s: id %d is used by both %q and %q", o.at("vocab"), id, a, b)
		}
		m.vocab[tok] = int32(id)
		m.vocabR[int32(id)] = tok
	}
	return nil
}

// readMerges accepts both serializations: "a b" strings (older files) and
// [a, b] pairs. A later duplicate of a pair overrides the earlier rank, as
// in HF.
func (m *bpe) readMerges(o *jsonObject) error {
	path := o.at("merges")
	raw := o.get("merges")
	if raw == nil {
		return fmt.Errorf("%s: missing", path)
	}
	var pairs [][2]string
	var lines []string
	if err := json.Unmarshal(raw, &lines); err == nil {
		for i, line := range lines {
			if strings.HasPrefix(line, "#version") {
				continue // a header line of merges.txt, as HF skips it
			}
			a, b, ok := strings.Cut(line, " ")
			if !ok || strings.Contains(b, " ") {
				return fmt.Errorf("%s[%d]: %q is not two tokens separated by one space", path, i, line)
			}
			pairs = append(pairs, [2]string{a, b})
		}
	} else {
		var list [][]string
		if err := json.Unmarshal(raw, &list); err != nil {
			return fmt.Errorf("%s: expected a list of \"a b\" strings or [a, b] pairs", path)
		}
		pairs = make([][2]string, len(list))
		for i, p := range list {
			if len(p) != 2 {
				return fmt.Errorf("%s[%d]: expected a pair of tokens, got %d", path, i, len(p))
			}
			pairs[i] = [2]string{p[0], p[1]}
		}
	}
	m.merges = make(map[uint64]merge, len(pairs))
	for rank, p := range pairs {
		a, okA := m.vocab[p[0]]
		b, okB := m.vocab[p[1]]
		if !okA || !okB {
			missing := p[0]
			if okA {
				missing = p[1]
			}
			return fmt.Errorf("%s[%d]: token %q is not in the vocabulary", path, rank, missing)
		}
		// The right token's continuing-subword prefix is dropped in the
		// merged token.
		if len(p[1]) < len(m.prefix) || !utf8.ValidString(p[1][len(m.prefix):]) {
			return fmt.Errorf("%s[%d]: cannot drop continuing_subword_prefix %q from token %q", path, rank, m.prefix, p[1])
		}
		merged := p[0] + p[1][len(m.prefix):]
		id, ok := m.vocab[merged]
		if !ok {
			return fmt.Errorf("%s[%d]: merged token %q is not in the vocabulary", path, rank, merged)
		}
		if rank > math.MaxInt32 {
			return fmt.Errorf("%s: too many merges", path)
		}
		m.merges[pairKey(a, b)] = merge{rank: int32(rank), newID: id}
	}
	return nil
}
