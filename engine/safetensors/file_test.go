package safetensors

import (
	"encoding/binary"
	"errors"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/longctx/longctx/engine/weights"
)

func TestRoundTrip(t *testing.T) {
	type spec struct {
		name  string
		dtype weights.DType
		shape []int
	}
	tests := []struct {
		name     string
		tensors  []spec
		metadata map[string]string
	}{
		{"empty", nil, nil},
		{"bf16 matrix", []spec{{"w", weights.BF16, []int{3, 5}}}, nil},
		{"f16 3d", []spec{{"w", weights.F16, []int{2, 3, 4}}}, nil},
		{"f32 vector", []spec{{"w", weights.F32, []int{7}}}, map[string]string{"format": "pt"}},
		{"scalars", []spec{{"a", weights.BF16, []int{}}, {"b", weights.F16, nil}, {"c", weights.F32, []int{}}}, nil},
		{"zero dims", []spec{{"a", weights.BF16, []int{0, 4}}, {"b", weights.F32, []int{3, 0}}, {"c", weights.F16, []int{0}}}, nil},
		{"mixed", []spec{
			{"model.embed_tokens.weight", weights.BF16, []int{11, 3}},
			{"model.norm.weight", weights.F32, []int{3}},
			{"lm_head.weight", weights.F16, []int{5, 3}},
			{"odd", weights.BF16, []int{1}}, // puts an F32 after it out of alignment unless the writer reorders
			{"empty", weights.F32, []int{2, 0, 2}},
		}, map[string]string{"format": "pt", "quote\"<&>": "ü"}},
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var in []weights.Tensor
			want := make(map[string][]float32)
			for _, s := range tc.tensors {
				n := 1
				for _, d := range s.shape {
					n *= d
				}
				data, vals := sample(rng, s.dtype, n)
				in = append(in, weights.Tensor{Name: s.name, DType: s.dtype, Shape: s.shape, Data: data})
				want[s.name] = vals
			}
			path := filepath.Join(t.TempDir(), "model.safetensors")
			if err := Write(path, in, tc.metadata); err != nil {
				t.Fatal(err)
			}
			f, err := OpenFile(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()

			if got := f.Names(); !slices.Equal(got, slices.Sorted(maps.Keys(want))) {
				t.Errorf("Names() = %q, want %q", got, slices.Sorted(maps.Keys(want)))
			}
			if !maps.Equal(f.Metadata(), tc.metadata) {
				t.Errorf("Metadata() = %v, want %v", f.Metadata(), tc.metadata)
			}
			for _, src := range in {
				got, err := f.Tensor(src.Name)
				if err != nil {
					t.Fatal(err)
				}
				if got.Name != src.Name || got.DType != src.DType || !slices.Equal(got.Shape, src.Shape) {
					t.Errorf("tensor %q: got %s %v, want %s %v", src.Name, got.DType, got.Shape, src.DType, src.Shape)
				}
				if string(got.Data) != string(src.Data) {
					t.Errorf("tensor %q: stored bytes differ", src.Name)
				}
				if len(got.Data) > 0 && !within(got.Data, f.mapping) {
					t.Errorf("tensor %q: Data is not a view of the mapping", src.Name)
				}
				vals := make([]float32, got.Elems())
				if err := got.Float32(vals, 0); err != nil {
					t.Fatal(err)
				}
				if !sameBits(vals, want[src.Name]) {
					t.Errorf("tensor %q: Float32 = %v, want %v", src.Name, vals, want[src.Name])
				}
				if got.DType == weights.F32 && len(got.Data) > 0 {
					// The writer's layout keeps F32 data 4-byte aligned, so this is zero-copy.
					s, err := got.Float32Slice()
					if err != nil {
						t.Fatal(err)
					}
					if unsafe.Pointer(&s[0]) != unsafe.Pointer(&got.Data[0]) {
						t.Errorf("tensor %q: Float32Slice copied an F32 tensor", src.Name)
					}
				}
			}
		})
	}
}

// within reports whether sub lies inside buf's memory.
func within(sub, buf []byte) bool {
	start := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(sub)))
	return p >= start && p+uintptr(len(sub)) <= start+uintptr(len(buf))
}

type malformed struct {
	name string
	file []byte
	want string // part of the error message naming the problem
}

