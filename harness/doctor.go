package main

import (
	"github.com/spf13/cobra"

	"github.com/longctx/longctx/engine/cuda"
)

func newDoctorCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Report the CUDA driver, GPUs, CUDA libraries and kernel cache this machine offers",
		Long: `doctor opens the CUDA driver (libcuda.so.1), NVRTC and cuBLASLt the way the
GPU backend will, and prints the driver and CUDA version, each GPU with its
compute capability and memory, the libraries found with their versions and
paths, the CUDA headers NVRTC will use, and the kernel cache folder. What is
missing is said plainly; on a machine without a GPU the CPU engine is used.`,
		Example: "  harness doctor",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cuda.Doctor(cmd.OutOrStdout())
		},
	}
}
