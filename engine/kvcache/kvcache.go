// Package kvcache stores the keys and values of one sequence, per layer and
// per KV head, with the absolute position of every cached token.
//
// Heads are stored separately because KV compression evicts tokens per
// (layer, head): after Compact the heads of a layer may hold different
// numbers of tokens, the kept tokens keep their original positions, and
// the removed ones really release their memory. Positions of new tokens
// continue from the sequence's original length, not from the number of
// tokens still stored.
package kvcache

import (
	"fmt"
)

// Float32Bytes is the size of an element in this cache, which stores fp32.
const Float32Bytes = 4

// TokenBytes is what one cached token costs in one KV head: its key and its
// value of headDim elements of elemBytes each. Caches of other element
// types (a bf16 GPU cache: 2) use it to report their size on the same terms.
func TokenBytes(headDim, elemBytes int) int64 {
	return 2 * int64(headDim) * int64(elemBytes)
}

// Cache is the KV cache of one sequence. It is not safe for concurrent
// mutation; concurrent reads through View are fine.
type Cache struct {
	layers, kvHeads, headDim int
	heads                    [][]head // [layer][kv head]
	// last[layer] is the largest position appended to that layer, or -1.
	last []int
	// next is one past the largest position appended to any layer.
	next int
}

type head struct {
	k, v []float32 // [len(pos)][headDim]
	pos  []int
}

// New returns an empty cache.
func New(layers, kvHeads, headDim int) (*Cache, error) {
	if layers <= 0 || kvHeads <= 0 || headDim <= 0 {
		return nil, fmt.Errorf("kvcache: layers %d, kv heads %d, head dim %d must be positive", layers, kvHeads, headDim)
	}
	c := &Cache{layers: layers, kvHeads: kvHeads, headDim: headDim, heads: make([][]head, layers), last: make([]int, layers)}
	for l := range c.heads {
		c.heads[l] = make([]head, kvHeads)
		c.last[l] = -1
	}
	return c, nil
}

// Layers returns the number of layers.
func (c *Cache) Layers() int { return c.layers }

// KVHeads returns the number of KV heads per layer.
func (c *Cache) KVHeads() int { return c.kvHeads }

// HeadDim returns the number of elements in one key or value.
func (c *Cache) HeadDim() int { return c.headDim }

// NextPosition is the position the next token takes: one past the largest
// position ever appended, whatever has been evicted since.
func (c *Cache) NextPosition() int { return c.next }

// Len returns the number of tokens stored for one (layer, KV head).
func (c *Cache) Len(layer, kvHead int) int { return len(c.heads[layer][kvHead].pos) }

// Tokens returns the number of (layer, KV head, token) entries stored.
func (c *Cache) Tokens() int64 {
	var n int64
	for _, hs := range c.heads {
		for _, h := range hs {
			n += int64(len(h.pos))
		}
	}
	return n
}

// Bytes returns the live bytes of keys and values: the stored tokens, not
// the spare capacity.
func (c *Cache) Bytes() int64 { return c.Tokens() * TokenBytes(c.headDim, Float32Bytes) }

// AllocatedBytes returns the bytes of key and value storage held, spare
// capacity included: what the cache costs in RAM.
func (c *Cache) AllocatedBytes() int64 {
	var n int64
	for _, hs := range c.heads {
		for _, h := range hs {
			n += int64(cap(h.k)+cap(h.v)) * Float32Bytes
		}
	}
	return n
}

// Reserve makes room for n more tokens in every (layer, head) so that the
// appends of a generation of known length never reallocate (a growing
// slice briefly holds two copies and overshoots by up to 2x).
func (c *Cache) Reserve(n int) {
	if n <= 0 {
		return
	}
	d := c.headDim
	for l := range c.heads {
		for g := range c.heads[l] {
			h := &c.heads[l][g]
			if cap(h.pos)-len(h.pos) >= n {
				continue
			}
			size := len(h.pos) + n
			k := make([]float32, len(h.k), size*d)
			copy(k, h.k)
			v := make([]float32, len(h.v), size*d)
			copy(v, h.v)
			pos := make([]int, len(h.pos), size)
			copy(pos, h.pos)
			*h = head{k: k, v: v, pos: pos}
		}
	}
}

