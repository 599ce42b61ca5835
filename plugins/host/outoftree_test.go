package host

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/longctx/longctx/plugins/sdk"
)

// readmeFile returns the fenced block that follows the marker
// <!-- outoftree:NAME --> in plugins/README.md: the documented example is
// the one this test builds, so it cannot rot.
func readmeFile(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(), "plugins", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)<!-- outoftree:" + regexp.QuoteMeta(name) + " -->\\s*```[a-z]*\\n(.*?)```")
	m := re.FindSubmatch(data)
	if m == nil {
		t.Fatalf("plugins/README.md has no example block %s", name)
	}
	return string(m[1])
}

// TestOutOfTreePlugin builds the README's example plugin as its own module
// outside this one, installs it in a folder on $LONGCTX_PLUGIN_PATH and
// uses it by short name, as a third party would.
func TestOutOfTreePlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a separate module")
	}
	src := t.TempDir()
	gomod := strings.Replace(readmeFile(t, "go.mod"), "=> ../longctx", "=> "+repoRoot(), 1)
	if !strings.Contains(gomod, repoRoot()) {
		t.Fatal("README go.mod has no replace directive to rewrite")
	}
	sum, err := os.ReadFile(filepath.Join(repoRoot(), "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"go.mod": gomod, "main.go": readmeFile(t, "main.go"), "go.sum": string(sum)} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pluginPath := t.TempDir()
	exe := filepath.Join(pluginPath, "vnorm", "vnorm")
	cmd := exec.Command("go", "build", "-o", exe, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("building the README example: %v\n%s", err, stderr.String())
	}
	if _, err := WriteManifest(context.Background(), exe, testConfig(t)); err != nil {
		t.Fatal(err)
	}

	t.Setenv(EnvPluginPath, pluginPath)
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	cfg := testConfig(t)
	cfg.SearchPath = nil // the default: ./plugins, $LONGCTX_PLUGIN_PATH, the data folder
	ctx := context.Background()

	d, loc, err := Describe(ctx, "vnorm", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "vnorm" || d.Kind != sdk.KindKVCache || loc.Dir != filepath.Join(pluginPath, "vnorm") || loc.Manifest == nil {
		t.Fatalf("described %+v at %+v", d, loc)
	}
	kv, err := OpenKV(ctx, Selection{Ref: "vnorm", Options: []string{"ratio=0.25"}}, tinyShape, sdk.CPU, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	cache := filledCache(t, 2, 2, 8, 40)
	// What the plugin should keep, computed here from the values.
	want := make([][][]int, 2)
	for l := range 2 {
		view := cache.View(l)
		for g := range 2 {
			norms := make([]float64, 40)
			for i := range norms {
				for _, x := range view.V[g][i*8 : (i+1)*8] {
					norms[i] += float64(x) * float64(x)
				}
				norms[i] = math.Sqrt(norms[i])
			}
			idx := make([]int, 40)
			for i := range idx {
				idx[i] = i
			}
			slices.SortStableFunc(idx, func(a, b int) int {
				switch {
				case norms[a] > norms[b]:
					return -1
				case norms[a] < norms[b]:
					return 1
				}
				return 0
			})
			keep := slices.Clone(idx[:30])
			slices.Sort(keep)
			want[l] = append(want[l], keep)
		}
	}
	comp, err := kv.NewCompressor()
	if err != nil {
		t.Fatal(err)
	}
	if err := comp.AfterPrefill(ctx, cache); err != nil {
		t.Fatal(err)
	}
	for l := range 2 {
		for g, pos := range cache.View(l).Pos {
			if !slices.Equal(pos, want[l][g]) {
				t.Errorf("layer %d head %d: kept %v\nwant %v", l, g, pos, want[l][g])
			}
		}
	}
	if got := fmt.Sprint(kv.Plan.Policy); got != "when=prefill ratio=0.25" {
		t.Errorf("policy %s", got)
	}
	kv.Close()
	noOrphans(t)
}
