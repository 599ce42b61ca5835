package datasets

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func fixture(name string) string { return filepath.Join("testdata", name) }

func load(t *testing.T, path string, opts LoadOptions) *Dataset {
	t.Helper()
	ds, err := Load(path, opts)
	if err != nil {
		t.Fatalf("Load(%s): %v", path, err)
	}
	return ds
}

func TestLoadFixtures(t *testing.T) {
	cases := []struct {
		file    string
		format  Format
		records int
		first   Sample // Context is checked as a prefix
		// line of the second sample
		secondLine int
	}{
		{"longbench_narrativeqa.jsonl", FormatLongBench, 4, Sample{
			ID: "lbn-0001", Task: "narrativeqa", Question: "How many steps does Maren climb to light the lamp?",
			References: []string{"ninety-one", "91 steps"}, Context: "Chapter One. The lighthouse keeper", Line: 1}, 2},
		{"longbench_hotpotqa.jsonl", FormatLongBench, 3, Sample{
			ID: "lbh-0001", Task: "hotpotqa", Question: "In which town was the engineer who designed the breakwater of Quillon Harbour born?",
			References: []string{"Kestrel Falls"}, Context: "Passage 1:\nLake Ember\nLake Ember is a freshwater lake", Line: 1}, 2},
		{"hotpot_distractor.json", FormatHotpotQA, 3, Sample{
			ID: "fx00000000000000000000a1", Task: "hotpotqa", Question: "In which town was the engineer who designed the breakwater of Quillon Harbour born?",
			References: []string{"Kestrel Falls"}, Context: "Passage 1:\nLake Ember\nLake Ember is a freshwater lake fed by four rivers. Its name", Line: 2}, 58},
		{"narrativeqa.jsonl", FormatNarrativeQA, 5, Sample{
			ID: "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567:c37b380f", Task: "narrativeqa", Question: "What is the name of Maren's cat?",
			References: []string{"Pilot", "a grey cat called Pilot"}, Context: "Chapter One. The lighthouse keeper", Line: 1}, 2},
		{"narrativeqa.parquet", FormatNarrativeQA, 5, Sample{
			ID: "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567:c37b380f", Task: "narrativeqa", Question: "What is the name of Maren's cat?",
			References: []string{"Pilot", "a grey cat called Pilot"}, Context: "Chapter One. The lighthouse keeper", Line: 1}, 2},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			ds := load(t, fixture(c.file), LoadOptions{})
			if ds.Format != c.format || ds.Records != c.records || ds.Skipped != 0 || len(ds.Samples) != c.records {
				t.Fatalf("format %s, %d records, %d skipped, %d samples", ds.Format, ds.Records, ds.Skipped, len(ds.Samples))
			}
			got := ds.Samples[0]
			if !strings.HasPrefix(got.Context, c.first.Context) {
				t.Errorf("context %.80q does not start with %q", got.Context, c.first.Context)
			}
			got.Context = c.first.Context
			if !reflect.DeepEqual(got, c.first) {
				t.Errorf("first sample\n got %+v\nwant %+v", got, c.first)
			}
			if ds.Samples[1].Line != c.secondLine {
				t.Errorf("second sample at line %d, want %d", ds.Samples[1].Line, c.secondLine)
			}
			// An explicit format gives the same result.
			again := load(t, fixture(c.file), LoadOptions{Format: c.format})
			if !reflect.DeepEqual(again.Samples, ds.Samples) {
				t.Error("explicit format loads differently")
			}
		})
	}
}

// The Parquet and JSONL exports of the same NarrativeQA rows load the same.
func TestNarrativeQAParquetMatchesJSONL(t *testing.T) {
	a := load(t, fixture("narrativeqa.jsonl"), LoadOptions{})
	b := load(t, fixture("narrativeqa.parquet"), LoadOptions{})
	if !reflect.DeepEqual(a.Samples, b.Samples) {
		t.Errorf("samples differ:\n%+v\n%+v", a.Samples, b.Samples)
	}
	// Rows of one story share its text.
	if a.Samples[0].Context != a.Samples[2].Context || a.Samples[0].Context == a.Samples[3].Context {
		t.Error("stories not grouped as in the fixture")
	}
}

