package model

import (
	"strings"
	"testing"
)

func TestParseMemAvailable(t *testing.T) {
	good := "MemTotal:       24000000 kB\nMemFree:        1000 kB\nMemAvailable:   23000000 kB\nBuffers: 5 kB\n"
	got, err := parseMemAvailable([]byte(good))
	if err != nil || got != 23000000*1024 {
		t.Fatalf("parseMemAvailable = %d, %v", got, err)
	}
	for _, bad := range []string{"", "MemTotal: 5 kB\n", "MemAvailable: lots kB\n", "MemAvailable: 5 MB\n", "MemAvailable: -5 kB\n"} {
		if _, err := parseMemAvailable([]byte(bad)); err == nil || !strings.Contains(err.Error(), "MemAvailable") {
			t.Errorf("parseMemAvailable(%q) = %v", bad, err)
		}
	}
}

func TestCgroupPath(t *testing.T) {
	data := []byte("9:name=systemd:/\n4:memory:/jobs/42\n2:cpu,cpuacct:/\n0::/user.slice/job.scope\n")
	tests := []struct {
		controller, want string
		ok               bool
	}{
		{"", "/user.slice/job.scope", true},
		{"memory", "/jobs/42", true},
		{"cpuacct", "/", true},
		{"pids", "", false},
	}
	for _, tc := range tests {
		got, ok := cgroupPath(data, tc.controller)
		if got != tc.want || ok != tc.ok {
			t.Errorf("cgroupPath(%q) = %q, %v; want %q, %v", tc.controller, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseCgroupRoom(t *testing.T) {
	tests := []struct {
		name                  string
		limit, usage, stat, k string
		want                  int64
		ok                    bool
	}{
		{"v2 limited", "1000\n", "600\n", "anon 400\nfile 200\n", "file", 1000 - (600 - 200), true},
		{"v2 unlimited", "max\n", "600\n", "file 200\n", "file", 0, false},
		{"v1 limited", "1000", "900", "cache 10\ntotal_cache 300\n", "total_cache", 400, true},
		{"v1 unlimited", "9223372036854771712", "900", "total_cache 300\n", "total_cache", 0, false},
		{"over the limit", "1000", "1500", "file 0\n", "file", 0, true},
		{"garbage", "lots", "1", "", "file", 0, false},
	}
	for _, tc := range tests {
		got, ok := parseCgroupRoom([]byte(tc.limit), []byte(tc.usage), []byte(tc.stat), tc.k)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: %d, %v; want %d, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestEstimateMemoryScales(t *testing.T) {
	cfg := SyntheticPresets()[1].Config // llama3-8b
	short := EstimateMemory(cfg, 16e9, 1024, 512, 2)
	long := EstimateMemory(cfg, 16e9, 32768, 512, 2)
	// 32 layers × 8 KV heads × 128 × (K+V) × 4 bytes = 256 KiB per token.
	if long.KVCache != 32768*256<<10 || short.KVCache != 1024*256<<10 {
		t.Fatalf("KV %d / %d", short.KVCache, long.KVCache)
	}
	if long.Weights != 16e9 || long.Activations < short.Activations {
		t.Fatalf("estimates %+v / %+v", short, long)
	}
	if err := checkFits("x", long, 1<<30); err == nil || !strings.Contains(err.Error(), "KV cache 8.00 GiB") {
		t.Fatalf("checkFits = %v", err)
	}
	if err := checkFits("x", long, -1); err != nil {
		t.Fatalf("negative limit still checked: %v", err)
	}
}

func FuzzParseMemAvailable(f *testing.F) {
	for _, seed := range []string{"MemTotal: 9 kB\nMemAvailable:   23000000 kB\n", "MemAvailable: 5 MB", "MemAvailable:", ""} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if n, err := parseMemAvailable(data); err == nil && n < 0 {
			t.Fatalf("negative MemAvailable %d", n)
		}
	})
}

func FuzzCgroupPath(f *testing.F) {
	for _, seed := range []string{"0::/a/b\n4:memory:/x\n", "4:cpu,memory:/y", "0::", "::::", ""} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, c := range []string{"", "memory"} {
			if p, ok := cgroupPath(data, c); ok && !strings.HasPrefix(p, "/") {
				t.Fatalf("cgroup path %q is not absolute", p)
			}
		}
	})
}

func FuzzParseCgroupRoom(f *testing.F) {
	f.Add([]byte("1000\n"), []byte("600\n"), []byte("anon 5\nfile 200\n"))
	f.Add([]byte("max"), []byte("x"), []byte("file x\n"))
	f.Fuzz(func(t *testing.T, limit, usage, stat []byte) {
		if room, ok := parseCgroupRoom(limit, usage, stat, "file"); ok && room < 0 {
			t.Fatalf("negative room %d", room)
		}
	})
}
