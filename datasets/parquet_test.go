package datasets

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
)

// Rows in parquet-go's own layout, which differs from Arrow's in how it
// marks optional fields; the reader must not depend on either.
type pqAnswer struct {
	Text *string `parquet:"text,optional"`
}

type pqDocument struct {
	ID   *string `parquet:"id,optional"`
	Text *string `parquet:"text,optional"`
}

type pqQuestion struct {
	Text *string `parquet:"text,optional"`
}

type pqRow struct {
	Document pqDocument `parquet:"document"`
	Question pqQuestion `parquet:"question"`
	Answers  []pqAnswer `parquet:"answers,list"`
}

func str(s string) *string { return &s }

func TestParquetRows(t *testing.T) {
	good := func(q string) pqRow {
		return pqRow{pqDocument{str("d1"), str("story")}, pqQuestion{str(q)}, []pqAnswer{{str("a")}, {str("b")}}}
	}
	rows := []pqRow{
		good("q1"),
		{pqDocument{str("d1"), nil}, pqQuestion{str("q2")}, []pqAnswer{{str("a")}}},
		{pqDocument{str("d1"), str("story")}, pqQuestion{str("q3")}, nil},
		{pqDocument{str("d1"), str("story")}, pqQuestion{str("q4")}, []pqAnswer{{str("a")}, {nil}}},
		good("q5"),
	}
	path := filepath.Join(t.TempDir(), "rows.parquet")
	if err := parquet.WriteFile(path, rows); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path, LoadOptions{})
	var rerr *RecordError
	if !errors.As(err, &rerr) || !strings.HasPrefix(err.Error(), path+": row 2: ") || !strings.Contains(err.Error(), `"document.text" is missing`) {
		t.Fatalf("err = %v", err)
	}
	ds, err := Load(path, LoadOptions{SkipBad: true})
	if err != nil {
		t.Fatal(err)
	}
	if ds.Records != 2 || ds.Skipped != 3 {
		t.Fatalf("%d records, %d skipped: %v", ds.Records, ds.Skipped, ds.Problems)
	}
	wantProblems := []string{"row 2: ", "row 3: ", "row 4: "}
	wantText := []string{`"document.text" is missing`, `"answers.text" has no answers`, "answer 1 is empty or null"}
	for i, p := range ds.Problems {
		if !strings.Contains(p.Error(), wantProblems[i]) || !strings.Contains(p.Error(), wantText[i]) {
			t.Errorf("problem %d = %q, want %q and %q", i, p, wantProblems[i], wantText[i])
		}
	}
	if s := ds.Samples[1]; s.Question != "q5" || s.Line != 5 || strings.Join(s.References, "|") != "a|b" || s.Context != "story" {
		t.Errorf("sample %+v", s)
	}
}

func TestParquetNotNarrativeQA(t *testing.T) {
	type other struct {
		Input   string   `parquet:"input"`
		Context string   `parquet:"context"`
		Answers []string `parquet:"answers,list"`
	}
	path := filepath.Join(t.TempDir(), "longbench.parquet")
	if err := parquet.WriteFile(path, []other{{"q", "c", []string{"a"}}}); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path, LoadOptions{})
	if err == nil || !strings.Contains(err.Error(), `no column "document.id"`) || !strings.Contains(err.Error(), "input, context, answers") {
		t.Errorf("err = %v", err)
	}
}

func TestParquetCorrupt(t *testing.T) {
	data, err := os.ReadFile(fixture("narrativeqa.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cases := map[string][]byte{
		"magic only":   []byte("PAR1"),
		"truncated":    data[:len(data)/2],
		"zeroed pages": append(append(append([]byte{}, data[:4]...), make([]byte, len(data)/2)...), data[4+len(data)/2:]...),
	}
	for name, b := range cases {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".parquet")
		os.WriteFile(path, b, 0o644)
		if _, err := Load(path, LoadOptions{SkipBad: true}); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: err = %v, want an error naming the file", name, err)
		}
	}
}
