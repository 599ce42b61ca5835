package main

import (
	"testing"

	"github.com/longctx/longctx/harness/sweep"
)

// TestDefaultSweeps: both embedded default sweeps parse and expand to the
// grid their comments describe.
func TestDefaultSweeps(t *testing.T) {
	tests := []struct {
		name    string
		spec    []byte
		backend string
		cells   int
	}{
		{"cpu", defaultSweep, "", 2 * 2 * 2 * 3 * 2},
		{"gpu", defaultSweepGPU, backendCUDA, 1 * 2 * 2 * 4 * 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := sweep.ParseSpec(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			cells, err := sweep.Expand(spec)
			if err != nil {
				t.Fatal(err)
			}
			if len(cells) != tc.cells {
				t.Fatalf("%d cells, want %d", len(cells), tc.cells)
			}
			for _, c := range cells {
				if c.Backend != tc.backend {
					t.Fatalf("cell %s has backend %q, want %q", c.ID(), c.Backend, tc.backend)
				}
			}
		})
	}
}
