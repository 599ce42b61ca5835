// Command rouge is the built-in "rouge" evaluator, a WASI module:
//
//	GOOS=wasip1 GOARCH=wasm go build -o bin/evaluators/rouge.wasm ./evaluators/builtin/rouge
package main

import "github.com/longctx/longctx/evaluators/builtin"

func main() { builtin.Main("rouge") }
