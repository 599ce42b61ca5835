package host

import (
	"bytes"
	"errors"
	"fmt"
)

// wasmMagic opens every WebAssembly binary module: "\0asm" and version 1.
var wasmMagic = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

// initialMemoryPages reads the minimum size, in 64 KiB pages, that a binary
// module declares for its own linear memory (the memory section), and
// whether it declares one. wazero's CompiledModule only exposes exported
// memories; the host needs the minimum of any memory to refuse, before
// instantiating, a module that could not start under the memory cap.
func initialMemoryPages(bin []byte) (pages uint64, found bool, err error) {
	if !bytes.HasPrefix(bin, wasmMagic) {
		return 0, false, errors.New("not a WebAssembly binary module (bad magic or version)")
	}
	r := byteReader{b: bin[len(wasmMagic):]}
	for !r.done() {
		id, err := r.byte()
		if err != nil {
			return 0, false, err
		}
		size, err := r.uleb(32)
		if err != nil {
			return 0, false, fmt.Errorf("section %d size: %w", id, err)
		}
		body, err := r.take(size)
		if err != nil {
			return 0, false, fmt.Errorf("section %d: %w", id, err)
		}
		if id != 5 { // 5 is the memory section
			continue
		}
		sr := byteReader{b: body}
		count, err := sr.uleb(32)
		if err != nil {
			return 0, false, fmt.Errorf("memory section: %w", err)
		}
		if count == 0 {
			return 0, false, nil
		}
		flags, err := sr.byte()
		if err != nil {
			return 0, false, fmt.Errorf("memory section: %w", err)
		}
		bits := 32
		if flags&0x04 != 0 { // memory64
			bits = 64
		}
		minPages, err := sr.uleb(bits)
		if err != nil {
			return 0, false, fmt.Errorf("memory section: minimum: %w", err)
		}
		return minPages, true, nil
	}
	return 0, false, nil
}

type byteReader struct {
	b   []byte
	off int
}

func (r *byteReader) done() bool { return r.off >= len(r.b) }

func (r *byteReader) byte() (byte, error) {
	if r.off >= len(r.b) {
		return 0, errors.New("unexpected end of module")
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

func (r *byteReader) take(n uint64) ([]byte, error) {
	if n > uint64(len(r.b)-r.off) {
		return nil, fmt.Errorf("length %d runs past the end of the module", n)
	}
	out := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return out, nil
}

// uleb decodes an unsigned LEB128 number of at most bits bits.
func (r *byteReader) uleb(bits int) (uint64, error) {
	var v uint64
	maxBytes := (bits + 6) / 7
	for i := 0; i < maxBytes; i++ {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		shift := 7 * i
		payload := uint64(c & 0x7f)
		if shift+7 > bits && payload>>(bits-shift) != 0 {
			return 0, fmt.Errorf("LEB128 number overflows %d bits", bits)
		}
		v |= payload << shift
		if c&0x80 == 0 {
			return v, nil
		}
	}
	return 0, errors.New("LEB128 number too long")
}
