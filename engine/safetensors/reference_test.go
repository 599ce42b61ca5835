package safetensors

import (
	"bytes"
	"encoding/json"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/longctx/longctx/engine/weights"
)

// testdata/reference.* come from the official safetensors library and
// PyTorch, written by testdata/gen_reference.py.
const referenceFile = "testdata/reference.safetensors"

type reference struct {
	Tensors map[string]struct {
		DType       string   `json:"dtype"`
		Shape       []int    `json:"shape"`
		Float32Bits []uint32 `json:"float32_bits"`
	} `json:"tensors"`
	BF16Rounding struct {
		Float32Bits []uint32 `json:"float32_bits"`
		BF16Bits    []uint16 `json:"bf16_bits"`
	} `json:"bf16_rounding"`
}

func loadReference(t *testing.T) reference {
	t.Helper()
	raw, err := os.ReadFile("testdata/reference.json")
	if err != nil {
		t.Fatal(err)
	}
	var ref reference
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatal(err)
	}
	return ref
}

var torchDTypes = map[string]weights.DType{
	"torch.bfloat16": weights.BF16, "torch.float16": weights.F16, "torch.float32": weights.F32,
	"torch.int64": "I64", "torch.bool": "BOOL",
}

// TestReadReference reads a file the official library wrote and checks every
// tensor against the values PyTorch read from it.
func TestReadReference(t *testing.T) {
	ref := loadReference(t)
	f, err := OpenFile(referenceFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if want := slices.Sorted(maps.Keys(ref.Tensors)); !slices.Equal(f.Names(), want) {
		t.Errorf("Names() = %q, want %q", f.Names(), want)
	}
	if md := f.Metadata(); !maps.Equal(md, map[string]string{"format": "pt"}) {
		t.Errorf("Metadata() = %v", md)
	}
	for name, want := range ref.Tensors {
		got, err := f.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		if got.DType != torchDTypes[want.DType] || !slices.Equal(got.Shape, want.Shape) {
			t.Errorf("tensor %q: %s %v, want %s %v", name, got.DType, got.Shape, want.DType, want.Shape)
		}
		if want.Float32Bits == nil {
			continue
		}
		vals := make([]float32, got.Elems())
		if err := got.Float32(vals, 0); err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			if math.Float32bits(v) != want.Float32Bits[i] {
				t.Errorf("tensor %q[%d] = %v, torch read %v", name, i, v, math.Float32frombits(want.Float32Bits[i]))
			}
		}
	}
}

// TestWriteMatchesReference checks the writer reproduces the official
// library's file byte for byte: same layout order, header and padding.
func TestWriteMatchesReference(t *testing.T) {
	f, err := OpenFile(referenceFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var tensors []weights.Tensor
	for _, name := range f.Names() {
		tensor, err := f.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		tensors = append(tensors, tensor)
	}
	path := filepath.Join(t.TempDir(), "out.safetensors")
	if err := Write(path, tensors, f.Metadata()); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(referenceFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("written file differs from the reference\ngot  %q\nwant %q", got[:min(len(got), 300)], want[:min(len(want), 300)])
	}
}

func TestFloat32ToBF16MatchesTorch(t *testing.T) {
	r := loadReference(t).BF16Rounding
	if len(r.Float32Bits) == 0 || len(r.Float32Bits) != len(r.BF16Bits) {
		t.Fatalf("reference has %d inputs and %d outputs", len(r.Float32Bits), len(r.BF16Bits))
	}
	for i, b := range r.Float32Bits {
		if got := weights.Float32ToBF16(math.Float32frombits(b)); got != r.BF16Bits[i] {
			t.Errorf("Float32ToBF16(%#08x) = %#04x, torch gives %#04x", b, got, r.BF16Bits[i])
		}
	}
}
