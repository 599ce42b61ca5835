package safetensors

import (
	"encoding/json"
	"errors"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/longctx/longctx/engine/weights"
)

// shardedDir writes a two-shard checkpoint and returns its directory and the
// tensors written, by name.
func shardedDir(t *testing.T) (string, map[string]weights.Tensor) {
	t.Helper()
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(5, 6))
	mk := func(name string, d weights.DType, shape ...int) weights.Tensor {
		n := 1
		for _, s := range shape {
			n *= s
		}
		data, _ := sample(rng, d, n)
		return weights.Tensor{Name: name, DType: d, Shape: shape, Data: data}
	}
	shards := map[string][]weights.Tensor{
		"model-00001-of-00002.safetensors": {mk("model.embed_tokens.weight", weights.BF16, 8, 4), mk("model.layers.0.input_layernorm.weight", weights.BF16, 4)},
		"model-00002-of-00002.safetensors": {mk("model.norm.weight", weights.F32, 4), mk("lm_head.weight", weights.F16, 8, 4)},
	}
	all := make(map[string]weights.Tensor)
	weightMap := make(map[string]string)
	for file, ts := range shards {
		if err := Write(filepath.Join(dir, file), ts, map[string]string{"format": "pt"}); err != nil {
			t.Fatal(err)
		}
		for _, tt := range ts {
			all[tt.Name] = tt
			weightMap[tt.Name] = file
		}
	}
	writeIndex(t, dir, weightMap)
	return dir, all
}

func writeIndex(t *testing.T, dir string, weightMap map[string]string) {
	t.Helper()
	index, err := json.Marshal(map[string]any{
		"metadata":   map[string]any{"total_size": 176}, // a number, as transformers writes it
		"weight_map": weightMap,
	})
	if err != nil {
		t.Fatal(err)
	}
	writeBytes(t, dir, IndexFileName, index)
}

func TestOpenSharded(t *testing.T) {
	dir, want := shardedDir(t)
	c, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, names := c.Names(), slices.Sorted(maps.Keys(want)); !slices.Equal(got, names) {
		t.Errorf("Names() = %q, want %q", got, names)
	}
	for name, w := range want {
		got, err := c.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		if got.DType != w.DType || !slices.Equal(got.Shape, w.Shape) || string(got.Data) != string(w.Data) {
			t.Errorf("tensor %q differs from what was written", name)
		}
	}
	if _, err := c.Tensor("absent"); !errors.Is(err, weights.ErrNotFound) {
		t.Errorf("Tensor(absent) = %v, want ErrNotFound", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Tensor("model.norm.weight"); err == nil {
		t.Error("Tensor after Close succeeded")
	}
}

func TestOpenSingle(t *testing.T) {
	dir := t.TempDir()
	tensors := []weights.Tensor{{Name: "w", DType: weights.F32, Shape: []int{2}, Data: make([]byte, 8)}}
	path := filepath.Join(dir, SingleFileName)
	if err := Write(path, tensors, nil); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other.safetensors")
	if err := Write(other, []weights.Tensor{{Name: "x", DType: weights.F32, Shape: []int{}, Data: make([]byte, 4)}}, nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{{dir, "w"}, {path, "w"}, {other, "x"}} {
		c, err := Open(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Names(); !slices.Equal(got, []string{tc.want}) {
			t.Errorf("Open(%s).Names() = %q, want [%q]", tc.path, got, tc.want)
		}
		c.Close()
	}
}

func TestOpenShardedErrors(t *testing.T) {
	const shard1 = "model-00001-of-00002.safetensors"
	tests := []struct {
		name    string
		breakIt func(t *testing.T, dir string)
		want    []string // parts the error must contain, besides the index path
	}{
		{"missing shard", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, shard1))
		}, []string{shard1, "model.embed_tokens.weight", "no such file"}},
		{"tensor not in shard", func(t *testing.T, dir string) {
			writeIndex(t, dir, map[string]string{"model.norm.weight": shard1})
		}, []string{shard1, `tensor "model.norm.weight"`, "does not contain it"}},
		{"corrupt shard", func(t *testing.T, dir string) {
			writeBytes(t, dir, shard1, rawFile(`{"a":1}`, 0))
		}, []string{shard1, `tensor "a": not a JSON object`}},
		{"index not JSON", func(t *testing.T, dir string) {
			writeBytes(t, dir, IndexFileName, []byte(`{"weight_map": {`))
		}, []string{"not valid JSON"}},
		{"no weight_map", func(t *testing.T, dir string) {
			writeBytes(t, dir, IndexFileName, []byte(`{"metadata": {}}`))
		}, []string{`missing "weight_map"`}},
		{"empty weight_map", func(t *testing.T, dir string) {
			writeIndex(t, dir, map[string]string{})
		}, []string{"weight_map is empty"}},
		{"shard not a string", func(t *testing.T, dir string) {
			writeBytes(t, dir, IndexFileName, []byte(`{"weight_map": {"a": 1}}`))
		}, []string{`"a": json: cannot unmarshal number`}},
		{"duplicate tensor", func(t *testing.T, dir string) {
			writeBytes(t, dir, IndexFileName, []byte(`{"weight_map": {"a": "x.safetensors", "a": "y.safetensors"}}`))
		}, []string{`duplicate key "a"`}},
		{"shard outside directory", func(t *testing.T, dir string) {
			writeIndex(t, dir, map[string]string{"a": "../x.safetensors"})
		}, []string{`"../x.safetensors" is not a file name inside`}},
		{"absolute shard path", func(t *testing.T, dir string) {
			writeIndex(t, dir, map[string]string{"a": "/etc/passwd"})
		}, []string{"is not a file name inside"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir, _ := shardedDir(t)
			tc.breakIt(t, dir)
			c, err := Open(dir)
			if err == nil {
				c.Close()
				t.Fatal("Open succeeded")
			}
			for _, want := range append(tc.want, filepath.Join(dir, IndexFileName)) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q\nwant it to contain %q", err, want)
				}
			}
		})
	}
}

func TestOpenEmptyDir(t *testing.T) {
	dir := t.TempDir()
	_, err := Open(dir)
	if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), SingleFileName) {
		t.Errorf("Open(empty dir) = %v, want an error naming the directory and what is missing", err)
	}
}
