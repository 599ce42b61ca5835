package datasets

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strings"
)

// LoadOptions select the format and the samples Load returns.
type LoadOptions struct {
	// Format is the file format; "" or FormatAuto detects it.
	Format Format
	// Limit caps the number of samples; 0 keeps all. The Limit samples are
	// a uniform random choice made with Seed (NarrativeQA files group
	// dozens of questions per story, so the first N would be a few
	// stories), returned in file order; Head takes the first Limit instead.
	Limit int
	Seed  uint64
	Head  bool
	// SkipBad skips and counts bad records instead of failing on the first.
	// Errors that make the rest of a file unreadable (broken JSON array,
	// unreadable Parquet) fail either way.
	SkipBad bool
}

// Load reads a dataset file. Every record is parsed even with a Limit, so
// a bad record anywhere is found.
func Load(path string, opts LoadOptions) (*Dataset, error) {
	if opts.Limit < 0 {
		return nil, fmt.Errorf("load %s: negative limit %d", path, opts.Limit)
	}
	ds := &Dataset{Path: path}
	sel := newSelector(opts)
	format, err := scan(path, opts.Format, func(s Sample, rerr *RecordError) error {
		if rerr != nil {
			if !opts.SkipBad {
				return rerr
			}
			ds.Skipped++
			if len(ds.Problems) < MaxProblems {
				ds.Problems = append(ds.Problems, rerr)
			}
			return nil
		}
		ds.Records++
		sel.offer(s)
		return nil
	})
	if err != nil {
		return nil, err
	}
	ds.Format = format
	ds.Samples = sel.result()
	return ds, nil
}

// selector keeps the samples Load returns: the first Limit, or a uniform
// reservoir sample of Limit (Algorithm R) so that a file never has to be
// held in memory whole.
type selector struct {
	limit int
	head  bool
	rng   *rand.Rand
	seen  int
	kept  []ordered
}

type ordered struct {
	n int
	s Sample
}

func newSelector(opts LoadOptions) *selector {
	return &selector{
		limit: opts.Limit,
		head:  opts.Head,
		rng:   rand.New(rand.NewPCG(opts.Seed, 0x6c6f6e67637478)),
	}
}

func (sel *selector) offer(s Sample) {
	n := sel.seen
	sel.seen++
	switch {
	case sel.limit == 0 || len(sel.kept) < sel.limit:
		sel.kept = append(sel.kept, ordered{n, s})
	case !sel.head:
		if j := sel.rng.IntN(n + 1); j < sel.limit {
			sel.kept[j] = ordered{n, s}
		}
	}
}

func (sel *selector) result() []Sample {
	sort.Slice(sel.kept, func(i, j int) bool { return sel.kept[i].n < sel.kept[j].n })
	out := make([]Sample, len(sel.kept))
	for i, o := range sel.kept {
		out[i] = o.s
	}
	return out
}

// Report is what Validate found in a file.
type Report struct {
	Path   string
	Format Format
	// Records counts valid records, Bad the invalid ones.
	Records, Bad int
	// Problems are the first MaxProblems errors.
	Problems []error
	// Tasks counts valid records per task, sorted by task name.
	Tasks []TaskCount
	// Context sizes in characters (bytes of UTF-8) over valid records.
	MinContext, MaxContext int
	MeanContext            float64
}

// TaskCount is a number of records of one task.
type TaskCount struct {
	Task  string
	Count int
}

