package results

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/parquet-go/parquet-go"
)

// Ext is the suffix of a finished cell file. Temp files start with a dot and
// end in ".tmp", so neither a `*.parquet` glob nor Finished ever sees one.
const Ext = ".parquet"

const maxCellIDLen = 200

// readBatch bounds what one read allocates, so a footer that claims billions
// of rows costs nothing until the rows are really decoded.
const readBatch = 256

// ValidateCellID reports whether id is usable as a file name on every
// platform the harness runs on: it is the only part of the path that comes
// from configuration, so it must not be able to reach outside the results
// folder or collide with temp files.
func ValidateCellID(id string) error {
	if id == "" {
		return errors.New("cell id is empty")
	}
	if len(id) > maxCellIDLen {
		return fmt.Errorf("cell id is %d bytes long, the limit is %d", len(id), maxCellIDLen)
	}
	if id[0] == '.' || id[0] == '-' {
		return fmt.Errorf("cell id %q starts with %q", id, id[0])
	}
	for i, c := range []byte(id) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == '+' || c == '='
		if !ok {
			return fmt.Errorf("cell id %q has byte %q at %d; allowed are ASCII letters, digits and - _ . + =", id, c, i)
		}
	}
	return nil
}

// CellPath is where WriteCell puts the file of cellID.
func CellPath(dir, cellID string) string {
	return filepath.Join(dir, cellID+Ext)
}

// WriteCell writes rows as <dir>/<cellID>.parquet (zstd) and returns the path.
// The file is written under a temp name in dir, synced and renamed, so the
// final name only ever holds a complete file: that is what lets a sweep treat
// "the file exists" as "the cell is finished". An existing file of the same
// cell is replaced. Every row must validate and carry cellID.
func WriteCell(dir, cellID string, rows []Row) (path string, err error) {
	if err := ValidateCellID(cellID); err != nil {
		return "", err
	}
	if len(rows) == 0 {
		return "", fmt.Errorf("cell %s: no rows (an OOM or error is a row, so a run cell always has one)", cellID)
	}
	for i := range rows {
		if err := rows[i].Validate(); err != nil {
			return "", fmt.Errorf("cell %s: row %d: %w", cellID, i, err)
		}
		if rows[i].CellID != cellID {
			return "", fmt.Errorf("cell %s: row %d has cell_id %q", cellID, i, rows[i].CellID)
		}
	}

	path = CellPath(dir, cellID)
	tmp, err := os.CreateTemp(dir, "."+cellID+".*.tmp")
	if err != nil {
		return "", fmt.Errorf("cell %s: %w", cellID, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// CreateTemp makes the file private; a results file is shared data.
	if err := tmp.Chmod(0o644); err != nil {
		return "", fmt.Errorf("chmod %s: %w", tmp.Name(), err)
	}
	if err := writeRows(tmp, rows); err != nil {
		return "", fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return "", fmt.Errorf("sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("cell %s: %w", cellID, err)
	}
	// The rename is only durable once the folder entry is on disk.
	if err := syncDir(dir); err != nil {
		return "", fmt.Errorf("cell %s: %w", cellID, err)
	}
	return path, nil
}

func writeRows(w io.Writer, rows []Row) error {
	utc := make([]Row, len(rows))
	for i := range rows {
		utc[i] = rows[i]
		utc[i].Timestamp = rows[i].Timestamp.UTC()
	}
	pw := parquet.NewGenericWriter[Row](w, parquet.Compression(&parquet.Zstd))
	if _, err := pw.Write(utc); err != nil {
		pw.Close()
		return err
	}
	return pw.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// ReadFile reads the rows of one cell file. Files written before a column
// was added read back with that column's zero value (nil for nullable ones).
func ReadFile(path string) ([]Row, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	rows, err := readRows(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return rows, nil
}

// ReadDir reads every cell file directly in dir (not in subfolders), in file
// name order.
func ReadDir(dir string) ([]Row, error) {
	paths, err := cellFiles(dir)
	if err != nil {
		return nil, err
	}
	var all []Row
	for _, p := range paths {
		rows, err := ReadFile(p)
		if err != nil {
			return nil, err
		}
		all = append(all, rows...)
	}
	return all, nil
}

// Finished returns the cells of dir that have a complete file, for a sweep
// to skip on rerun. Each file's footer is parsed: a file that is not a
// readable results file is reported as an error rather than silently
// counted finished (which would skip the cell forever) or unfinished (which
// would overwrite data).
func Finished(dir string) (map[string]bool, error) {
	paths, err := cellFiles(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return map[string]bool{}, nil
		}
		return nil, err
	}
	done := make(map[string]bool, len(paths))
	for _, p := range paths {
		if err := checkFooter(p); err != nil {
			return nil, err
		}
		done[strings.TrimSuffix(filepath.Base(p), Ext)] = true
	}
	return done, nil
}

func checkFooter(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if _, err := openResults(f, st.Size()); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}

// cellFiles lists the finished cell files of dir, sorted.
func cellFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(name, Ext) {
			continue
		}
		if ValidateCellID(strings.TrimSuffix(name, Ext)) != nil {
			continue
		}
		paths = append(paths, filepath.Join(dir, name))
	}
	sort.Strings(paths)
	return paths, nil
}

// openResults opens a Parquet file and checks that it is a results file
// whose columns can be converted into Row.
func openResults(r io.ReaderAt, size int64) (f *parquet.File, err error) {
	// parquet-go panics on some malformed inputs; a bad file must be an error.
	defer func() {
		if p := recover(); p != nil {
			f, err = nil, fmt.Errorf("malformed parquet file: %v", p)
		}
	}()
	if err := checkFooterLength(r, size); err != nil {
		return nil, err
	}
	f, err = parquet.OpenFile(r, size)
	if err != nil {
		return nil, err
	}
	if err := checkSchema(f.Schema()); err != nil {
		return nil, err
	}
	if err := checkPages(r, size, f); err != nil {
		return nil, err
	}
	return f, nil
}

func readRows(r io.ReaderAt, size int64) (rows []Row, err error) {
	f, err := openResults(r, size)
	if err != nil {
		return nil, err
	}
	defer func() {
		if p := recover(); p != nil {
			rows, err = nil, fmt.Errorf("malformed parquet file: %v", p)
		}
	}()
	pr := parquet.NewGenericReader[Row](f)
	defer pr.Close()
	buf := make([]Row, readBatch)
	for {
		n, err := pr.Read(buf)
		rows = append(rows, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, errors.New("reader made no progress")
		}
		clear(buf)
	}
	if int64(len(rows)) != f.NumRows() {
		return nil, fmt.Errorf("footer says %d rows, read %d", f.NumRows(), len(rows))
	}
	return rows, nil
}
