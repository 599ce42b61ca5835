package results

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
)

var update = flag.Bool("update", false, "rewrite testdata/schema.txt from the Row struct")

// runStart has sub-second digits down to the microsecond, the precision of
// the timestamp column, so a round trip must keep it exactly.
var runStart = time.Date(2026, 11, 26, 1, 2, 3, 456789000, time.UTC)

// sampleRows returns one cell of three requests covering the shapes the
// harness writes: a measured GPU request, a needle request with a depth, and
// an out-of-memory request whose measurements are null.
func sampleRows(cellID string) []Row {
	base := Row{
		RunID:          "run-1",
		CellID:         cellID,
		Timestamp:      runStart,
		HarnessVersion: "0.1.0",
		GitCommit:      "abc123",
		Model:          "synthetic:llama3-8b",
		Family:         "llama",
		Synthetic:      true,
		Backend:        BackendCUDA,
		DeviceName:     "NVIDIA H100 80GB HBM3",
		Driver:         new("580.65"),
		Numerics:       new(NumericsBF16),
		AttnPlugin:     "plugins/attention/flex",
		AttnVersion:    "1.2.0",
		AttnOptions:    `{"block":128}`,
		KVPlugin:       "plugins/kvcache/l2",
		KVVersion:      "0.3.1",
		KVOptions:      `{"ratio":0.5,"sink":4}`,
		KVRatio:        new(0.5),
		Task:           "needle",
		ContextTokens:  8192,
		BatchSize:      2,
		Seed:           7,
		RepeatIndex:    1,
		Warmup:         false,
	}
	ok := base
	ok.SampleID = "s0"
	ok.PromptTokens = 8190
	ok.OutputTokens = 16
	ok.TTFTms = new(310.5)
	ok.TPOTms = new(61.25)
	ok.E2Ems = new(1229.25)
	ok.PrefillTokS = new(26377.0)
	ok.DecodeTokS = new(16.3)
	ok.PeakDeviceBytes = new(int64(40_000_000_000))
	ok.PeakEngineBytes = new(int64(38_500_000_000))
	ok.WeightsBytes = new(int64(16_060_000_000))
	ok.KVBytesPrefill = new(int64(1_073_741_824))
	ok.KVBytesEnd = new(int64(538_968_064))
	ok.WorkspaceBytes = new(int64(268_435_456))
	ok.KVEvictedTokens = new(int64(4095))
	ok.Status = StatusOK
	ok.Prediction = "The magic number is 42."
	ok.References = []string{"42", "forty-two"}
	ok.Scores = map[string]float64{"em": 0, "f1": 0.4, "needle": 1}

	needle := ok
	needle.SampleID = "s1"
	needle.BatchIndex = 0
	needle.Depth = new(0.25)
	needle.References = []string{"7"}
	needle.Scores = map[string]float64{"needle": 0}

	oom := base
	oom.BatchIndex = 1
	oom.SampleID = "s2"
	oom.PromptTokens = 8192
	oom.WeightsBytes = new(int64(16_060_000_000))
	oom.PeakDeviceBytes = new(int64(80_000_000_000))
	oom.Status = StatusOOM
	oom.Error = new("cuMemAlloc: out of memory (requested 2147483648 bytes)")
	return []Row{ok, needle, oom}
}

// normalize makes rows comparable with reflect.DeepEqual after a round trip:
// time.Time carries its location pointer, and an empty list or map may come
// back as nil.
func normalize(rows []Row) []Row {
	out := make([]Row, len(rows))
	for i, r := range rows {
		r.Timestamp = time.Unix(0, r.Timestamp.UnixNano()).UTC()
		if len(r.References) == 0 {
			r.References = nil
		}
		if len(r.Scores) == 0 {
			r.Scores = nil
		}
		out[i] = r
	}
	return out
}

func TestWriteCellRoundTrip(t *testing.T) {
	dir := t.TempDir()
	rows := sampleRows("cell-a")
	path, err := WriteCell(dir, "cell-a", rows)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "cell-a.parquet"); path != want {
		t.Errorf("path = %s, want %s", path, want)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("file mode %v, want 0644", st.Mode().Perm())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("dir holds %d entries after a write, want only the cell file", len(entries))
	}
	got, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if g, w := normalize(got), normalize(rows); !reflect.DeepEqual(g, w) {
		t.Errorf("round trip changed rows\n got %+v\nwant %+v", g, w)
	}
	if !got[0].Timestamp.Equal(runStart) {
		t.Errorf("timestamp = %v, want %v", got[0].Timestamp, runStart)
	}
}

func TestWriteCellStoresUTCAndZstd(t *testing.T) {
	dir := t.TempDir()
	rows := sampleRows("tz")
	plus2 := time.FixedZone("plus2", 2*3600)
	for i := range rows {
		rows[i].Timestamp = runStart.In(plus2)
	}
	path, err := WriteCell(dir, "tz", rows)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !got[0].Timestamp.Equal(runStart) {
		t.Errorf("timestamp = %v, want the instant %v", got[0].Timestamp, runStart)
	}
	if rows[0].Timestamp.Location() != plus2 {
		t.Error("WriteCell changed the caller's rows")
	}

	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	for _, rg := range pf.Metadata().RowGroups {
		for _, c := range rg.Columns {
			if got := c.MetaData.Codec.String(); got != "ZSTD" {
				t.Errorf("column %v codec %s, want ZSTD", c.MetaData.PathInSchema, got)
			}
		}
	}
}

