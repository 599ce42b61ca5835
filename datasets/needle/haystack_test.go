package needle

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

func TestSplitSentences(t *testing.T) {
	cases := []struct {
		text string
		want []string
	}{
		{"One. Two! Three? Four", []string{"One.", "Two!", "Three?", "Four"}},
		{"She said \"stop.\" Then left.", []string{`She said "stop."`, "Then left."}},
		{"A line\nwrapped here. Next", []string{"A line wrapped here.", "Next"}},
		{"Heading\n\nBody text.", []string{"Heading", "Body text."}},
		{"3.14 is pi. Version 1.2.3 ships.", []string{"3.14 is pi.", "Version 1.2.3 ships."}},
		{"  \n\t ", nil},
		{"Ends (like this.) Next.", []string{"Ends (like this.)", "Next."}},
		{"Ünïcödé — fine. ¿Sí? Yes.", []string{"Ünïcödé — fine.", "¿Sí?", "Yes."}},
	}
	for _, c := range cases {
		if got := SplitSentences(c.text); !reflect.DeepEqual(got, c.want) {
			t.Errorf("SplitSentences(%q) = %q, want %q", c.text, got, c.want)
		}
	}
}

func TestLoadHaystackDirErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadHaystackDir(dir); err == nil || !strings.Contains(err.Error(), "no .txt files") {
		t.Errorf("empty folder: %v", err)
	}
	if _, err := LoadHaystackDir(filepath.Join(dir, "nope")); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("missing folder: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "blank.txt"), []byte(" \n\n "), 0o644)
	if _, err := LoadHaystackDir(dir); err == nil || !strings.Contains(err.Error(), "no text") {
		t.Errorf("blank files: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "bad.txt"), []byte("ok \xff"), 0o644)
	if _, err := LoadHaystackDir(dir); err == nil || !strings.Contains(err.Error(), "bad.txt: not valid UTF-8") {
		t.Errorf("invalid UTF-8: %v", err)
	}
	if _, err := NewTextHaystack("x", ""); err == nil {
		t.Error("empty text: no error")
	}
}

func TestFiller(t *testing.T) {
	f := NewFiller(5)
	if f.Sentence(17) != NewFiller(5).Sentence(17) {
		t.Error("filler is not deterministic")
	}
	if f.Sentence(17) == NewFiller(6).Sentence(17) && f.Sentence(18) == NewFiller(6).Sentence(18) {
		t.Error("seed does not change the filler")
	}
	keyWord := regexp.MustCompile(`(?i)\b(` + strings.Join(append(append([]string{}, keyAdjectives...), keyNouns...), "|") + `)\b`)
	longNumber := regexp.MustCompile(`[0-9]{5,}`)
	distinct := map[string]bool{}
	for i := range 5000 {
		s := f.Sentence(i)
		distinct[s] = true
		if w := keyWord.FindString(s); w != "" {
			t.Fatalf("sentence %d %q uses needle key word %q", i, s, w)
		}
		if longNumber.MatchString(s) {
			t.Fatalf("sentence %d %q has a number of five or more digits", i, s)
		}
		if got := SplitSentences(s); len(got) != 1 || got[0] != s {
			t.Fatalf("sentence %d %q does not split as one sentence: %q", i, s, got)
		}
		if strings.Contains(strings.ToLower(s), "secret") {
			t.Fatalf("sentence %d %q mentions a secret", i, s)
		}
	}
	if len(distinct) < 4900 {
		t.Errorf("only %d distinct sentences in 5000", len(distinct))
	}
}

func TestParseDepths(t *testing.T) {
	cases := []struct {
		in   string
		want []float64
	}{
		{"linear:5", []float64{0, 0.25, 0.5, 0.75, 1}},
		{"linear:1", []float64{0.5}},
		{"0, 0.1,1", []float64{0, 0.1, 1}},
		{"0%,50%,100%", []float64{0, 0.5, 1}},
	}
	for _, c := range cases {
		got, err := ParseDepths(c.in)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseDepths(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "linear:", "linear:0", "linear:x", "1.5", "-0.1", "NaN", "50%%", "0,,1", "linear:100000"} {
		if got, err := ParseDepths(bad); err == nil {
			t.Errorf("ParseDepths(%q) = %v, want error", bad, got)
		}
	}
}

func TestParseLengths(t *testing.T) {
	got, err := ParseLengths("512, 4k,32K,1000")
	if err != nil || !reflect.DeepEqual(got, []int{512, 4096, 32768, 1000}) {
		t.Errorf("ParseLengths = %v, %v", got, err)
	}
	for _, bad := range []string{"", "0", "-5", "k", "4kk", "1.5k", "99999999999k"} {
		if got, err := ParseLengths(bad); err == nil {
			t.Errorf("ParseLengths(%q) = %v, want error", bad, got)
		}
	}
}

func FuzzParseDepths(f *testing.F) {
	for _, s := range []string{"linear:11", "0,0.5,1", "10%,90%", "1e-3", "linear:-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ds, err := ParseDepths(s)
		if err != nil {
			return
		}
		if len(ds) == 0 {
			t.Fatalf("ParseDepths(%q) gave no depths and no error", s)
		}
		for _, d := range ds {
			if !(d >= 0 && d <= 1) {
				t.Fatalf("ParseDepths(%q) gave %v", s, d)
			}
		}
	})
}

func FuzzParseLengths(f *testing.F) {
	for _, s := range []string{"512,1k,32k", "4096", "0", "2147483647k"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ls, err := ParseLengths(s)
		if err != nil {
			return
		}
		for _, l := range ls {
			if l <= 0 {
				t.Fatalf("ParseLengths(%q) gave %d", s, l)
			}
		}
	})
}

func FuzzSplitSentences(f *testing.F) {
	for _, s := range []string{"One. Two!", "a\n\nb", "\"Quote.\" Next", "…?! ", "x.\u00a0y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, sent := range SplitSentences(s) {
			if sent == "" || strings.TrimSpace(sent) != sent {
				t.Fatalf("SplitSentences(%q) gave %q", s, sent)
			}
		}
	})
}