// HotpotQA's native layout of passages matches LongBench's: the fixture's
// first native question has LongBench's first question's passages plus one.
func TestHotpotQAContextMatchesLongBench(t *testing.T) {
	lb := load(t, fixture("longbench_hotpotqa.jsonl"), LoadOptions{})
	native := load(t, fixture("hotpot_distractor.json"), LoadOptions{})
	want := lb.Samples[0].Context + "\n\nPassage 5:\n"
	if !strings.HasPrefix(native.Samples[0].Context, want) {
		t.Errorf("native context\n%s\ndoes not start with LongBench's\n%s", native.Samples[0].Context, want)
	}
	// LongBench-E's task names map to the task.
	if lb.Samples[2].Task != "hotpotqa" {
		t.Errorf("hotpotqa_e sample has task %q", lb.Samples[2].Task)
	}
}

func TestLoadGzip(t *testing.T) {
	for _, name := range []string{"longbench_narrativeqa.jsonl", "hotpot_distractor.json"} {
		data, err := os.ReadFile(fixture(name))
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(data)
		zw.Close()
		path := filepath.Join(t.TempDir(), name+".gz")
		os.WriteFile(path, buf.Bytes(), 0o644)
		plain := load(t, fixture(name), LoadOptions{})
		gz := load(t, path, LoadOptions{})
		if !reflect.DeepEqual(plain.Samples, gz.Samples) || gz.Format != plain.Format {
			t.Errorf("%s: gzipped file loads differently", name)
		}
	}
}

func TestDetect(t *testing.T) {
	for file, want := range map[string]Format{
		"longbench_narrativeqa.jsonl": FormatLongBench,
		"hotpot_distractor.json":      FormatHotpotQA,
		"narrativeqa.jsonl":           FormatNarrativeQA,
		"narrativeqa.parquet":         FormatNarrativeQA,
	} {
		if got, err := Detect(fixture(file)); err != nil || got != want {
			t.Errorf("Detect(%s) = %s, %v; want %s", file, got, err, want)
		}
	}
	dir := t.TempDir()
	cases := []struct {
		name, content string
		want          Format
		err           string
	}{
		{"blank-first.jsonl", "\n\n  \n" + `{"input":"q","context":"c","answers":["a"],"_id":"1","dataset":"x"}` + "\n", FormatLongBench, ""},
		{"bad-first.jsonl", "{oops\n" + `{"document":{},"question":{},"answers":[]}` + "\n", FormatNarrativeQA, ""},
		{"hotpot.jsonl", `{"_id":"1","question":"q","answer":"a","context":[]}` + "\n", FormatHotpotQA, ""},
		{"unknown.jsonl", `{"foo":1,"bar":2}` + "\n", "", "first record's keys (bar, foo)"},
		{"empty.jsonl", "", "", "empty file"},
		{"text.txt", "hello", "", "not JSON lines, a JSON array or Parquet"},
		{"no-object.jsonl", "{x\n{y\n", "", "no JSON object in the first"},
	}
	for _, c := range cases {
		path := filepath.Join(dir, c.name)
		os.WriteFile(path, []byte(c.content), 0o644)
		got, err := Detect(path)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), path) {
				t.Errorf("Detect(%s) = %s, %v; want error naming the file with %q", c.name, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("Detect(%s) = %s, %v; want %s", c.name, got, err, c.want)
		}
	}
	if _, err := Detect(filepath.Join(dir, "missing.jsonl")); err == nil {
		t.Error("missing file: no error")
	}
}

