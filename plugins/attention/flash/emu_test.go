package flash

import (
	"fmt"
	"testing"

	"github.com/longctx/longctx/plugins/attention/internal/hostemu"
	"github.com/longctx/longctx/plugins/sdk"
)

// TestKernelsOnHostEmulator compiles flash.cu with the host C++ compiler
// against the CUDA emulation of internal/hostemu (ldmatrix and mma.sync
// exchange registers across the warp as on the GPU) and runs the prefill
// and decode kernels on random problems (testdata/emu_run.cpp) against
// exact attention. It checks fragment layouts, masking, tiling and the
// cp.async pipeline where CI has no GPU; the GPU tests check the real
// thing.
func TestKernelsOnHostEmulator(t *testing.T) {
	hostemu.RunShapes(t, cudaSource, "testdata/emu_run.cpp", []sdk.ModelShape{
		{NumLayers: 1, NumHeads: 4, NumKVHeads: 2, HeadDim: 16},
		{NumLayers: 1, NumHeads: 2, NumKVHeads: 2, HeadDim: 32},
		{NumLayers: 1, NumHeads: 8, NumKVHeads: 2, HeadDim: 64},
		{NumLayers: 1, NumHeads: 8, NumKVHeads: 2, HeadDim: 128},
		{NumLayers: 1, NumHeads: 32, NumKVHeads: 2, HeadDim: 16}, // 16 query heads per KV head: a full tile
	}, func(m sdk.ModelShape) ([]sdk.Kernel, error) {
		return Kernels(m, sdk.Device{Kind: "cuda", Arch: "sm_80", DType: "bf16"}, PrefillAuto)
	})
}

// TestHopperKernelsOnHostEmulator runs the build Kernels picks for sm_90a
// (flash_prefill_sm90ws, flash_decode with bulk copies) the same way:
// wgmma from swizzled shared memory through its descriptors, mbarrier
// stages with transaction counts, bulk copies, named barriers, cp.async
// with zero fill, all emulated (wgmma at issue, not deferred to its wait;
// copies, in the late-copies runs, landing only when a thread waits).
func TestHopperKernelsOnHostEmulator(t *testing.T) {
	hostemu.RunShapes(t, cudaSource, "testdata/emu_run.cpp", []sdk.ModelShape{
		{NumLayers: 1, NumHeads: 8, NumKVHeads: 2, HeadDim: 64},
		{NumLayers: 1, NumHeads: 4, NumKVHeads: 2, HeadDim: 128},
	}, func(m sdk.ModelShape) ([]sdk.Kernel, error) {
		return Kernels(m, sdk.Device{Kind: "cuda", Arch: "sm_90a", DType: "bf16"}, PrefillAuto)
	})
}

// TestDecodeGeometryOnHostEmulator runs decode builds of 4 warps and 3
// stages (the benchmarks' alternative geometry), with cp.async and with
// bulk copies, the same way.
func TestDecodeGeometryOnHostEmulator(t *testing.T) {
	for _, bulk := range []bool{false, true} {
		geo := defaultGeometry
		geo.decodeWarps, geo.decodeBuffers, geo.decodeMinBlocks, geo.decodeBulk = 4, 3, 2, bulk
		t.Run(fmt.Sprintf("bulk=%v", bulk), func(t *testing.T) {
			hostemu.RunShapes(t, cudaSource, "testdata/emu_run.cpp", []sdk.ModelShape{
				{NumLayers: 1, NumHeads: 8, NumKVHeads: 2, HeadDim: 128},
			}, func(m sdk.ModelShape) ([]sdk.Kernel, error) { return kernels(m, "bf16", geo) })
		})
	}
}
