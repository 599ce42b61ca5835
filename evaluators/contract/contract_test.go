package contract

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func TestReadItems(t *testing.T) {
	in := `{"id":"a","prediction":"Paris","references":["Paris"],"model":"extra fields are ignored"}

{"id":"b","prediction":"","references":[],"meta":{"task":"needle","depth":0.5}}` + "\r\n" +
		`{"id":"c","prediction":"x","references":["y","z"],"meta":null}`
	items, err := ReadItems(strings.NewReader(in), "preds.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 3 || items[0].ID != "a" || items[1].References == nil || len(items[2].References) != 2 {
		t.Fatalf("items %+v", items)
	}
	if string(items[1].Meta) != `{"task":"needle","depth":0.5}` || items[2].Meta != nil {
		t.Errorf("meta %q, %q", items[1].Meta, items[2].Meta)
	}

	// What is written is what a module reads back.
	var buf bytes.Buffer
	if err := WriteItems(&buf, items); err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		got, err := DecodeItem([]byte(line))
		if err != nil || !sameItem(got, items[i]) {
			t.Errorf("item %d: wrote %q, read back %+v, %v", i, line, got, err)
		}
	}
}

func TestReadItemsErrorsNameTheLine(t *testing.T) {
	cases := []struct{ in, says string }{
		{"{\"id\":\"a\",\"prediction\":\"\",\"references\":[]}\nnot json\n", "preds.jsonl:2: not a JSON object"},
		{`{"prediction":"x","references":[]}`, `preds.jsonl:1: missing "id"`},
		{`{"id":"","prediction":"x","references":[]}`, `preds.jsonl:1: "id" is empty`},
		{`{"id":"a","references":[]}`, `preds.jsonl:1: item "a": missing "prediction"`},
		{`{"id":"a","prediction":"x"}`, `preds.jsonl:1: item "a": missing "references"`},
		{`{"id":"a","prediction":"x","references":"y"}`, "preds.jsonl:1: not a JSON object"},
		{`{"id":"a","prediction":"x","references":[],"meta":[1]}`, `preds.jsonl:1: item "a": "meta" must be an object`},
		{`{"id":"a","prediction":"x","references":[]} {}`, "preds.jsonl:1: trailing data"},
		{"{\"id\":\"a\",\"prediction\":\"\",\"references\":[]}\n\n{\"id\":\"a\",\"prediction\":\"\",\"references\":[]}", `preds.jsonl:3: id "a" already used on line 1`},
		{`{"id":"a","prediction":"` + strings.Repeat("x", MaxLineBytes) + `","references":[]}`, "preds.jsonl:1: line longer than"},
	}
	for _, tc := range cases {
		_, err := ReadItems(strings.NewReader(tc.in), "preds.jsonl")
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("ReadItems(%.60q): error %v, want %q", tc.in, err, tc.says)
		}
	}
}