// badCase is a file with one bad record among good ones.
type badCase struct {
	name    string
	format  Format
	lines   []string // the file, one string per line
	badLine int      // 1-based
	want    string   // substring of the error
}

const (
	lbGood  = `{"input":"q%d","context":"ctx","answers":["a"],"_id":"id%d","dataset":"narrativeqa","length":3}`
	nqaGood = `{"document":{"id":"d1","text":"story"},"question":{"text":"q%d?","tokens":[]},"answers":[{"text":"a%d","tokens":[]}]}`
)

func goodLines(pattern string, from, n int) []string {
	var out []string
	for i := from; i < from+n; i++ {
		out = append(out, fmt.Sprintf(pattern, i, i))
	}
	return out
}

func withBad(pattern, bad string) []string {
	return append(append(goodLines(pattern, 1, 2), bad), goodLines(pattern, 10, 2)...)
}

func badCases() []badCase {
	return []badCase{
		{"lb invalid json", FormatLongBench, withBad(lbGood, `{"input": "q", "context": `), 3, "invalid JSON"},
		{"lb not an object", FormatLongBench, withBad(lbGood, `["input"]`), 3, "want an object"},
		{"lb answers string", FormatLongBench, withBad(lbGood, `{"input":"q","context":"c","answers":"a","_id":"x","dataset":"d"}`), 3, `field "answers": found a JSON string where an array of strings belongs`},
		{"lb answers numbers", FormatLongBench, withBad(lbGood, `{"input":"q","context":"c","answers":[1],"_id":"x","dataset":"d"}`), 3, `field "answers`},
		{"lb no id", FormatLongBench, withBad(lbGood, `{"input":"q","context":"c","answers":["a"],"dataset":"d"}`), 3, `field "_id" is missing`},
		{"lb id number", FormatLongBench, withBad(lbGood, `{"input":"q","context":"c","answers":["a"],"_id":7,"dataset":"d"}`), 3, `field "_id": found a JSON number where a string belongs`},
		{"lb empty context", FormatLongBench, withBad(lbGood, `{"input":"q","context":"","answers":["a"],"_id":"x","dataset":"d"}`), 3, `id "x": field "context" is empty`},
		{"lb no input", FormatLongBench, withBad(lbGood, `{"context":"c","answers":["a"],"_id":"x","dataset":"d"}`), 3, `field "input" is missing`},
		{"lb no answers", FormatLongBench, withBad(lbGood, `{"input":"q","context":"c","answers":[],"_id":"x","dataset":"d"}`), 3, `field "answers" has no answers`},
		{"lb null answer", FormatLongBench, withBad(lbGood, `{"input":"q","context":"c","answers":["a",null],"_id":"x","dataset":"d"}`), 3, `answer 1 is empty or null`},
		{"lb no dataset", FormatLongBench, withBad(lbGood, `{"input":"q","context":"c","answers":["a"],"_id":"x"}`), 3, `field "dataset" is missing`},
		{"lb duplicate id", FormatLongBench, withBad(lbGood, fmt.Sprintf(lbGood, 1, 1)), 3, `id "id1": duplicate id (first at line 1)`},
		{"nqa no document", FormatNarrativeQA, withBad(nqaGood, `{"question":{"text":"q"},"answers":[{"text":"a"}]}`), 3, `field "document" is missing`},
		{"nqa no text", FormatNarrativeQA, withBad(nqaGood, `{"document":{"id":"d"},"question":{"text":"q"},"answers":[{"text":"a"}]}`), 3, `field "document.text" is missing`},
		{"nqa question number", FormatNarrativeQA, withBad(nqaGood, `{"document":{"id":"d","text":"t"},"question":{"text":5},"answers":[{"text":"a"}]}`), 3, `field "question.text": found a JSON number`},
		{"nqa answers empty", FormatNarrativeQA, withBad(nqaGood, `{"document":{"id":"d","text":"t"},"question":{"text":"q"},"answers":[]}`), 3, `"answers.text" has no answers`},
		{"nqa answer null", FormatNarrativeQA, withBad(nqaGood, `{"document":{"id":"d","text":"t"},"question":{"text":"q"},"answers":[{"text":null}]}`), 3, `answer 0 is empty or null`},
		{"nqa answers object", FormatNarrativeQA, withBad(nqaGood, `{"document":{"id":"d","text":"t"},"question":{"text":"q"},"answers":{"text":"a"}}`), 3, `field "answers": found a JSON object where an array belongs`},
	}
}

