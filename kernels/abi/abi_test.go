package abi

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/longctx/longctx/plugins/sdk"
	"github.com/longctx/longctx/plugins/sdk/pluginpb"
)

func TestVersionMatchesHeader(t *testing.T) {
	data, err := Headers.ReadFile("common.h")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`#define LONGCTX_ABI_VERSION (\d+)`).FindSubmatch(data)
	if m == nil {
		t.Fatal("common.h has no LONGCTX_ABI_VERSION")
	}
	if v, _ := strconv.Atoi(string(m[1])); v != Version {
		t.Fatalf("header says version %d, Go says %d", v, Version)
	}
	if sdk.ABIVersion != Version {
		t.Fatalf("the SDK accepts kernels up to ABI version %d, the headers are version %d", sdk.ABIVersion, Version)
	}
}

// TestGridRulesMatchProtocol: launch.h's numbers are the protocol's.
func TestGridRulesMatchProtocol(t *testing.T) {
	data, err := Headers.ReadFile("launch.h")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]pluginpb.GridRule{
		"Q_TILES_HEADS_SEQS":      pluginpb.GridRule_GRID_RULE_Q_TILES_HEADS_SEQS,
		"HEADS_SEQS":              pluginpb.GridRule_GRID_RULE_HEADS_SEQS,
		"KV_TILES_KV_HEADS_SEQS":  pluginpb.GridRule_GRID_RULE_KV_TILES_KV_HEADS_SEQS,
		"ROWS":                    pluginpb.GridRule_GRID_RULE_ROWS,
		"KV_SPLITS_KV_HEADS_SEQS": pluginpb.GridRule_GRID_RULE_KV_SPLITS_KV_HEADS_SEQS,
		"KV_STREAM":               pluginpb.GridRule_GRID_RULE_KV_STREAM,
	} {
		m := regexp.MustCompile(`#define LONGCTX_GRID_RULE_` + name + ` (\d+)`).FindSubmatch(data)
		if m == nil {
			t.Fatalf("launch.h lacks LONGCTX_GRID_RULE_%s", name)
		}
		if v, _ := strconv.Atoi(string(m[1])); v != int(want) {
			t.Errorf("%s: header %d, protocol %d", name, v, want)
		}
	}
	for _, r := range []struct {
		sdk sdk.GridRule
		pb  pluginpb.GridRule
	}{
		{sdk.GridQTilesHeadsSeqs, pluginpb.GridRule_GRID_RULE_Q_TILES_HEADS_SEQS},
		{sdk.GridHeadsSeqs, pluginpb.GridRule_GRID_RULE_HEADS_SEQS},
		{sdk.GridKVTilesKVHeadsSeqs, pluginpb.GridRule_GRID_RULE_KV_TILES_KV_HEADS_SEQS},
		{sdk.GridRows, pluginpb.GridRule_GRID_RULE_ROWS},
		{sdk.GridKVSplitsKVHeadsSeqs, pluginpb.GridRule_GRID_RULE_KV_SPLITS_KV_HEADS_SEQS},
		{sdk.GridKVStream, pluginpb.GridRule_GRID_RULE_KV_STREAM},
	} {
		if int(r.sdk) != int(r.pb) {
			t.Errorf("sdk grid rule %d, protocol %s = %d", r.sdk, r.pb, r.pb)
		}
	}
	// Every rule the protocol has is in launch.h, defined and in the
	// table of grids at the top.
	for v, name := range pluginpb.GridRule_name {
		if v == 0 {
			continue
		}
		rule := strings.TrimPrefix(name, "GRID_RULE_")
		if !regexp.MustCompile(`(?m)^#define LONGCTX_GRID_RULE_` + rule + ` ` + strconv.Itoa(int(v)) + `$`).Match(data) {
			t.Errorf("launch.h lacks #define LONGCTX_GRID_RULE_%s %d", rule, v)
		}
		if !regexp.MustCompile(`(?m)^ \*   ` + name + ` +\(`).Match(data) {
			t.Errorf("launch.h's table of grids lacks %s", name)
		}
	}
	// And every rule launch.h defines is in the protocol.
	for _, m := range regexp.MustCompile(`(?m)^#define LONGCTX_GRID_RULE_(\w+) (\d+)$`).FindAllSubmatch(data, -1) {
		if v, ok := pluginpb.GridRule_value["GRID_RULE_"+string(m[1])]; !ok || strconv.Itoa(int(v)) != string(m[2]) {
			t.Errorf("launch.h defines LONGCTX_GRID_RULE_%s %s; the protocol has %d (known: %v)", m[1], m[2], v, ok)
		}
	}
}

// TestVersionListed: common.h's version list describes every version up
// to the current one.
func TestVersionListed(t *testing.T) {
	data, err := Headers.ReadFile("common.h")
	if err != nil {
		t.Fatal(err)
	}
	for v := 1; v <= Version; v++ {
		if !regexp.MustCompile(`(?m)^(/\*| \*) ` + strconv.Itoa(v) + `: `).Match(data) {
			t.Errorf("common.h's version list has no line for version %d", v)
		}
	}
}

// TestHeadersCompile checks the headers as C and C++ with the host
// compiler, which NVRTC's front end agrees with on these plain structs.
func TestHeadersCompile(t *testing.T) {
	dir := t.TempDir()
	src := `#include "attention.h"
#include "kv_score.h"
#include "launch.h"
typedef char check_version[LONGCTX_ABI_VERSION == 4 ? 1 : -1];
typedef char check_rows[LONGCTX_GRID_RULE_ROWS == 4 ? 1 : -1];
typedef char check_splits[LONGCTX_GRID_RULE_KV_SPLITS_KV_HEADS_SEQS == 5 ? 1 : -1];
typedef char check_stream[LONGCTX_GRID_RULE_KV_STREAM == 6 ? 1 : -1];
int main(void) { longctx_attention_params a; longctx_kv_score_params s; (void)a; (void)s; return 0; }
`
	if err := os.WriteFile(filepath.Join(dir, "t.c"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, cc := range []struct{ bin, lang string }{{"cc", "c"}, {"c++", "c++"}} {
		path, err := exec.LookPath(cc.bin)
		if err != nil {
			continue
		}
		ran++
		wd, _ := os.Getwd()
		cmd := exec.Command(path, "-x", cc.lang, "-fsyntax-only", "-Wall", "-Werror", "-I", wd, filepath.Join(dir, "t.c"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", cc.bin, err, out)
		}
	}
	if ran == 0 {
		t.Skip("no C compiler on PATH: headers not compiled")
	}
}
