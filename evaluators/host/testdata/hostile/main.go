// Command hostile is a misbehaving evaluator for the host's sandbox tests.
// It describes itself properly, then does what the first item's prediction
// asks: loop forever, eat memory, reach for files, sockets or the
// environment, or break the output contract. One module covers every case,
// so the tests build it once.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/longctx/longctx/evaluators/contract"
	"github.com/longctx/longctx/evaluators/sdk"
)

var descriptor = contract.Descriptor{
	Contract: contract.Version, Name: "hostile", Version: "0.0.1",
	Scores: []contract.ScoreSpec{{Name: "value", HigherIsBetter: true}},
}

func main() {
	if len(os.Args) > 1 {
		sdk.Main(descriptor, nil)
	}
	in := bufio.NewReader(os.Stdin)
	var items []contract.Item
	for {
		line, err := in.ReadBytes('\n')
		if len(line) > 0 {
			var it contract.Item
			if err := json.Unmarshal(line, &it); err != nil {
				fail("bad input: %v", err)
			}
			items = append(items, it)
		}
		if err != nil {
			break
		}
	}
	if len(items) == 0 {
		return
	}
	switch items[0].Prediction {
	case "loop":
		n := 0
		for {
			n++
		}
	case "alloc":
		var hoard [][]byte
		for {
			hoard = append(hoard, make([]byte, 8<<20))
		}
	case "open":
		// The test passes the absolute path of a file it made.
		for _, path := range append([]string{"/etc/passwd"}, items[0].References...) {
			if _, err := os.ReadFile(path); err == nil {
				fail("SANDBOX ESCAPE: read %s", path)
			}
		}
		_, err := os.ReadFile("/etc/passwd")
		fail("open refused: %v", err)
	case "create":
		if err := os.WriteFile("/tmp/longctx-hostile", []byte("x"), 0o644); err != nil {
			fail("create refused: %v", err)
		}
		fail("SANDBOX ESCAPE: wrote /tmp/longctx-hostile")
	case "dial":
		// The test passes the address of a listener it watches.
		for _, addr := range items[0].References {
			if conn, err := net.Dial("tcp", addr); err == nil {
				conn.Write([]byte("hello"))
				fail("SANDBOX ESCAPE: connected to %s", addr)
			}
		}
		_, err := net.Dial("tcp", items[0].References[0])
		fail("dial refused: %v", err)
	case "env":
		if env := os.Environ(); len(env) > 0 {
			fail("SANDBOX ESCAPE: environment %v", env)
		}
		fail("environment empty")
	case "garbage":
		fmt.Println("this is not JSON \x00\x1b[31m")
	case "flood":
		chunk := strings.Repeat("A", 1<<20)
		for {
			// Ignore write errors, as a careless module would.
			fmt.Print(chunk)
		}
	case "flood-stderr":
		chunk := strings.Repeat("E", 1<<20)
		for {
			fmt.Fprint(os.Stderr, chunk)
		}
	case "wrong-id":
		emit("not-"+items[0].ID, `{"value":1}`)
	case "extra-score":
		emit(items[0].ID, `{"value":1,"bonus":2}`)
	case "huge-number":
		emit(items[0].ID, `{"value":1e999}`)
	case "short":
		// Answers only the first item.
		emit(items[0].ID, `{"value":1}`)
	case "panic":
		panic("evaluator bug")
	default:
		for _, it := range items {
			emit(it.ID, `{"value":0.5}`)
		}
	}
}

func emit(id, scores string) {
	idJSON, _ := json.Marshal(id)
	fmt.Printf("{\"id\":%s,\"scores\":%s}\n", idJSON, scores)
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(3)
}
