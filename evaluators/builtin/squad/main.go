// Command squad is the built-in "squad" evaluator, a WASI module:
//
//	GOOS=wasip1 GOARCH=wasm go build -o bin/evaluators/squad.wasm ./evaluators/builtin/squad
package main

import "github.com/longctx/longctx/evaluators/builtin"

func main() { builtin.Main("squad") }