func TestWriteCellRejects(t *testing.T) {
	tests := []struct {
		name    string
		cellID  string
		mutate  func(rows []Row) []Row
		wantErr string
	}{
		{"empty cell id", "", nil, "empty"},
		{"path separator", "a/b", nil, "byte '/'"},
		{"parent dir", "..", nil, "starts with"},
		{"hidden", ".x", nil, "starts with"},
		{"space", "a b", nil, "byte ' '"},
		{"too long", strings.Repeat("a", maxCellIDLen+1), nil, "limit"},
		{"no rows", "c", func([]Row) []Row { return nil }, "no rows"},
		{"other cell", "c", func(r []Row) []Row { r[1].CellID = "d"; return r }, `row 1 has cell_id "d"`},
		{"no run id", "c", func(r []Row) []Row { r[0].RunID = ""; return r }, "run_id"},
		{"no timestamp", "c", func(r []Row) []Row { r[0].Timestamp = time.Time{}; return r }, "timestamp"},
		{"backend", "c", func(r []Row) []Row { r[0].Backend = "rocm"; return r }, `backend "rocm"`},
		{"numerics", "c", func(r []Row) []Row { r[1].Numerics = new("fp16"); return r }, `row 1: numerics "fp16"`},
		{"attn options", "c", func(r []Row) []Row { r[0].AttnOptions = ""; return r }, "attn_options is not valid JSON"},
		{"kv options", "c", func(r []Row) []Row { r[2].KVOptions = "{x}"; return r }, "row 2: kv_options"},
		{"status", "c", func(r []Row) []Row { r[0].Status = "OK"; return r }, `status "OK"`},
		{"ok with error", "c", func(r []Row) []Row { r[0].Error = new("x"); return r }, "with an error message"},
		{"oom without error", "c", func(r []Row) []Row { r[2].Error = nil; return r }, "needs an error message"},
		{"error with empty message", "c", func(r []Row) []Row { r[2].Status = StatusError; r[2].Error = new(""); return r }, "needs an error message"},
		{"negative batch", "c", func(r []Row) []Row { r[2].BatchIndex = -1; return r }, "batch_index is negative"},
		{"negative tokens", "c", func(r []Row) []Row { r[0].OutputTokens = -1; return r }, "output_tokens is negative"},
		{"negative bytes", "c", func(r []Row) []Row { r[0].KVBytesEnd = new(int64(-1)); return r }, "kv_bytes_end is negative"},
		{"nan tpot", "c", func(r []Row) []Row { r[0].TPOTms = new(nan()); return r }, "tpot_ms is NaN"},
		{"inf ttft", "c", func(r []Row) []Row { r[0].TTFTms = new(inf()); return r }, "ttft_ms is +Inf"},
		{"nan score", "c", func(r []Row) []Row { r[0].Scores["f1"] = nan(); return r }, `score "f1" is NaN`},
		{"unnamed score", "c", func(r []Row) []Row { r[0].Scores[""] = 1; return r }, "empty name"},
		{"ratio 1", "c", func(r []Row) []Row { r[0].KVRatio = new(1.0); return r }, "kv_ratio 1"},
		{"depth", "c", func(r []Row) []Row { r[1].Depth = new(1.5); return r }, "depth 1.5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			id := tt.cellID
			rows := sampleRows(id)
			if tt.mutate != nil {
				rows = tt.mutate(rows)
			}
			_, err := WriteCell(dir, id, rows)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 0 {
				t.Errorf("a rejected write left %d entries in the folder", len(entries))
			}
		})
	}
}

func TestWriteCellMissingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "absent")
	_, err := WriteCell(dir, "c", sampleRows("c"))
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want a not-exist error", err)
	}
}

func TestWriteCellReplaces(t *testing.T) {
	dir := t.TempDir()
	rows := sampleRows("c")
	if _, err := WriteCell(dir, "c", rows); err != nil {
		t.Fatal(err)
	}
	path, err := WriteCell(dir, "c", rows[:1])
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Errorf("rewritten cell has %d rows, want 1", len(got))
	}
}

