package model

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/longctx/longctx/engine/kvcache"
)

// MemoryEstimate is the RAM a CPU run needs, by part.
type MemoryEstimate struct {
	// Weights as stored (memory-mapped checkpoints page them in; synthetic
	// weights live on the heap).
	Weights int64
	// Activations of one forward pass over a chunk, the logits row and the
	// per-worker scratch of the kernels.
	Activations int64
	// KVCache is the fp32 cache for the run's tokens.
	KVCache int64
}

// Total returns the sum of the parts.
func (e MemoryEstimate) Total() int64 { return e.Weights + e.Activations + e.KVCache }

// EstimateMemory estimates a CPU run of cfg over tokens tokens in total,
// prefilled in chunks of chunk tokens (0: all at once), with weights of
// weightBytes.
func EstimateMemory(cfg Config, weightBytes int64, tokens, chunk, workers int) MemoryEstimate {
	if chunk <= 0 || chunk > tokens {
		chunk = max(tokens, 1)
	}
	n := int64(chunk)
	h, d := int64(cfg.HiddenSize), int64(cfg.HeadDim)
	q, kv := int64(cfg.NumHeads)*d, int64(cfg.NumKVHeads)*d
	inter := int64(cfg.IntermediateSize)
	perToken := 3*h + 2*q + 2*kv + 2*inter + d // x, h, o; q, attention out; k, v; gate, up; rope
	widest := max(h, q, inter)
	scratch := int64(max(workers, 1)) * (16*widest + int64(tokens)) // widened weight rows, score rows
	return MemoryEstimate{
		Weights:     weightBytes,
		Activations: 4 * (n*perToken + int64(cfg.VocabSize) + scratch),
		KVCache:     int64(tokens) * int64(cfg.NumLayers) * int64(cfg.NumKVHeads) * kvcache.TokenBytes(cfg.HeadDim, kvcache.Float32Bytes),
	}
}

// ErrOutOfMemory is wrapped by the errors of runs and loads that do not fit
// the memory limit, so a benchmark records them as "oom" rather than as
// failures.
var ErrOutOfMemory = errors.New("out of memory")

// checkFits returns an error when need exceeds limit (limit < 0: no check).
func checkFits(what string, need MemoryEstimate, limit int64) error {
	if limit < 0 || need.Total() <= limit {
		return nil
	}
	return fmt.Errorf("%w: %s needs about %s of RAM (weights %s, activations %s, KV cache %s) but %s is available",
		ErrOutOfMemory, what, gib(need.Total()), gib(need.Weights), gib(need.Activations), gib(need.KVCache), gib(limit))
}

func gib(b int64) string { return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30)) }

// memoryLimit resolves LoadOptions.MemoryLimit: 0 reads the host, whose
// answer is -1 (no check) when it cannot be determined.
func memoryLimit(opt int64) int64 {
	if opt != 0 {
		return opt
	}
	avail, err := availableMemory()
	if err != nil {
		return -1
	}
	return avail
}

// availableMemory is what this process can still allocate: the kernel's
// MemAvailable, further capped by the cgroup v2 limit when there is one
// (containers and Slurm jobs are killed at their cgroup limit, not at the
// host's).
func availableMemory() (int64, error) {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	avail, err := parseMemAvailable(data)
	if err != nil {
		return 0, err
	}
	if room, ok := cgroupRoom(); ok {
		avail = min(avail, room)
	}
	return avail, nil
}

// parseMemAvailable extracts MemAvailable from /proc/meminfo, in bytes.
func parseMemAvailable(data []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemAvailable:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("/proc/meminfo: MemAvailable: unexpected %q", rest)
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil || kb < 0 {
			return 0, fmt.Errorf("/proc/meminfo: MemAvailable: %q is not a size", fields[0])
		}
		return kb * 1024, nil
	}
	return 0, errors.New("/proc/meminfo: no MemAvailable line")
}

// cgroupRoom returns how much more this process's memory cgroup may
// charge before its limit, when it has a finite one (v2 unified or v1).
func cgroupRoom() (int64, bool) {
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0, false
	}
	versions := []struct {
		controller           string // as named in /proc/self/cgroup
		mount                string
		limit, usage, cached string // file names; cached is the memory.stat key of page cache
	}{
		{"", "/sys/fs/cgroup", "memory.max", "memory.current", "file"},
		{"memory", "/sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes", "total_cache"},
	}
	for _, v := range versions {
		rel, ok := cgroupPath(self, v.controller)
		if !ok {
			continue
		}
		// Inside a cgroup namespace the process's own cgroup is the mount's root.
		for _, dir := range []string{filepath.Join(v.mount, rel), v.mount} {
			limit, err1 := os.ReadFile(filepath.Join(dir, v.limit))
			usage, err2 := os.ReadFile(filepath.Join(dir, v.usage))
			stat, err3 := os.ReadFile(filepath.Join(dir, "memory.stat"))
			if err1 != nil || err2 != nil || err3 != nil {
				continue
			}
			return parseCgroupRoom(limit, usage, stat, v.cached)
		}
	}
	return 0, false
}

// cgroupPath returns the path of the named controller's cgroup from
// /proc/self/cgroup; controller "" is the v2 unified hierarchy ("0::/path").
func cgroupPath(data []byte, controller string) (string, bool) {
	for line := range strings.SplitSeq(string(data), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		match := parts[0] == "0" && parts[1] == ""
		if controller != "" {
			match = slices.Contains(strings.Split(parts[1], ","), controller)
		}
		if match {
			return filepath.Clean("/" + parts[2]), true
		}
	}
	return "", false
}

// parseCgroupRoom computes limit − (usage − page cache): page cache, a
// memory-mapped checkpoint included, is charged to the cgroup but
// reclaimed before the OOM killer acts, so it counts as room. A limit of
// "max" (v2) or near 2^63 (v1's "unlimited") means no limit.
func parseCgroupRoom(limit, usage, stat []byte, cachedKey string) (int64, bool) {
	l := strings.TrimSpace(string(limit))
	if l == "max" {
		return 0, false
	}
	lim, err := strconv.ParseInt(l, 10, 64)
	if err != nil || lim >= 1<<62 {
		return 0, false
	}
	used, err := strconv.ParseInt(strings.TrimSpace(string(usage)), 10, 64)
	if err != nil {
		return 0, false
	}
	var cached int64
	for line := range strings.SplitSeq(string(stat), "\n") {
		if v, ok := strings.CutPrefix(line, cachedKey+" "); ok {
			if cached, err = strconv.ParseInt(strings.TrimSpace(v), 10, 64); err != nil {
				return 0, false
			}
		}
	}
	return max(lim-(used-cached), 0), true
}
