package gpu

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/longctx/longctx/engine/cuda"
	"github.com/longctx/longctx/engine/kvpolicy"
	"github.com/longctx/longctx/engine/model"
)

// fakeMemory hands out addresses and fails like the driver when its
// capacity is exceeded.
type fakeMemory struct {
	next, used, capacity uint64
	freed                int
}

func (f *fakeMemory) MemAlloc(n uint64) (cuda.DevicePtr, error) {
	if f.used+n > f.capacity {
		return 0, &cuda.Error{Func: "cuMemAlloc", Code: 2, Name: "CUDA_ERROR_OUT_OF_MEMORY", Text: "out of memory"}
	}
	f.next += 1 << 20
	f.used += n
	return cuda.DevicePtr(f.next), nil
}

func (f *fakeMemory) MemFree(cuda.DevicePtr) error { f.freed++; return nil }

func TestAllocatorAccounting(t *testing.T) {
	tests := []struct {
		name     string
		limit    int64
		capacity uint64
		sizes    []int64
		wantOOM  int // index of the allocation that must fail, -1 none
	}{
		{"fits", 0, 1 << 30, []int64{100, 200, 300}, -1},
		{"over the limit", 500, 1 << 30, []int64{100, 200, 300}, 2},
		{"device full", 0, 250, []int64{100, 200}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mem := &fakeMemory{capacity: tc.capacity}
			a := NewAllocator(mem, tc.limit)
			var total int64
			for i, n := range tc.sizes {
				_, err := a.Alloc(KV, n, "test buffer")
				if i == tc.wantOOM {
					if !errors.Is(err, model.ErrOutOfMemory) {
						t.Fatalf("allocation %d: %v, want ErrOutOfMemory", i, err)
					}
					if !strings.Contains(err.Error(), "test buffer") {
						t.Errorf("error %q does not name the buffer", err)
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				total += n
			}
			u := a.Usage()
			if u.Total != total || u.ByCategory[KV] != total || u.Peak != total {
				t.Fatalf("usage %+v, want total %d", u, total)
			}
			if err := a.FreeAll(); err != nil {
				t.Fatal(err)
			}
			if u := a.Usage(); u.Total != 0 || u.Peak != total {
				t.Fatalf("after FreeAll: %+v", u)
			}
		})
	}
}

func TestAllocatorFreeUnknown(t *testing.T) {
	a := NewAllocator(&fakeMemory{capacity: 1 << 20}, 0)
	if err := a.Free(12345); err == nil {
		t.Fatal("freeing a pointer never allocated succeeded")
	}
	if err := a.Free(0); err != nil {
		t.Fatal(err)
	}
}

// TestKeptCountMatchesSelect: the engine sizes compacted buffers with
// keptCount; it must be exactly what kvpolicy.Select keeps.
func TestKeptCountMatchesSelect(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		n := rng.IntN(60)
		target, sink, window := rng.IntN(n+2), rng.IntN(8), rng.IntN(8)
		scores := make([]float32, n)
		for i := range scores {
			scores[i] = float32(rng.IntN(5))
		}
		keep, err := kvpolicy.Select(scores, target, sink, window)
		if err != nil {
			t.Fatal(err)
		}
		if got := keptCount(n, target, sink, window); got != len(keep) {
			t.Fatalf("n %d target %d sink %d window %d: keptCount %d, Select keeps %d", n, target, sink, window, got, len(keep))
		}
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{512: "512 B", 2048: "2.00 KiB", 24 << 30: "24.00 GiB", 3 << 40: "3.00 TiB"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
