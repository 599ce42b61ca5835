package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// addedToken is one entry of tokenizer.json's added_tokens.
type addedToken struct {
	content    string
	special    bool
	singleWord bool
	lstrip     bool
	rstrip     bool
	normalized bool
}

// addedVocab holds the tokens matched in the text before the model sees it
// (HF's AddedVocabulary): special tokens such as <|im_start|> and any other
// added words.
type addedVocab struct {
	byContent map[string]int
	byID      map[int]addedToken
	special   map[string]bool
	raw       *trie // tokens matched on the raw text (normalized: false)
	norm      *trie // tokens matched on the normalized text
}

// newAddedVocab registers tokens in order, one at a time, the way HF loads a
// tokenizer.json: a token already in the model vocabulary keeps its id there,
// any other one gets the next id after the model's vocabulary (HF does not
// read the ids written in the file). Tokens flagged normalized are matched
// in their normalized spelling.
func newAddedVocab(tokens []addedToken, model *bpe, n normalizer) (*addedVocab, error) {
	v := &addedVocab{
		byContent: make(map[string]int),
		byID:      make(map[int]addedToken),
		special:   make(map[string]bool),
	}
	modelSize := len(model.vocab)
	present := make(map[addedToken]bool)
	var specialList, plainList []addedToken
	maxID := -1
	for _, t := range tokens {
		if t.special && t.content != "" && !v.special[t.content] {
			specialList = append(specialList, t)
			v.special[t.content] = true
		}
		if t.content == "" || present[t] {
			continue
		}
		id, ok := v.byContent[t.content]
		if !ok {
			if mid, inModel := model.vocab[t.content]; inModel {
				id = int(mid)
			} else if maxID < 0 || (maxID < modelSize && modelSize > 0) {
				id = modelSize
			} else {
				id = maxID + 1
			}
		}
		if old, had := v.byID[id]; had {
			delete(present, old)
		}
		v.byContent[t.content] = id
		v.byID[id] = t
		present[t] = true
		maxID = max(maxID, id)
		if !v.special[t.content] {
			plainList = append(plainList, t)
		}
	}
	v.raw, v.norm = newTrie(), newTrie()
	for _, list := range [][]addedToken{specialList, plainList} {
		for _, t := range list {
			id := v.byContent[t.content]
			if !t.normalized {
				v.raw.insert(t.content, id)
				continue
			}
			content := t.content
			if n != nil {
				var err error
				if content, err = n.normalize(content); err != nil {
					return nil, err
				}
			}
			v.norm.insert(content, id)
		}
	}
	return v, nil
}

// segment is a piece of the input after added tokens are cut out: either an
// added token (id >= 0) or normalized text for the pre-tokenizer.
type segment struct {
	text  string
	id    int
	first bool // starts the input (see word.first)
}

// extract cuts text at the added tokens matched on the raw text, normalizes
// the pieces between them, and cuts those at the tokens matched on the
// normalized text. Empty pieces are dropped.
func (v *addedVocab) extract(text string, n normalizer) ([]segment, error) {
	var out []segment
	for _, m := range v.findMatches(text, v.raw, nil) {
		s := text[m.start:m.end]
		if m.id >= 0 {
			out = append(out, segment{text: s, id: m.id})
			continue
		}
		if n != nil {
			var err error
			if s, err = n.normalize(s); err != nil {
				return nil, err
			}
		}
		for _, nm := range v.findMatches(s, v.norm, nil) {
			if nm.end > nm.start {
				out = append(out, segment{text: s[nm.start:nm.end], id: nm.id, first: m.start == 0 && nm.start == 0})
			}
		}
	}
	return out, nil
}

// tokenMatch is a piece of a string found by findMatches; id is -1 for text
// between added tokens.
type tokenMatch struct {
	span
	id int
}

