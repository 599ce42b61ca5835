package cuda

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func baseKey() KeyInput {
	return KeyInput{
		Source:       "extern \"C\" __global__ void k() {}",
		Name:         "k.cu",
		Arch:         "sm_90a",
		NVRTCVersion: "13.0",
		Options:      []string{"--gpu-architecture=sm_90a", "--define-macro=N=4"},
	}
}

func TestKeyStable(t *testing.T) {
	a, b := baseKey().Key(), baseKey().Key()
	if a != b {
		t.Fatalf("same input gave %s and %s", a, b)
	}
	if err := validKey(a); err != nil {
		t.Fatal(err)
	}
}

func TestKeySensitiveToEveryInput(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*KeyInput)
	}{
		{"source", func(k *KeyInput) { k.Source += " " }},
		{"name", func(k *KeyInput) { k.Name = "other.cu" }},
		{"arch", func(k *KeyInput) { k.Arch = "sm_90" }},
		{"nvrtc version", func(k *KeyInput) { k.NVRTCVersion = "12.8" }},
		{"option value", func(k *KeyInput) { k.Options[1] = "--define-macro=N=8" }},
		{"option order", func(k *KeyInput) { k.Options[0], k.Options[1] = k.Options[1], k.Options[0] }},
		{"option added", func(k *KeyInput) { k.Options = append(k.Options, "-lineinfo") }},
		{"empty option added", func(k *KeyInput) { k.Options = append(k.Options, "") }},
		{"options joined", func(k *KeyInput) { k.Options = []string{k.Options[0] + k.Options[1]} }},
		{"byte moved source to name", func(k *KeyInput) {
			k.Name = k.Source[len(k.Source)-1:] + k.Name
			k.Source = k.Source[:len(k.Source)-1]
		}},
		{"byte moved arch to version", func(k *KeyInput) { k.Arch, k.NVRTCVersion = "sm_90", "a13.0" }},
		{"header added", func(k *KeyInput) { k.Headers = map[string]string{"longctx/abi/attention.h": "#pragma once\n"} }},
		{"empty header added", func(k *KeyInput) { k.Headers = map[string]string{"": ""} }},
		{"header edited", func(k *KeyInput) { k.Headers = map[string]string{"longctx/abi/attention.h": "#pragma once\n "} }},
		{"header renamed", func(k *KeyInput) { k.Headers = map[string]string{"longctx/abi/attention2.h": "#pragma once\n"} }},
		{"byte moved header name to content", func(k *KeyInput) {
			k.Headers = map[string]string{"longctx/abi/attention.": "h#pragma once\n"}
		}},
		{"header text moved to an option", func(k *KeyInput) { k.Options = append(k.Options, "longctx/abi/attention.h", "#pragma once\n") }},
	}
	base := baseKey().Key()
	seen := map[string]string{base: "base"}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := baseKey()
			k.Options = append([]string(nil), k.Options...)
			tc.mutate(&k)
			got := k.Key()
			if prev, dup := seen[got]; dup {
				t.Fatalf("key %s equals that of %s", got, prev)
			}
			seen[got] = tc.name
		})
	}
}

func TestCacheRoundTrip(t *testing.T) {
	c := &Cache{Dir: filepath.Join(t.TempDir(), "nested", "kernels")}
	key := baseKey().Key()
	if _, ok, err := c.Get(key); err != nil || ok {
		t.Fatalf("empty cache: ok=%v err=%v", ok, err)
	}
	for _, img := range [][]byte{[]byte("first image"), []byte("second, longer image that replaces it")} {
		if err := c.Put(key, img); err != nil {
			t.Fatal(err)
		}
		got, ok, err := c.Get(key)
		if err != nil || !ok || !bytes.Equal(got, img) {
			t.Fatalf("Get = %q, %v, %v; want %q", got, ok, err, img)
		}
	}
	entries, err := os.ReadDir(c.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != key+".bin" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("cache folder holds %v; want only %s.bin (no temporary files)", names, key)
	}
}

func TestCacheRejectsBadKeys(t *testing.T) {
	c := &Cache{Dir: t.TempDir()}
	for _, key := range []string{"", "abc", "../" + strings.Repeat("a", 61), strings.Repeat("g", 64), strings.Repeat("a", 65)} {
		if err := c.Put(key, []byte("x")); err == nil {
			t.Errorf("Put(%q) accepted a bad key", key)
		}
		if _, _, err := c.Get(key); err == nil {
			t.Errorf("Get(%q) accepted a bad key", key)
		}
	}
}

// Readers running alongside writers must only ever see a complete image.
func TestCachePutIsAtomic(t *testing.T) {
	c := &Cache{Dir: t.TempDir()}
	key := baseKey().Key()
	images := [][]byte{bytes.Repeat([]byte{'a'}, 1<<20), bytes.Repeat([]byte{'b'}, 3<<20)}
	if err := c.Put(key, images[0]); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			got, ok, err := c.Get(key)
			if err != nil || !ok || !(bytes.Equal(got, images[0]) || bytes.Equal(got, images[1])) {
				select {
				case errs <- errors.New("reader saw a partial or missing image"):
				default:
				}
				return
			}
		}
	}()
	for i := 0; i < 20; i++ {
		if err := c.Put(key, images[i%2]); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}

func TestCachePutFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c := &Cache{Dir: filepath.Join(blocker, "kernels")} // a folder under a plain file
	if err := c.Put(baseKey().Key(), []byte("x")); err == nil {
		t.Fatal("Put succeeded under a plain file")
	}
}

func TestDefaultCacheDir(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", "/tmp/xdg-test")
	t.Setenv("HOME", "/tmp/home-test")
	dir, err := DefaultCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join("/tmp/xdg-test", "longctx", "kernels"); dir != want {
		t.Fatalf("DefaultCacheDir = %s; want %s", dir, want)
	}
}

// CompileCached must key on the in-memory headers: editing a header that a
// kernel includes has to compile the kernel again.
func TestCompileCachedKeyIncludesHeaders(t *testing.T) {
	n := &NVRTC{major: 13, minor: 0, includeDirs: []string{"/usr/local/cuda/include"}}
	src := "#include \"longctx/abi/attention.h\"\nextern \"C\" __global__ void k() {}"
	opts := func(headers map[string]string) CompileOptions {
		return CompileOptions{Arch: "sm_90a", Headers: headers}
	}
	v1 := map[string]string{"longctx/abi/attention.h": "struct Args { int n; };", "longctx/abi/kv.h": "#pragma once"}
	v1again := map[string]string{"longctx/abi/kv.h": "#pragma once", "longctx/abi/attention.h": "struct Args { int n; };"}
	v2 := map[string]string{"longctx/abi/attention.h": "struct Args { long n; };", "longctx/abi/kv.h": "#pragma once"}

	none := n.cacheKey(src, "k.cu", opts(nil))
	k1 := n.cacheKey(src, "k.cu", opts(v1))
	if k1 == none {
		t.Fatal("adding headers did not change the key")
	}
	if again := n.cacheKey(src, "k.cu", opts(v1again)); again != k1 {
		t.Fatalf("equal header sets gave keys %s and %s", k1, again)
	}
	if k2 := n.cacheKey(src, "k.cu", opts(v2)); k2 == k1 {
		t.Fatal("editing a header's content did not change the key")
	}
	if empty := n.cacheKey(src, "k.cu", opts(map[string]string{})); empty != none {
		t.Fatal("an empty header map keyed differently from none")
	}
}