func malformedCases() []malformed {
	entry := func(name, dtype, shape string, begin, end int) string {
		return `"` + name + `":{"dtype":"` + dtype + `","shape":` + shape + `,"data_offsets":[` + strconv.Itoa(begin) + `,` + strconv.Itoa(end) + `]}`
	}
	return []malformed{
		{"empty file", nil, "shorter than the 8-byte header length"},
		{"shorter than length field", []byte{2, 0, 0}, "shorter than the 8-byte header length"},
		{"header length beyond file", append(binary.LittleEndian.AppendUint64(nil, 100), "{}"...), "header length 100 exceeds the 2 bytes after the length field"},
		{"header length over limit", append(binary.LittleEndian.AppendUint64(nil, 1<<56), "{}"...), "exceeds the 100000000-byte limit"},
		{"header not JSON", rawFile(`{"a":`, 0), "not valid JSON"},
		{"header not an object", rawFile(`[1,2]`, 0), "not a JSON object"},
		{"header trailing garbage", rawFile(`{} {}`, 0), "data after the object"},
		{"header invalid UTF-8", rawFile("{\"\xff\":1}", 0), "not valid UTF-8"},
		{"duplicate tensor", rawFile(`{`+entry("a", "F32", "[1]", 0, 4)+`,`+entry("a", "F32", "[1]", 4, 8)+`}`, 8), `duplicate key "a"`},
		{"entry not an object", rawFile(`{"a":[0,4]}`, 4), "not a JSON object"},
		{"missing dtype", rawFile(`{"a":{"shape":[1],"data_offsets":[0,4]}}`, 4), `tensor "a": missing "dtype"`},
		{"missing shape", rawFile(`{"a":{"dtype":"F32","data_offsets":[0,4]}}`, 4), `tensor "a": missing "shape"`},
		{"missing data_offsets", rawFile(`{"a":{"dtype":"F32","shape":[1]}}`, 4), `tensor "a": missing "data_offsets"`},
		{"null dtype", rawFile(`{"a":{"dtype":null,"shape":[1],"data_offsets":[0,4]}}`, 4), `"dtype" is null`},
		{"dtype not a string", rawFile(`{"a":{"dtype":32,"shape":[1],"data_offsets":[0,4]}}`, 4), `"dtype": json: cannot unmarshal number`},
		{"shape not an array", rawFile(`{"a":{"dtype":"F32","shape":"1","data_offsets":[0,4]}}`, 4), `"shape": json: cannot unmarshal string`},
		{"fractional dimension", rawFile(`{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}`, 4), `"shape": json: cannot unmarshal number 1.5`},
		{"offsets not numbers", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":["0","4"]}}`, 4), `"data_offsets": json: cannot unmarshal string`},
		{"one offset", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4]}}`, 4), "want [begin, end]"},
		{"unknown dtype", rawFile(`{`+entry("a", "Q4_K", "[1]", 0, 4)+`}`, 4), `unknown dtype "Q4_K"`},
		{"negative dimension", rawFile(`{`+entry("a", "F32", "[-1,-4]", 0, 16)+`}`, 16), "negative dimension"},
		{"shape overflow", rawFile(`{`+entry("a", "BF16", "[4294967296,4294967296]", 0, 0)+`}`, 0), "overflows"},
		{"shape times size overflow", rawFile(`{`+entry("a", "F64", "[4611686018427387904]", 0, 0)+`}`, 0), "overflows"},
		{"partial byte", rawFile(`{`+entry("a", "F4", "[3]", 0, 1)+`}`, 1), "not a whole number of bytes"},
		{"size mismatch", rawFile(`{`+entry("a", "BF16", "[2,2]", 0, 6)+`}`, 6), "is 8 bytes, but data_offsets [0, 6] span 6"},
		{"begin after end", rawFile(`{`+entry("a", "F32", "[0]", 4, 0)+`}`, 4), "begin > end"},
		{"negative offset", rawFile(`{`+entry("a", "F32", "[1]", -4, 0)+`}`, 4), "negative offset"},
		{"truncated data", rawFile(`{`+entry("a", "F32", "[2]", 0, 8)+`}`, 5), "beyond the 5-byte data section"},
		{"overlap", rawFile(`{`+entry("a", "F32", "[2]", 0, 8)+`,`+entry("b", "F32", "[2]", 4, 12)+`}`, 12), `tensor "b" at bytes [4,12) overlaps tensor "a"`},
		{"same range twice", rawFile(`{`+entry("a", "F32", "[1]", 0, 4)+`,`+entry("b", "F32", "[1]", 0, 4)+`}`, 4), "overlaps"},
		{"hole", rawFile(`{`+entry("a", "F32", "[1]", 0, 4)+`,`+entry("b", "F32", "[1]", 8, 12)+`}`, 12), `bytes [4,8) of the data section, before tensor "b", belong to no tensor`},
		{"hole at start", rawFile(`{`+entry("a", "F32", "[1]", 4, 8)+`}`, 8), `bytes [0,4)`},
		{"trailing data", rawFile(`{`+entry("a", "F32", "[1]", 0, 4)+`}`, 8), "the last 4 bytes of the 8-byte data section belong to no tensor"},
		{"data without tensors", rawFile(`{}`, 3), "the last 3 bytes"},
		{"metadata not an object", rawFile(`{"__metadata__":"pt"}`, 0), "__metadata__: not a JSON object"},
		{"metadata value not a string", rawFile(`{"__metadata__":{"n":1}}`, 0), `"n": json: cannot unmarshal number`},
	}
}

func TestOpenFileMalformed(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range malformedCases() {
		t.Run(tc.name, func(t *testing.T) {
			path := writeBytes(t, dir, strings.ReplaceAll(tc.name, " ", "_")+".safetensors", tc.file)
			f, err := OpenFile(path)
			if err == nil {
				f.Close()
				t.Fatal("OpenFile succeeded")
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q\nwant it to name %q and contain %q", err, path, tc.want)
			}
		})
	}
}

// TestOpenFileValid covers files the writer never produces but the format allows.
func TestOpenFileValid(t *testing.T) {
	tests := []struct {
		name   string
		file   []byte
		tensor string
		dtype  weights.DType
		shape  []int
		begin  int // offset of the tensor in the data section
		size   int
	}{
		{"no tensors", rawFile(`{}`, 0), "", "", nil, 0, 0},
		{"whitespace and null metadata", rawFile(" \n{ \"__metadata__\" : null ,\"a\": {\"data_offsets\":[0,4], \"shape\":[2], \"dtype\":\"BF16\", \"extra\":1}}\t  ", 4), "a", weights.BF16, []int{2}, 0, 4},
		{"ranges out of key order", rawFile(`{"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]},"a":{"dtype":"I8","shape":[2],"data_offsets":[0,2]}}`, 6), "b", weights.F32, []int{1}, 2, 4},
		{"empty tensor between others", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"z":{"dtype":"F32","shape":[0,9],"data_offsets":[1,1]},"c":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, 2), "z", weights.F32, []int{0, 9}, 1, 0},
		{"sub-byte dtype", rawFile(`{"a":{"dtype":"F4","shape":[2,3],"data_offsets":[0,3]}}`, 3), "a", "F4", []int{2, 3}, 0, 3},
		{"huge dims times zero", rawFile(`{"a":{"dtype":"F64","shape":[0,1152921504606846976],"data_offsets":[0,0]}}`, 0), "a", "F64", []int{0, 1 << 60}, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeBytes(t, t.TempDir(), "x.safetensors", tc.file)
			f, err := OpenFile(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if tc.tensor == "" {
				if len(f.Names()) != 0 {
					t.Errorf("Names() = %q, want none", f.Names())
				}
				return
			}
			got, err := f.Tensor(tc.tensor)
			if err != nil {
				t.Fatal(err)
			}
			dataStart := 8 + int(binary.LittleEndian.Uint64(f.mapping))
			if got.DType != tc.dtype || !slices.Equal(got.Shape, tc.shape) || len(got.Data) != tc.size {
				t.Errorf("got %s %v with %d bytes, want %s %v with %d", got.DType, got.Shape, len(got.Data), tc.dtype, tc.shape, tc.size)
			}
			if tc.size > 0 && unsafe.Pointer(&got.Data[0]) != unsafe.Pointer(&f.mapping[dataStart+tc.begin]) {
				t.Errorf("Data does not start at data section offset %d", tc.begin)
			}
		})
	}
}

