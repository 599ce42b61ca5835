package sweep

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/longctx/longctx/harness/results"
)

// cellsFileVersion is written into every cells file; readers refuse other
// versions rather than guess.
const cellsFileVersion = 1

// maxCellsFile bounds what DecodeCells reads.
const maxCellsFile = 256 << 20

type cellsFile struct {
	Version int    `json:"version"`
	Cells   []Cell `json:"cells"`
}

// FinishedIn returns a Done function for the cells whose results file in
// dir is complete (see results.Finished). It reads dir once: cells that
// finish later are not seen.
func FinishedIn(dir string) (func(id string) bool, error) {
	done, err := results.Finished(dir)
	if err != nil {
		return nil, fmt.Errorf("find finished cells in %s: %w", dir, err)
	}
	return func(id string) bool { return done[id] }, nil
}

// Pending returns the cells that done does not report finished, in order.
func Pending(cells []Cell, done func(id string) bool) []Cell {
	var out []Cell
	for _, c := range cells {
		if done == nil || !done(c.ID()) {
			out = append(out, c)
		}
	}
	return out
}

// EncodeCells writes cells as the JSON cells file a Slurm array reads.
func EncodeCells(w io.Writer, cells []Cell) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(cellsFile{Version: cellsFileVersion, Cells: cells}); err != nil {
		return fmt.Errorf("encode cells: %w", err)
	}
	return nil
}

// DecodeCells reads a cells file written by EncodeCells. Unknown fields and
// invalid cells are errors naming the cell index.
func DecodeCells(r io.Reader) ([]Cell, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxCellsFile+1))
	if err != nil {
		return nil, fmt.Errorf("read cells: %w", err)
	}
	if len(data) > maxCellsFile {
		return nil, fmt.Errorf("cells file is larger than %d bytes", maxCellsFile)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f cellsFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("decode cells: %w", err)
	}
	if dec.More() {
		return nil, errors.New("decode cells: trailing data after the JSON object")
	}
	if f.Version != cellsFileVersion {
		return nil, fmt.Errorf("cells file version %d: want %d", f.Version, cellsFileVersion)
	}
	for i, c := range f.Cells {
		if err := c.Validate(); err != nil {
			return nil, fmt.Errorf("cell %d: %w", i, err)
		}
	}
	return f.Cells, nil
}

// WriteCellsFile writes cells to path (through a temp file and a rename, so
// a task never reads half a file).
func WriteCellsFile(path string, cells []Cell) error {
	var buf bytes.Buffer
	if err := EncodeCells(&buf, cells); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write cells file: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("write cells file %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write cells file %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write cells file: %w", err)
	}
	return nil
}

// ReadCellsFile reads a cells file written by WriteCellsFile.
func ReadCellsFile(path string) ([]Cell, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read cells file: %w", err)
	}
	defer f.Close()
	cells, err := DecodeCells(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cells, nil
}

// CellAt returns cell i of the cells file at path: what one Slurm array task
// (i = $SLURM_ARRAY_TASK_ID) runs.
func CellAt(path string, i int) (Cell, error) {
	cells, err := ReadCellsFile(path)
	if err != nil {
		return Cell{}, err
	}
	if i < 0 || i >= len(cells) {
		return Cell{}, fmt.Errorf("%s: index %d is out of range: the file has %d cells", path, i, len(cells))
	}
	return cells[i], nil
}
