// Package safetensors reads and writes Hugging Face safetensors checkpoints.
//
// A safetensors file is an 8-byte little-endian header length N, N bytes of
// JSON mapping each tensor name to {"dtype", "shape", "data_offsets":
// [begin, end]} (plus an optional "__metadata__" string map), then the raw
// little-endian, row-major tensor bytes; offsets are relative to the end of
// the header. Large models are split into shards named by
// model.safetensors.index.json.
//
// Files are memory-mapped read-only rather than read: an 8B-parameter bf16
// checkpoint is 16 GB, and mapping lets the model code convert or upload
// tensors straight from the page cache without a second copy in RAM, and
// lets several runs over the same checkpoint share those pages. Every header
// is fully validated before any tensor is served, so a corrupt or truncated
// file yields an error naming the file and the fault, never a panic or a
// read past the mapping.
package safetensors

import (
	"fmt"
	"maps"
	"math"
	"os"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/longctx/longctx/engine/weights"
)

// File is one memory-mapped safetensors file. Its tensors' Data alias the
// read-only mapping and are valid until Close; writing to them faults. As
// with any mapping, truncating the file on disk while it is open makes reads
// of the lost pages fault (SIGBUS): checkpoints are treated as immutable.
type File struct {
	path    string
	mapping []byte
	header
}

var _ weights.Source = (*File)(nil)

// OpenFile maps and validates the safetensors file at path.
func OpenFile(path string) (*File, error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fd.Close() // the mapping outlives the descriptor
	st, err := fd.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if st.Size() < 8 { // also avoids mmap's refusal of empty files
		return nil, fmt.Errorf("%s: file is %d bytes, shorter than the 8-byte header length", path, st.Size())
	}
	if st.Size() > math.MaxInt {
		return nil, fmt.Errorf("%s: file of %d bytes too large to map", path, st.Size())
	}
	mapping, err := unix.Mmap(int(fd.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("%s: mmap: %w", path, err)
	}
	h, err := parse(mapping)
	if err != nil {
		_ = unix.Munmap(mapping)
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &File{path: path, mapping: mapping, header: h}, nil
}

// Path returns the path the file was opened with.
func (f *File) Path() string { return f.path }

// Tensor returns a view of the named tensor; errors wrap weights.ErrNotFound
// when the file has no such tensor.
func (f *File) Tensor(name string) (weights.Tensor, error) {
	if f.mapping == nil {
		return weights.Tensor{}, fmt.Errorf("%s: tensor %q: file is closed", f.path, name)
	}
	t, ok := f.tensors[name]
	if !ok {
		return weights.Tensor{}, fmt.Errorf("%s: tensor %q: %w", f.path, name, weights.ErrNotFound)
	}
	return t, nil
}

// Names returns the tensor names in sorted order.
func (f *File) Names() []string { return slices.Clone(f.names) }

// Metadata returns the header's __metadata__ map (nil when absent).
func (f *File) Metadata() map[string]string { return maps.Clone(f.metadata) }

// Close unmaps the file. Tensors obtained earlier must no longer be used.
func (f *File) Close() error {
	if f.mapping == nil {
		return nil
	}
	err := unix.Munmap(f.mapping)
	f.mapping, f.tensors = nil, nil
	if err != nil {
		return fmt.Errorf("%s: munmap: %w", f.path, err)
	}
	return nil
}
