//go:build race

package model

// raceEnabled: the race detector slows code 5-10x, so CPU-time limits do not apply.
const raceEnabled = true
