package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/longctx/longctx/plugins/host"
)

var (
	pluginsOnce sync.Once
	pluginsDir  string
	pluginsErr  error
)

// builtPlugins builds the flash and flex attention and l2 KV plugins once per test
// binary into a plugin root with checked manifests, as 'make plugins' does.
func builtPlugins(t *testing.T) string {
	t.Helper()
	pluginsOnce.Do(func() {
		root, err := os.MkdirTemp("", "longctx-cli-plugins-")
		if err != nil {
			pluginsErr = err
			return
		}
		pluginsDir = root
		for _, p := range []string{"attention/flash", "attention/flex", "kvcache/l2"} {
			dir := filepath.Join(root, p)
			exe := filepath.Join(dir, filepath.Base(p))
			cmd := exec.Command("go", "build", "-o", exe, "./plugins/"+p+"/cmd")
			cmd.Dir = ".."
			if out, err := cmd.CombinedOutput(); err != nil {
				pluginsErr = err
				t.Logf("%s", out)
				return
			}
			if _, err := host.WriteManifest(context.Background(), exe, host.Config{}); err != nil {
				pluginsErr = err
				return
			}
		}
	})
	if pluginsErr != nil {
		t.Fatalf("building plugins: %v", pluginsErr)
	}
	return pluginsDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pluginsDir != "" {
		os.RemoveAll(pluginsDir)
	}
	if harnessBin != "" {
		os.RemoveAll(filepath.Dir(harnessBin))
	}
	os.Exit(code)
}

type l2Case struct {
	When                 string  `json:"when"`
	Ratio                float64 `json:"ratio"`
	SkipLayers           []int   `json:"skip_layers"`
	Sink                 int     `json:"sink"`
	Window               int     `json:"window"`
	Tokens               []int   `json:"tokens"`
	KVTokensAfterPrefill int64   `json:"kv_tokens_after_prefill"`
}

// generate --attn flash --kv l2 through real plugin processes reproduces the
// transformers-based L2 reference token for token, and the KV bytes it
// reports are the reference's kept tokens.
func TestGenerateWithPluginsMatchesL2Reference(t *testing.T) {
	if testing.Short() {
		t.Skip("builds plugins")
	}
	t.Setenv(host.EnvPluginPath, builtPlugins(t))
	data, err := os.ReadFile(repoPath("plugins", "kvcache", "l2", "testdata", "l2_reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		Models []struct {
			Name      string   `json:"name"`
			PromptIDs []int    `json:"prompt_ids"`
			HeadDim   int      `json:"head_dim"`
			Cases     []l2Case `json:"cases"`
		} `json:"models"`
	}
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, m := range ref.Models {
		if m.Name != "llama3" && m.Name != "qwen3" {
			continue
		}
		for _, c := range m.Cases {
			if c.When != "prefill" || c.Sink != 0 || c.Window != 0 {
				continue
			}
			args := []string{"generate", "--model", repoPath("engine", "model", "testdata", "tiny", m.Name),
				"--prompt-ids", idList(m.PromptIDs), "--max-new-tokens", strconv.Itoa(len(c.Tokens)), "--ignore-eos", "--json",
				"--attn", "flash", "--kv", "l2", "--kv-opt", "ratio=" + strconv.FormatFloat(c.Ratio, 'g', -1, 64)}
			if len(c.SkipLayers) > 0 {
				args = append(args, "--kv-opt", "skip_layers="+idList(c.SkipLayers))
			}
			stdout, _, err := runCLI(t, args...)
			if err != nil {
				t.Fatalf("%s %v: %v", m.Name, args[len(args)-3:], err)
			}
			var got generateOutput
			if err := json.Unmarshal([]byte(stdout), &got); err != nil {
				t.Fatal(err)
			}
			name := m.Name + " ratio " + strconv.FormatFloat(c.Ratio, 'g', -1, 64) + " skip " + idList(c.SkipLayers)
			if !slices.Equal(got.Tokens, c.Tokens) {
				t.Errorf("%s: tokens\n got %v\nwant %v", name, got.Tokens, c.Tokens)
			}
			wantBytes := c.KVTokensAfterPrefill * int64(m.HeadDim) * 2 * 4
			if got.KVBytesPrefill != wantBytes {
				t.Errorf("%s: kv_bytes_prefill %d, want %d (%d kept tokens)", name, got.KVBytesPrefill, wantBytes, c.KVTokensAfterPrefill)
			}
			if got.Attention == nil || got.Attention.Name != "flash" || got.KV == nil || got.KV.Name != "l2" {
				t.Errorf("%s: plugin records %+v %+v", name, got.Attention, got.KV)
			}
			checked++
		}
	}
	if checked != 12 {
		t.Errorf("checked %d reference cases, want 12 (6 per model)", checked)
	}
}

func TestPluginCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds plugins")
	}
	t.Setenv(host.EnvPluginPath, builtPlugins(t))
	stdout, _, err := runCLI(t, "plugins", "list")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"flash", "l2", "ratio=0.5"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("plugins list lacks %q:\n%s", want, stdout)
		}
	}
	stdout, _, err = runCLI(t, "plugins", "describe", "l2")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, "skip_layers") || !strings.Contains(stdout, "sha256") {
		t.Errorf("describe l2:\n%s", stdout)
	}
	_, _, err = runCLI(t, "generate", "--model", "synthetic:tiny", "--prompt-ids", "1,2", "--kv", "l2", "--kv-opt", "ratoi=0.5")
	if err == nil || !strings.Contains(err.Error(), `unknown option "ratoi"`) {
		t.Errorf("misspelt option: %v", err)
	}
	_, _, err = runCLI(t, "generate", "--model", "synthetic:tiny", "--prompt-ids", "1,2", "--kv-opt", "ratio=0.5")
	if err == nil || !strings.Contains(err.Error(), "--kv-opt needs --kv") {
		t.Errorf("--kv-opt without --kv: %v", err)
	}
}

// TestAutoBackendFallsBackForCPUOnlyPlugins: with --backend auto, a plugin
// without GPU kernels (flex, for now) sends the run to the CPU with a line
// saying why, ones with them (flash, l2) keep the GPU, and an explicit
// choice is never changed.
func TestAutoBackendFallsBackForCPUOnlyPlugins(t *testing.T) {
	root := builtPlugins(t)
	flash, flex, l2 := filepath.Join(root, "attention/flash"), filepath.Join(root, "attention/flex"), filepath.Join(root, "kvcache/l2")
	tests := []struct {
		name, flag, resolved string
		plugins              pluginFlags
		want, log            string
	}{
		{"cpu-only attention", backendAuto, backendCUDA, pluginFlags{attn: flex}, "", "has no GPU kernels"},
		{"gpu-capable attention and kv", backendAuto, backendCUDA, pluginFlags{attn: flash, kv: l2}, backendCUDA, ""},
		{"explicit cuda", backendCUDA, backendCUDA, pluginFlags{attn: flex}, backendCUDA, ""},
		{"auto without a GPU", backendAuto, "", pluginFlags{attn: flex}, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var log strings.Builder
			got := autoBackend(context.Background(), &log, tc.flag, tc.resolved, tc.plugins)
			if got != tc.want {
				t.Fatalf("backend %q, want %q (log %q)", got, tc.want, log.String())
			}
			if !strings.Contains(log.String(), tc.log) {
				t.Fatalf("log %q does not say %q", log.String(), tc.log)
			}
		})
	}
}
