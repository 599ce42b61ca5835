package results

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"
)

// Limits on what a file may make the reader allocate. parquet-go sizes its
// buffers from the sizes and counts a page header declares, so a damaged
// header could ask for tens of gigabytes; checking the headers first turns
// that into an error. A cell of this harness is thousands of rows, orders of
// magnitude below these.
const (
	maxPageBytes    = 64 << 20 // uncompressed bytes of one page
	maxDecodedBytes = 1 << 30  // uncompressed bytes of all pages of a file
	maxValues       = 1 << 25  // values (leaf cells, nulls included) in a file
)

// checkFooterLength rejects a footer length that does not fit in the file
// before parquet-go allocates a buffer of that length.
func checkFooterLength(r io.ReaderAt, size int64) error {
	const magic = "PAR1"
	// header magic + footer + 4-byte footer length + footer magic
	if size < int64(3*len(magic)) {
		return fmt.Errorf("%d bytes is too short for a parquet file", size)
	}
	var tail [8]byte
	if _, err := r.ReadAt(tail[:], size-8); err != nil {
		return fmt.Errorf("reading footer length: %w", err)
	}
	if string(tail[4:]) != magic {
		return fmt.Errorf("no parquet magic %q at the end of the file (found %q)", magic, tail[4:])
	}
	n := int64(binary.LittleEndian.Uint32(tail[:4]))
	if n > size-int64(3*len(magic)) {
		return fmt.Errorf("footer length %d does not fit in the %d-byte file", n, size)
	}
	return nil
}

// checkPages walks the page headers of every column chunk without
// decompressing anything and rejects a file whose declared sizes exceed the
// limits or point outside the file.
func checkPages(r io.ReaderAt, size int64, f *parquet.File) error {
	var decoded, values int64
	for g, rg := range f.Metadata().RowGroups {
		for c, col := range rg.Columns {
			md := &col.MetaData
			start := md.DataPageOffset
			if md.DictionaryPageOffset > 0 && md.DictionaryPageOffset < start {
				start = md.DictionaryPageOffset
			}
			n := md.TotalCompressedSize
			if start < 0 || n < 0 || start > size || n > size-start {
				return fmt.Errorf("row group %d column %d: chunk [%d, +%d) outside the %d-byte file", g, c, start, n, size)
			}
			chunk := make([]byte, n)
			if _, err := r.ReadAt(chunk, start); err != nil {
				return fmt.Errorf("row group %d column %d: %w", g, c, err)
			}
			for off := 0; off < len(chunk); {
				var h format.PageHeader
				var proto thrift.CompactProtocol
				rd := proto.NewReaderFromBytes(chunk[off:])
				if err := thrift.NewDecoder(rd).Decode(&h); err != nil {
					return fmt.Errorf("row group %d column %d: page header at %d: %w", g, c, start+int64(off), err)
				}
				off += rd.BytesRead()
				if h.CompressedPageSize < 0 || int(h.CompressedPageSize) > len(chunk)-off {
					return fmt.Errorf("row group %d column %d: page at %d claims %d compressed bytes, %d remain in the chunk", g, c, start+int64(off), h.CompressedPageSize, len(chunk)-off)
				}
				if h.UncompressedPageSize < 0 || h.UncompressedPageSize > maxPageBytes {
					return fmt.Errorf("row group %d column %d: page at %d claims %d uncompressed bytes (limit %d)", g, c, start+int64(off), h.UncompressedPageSize, maxPageBytes)
				}
				off += int(h.CompressedPageSize)
				decoded += int64(h.UncompressedPageSize)
				values += int64(pageValues(&h))
				if decoded > maxDecodedBytes {
					return fmt.Errorf("pages decode to more than %d bytes", maxDecodedBytes)
				}
				if values > maxValues {
					return fmt.Errorf("pages hold more than %d values", maxValues)
				}
			}
		}
	}
	return nil
}

func pageValues(h *format.PageHeader) int32 {
	var n int32
	if d := h.DataPageHeader; d.Valid {
		n = max(n, d.V.NumValues)
	}
	if d := h.DataPageHeaderV2; d.Valid {
		n = max(n, d.V.NumValues, d.V.NumRows, d.V.NumNulls)
	}
	if d := h.DictionaryPageHeader; d.Valid {
		n = max(n, d.V.NumValues)
	}
	return max(n, 0)
}
