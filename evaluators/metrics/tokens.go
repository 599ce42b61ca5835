package metrics

import (
	"bytes"
	"math/bits"
)

// Inside a WASM module every allocation, map access and memequal call is
// several times dearer than natively, and the built-ins score tens of
// thousands of answers per run. So a Scorer keeps its token buffers from one
// call to the next, tokens carry a 64-bit hash that comparisons check before
// the bytes, and plain-ASCII text (nearly all model output) is tokenised in
// one pass that matches the general, Python-faithful path.

// Scorer computes the metrics of this package, reusing its buffers (and
// remembering Porter stems) across calls. A zero Scorer is not ready; use
// NewScorer. It is not safe for concurrent use: make one per goroutine.
type Scorer struct {
	pred, gold, stemmed tokenList
	index               ngramIndex
	rows                []int32
	stems               stemCache
	lowerA, lowerB      []byte
}

// NewScorer returns a Scorer.
func NewScorer() *Scorer {
	return &Scorer{}
}

// tokenList is a token sequence stored back to back in one buffer: token i
// is text[bounds[i]:bounds[i+1]], with FNV-1a hash hash[i].
type tokenList struct {
	text   []byte
	bounds []int32
	hash   []uint64
}

func (l *tokenList) reset() {
	l.text = l.text[:0]
	l.bounds = append(l.bounds[:0], 0)
	l.hash = l.hash[:0]
}

func (l *tokenList) len() int { return len(l.hash) }

func (l *tokenList) tok(i int) []byte { return l.text[l.bounds[i]:l.bounds[i+1]] }

// open returns where a token being appended to text starts.
func (l *tokenList) open() int32 { return l.bounds[len(l.bounds)-1] }

// close ends the token that started at start, if it is not empty.
func (l *tokenList) close(start int32) {
	end := int32(len(l.text))
	if end == start {
		return
	}
	l.bounds = append(l.bounds, end)
	l.hash = append(l.hash, fnv1a(l.text[start:end]))
}

// drop removes the last token.
func (l *tokenList) drop() {
	n := len(l.hash) - 1
	l.text = l.text[:l.bounds[n]]
	l.bounds = l.bounds[:n+1]
	l.hash = l.hash[:n]
}

func (l *tokenList) addString(t string) {
	start := l.open()
	l.text = append(l.text, t...)
	l.close(start)
}

func (l *tokenList) strings() []string {
	out := make([]string, l.len())
	for i := range out {
		out[i] = string(l.tok(i))
	}
	return out
}

func (l *tokenList) same(i int, o *tokenList, j int) bool {
	return l.hash[i] == o.hash[j] && bytes.Equal(l.tok(i), o.tok(j))
}

func (l *tokenList) equal(o *tokenList) bool {
	return bytes.Equal(l.text, o.text) && l.len() == o.len() && equalInt32(l.bounds, o.bounds)
}

func (l *tokenList) is(word string) bool {
	return l.len() == 1 && string(l.text) == word
}

