// Package datasets loads the long-context QA tasks (NarrativeQA, HotpotQA)
// from LongBench's JSONL files and from their native formats, describes
// the tasks it knows (including the synthetic needle test), and turns
// samples into prompts for a model.
package datasets

import (
	"fmt"
	"strings"
)

// Format is an input file format.
type Format string

// The formats Load reads. FormatAuto detects one from the file's content.
const (
	FormatAuto      Format = "auto"
	FormatLongBench Format = "longbench" // LongBench JSONL: input, context, answers, _id, dataset, ...
	// FormatNarrativeQA is deepmind/narrativeqa as exported from Hugging
	// Face: JSONL (one row per line) or the dataset's Parquet files.
	FormatNarrativeQA Format = "narrativeqa"
	// FormatHotpotQA is HotpotQA's official JSON (an array of questions,
	// e.g. hotpot_dev_distractor_v1.json), or the same objects as JSONL.
	FormatHotpotQA Format = "hotpotqa"
)

// Formats returns the formats Load accepts, FormatAuto first.
func Formats() []Format {
	return []Format{FormatAuto, FormatLongBench, FormatNarrativeQA, FormatHotpotQA}
}

// ParseFormat checks a user-given format name.
func ParseFormat(s string) (Format, error) {
	if s == "" {
		return FormatAuto, nil
	}
	for _, f := range Formats() {
		if string(f) == s {
			return f, nil
		}
	}
	names := make([]string, 0, 4)
	for _, f := range Formats() {
		names = append(names, string(f))
	}
	return "", fmt.Errorf("unknown dataset format %q (known: %s)", s, strings.Join(names, ", "))
}

// Sample is one question with its context and reference answers.
type Sample struct {
	// ID is unique within a file: LongBench's and HotpotQA's _id; for
	// native NarrativeQA, the document id and a hash of the question.
	ID string
	// Task names the task the sample belongs to (narrativeqa, hotpotqa, or
	// a LongBench file's dataset field), which picks its default template.
	Task       string
	Context    string
	Question   string
	References []string
	// Line is where the sample starts in its file (the row for Parquet).
	Line int
}

// Dataset is the result of Load.
type Dataset struct {
	Path   string
	Format Format
	// Samples are the selected samples, in file order.
	Samples []Sample
	// Records counts the valid records in the file; Skipped the bad ones
	// that SkipBad let through.
	Records, Skipped int
	// Problems holds the first MaxProblems errors of skipped records.
	Problems []error
}

// MaxProblems bounds how many skipped-record errors a Dataset or Report
// keeps, so a file full of bad lines does not fill memory.
const MaxProblems = 20

// RecordError is a bad record: it names the file and where in it.
type RecordError struct {
	Path string
	// Line is the 1-based line the record starts on (0 for Parquet).
	Line int
	// Record is the 1-based position in a JSON array or Parquet file; 0
	// for line-oriented files, where Line says it all.
	Record int
	// ID is the record's id when it could be read.
	ID  string
	Err error
}

func (e *RecordError) Error() string {
	var b strings.Builder
	b.WriteString(e.Path)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Record > 0 {
		if e.Line > 0 {
			fmt.Fprintf(&b, "record %d: ", e.Record)
		} else {
			fmt.Fprintf(&b, "row %d: ", e.Record)
		}
	}
	if e.ID != "" {
		fmt.Fprintf(&b, "id %q: ", e.ID)
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *RecordError) Unwrap() error { return e.Err }

// where says where the record is, without the path.
func (e *RecordError) where() string {
	switch {
	case e.Line == 0:
		return fmt.Sprintf("row %d", e.Record)
	case e.Record > 0:
		return fmt.Sprintf("record %d, line %d", e.Record, e.Line)
	default:
		return fmt.Sprintf("line %d", e.Line)
	}
}
