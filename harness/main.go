// Command harness benchmarks long-context LLM inference: it runs Llama,
// Mistral and Qwen checkpoints and measures what attention backends and
// KV-cache compression methods cost and buy. See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := newRootCommand(os.Stdout, os.Stderr)
	if err := cmd.ExecuteContext(ctx); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(os.Stderr, "harness: %v\nRun '%s --help' for usage.\n", err, ue.command)
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "harness: %v\n", err)
		os.Exit(1)
	}
}
