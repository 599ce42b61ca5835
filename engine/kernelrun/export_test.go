package kernelrun

import "testing"

// HeaderField is a field of an ABI struct, for the GPU tests of package
// kernelrun_test.
type HeaderField struct{ Name, Type string }

// HeaderFields parses struct name of an ABI header.
func HeaderFields(t *testing.T, file, name string) []HeaderField {
	var out []HeaderField
	for _, f := range headerStruct(t, file, name) {
		out = append(out, HeaderField{f.name, f.typ})
	}
	return out
}
