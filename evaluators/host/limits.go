package host

import (
	"errors"
	"sync"

	"github.com/tetratelabs/wazero/experimental"
)

// errWriterFull is what a capped writer returns to the module past its cap;
// the module sees a failed write (EIO) and the run is stopped.
var errWriterFull = errors.New("output cap reached")

// cappedBuffer collects a module's output up to limit bytes. The first write
// past the limit calls onFull (which stops the run) and fails, so a module
// printing without end cannot make the host buffer it.
type cappedBuffer struct {
	mu     sync.Mutex
	buf    []byte
	limit  int
	full   bool
	onFull func()
}

func (w *cappedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.full {
		return 0, errWriterFull
	}
	if len(w.buf)+len(p) > w.limit {
		w.full = true
		w.buf = append(w.buf, p[:w.limit-len(w.buf)]...)
		if w.onFull != nil {
			w.onFull()
		}
		return 0, errWriterFull
	}
	w.buf = append(w.buf, p...)
	return len(p), nil
}

func (w *cappedBuffer) bytes() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf
}

func (w *cappedBuffer) overflowed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.full
}

// memoryCap is a wazero memory allocator that refuses to grow a module's
// linear memory past limit bytes and remembers that it did. The module sees
// memory.grow fail (-1), as with a declared maximum; the host can then tell a
// memory-cap death from any other crash, whatever language the module is in.
type memoryCap struct {
	limit uint64

	mu      sync.Mutex
	refused uint64 // the largest size refused, 0 if none
}

func (m *memoryCap) Allocate(capacity, _ uint64) experimental.LinearMemory {
	return &cappedMemory{owner: m, initialCap: min(capacity, m.limit)}
}

func (m *memoryCap) refusedSize() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.refused
}

type cappedMemory struct {
	owner      *memoryCap
	initialCap uint64
	buf        []byte
}

func (c *cappedMemory) Reallocate(size uint64) []byte {
	if size > c.owner.limit {
		c.owner.mu.Lock()
		c.owner.refused = max(c.owner.refused, size)
		c.owner.mu.Unlock()
		return nil
	}
	if size <= uint64(cap(c.buf)) {
		// Bytes past the old length were zeroed by make and never written:
		// a module cannot address memory beyond its current size.
		c.buf = c.buf[:size]
		return c.buf
	}
	// Grow geometrically, as append would, but never past the cap.
	newCap := max(size, c.initialCap, 2*uint64(cap(c.buf)))
	newCap = min(newCap, c.owner.limit)
	next := make([]byte, size, newCap)
	copy(next, c.buf)
	c.buf = next
	return next
}

func (c *cappedMemory) Free() { c.buf = nil }
