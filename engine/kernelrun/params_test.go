package kernelrun

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/longctx/longctx/kernels/abi"
)

// cField is one field of a C struct as the header declares it.
type cField struct {
	name, typ   string
	size, align int
}

// headerStruct parses `typedef struct name { ... } name;` from an ABI
// header into its fields, with sizes by the 64-bit rules: pointers and
// 64-bit integers 8 bytes, longctx_i32 / longctx_u32 / float 4.
func headerStruct(t *testing.T, file, name string) []cField {
	t.Helper()
	src, err := abi.Headers.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	body := regexp.MustCompile(`(?s)typedef struct ` + name + ` \{(.*?)\} ` + name + `;`).FindSubmatch(src)
	if body == nil {
		t.Fatalf("%s: no struct %s", file, name)
	}
	text := regexp.MustCompile(`(?s)/\*.*?\*/`).ReplaceAllString(string(body[1]), "")
	var out []cField
	for _, decl := range strings.Split(text, ";") {
		decl = strings.TrimSpace(decl)
		if decl == "" {
			continue
		}
		m := regexp.MustCompile(`^(.*?)\s*([A-Za-z_][A-Za-z0-9_]*)$`).FindStringSubmatch(decl)
		if m == nil {
			t.Fatalf("%s: cannot parse %q", name, decl)
		}
		typ := strings.TrimSpace(m[1])
		var size int
		switch {
		case strings.Contains(typ, "*"):
			size = 8
		case typ == "longctx_i64" || typ == "longctx_u64":
			size = 8
		case typ == "longctx_i32" || typ == "longctx_u32" || typ == "float":
			size = 4
		default:
			t.Fatalf("%s.%s: unknown type %q", name, m[2], typ)
		}
		out = append(out, cField{name: m[2], typ: typ, size: size, align: size})
	}
	return out
}

// cLayout is the offset of each field and the struct's size under natural
// alignment.
func cLayout(fields []cField) (offsets []int, size int) {
	off, maxAlign := 0, 1
	for _, f := range fields {
		off = (off + f.align - 1) / f.align * f.align
		offsets = append(offsets, off)
		off += f.size
		maxAlign = max(maxAlign, f.align)
	}
	return offsets, (off + maxAlign - 1) / maxAlign * maxAlign
}

var mirrors = []struct {
	file, cName string
	goType      reflect.Type
}{
	{"common.h", "longctx_kv_head", reflect.TypeFor[KVHead]()},
	{"attention.h", "longctx_attention_params", reflect.TypeFor[AttentionParams]()},
	{"kv_score.h", "longctx_kv_score_params", reflect.TypeFor[KVScoreParams]()},
}

// TestLayoutMatchesHeaders: every Go mirror has the header's fields, in
// order, at the offsets and sizes C gives them.
func TestLayoutMatchesHeaders(t *testing.T) {
	for _, m := range mirrors {
		fields := headerStruct(t, m.file, m.cName)
		offsets, size := cLayout(fields)
		if m.goType.NumField() != len(fields) {
			t.Errorf("%s: %d fields in C, %d in %s", m.cName, len(fields), m.goType.NumField(), m.goType)
			continue
		}
		for i, f := range fields {
			g := m.goType.Field(i)
			if int(g.Offset) != offsets[i] || int(g.Type.Size()) != f.size {
				t.Errorf("%s.%s: C offset %d size %d; Go %s.%s offset %d size %d", m.cName, f.name, offsets[i], f.size, m.goType, g.Name, g.Offset, g.Type.Size())
			}
			if want := strings.ReplaceAll(strings.ToLower(g.Name), "_", ""); want != strings.ReplaceAll(f.name, "_", "") {
				t.Errorf("%s field %d: C %s, Go %s", m.cName, i, f.name, g.Name)
			}
		}
		if int(m.goType.Size()) != size {
			t.Errorf("%s: C size %d, Go %d", m.cName, size, m.goType.Size())
		}
	}
	if KVHeadBytes != 24 || reflect.TypeFor[AttentionParams]().Size() != 112 || reflect.TypeFor[KVScoreParams]().Size() != 64 {
		t.Errorf("sizes changed: kv head %d, attention %d, kv score %d", KVHeadBytes, reflect.TypeFor[AttentionParams]().Size(), reflect.TypeFor[KVScoreParams]().Size())
	}
}

// TestLayoutWithHostCompiler compiles the headers with the host C compiler
// (x86-64 and arm64 lay these structs out as the GPU does) and compares
// its offsetof and sizeof with the Go mirrors.
func TestLayoutWithHostCompiler(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler on PATH")
	}
	var b strings.Builder
	b.WriteString("#include <stdio.h>\n#include <stddef.h>\n#include \"attention.h\"\n#include \"kv_score.h\"\nint main(void) {\n")
	for _, m := range mirrors {
		fmt.Fprintf(&b, "printf(\"%s sizeof %%zu\\n\", sizeof(%s));\n", m.cName, m.cName)
		for _, f := range headerStruct(t, m.file, m.cName) {
			fmt.Fprintf(&b, "printf(\"%s %s %%zu\\n\", offsetof(%s, %s));\n", m.cName, f.name, m.cName, f.name)
		}
	}
	b.WriteString("return 0; }\n")
	dir := t.TempDir()
	src, bin := filepath.Join(dir, "layout.c"), filepath.Join(dir, "layout")
	if err := os.WriteFile(src, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if out, err := exec.Command(cc, "-I", filepath.Join(wd, "..", "..", "kernels", "abi"), "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("cc: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		n, _ := strconv.Atoi(f[2])
		got[f[0]+" "+f[1]] = n
	}
	for _, m := range mirrors {
		if got[m.cName+" sizeof"] != int(m.goType.Size()) {
			t.Errorf("%s: C sizeof %d, Go %d", m.cName, got[m.cName+" sizeof"], m.goType.Size())
		}
		for i, f := range headerStruct(t, m.file, m.cName) {
			if off := int(m.goType.Field(i).Offset); got[m.cName+" "+f.name] != off {
				t.Errorf("%s.%s: C offsetof %d, Go %d", m.cName, f.name, got[m.cName+" "+f.name], off)
			}
		}
	}
}

func TestKVHeadsBytes(t *testing.T) {
	b := KVHeadsBytes([]KVHead{{Data: 0x1122334455667788, Pos: 0x99, Len: 7, RowStride: -2}, {Len: 1}})
	if len(b) != 2*KVHeadBytes {
		t.Fatalf("%d bytes", len(b))
	}
	want := []byte{0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x99, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff}
	if !reflect.DeepEqual(b[:24], want) || b[24+16] != 1 {
		t.Fatalf("encoded % x", b)
	}
}

func TestDType(t *testing.T) {
	for name, want := range map[string]int32{"f32": 1, "bf16": 2, "f16": 3} {
		if got, err := DType(name); err != nil || got != want {
			t.Errorf("DType(%q) = %d, %v", name, got, err)
		}
	}
	if _, err := DType("fp8"); err == nil {
		t.Error("fp8 accepted")
	}
}
