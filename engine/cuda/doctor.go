package cuda

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// Doctor writes a plain report of what the CUDA backend can use on this
// machine: driver and CUDA version, each GPU, NVRTC and cuBLASLt with their
// versions and paths, the headers NVRTC will see, and the kernel cache. What
// is missing is said as such; the error is only for a failing writer.
func Doctor(w io.Writer) error { return doctor(w, os.Getenv) }

func doctor(w io.Writer, getenv func(string) string) error {
	p := &printer{w: w}
	d, err := Open()
	if err != nil {
		p.printf("driver:    MISSING: %v\n", err)
		p.printf("           the CUDA backend is unavailable; the CPU backend will be used\n")
	} else {
		defer d.Close()
		v, verr := d.DriverVersion()
		if verr != nil {
			p.printf("driver:    %s, version unknown: %v\n", orUnknown(d.Path()), verr)
		} else {
			p.printf("driver:    %s (supports CUDA %d.%d)\n", orUnknown(d.Path()), v/1000, v%1000/10)
		}
		doctorDevices(p, d)
	}

	n, err := OpenNVRTCWith(NVRTCOptions{Getenv: getenv})
	if err != nil {
		p.printf("nvrtc:     MISSING: %v\n", err)
		p.printf("           kernels cannot be compiled; install the CUDA toolkit or set CUDA_HOME\n")
	} else {
		defer n.Close()
		p.printf("nvrtc:     %s at %s\n", n.VersionString(), orUnknown(n.Path()))
		if dirs := n.IncludeDirs(); len(dirs) == 0 {
			p.printf("headers:   MISSING: no folder with cuda_fp16.h found (set CUDA_HOME); kernels that include CUDA headers will not compile\n")
		} else {
			for _, dir := range dirs {
				p.printf("headers:   %s\n", dir)
			}
		}
	}

	if lt, err := OpenBlasLtWith(BlasLtOptions{Getenv: getenv}); err != nil {
		p.printf("cublasLt:  MISSING: %v\n", err)
		p.printf("           GEMMs cannot run on the GPU; install the CUDA toolkit (or pip nvidia-cublas) or set CUDA_HOME\n")
	} else {
		p.printf("cublasLt:  %s at %s\n", lt.Version(), orUnknown(lt.Path()))
		lt.Close()
	}

	if dir, err := DefaultCacheDir(); err != nil {
		p.printf("cache:     MISSING: %v\n", err)
	} else {
		p.printf("cache:     %s\n", dir)
	}
	return p.err
}

func doctorDevices(p *printer, d *Driver) {
	count, err := d.DeviceCount()
	if err != nil {
		p.printf("gpus:      cannot count devices: %v\n", err)
		return
	}
	if count == 0 {
		p.printf("gpus:      none visible\n")
		return
	}
	for i := 0; i < count; i++ {
		info, err := d.DeviceInfo(i)
		if err != nil {
			p.printf("gpu %d:     %v\n", i, err)
			continue
		}
		p.printf("gpu %d:     %s, compute capability %d.%d (%s), %.1f GiB, %d SMs, %d MiB L2, %s\n",
			i, info.Name, info.Major, info.Minor, info.Arch(), float64(info.TotalMemory)/(1<<30),
			info.Multiprocessors, info.L2Bytes>>20, info.UUID)
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "(path unknown)"
	}
	return s
}

// printer keeps the first write error so the report reads straight.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) printf(format string, args ...any) {
	if p.err != nil {
		return
	}
	_, p.err = fmt.Fprintf(p.w, format, args...)
	if p.err != nil {
		p.err = errors.Join(errors.New("writing CUDA report"), p.err)
	}
}
