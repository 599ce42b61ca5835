package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// version is set at link time (-ldflags "-X main.version=...").
var version = "dev"

// usageError marks errors in how a command was called, so main can point the
// user at --help and exit 2 as CLI tools conventionally do.
type usageError struct {
	command string
	err     error
}

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(cmd *cobra.Command, format string, args ...any) error {
	return usageError{command: cmd.CommandPath(), err: fmt.Errorf(format, args...)}
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "harness",
		Short: "Benchmark harness for long-context LLM inference",
		Long: `harness runs Llama, Mistral and Qwen checkpoints and measures what an
attention backend and a KV-cache compression method cost and buy: latency,
throughput, memory, the longest context that fits, and task quality.`,
		Example: `  harness sweep --default && harness report results/default --out report/default
  harness run --model synthetic:tiny --task needle --context 512,1k --attn flash --kv l2 --kv-opt ratio=0.5
  harness generate --model synthetic:tiny --prompt "The capital of France is" --max-new-tokens 16
  harness plugins list
  harness doctor
  harness completion bash > /etc/bash_completion.d/harness`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError{command: cmd.CommandPath(), err: err}
	})
	root.AddCommand(
		newRunCommand(),
		newSweepCommand(),
		newReportCommand(),
		newDoctorCommand(),
		newKernelsCommand(),
		newBenchCommand(),
		newGenerateCommand(),
		newTokenizeCommand(),
		newModelsCommand(),
		newDatasetsCommand(),
		newPluginsCommand(),
		newEvaluatorsCommand(),
		newScoreCommand(),
	)
	return root
}
