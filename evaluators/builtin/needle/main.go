// Command needle is the built-in "needle" evaluator, a WASI module:
//
//	GOOS=wasip1 GOARCH=wasm go build -o bin/evaluators/needle.wasm ./evaluators/builtin/needle
package main

import "github.com/longctx/longctx/evaluators/builtin"

func main() { builtin.Main("needle") }
