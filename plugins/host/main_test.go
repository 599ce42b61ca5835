package host

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/longctx/longctx/plugins/manifest"
)

// builtins are the plugins make builds, as kind/name.
var builtins = []string{
	"attention/eager", "attention/flash", "attention/flex",
	"kvcache/full", "kvcache/l2", "kvcache/streaming", "kvcache/random",
}

// faultModes are the names the faulty test plugin runs under.
var faultModes = []string{"crash", "hang", "garbage", "gibberish", "badproto", "exitearly", "misnamed"}

// testRoot is a plugin root built once for the package: KIND/NAME/NAME
// with manifests for the built-ins, faulty/MODE/MODE with manifests for
// the fault plugins.
var testRoot string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "longctx-plugins-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := buildAll(dir); err != nil {
		fmt.Fprintln(os.Stderr, "building test plugins:", err)
		return 1
	}
	testRoot = dir
	return m.Run()
}

// repoRoot is the module root, two levels above this package.
func repoRoot() string {
	wd, _ := os.Getwd()
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}

func goBuild(out, pkg string) error {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = repoRoot()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, stderr.String())
	}
	return nil
}

func buildAll(root string) error {
	type job struct{ out, pkg string }
	var jobs []job
	for _, b := range builtins {
		name := filepath.Base(b)
		jobs = append(jobs, job{filepath.Join(root, b, name), "./plugins/" + b + "/cmd"})
	}
	faulty := filepath.Join(root, "faulty-bin", "faulty")
	jobs = append(jobs, job{faulty, "./plugins/host/testdata/faulty"})

	var wg sync.WaitGroup
	errs := make([]error, len(jobs))
	sem := make(chan struct{}, max(2, runtime.NumCPU()))
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = goBuild(j.out, j.pkg)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := Config{Log: io.Discard}
	for _, b := range builtins {
		if _, err := WriteManifest(ctx, filepath.Join(root, b, filepath.Base(b)), cfg); err != nil {
			return err
		}
	}
	for _, mode := range faultModes {
		exe := filepath.Join(root, "faulty", mode, mode)
		if err := copyFile(faulty, exe); err != nil {
			return err
		}
		sum, err := manifest.FileSHA256(exe)
		if err != nil {
			return err
		}
		name := mode
		if mode == "garbage" || mode == "badproto" {
			name = "garbage" // what these describe themselves as, if asked
		}
		if err := manifest.Write(filepath.Dir(exe), manifest.Manifest{Name: name, Kind: "attention", ProtocolVersion: 1, Executable: mode, SHA256: sum}); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o755)
}

// testConfig searches only the test root and sends the log to the test.
func testConfig(t *testing.T) Config {
	w := &testWriter{t: t}
	t.Cleanup(w.close)
	return Config{SearchPath: []string{testRoot}, Log: w, LogLevel: "warn"}
}

// testWriter forwards log lines to t.Log until the test ends; go-plugin
// logs from its own goroutines, which must not call t.Log afterwards.
type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(b), "\n"))
	}
	return len(b), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// children returns the pids of this process's live or zombie children.
func children(t *testing.T) []int {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("child-process accounting reads /proc")
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	self := os.Getpid()
	var kids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the parenthesised command name: state, ppid, ...
		s := string(stat)
		rest := s[strings.LastIndexByte(s, ')')+2:]
		fields := strings.Fields(rest)
		if len(fields) > 1 && fields[1] == strconv.Itoa(self) {
			kids = append(kids, pid)
		}
	}
	return kids
}

// noOrphans fails the test if this process has any child left, after
// giving a just-killed one a moment to be reaped.
func noOrphans(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		kids := children(t)
		if len(kids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("child processes left behind: %v", kids)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pidGone reports whether pid no longer exists (not even as a zombie).
func pidGone(pid int) bool {
	_, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid)))
	return os.IsNotExist(err)
}
