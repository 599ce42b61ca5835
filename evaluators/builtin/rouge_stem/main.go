// Command rouge_stem is the built-in "rouge_stem" evaluator, a WASI module:
//
//	GOOS=wasip1 GOARCH=wasm go build -o bin/evaluators/rouge_stem.wasm ./evaluators/builtin/rouge_stem
package main

import "github.com/longctx/longctx/evaluators/builtin"

func main() { builtin.Main("rouge_stem") }