// TestFinishedAndReadDir lays out a folder as a crashed sweep leaves it: two
// finished cells, a temp file of an interrupted write and unrelated files.
func TestFinishedAndReadDir(t *testing.T) {
	dir := t.TempDir()
	for _, id := range []string{"b-cell", "a-cell"} {
		if _, err := WriteCell(dir, id, sampleRows(id)); err != nil {
			t.Fatal(err)
		}
	}
	half, err := os.ReadFile(CellPath(dir, "a-cell"))
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(dir, ".c-cell.123.tmp"), half[:len(half)/2])
	mustWrite(t, filepath.Join(dir, "notes.txt"), []byte("hello"))
	if err := os.Mkdir(filepath.Join(dir, "sub.parquet"), 0o755); err != nil {
		t.Fatal(err)
	}

	done, err := Finished(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]bool{"a-cell": true, "b-cell": true}; !reflect.DeepEqual(done, want) {
		t.Errorf("Finished = %v, want %v", done, want)
	}

	rows, err := ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var cells []string
	for _, r := range rows {
		cells = append(cells, r.CellID+"/"+r.SampleID)
	}
	want := []string{"a-cell/s0", "a-cell/s1", "a-cell/s2", "b-cell/s0", "b-cell/s1", "b-cell/s2"}
	if !reflect.DeepEqual(cells, want) {
		t.Errorf("ReadDir order = %v, want %v", cells, want)
	}

	// A damaged file under a final name is an error naming it, not a cell
	// silently skipped or redone.
	mustWrite(t, CellPath(dir, "c-cell"), half[:len(half)/2])
	if _, err := Finished(dir); err == nil || !strings.Contains(err.Error(), "c-cell.parquet") {
		t.Errorf("Finished with a damaged file: err = %v, want one naming c-cell.parquet", err)
	}
	if _, err := ReadDir(dir); err == nil || !strings.Contains(err.Error(), "c-cell.parquet") {
		t.Errorf("ReadDir with a damaged file: err = %v, want one naming c-cell.parquet", err)
	}
}

func TestFinishedMissingDir(t *testing.T) {
	done, err := Finished(filepath.Join(t.TempDir(), "absent"))
	if err != nil || len(done) != 0 {
		t.Errorf("Finished(absent) = %v, %v; want an empty map (nothing has run yet)", done, err)
	}
}

// oldRow is Row as an earlier schema version might have had it: a subset of
// the columns. Such files must keep reading, with the new columns null.
type oldRow struct {
	RunID  string    `parquet:"run_id"`
	CellID string    `parquet:"cell_id"`
	Time   time.Time `parquet:"timestamp,timestamp(microsecond:utc)"`
	Status string    `parquet:"status"`
	Error  *string   `parquet:"error,optional"`
	TTFTms *float64  `parquet:"ttft_ms,optional"`
	Extra  string    `parquet:"future_column"`
}

func TestReadFileSchemaEvolution(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "old.parquet")
	if err := parquet.WriteFile(path, []oldRow{{RunID: "r", CellID: "old", Time: runStart, Status: "ok", TTFTms: new(1.5), Extra: "x"}}); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := Row{RunID: "r", CellID: "old", Timestamp: runStart, Status: "ok", TTFTms: new(1.5)}
	if g := normalize(got); len(g) != 1 || !reflect.DeepEqual(g[0], normalize([]Row{want})[0]) {
		t.Errorf("old file read as %+v, want %+v", got, want)
	}
}

func TestReadFileRejectsOtherTables(t *testing.T) {
	type retyped struct {
		RunID  string `parquet:"run_id"`
		CellID string `parquet:"cell_id"`
		Status string `parquet:"status"`
		TTFTms int64  `parquet:"ttft_ms"`
	}
	type other struct {
		Name string `parquet:"name"`
	}
	tests := []struct {
		name    string
		write   func(path string) error
		wantErr string
	}{
		{"retyped column", func(p string) error {
			return parquet.WriteFile(p, []retyped{{RunID: "r", CellID: "c", Status: "ok", TTFTms: 3}})
		}, `column "ttft_ms"`},
		{"other table", func(p string) error {
			return parquet.WriteFile(p, []other{{Name: "x"}})
		}, "not a results file"},
		{"footer length beyond the file", func(p string) error {
			var b bytes.Buffer
			if err := writeRows(&b, sampleRows("c")); err != nil {
				return err
			}
			data := b.Bytes()
			binary.LittleEndian.PutUint32(data[len(data)-8:], 1<<31)
			return os.WriteFile(p, data, 0o644)
		}, "footer length 2147483648 does not fit"},
		{"not parquet", func(p string) error {
			return os.WriteFile(p, []byte("run_id,cell_id\n"), 0o644)
		}, "x.parquet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.parquet")
			if err := tt.write(path); err != nil {
				t.Fatal(err)
			}
			_, err := ReadFile(path)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}

// TestSchemaGolden pins the column names, types and nullability. A failure
// means the schema changed: if the change only adds nullable columns, rerun
// with -update and document the columns in README.md; anything else breaks
// the queries over old files and must not be done.
func TestSchemaGolden(t *testing.T) {
	got := []byte(parquet.SchemaOf(Row{}).String() + "\n")
	golden := filepath.Join("testdata", "schema.txt")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update once to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Row schema differs from %s (additive changes only; rerun with -update)\n got:\n%s\nwant:\n%s", golden, got, want)
	}
}

func mustWrite(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func nan() float64 { return math.NaN() }
func inf() float64 { return math.Inf(1) }
