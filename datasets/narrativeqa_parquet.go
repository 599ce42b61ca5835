package datasets

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/parquet-go/parquet-go"
)

// narrativeQAColumns are the leaf columns a NarrativeQA Parquet file must
// have; answers is located separately because list encodings differ
// between writers (answers.list.element.text for Arrow's three-level lists,
// answers.array.text or answers.text for older two-level ones).
var narrativeQAColumns = [][]string{
	{"document", "id"},
	{"document", "text"},
	{"question", "text"},
}

// parquetColumn is a leaf column's index and the definition level at which
// a value is present; for a list, elemDef is the level at which a list
// element (null or not) exists, below which the list is null or empty.
type parquetColumn struct {
	index, maxDef, elemDef int
}

// readNarrativeQAParquet reads the rows of a deepmind/narrativeqa Parquet
// file (data/test-*.parquet on Hugging Face). emit is called once per row,
// with the fields or a row error.
func readNarrativeQAParquet(f *os.File, path string, emit func(row int, fields narrativeQAFields, err error) error) (err error) {
	// The Parquet decoder is third-party code fed with outside bytes; a
	// corrupt file must come back as an error, not a crash.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: corrupt Parquet file: %v", path, r)
		}
	}()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		return fmt.Errorf("%s: not a readable Parquet file: %w", path, err)
	}
	schema := pf.Schema()
	var cols [3]parquetColumn
	for i, p := range narrativeQAColumns {
		leaf, ok := schema.Lookup(p...)
		if !ok {
			return fmt.Errorf("%s: Parquet file has no column %q, so it is not deepmind/narrativeqa (columns: %s)",
				path, strings.Join(p, "."), columnList(schema))
		}
		cols[i] = parquetColumn{index: leaf.ColumnIndex, maxDef: leaf.MaxDefinitionLevel}
	}
	answers, err := answerColumn(schema)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}

	row := 0
	buf := make([]parquet.Row, 8)
	for _, rg := range pf.RowGroups() {
		rows := rg.Rows()
		for {
			n, rerr := rows.ReadRows(buf)
			for _, r := range buf[:n] {
				row++
				fields, ferr := narrativeQARow(r, cols, answers)
				if err := emit(row, fields, ferr); err != nil {
					rows.Close()
					return err
				}
			}
			if errors.Is(rerr, io.EOF) {
				break
			}
			if rerr != nil {
				rows.Close()
				return fmt.Errorf("%s: row %d: reading Parquet: %w", path, row+1, rerr)
			}
		}
		if err := rows.Close(); err != nil {
			return fmt.Errorf("%s: reading Parquet: %w", path, err)
		}
	}
	return nil
}

func answerColumn(schema *parquet.Schema) (parquetColumn, error) {
	for _, p := range schema.Columns() {
		if len(p) >= 2 && p[0] == "answers" && p[len(p)-1] == "text" {
			leaf, _ := schema.Lookup(p...)
			elemDef, ok := elementLevel(schema, p)
			if !ok {
				return parquetColumn{}, fmt.Errorf("Parquet column %q is not a list", strings.Join(p, "."))
			}
			return parquetColumn{leaf.ColumnIndex, leaf.MaxDefinitionLevel, elemDef}, nil
		}
	}
	return parquetColumn{}, fmt.Errorf("Parquet file has no answers text column, so it is not deepmind/narrativeqa (columns: %s)", columnList(schema))
}

// elementLevel walks path down the schema and returns the definition level
// reached at its first repeated node.
func elementLevel(schema *parquet.Schema, path []string) (int, bool) {
	var node parquet.Node = schema
	level := 0
	for _, name := range path {
		var next parquet.Node
		for _, f := range node.Fields() {
			if f.Name() == name {
				next = f
				break
			}
		}
		if next == nil {
			return 0, false
		}
		node = next
		if node.Optional() || node.Repeated() {
			level++
		}
		if node.Repeated() {
			return level, true
		}
	}
	return 0, false
}

func columnList(schema *parquet.Schema) string {
	var names []string
	for _, p := range schema.Columns() {
		names = append(names, strings.Join(p, "."))
	}
	if len(names) > 12 {
		names = append(names[:12], "...")
	}
	return strings.Join(names, ", ")
}

// narrativeQARow picks the needed fields out of one row. A value below its
// column's maximum definition level is a null somewhere on its path.
func narrativeQARow(r parquet.Row, cols [3]parquetColumn, answers parquetColumn) (narrativeQAFields, error) {
	var f narrativeQAFields
	scalars := [3]**string{&f.docID, &f.docText, &f.question}
	for _, v := range r {
		c := v.Column()
		for i, col := range cols {
			if c != col.index || v.DefinitionLevel() != col.maxDef {
				continue
			}
			if v.Kind() != parquet.ByteArray {
				return f, fmt.Errorf("column %q holds %s, want strings", strings.Join(narrativeQAColumns[i], "."), v.Kind())
			}
			s := v.String()
			*scalars[i] = &s
		}
		if c != answers.index {
			continue
		}
		f.answersPresent = true
		switch {
		case v.DefinitionLevel() == answers.maxDef:
			if v.Kind() != parquet.ByteArray {
				return f, fmt.Errorf("column answers text holds %s, want strings", v.Kind())
			}
			s := v.String()
			f.answers = append(f.answers, &s)
		case v.DefinitionLevel() >= answers.elemDef:
			// A list element (or its text) that is null.
			f.answers = append(f.answers, nil)
		}
	}
	return f, nil
}
