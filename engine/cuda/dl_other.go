//go:build !unix

package cuda

import "errors"

// Only Linux (and other Unix) builds load CUDA; elsewhere every Open reports
// the library missing, so callers fall back to the CPU backend.
var errNoDlopen = errors.New("loading shared libraries is supported on Unix only")

func dlopen(string) (uintptr, error) { return 0, errNoDlopen }

func dlclose(uintptr) {}

func dlsym(uintptr, string) (uintptr, error) { return 0, errNoDlopen }
