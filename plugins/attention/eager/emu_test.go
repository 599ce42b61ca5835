package eager

import (
	"testing"

	"github.com/longctx/longctx/plugins/attention/internal/hostemu"
	"github.com/longctx/longctx/plugins/sdk"
)

// TestKernelsOnHostEmulator compiles eager.cu with the host C++ compiler
// against the CUDA emulation of internal/hostemu and runs the prefill and
// decode kernels on random problems (testdata/emu_run.cpp) against a
// reference that rounds as they should. It checks the kernels' logic where
// CI has no GPU; the GPU tests check the real thing.
func TestKernelsOnHostEmulator(t *testing.T) {
	hostemu.RunShapes(t, cudaSource, "testdata/emu_run.cpp", []sdk.ModelShape{
		{NumLayers: 1, NumHeads: 4, NumKVHeads: 2, HeadDim: 16},
		{NumLayers: 1, NumHeads: 2, NumKVHeads: 2, HeadDim: 32},
		{NumLayers: 1, NumHeads: 8, NumKVHeads: 2, HeadDim: 128},
		{NumLayers: 1, NumHeads: 24, NumKVHeads: 2, HeadDim: 16}, // 12 heads per KV head: two register passes
		{NumLayers: 1, NumHeads: 4, NumKVHeads: 2, HeadDim: 256},
	}, func(m sdk.ModelShape) ([]sdk.Kernel, error) { return Kernels(m, "bf16") })
}
