package contract

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// referenceDecode is what DecodeItem promises to equal: encoding/json into
// a map of raw values (exact keys, last duplicate wins), then each known
// field decoded on its own.
func referenceDecode(line []byte) (Item, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(line, &fields); err != nil {
		return Item{}, err
	}
	var it Item
	for key, raw := range fields {
		var err error
		switch key {
		case "id":
			err = json.Unmarshal(raw, &it.ID)
		case "prediction":
			err = json.Unmarshal(raw, &it.Prediction)
		case "references":
			err = json.Unmarshal(raw, &it.References)
		case "meta":
			it.Meta = raw
		}
		if err != nil {
			return Item{}, err
		}
	}
	return it, nil
}

func sameItem(a, b Item) bool {
	return a.ID == b.ID && a.Prediction == b.Prediction &&
		slices.Equal(a.References, b.References) && (a.References == nil) == (b.References == nil) &&
		bytes.Equal(a.Meta, b.Meta)
}

var codecSeeds = []string{
	`{"id":"q1","prediction":"Paris","references":["Paris","paris, France"]}`,
	`{"id":"q2","prediction":"","references":[],"meta":{"task":"narrativeqa","len":[1,2.5e3,-0.1,true,false,null]}}`,
	` { "references" : null , "id" : "x" , "prediction" : null } `,
	`{"id":"esc\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00\ud800x","prediction":"caf\u00E9","references":["\u0000"]}`,
	`{"id":"dup","id":"second","extra":{"a":[{}]},"references":["a",null]}`,
	"{\"id\":\"raw \xff\xfe bytes \xe2\x82\",\"prediction\":\"\xc3\xa9\"}",
	`{"id":"n","meta":null}`,
	`{}`,
	`{"id":"bad","references":[1]}`,
	`{"id":"bad" "prediction":"x"}`,
	`{"id":"trail"} x`,
	`{"id":"num","x":01}`,
	`{"id":"num","x":-}`,
	`{"id":"num","x":1.}`,
	`{"id":"num","x":1e+}`,
	`{"id":"ctl","prediction":"a` + "\x01" + `b"}`,
	`{"id":"u","prediction":"\u12"}`,
	`[1,2]`,
	`{"id":"deep","meta":` + strings.Repeat("[", 50) + strings.Repeat("]", 50) + `}`,
	``,
}

func TestDecodeItemMatchesEncodingJSON(t *testing.T) {
	for _, s := range codecSeeds {
		checkDecodeItem(t, []byte(s))
	}
}

func TestDecodeItemNestingLimit(t *testing.T) {
	for _, depth := range []int{9998, 9999, 10000} {
		line := []byte(`{"meta":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}`)
		checkDecodeItem(t, line)
	}
}

func checkDecodeItem(t *testing.T, line []byte) {
	t.Helper()
	want, werr := referenceDecode(line)
	got, gerr := DecodeItem(line)
	if bytes.Equal(bytes.TrimSpace(line), []byte("null")) {
		// encoding/json decodes a top-level null into an empty map; a
		// null item is an error for DecodeItem.
		if gerr == nil {
			t.Errorf("DecodeItem(null) succeeded")
		}
		return
	}
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("DecodeItem(%q): error %v, encoding/json error %v", line, gerr, werr)
	}
	if werr == nil && !sameItem(got, want) {
		t.Fatalf("DecodeItem(%q) = %#v, encoding/json %#v", line, got, want)
	}
}

func FuzzDecodeItem(f *testing.F) {
	for _, s := range codecSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		checkDecodeItem(t, line)
	})
}

func TestAppendScoreLineRoundTrips(t *testing.T) {
	names := []string{"em", "f1", "rougeL_fmeasure"}
	values := []float64{1, 0.6666666666666666, 1e-300}
	line, err := AppendScoreLine(nil, "id \"7\"\n\x00", names, values)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(line, []byte("}}\n")) || bytes.Count(line, []byte("\n")) != 1 {
		t.Fatalf("line %q is not one JSON line", line)
	}
	d := Descriptor{Contract: Version, Name: "x", Version: "1", Scores: []ScoreSpec{{Name: "em"}, {Name: "f1"}, {Name: "rougeL_fmeasure"}}}
	sl, err := ParseScoreLine(bytes.TrimSuffix(line, []byte("\n")), "id \"7\"\n\x00", d)
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range names {
		if sl.Scores[name] != values[i] {
			t.Errorf("%s = %v after the round trip, want %v", name, sl.Scores[name], values[i])
		}
	}
	for _, bad := range [][]float64{
		{1, 1},
		{1, 1, math.NaN()},
		{1, 1, math.Inf(-1)},
		{1, 1, 0, 0},
	} {
		if _, err := AppendScoreLine(nil, "x", names, bad); err == nil {
			t.Errorf("AppendScoreLine accepted %v", bad)
		}
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "q\"b\\s/\x00\x1f\x7f", "é😀", "\xff\xfe", "\u2028<>&"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := AppendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("AppendJSONString(%q) = %q, not JSON: %v", s, out, err)
		}
		if want := replaceEachInvalid(s); back != want {
			t.Fatalf("round trip of %q gave %q", s, back)
		}
	})
}

// replaceEachInvalid replaces every invalid byte (not every run) with
// U+FFFD, which is what both encoders do.
func replaceEachInvalid(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		b.WriteRune(r)
		i += size
	}
	return b.String()
}

func FuzzSpecialByte(f *testing.F) {
	f.Add(uint64(0x6162636465666768))
	f.Add(uint64(0x2261626364656667))
	f.Add(uint64(0x7f1f5c8022204142))
	f.Fuzz(func(t *testing.T, x uint64) {
		want := false
		for k := 0; k < 8; k++ {
			c := byte(x >> (8 * k))
			want = want || c == '"' || c == '\\' || c < 0x20 || c >= 0x80
		}
		if got := specialByte(x); got != want {
			t.Fatalf("specialByte(%#016x) = %v, want %v", x, got, want)
		}
	})
}

func TestScoreLineEncoderRemembersExactly(t *testing.T) {
	var e ScoreLineEncoder
	names := []string{"a", "b", "c", "d"}
	for round := 0; round < 3; round++ {
		for _, vals := range [][]float64{{0, 1, 1.0 / 3, math.Copysign(0, -1)}, {0.1, 2.5e-300, 1e300, -7}} {
			line, err := e.Append(nil, "x", names, vals)
			if err != nil {
				t.Fatal(err)
			}
			var back ScoreLine
			if err := json.Unmarshal(line, &back); err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			for i, name := range names {
				if got := back.Scores[name]; got != vals[i] || math.Signbit(got) != math.Signbit(vals[i]) {
					t.Errorf("round %d: %s = %v, wrote %v (%q)", round, name, got, vals[i], line)
				}
			}
		}
	}
}