// Validate detects (unless format is given) and parses a whole file,
// counting good and bad records. It returns an error only when the file
// cannot be read to the end at all.
func Validate(path string, format Format) (*Report, error) {
	rep := &Report{Path: path}
	tasks := map[string]int{}
	var total int
	got, err := scan(path, format, func(s Sample, rerr *RecordError) error {
		if rerr != nil {
			rep.Bad++
			if len(rep.Problems) < MaxProblems {
				rep.Problems = append(rep.Problems, rerr)
			}
			return nil
		}
		n := len(s.Context)
		if rep.Records == 0 || n < rep.MinContext {
			rep.MinContext = n
		}
		rep.MaxContext = max(rep.MaxContext, n)
		total += n
		rep.Records++
		tasks[s.Task]++
		return nil
	})
	if err != nil {
		return nil, err
	}
	rep.Format = got
	if rep.Records > 0 {
		rep.MeanContext = float64(total) / float64(rep.Records)
	}
	for t, n := range tasks {
		rep.Tasks = append(rep.Tasks, TaskCount{t, n})
	}
	slices.SortFunc(rep.Tasks, func(a, b TaskCount) int { return strings.Compare(a.Task, b.Task) })
	return rep, nil
}

// Detect tells a file's format from its content.
func Detect(path string) (Format, error) {
	src, err := openSource(path)
	if err != nil {
		return "", err
	}
	defer src.Close()
	return src.detect()
}

// emitFunc receives each record: a sample, or the error that made it bad.
// Returning an error stops the scan with it.
type emitFunc func(Sample, *RecordError) error

// scan reads every record of path in the given (or detected) format.
func scan(path string, format Format, emit emitFunc) (Format, error) {
	if _, err := ParseFormat(string(format)); err != nil {
		return "", err
	}
	src, err := openSource(path)
	if err != nil {
		return "", err
	}
	defer src.Close()
	if format == "" || format == FormatAuto {
		if format, err = src.detect(); err != nil {
			return "", err
		}
	}
	firstSeen := map[string]RecordError{}
	// checkID rejects repeated ids, since results are keyed by sample id.
	checkID := func(s Sample, loc RecordError) error {
		if first, dup := firstSeen[s.ID]; dup {
			loc.ID, loc.Err = s.ID, fmt.Errorf("duplicate id (first at %s)", first.where())
			return emit(Sample{}, &loc)
		}
		firstSeen[s.ID] = loc
		s.Line = loc.Line
		if s.Line == 0 {
			s.Line = loc.Record
		}
		return emit(s, nil)
	}

	switch {
	case src.parquet:
		if format != FormatNarrativeQA {
			return "", fmt.Errorf("%s: Parquet files are read as %s, not %s", path, FormatNarrativeQA, format)
		}
		st := newNarrativeQAState()
		return format, readNarrativeQAParquet(src.file, path, func(row int, f narrativeQAFields, ferr error) error {
			loc := RecordError{Path: path, Record: row}
			if ferr == nil {
				var s Sample
				if s, ferr = st.sample(f); ferr == nil {
					return checkID(s, loc)
				}
			}
			loc.Err = ferr
			return emit(Sample{}, &loc)
		})
	case format == FormatHotpotQA && src.firstByte == '[':
		return format, readJSONArray(src.r, path, src.line, func(line, rec int, data []byte) error {
			loc := RecordError{Path: path, Line: line, Record: rec}
			s, err := parseHotpotQA(data)
			if err != nil {
				loc.ID, loc.Err = s.ID, err
				return emit(Sample{}, &loc)
			}
			return checkID(s, loc)
		})
	}

	var parse func([]byte) (Sample, error)
	switch format {
	case FormatLongBench:
		parse = parseLongBench
	case FormatHotpotQA:
		parse = parseHotpotQA
	case FormatNarrativeQA:
		st := newNarrativeQAState()
		parse = func(line []byte) (Sample, error) {
			f, err := parseNarrativeQAJSON(line)
			if err != nil {
				return Sample{}, err
			}
			return st.sample(f)
		}
	}
	return format, readLines(src.r, path, src.line, func(line int, data []byte) error {
		loc := RecordError{Path: path, Line: line}
		s, err := parse(data)
		if err != nil {
			loc.ID, loc.Err = s.ID, err
			return emit(Sample{}, &loc)
		}
		return checkID(s, loc)
	})
}

// source is an opened dataset file: Parquet is read from the file itself,
// anything else through r, gunzipped when the file is gzip-compressed.
type source struct {
	path      string
	file      *os.File
	r         *bufio.Reader
	gz        *gzip.Reader
	parquet   bool
	firstByte byte
	// line is the line r starts on, after skipped leading blank lines.
	line int
}

