package main

import (
	"strings"
	"testing"
)

// TestBackendFlag: --backend is checked before anything runs; on a machine
// without a usable GPU, cuda is refused with the reason and auto falls back
// to the CPU.
func TestBackendFlag(t *testing.T) {
	gpu := cudaUsable() == nil
	tests := []struct {
		name    string
		backend string
		wantErr string
		skip    bool
	}{
		{"unknown", "tpu", "--backend \"tpu\": want auto, cpu or cuda", false},
		{"cuda without a GPU", "cuda", "--backend cuda:", gpu},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.skip {
				t.Skip("this machine has a usable GPU")
			}
			_, _, err := runCLI(t, "run", "--model", "synthetic:tiny", "--context", "64", "--backend", tc.backend, "--out", t.TempDir())
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
	t.Run("auto", func(t *testing.T) {
		var log strings.Builder
		got, err := resolveBackend(backendAuto, &log)
		if err != nil {
			t.Fatal(err)
		}
		want := ""
		if gpu {
			want = backendCUDA
		}
		if got != want {
			t.Fatalf("auto resolved to %q, want %q (%s)", got, want, log.String())
		}
		if !gpu && !strings.Contains(log.String(), "backend: cpu (no usable GPU") {
			t.Fatalf("auto did not say why it chose the CPU: %q", log.String())
		}
	})
}
