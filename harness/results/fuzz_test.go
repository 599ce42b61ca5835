package results

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzReadFile feeds arbitrary bytes to the reader behind ReadFile: a
// damaged or foreign file in a results folder must give an error, never a
// panic or a runaway allocation that takes the report down.
func FuzzReadFile(f *testing.F) {
	var valid bytes.Buffer
	if err := writeRows(&valid, sampleRows("seed")); err != nil {
		f.Fatal(err)
	}
	good := valid.Bytes()
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(good[len(good)/2:])
	f.Add([]byte{})
	f.Add([]byte("PAR1"))
	f.Add([]byte("PAR1\x00\x00\x00\x00PAR1"))
	flipped := bytes.Clone(good)
	flipped[len(flipped)/3] ^= 0xff
	f.Add(flipped)

	f.Fuzz(func(t *testing.T, data []byte) {
		rows, err := readRows(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		// Whatever parses must also be what ReadFile returns from disk.
		path := filepath.Join(t.TempDir(), "f.parquet")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		again, err := ReadFile(path)
		if err != nil || len(again) != len(rows) {
			t.Fatalf("readRows gave %d rows, ReadFile %d rows and %v", len(rows), len(again), err)
		}
	})
}
