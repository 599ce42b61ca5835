package gpu

import (
	_ "embed"
	"fmt"
	"unsafe"

	"github.com/longctx/longctx/engine/cuda"
)

//go:embed synth.cu
var synthSource string

// ownKernels are the few kernels that belong to this package rather than
// to kernels/core: they serve the engine's loading, not the model.
type ownKernels struct {
	drv  *cuda.Driver
	fill cuda.Function
}

func loadOwnKernels(drv *cuda.Driver, nv *cuda.NVRTC, cache *cuda.Cache, arch string) (*ownKernels, error) {
	img, _, err := cuda.CompileCached(nv, cache, synthSource, "synth.cu", cuda.CompileOptions{Arch: arch})
	if err != nil {
		return nil, err
	}
	mod, err := drv.ModuleLoadData(img)
	if err != nil {
		return nil, fmt.Errorf("loading synth.cu: %w", err)
	}
	f, err := drv.ModuleFunction(mod, "synth_fill")
	if err != nil {
		return nil, err
	}
	return &ownKernels{drv: drv, fill: f}, nil
}

// synthFill writes n bf16 elements of a synthetic tensor at dst.
func (k *ownKernels) synthFill(s cuda.Stream, dst cuda.DevicePtr, n int64, key uint64, ones bool) error {
	o := int32(0)
	if ones {
		o = 1
	}
	un := uint64(n)
	blocks := uint32(min((n+255)/256, 65536))
	return k.drv.Launch(k.fill, cuda.Dim3{X: blocks, Y: 1, Z: 1}, cuda.Dim3{X: 256, Y: 1, Z: 1}, 0, s,
		unsafe.Pointer(&dst), unsafe.Pointer(&un), unsafe.Pointer(&key), unsafe.Pointer(&o))
}
