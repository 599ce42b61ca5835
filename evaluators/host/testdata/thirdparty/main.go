// Command wordcount is a third-party evaluator written only from
// evaluators/README.md, as its own Go module with no longctx imports: it
// shows that the contract alone is enough to write one. The host tests
// build it, drop it on the search path and load it by name.
//
//	GOOS=wasip1 GOARCH=wasm go build -o wordcount.wasm .
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

type item struct {
	ID         string   `json:"id"`
	Prediction string   `json:"prediction"`
	References []string `json:"references"`
}

type scoreLine struct {
	ID     string             `json:"id"`
	Scores map[string]float64 `json:"scores"`
}

const descriptor = `{"contract":1,"name":"wordcount","version":"0.1.0",` +
	`"description":"prediction length and reference-word coverage",` +
	`"scores":[{"name":"words","higher_is_better":false},` +
	`{"name":"coverage","higher_is_better":true,"description":"fraction of distinct reference words in the prediction"}]}`

func main() {
	if len(os.Args) > 1 && os.Args[1] == "describe" {
		fmt.Println(descriptor)
		return
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 16<<20)
	out := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(out)
	for in.Scan() {
		var it item
		if err := json.Unmarshal(in.Bytes(), &it); err != nil {
			fmt.Fprintln(os.Stderr, "wordcount:", err)
			os.Exit(1)
		}
		pred := strings.Fields(strings.ToLower(it.Prediction))
		have := make(map[string]bool, len(pred))
		for _, w := range pred {
			have[w] = true
		}
		want := make(map[string]bool)
		for _, r := range it.References {
			for _, w := range strings.Fields(strings.ToLower(r)) {
				want[w] = true
			}
		}
		covered := 0
		for w := range want {
			if have[w] {
				covered++
			}
		}
		coverage := 0.0
		if len(want) > 0 {
			coverage = float64(covered) / float64(len(want))
		}
		line := scoreLine{ID: it.ID, Scores: map[string]float64{"words": float64(len(pred)), "coverage": coverage}}
		if err := enc.Encode(line); err != nil {
			fmt.Fprintln(os.Stderr, "wordcount:", err)
			os.Exit(1)
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "wordcount:", err)
		os.Exit(1)
	}
	if err := out.Flush(); err != nil {
		os.Exit(1)
	}
}