// TestNonFloatDTypes checks that tensors the engine cannot convert are still
// served, and that converting one is an error naming it and its type.
func TestNonFloatDTypes(t *testing.T) {
	file := rawFile(`{"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},"scale":{"dtype":"F8_E4M3","shape":[3],"data_offsets":[16,19]},"mask":{"dtype":"BOOL","shape":[1],"data_offsets":[19,20]}}`, 20)
	f, err := OpenFile(writeBytes(t, t.TempDir(), "x.safetensors", file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, name := range []string{"ids", "scale", "mask"} {
		tensor, err := f.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		err = tensor.Float32(make([]float32, 1), 0)
		if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), string(tensor.DType)) {
			t.Errorf("Float32 on %s tensor %q: error %v, want one naming both", tensor.DType, name, err)
		}
		if _, err := tensor.Float32Slice(); err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), string(tensor.DType)) {
			t.Errorf("Float32Slice on %s tensor %q: error %v, want one naming both", tensor.DType, name, err)
		}
	}
}

func TestFileTensorErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.safetensors")
	if err := Write(path, []weights.Tensor{{Name: "a", DType: weights.F32, Shape: []int{1}, Data: make([]byte, 4)}}, nil); err != nil {
		t.Fatal(err)
	}
	f, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Tensor("b"); !errors.Is(err, weights.ErrNotFound) || !strings.Contains(err.Error(), path) {
		t.Errorf("Tensor(absent) = %v, want ErrNotFound naming the file", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := f.Tensor("a"); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Tensor after Close = %v, want a closed error", err)
	}
	if _, err := OpenFile(filepath.Join(t.TempDir(), "missing.safetensors")); err == nil || !strings.Contains(err.Error(), "missing.safetensors") {
		t.Errorf("OpenFile(missing) = %v, want an error naming it", err)
	}
	if _, err := OpenFile(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("OpenFile(dir) = %v, want not a regular file", err)
	}
}