func writeLines(t *testing.T, lines []string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "data.jsonl")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadMalformedLines(t *testing.T) {
	for _, c := range badCases() {
		t.Run(c.name, func(t *testing.T) {
			path := writeLines(t, c.lines)
			_, err := Load(path, LoadOptions{Format: c.format})
			var rerr *RecordError
			if !errors.As(err, &rerr) {
				t.Fatalf("err = %v, want a RecordError", err)
			}
			prefix := fmt.Sprintf("%s:%d: ", path, c.badLine)
			if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %q, want %q...%q", err, prefix, c.want)
			}
			ds, err := Load(path, LoadOptions{Format: c.format, SkipBad: true})
			if err != nil {
				t.Fatalf("SkipBad: %v", err)
			}
			if ds.Records != 4 || ds.Skipped != 1 || len(ds.Samples) != 4 || len(ds.Problems) != 1 {
				t.Fatalf("SkipBad: %d records, %d skipped, %d samples, problems %v", ds.Records, ds.Skipped, len(ds.Samples), ds.Problems)
			}
			if !strings.HasPrefix(ds.Problems[0].Error(), prefix) {
				t.Errorf("problem %q does not name %s", ds.Problems[0], prefix)
			}
			if ds.Samples[2].Line != 4 {
				t.Errorf("sample after the bad line has line %d, want 4", ds.Samples[2].Line)
			}
		})
	}
}

// hotpotArray writes a pretty-printed HotpotQA array whose third element
// is bad, and returns the path and the line that element starts on.
func hotpotArray(t *testing.T, bad string) (string, int) {
	t.Helper()
	good := func(id string) string {
		return `{
  "_id": "` + id + `",
  "question": "Which?",
  "answer": "This one",
  "supporting_facts": [["T", 0]],
  "context": [["T", ["First sentence.", " Second."]]],
  "type": "bridge",
  "level": "easy"
 }`
	}
	text := "[\n " + good("a") + ",\n " + good("b") + ",\n " + bad + ",\n " + good("c") + "\n]\n"
	line := 1 + strings.Count(text[:strings.Index(text, bad)], "\n")
	path := filepath.Join(t.TempDir(), "hotpot.json")
	os.WriteFile(path, []byte(text), 0o644)
	return path, line
}

func TestLoadMalformedHotpotQA(t *testing.T) {
	cases := []struct {
		name, bad, want string
	}{
		{"no answer", `{"_id": "x", "question": "q", "context": [["T", ["s"]]]}`, `id "x": field "answer" is missing`},
		{"bad paragraph", `{"_id": "x", "question": "q", "answer": "a", "context": [["T", "s"]]}`, `field "context": paragraph 0 is not a [title, [sentences...]] pair`},
		{"empty context", `{"_id": "x", "question": "q", "answer": "a", "context": []}`, `"context" has no paragraphs`},
		{"bad fact", `{"_id": "x", "question": "q", "answer": "a", "supporting_facts": [["T"]], "context": [["T", ["s"]]]}`, `"supporting_facts": element 0 is not`},
		{"level number", `{"_id": "x", "question": "q", "answer": "a", "context": [["T", ["s"]]], "level": 3}`, `field "level": found a JSON number`},
		{"duplicate", `{"_id": "a", "question": "q", "answer": "a", "context": [["T", ["s"]]]}`, `id "a": duplicate id (first at record 1, line 2)`},
		{"not object", `"just a string"`, `want an object`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path, line := hotpotArray(t, c.bad)
			_, err := Load(path, LoadOptions{})
			prefix := fmt.Sprintf("%s:%d: record 3: ", path, line)
			if err == nil || !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q...%q", err, prefix, c.want)
			}
			ds, err := Load(path, LoadOptions{SkipBad: true})
			if err != nil {
				t.Fatal(err)
			}
			if ds.Records != 3 || ds.Skipped != 1 || ds.Samples[2].ID != "c" {
				t.Errorf("SkipBad: %d records, %d skipped, samples %v", ds.Records, ds.Skipped, ds.Samples)
			}
		})
	}
}

