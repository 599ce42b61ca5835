package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const goodSum = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

func TestParse(t *testing.T) {
	tests := []struct {
		name, json, err string
	}{
		{"ok", `{"name":"l2","kind":"kvcache","version":"1.0","protocol_version":1,"executable":"l2","sha256":"` + goodSum + `"}`, ""},
		{"unknown field", `{"name":"l2","kind":"kvcache","protocol_version":1,"executable":"l2","sha265":"x"}`, `unknown field "sha265"`},
		{"no checksum", `{"name":"l2","kind":"kvcache","protocol_version":1,"executable":"l2"}`, `sha256 ""`},
		{"upper-case checksum", `{"name":"l2","kind":"kvcache","protocol_version":1,"executable":"l2","sha256":"` + strings.ToUpper(goodSum) + `"}`, "lowercase hex"},
		{"short checksum", `{"name":"l2","kind":"kvcache","protocol_version":1,"executable":"l2","sha256":"abcd"}`, "64 lowercase hex"},
		{"bad kind", `{"name":"l2","kind":"kv","protocol_version":1,"executable":"l2","sha256":"` + goodSum + `"}`, `kind "kv"`},
		{"bad name", `{"name":"L2!","kind":"kvcache","protocol_version":1,"executable":"l2","sha256":"` + goodSum + `"}`, `name "L2!"`},
		{"path escape", `{"name":"l2","kind":"kvcache","protocol_version":1,"executable":"../bin/sh","sha256":"` + goodSum + `"}`, "must be a file name"},
		{"no protocol", `{"name":"l2","kind":"kvcache","executable":"l2","sha256":"` + goodSum + `"}`, "protocol_version 0"},
		{"trailing data", `{"name":"l2","kind":"kvcache","protocol_version":1,"executable":"l2","sha256":"` + goodSum + `"} {}`, "data after"},
		{"not json", `name = "l2"`, "manifest: invalid character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse([]byte(tt.json))
			if tt.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if m.Name != "l2" || m.Kind != "kvcache" || m.SHA256 != goodSum {
					t.Fatalf("parsed %+v", m)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("error %v, want one containing %q", err, tt.err)
			}
		})
	}
}

func TestWriteLoadAndChecksum(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "prog")
	if err := os.WriteFile(exe, []byte("test"), 0o755); err != nil {
		t.Fatal(err)
	}
	sum, err := FileSHA256(exe)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256([]byte("test"))
	if sum != hex.EncodeToString(want[:]) {
		t.Fatalf("FileSHA256 = %s", sum)
	}
	m := Manifest{Name: "prog", Kind: "attention", ProtocolVersion: 1, Executable: "prog", SHA256: sum}
	if err := Write(dir, m); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got != m {
		t.Fatalf("Load = %+v, want %+v", got, m)
	}
	if err := Write(dir, Manifest{Name: "x"}); err == nil {
		t.Fatal("Write accepted an invalid manifest")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("Write left %d files behind, want prog and %s", len(entries), FileName)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"name":"l2","kind":"kvcache","version":"1.0","protocol_version":1,"executable":"l2","sha256":"` + goodSum + `"}`))
	f.Add([]byte(`{"name":"a","kind":"attention","protocol_version":2,"executable":"a.exe","sha256":"` + goodSum + `"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[1,2]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("Parse accepted a manifest Validate rejects: %v", err)
		}
		if strings.ContainsAny(m.Executable, `/\`) {
			t.Fatalf("executable %q escapes the folder", m.Executable)
		}
	})
}
