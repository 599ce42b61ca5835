package host

import (
	"errors"
	"fmt"
	"strings"
)

// The kinds of failure a run can end in. Errors returned by Load and Score
// wrap one of them (test with errors.Is) inside a *RunError that names the
// evaluator and says what happened.
var (
	// ErrNotFound: no module of that name on the search path, or no file.
	ErrNotFound = errors.New("evaluator not found")
	// ErrInvalidModule: the file is not a usable WASI command module.
	ErrInvalidModule = errors.New("invalid evaluator module")
	// ErrTimeout: the run outlasted Options.Timeout and was stopped.
	ErrTimeout = errors.New("evaluator timed out")
	// ErrMemoryLimit: the module tried to grow its memory past the cap.
	ErrMemoryLimit = errors.New("evaluator exceeded its memory cap")
	// ErrOutputTooLarge: the module wrote more than its output allowance.
	ErrOutputTooLarge = errors.New("evaluator output exceeded its cap")
	// ErrBadOutput: the output does not follow the contract.
	ErrBadOutput = errors.New("evaluator output breaks the contract")
	// ErrFailed: the module exited non-zero or trapped.
	ErrFailed = errors.New("evaluator failed")
)

// RunError is a failed load, describe or score run of one evaluator.
type RunError struct {
	Evaluator string // name or path as the user gave it
	Phase     string // "load", "describe" or "score"
	Kind      error  // one of the Err* values above
	Detail    string // what exactly went wrong
	Stderr    string // the start of the module's stderr, if it wrote any
}

func (e *RunError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "evaluator %s: %s: %v", e.Evaluator, e.Phase, e.Kind)
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	if s := strings.TrimSpace(e.Stderr); s != "" {
		b.WriteString("; stderr: ")
		b.WriteString(s)
	}
	return b.String()
}

func (e *RunError) Unwrap() error { return e.Kind }

// snippet quotes the start of untrusted output for an error message.
func snippet(b []byte) string {
	const max = 80
	if len(b) > max {
		return fmt.Sprintf("%q...", b[:max])
	}
	return fmt.Sprintf("%q", b)
}

// stderrText makes a module's stderr safe to print: valid UTF-8, control
// characters other than newline and tab escaped, bounded length.
func stderrText(b []byte) string {
	const max = 2048
	truncated := len(b) > max
	if truncated {
		b = b[:max]
	}
	var out strings.Builder
	for _, r := range strings.ToValidUTF8(string(b), "\uFFFD") {
		if r < 0x20 && r != '\n' && r != '\t' || r == 0x7f {
			fmt.Fprintf(&out, "\\x%02x", r)
			continue
		}
		out.WriteRune(r)
	}
	if truncated {
		out.WriteString("...")
	}
	return out.String()
}