// Damage that leaves the rest of a JSON array unreadable fails even with
// SkipBad, naming the line.
func TestLoadBrokenHotpotQAArray(t *testing.T) {
	dir := t.TempDir()
	const ok = `{"_id":"a","question":"q","answer":"a","context":[["T",["s"]]]}`
	cases := []struct {
		name, text, want string
	}{
		{"syntax", "[\n" + ok + ",\n{\"_id\": \"b\" \"x\"}\n]", ":3: invalid JSON"},
		{"truncated", "[\n" + ok + ",\n{\"_id\": \"a\",\n\"question\": \"q\"", ":4: JSON array ends early"},
		{"trailing", "[" + ok + "]\n\n]", ":3: data after the end"},
		{"unclosed", "[" + ok + "\n", ":2: JSON array ends early"},
	}
	for _, c := range cases {
		path := filepath.Join(dir, c.name+".json")
		os.WriteFile(path, []byte(c.text), 0o644)
		for _, skip := range []bool{false, true} {
			_, err := Load(path, LoadOptions{SkipBad: skip})
			if err == nil || !strings.Contains(err.Error(), path+c.want) {
				t.Errorf("%s (SkipBad %v): err = %v, want %q", c.name, skip, err, path+c.want)
			}
		}
	}
}

func TestLoadSampling(t *testing.T) {
	path := writeLines(t, goodLines(lbGood, 0, 50))
	ids := func(ds *Dataset) []string {
		var out []string
		for _, s := range ds.Samples {
			out = append(out, s.ID)
		}
		return out
	}
	a := load(t, path, LoadOptions{Limit: 5, Seed: 1})
	b := load(t, path, LoadOptions{Limit: 5, Seed: 1})
	c := load(t, path, LoadOptions{Limit: 5, Seed: 2})
	if !reflect.DeepEqual(ids(a), ids(b)) {
		t.Error("same seed, different samples")
	}
	if reflect.DeepEqual(ids(a), ids(c)) {
		t.Error("different seeds, same samples")
	}
	if a.Records != 50 || len(a.Samples) != 5 {
		t.Errorf("%d records, %d samples", a.Records, len(a.Samples))
	}
	for i := 1; i < len(a.Samples); i++ {
		if a.Samples[i].Line <= a.Samples[i-1].Line {
			t.Errorf("samples not in file order: %v", ids(a))
		}
	}
	head := load(t, path, LoadOptions{Limit: 3, Head: true, Seed: 9})
	if got := ids(head); !reflect.DeepEqual(got, []string{"id0", "id1", "id2"}) {
		t.Errorf("Head: %v", got)
	}
	if all := load(t, path, LoadOptions{Limit: 500, Seed: 3}); len(all.Samples) != 50 {
		t.Errorf("limit above size: %d samples", len(all.Samples))
	}
	if _, err := Load(path, LoadOptions{Limit: -1}); err == nil {
		t.Error("negative limit: no error")
	}

	// Uniformity: over many seeds each record is chosen with probability
	// k/n. The count for one record is Binomial(seeds, k/n); allow five
	// standard deviations.
	const seeds, n, k = 1000, 10, 3
	small := writeLines(t, goodLines(lbGood, 0, n))
	counts := map[string]int{}
	for s := range uint64(seeds) {
		for _, id := range ids(load(t, small, LoadOptions{Limit: k, Seed: s})) {
			counts[id]++
		}
	}
	p := float64(k) / n
	mean, sd := seeds*p, sqrt(seeds*p*(1-p))
	for id, c := range counts {
		if float64(c) < mean-5*sd || float64(c) > mean+5*sd {
			t.Errorf("record %s chosen %d times in %d draws, expected %.0f ± %.0f", id, c, seeds, mean, 5*sd)
		}
	}
	if len(counts) != n {
		t.Errorf("only %d of %d records ever chosen", len(counts), n)
	}
}

