//go:build unix

package cuda

import "github.com/ebitengine/purego"

func dlopen(path string) (uintptr, error) {
	return purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
}

func dlclose(h uintptr) { _ = purego.Dlclose(h) }

func dlsym(h uintptr, name string) (uintptr, error) { return purego.Dlsym(h, name) }
