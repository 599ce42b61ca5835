//go:build cgo

// This test reads the files back with DuckDB itself, the tool the README
// tells users to query them with, so that a type parquet-go writes but DuckDB
// reads differently (a map, a timestamp unit, a JSON column) fails here and
// not in a user's notebook. duckdb-go needs cgo; without it the parquet-go
// round trip tests still run.

package results

import (
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/duckdb/duckdb-go/v2"
	"github.com/parquet-go/parquet-go"
)

// duckdbTypes is the contract between the Row schema and the SQL a user
// writes: the DuckDB type of every column, as documented in README.md.
var duckdbTypes = map[string]string{
	"run_id": "VARCHAR", "cell_id": "VARCHAR", "timestamp": "TIMESTAMP WITH TIME ZONE",
	"harness_version": "VARCHAR", "git_commit": "VARCHAR", "model": "VARCHAR",
	"family": "VARCHAR", "synthetic": "BOOLEAN", "backend": "VARCHAR",
	"device_name": "VARCHAR", "driver": "VARCHAR",
	"attn_plugin": "VARCHAR", "attn_version": "VARCHAR", "attn_options": "JSON",
	"kv_plugin": "VARCHAR", "kv_version": "VARCHAR", "kv_options": "JSON",
	"kv_ratio": "DOUBLE", "task": "VARCHAR", "context_tokens": "BIGINT",
	"batch_size": "BIGINT", "seed": "BIGINT", "repeat_index": "BIGINT",
	"warmup": "BOOLEAN", "batch_index": "BIGINT", "sample_id": "VARCHAR", "depth": "DOUBLE",
	"prompt_tokens": "BIGINT", "output_tokens": "BIGINT",
	"ttft_ms": "DOUBLE", "tpot_ms": "DOUBLE", "e2e_ms": "DOUBLE",
	"prefill_tok_s": "DOUBLE", "decode_tok_s": "DOUBLE",
	"peak_device_bytes": "BIGINT", "peak_engine_bytes": "BIGINT",
	"weights_bytes": "BIGINT", "kv_bytes_prefill": "BIGINT", "kv_bytes_end": "BIGINT",
	"workspace_bytes": "BIGINT", "kv_evicted_tokens": "BIGINT",
	"status": "VARCHAR", "error": "VARCHAR", "prediction": "VARCHAR",
	"references": "VARCHAR[]", "scores": "MAP(VARCHAR, DOUBLE)",
	"prefill_ms": "DOUBLE", "kv_compress_ms": "DOUBLE", "numerics": "VARCHAR",
}

// cpuRows is a cell on the CPU backend: no driver and no GPU memory figures,
// which must come back as SQL NULL, not zero.
func cpuRows(cellID string) []Row {
	rows := sampleRows(cellID)[:2]
	for i := range rows {
		r := &rows[i]
		r.Synthetic = false
		r.Backend = BackendCPU
		r.DeviceName = "cpu"
		r.Driver = nil
		r.PeakDeviceBytes = nil
		r.KVRatio = nil
		r.KVPlugin, r.KVVersion, r.KVOptions = "plugins/kvcache/full", "1.0.0", "{}"
	}
	return rows
}

func openDuckDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestDuckDBReadBack(t *testing.T) {
	dir := t.TempDir()
	written := map[string]Row{}
	for id, rows := range map[string][]Row{"gpu-cell": sampleRows("gpu-cell"), "cpu-cell": cpuRows("cpu-cell")} {
		if _, err := WriteCell(dir, id, rows); err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			written[r.CellID+"/"+r.SampleID] = r
		}
	}
	db := openDuckDB(t)
	glob := filepath.Join(dir, "*.parquet")
	from := "FROM read_parquet('" + glob + "', union_by_name=true)"

	t.Run("types", func(t *testing.T) {
		rs, err := db.Query("DESCRIBE SELECT * " + from)
		if err != nil {
			t.Fatal(err)
		}
		defer rs.Close()
		cols, err := rs.Columns()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for rs.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rs.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			name, typ := vals[0].(string), vals[1].(string)
			names = append(names, name)
			if want, ok := duckdbTypes[name]; !ok {
				t.Errorf("column %s (%s) is not in duckdbTypes", name, typ)
			} else if typ != want {
				t.Errorf("column %s: DuckDB type %s, want %s", name, typ, want)
			}
		}
		if err := rs.Err(); err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, f := range parquet.SchemaOf(Row{}).Fields() {
			want = append(want, f.Name())
		}
		if !reflect.DeepEqual(names, want) {
			t.Errorf("DuckDB columns %v, want the Row schema's %v", names, want)
		}
	})

	t.Run("values", func(t *testing.T) {
		rs, err := db.Query(`SELECT cell_id, sample_id, backend, driver, timestamp, status, error,
			ttft_ms, tpot_ms, depth, kv_ratio, peak_device_bytes, weights_bytes, output_tokens,
			scores['f1'], scores['needle'], cardinality(scores), array_to_string("references", '|'),
			len("references"), json_extract(kv_options, '$.sink')::BIGINT, synthetic
			` + from + ` ORDER BY cell_id, sample_id`)
		if err != nil {
			t.Fatal(err)
		}
		defer rs.Close()
		n := 0
		for rs.Next() {
			n++
			var (
				cell, sample, backend, status, refs string
				driver, errMsg                      sql.NullString
				ts                                  time.Time
				ttft, tpot, depth, ratio, f1, ndl   sql.NullFloat64
				peak, weights, sink                 sql.NullInt64
				outTok, nScores, nRefs              int64
				synthetic                           bool
			)
			if err := rs.Scan(&cell, &sample, &backend, &driver, &ts, &status, &errMsg,
				&ttft, &tpot, &depth, &ratio, &peak, &weights, &outTok,
				&f1, &ndl, &nScores, &refs, &nRefs, &sink, &synthetic); err != nil {
				t.Fatal(err)
			}
			key := cell + "/" + sample
			w, ok := written[key]
			if !ok {
				t.Errorf("DuckDB returned row %s, which was never written", key)
				continue
			}
			check := func(col string, got, want any) {
				t.Helper()
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s %s = %v, want %v", key, col, got, want)
				}
			}
			check("backend", backend, w.Backend)
			check("driver", driver, nullString(w.Driver))
			check("timestamp", ts.UTC(), w.Timestamp.UTC())
			check("status", status, w.Status)
			check("error", errMsg, nullString(w.Error))
			check("ttft_ms", ttft, nullFloat(w.TTFTms))
			check("tpot_ms", tpot, nullFloat(w.TPOTms))
			check("depth", depth, nullFloat(w.Depth))
			check("kv_ratio", ratio, nullFloat(w.KVRatio))
			check("peak_device_bytes", peak, nullInt(w.PeakDeviceBytes))
			check("weights_bytes", weights, nullInt(w.WeightsBytes))
			check("output_tokens", outTok, w.OutputTokens)
			check("scores['f1']", f1, scoreOf(w.Scores, "f1"))
			check("scores['needle']", ndl, scoreOf(w.Scores, "needle"))
			check("cardinality(scores)", nScores, int64(len(w.Scores)))
			check("references", refs, strings.Join(w.References, "|"))
			check("len(references)", nRefs, int64(len(w.References)))
			check("kv_options.sink", sink, jsonInt(t, w.KVOptions, "sink"))
			check("synthetic", synthetic, w.Synthetic)
		}
		if err := rs.Err(); err != nil {
			t.Fatal(err)
		}
		if n != len(written) {
			t.Errorf("DuckDB read %d rows, want %d", n, len(written))
		}
	})

	// The README's aggregate over the map: a score absent from a row (the
	// OOM row has none) is NULL and AVG skips it.
	t.Run("score aggregate", func(t *testing.T) {
		var got sql.NullFloat64
		err := db.QueryRow(`SELECT avg(scores['needle']) ` + from + ` WHERE cell_id = 'gpu-cell'`).Scan(&got)
		if err != nil {
			t.Fatal(err)
		}
		var sum float64
		var n int
		for _, r := range sampleRows("gpu-cell") {
			if v, ok := r.Scores["needle"]; ok {
				sum += v
				n++
			}
		}
		if want := (sql.NullFloat64{Float64: sum / float64(n), Valid: true}); got != want {
			t.Errorf("avg(scores['needle']) = %v, want %v", got, want)
		}
	})
}

