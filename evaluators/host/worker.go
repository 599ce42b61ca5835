package host

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"
)

// workerEnv, set to workerProtocol, makes a process that imports this
// package a worker: it reads one request on stdin, runs it, writes the
// response on stdout and exits, before main runs.
const (
	workerEnv      = "LONGCTX_EVALUATOR_WORKER"
	workerProtocol = "1"
)

func init() {
	if os.Getenv(workerEnv) == workerProtocol {
		os.Exit(serveWorker(os.Stdin, os.Stdout))
	}
}

// workerRequest is the first line of a worker's stdin; the module's stdin
// (StdinLen bytes) follows it.
type workerRequest struct {
	Module      string   `json:"module"`
	SHA256      string   `json:"sha256"`
	CacheDir    string   `json:"cache_dir"`
	Args        []string `json:"args"`
	MemoryLimit uint64   `json:"memory_limit"`
	StdoutLimit int      `json:"stdout_limit"`
	StderrLimit int      `json:"stderr_limit"`
	StdinLen    int      `json:"stdin_len"`
}

// Outcomes a worker reports.
const (
	outcomeOK         = "ok"
	outcomeExit       = "exit"        // non-zero exit code
	outcomeTrap       = "trap"        // the module trapped (unreachable, bad memory access, ...)
	outcomeMemory     = "memory"      // failed after memory growth was refused
	outcomeStdoutFull = "stdout_full" // wrote past the stdout cap
	outcomeStderrFull = "stderr_full" // wrote past the stderr cap
	outcomeSetup      = "setup"       // the worker could not load the module
)

// workerResponse is the first line of a worker's stdout; the module's
// stdout (StdoutLen bytes) and stderr (StderrLen bytes) follow it.
type workerResponse struct {
	Outcome      string `json:"outcome"`
	ExitCode     uint32 `json:"exit_code,omitempty"`
	Detail       string `json:"detail,omitempty"`
	RefusedBytes uint64 `json:"refused_bytes,omitempty"`
	StdoutLen    int    `json:"stdout_len"`
	StderrLen    int    `json:"stderr_len"`
}

// maxHeader bounds the JSON header lines both ways.
const maxHeader = 64 << 10

// run executes the module once in a worker process with the given argv and
// stdin and returns its stdout.
func (e *Evaluator) run(ctx context.Context, phase string, args []string, stdin []byte, stdoutLimit int) ([]byte, error) {
	opts := e.host.opts
	req := workerRequest{
		Module: e.path, SHA256: hex.EncodeToString(e.sum[:]), CacheDir: e.host.cacheDir,
		Args: args, MemoryLimit: opts.MemoryLimit,
		StdoutLimit: stdoutLimit, StderrLimit: opts.StderrLimit, StdinLen: len(stdin),
	}
	header, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	input := make([]byte, 0, len(header)+1+len(stdin))
	input = append(append(append(input, header...), '\n'), stdin...)

	runCtx, cancel := context.WithTimeoutCause(ctx, opts.Timeout, ErrTimeout)
	defer cancel()
	cmd := exec.CommandContext(runCtx, e.host.worker)
	// Nothing of the host's environment reaches the worker, and so none
	// can reach the module.
	cmd.Env = []string{workerEnv + "=" + workerProtocol}
	cmd.Stdin = bytes.NewReader(input)
	respBuf := &cappedBuffer{limit: maxHeader + stdoutLimit + opts.StderrLimit}
	workerErr := &cappedBuffer{limit: 16 << 10}
	cmd.Stdout, cmd.Stderr = respBuf, workerErr
	cmd.WaitDelay = time.Second

	started := time.Now()
	waitErr := cmd.Run()
	re := &RunError{Evaluator: e.ref, Phase: phase}
	switch {
	case ctx.Err() != nil:
		// The caller gave up; report that, not a fault of the module.
		return nil, fmt.Errorf("evaluator %s: %s: %w", e.ref, phase, context.Cause(ctx))
	case errors.Is(context.Cause(runCtx), ErrTimeout):
		re.Kind = ErrTimeout
		re.Detail = fmt.Sprintf("stopped after %s (limit %s)", time.Since(started).Round(time.Millisecond), opts.Timeout)
		return nil, re
	}
	resp, stdout, stderr, perr := parseResponse(respBuf.bytes())
	if perr != nil {
		re.Kind = ErrFailed
		re.Detail = fmt.Sprintf("evaluator worker %s failed (%v): %v", e.host.worker, waitErr, perr)
		re.Stderr = stderrText(workerErr.bytes())
		return nil, re
	}
	re.Stderr = stderrText(stderr)
	switch resp.Outcome {
	case outcomeOK:
		return stdout, nil
	case outcomeMemory:
		re.Kind = ErrMemoryLimit
		re.Detail = fmt.Sprintf("tried to grow its memory to %d MiB, the cap is %d MiB (%s)", resp.RefusedBytes>>20, opts.MemoryLimit>>20, resp.Detail)
	case outcomeStdoutFull:
		re.Kind = ErrOutputTooLarge
		re.Detail = fmt.Sprintf("stdout passed %d bytes (starts %s)", stdoutLimit, snippet(stdout))
	case outcomeStderrFull:
		re.Kind = ErrOutputTooLarge
		re.Detail = fmt.Sprintf("stderr passed %d bytes", opts.StderrLimit)
		re.Stderr = stderrText(stderr[:min(len(stderr), 200)])
	case outcomeExit:
		re.Kind = ErrFailed
		re.Detail = fmt.Sprintf("exit code %d", resp.ExitCode)
	case outcomeSetup:
		re.Kind = ErrInvalidModule
		re.Detail = resp.Detail
	default:
		re.Kind = ErrFailed
		re.Detail = resp.Detail
	}
	return nil, re
}