func FuzzReadItems(f *testing.F) {
	f.Add([]byte(`{"id":"a","prediction":"Paris","references":["Paris"]}` + "\n" + `{"id":"b","prediction":"","references":[],"meta":{"x":[1,{}]}}`))
	f.Add([]byte("\n\r\n{\"id\":\"\\u00e9\",\"prediction\":null,\"references\":null}"))
	f.Add([]byte(`{"id":"a","prediction":"x","references":[null,"y"],"meta":null}`))
	f.Add([]byte("{\"id\":\"a\xff\",\"prediction\":\"x\",\"references\":[]}\n{"))
	f.Fuzz(func(t *testing.T, data []byte) {
		items, err := ReadItems(bytes.NewReader(data), "fuzz")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz:") {
				t.Fatalf("error %q does not name the input and line", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, it := range items {
			if it.ID == "" || seen[it.ID] || it.References == nil {
				t.Fatalf("accepted a bad item %+v", it)
			}
			seen[it.ID] = true
			if it.Meta != nil && (it.Meta[0] != '{' || !json.Valid(it.Meta)) {
				t.Fatalf("meta %q is not an object", it.Meta)
			}
		}
		// Accepted items survive the trip to a module unchanged.
		var buf bytes.Buffer
		if err := WriteItems(&buf, items); err != nil {
			t.Fatal(err)
		}
		lines := bytes.Split(bytes.TrimSuffix(buf.Bytes(), []byte("\n")), []byte("\n"))
		for i, it := range items {
			got, err := DecodeItem(lines[i])
			if err != nil || !sameItem(got, it) {
				t.Fatalf("item %+v came back as %+v, %v", it, got, err)
			}
		}
	})
}

func validDescriptor() Descriptor {
	return Descriptor{Contract: Version, Name: "squad", Version: "1.0.0", Scores: []ScoreSpec{{Name: "em", HigherIsBetter: true}, {Name: "f1", HigherIsBetter: true}}}
}

func TestDescriptorValidation(t *testing.T) {
	mutate := map[string]func(*Descriptor){
		"contract version": func(d *Descriptor) { d.Contract = 2 },
		"empty name":       func(d *Descriptor) { d.Name = "" },
		"name with space":  func(d *Descriptor) { d.Name = "my eval" },
		"name with slash":  func(d *Descriptor) { d.Name = "../x" },
		"long name":        func(d *Descriptor) { d.Name = strings.Repeat("a", 65) },
		"no version":       func(d *Descriptor) { d.Version = "" },
		"no scores":        func(d *Descriptor) { d.Scores = nil },
		"duplicate score":  func(d *Descriptor) { d.Scores[1].Name = "em" },
		"bad score name":   func(d *Descriptor) { d.Scores[0].Name = "e m" },
		"too many scores": func(d *Descriptor) {
			for i := 0; i < MaxScores; i++ {
				d.Scores = append(d.Scores, ScoreSpec{Name: "s" + strings.Repeat("x", i%60) + string(rune('a'+i%26))})
			}
		},
	}
	if err := validDescriptor().Validate(); err != nil {
		t.Fatal(err)
	}
	for name, m := range mutate {
		d := validDescriptor()
		d.Scores = append([]ScoreSpec(nil), d.Scores...)
		m(&d)
		if err := d.Validate(); err == nil {
			t.Errorf("%s: accepted %+v", name, d)
		}
	}
	if _, err := ParseDescriptor([]byte(`{"contract":1,"name":"x","version":"1","scores":[{"name":"a"}],"surprise":true}`)); err == nil {
		t.Error("ParseDescriptor accepted an unknown field")
	}
}

func FuzzParseDescriptor(f *testing.F) {
	good, _ := json.Marshal(validDescriptor())
	f.Add(good)
	f.Add([]byte(`{"contract":1,"name":"x","version":"1","scores":[{"name":"a"},{"name":"a"}]}`))
	f.Add([]byte(`{"contract":1,"name":"x","version":"1","scores":[]} trailing`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseDescriptor(data)
		if err != nil {
			return
		}
		if d.Validate() != nil || !ValidName(d.Name) || len(d.ScoreNames()) != len(d.Scores) {
			t.Fatalf("accepted an invalid descriptor %+v", d)
		}
	})
}

func TestParseScoreLine(t *testing.T) {
	d := validDescriptor()
	good := `{"id":"q1","scores":{"em":0,"f1":0.25}}`
	if sl, err := ParseScoreLine([]byte(good), "q1", d); err != nil || sl.Scores["f1"] != 0.25 {
		t.Fatalf("%+v, %v", sl, err)
	}
	for line, says := range map[string]string{
		good:                            `does not echo the input id "q2"`,
		`{"id":"q2","scores":{"em":0}}`: `score "f1" is missing`,
		`{"id":"q2","scores":{"em":0,"f1":1,"x":2}}`: `score "x" is not declared`,
		`{"id":"q2","scores":{"em":0,"f1":"1"}}`:     `score "f1" is not a number`,
		`{"id":"q2","scores":{"em":0,"f1":null}}`:    `score "f1" is not a number`,
		`{"id":"q2","scores":{"em":0,"f1":1e400}}`:   "value out of range",
		`{"id":"q2","scores":{"em":0,"f1":1},"x":1}`: "unknown field",
		`{"id":"q2"}`:                            `missing "scores"`,
		`{"id":"q2","scores":{"em":0,"f1":1}}{}`: "trailing data",
		`[]`:                                     "not a valid score line",
	} {
		_, err := ParseScoreLine([]byte(line), "q2", d)
		if err == nil || !strings.Contains(err.Error(), says) {
			t.Errorf("ParseScoreLine(%s): error %v, want %q", line, err, says)
		}
	}
}

// referenceScoreLine is encoding/json's strict decoding of a score line.
func referenceScoreLine(line []byte) (ScoreLine, error) {
	var sl ScoreLine
	err := strictUnmarshal(line, &sl)
	return sl, err
}

func FuzzDecodeScoreLineAgreesWithEncodingJSON(f *testing.F) {
	for _, s := range []string{
		`{"id":"q1","scores":{"em":0,"f1":0.25}}`, `{"scores":{"a":-1.5e-3,"a":2},"id":"\u0071"}`,
		`{"id":null,"scores":null}`, `{"id":"x","scores":{}}`, `{"ID":"x","scores":{"a":1}}`,
		`{"id":"x","scores":{"a":01}}`, `{"id":"x","scores":{"a":1e999}}`, ` {"id":"x"} `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		got, err := decodeScoreLine(line)
		if err != nil {
			return
		}
		want, werr := referenceScoreLine(line)
		if werr != nil {
			t.Fatalf("decodeScoreLine accepted %q, encoding/json: %v", line, werr)
		}
		if got.ID != want.ID || len(got.Scores) != len(want.Scores) || (got.Scores == nil) != (want.Scores == nil) {
			t.Fatalf("%q: got %+v, encoding/json %+v", line, got, want)
		}
		for k, v := range want.Scores {
			if g, ok := got.Scores[k]; !ok || g != v {
				t.Fatalf("%q: score %q = %v, encoding/json %v", line, k, g, v)
			}
		}
	})
}

func FuzzParseScoreLine(f *testing.F) {
	f.Add([]byte(`{"id":"q1","scores":{"em":0,"f1":0.25}}`), "q1")
	f.Add([]byte(`{"id":"q1","scores":{"em":-0,"f1":1E-3,"em":1}}`), "q1")
	f.Add([]byte(`{"id":"\u0071\u0031","scores":null}`), "q1")
	d := validDescriptor()
	f.Fuzz(func(t *testing.T, line []byte, id string) {
		sl, err := ParseScoreLine(line, id, d)
		if err != nil {
			return
		}
		if sl.ID != id || len(sl.Scores) != len(d.Scores) {
			t.Fatalf("accepted %+v for id %q", sl, id)
		}
		for _, name := range d.ScoreNames() {
			if v, ok := sl.Scores[name]; !ok || math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("accepted score %s = %v", name, v)
			}
		}
	})
}
