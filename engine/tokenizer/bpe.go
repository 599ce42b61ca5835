package tokenizer

import (
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"
)

// merge is what a BPE merge rule produces: its priority (lower merges
// first) and the id of the merged token.
type merge struct {
	rank  int32
	newID int32
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// bpe is HF's BPE model without dropout.
type bpe struct {
	vocab        map[string]int32
	vocabR       map[int32]string
	merges       map[uint64]merge
	unkToken     string
	hasUnk       bool
	byteFallback bool
	fuseUnk      bool
	ignoreMerges bool
	prefix       string // continuing_subword_prefix
	suffix       string // end_of_word_suffix
	byteIDs      [256]int32
	cache        *wordCache
}

// tokenize appends the ids of one pre-token to ids.
func (m *bpe) tokenize(w string, ids []int) ([]int, error) {
	if w == "" {
		return ids, nil
	}
	if m.ignoreMerges {
		if id, ok := m.vocab[w]; ok {
			return append(ids, int(id)), nil
		}
	}
	if cached, ok := m.cache.get(w); ok {
		for _, id := range cached {
			ids = append(ids, int(id))
		}
		return ids, nil
	}
	word, err := m.mergeWord(w)
	if err != nil {
		return nil, err
	}
	m.cache.put(w, word)
	for _, id := range word {
		ids = append(ids, int(id))
	}
	return ids, nil
}

// symbol is one token of a word being merged, in a doubly linked list over
// the word's initial characters; a merged-away symbol has gone set.
type symbol struct {
	id         int32
	prev, next int32
	gone       bool
}

// mergeWord splits w into characters (with byte fallback and unknown-token
// handling) and applies the merges, lowest rank first and leftmost first
// among equal ranks, like HF's Word::merge_all.
func (m *bpe) mergeWord(w string) ([]int32, error) {
	syms := make([]symbol, 0, len(w))
	add := func(id int32) {
		n := int32(len(syms))
		syms = append(syms, symbol{id: id, prev: n - 1, next: n + 1})
	}
	unkID, unkPending := int32(0), false
	for i := 0; i < len(w); {
		_, size := utf8.DecodeRuneInString(w[i:])
		s := w[i : i+size]
		if i > 0 && m.prefix != "" {
			s = m.prefix + s
		}
		i += size
		if i == len(w) && m.suffix != "" {
			s += m.suffix
		}
		if id, ok := m.vocab[s]; ok {
			if unkPending {
				add(unkID)
				unkPending = false
			}
			add(id)
			continue
		}
		if m.byteFallback && m.hasAllBytes(s) {
			// HF leaves a pending unknown token in place here, so it lands
			// after these bytes.
			for j := 0; j < len(s); j++ {
				add(m.byteIDs[s[j]])
			}
			continue
		}
		if !m.hasUnk {
			continue // without an unknown token the character is dropped
		}
		id, ok := m.vocab[m.unkToken]
		if !ok {
			return nil, fmt.Errorf("unk_token %q is not in the model vocabulary", m.unkToken)
		}
		if unkPending && !m.fuseUnk {
			add(unkID)
		}
		unkID, unkPending = id, true
	}
	if unkPending {
		add(unkID)
	}
	if len(syms) == 0 {
		return nil, nil
	}
	syms[len(syms)-1].next = -1

	q := make(mergeQueue, 0, len(syms))
	for i := 0; i+1 < len(syms); i++ {
		if mg, ok := m.merges[pairKey(syms[i].id, syms[i+1].id)]; ok {
			q = append(q, mergeCandidate{pos: int32(i), merge: mg})
		}
	}
	q.init()
	for len(q) > 0 {
		top := q.pop()
		cur := &syms[top.pos]
		if cur.gone || cur.next < 0 {
			continue
		}
		right := syms[cur.next]
		// Skip entries made stale by an earlier merge: the pair at this
		// position must still be the one the entry was queued for.
		if mg, ok := m.merges[pairKey(cur.id, right.id)]; !ok || mg.newID != top.newID {
			continue
		}
		cur.id = top.newID
		syms[cur.next].gone = true
		cur.next = right.next
		if right.next >= 0 {
			syms[right.next].prev = top.pos
		}
		if cur.prev >= 0 {
			if mg, ok := m.merges[pairKey(syms[cur.prev].id, cur.id)]; ok {
				q.push(mergeCandidate{pos: cur.prev, merge: mg})
			}
		}
		if cur.next >= 0 {
			if mg, ok := m.merges[pairKey(cur.id, syms[cur.next].id)]; ok {
				q.push(mergeCandidate{pos: top.pos, merge: mg})
			}
		}
	}
	out := make([]int32, 0, len(syms))
	for i := int32(0); i >= 0; i = syms[i].next {
		out = append(out, syms[i].id)
	}
	return out, nil
}

// hasAllBytes reports whether every byte of s has a <0xNN> token.
func (m *bpe) hasAllBytes(s string) bool {
	for i := 0; i < len(s); i++ {
		if m.byteIDs[s[i]] < 0 {
			return false
		}
	}
	return true
}

type mergeCandidate struct {
	pos int32
	merge
}

// mergeQueue is a binary min-heap on (rank, position), written out rather
// than through container/heap to avoid boxing every entry.
type mergeQueue []mergeCandidate

func (q mergeQueue) less(i, j int) bool {
	if q[i].rank != q[j].rank {
		return q[i].rank < q[j].rank
	}
	return q[i].pos < q[j].pos
}

func (q mergeQueue) init() {
	for i := len(q)/2 - 1; i >= 0; i-- {
		q.down(i)
	}
}

func (q *mergeQueue) push(c mergeCandidate) {
	*q = append(*q, c)
	h := *q
	for i := len(h) - 1; i > 0; {
		parent := (i - 1) / 2
		if !h.less(i, parent) {
			break
		}
		h[i], h[parent] = h[parent], h[i]
		i = parent
	}
}

func (q *mergeQueue) pop() mergeCandidate {
	h := *q
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	*q = h[:last]
	q.down(0)
	return top
}

func (q mergeQueue) down(i int) {
	for {
		smallest := i
		if l := 2*i + 1; l < len(q) && q.less(l, smallest) {
			smallest = l
		}
		if r := 2*i + 2; r < len(q) && q.less(r, smallest) {
			smallest = r
		}
		if smallest == i {
			return
		}
		q[i], q[smallest] = q[smallest], q[i]
		i = smallest
	}
}

// wordCache remembers the merged ids of recent words; prompts repeat words
// a lot. It forgets everything when full, which keeps it bounded without
// bookkeeping.
type wordCache struct {
	mu      sync.Mutex
	entries map[string][]int32
	limit   int
}

const (
	wordCacheLimit   = 1 << 16
	maxCachedWordLen = 256
)

func newWordCache(limit int) *wordCache {
	return &wordCache{entries: make(map[string][]int32), limit: limit}
}

func (c *wordCache) get(w string) ([]int32, bool) {
	c.mu.Lock()
	ids, ok := c.entries[w]
	c.mu.Unlock()
	return ids, ok
}

func (c *wordCache) clear() {
	c.mu.Lock()
	clear(c.entries)
	c.mu.Unlock()
}

func (c *wordCache) put(w string, ids []int32) {
	if len(w) > maxCachedWordLen {
		return
	}
	c.mu.Lock()
	if len(c.entries) >= c.limit {
		clear(c.entries)
	}
	// Clone: w may be a slice of a long prompt that must not stay alive.
	c.entries[strings.Clone(w)] = ids
	c.mu.Unlock()
}
