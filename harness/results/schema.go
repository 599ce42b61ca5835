package results

import (
	"fmt"

	"github.com/parquet-go/parquet-go"
)

// requiredColumns are present in every results file ever written; a Parquet
// file without them is some other data set, not a cell of this harness.
var requiredColumns = [...]string{"run_id", "cell_id", "status"}

// checkSchema accepts a file whose columns are a subset or superset of Row's
// (additive schema changes in either direction) as long as every column the
// two share has the same type, and rejects files of other tables.
func checkSchema(file *parquet.Schema) error {
	want := parquet.SchemaOf(Row{})
	have := make(map[string]parquet.Field, len(file.Fields()))
	for _, f := range file.Fields() {
		have[f.Name()] = f
	}
	for _, name := range requiredColumns {
		if _, ok := have[name]; !ok {
			return fmt.Errorf("not a results file: no column %q", name)
		}
	}
	for _, w := range want.Fields() {
		h, ok := have[w.Name()]
		if !ok {
			continue
		}
		if !parquet.SameNodes(h, w) {
			return fmt.Errorf("column %q has type %s, want %s", w.Name(), nodeString(h), nodeString(w))
		}
	}
	return nil
}

func nodeString(n parquet.Node) string {
	opt := "required"
	switch {
	case n.Optional():
		opt = "optional"
	case n.Repeated():
		opt = "repeated"
	}
	if n.Leaf() {
		return fmt.Sprintf("%s %s", opt, n.Type())
	}
	return fmt.Sprintf("%s group %s", opt, n.Type())
}
