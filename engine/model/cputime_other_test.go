//go:build !unix

package model

import "time"

var processStart = time.Now()

// cpuTime falls back to wall time where getrusage is unavailable.
func cpuTime() time.Duration { return time.Since(processStart) }
