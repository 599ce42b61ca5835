package host

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/longctx/longctx/plugins/manifest"
	"github.com/longctx/longctx/plugins/sdk"
)

// EnvPluginPath names the environment variable with extra plugin roots,
// separated like PATH.
const EnvPluginPath = "LONGCTX_PLUGIN_PATH"

// Location is where a plugin lives.
type Location struct {
	// Dir is the plugin folder; empty when an executable was named directly.
	Dir string
	// Executable is the plugin program.
	Executable string
	// Manifest is the folder's manifest; nil for a bare executable, which
	// is started without a checksum check because the user named it.
	Manifest *manifest.Manifest
}

// String names the location for messages.
func (l Location) String() string {
	if l.Dir != "" {
		return l.Dir
	}
	return l.Executable
}

// DefaultSearchPath returns the roots searched for short names, in order:
// ./plugins, each entry of $LONGCTX_PLUGIN_PATH, and the user's data
// folder (…/longctx/plugins). Within a root, a plugin NAME of kind KIND is
// the folder ROOT/KIND/NAME or ROOT/NAME.
func DefaultSearchPath() []string {
	roots := []string{"plugins"}
	for _, r := range filepath.SplitList(os.Getenv(EnvPluginPath)) {
		if r != "" {
			roots = append(roots, r)
		}
	}
	if d := userDataDir(); d != "" {
		roots = append(roots, filepath.Join(d, "longctx", "plugins"))
	}
	return roots
}

// userDataDir follows each platform's convention for per-user data.
func userDataDir() string {
	switch runtime.GOOS {
	case "windows":
		return os.Getenv("LocalAppData")
	case "darwin":
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, "Library", "Application Support")
		}
		return ""
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return d
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share")
	}
	return ""
}

// isPathRef reports whether ref names a file or folder rather than a
// short name: it contains a path separator or starts with a dot.
func isPathRef(ref string) bool {
	return strings.ContainsRune(ref, '/') || strings.ContainsRune(ref, filepath.Separator) || strings.HasPrefix(ref, ".")
}

// Resolve finds the plugin ref names: a plugin folder (holding
// plugin.json), a plugin.json, an executable, or a short name looked up in
// searchPath. kind, when non-zero, is the kind wanted; a plugin folder of
// another kind is an error.
func Resolve(kind sdk.Kind, ref string, searchPath []string) (Location, error) {
	if ref == "" {
		return Location{}, errors.New("no plugin named")
	}
	if isPathRef(ref) {
		return resolvePath(kind, ref)
	}
	if !validShortName(ref) {
		return Location{}, fmt.Errorf("plugin name %q: want a short name (letters, digits, '_', '-') or a path", ref)
	}
	var tried []string
	var firstErr error
	for _, root := range searchPath {
		for _, dir := range candidates(root, kind, ref) {
			tried = append(tried, dir)
			if _, err := os.Stat(dir); err != nil {
				continue
			}
			loc, err := resolveDir(kind, dir)
			if err == nil {
				return loc, nil
			}
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	if firstErr != nil {
		return Location{}, firstErr
	}
	what := "plugin"
	if kind != 0 {
		what = kind.String() + " plugin"
	}
	return Location{}, fmt.Errorf("no %s named %q (searched %s; set %s to add folders)", what, ref, strings.Join(tried, ", "), EnvPluginPath)
}

func validShortName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func candidates(root string, kind sdk.Kind, name string) []string {
	var dirs []string
	kinds := sdk.Kinds
	if kind != 0 {
		kinds = []sdk.Kind{kind}
	}
	for _, k := range kinds {
		dirs = append(dirs, filepath.Join(root, k.String(), name))
	}
	return append(dirs, filepath.Join(root, name))
}

func resolvePath(kind sdk.Kind, ref string) (Location, error) {
	info, err := os.Stat(ref)
	if err != nil {
		return Location{}, fmt.Errorf("plugin %s: %w", ref, err)
	}
	if info.IsDir() {
		return resolveDir(kind, ref)
	}
	if filepath.Base(ref) == manifest.FileName {
		return resolveDir(kind, filepath.Dir(ref))
	}
	if info.Mode()&0o111 == 0 && runtime.GOOS != "windows" {
		return Location{}, fmt.Errorf("plugin %s: not an executable file", ref)
	}
	exe, err := filepath.Abs(ref)
	if err != nil {
		return Location{}, err
	}
	return Location{Executable: exe}, nil
}

func resolveDir(kind sdk.Kind, dir string) (Location, error) {
	m, err := manifest.Load(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return Location{}, fmt.Errorf("plugin folder %s has no %s (built plugins get one from `make plugins`)", dir, manifest.FileName)
	}
	if err != nil {
		return Location{}, err
	}
	if kind != 0 && m.Kind != kind.String() {
		return Location{}, fmt.Errorf("plugin %s in %s is a %s plugin, not %s", m.Name, dir, m.Kind, kind)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Location{}, err
	}
	return Location{Dir: abs, Executable: filepath.Join(abs, m.Executable), Manifest: &m}, nil
}

// Discover lists every plugin folder under the roots: ROOT/KIND/NAME and
// ROOT/NAME holding a manifest. Folders whose manifest is broken come back
// as errors, so a listing can show them.
func Discover(searchPath []string) ([]Location, []error) {
	var locs []Location
	var errs []error
	seen := map[string]bool{}
	for _, root := range searchPath {
		var dirs []string
		for _, k := range sdk.Kinds {
			dirs = append(dirs, subdirs(filepath.Join(root, k.String()))...)
		}
		dirs = append(dirs, subdirs(root)...)
		for _, dir := range dirs {
			if _, err := os.Stat(filepath.Join(dir, manifest.FileName)); err != nil {
				continue
			}
			abs, err := filepath.Abs(dir)
			if err != nil || seen[abs] {
				continue
			}
			seen[abs] = true
			loc, err := resolveDir(0, dir)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			locs = append(locs, loc)
		}
	}
	return locs, errs
}

func subdirs(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}
