package gpu

import (
	"errors"
	"fmt"
	"sync"

	"github.com/longctx/longctx/engine/cuda"
	"github.com/longctx/longctx/engine/model"
)

// Category is what an allocation holds, for the memory breakdown.
type Category int

// Allocation categories.
const (
	Weights Category = iota
	KV
	Activations
	Workspace
	numCategories
)

func (c Category) String() string {
	switch c {
	case Weights:
		return "weights"
	case KV:
		return "kv cache"
	case Activations:
		return "activations"
	case Workspace:
		return "workspace"
	}
	return fmt.Sprintf("Category(%d)", int(c))
}

// deviceMemory is the part of the driver the allocator needs; tests give a
// fake so the accounting is checked without a GPU.
type deviceMemory interface {
	MemAlloc(n uint64) (cuda.DevicePtr, error)
	MemFree(p cuda.DevicePtr) error
}

// Allocator is the engine's one way to get device memory: it counts every
// byte by category, keeps the high-water mark, and enforces a limit so a
// big card can emulate a smaller one (--mem-limit). Both an allocation over
// the limit and a CUDA out-of-memory wrap model.ErrOutOfMemory.
type Allocator struct {
	mem   deviceMemory
	limit int64

	mu    sync.Mutex
	used  [numCategories]int64
	total int64
	peak  int64
	live  map[cuda.DevicePtr]allocation
}

type allocation struct {
	cat  Category
	size int64
}

// NewAllocator returns an allocator over mem; limit ≤ 0 means no limit
// beyond the card's own memory.
func NewAllocator(mem deviceMemory, limit int64) *Allocator {
	return &Allocator{mem: mem, limit: limit, live: map[cuda.DevicePtr]allocation{}}
}

// Alloc returns n bytes of device memory for cat; what names the buffer in
// errors.
func (a *Allocator) Alloc(cat Category, n int64, what string) (cuda.DevicePtr, error) {
	if n <= 0 {
		return 0, fmt.Errorf("allocating %s: size %d", what, n)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.limit > 0 && a.total+n > a.limit {
		return 0, fmt.Errorf("%w: %s needs %s but %s of the %s limit is in use (%s)", model.ErrOutOfMemory,
			what, FormatBytes(n), FormatBytes(a.total), FormatBytes(a.limit), a.breakdownLocked())
	}
	p, err := a.mem.MemAlloc(uint64(n))
	if err != nil {
		if cuda.IsOutOfMemory(err) {
			return 0, fmt.Errorf("%w: %s needs %s with %s in use (%s): %v", model.ErrOutOfMemory,
				what, FormatBytes(n), FormatBytes(a.total), a.breakdownLocked(), err)
		}
		return 0, fmt.Errorf("allocating %s (%s): %w", what, FormatBytes(n), err)
	}
	a.live[p] = allocation{cat, n}
	a.used[cat] += n
	a.total += n
	a.peak = max(a.peak, a.total)
	return p, nil
}

// Free releases p; freeing 0 does nothing.
func (a *Allocator) Free(p cuda.DevicePtr) error {
	if p == 0 {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	al, ok := a.live[p]
	if !ok {
		return fmt.Errorf("freeing device pointer %#x that the allocator does not hold", uint64(p))
	}
	delete(a.live, p)
	a.used[al.cat] -= al.size
	a.total -= al.size
	if err := a.mem.MemFree(p); err != nil {
		return fmt.Errorf("freeing %s of %s: %w", FormatBytes(al.size), al.cat, err)
	}
	return nil
}

// FreeAll releases everything still allocated, joining the errors.
func (a *Allocator) FreeAll() error {
	a.mu.Lock()
	ptrs := make([]cuda.DevicePtr, 0, len(a.live))
	for p := range a.live {
		ptrs = append(ptrs, p)
	}
	a.mu.Unlock()
	var errs []error
	for _, p := range ptrs {
		errs = append(errs, a.Free(p))
	}
	return errors.Join(errs...)
}

// Usage is a snapshot of the allocator's counters.
type Usage struct {
	ByCategory [numCategories]int64
	Total      int64
	Peak       int64
	Limit      int64
}

// Usage returns the current counters.
func (a *Allocator) Usage() Usage {
	a.mu.Lock()
	defer a.mu.Unlock()
	return Usage{ByCategory: a.used, Total: a.total, Peak: a.peak, Limit: a.limit}
}

// ResetPeak starts a new high-water mark at the current total, so each
// request reports its own peak.
func (a *Allocator) ResetPeak() {
	a.mu.Lock()
	a.peak = a.total
	a.mu.Unlock()
}

func (a *Allocator) breakdownLocked() string {
	s := ""
	for c := range numCategories {
		if a.used[c] == 0 {
			continue
		}
		if s != "" {
			s += ", "
		}
		s += fmt.Sprintf("%s %s", c, FormatBytes(a.used[c]))
	}
	if s == "" {
		return "nothing allocated"
	}
	return s
}

// FormatBytes renders n in binary units with two decimals.
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.2f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
