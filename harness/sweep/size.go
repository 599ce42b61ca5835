package sweep

import (
	"fmt"
	"strconv"
	"strings"
)

// maxContext bounds context sizes: far above any model's window, low enough
// that products with batch sizes cannot overflow an int.
const maxContext = 1 << 30

// ParseSize reads a context size in tokens: a plain integer ("512") or one
// with a binary suffix, k = 1024 and m = 1024*1024 ("1k" = 1024, "32k" =
// 32768, "1m" = 1048576), case-insensitive. Suffixes are binary because
// long-context benchmarks (LongBench, RULER) use powers of two.
func ParseSize(s string) (int, error) {
	t := strings.TrimSpace(s)
	mult := 1
	switch {
	case strings.HasSuffix(t, "k"), strings.HasSuffix(t, "K"):
		mult, t = 1<<10, t[:len(t)-1]
	case strings.HasSuffix(t, "m"), strings.HasSuffix(t, "M"):
		mult, t = 1<<20, t[:len(t)-1]
	}
	// strconv accepts a leading sign; a size has none.
	if t == "" || t[0] < '0' || t[0] > '9' {
		return 0, fmt.Errorf("size %q: want an integer with an optional k or m suffix", s)
	}
	n, err := strconv.ParseUint(t, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("size %q: want an integer with an optional k or m suffix", s)
	}
	if n == 0 {
		return 0, fmt.Errorf("size %q is zero", s)
	}
	if n > maxContext/uint64(mult) {
		return 0, fmt.Errorf("size %q is above the limit of %d tokens", s, maxContext)
	}
	return int(n) * mult, nil
}

// ParseSizeList reads a comma-separated list of sizes ("512,1k,32k"), as the
// --context flag takes them.
func ParseSizeList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := ParseSize(f)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}
