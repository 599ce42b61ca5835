package host

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/longctx/longctx/evaluators/internal/wasmbuild"
)

// testModules are the WASM modules the tests use, built once per test
// binary by TestMain into a temporary folder: "hostile" (misbehaves on
// request), "squad" (a real built-in) and "wordcount" (the third-party
// module, built from its own go.mod under testdata/thirdparty).
var testModules map[string]string

// testCacheDir is one wazero compilation cache shared by every Host the
// tests make. It lives in the user cache folder, so a module whose bytes did
// not change is not compiled again by the next test run (wazero keys entries
// by module content and wazero version).
var testCacheDir string

func TestMain(m *testing.M) {
	code, err := runTests(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(code)
}

func runTests(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "longctx-host-test-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	testModules, err = wasmbuild.Packages(ctx, dir,
		"github.com/longctx/longctx/evaluators/host/testdata/hostile",
		"github.com/longctx/longctx/evaluators/builtin/squad")
	if err != nil {
		return 0, err
	}
	third := filepath.Join(dir, "wordcount.wasm")
	if err := wasmbuild.Module(ctx, filepath.Join("testdata", "thirdparty"), third); err != nil {
		return 0, err
	}
	testModules["wordcount"] = third
	testCacheDir = filepath.Join(dir, "cache")
	if d, err := DefaultCacheDir(); err == nil {
		testCacheDir = filepath.Join(filepath.Dir(d), "wazero-test")
	}
	return m.Run(), nil
}

// newHost makes a Host on the shared cache, closed when the test ends.
func newHost(t testing.TB, opts Options) *Host {
	t.Helper()
	if opts.CacheDir == "" {
		opts.CacheDir = testCacheDir
	}
	if opts.SearchPath == nil {
		opts.SearchPath = []string{}
	}
	h, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	return h
}
