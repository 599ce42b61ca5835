package host

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/longctx/longctx/evaluators/builtin"
	"github.com/longctx/longctx/evaluators/contract"
)

// Hand-assembled modules for the load checks. Each is a valid binary that
// wazero would accept; the host must refuse it for its own reasons.
var (
	// No sections at all: no _start.
	emptyModule = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}
	// One memory of 2048 pages (128 MiB) minimum.
	bigMemoryModule = append(slices.Clone(emptyModule), 0x05, 0x04, 0x01, 0x00, 0x80, 0x10)
	// Imports env.f and exports _start calling nothing.
	envImportModule = append(slices.Clone(emptyModule),
		0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: () -> ()
		0x02, 0x09, 0x01, 0x03, 'e', 'n', 'v', 0x01, 'f', 0x00, 0x00, // import env.f
		0x03, 0x02, 0x01, 0x00, // function section: one function of type 0
		0x07, 0x0a, 0x01, 0x06, '_', 's', 't', 'a', 'r', 't', 0x00, 0x01, // export _start
		0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b, // code: empty body
	)
)

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadRefusesUnusableModules(t *testing.T) {
	dir := t.TempDir()
	h := newHost(t, Options{MemoryLimit: 64 << 20, SearchPath: []string{dir}})
	cases := []struct {
		name string
		ref  string
		kind error
		says string
	}{
		{"unknown name", "nosuch", ErrNotFound, "no nosuch.wasm in " + dir},
		{"missing file", filepath.Join(dir, "gone.wasm"), ErrNotFound, "no such file"},
		{"directory", mkdir(t, dir, "folder.wasm"), ErrNotFound, "is a directory"},
		{"bad name", "../x", ErrNotFound, "no such file"},
		{"bad name chars", "a b", ErrNotFound, "not a valid evaluator name"},
		{"not wasm", writeFile(t, dir, "text.wasm", []byte("#!/bin/sh\necho hi\n")), ErrInvalidModule, "not a WebAssembly binary module"},
		{"truncated", writeFile(t, dir, "cut.wasm", testModuleBytes(t, "squad")[:5000]), ErrInvalidModule, ""},
		{"no _start", writeFile(t, dir, "empty.wasm", emptyModule), ErrInvalidModule, "no _start export"},
		{"memory over cap", writeFile(t, dir, "big.wasm", bigMemoryModule), ErrInvalidModule, "128 MiB of initial memory, over the 64 MiB cap"},
		{"foreign import", writeFile(t, dir, "env.wasm", envImportModule), ErrInvalidModule, `imports f from module "env"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.Load(context.Background(), tc.ref)
			if !errors.Is(err, tc.kind) {
				t.Fatalf("Load(%q) error %v, want %v", tc.ref, err, tc.kind)
			}
			if !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), "evaluator "+tc.ref) {
				t.Errorf("error %q should name %q and say %q", err, tc.ref, tc.says)
			}
		})
	}
}

func mkdir(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func testModuleBytes(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(testModules[name])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLoadDescribesTheModule(t *testing.T) {
	h := newHost(t, Options{})
	ev, err := h.Load(context.Background(), testModules["squad"])
	if err != nil {
		t.Fatal(err)
	}
	got, want := ev.Descriptor(), builtin.All["squad"].Descriptor
	if got.Name != want.Name || got.Version != want.Version || !slices.Equal(got.Scores, want.Scores) {
		t.Errorf("descriptor over WASM %+v, built-in %+v", got, want)
	}
	if ev.Path() != testModules["squad"] {
		t.Errorf("Path() = %q", ev.Path())
	}
}

func TestCompilationCacheIsWrittenToDisk(t *testing.T) {
	dir := t.TempDir()
	h := newHost(t, Options{CacheDir: dir})
	if _, err := h.Load(context.Background(), testModules["hostile"]); err != nil {
		t.Fatal(err)
	}
	var files int
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files++
		}
		return err
	})
	if err != nil || files == 0 {
		t.Fatalf("cache folder %s holds %d files (%v) after a compile", dir, files, err)
	}
	// A second host on the same folder loads from it.
	if _, err := newHost(t, Options{CacheDir: dir}).Load(context.Background(), testModules["hostile"]); err != nil {
		t.Fatal(err)
	}
}

// TestThirdPartyEvaluatorByName drops a module built outside this Go module
// (testdata/thirdparty has its own go.mod and imports nothing from longctx)
// into a folder named by LONGCTX_EVALUATOR_PATH and uses it by name.
func TestThirdPartyEvaluatorByName(t *testing.T) {
	plugins := t.TempDir()
	writeFile(t, plugins, "wordcount.wasm", testModuleBytes(t, "wordcount"))
	t.Setenv(EnvSearchPath, strings.Join([]string{filepath.Join(plugins, "missing"), plugins}, string(os.PathListSeparator)))
	h := newHost(t, Options{SearchPath: DefaultSearchPath()})
	ev, err := h.Load(context.Background(), "wordcount")
	if err != nil {
		t.Fatal(err)
	}
	if d := ev.Descriptor(); d.Name != "wordcount" || !slices.Equal(d.ScoreNames(), []string{"words", "coverage"}) {
		t.Fatalf("descriptor %+v", d)
	}
	in := []contract.Item{
		{ID: "a", Prediction: "the cat sat on the mat", References: []string{"a cat on a mat"}},
		{ID: "b", Prediction: "", References: []string{"nothing here"}},
		{ID: "c", Prediction: "Dogs bark", References: nil},
	}
	got, err := ev.Score(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	for i, it := range in {
		words, coverage := wordcount(it)
		if got[i].Scores["words"] != words || got[i].Scores["coverage"] != coverage {
			t.Errorf("item %s: got %v, want words %v coverage %v", it.ID, got[i].Scores, words, coverage)
		}
	}
	found, err := List(h.SearchPath())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(found, func(f Found) bool { return f.Name == "wordcount" && !f.Shadowed }) {
		t.Errorf("List does not show wordcount: %+v", found)
	}
}

// wordcount is the third-party evaluator's documented formula.
func wordcount(it contract.Item) (words, coverage float64) {
	pred := strings.Fields(strings.ToLower(it.Prediction))
	want := map[string]bool{}
	for _, r := range it.References {
		for _, w := range strings.Fields(strings.ToLower(r)) {
			want[w] = true
		}
	}
	covered := 0
	for w := range want {
		if slices.Contains(pred, w) {
			covered++
		}
	}
	if len(want) > 0 {
		coverage = float64(covered) / float64(len(want))
	}
	return float64(len(pred)), coverage
}

func TestModuleChangedAfterLoadIsRefused(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "squad.wasm", testModuleBytes(t, "squad"))
	h := newHost(t, Options{})
	ev, err := h.Load(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "squad.wasm", testModuleBytes(t, "hostile"))
	_, err = ev.Score(context.Background(), []contract.Item{{ID: "a", Prediction: "x", References: []string{"x"}}})
	if !errors.Is(err, ErrInvalidModule) || !strings.Contains(err.Error(), "changed since it was loaded") {
		t.Fatalf("error %v", err)
	}
}

func TestNoDiskCacheCleansUp(t *testing.T) {
	h, err := New(context.Background(), Options{NoDiskCache: true, SearchPath: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	dir := h.cacheDir
	if _, err := h.Load(context.Background(), testModules["squad"]); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("private cache %s still there after Close: %v", dir, err)
	}
}
