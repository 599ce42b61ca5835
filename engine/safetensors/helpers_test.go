package safetensors

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/longctx/longctx/engine/weights"
)

// sample returns n random values of type d as stored bytes, and the float32
// each must read back as. Values are drawn from what the type represents
// exactly, so the round trip must be bit-exact.
func sample(rng *rand.Rand, d weights.DType, n int) ([]byte, []float32) {
	var data []byte
	want := make([]float32, n)
	for i := range want {
		switch d {
		case weights.BF16:
			f := finite(rng)
			want[i] = math.Float32frombits(math.Float32bits(f) &^ 0xffff) // bf16-representable
			data = binary.LittleEndian.AppendUint16(data, weights.Float32ToBF16(want[i]))
		case weights.F16:
			h := uint16(rng.Uint32())
			for h&0x7c00 == 0x7c00 { // skip infinities and NaNs
				h = uint16(rng.Uint32())
			}
			want[i] = float32(minifloat(uint32(h), 5, 10))
			data = binary.LittleEndian.AppendUint16(data, h)
		case weights.F32:
			want[i] = finite(rng)
			data = binary.LittleEndian.AppendUint32(data, math.Float32bits(want[i]))
		default:
			panic("sample: unsupported dtype " + string(d))
		}
	}
	return data, want
}

func finite(rng *rand.Rand) float32 {
	for {
		if f := math.Float32frombits(rng.Uint32()); !math.IsNaN(float64(f)) && !math.IsInf(float64(f), 0) {
			return f
		}
	}
}

// rawFile assembles a safetensors file from a header and a zeroed data
// section, with no validation, for building malformed inputs.
func rawFile(header string, dataLen int) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, make([]byte, dataLen)...)
}

func writeBytes(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}
