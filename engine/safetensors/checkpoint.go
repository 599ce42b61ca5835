package safetensors

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/longctx/longctx/engine/weights"
)

// File names Hugging Face uses for a checkpoint in a model directory.
const (
	SingleFileName = "model.safetensors"
	IndexFileName  = "model.safetensors.index.json"
)

// Checkpoint is a model's weights, from one safetensors file or from the
// shards a model.safetensors.index.json names.
type Checkpoint struct {
	path    string
	files   []*File
	tensors map[string]weights.Tensor
	names   []string
}

var _ weights.Source = (*Checkpoint)(nil)

// Open opens a checkpoint. pathOrDir is a .safetensors file, or a directory
// holding model.safetensors or, failing that, model.safetensors.index.json
// and its shards. With an index, the index decides which tensors exist, and
// each must be present in the shard it names.
func Open(pathOrDir string) (*Checkpoint, error) {
	st, err := os.Stat(pathOrDir)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return openSingle(pathOrDir)
	}
	single := filepath.Join(pathOrDir, SingleFileName)
	if _, err := os.Stat(single); err == nil {
		return openSingle(single)
	}
	index := filepath.Join(pathOrDir, IndexFileName)
	if _, err := os.Stat(index); err == nil {
		return openSharded(index)
	}
	return nil, fmt.Errorf("%s: no %s or %s", pathOrDir, SingleFileName, IndexFileName)
}

func openSingle(path string) (*Checkpoint, error) {
	f, err := OpenFile(path)
	if err != nil {
		return nil, err
	}
	return &Checkpoint{path: path, files: []*File{f}, tensors: f.tensors, names: f.names}, nil
}

func openSharded(indexPath string) (*Checkpoint, error) {
	raw, err := os.ReadFile(indexPath)
	if err != nil {
		return nil, err
	}
	weightMap, err := parseIndex(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", indexPath, err)
	}
	byShard := make(map[string][]string)
	for name, shard := range weightMap {
		byShard[shard] = append(byShard[shard], name)
	}
	c := &Checkpoint{path: indexPath, tensors: make(map[string]weights.Tensor, len(weightMap))}
	dir := filepath.Dir(indexPath)
	for _, shard := range slices.Sorted(maps.Keys(byShard)) {
		names := byShard[shard]
		slices.Sort(names)
		f, err := OpenFile(filepath.Join(dir, shard))
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("%s: shard %q, named for %d tensors such as %q: %w", indexPath, shard, len(names), names[0], err)
		}
		c.files = append(c.files, f)
		for _, name := range names {
			t, ok := f.tensors[name]
			if !ok {
				c.Close()
				return nil, fmt.Errorf("%s: tensor %q: shard %q does not contain it", indexPath, name, shard)
			}
			c.tensors[name] = t
		}
	}
	c.names = slices.Sorted(maps.Keys(c.tensors))
	return c, nil
}

// parseIndex returns the index's weight_map, tensor name → shard file name.
// Shard names must stay inside the index's directory.
func parseIndex(raw []byte) (map[string]string, error) {
	top, err := jsonObject(raw)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(top, func(m member) bool { return m.key == "weight_map" })
	if i < 0 {
		return nil, errors.New(`missing "weight_map"`)
	}
	entries, err := jsonObject(top[i].value)
	if err != nil {
		return nil, fmt.Errorf("weight_map: %w", err)
	}
	if len(entries) == 0 {
		return nil, errors.New("weight_map is empty")
	}
	weightMap := make(map[string]string, len(entries))
	for _, e := range entries {
		var shard string
		if err := decodeMember(entries, e.key, &shard); err != nil {
			return nil, fmt.Errorf("weight_map: %w", err)
		}
		if !filepath.IsLocal(shard) {
			return nil, fmt.Errorf("weight_map: tensor %q: shard %q is not a file name inside the checkpoint directory", e.key, shard)
		}
		weightMap[e.key] = shard
	}
	return weightMap, nil
}

// Tensor returns a view of the named tensor; errors wrap weights.ErrNotFound
// when the checkpoint has no such tensor.
func (c *Checkpoint) Tensor(name string) (weights.Tensor, error) {
	if c.files == nil {
		return weights.Tensor{}, fmt.Errorf("%s: tensor %q: checkpoint is closed", c.path, name)
	}
	t, ok := c.tensors[name]
	if !ok {
		return weights.Tensor{}, fmt.Errorf("%s: tensor %q: %w", c.path, name, weights.ErrNotFound)
	}
	return t, nil
}

// Names returns the tensor names in sorted order.
func (c *Checkpoint) Names() []string { return slices.Clone(c.names) }

// Close unmaps every file. Tensors obtained earlier must no longer be used.
func (c *Checkpoint) Close() error {
	var errs []error
	for _, f := range c.files {
		errs = append(errs, f.Close())
	}
	c.files, c.tensors = nil, nil
	return errors.Join(errs...)
}