// TestDuckDBUnionOldFile checks the additive-schema promise end to end: a
// file without the newer columns reads together with current files, the
// missing columns as NULL.
func TestDuckDBUnionOldFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := WriteCell(dir, "new", sampleRows("new")); err != nil {
		t.Fatal(err)
	}
	old := []oldRow{{RunID: "r0", CellID: "old", Time: runStart, Status: StatusOK, TTFTms: new(2.5)}}
	if err := parquet.WriteFile(filepath.Join(dir, "old.parquet"), old); err != nil {
		t.Fatal(err)
	}
	db := openDuckDB(t)
	var ttft sql.NullFloat64
	var weights sql.NullInt64
	var nulls int64
	err := db.QueryRow(`SELECT ttft_ms, weights_bytes, count(*) FILTER (WHERE scores IS NULL) OVER ()
		FROM read_parquet('`+filepath.Join(dir, "*.parquet")+`', union_by_name=true)
		WHERE cell_id = 'old'`).Scan(&ttft, &weights, &nulls)
	if err != nil {
		t.Fatal(err)
	}
	if ttft != nullFloat(old[0].TTFTms) || weights.Valid || nulls != 1 {
		t.Errorf("old row: ttft %v, weights %v, null scores %d; want %v, NULL, 1", ttft, weights, nulls, *old[0].TTFTms)
	}
}

func nullString(p *string) sql.NullString {
	if p == nil {
		return sql.NullString{}
	}
	return sql.NullString{String: *p, Valid: true}
}

func nullFloat(p *float64) sql.NullFloat64 {
	if p == nil {
		return sql.NullFloat64{}
	}
	return sql.NullFloat64{Float64: *p, Valid: true}
}

func nullInt(p *int64) sql.NullInt64 {
	if p == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: *p, Valid: true}
}

func scoreOf(scores map[string]float64, name string) sql.NullFloat64 {
	v, ok := scores[name]
	return sql.NullFloat64{Float64: v, Valid: ok}
}

func jsonInt(t *testing.T, text, key string) sql.NullInt64 {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(text), &m); err != nil {
		t.Fatal(err)
	}
	v, ok := m[key].(float64)
	return sql.NullInt64{Int64: int64(v), Valid: ok}
}

// TestREADMEQueries runs every SQL block of README.md against two cells, so
// the documented queries cannot rot as the schema grows.
func TestREADMEQueries(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```sql\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	if len(blocks) < 5 {
		t.Fatalf("README.md has %d sql blocks, want one per plot (5)", len(blocks))
	}
	dir := t.TempDir()
	cells := map[string][]Row{"gpu-cell": sampleRows("gpu-cell"), "cpu-cell": cpuRows("cpu-cell")}
	for id, rows := range cells {
		if _, err := WriteCell(dir, id, rows); err != nil {
			t.Fatal(err)
		}
	}
	db := openDuckDB(t)
	for i, b := range blocks {
		query := strings.ReplaceAll(b[1], "results/**/*.parquet", filepath.Join(dir, "*.parquet"))
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			rs, err := db.Query(query)
			if err != nil {
				t.Fatalf("%v\n%s", err, query)
			}
			defer rs.Close()
			cols, err := rs.Columns()
			if err != nil {
				t.Fatal(err)
			}
			metricCol := slices.Index(cols, "metric")
			metrics := map[string]bool{}
			n := 0
			for rs.Next() {
				vals := make([]any, len(cols))
				ptrs := make([]any, len(cols))
				for i := range vals {
					ptrs[i] = &vals[i]
				}
				if err := rs.Scan(ptrs...); err != nil {
					t.Fatal(err)
				}
				if metricCol >= 0 {
					metrics[vals[metricCol].(string)] = true
				}
				n++
			}
			if err := rs.Err(); err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				t.Errorf("query returned no rows:\n%s", query)
			}
			// The quality query unnests the scores map: it must yield exactly
			// the score names of the rows it selects.
			if metricCol >= 0 {
				want := map[string]bool{}
				for _, rows := range cells {
					for _, r := range rows {
						if r.Status == StatusOK && !r.Warmup && !r.Synthetic {
							for k := range r.Scores {
								want[k] = true
							}
						}
					}
				}
				if !reflect.DeepEqual(metrics, want) {
					t.Errorf("metrics %v, want %v", sortedKeys(metrics), sortedKeys(want))
				}
			}
		})
	}
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
