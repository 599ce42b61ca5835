//go:build unix

package model

import (
	"syscall"
	"time"
)

// cpuTime is the CPU time this process has used. Timing limits in tests
// use it rather than wall time, which other processes on a shared CI
// machine can stretch at will.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