// Append adds n = len(positions) tokens to a layer. k and v are
// [n][kvHeads][headDim], the layout of the k and v projections' output.
// Positions must increase and follow every position already appended to
// the layer.
func (c *Cache) Append(layer int, k, v []float32, positions []int) error {
	if layer < 0 || layer >= c.layers {
		return fmt.Errorf("kvcache: layer %d out of range [0,%d)", layer, c.layers)
	}
	n, d := len(positions), c.headDim
	row := c.kvHeads * d
	if len(k) != n*row || len(v) != n*row {
		return fmt.Errorf("kvcache: layer %d: %d positions need %d key and value elements, got %d and %d", layer, n, n*row, len(k), len(v))
	}
	prev := c.last[layer]
	for i, p := range positions {
		if p <= prev {
			return fmt.Errorf("kvcache: layer %d: position %d (index %d) does not follow position %d", layer, p, i, prev)
		}
		prev = p
	}
	if n == 0 {
		return nil
	}
	for g := range c.heads[layer] {
		h := &c.heads[layer][g]
		for i := range n {
			off := i*row + g*d
			h.k = append(h.k, k[off:off+d]...)
			h.v = append(h.v, v[off:off+d]...)
		}
		h.pos = append(h.pos, positions...)
	}
	c.last[layer] = prev
	c.next = max(c.next, prev+1)
	return nil
}

// View is one layer's cache as attention reads it: per KV head, keys and
// values [Len][HeadDim] and positions. The slices alias the cache: they are
// valid until the next Append, Reserve or Compact of the layer, and must
// not be modified.
type View struct {
	K, V [][]float32
	Pos  [][]int
}

// View returns a layer's contents without copying them.
func (c *Cache) View(layer int) View {
	hs := c.heads[layer]
	w := View{K: make([][]float32, len(hs)), V: make([][]float32, len(hs)), Pos: make([][]int, len(hs))}
	for g, h := range hs {
		// Full slice expressions: an append by the reader cannot write into the cache.
		w.K[g] = h.k[:len(h.k):len(h.k)]
		w.V[g] = h.v[:len(h.v):len(h.v)]
		w.Pos[g] = h.pos[:len(h.pos):len(h.pos)]
	}
	return w
}

// Compact keeps, in each KV head g of a layer, only the tokens at indices
// keep[g] (indices into the head's current contents, strictly increasing).
// Each head is reallocated to exactly its kept size, so the evicted tokens'
// memory is released once no View of the old contents survives. Kept
// tokens keep their positions; NextPosition is unchanged. On error the
// cache is unchanged.
func (c *Cache) Compact(layer int, keep [][]int) error {
	if layer < 0 || layer >= c.layers {
		return fmt.Errorf("kvcache: compact: layer %d out of range [0,%d)", layer, c.layers)
	}
	if len(keep) != c.kvHeads {
		return fmt.Errorf("kvcache: compact layer %d: %d index lists, want one per KV head (%d)", layer, len(keep), c.kvHeads)
	}
	for g, idx := range keep {
		n := len(c.heads[layer][g].pos)
		prev := -1
		for i, j := range idx {
			switch {
			case j < 0 || j >= n:
				return fmt.Errorf("kvcache: compact layer %d head %d: index %d (at %d) out of range [0,%d)", layer, g, j, i, n)
			case j <= prev:
				return fmt.Errorf("kvcache: compact layer %d head %d: index %d (at %d) after %d: indices must be strictly increasing", layer, g, j, i, prev)
			}
			prev = j
		}
	}
	d := c.headDim
	for g, idx := range keep {
		old := c.heads[layer][g]
		h := head{k: make([]float32, len(idx)*d), v: make([]float32, len(idx)*d), pos: make([]int, len(idx))}
		for i, j := range idx {
			copy(h.k[i*d:(i+1)*d], old.k[j*d:(j+1)*d])
			copy(h.v[i*d:(i+1)*d], old.v[j*d:(j+1)*d])
			h.pos[i] = old.pos[j]
		}
		c.heads[layer][g] = h
	}
	return nil
}
