package host

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"
)

// memoryModule builds a module with one memory section declaring min pages
// (and max, when given), preceded by an unrelated custom section.
func memoryModule(min uint64, max *uint64) []byte {
	uleb := func(v uint64) []byte {
		var out []byte
		for {
			c := byte(v & 0x7f)
			v >>= 7
			if v != 0 {
				out = append(out, c|0x80)
				continue
			}
			return append(out, c)
		}
	}
	body := []byte{0x01}
	if max == nil {
		body = append(append(body, 0x00), uleb(min)...)
	} else {
		body = append(append(append(body, 0x01), uleb(min)...), uleb(*max)...)
	}
	custom := append([]byte{0x04}, "name"...)
	bin := slices.Clone(emptyModule)
	bin = append(append(append(bin, 0x00), uleb(uint64(len(custom)))...), custom...)
	return append(append(append(bin, 0x05), uleb(uint64(len(body)))...), body...)
}

func TestInitialMemoryPages(t *testing.T) {
	ten := uint64(10)
	for _, tc := range []struct {
		min uint64
		max *uint64
	}{{0, nil}, {1, nil}, {43, &ten}, {2048, nil}, {65536, nil}, {1 << 31, nil}} {
		pages, found, err := initialMemoryPages(memoryModule(tc.min, tc.max))
		if err != nil || !found || pages != tc.min {
			t.Errorf("min %d: got %d, %v, %v", tc.min, pages, found, err)
		}
	}
	if _, found, err := initialMemoryPages(emptyModule); found || err != nil {
		t.Errorf("empty module: found %v, %v", found, err)
	}
	if _, _, err := initialMemoryPages(memoryModule(1<<32, nil)); err == nil {
		t.Error("accepted a 33-bit page count for a 32-bit memory")
	}
	bin := memoryModule(5, nil)
	for cut := 0; cut < len(bin); cut++ {
		if _, found, err := initialMemoryPages(bin[:cut]); found && err == nil {
			t.Errorf("module cut at %d bytes still reports a memory", cut)
		}
	}
}

func FuzzInitialMemoryPages(f *testing.F) {
	f.Add(memoryModule(43, nil))
	f.Add(emptyModule)
	f.Add(bigMemoryModule)
	f.Add(envImportModule)
	f.Add([]byte("\x00asm\x01\x00\x00\x00\x05\xff\xff\xff\xff\x0f"))
	f.Fuzz(func(t *testing.T, bin []byte) {
		pages, found, err := initialMemoryPages(bin)
		if err != nil && (found || pages != 0) {
			t.Fatalf("error %v with a result %d, %v", err, pages, found)
		}
	})
}

func FuzzParseResponse(f *testing.F) {
	good := func(resp workerResponse, stdout, stderr string) []byte {
		resp.StdoutLen, resp.StderrLen = len(stdout), len(stderr)
		h, _ := json.Marshal(resp)
		return append(append(h, '\n'), stdout+stderr...)
	}
	f.Add(good(workerResponse{Outcome: outcomeOK}, "{\"id\":\"a\"}\n", ""))
	f.Add(good(workerResponse{Outcome: outcomeExit, ExitCode: 3}, "", "boom\n"))
	f.Add([]byte(`{"outcome":"ok","stdout_len":-1,"stderr_len":1}` + "\nx"))
	f.Add([]byte("no header"))
	f.Fuzz(func(t *testing.T, b []byte) {
		resp, stdout, stderr, err := parseResponse(b)
		if err != nil {
			return
		}
		if len(stdout) != resp.StdoutLen || len(stderr) != resp.StderrLen {
			t.Fatalf("lengths %d/%d, announced %d/%d", len(stdout), len(stderr), resp.StdoutLen, resp.StderrLen)
		}
		if !bytes.HasSuffix(b, append(slices.Clone(stdout), stderr...)) {
			t.Fatal("parts are not the response's tail")
		}
	})
}
