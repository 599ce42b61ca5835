package host

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/longctx/longctx/evaluators/contract"
)

func TestResolveFollowsTheSearchPathInOrder(t *testing.T) {
	first, second := t.TempDir(), t.TempDir()
	a1 := writeFile(t, first, "alpha.wasm", emptyModule)
	a2 := writeFile(t, second, "alpha.wasm", emptyModule)
	b2 := writeFile(t, second, "beta.wasm", emptyModule)
	writeFile(t, second, "notes.txt", nil)
	writeFile(t, second, "bad name.wasm", emptyModule)
	mkdir(t, second, "dir.wasm")
	if err := os.Symlink(b2, filepath.Join(first, "linked.wasm")); err != nil {
		t.Fatal(err)
	}
	path := []string{first, filepath.Join(first, "missing"), second}

	for ref, want := range map[string]string{"alpha": a1, "beta": b2, a2: a2, "linked": filepath.Join(first, "linked.wasm")} {
		got, err := Resolve(ref, path)
		if err != nil || got != want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", ref, got, err, want)
		}
	}
	if _, err := Resolve("gamma", path); !errors.Is(err, ErrNotFound) {
		t.Errorf("Resolve(gamma): %v", err)
	}

	found, err := List(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []Found{
		{Name: "alpha", Path: a1},
		{Name: "linked", Path: filepath.Join(first, "linked.wasm")},
		{Name: "alpha", Path: a2, Shadowed: true},
		{Name: "beta", Path: b2},
	}
	if !slices.Equal(found, want) {
		t.Errorf("List =\n%+v\nwant\n%+v", found, want)
	}
}

func TestIsPath(t *testing.T) {
	for ref, want := range map[string]bool{
		"squad": false, "rouge_stem": false, "squad.wasm": true, "./squad": true,
		"/opt/e/x.wasm": true, "dir/x": true,
	} {
		if got := IsPath(ref); got != want {
			t.Errorf("IsPath(%q) = %v", ref, got)
		}
	}
}

func TestDefaultSearchPathHonoursTheEnvironment(t *testing.T) {
	t.Setenv(EnvSearchPath, "/a"+string(os.PathListSeparator)+"/b")
	t.Setenv("XDG_DATA_HOME", "/xdg")
	got := DefaultSearchPath()
	if len(got) < 4 || got[0] != "evaluators" || got[1] != "/a" || got[2] != "/b" {
		t.Fatalf("DefaultSearchPath() = %q", got)
	}
	if d, err := userDataDir(); err == nil && !slices.Contains(got, filepath.Join(d, "longctx", "evaluators")) {
		t.Errorf("user data folder %s missing from %q", d, got)
	}
}

func TestAggregateMeansInDescriptorOrder(t *testing.T) {
	d := contract.Descriptor{Scores: []contract.ScoreSpec{{Name: "f1", HigherIsBetter: true}, {Name: "len"}}}
	lines := []contract.ScoreLine{
		{ID: "1", Scores: map[string]float64{"f1": 1, "len": 4}},
		{ID: "2", Scores: map[string]float64{"f1": 0, "len": 2}},
		{ID: "3", Scores: map[string]float64{"f1": 0.5, "len": 3}},
	}
	got := Aggregate(d, lines)
	if len(got) != 2 || got[0].Name != "f1" || got[1].Name != "len" || !got[0].HigherIsBetter || got[1].HigherIsBetter {
		t.Fatalf("Aggregate = %+v", got)
	}
	for i, s := range got {
		var sum float64
		for _, l := range lines {
			sum += l.Scores[s.Name]
		}
		if s.Count != len(lines) || s.Mean != sum/float64(len(lines)) {
			t.Errorf("summary %d = %+v", i, s)
		}
	}
	if empty := Aggregate(d, nil); empty[0].Count != 0 || empty[0].Mean != 0 {
		t.Errorf("Aggregate of nothing = %+v", empty)
	}
}