func equalInt32(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func fnv1a(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// ngramIndex maps the distinct n-grams of one token list to how often they
// occur and, for unigrams, to the bitmask of their positions (the first
// 64). It is an open-addressing table keyed by the n-gram hash, bytes
// compared on hash equality, so overlap counts and the LCS take O(n+m) table
// work instead of O(n·m) token comparisons.
type ngramIndex struct {
	slots []ngramSlot // a power of two long
	list  *tokenList
	n     int
	// gen marks the slots in use by the current build, so a build need
	// not clear the table (in WASM, clearing it cost more than using it).
	gen uint32
}

type ngramSlot struct {
	hash  uint64
	pos   uint64
	first int32 // where the n-gram first occurs
	count int32
	gen   uint32 // the slot is empty unless gen matches the index's
}

// ngramHash combines the hashes of tokens i..i+n-1.
func ngramHash(l *tokenList, i, n int) uint64 {
	h := l.hash[i]
	for k := 1; k < n; k++ {
		h = h*0x9e3779b97f4a7c15 ^ l.hash[i+k]
	}
	return h
}

func sameNgram(a *tokenList, i int, b *tokenList, j, n int) bool {
	for k := 0; k < n; k++ {
		if !a.same(i+k, b, j+k) {
			return false
		}
	}
	return true
}

// build indexes the n-grams of l.
func (x *ngramIndex) build(l *tokenList, n int) {
	count := l.len() - n + 1
	size := 16
	for size < 2*count {
		size *= 2
	}
	if cap(x.slots) < size {
		x.slots = make([]ngramSlot, size)
		x.gen = 0
	}
	x.slots = x.slots[:size]
	x.gen++
	if x.gen == 0 { // wrapped: no stale slot may look current
		clear(x.slots[:cap(x.slots)])
		x.gen = 1
	}
	x.list, x.n = l, n
	for j := 0; j < count; j++ {
		slot := x.find(l, j)
		if slot.gen != x.gen {
			*slot = ngramSlot{hash: ngramHash(l, j, n), first: int32(j), gen: x.gen}
		}
		slot.count++
		if j < 64 {
			slot.pos |= 1 << j
		}
	}
}

// find returns the slot of the n-gram of l at i: its own, or the empty one
// where it would go.
func (x *ngramIndex) find(l *tokenList, i int) *ngramSlot {
	h := ngramHash(l, i, x.n)
	mask := uint64(len(x.slots) - 1)
	for k := h & mask; ; k = (k + 1) & mask {
		slot := &x.slots[k]
		if slot.gen != x.gen || (slot.hash == h && sameNgram(x.list, int(slot.first), l, i, x.n)) {
			return slot
		}
	}
}

// overlap is the size of the multiset intersection of the n-grams of a and
// b: the sum over distinct n-grams of min(count in a, count in b).
func (s *Scorer) overlap(a, b *tokenList, n int) int {
	if a.len() < n || b.len() < n {
		return 0
	}
	x := &s.index
	x.build(b, n)
	return x.take(a)
}

// take counts the n-grams of a found in the index, each index entry at most
// as often as it occurs; it uses up the counts.
func (x *ngramIndex) take(a *tokenList) int {
	hits := 0
	for i := 0; i+x.n <= a.len(); i++ {
		if slot := x.find(a, i); slot.gen == x.gen && slot.count > 0 {
			slot.count--
			hits++
		}
	}
	return hits
}

// lcsLength is the length of the longest common subsequence of a and b.
// Up to 64 tokens in b it uses Hyyrö's bit-parallel algorithm, one word
// operation per token of a; past that, the dynamic programme.
func (s *Scorer) lcsLength(a, b *tokenList) int {
	m := b.len()
	if m == 0 || a.len() == 0 {
		return 0
	}
	if m > 64 {
		return s.lcsTable(a, b)
	}
	x := &s.index
	x.build(b, 1)
	return x.lcs(a)
}

// lcs runs Hyyrö's algorithm against a unigram index of at most 64 tokens.
func (x *ngramIndex) lcs(a *tokenList) int {
	m := x.list.len()
	v := ^uint64(0)
	for i := 0; i < a.len(); i++ {
		slot := x.find(a, i)
		if slot.gen != x.gen {
			continue // u would be 0, leaving v as it is
		}
		u := v & slot.pos
		v = (v + u) | (v - u)
	}
	low := ^uint64(0) >> (64 - m)
	return m - bits.OnesCount64(v&low)
}

// lcsTable is the classic dynamic programme over two rolling rows.
func (s *Scorer) lcsTable(a, b *tokenList) int {
	m := b.len()
	if cap(s.rows) < 2*(m+1) {
		s.rows = make([]int32, 2*(m+1))
	}
	prev, cur := s.rows[:m+1], s.rows[m+1:2*(m+1)]
	clear(prev)
	cur[0] = 0
	ah, bh := a.hash, b.hash
	for i := 0; i < a.len(); i++ {
		hi := ah[i]
		for j := 0; j < m; j++ {
			switch {
			case bh[j] == hi && a.same(i, b, j):
				cur[j+1] = prev[j] + 1
			case prev[j+1] >= cur[j]:
				cur[j+1] = prev[j+1]
			default:
				cur[j+1] = cur[j]
			}
		}
		prev, cur = cur, prev
	}
	return int(prev[m])
}
