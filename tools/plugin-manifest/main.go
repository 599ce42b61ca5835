// Command plugin-manifest writes the manifest (plugin.json) of built plugin
// folders: it starts each plugin, asks for its description, and records
// its name, kind, version, protocol version, executable and SHA-256.
//
//	go run ./tools/plugin-manifest plugins/attention/eager plugins/kvcache/l2 ...
//
// Each argument is a plugin folder holding an executable named after the
// folder, or the executable itself.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/longctx/longctx/plugins/host"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: plugin-manifest PLUGIN_DIR_OR_EXECUTABLE...")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	failed := false
	for _, arg := range os.Args[1:] {
		exe := arg
		if info, err := os.Stat(arg); err == nil && info.IsDir() {
			exe = filepath.Join(arg, filepath.Base(filepath.Clean(arg)))
		}
		m, err := host.WriteManifest(ctx, exe, host.Config{LogLevel: "warn"})
		if err != nil {
			fmt.Fprintf(os.Stderr, "plugin-manifest: %s: %v\n", arg, err)
			failed = true
			continue
		}
		fmt.Printf("%s: %s plugin %s %s sha256 %s\n", filepath.Dir(exe), m.Kind, m.Name, m.Version, m.SHA256[:12])
	}
	if failed {
		os.Exit(1)
	}
}
