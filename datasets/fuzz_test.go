package datasets

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// addFixtureLines seeds a fuzzer with the lines of a fixture.
func addFixtureLines(f *testing.F, name string) {
	data, err := os.ReadFile(fixture(name))
	if err != nil {
		f.Fatal(err)
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		f.Add(line)
	}
}

// checkSample holds for every sample a parser accepts.
func checkSample(t *testing.T, s Sample) {
	if s.ID == "" || s.Task == "" || s.Context == "" || s.Question == "" || len(s.References) == 0 {
		t.Fatalf("accepted an incomplete sample %+v", s)
	}
	for _, r := range s.References {
		if r == "" {
			t.Fatalf("accepted an empty reference in %+v", s)
		}
	}
}

func FuzzLongBenchLine(f *testing.F) {
	addFixtureLines(f, "longbench_narrativeqa.jsonl")
	for _, c := range badCases() {
		if c.format == FormatLongBench {
			f.Add([]byte(c.lines[2]))
		}
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		if s, err := parseLongBench(line); err == nil {
			checkSample(t, s)
		}
	})
}

func FuzzNarrativeQALine(f *testing.F) {
	addFixtureLines(f, "narrativeqa.jsonl")
	for _, c := range badCases() {
		if c.format == FormatNarrativeQA {
			f.Add([]byte(c.lines[2]))
		}
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		fields, err := parseNarrativeQAJSON(line)
		if err != nil {
			return
		}
		if s, err := newNarrativeQAState().sample(fields); err == nil {
			checkSample(t, s)
		}
	})
}

func FuzzHotpotQAJSON(f *testing.F) {
	data, err := os.ReadFile(fixture("hotpot_distractor.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(`[{"_id":"a","question":"q","answer":"a","supporting_facts":[["T",0]],"context":[["T",["s"," t"]]]}]`))
	f.Add([]byte("[\n{\"_id\": \"b\" \"x\"}\n]"))
	f.Add([]byte(`[] []`))
	f.Fuzz(func(t *testing.T, data []byte) {
		lastLine := 0
		err := readJSONArray(bufio.NewReader(bytes.NewReader(data)), "fuzz.json", 1, func(line, rec int, raw []byte) error {
			if line < lastLine || line > 1+bytes.Count(data, []byte("\n")) {
				t.Fatalf("record %d at line %d (previous %d) in %d lines", rec, line, lastLine, 1+bytes.Count(data, []byte("\n")))
			}
			lastLine = line
			if s, err := parseHotpotQA(raw); err == nil {
				checkSample(t, s)
			}
			return nil
		})
		if err != nil && !strings.HasPrefix(err.Error(), "fuzz.json") {
			t.Fatalf("error %q does not name the file", err)
		}
	})
}

// FuzzLoad feeds whole files through detection and every reader,
// Parquet included.
func FuzzLoad(f *testing.F) {
	for _, name := range []string{"longbench_hotpotqa.jsonl", "narrativeqa.jsonl", "hotpot_distractor.json", "narrativeqa.parquet"} {
		data, err := os.ReadFile(fixture(name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("\x1f\x8b"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "data")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		ds, err := Load(path, LoadOptions{SkipBad: true, Limit: 3})
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		for _, s := range ds.Samples {
			checkSample(t, s)
		}
		for _, p := range ds.Problems {
			if !strings.HasPrefix(p.Error(), path) {
				t.Fatalf("problem %q does not name the file", p)
			}
		}
	})
}