// findMatches covers s with the added tokens of t and the text between them,
// applying each token's single_word, lstrip and rstrip options like HF's
// AddedVocabulary::find_matches.
func (v *addedVocab) findMatches(s string, t *trie, out []tokenMatch) []tokenMatch {
	if s == "" || t.empty {
		return append(out, tokenMatch{span{0, len(s)}, -1})
	}
	startOffset := 0
	for pos := 0; pos < len(s); {
		id, end := t.longestAt(s, pos)
		if id < 0 {
			pos++
			continue
		}
		start, stop := pos, end
		pos = end
		tok := v.byID[id]
		if tok.singleWord {
			startSpace := start == 0 || !endsWithWordChar(s[:start])
			stopSpace := stop == len(s) || !startsWithWordChar(s[stop:])
			if !startSpace || !stopSpace {
				continue
			}
		}
		if tok.lstrip {
			start = max(trailingSpaceStart(s[:start]), startOffset)
		}
		if tok.rstrip {
			stop += leadingSpaceLen(s[stop:])
		}
		if startOffset < start {
			out = append(out, tokenMatch{span{startOffset, start}, -1})
		}
		out = append(out, tokenMatch{span{start, stop}, id})
		startOffset = stop
	}
	if startOffset != len(s) {
		out = append(out, tokenMatch{span{startOffset, len(s)}, -1})
	}
	return out
}

// isWordChar is the Unicode \w of Rust's regex crate.
func isWordChar(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) ||
		unicode.In(r, unicode.Nl, unicode.Other_Alphabetic, unicode.M, unicode.Pc, unicode.Join_Control)
}

func endsWithWordChar(s string) bool {
	r, _ := utf8.DecodeLastRuneInString(s)
	return s != "" && isWordChar(r)
}

func startsWithWordChar(s string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return s != "" && isWordChar(r)
}

func isWhiteSpace(r rune) bool { return unicode.Is(unicode.White_Space, r) }

// trailingSpaceStart returns where the whitespace at the end of s begins.
func trailingSpaceStart(s string) int {
	for len(s) > 0 {
		r, n := utf8.DecodeLastRuneInString(s)
		if !isWhiteSpace(r) {
			break
		}
		s = s[:len(s)-n]
	}
	return len(s)
}

// leadingSpaceLen returns the byte length of the whitespace s starts with.
func leadingSpaceLen(s string) int {
	n := 0
	for _, r := range s {
		if !isWhiteSpace(r) {
			break
		}
		n += utf8.RuneLen(r)
	}
	return n
}

// trie finds the longest added token starting at a position; scanning
// positions left to right gives aho-corasick's leftmost-longest matches.
type trie struct {
	root  [256]*trieNode
	empty bool
}

type trieNode struct {
	children map[byte]*trieNode
	id       int // -1 when no token ends here
}

func newTrie() *trie { return &trie{empty: true} }

// insert adds a pattern; the first pattern inserted for a string wins, and
// empty patterns are ignored (they could only produce empty pieces).
func (t *trie) insert(pattern string, id int) {
	if pattern == "" {
		return
	}
	t.empty = false
	node := t.root[pattern[0]]
	if node == nil {
		node = &trieNode{id: -1}
		t.root[pattern[0]] = node
	}
	for i := 1; i < len(pattern); i++ {
		next := node.children[pattern[i]]
		if next == nil {
			if node.children == nil {
				node.children = make(map[byte]*trieNode)
			}
			next = &trieNode{id: -1}
			node.children[pattern[i]] = next
		}
		node = next
	}
	if node.id < 0 {
		node.id = id
	}
}

// longestAt returns the id and end of the longest pattern starting at pos,
// or -1.
func (t *trie) longestAt(s string, pos int) (id, end int) {
	id = -1
	if t.empty {
		return id, pos
	}
	node := t.root[s[pos]]
	for i := pos + 1; node != nil; i++ {
		if node.id >= 0 {
			id, end = node.id, i
		}
		if i >= len(s) {
			break
		}
		node = node.children[s[i]]
	}
	return id, end
}
