// Command hotpotqa is the built-in "hotpotqa" evaluator, a WASI module:
//
//	GOOS=wasip1 GOARCH=wasm go build -o bin/evaluators/hotpotqa.wasm ./evaluators/builtin/hotpotqa
package main

import "github.com/longctx/longctx/evaluators/builtin"

func main() { builtin.Main("hotpotqa") }
