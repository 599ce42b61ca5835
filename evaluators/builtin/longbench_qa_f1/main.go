// Command longbench_qa_f1 is the built-in "longbench_qa_f1" evaluator, a WASI module:
//
//	GOOS=wasip1 GOARCH=wasm go build -o bin/evaluators/longbench_qa_f1.wasm ./evaluators/builtin/longbench_qa_f1
package main

import "github.com/longctx/longctx/evaluators/builtin"

func main() { builtin.Main("longbench_qa_f1") }