func openSource(path string) (*source, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open dataset: %w", err)
	}
	src := &source{path: path, file: f, r: bufio.NewReaderSize(f, 64<<10), line: 1}
	magic, _ := src.r.Peek(4)
	switch {
	case string(magic) == "PAR1":
		src.parquet = true
		return src, nil
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		gz, err := gzip.NewReader(src.r)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: gzip: %w", path, err)
		}
		src.gz = gz
		src.r = bufio.NewReaderSize(gz, 64<<10)
	}
	// Skip a UTF-8 byte-order mark and leading space so that the first
	// byte tells a JSON array from JSON lines.
	if bom, _ := src.r.Peek(3); bytes.Equal(bom, []byte("\xef\xbb\xbf")) {
		src.r.Discard(3)
	}
	for {
		b, err := src.r.Peek(1)
		if err != nil {
			break
		}
		if !isJSONSpace(b[0]) {
			src.firstByte = b[0]
			break
		}
		if b[0] == '\n' {
			src.line++
		}
		src.r.Discard(1)
	}
	return src, nil
}

func (src *source) Close() error {
	if src.gz != nil {
		src.gz.Close()
	}
	return src.file.Close()
}

func isJSONSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' }

// detectLines is how many lines detection looks at to find one that parses.
const detectLines = 16

// detect tells the format from the first bytes, or for JSON lines from the
// keys of the first line that is a JSON object.
func (src *source) detect() (Format, error) {
	switch {
	case src.parquet:
		return FormatNarrativeQA, nil
	case src.firstByte == '[':
		return FormatHotpotQA, nil
	case src.firstByte == 0:
		return "", fmt.Errorf("%s: empty file", src.path)
	case src.firstByte != '{':
		return "", fmt.Errorf("%s: not JSON lines, a JSON array or Parquet (first byte %q)", src.path, src.firstByte)
	}
	// Detection reads lines from a separate handle so the main reader keeps
	// its position.
	alt, err := openSource(src.path)
	if err != nil {
		return "", err
	}
	defer alt.Close()
	var found Format
	var keys []string
	n := 0
	err = readLines(alt.r, src.path, alt.line, func(_ int, line []byte) error {
		n++
		var obj map[string]json.RawMessage
		if json.Unmarshal(line, &obj) == nil {
			keys = keys[:0]
			for k := range obj {
				keys = append(keys, k)
			}
			found = formatOfKeys(obj)
			return errStop
		}
		if n >= detectLines {
			return errStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return "", err
	}
	if found == "" {
		slices.Sort(keys)
		if len(keys) == 0 {
			return "", fmt.Errorf("%s: no JSON object in the first %d lines; cannot detect the format", src.path, detectLines)
		}
		return "", fmt.Errorf("%s: cannot tell the format from the first record's keys (%s); give the format explicitly", src.path, strings.Join(keys, ", "))
	}
	return found, nil
}

var errStop = errors.New("stop")

func formatOfKeys(obj map[string]json.RawMessage) Format {
	has := func(keys ...string) bool {
		for _, k := range keys {
			if _, ok := obj[k]; !ok {
				return false
			}
		}
		return true
	}
	switch {
	case has("input", "context", "answers"):
		return FormatLongBench
	case has("document", "question", "answers"):
		return FormatNarrativeQA
	case has("question", "answer", "context"):
		return FormatHotpotQA
	}
	return ""
}

// readLines calls fn for each non-blank line, of any length; r starts at
// line first.
func readLines(r *bufio.Reader, path string, first int, fn func(line int, data []byte) error) error {
	for n := first; ; n++ {
		data, err := r.ReadBytes('\n')
		if len(data) > 0 {
			if t := bytes.TrimSpace(data); len(t) > 0 {
				if ferr := fn(n, t); ferr != nil {
					return ferr
				}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s:%d: read: %w", path, n, err)
		}
	}
}