func sqrt(x float64) float64 {
	z := x
	for range 50 {
		z = (z + x/z) / 2
	}
	return z
}

func TestValidate(t *testing.T) {
	rep, err := Validate(fixture("longbench_hotpotqa.jsonl"), FormatAuto)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Format != FormatLongBench || rep.Records != 3 || rep.Bad != 0 || !reflect.DeepEqual(rep.Tasks, []TaskCount{{"hotpotqa", 3}}) {
		t.Errorf("report %+v", rep)
	}
	ds := load(t, fixture("longbench_hotpotqa.jsonl"), LoadOptions{})
	minC, maxC, total := len(ds.Samples[0].Context), 0, 0
	for _, s := range ds.Samples {
		minC, maxC, total = min(minC, len(s.Context)), max(maxC, len(s.Context)), total+len(s.Context)
	}
	if rep.MinContext != minC || rep.MaxContext != maxC || rep.MeanContext != float64(total)/3 {
		t.Errorf("context sizes %d %d %v, want %d %d %v", rep.MinContext, rep.MaxContext, rep.MeanContext, minC, maxC, float64(total)/3)
	}

	// Many bad lines: all counted, the first MaxProblems kept.
	lines := goodLines(lbGood, 0, 3)
	for i := range MaxProblems + 5 {
		lines = append(lines, fmt.Sprintf(`{"_id":"bad%d"}`, i))
	}
	rep, err = Validate(writeLines(t, lines), FormatAuto)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 3 || rep.Bad != MaxProblems+5 || len(rep.Problems) != MaxProblems {
		t.Errorf("%d records, %d bad, %d problems", rep.Records, rep.Bad, len(rep.Problems))
	}
	if !strings.Contains(rep.Problems[0].Error(), ":4: ") {
		t.Errorf("first problem %q does not name line 4", rep.Problems[0])
	}
	if _, err := Validate(fixture("longbench_hotpotqa.jsonl"), "csv"); err == nil || !strings.Contains(err.Error(), "unknown dataset format") {
		t.Errorf("bad format: %v", err)
	}
}

func TestParseFormat(t *testing.T) {
	for _, f := range Formats() {
		if got, err := ParseFormat(string(f)); err != nil || got != f {
			t.Errorf("ParseFormat(%s) = %s, %v", f, got, err)
		}
	}
	if got, err := ParseFormat(""); err != nil || got != FormatAuto {
		t.Errorf("ParseFormat(\"\") = %s, %v", got, err)
	}
	if _, err := ParseFormat("xml"); err == nil {
		t.Error("unknown format accepted")
	}
}

func TestLoadWrongExplicitFormat(t *testing.T) {
	_, err := Load(fixture("narrativeqa.jsonl"), LoadOptions{Format: FormatLongBench})
	if err == nil || !strings.Contains(err.Error(), "narrativeqa.jsonl:1: ") || !strings.Contains(err.Error(), `field "answers": found a JSON object where a string belongs`) {
		t.Errorf("err = %v", err)
	}
	_, err = Load(fixture("narrativeqa.parquet"), LoadOptions{Format: FormatHotpotQA})
	if err == nil || !strings.Contains(err.Error(), "Parquet files are read as narrativeqa") {
		t.Errorf("err = %v", err)
	}
}