// parseResponse splits a worker's stdout into its parts.
func parseResponse(b []byte) (workerResponse, []byte, []byte, error) {
	var resp workerResponse
	nl := bytes.IndexByte(b, '\n')
	if nl < 0 || nl > maxHeader {
		return resp, nil, nil, errors.New("no response header")
	}
	if err := json.Unmarshal(b[:nl], &resp); err != nil {
		return resp, nil, nil, fmt.Errorf("response header: %w", err)
	}
	body := b[nl+1:]
	if resp.StdoutLen < 0 || resp.StderrLen < 0 || resp.StdoutLen+resp.StderrLen != len(body) {
		return resp, nil, nil, fmt.Errorf("response of %d bytes does not hold the %d+%d announced", len(body), resp.StdoutLen, resp.StderrLen)
	}
	return resp, body[:resp.StdoutLen], body[resp.StdoutLen:], nil
}

// serveWorker is the worker process: one request, one response.
func serveWorker(in io.Reader, out io.Writer) int {
	w := bufio.NewWriter(out)
	respond := func(resp workerResponse, stdout, stderr []byte) int {
		resp.StdoutLen, resp.StderrLen = len(stdout), len(stderr)
		header, _ := json.Marshal(resp)
		w.Write(header)
		w.WriteByte('\n')
		w.Write(stdout)
		w.Write(stderr)
		if err := w.Flush(); err != nil {
			return 1
		}
		return 0
	}
	req, stdin, err := readRequest(in)
	if err != nil {
		return respond(workerResponse{Outcome: outcomeSetup, Detail: err.Error()}, nil, nil)
	}
	resp, stdout, stderr := runModule(req, stdin, respond)
	return respond(resp, stdout, stderr)
}

func readRequest(in io.Reader) (workerRequest, []byte, error) {
	var req workerRequest
	br := bufio.NewReader(io.LimitReader(in, maxHeader))
	line, err := br.ReadBytes('\n')
	if err != nil {
		return req, nil, fmt.Errorf("worker request: %w", err)
	}
	if err := json.Unmarshal(line, &req); err != nil {
		return req, nil, fmt.Errorf("worker request: %w", err)
	}
	stdin := make([]byte, req.StdinLen)
	rest := io.MultiReader(br, in)
	if _, err := io.ReadFull(rest, stdin); err != nil {
		return req, nil, fmt.Errorf("worker request: module stdin: %w", err)
	}
	return req, stdin, nil
}

// runModule instantiates the module once under the request's limits. A
// module that overflows stdout or stderr is stopped at once: the capped
// writer answers through respond and ends the process.
func runModule(req workerRequest, stdin []byte, respond func(workerResponse, []byte, []byte) int) (workerResponse, []byte, []byte) {
	ctx := context.Background()
	setup := func(format string, args ...any) (workerResponse, []byte, []byte) {
		return workerResponse{Outcome: outcomeSetup, Detail: fmt.Sprintf(format, args...)}, nil, nil
	}
	bin, err := os.ReadFile(req.Module)
	if err != nil {
		return setup("%v", err)
	}
	if sum := sha256.Sum256(bin); hex.EncodeToString(sum[:]) != req.SHA256 {
		return setup("module file %s changed since it was loaded", req.Module)
	}
	rt, cache, err := newRuntime(ctx, req.CacheDir)
	if err != nil {
		return setup("%v", err)
	}
	defer cache.Close(ctx)
	defer rt.Close(ctx)
	mod, err := rt.CompileModule(ctx, bin)
	if err != nil {
		return setup("%v", err)
	}
	if err := checkImportsExports(mod); err != nil {
		return setup("%v", err)
	}

	mem := &memoryCap{limit: req.MemoryLimit}
	stdout := &cappedBuffer{limit: req.StdoutLimit}
	stderr := &cappedBuffer{limit: req.StderrLimit}
	stdout.onFull = func() {
		os.Exit(respond(workerResponse{Outcome: outcomeStdoutFull}, stdout.buf, stderr.buf))
	}
	stderr.onFull = func() {
		os.Exit(respond(workerResponse{Outcome: outcomeStderrFull}, stdout.buf, stderr.buf))
	}
	// What the module gets: argv, stdin and two capped writers. No
	// filesystem (no mounts), no environment, no sockets, and wazero's
	// deterministic clocks and random source rather than the host's.
	cfg := wazero.NewModuleConfig().
		WithName("").
		WithArgs(req.Args...).
		WithStdin(bytes.NewReader(stdin)).
		WithStdout(stdout).
		WithStderr(stderr)
	inst, err := rt.InstantiateModule(experimental.WithMemoryAllocator(ctx, mem), mod, cfg)
	if inst != nil {
		_ = inst.Close(ctx)
	}
	resp := workerResponse{Outcome: outcomeOK}
	var exit *sys.ExitError
	switch {
	case err == nil:
	case mem.refusedSize() > 0:
		resp = workerResponse{Outcome: outcomeMemory, RefusedBytes: mem.refusedSize(), Detail: firstLine(err.Error())}
	case errors.As(err, &exit):
		resp = workerResponse{Outcome: outcomeExit, ExitCode: exit.ExitCode()}
	default:
		resp = workerResponse{Outcome: outcomeTrap, Detail: truncate(err.Error(), 2048)}
	}
	return resp, stdout.bytes(), stderr.bytes()
}

func firstLine(s string) string {
	if i := bytes.IndexByte([]byte(s), '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
