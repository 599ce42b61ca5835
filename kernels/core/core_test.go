package core

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

func TestSourceInlinesHeadersOnce(t *testing.T) {
	src, err := Source()
	if err != nil {
		t.Fatal(err)
	}
	if quoted := regexp.MustCompile(`(?m)^\s*#\s*include\s*"`).FindAllString(src, -1); len(quoted) != 0 {
		t.Errorf("quoted includes left for NVRTC: %q", quoted)
	}
	for _, want := range []string{"#define LONGCTX_ABI_VERSION", "typedef __nv_bfloat16 bf16;"} {
		if n := strings.Count(src, want); n != 1 {
			t.Errorf("%q appears %d times; want once", want, n)
		}
	}
	if !strings.Contains(src, "#include <cuda_bf16.h>") {
		t.Error("the toolkit include is gone")
	}
	if !strings.Contains(src, `#line 1 "kernels/core/rmsnorm.cu"`) {
		t.Error("no #line directive for rmsnorm.cu")
	}
}

// TestLineDirectives checks that after every #line directive the next
// lines are the named file's lines from that number on, so NVRTC's
// messages point at the right place.
func TestLineDirectives(t *testing.T) {
	src, err := Source()
	if err != nil {
		t.Fatal(err)
	}
	directive := regexp.MustCompile(`^#line (\d+) "kernels/core/([^"]+)"$`)
	lines := strings.Split(src, "\n")
	checked := 0
	for i, l := range lines {
		m := directive.FindStringSubmatch(l)
		if m == nil || i+1 >= len(lines) {
			continue
		}
		text, err := Sources.ReadFile(m[2])
		if err != nil {
			t.Fatal(err)
		}
		var n int
		for _, c := range m[1] {
			n = 10*n + int(c-'0')
		}
		orig := strings.Split(string(text), "\n")
		if n-1 >= len(orig) {
			t.Errorf("#line %d beyond %s's %d lines", n, m[2], len(orig))
			continue
		}
		if got := lines[i+1]; got != orig[n-1] && !strings.HasPrefix(got, "#line") {
			t.Errorf("after %q: %q; %s line %d is %q", l, got, m[2], n, orig[n-1])
		}
		checked++
	}
	if checked < 10 {
		t.Errorf("only %d #line directives checked", checked)
	}
}

func TestEntriesMatchKernels(t *testing.T) {
	src, err := Source()
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, m := range regexp.MustCompile(`extern "C" __global__ void(?: __launch_bounds__\(\w+\))?\s+(\w+)\(`).FindAllStringSubmatch(src, -1) {
		found = append(found, m[1])
	}
	want := Entries()
	slices.Sort(found)
	slices.Sort(want)
	if !slices.Equal(found, want) {
		t.Errorf("kernels in the source %q; Entries %q", found, want)
	}
}

func TestUnknownHeader(t *testing.T) {
	var b strings.Builder
	fsys := fstest.MapFS{"a.cu": {Data: []byte("#include \"other/x.h\"\n")}}
	if err := inline(&b, fsys, "a.cu", "a.cu", map[string]bool{}); err == nil || !strings.Contains(err.Error(), "a.cu:1") {
		t.Errorf("err = %v; want an error naming a.cu:1", err)
	}
}
