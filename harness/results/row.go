// Package results is the run log of the benchmark harness: one Parquet file
// per run cell, one row per request, with the run configuration repeated on
// every row so that any set of files can be queried together in DuckDB.
//
// The schema is the Row struct. Changes to it are additive only: a column may
// be added (nullable, so older files read back as null), never renamed,
// retyped or removed. testdata/schema.txt pins the current schema.
package results

import (
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// Status values of Row.Status.
const (
	StatusOK    = "ok"
	StatusOOM   = "oom"
	StatusError = "error"
)

// Backend values of Row.Backend.
const (
	BackendCPU  = "cpu"
	BackendCUDA = "cuda"
)

// Row is one request of one run cell. Pointer fields are nullable columns:
// nil means "not measured here" (a GPU figure on the CPU backend, a timing
// of a request that ran out of memory), which SQL aggregates skip, unlike a
// zero.
type Row struct {
	// Run level: identical on every row of a cell.
	RunID          string    `parquet:"run_id"`
	CellID         string    `parquet:"cell_id"`
	Timestamp      time.Time `parquet:"timestamp,timestamp(microsecond:utc)"`
	HarnessVersion string    `parquet:"harness_version"`
	GitCommit      string    `parquet:"git_commit"`
	Model          string    `parquet:"model"`
	Family         string    `parquet:"family"`
	Synthetic      bool      `parquet:"synthetic"`
	Backend        string    `parquet:"backend"`
	DeviceName     string    `parquet:"device_name"`
	Driver         *string   `parquet:"driver,optional"`
	AttnPlugin     string    `parquet:"attn_plugin"`
	AttnVersion    string    `parquet:"attn_version"`
	AttnOptions    string    `parquet:"attn_options,json"`
	KVPlugin       string    `parquet:"kv_plugin"`
	KVVersion      string    `parquet:"kv_version"`
	KVOptions      string    `parquet:"kv_options,json"`
	KVRatio        *float64  `parquet:"kv_ratio,optional"`
	Task           string    `parquet:"task"`
	ContextTokens  int64     `parquet:"context_tokens"`
	BatchSize      int64     `parquet:"batch_size"`
	Seed           int64     `parquet:"seed"`
	RepeatIndex    int64     `parquet:"repeat_index"`
	Warmup         bool      `parquet:"warmup"`

	// Request level.
	// BatchIndex numbers the batches of one repeat of a cell: requests with
	// the same (cell_id, repeat_index, batch_index) ran together, which is
	// what a throughput query groups by.
	BatchIndex      int64              `parquet:"batch_index"`
	SampleID        string             `parquet:"sample_id"`
	Depth           *float64           `parquet:"depth,optional"`
	PromptTokens    int64              `parquet:"prompt_tokens"`
	OutputTokens    int64              `parquet:"output_tokens"`
	TTFTms          *float64           `parquet:"ttft_ms,optional"`
	TPOTms          *float64           `parquet:"tpot_ms,optional"`
	E2Ems           *float64           `parquet:"e2e_ms,optional"`
	PrefillTokS     *float64           `parquet:"prefill_tok_s,optional"`
	DecodeTokS      *float64           `parquet:"decode_tok_s,optional"`
	PeakDeviceBytes *int64             `parquet:"peak_device_bytes,optional"`
	PeakEngineBytes *int64             `parquet:"peak_engine_bytes,optional"`
	WeightsBytes    *int64             `parquet:"weights_bytes,optional"`
	KVBytesPrefill  *int64             `parquet:"kv_bytes_prefill,optional"`
	KVBytesEnd      *int64             `parquet:"kv_bytes_end,optional"`
	WorkspaceBytes  *int64             `parquet:"workspace_bytes,optional"`
	KVEvictedTokens *int64             `parquet:"kv_evicted_tokens,optional"`
	Status          string             `parquet:"status"`
	Error           *string            `parquet:"error,optional"`
	Prediction      string             `parquet:"prediction"`
	References      []string           `parquet:"references,list"`
	Scores          map[string]float64 `parquet:"scores"`
	// Added with the CUDA backend (schema changes are additive only).
	PrefillMS    *float64 `parquet:"prefill_ms,optional"`
	KVCompressMS *float64 `parquet:"kv_compress_ms,optional"`
	// Added with the CPU engine's bf16 numerics: the engine's arithmetic,
	// NumericsFP32 or NumericsBF16; NULL in older files and in rows of a
	// cell that failed before its model loaded.
	Numerics *string `parquet:"numerics,optional"`
}

// Numerics values of Row.Numerics.
const (
	NumericsFP32 = "fp32"
	NumericsBF16 = "bf16"
)

// Validate reports the first field of r that the log must not hold. The
// checks exist so that a query never meets a value it cannot interpret:
// an unknown status or backend, options that are not JSON, or a NaN/Inf that
// would silently turn an AVG() into NaN (use nil for "not measured").
func (r *Row) Validate() error {
	if r.RunID == "" {
		return fmt.Errorf("run_id is empty")
	}
	if err := ValidateCellID(r.CellID); err != nil {
		return fmt.Errorf("cell_id: %w", err)
	}
	if r.Timestamp.IsZero() {
		return fmt.Errorf("timestamp is not set")
	}
	switch r.Backend {
	case BackendCPU, BackendCUDA:
	default:
		return fmt.Errorf("backend %q is not %q or %q", r.Backend, BackendCPU, BackendCUDA)
	}
	if r.Numerics != nil && *r.Numerics != NumericsFP32 && *r.Numerics != NumericsBF16 {
		return fmt.Errorf("numerics %q is not %q or %q", *r.Numerics, NumericsFP32, NumericsBF16)
	}
	for _, o := range []struct{ name, text string }{
		{"attn_options", r.AttnOptions},
		{"kv_options", r.KVOptions},
	} {
		if !json.Valid([]byte(o.text)) {
			return fmt.Errorf("%s is not valid JSON: %q", o.name, o.text)
		}
	}
	switch r.Status {
	case StatusOK:
		if r.Error != nil {
			return fmt.Errorf("status %q with an error message %q", r.Status, *r.Error)
		}
	case StatusOOM, StatusError:
		if r.Error == nil || *r.Error == "" {
			return fmt.Errorf("status %q needs an error message", r.Status)
		}
	default:
		return fmt.Errorf("status %q is not %q, %q or %q", r.Status, StatusOK, StatusOOM, StatusError)
	}
	for _, c := range []struct {
		name string
		v    int64
	}{
		{"context_tokens", r.ContextTokens},
		{"batch_size", r.BatchSize},
		{"repeat_index", r.RepeatIndex},
		{"batch_index", r.BatchIndex},
		{"prompt_tokens", r.PromptTokens},
		{"output_tokens", r.OutputTokens},
	} {
		if c.v < 0 {
			return fmt.Errorf("%s is negative: %d", c.name, c.v)
		}
	}
	for _, c := range []struct {
		name string
		v    *int64
	}{
		{"peak_device_bytes", r.PeakDeviceBytes},
		{"peak_engine_bytes", r.PeakEngineBytes},
		{"weights_bytes", r.WeightsBytes},
		{"kv_bytes_prefill", r.KVBytesPrefill},
		{"kv_bytes_end", r.KVBytesEnd},
		{"workspace_bytes", r.WorkspaceBytes},
		{"kv_evicted_tokens", r.KVEvictedTokens},
	} {
		if c.v != nil && *c.v < 0 {
			return fmt.Errorf("%s is negative: %d", c.name, *c.v)
		}
	}
	for _, c := range []struct {
		name string
		v    *float64
	}{
		{"kv_ratio", r.KVRatio},
		{"depth", r.Depth},
		{"ttft_ms", r.TTFTms},
		{"tpot_ms", r.TPOTms},
		{"e2e_ms", r.E2Ems},
		{"prefill_tok_s", r.PrefillTokS},
		{"decode_tok_s", r.DecodeTokS},
		{"prefill_ms", r.PrefillMS},
		{"kv_compress_ms", r.KVCompressMS},
	} {
		if c.v != nil && !isFinite(*c.v) {
			return fmt.Errorf("%s is %v; use null for a value that was not measured", c.name, *c.v)
		}
	}
	// Fractions: a ratio of 1 would evict the whole cache, a depth outside
	// [0, 1] places the needle outside the context.
	if r.KVRatio != nil && (*r.KVRatio < 0 || *r.KVRatio >= 1) {
		return fmt.Errorf("kv_ratio %v is outside [0, 1)", *r.KVRatio)
	}
	if r.Depth != nil && (*r.Depth < 0 || *r.Depth > 1) {
		return fmt.Errorf("depth %v is outside [0, 1]", *r.Depth)
	}
	for name, v := range r.Scores {
		if name == "" {
			return fmt.Errorf("scores has an empty name")
		}
		if !isFinite(v) {
			return fmt.Errorf("score %q is %v", name, v)
		}
	}
	return nil
}

func isFinite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
