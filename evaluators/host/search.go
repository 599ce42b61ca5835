package host

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/longctx/longctx/evaluators/contract"
)

// EnvSearchPath names the environment variable holding extra folders (in
// the OS's list syntax, ':' on Unix) to look for evaluators in.
const EnvSearchPath = "LONGCTX_EVALUATOR_PATH"

// Ext is the file extension of an evaluator module.
const Ext = ".wasm"

// DefaultSearchPath lists, in lookup order, the folders an evaluator name is
// looked for in: ./evaluators, each folder of $LONGCTX_EVALUATOR_PATH, the
// user data folder (for example ~/.local/share/longctx/evaluators) and the
// evaluators folder beside the running executable (bin/evaluators for
// bin/harness, where make puts the built-ins).
func DefaultSearchPath() []string {
	dirs := []string{"evaluators"}
	for _, d := range filepath.SplitList(os.Getenv(EnvSearchPath)) {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	if d, err := userDataDir(); err == nil {
		dirs = append(dirs, filepath.Join(d, "longctx", "evaluators"))
	}
	if exe, err := os.Executable(); err == nil {
		dirs = append(dirs, filepath.Join(filepath.Dir(exe), "evaluators"))
	}
	return dirs
}

// userDataDir is the per-user data folder: $XDG_DATA_HOME or ~/.local/share
// on Unix, where os.UserConfigDir's counterparts elsewhere also hold data.
func userDataDir() (string, error) {
	switch runtime.GOOS {
	case "windows", "darwin", "ios", "plan9":
		return os.UserConfigDir()
	}
	if d := os.Getenv("XDG_DATA_HOME"); filepath.IsAbs(d) {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".local", "share"), nil
}

// IsPath reports whether ref names a file rather than an evaluator: it has a
// path separator or ends in .wasm.
func IsPath(ref string) bool {
	return strings.HasSuffix(ref, Ext) || strings.ContainsRune(ref, '/') || strings.ContainsRune(ref, filepath.Separator)
}

// Resolve turns an evaluator name or module path into the module's file path.
// A name is looked up as NAME.wasm in each search-path folder in order.
func Resolve(ref string, searchPath []string) (string, error) {
	if IsPath(ref) {
		st, err := os.Stat(ref)
		if err != nil {
			return "", &RunError{Evaluator: ref, Phase: "load", Kind: ErrNotFound, Detail: err.Error()}
		}
		if st.IsDir() {
			return "", &RunError{Evaluator: ref, Phase: "load", Kind: ErrNotFound, Detail: "is a directory, not a .wasm module"}
		}
		return ref, nil
	}
	if !contract.ValidName(ref) {
		return "", &RunError{Evaluator: ref, Phase: "load", Kind: ErrNotFound,
			Detail: "not a valid evaluator name ([A-Za-z0-9][A-Za-z0-9_.-]*) nor a path to a .wasm file"}
	}
	for _, dir := range searchPath {
		p := filepath.Join(dir, ref+Ext)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", &RunError{Evaluator: ref, Phase: "load", Kind: ErrNotFound,
		Detail: fmt.Sprintf("no %s%s in %s (set %s or pass a path)", ref, Ext, strings.Join(searchPath, ", "), EnvSearchPath)}
}

// Found is an evaluator module on the search path.
type Found struct {
	Name string // file name without .wasm: what Load takes
	Path string
	// Shadowed is set when a folder earlier on the search path has a module
	// of the same name, which is the one Load picks.
	Shadowed bool
}

// List returns the evaluator modules in the search-path folders, in lookup
// order and by name within a folder. Missing folders are skipped; other
// read errors are returned with what was found so far.
func List(searchPath []string) ([]Found, error) {
	var found []Found
	var errs []error
	seen := make(map[string]bool)
	for _, dir := range searchPath {
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("evaluator folder %s: %w", dir, err))
			continue
		}
		sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
		for _, e := range entries {
			name, ok := strings.CutSuffix(e.Name(), Ext)
			path := filepath.Join(dir, e.Name())
			if !ok || !contract.ValidName(name) {
				continue
			}
			if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() {
				continue // a folder, or a dangling link
			}
			found = append(found, Found{Name: name, Path: path, Shadowed: seen[name]})
			seen[name] = true
		}
	}
	return found, errors.Join(errs...)
}
