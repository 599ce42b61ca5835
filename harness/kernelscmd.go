package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/longctx/longctx/engine/gpu"
)

func newKernelsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "kernels",
		Short:   "Manage the GPU kernels compiled at run time",
		Example: "  harness kernels warm --model synthetic:llama3-8b --kv l2",
	}
	var (
		modelPath string
		plugins   pluginFlags
	)
	warm := &cobra.Command{
		Use:   "warm",
		Short: "Compile the engine's and the plugins' kernels for this GPU into the kernel cache",
		Long: `warm compiles, with NVRTC for GPU 0's exact architecture, every kernel a run
of --model with --attn and --kv would use, and stores them in the kernel cache
(see 'harness doctor'), so the first run does not pay for compilation. A
kernel already in the cache is not compiled again.`,
		Example: "  harness kernels warm --model synthetic:llama3-8b --attn eager --kv l2",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := plugins.validate(cmd); err != nil {
				return err
			}
			cfg, err := modelConfig(modelPath)
			if err != nil {
				return err
			}
			if plugins.attn == "" {
				plugins.attn = "eager"
			}
			dev, info, err := gpuDevice(0)
			if err != nil {
				return err
			}
			set, err := openPlugins(cmd.Context(), cmd.ErrOrStderr(), plugins, modelPath, dev)
			if err != nil {
				return err
			}
			defer set.Close()
			var opts gpu.Options
			set.gpuOptions(&opts)
			took, err := gpu.Warm(cfg, opts)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "kernels for %s (%s) ready in %.2f s\n", info.Name, info.Arch(), took.Seconds())
			return nil
		},
	}
	warm.Flags().StringVar(&modelPath, "model", "synthetic:llama3-8b", "checkpoint folder or synthetic:NAME whose shapes the plugins prepare for")
	plugins.register(warm)
	cmd.AddCommand(warm)
	return cmd
}
