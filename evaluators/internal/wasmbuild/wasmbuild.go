// Package wasmbuild compiles Go main packages into WASI (wasip1) evaluator
// modules with the go command, for tests and benchmarks. The Makefile does
// the same with:
//
//	GOOS=wasip1 GOARCH=wasm go build -trimpath -ldflags="-s -w" -o bin/evaluators/NAME.wasm ./evaluators/builtin/NAME
package wasmbuild

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// Flags are the go build flags for evaluator modules: reproducible paths,
// and no symbol table or DWARF, which only slow wazero's compile.
var Flags = []string{"-trimpath", "-ldflags=-s -w"}

// goTool finds the go command: on PATH, else in the toolchain that built
// this test binary.
func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("go command not found on PATH or in %s", p)
	}
	return p, nil
}

func wasmEnv() []string {
	env := os.Environ()
	return append(env, "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
}

// Packages builds the main packages (import paths of this module) in one go
// build run, so the toolchain builds them in parallel, and writes each as
// outDir/<last path element>.wasm. It returns the module paths by that name.
func Packages(ctx context.Context, outDir string, pkgs ...string) (map[string]string, error) {
	gobin, err := goTool()
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(outDir, "build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	args := append([]string{"build"}, Flags...)
	args = append(args, "-o", tmp+string(filepath.Separator))
	args = append(args, pkgs...)
	cmd := exec.CommandContext(ctx, gobin, args...)
	cmd.Env = wasmEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	paths := make(map[string]string, len(pkgs))
	for _, pkg := range pkgs {
		name := pkg[strings.LastIndexByte(pkg, '/')+1:]
		dst := filepath.Join(outDir, name+".wasm")
		if err := os.Rename(filepath.Join(tmp, name), dst); err != nil {
			return nil, fmt.Errorf("module for %s: %w", pkg, err)
		}
		paths[name] = dst
	}
	return paths, nil
}

// Module builds the main package of a separate Go module rooted at dir (one
// with its own go.mod, as a third-party evaluator has) into out.
func Module(ctx context.Context, dir, out string) error {
	gobin, err := goTool()
	if err != nil {
		return err
	}
	args := append([]string{"build"}, Flags...)
	args = append(args, "-o", out, ".")
	cmd := exec.CommandContext(ctx, gobin, args...)
	cmd.Dir = dir
	cmd.Env = append(wasmEnv(), "GOWORK=off")
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build in %s: %w\n%s", dir, err, buf.String())
	}
	return nil
}
