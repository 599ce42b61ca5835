package host

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/longctx/longctx/plugins/manifest"
	"github.com/longctx/longctx/plugins/sdk"
)

func faultDir(mode string) string { return filepath.Join(testRoot, "faulty", mode) }

// TestFaultsAtStart: plugins that cannot be started are refused with a
// clear error, and no process is left behind.
func TestFaultsAtStart(t *testing.T) {
	tests := []struct {
		mode string
		err  []string
	}{
		{"gibberish", []string{"is not a longctx plugin", `it printed "hello, I am not a plugin" instead of the go-plugin handshake`}},
		{"badproto", []string{"speaks another plugin protocol version", "Plugin version: 2, Client versions: [1]", "this harness speaks 1"}},
		{"exitearly", []string{"exited before the go-plugin handshake", "its stderr ends: faulty: giving up before the handshake"}},
		{"misnamed", []string{`manifest names it "misnamed" but it describes itself as "someone-else"`}},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			_, err := OpenAttention(context.Background(), Selection{Ref: faultDir(tt.mode)}, tinyShape, sdk.CPU, testConfig(t))
			if err == nil {
				t.Fatal("no error")
			}
			for _, want := range tt.err {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q\nlacks %q", err, want)
				}
			}
			noOrphans(t)
		})
	}
}

// TestChecksum: a folder whose executable does not match its manifest is
// refused before anything is started.
func TestChecksum(t *testing.T) {
	src := filepath.Join(testRoot, "attention", "eager")
	for _, tt := range []struct {
		name   string
		tamper func(t *testing.T, dir string)
	}{
		{"manifest altered", func(t *testing.T, dir string) {
			m, err := manifest.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			m.SHA256 = strings.Repeat("ab", 32)
			if err := manifest.Write(dir, m); err != nil {
				t.Fatal(err)
			}
		}},
		{"executable altered", func(t *testing.T, dir string) {
			f, err := os.OpenFile(filepath.Join(dir, "eager"), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write([]byte{0})
			f.Close()
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "eager")
			for _, f := range []string{"eager", manifest.FileName} {
				if err := copyFile(filepath.Join(src, f), filepath.Join(dir, f)); err != nil {
					t.Fatal(err)
				}
			}
			tt.tamper(t, dir)
			m, _ := manifest.Load(dir)
			actual, _ := manifest.FileSHA256(filepath.Join(dir, "eager"))
			_, err := Open(context.Background(), sdk.KindAttention, dir, testConfig(t))
			if err == nil {
				t.Fatal("tampered plugin started")
			}
			for _, want := range []string{"refusing to start", "its sha256 is " + actual, "the manifest says " + m.SHA256} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q\nlacks %q", err, want)
				}
			}
			noOrphans(t)
		})
	}
}

func TestManifestProtocolVersion(t *testing.T) {
	src := filepath.Join(testRoot, "attention", "eager")
	dir := filepath.Join(t.TempDir(), "eager")
	if err := copyFile(filepath.Join(src, "eager"), filepath.Join(dir, "eager")); err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	m.ProtocolVersion = 2
	if err := manifest.Write(dir, m); err != nil {
		t.Fatal(err)
	}
	_, err = Open(context.Background(), sdk.KindAttention, dir, testConfig(t))
	if err == nil || !strings.Contains(err.Error(), "speaks protocol version 2 (manifest); this harness speaks 1") {
		t.Fatalf("error %v", err)
	}
	noOrphans(t)
}

// TestCrashDuringCall: a plugin that dies inside Attend yields an error
// quoting its panic; the process is reaped and later calls fail fast.
func TestCrashDuringCall(t *testing.T) {
	ctx := context.Background()
	a, err := OpenAttention(ctx, Selection{Ref: faultDir("crash")}, tinyShape, sdk.CPU, testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	pid := a.Plugin.Pid()
	if pid <= 0 {
		t.Fatalf("pid %d", pid)
	}
	p := randomProblem(newRand(), 4, 10, 0)
	err = a.Backend().Attend(ctx, p)
	for _, want := range []string{"attention plugin crash: plugin process exited during Attend", "it wrote: panic: simulated crash in Attend"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v\nlacks %q", err, want)
		}
	}
	if !pidGone(pid) {
		t.Errorf("crashed plugin %d still exists", pid)
	}
	start := time.Now()
	if err2 := a.Backend().Attend(ctx, p); err2 == nil || err2.Error() != err.Error() || time.Since(start) > time.Second {
		t.Errorf("call after the crash: %v (%s)", err2, time.Since(start))
	}
	noOrphans(t)
}

// TestHangInPrepare: a Prepare that never answers hits its deadline; the
// plugin is killed and reaped.
func TestHangInPrepare(t *testing.T) {
	cfg := testConfig(t)
	cfg.PrepareTimeout = 300 * time.Millisecond
	start := time.Now()
	_, err := OpenAttention(context.Background(), Selection{Ref: faultDir("hang")}, tinyShape, sdk.CPU, cfg)
	if err == nil || !strings.Contains(err.Error(), "attention plugin hang: Prepare did not answer within 300ms; plugin stopped") {
		t.Fatalf("error %v", err)
	}
	t.Logf("refused after %s", time.Since(start))
	noOrphans(t)
}

// TestGarbageAnswer: an Attend answer of the wrong size is refused and
// the plugin stopped.
func TestGarbageAnswer(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	p, err := Launch(ctx, sdk.KindAttention, mustResolve(t, faultDir("garbage")), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	pid := p.Pid()
	plan, err := p.PrepareAttention(ctx, tinyShape, sdk.CPU, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = plan.Backend.Attend(ctx, randomProblem(newRand(), 2, 5, 0))
	want := "attention plugin garbage: Attend returned an invalid answer: attention output: 3 bytes, want 64 float32 (256 bytes); plugin stopped"
	if err == nil || err.Error() != want {
		t.Fatalf("error %v\nwant   %s", err, want)
	}
	if !pidGone(pid) {
		t.Errorf("plugin %d still running after a garbage answer", pid)
	}
	noOrphans(t)
}

func mustResolve(t *testing.T, ref string) Location {
	t.Helper()
	loc, err := Resolve(0, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}
