package sdk

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/longctx/longctx/evaluators/contract"
)

var lengthDescriptor = contract.Descriptor{
	Contract: contract.Version, Name: "length", Version: "1.0.0",
	Scores: []contract.ScoreSpec{{Name: "words"}, {Name: "refs", HigherIsBetter: true}},
}

func lengthScore(it contract.Item, scores []float64) error {
	if it.Prediction == "fail" {
		return errors.New("asked to fail")
	}
	if it.Prediction == "nan" {
		scores[0] = math.NaN()
		return nil
	}
	scores[0] = float64(len(strings.Fields(it.Prediction)))
	scores[1] = float64(len(it.References))
	return nil
}

func TestRunDescribes(t *testing.T) {
	var out bytes.Buffer
	if err := Run([]string{"length", "describe"}, strings.NewReader("ignored"), &out, lengthDescriptor, lengthScore); err != nil {
		t.Fatal(err)
	}
	d, err := contract.ParseDescriptor(bytes.TrimSpace(out.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "length" || len(d.Scores) != 2 || !d.Scores[1].HigherIsBetter {
		t.Errorf("descriptor round trip gave %+v", d)
	}
}

func TestRunScoresEveryLineInOrder(t *testing.T) {
	long := strings.Repeat("word ", 40000) // a line longer than the read buffer
	in := `{"id":"a","prediction":"one two three","references":["x"]}` + "\n\n" +
		`{"id":"b","prediction":"` + long + `","references":[],"meta":{"k":1}}` + "\r\n" +
		`{"id":"c\u00e9","prediction":"","references":["x","y"]}` // no final newline
	var out bytes.Buffer
	if err := Run([]string{"length"}, strings.NewReader(in), &out, lengthDescriptor, lengthScore); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	want := []struct {
		id          string
		words, refs float64
	}{{"a", 3, 1}, {"b", 40000, 0}, {"cé", 0, 2}}
	if len(lines) != len(want) {
		t.Fatalf("%d output lines, want %d:\n%s", len(lines), len(want), out.String())
	}
	for i, w := range want {
		sl, err := contract.ParseScoreLine([]byte(lines[i]), w.id, lengthDescriptor)
		if err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if sl.Scores["words"] != w.words || sl.Scores["refs"] != w.refs {
			t.Errorf("line %d: %v", i+1, sl.Scores)
		}
	}
}

func TestRunReportsErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		in   string
		d    contract.Descriptor
		says string
	}{
		{"bad json", []string{"length"}, "{\"id\":\"a\",\"prediction\":\"x\"}\nnot json\n", lengthDescriptor, "stdin line 2"},
		{"score error", []string{"length"}, `{"id":"q7","prediction":"fail","references":[]}`, lengthDescriptor, `item "q7": asked to fail`},
		{"nan", []string{"length"}, `{"id":"q8","prediction":"nan","references":[]}`, lengthDescriptor, `item "q8": score "words" is NaN`},
		{"extra argument", []string{"length", "--fast"}, "", lengthDescriptor, `unexpected argument "--fast"`},
		{"bad descriptor", []string{"length", "describe"}, "", contract.Descriptor{Contract: contract.Version, Name: "x y", Version: "1"}, "descriptor"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Run(tc.args, strings.NewReader(tc.in), &bytes.Buffer{}, tc.d, lengthScore)
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("error %v, want one saying %q", err, tc.says)
			}
		})
	}
}
