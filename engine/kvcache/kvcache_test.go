package kvcache

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/longctx/longctx/engine/attention"
)

const (
	testLayers  = 3
	testKVHeads = 2
	testHeadDim = 4
)

// tokenValues gives every (layer, head, position, element, k-or-v) a
// distinct value, so any mix-up in the layout shows.
func tokenValue(layer, head, pos, c int, isV bool) float32 {
	v := float32(layer*100000 + head*10000 + pos*10 + c)
	if isV {
		v = -v
	}
	return v
}

// rows returns k and v [n][kvHeads][headDim] for the given positions.
func rows(layer int, positions []int) (k, v []float32) {
	for _, p := range positions {
		for g := range testKVHeads {
			for c := range testHeadDim {
				k = append(k, tokenValue(layer, g, p, c, false))
				v = append(v, tokenValue(layer, g, p, c, true))
			}
		}
	}
	return k, v
}

func span(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

func newFilled(t *testing.T, positions []int) *Cache {
	t.Helper()
	c, err := New(testLayers, testKVHeads, testHeadDim)
	if err != nil {
		t.Fatal(err)
	}
	for l := range testLayers {
		k, v := rows(l, positions)
		if err := c.Append(l, k, v, positions); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// checkContents asserts that (layer, head) holds exactly the tokens at positions.
func checkContents(t *testing.T, c *Cache, layer, g int, positions []int) {
	t.Helper()
	w := c.View(layer)
	if !slices.Equal(w.Pos[g], positions) {
		t.Fatalf("layer %d head %d: positions %v, want %v", layer, g, w.Pos[g], positions)
	}
	if c.Len(layer, g) != len(positions) {
		t.Fatalf("layer %d head %d: Len %d, want %d", layer, g, c.Len(layer, g), len(positions))
	}
	for i, p := range positions {
		for ch := range testHeadDim {
			if got, want := w.K[g][i*testHeadDim+ch], tokenValue(layer, g, p, ch, false); got != want {
				t.Fatalf("layer %d head %d token %d: K[%d] = %v, want %v", layer, g, i, ch, got, want)
			}
			if got, want := w.V[g][i*testHeadDim+ch], tokenValue(layer, g, p, ch, true); got != want {
				t.Fatalf("layer %d head %d token %d: V[%d] = %v, want %v", layer, g, i, ch, got, want)
			}
		}
	}
}

func TestNewRejectsBadShape(t *testing.T) {
	for _, dims := range [][3]int{{0, 1, 1}, {1, 0, 1}, {1, 1, 0}, {-1, 2, 2}} {
		if _, err := New(dims[0], dims[1], dims[2]); err == nil {
			t.Errorf("New(%v) succeeded", dims)
		}
	}
}

func TestAppendLayoutAndPositions(t *testing.T) {
	c := newFilled(t, span(0, 5))
	// A second chunk continues the first.
	for l := range testLayers {
		k, v := rows(l, span(5, 8))
		if err := c.Append(l, k, v, span(5, 8)); err != nil {
			t.Fatal(err)
		}
	}
	for l := range testLayers {
		for g := range testKVHeads {
			checkContents(t, c, l, g, span(0, 8))
		}
	}
	if c.NextPosition() != 8 {
		t.Fatalf("NextPosition = %d, want 8", c.NextPosition())
	}
	want := int64(testLayers*testKVHeads*8) * 2 * testHeadDim * 4
	if c.Bytes() != want {
		t.Fatalf("Bytes = %d, want %d", c.Bytes(), want)
	}
}

func TestAppendErrors(t *testing.T) {
	tests := []struct {
		name      string
		layer     int
		positions []int
		kLen      int
		want      string
	}{
		{"layer out of range", testLayers, []int{5}, -1, "out of range"},
		{"negative layer", -1, []int{5}, -1, "out of range"},
		{"short k", 0, []int{5, 6}, 3, "need 16"},
		{"repeated position", 0, []int{4}, -1, "does not follow position 4"},
		{"earlier position", 0, []int{2}, -1, "does not follow"},
		{"decreasing", 0, []int{7, 6}, -1, "does not follow position 7"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newFilled(t, span(0, 5))
			k, v := rows(0, tc.positions)
			if tc.kLen >= 0 {
				k = k[:tc.kLen]
			}
			err := c.Append(tc.layer, k, v, tc.positions)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Append = %v, want error containing %q", err, tc.want)
			}
			for l := range testLayers {
				for g := range testKVHeads {
					checkContents(t, c, l, g, span(0, 5))
				}
			}
		})
	}
}

func TestViewCannotWriteIntoCache(t *testing.T) {
	c := newFilled(t, span(0, 3))
	c.Reserve(10) // spare capacity an unguarded append would write into
	w := c.View(0)
	_ = append(w.K[0], 99)
	_ = append(w.Pos[0], 99)
	k, v := rows(0, []int{3})
	if err := c.Append(0, k, v, []int{3}); err != nil {
		t.Fatal(err)
	}
	checkContents(t, c, 0, 0, span(0, 4))
}

func TestReserveAvoidsReallocation(t *testing.T) {
	c := newFilled(t, span(0, 4))
	c.Reserve(6)
	before := &c.View(1).K[1][0]
	alloc := c.AllocatedBytes()
	if want := int64(testLayers*testKVHeads*10) * 2 * testHeadDim * 4; alloc < want {
		t.Fatalf("AllocatedBytes after Reserve(6) on 4 tokens = %d, want >= %d", alloc, want)
	}
	for l := range testLayers {
		for p := 4; p < 10; p++ {
			k, v := rows(l, []int{p})
			if err := c.Append(l, k, v, []int{p}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if &c.View(1).K[1][0] != before || c.AllocatedBytes() != alloc {
		t.Fatal("appends within the reserved room reallocated")
	}
	checkContents(t, c, 1, 1, span(0, 10))
}

func TestCompact(t *testing.T) {
	const n = 10
	c := newFilled(t, span(0, n))
	old := c.View(1)
	oldK := slices.Clone(old.K[0])
	keep := [][]int{{0, 1, 4, 9}, {2, 3, 5, 6, 7, 8}}
	bytesBefore := c.Bytes()
	if err := c.Compact(1, keep); err != nil {
		t.Fatal(err)
	}

	// Kept tokens, with their original positions, in order.
	checkContents(t, c, 1, 0, []int{0, 1, 4, 9})
	checkContents(t, c, 1, 1, []int{2, 3, 5, 6, 7, 8})
	// Other layers untouched.
	for _, l := range []int{0, 2} {
		for g := range testKVHeads {
			checkContents(t, c, l, g, span(0, n))
		}
	}
	// Bytes shrink by exactly the removed fraction; storage is exactly the kept size.
	removed := int64((n - 4) + (n - 6))
	if want := bytesBefore - removed*TokenBytes(testHeadDim, Float32Bytes); c.Bytes() != want {
		t.Fatalf("Bytes after compaction = %d, want %d", c.Bytes(), want)
	}
	for g, h := range c.heads[1] {
		if cap(h.k) != len(h.k) || cap(h.v) != len(h.v) || cap(h.pos) != len(h.pos) {
			t.Fatalf("head %d: capacity %d/%d/%d after compaction, want exactly the kept %d/%d/%d", g, cap(h.k), cap(h.v), cap(h.pos), len(h.k), len(h.v), len(h.pos))
		}
	}
	// The old view still reads the old data: compaction copied, it did not shuffle in place.
	if !slices.Equal(old.K[0], oldK) {
		t.Fatal("compaction modified the storage of an earlier view")
	}
	// New tokens continue at the original length.
	if c.NextPosition() != n {
		t.Fatalf("NextPosition after compaction = %d, want %d", c.NextPosition(), n)
	}
	k, v := rows(1, []int{9})
	if err := c.Append(1, k, v, []int{9}); err == nil {
		t.Fatal("appending at an already used position after compaction succeeded")
	}
	k, v = rows(1, []int{n})
	if err := c.Append(1, k, v, []int{n}); err != nil {
		t.Fatal(err)
	}
	checkContents(t, c, 1, 0, []int{0, 1, 4, 9, n})
	checkContents(t, c, 1, 1, []int{2, 3, 5, 6, 7, 8, n})
	if c.NextPosition() != n+1 {
		t.Fatalf("NextPosition = %d, want %d", c.NextPosition(), n+1)
	}
}

func TestCompactToNothingAndEverything(t *testing.T) {
	c := newFilled(t, span(0, 6))
	if err := c.Compact(0, [][]int{{}, span(0, 6)}); err != nil {
		t.Fatal(err)
	}
	checkContents(t, c, 0, 0, nil)
	checkContents(t, c, 0, 1, span(0, 6))
	if c.NextPosition() != 6 {
		t.Fatalf("NextPosition = %d, want 6", c.NextPosition())
	}
}

func TestCompactErrors(t *testing.T) {
	tests := []struct {
		name  string
		layer int
		keep  [][]int
		want  string
	}{
		{"layer out of range", testLayers, [][]int{{0}, {0}}, "out of range"},
		{"too few lists", 0, [][]int{{0}}, "one per KV head"},
		{"too many lists", 0, [][]int{{0}, {0}, {0}}, "one per KV head"},
		{"index too large", 0, [][]int{{0, 6}, {0}}, "index 6 (at 1) out of range [0,6)"},
		{"negative index", 0, [][]int{{0}, {-1}}, "head 1: index -1"},
		{"unsorted", 0, [][]int{{0, 3, 2}, {0}}, "strictly increasing"},
		{"duplicate", 0, [][]int{{0}, {1, 1}}, "strictly increasing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newFilled(t, span(0, 6))
			err := c.Compact(tc.layer, tc.keep)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Compact = %v, want error containing %q", err, tc.want)
			}
			for l := range testLayers {
				for g := range testKVHeads {
					checkContents(t, c, l, g, span(0, 6))
				}
			}
		})
	}
}

// Attention over a compacted cache must equal attention over a cache that
// only ever received the kept tokens, at their original positions.
func TestAttentionOverCompactedCacheEqualsDirectCache(t *testing.T) {
	const (
		kvHeads, heads, d = 2, 4, 8
		n                 = 24
	)
	rng := rand.New(rand.NewPCG(7, 7))
	keys := make([]float32, n*kvHeads*d)
	values := make([]float32, n*kvHeads*d)
	for i := range keys {
		keys[i] = float32(rng.NormFloat64())
		values[i] = float32(rng.NormFloat64())
	}
	keep := [][]int{{0, 1, 2, 9, 15, 22, 23}, {0, 5, 6, 7, 8, 20, 21, 23}}

	compacted, err := New(1, kvHeads, d)
	if err != nil {
		t.Fatal(err)
	}
	if err := compacted.Append(0, keys, values, span(0, n)); err != nil {
		t.Fatal(err)
	}
	if err := compacted.Compact(0, keep); err != nil {
		t.Fatal(err)
	}

	// The direct cache gets each head's kept tokens through its own 1-head cache.
	direct := make([]*Cache, kvHeads)
	for g := range kvHeads {
		direct[g], err = New(1, 1, d)
		if err != nil {
			t.Fatal(err)
		}
		var k, v []float32
		for _, j := range keep[g] {
			off := (j*kvHeads + g) * d
			k = append(k, keys[off:off+d]...)
			v = append(v, values[off:off+d]...)
		}
		if err := direct[g].Append(0, k, v, keep[g]); err != nil {
			t.Fatal(err)
		}
	}

	for _, window := range []int{0, 6} {
		q := make([]float32, 2*heads*d)
		for i := range q {
			q[i] = float32(rng.NormFloat64())
		}
		run := func(w View) []float32 {
			p := &attention.Problem{
				NumHeads: heads, NumKVHeads: kvHeads, HeadDim: d,
				Scale: float32(1 / math.Sqrt(d)),
				Q:     q, QPos: []int{22, 24},
				K: w.K, V: w.V, KPos: w.Pos,
				SlidingWindow: window,
				Out:           make([]float32, len(q)),
			}
			if err := (attention.Eager{}).Attend(context.Background(), p); err != nil {
				t.Fatal(err)
			}
			return p.Out
		}
		var dw View
		for g := range kvHeads {
			v := direct[g].View(0)
			dw.K, dw.V, dw.Pos = append(dw.K, v.K[0]), append(dw.V, v.V[0]), append(dw.Pos, v.Pos[0])
		}
		got, want := run(compacted.View(0)), run(dw)
		if !slices.Equal(got, want) {
			t.Fatalf("window %d: attention over compacted cache differs from the directly built one", window)
		}
	}
}
