package cuda

import (
	"strings"
	"testing"
	"unsafe"
)

// cuLaunchKernelEx reads these structs as cuda.h lays them out: a wrong
// offset would launch the wrong grid or read a garbage attribute.
func TestLaunchExABILayout(t *testing.T) {
	var c launchConfig
	var a launchAttribute
	var l launchEx
	for _, tc := range []struct {
		name      string
		got, want uintptr
	}{
		{"sizeof(CUlaunchConfig)", unsafe.Sizeof(c), 56},
		{"alignof(CUlaunchConfig)", unsafe.Alignof(c), 8},
		{"offsetof(gridDimX)", unsafe.Offsetof(c.gridDimX), 0},
		{"offsetof(gridDimZ)", unsafe.Offsetof(c.gridDimZ), 8},
		{"offsetof(blockDimX)", unsafe.Offsetof(c.blockDimX), 12},
		{"offsetof(blockDimZ)", unsafe.Offsetof(c.blockDimZ), 20},
		{"offsetof(sharedMemBytes)", unsafe.Offsetof(c.sharedMemBytes), 24},
		{"offsetof(hStream)", unsafe.Offsetof(c.hStream), 32},
		{"sizeof(hStream)", unsafe.Sizeof(c.hStream), 8},
		{"offsetof(attrs)", unsafe.Offsetof(c.attrs), 40},
		{"sizeof(attrs)", unsafe.Sizeof(c.attrs), 8},
		{"offsetof(numAttrs)", unsafe.Offsetof(c.numAttrs), 48},
		{"sizeof(CUlaunchAttribute)", unsafe.Sizeof(a), 72},
		{"alignof(CUlaunchAttribute)", unsafe.Alignof(a), 8},
		{"offsetof(id)", unsafe.Offsetof(a.id), 0},
		{"sizeof(id)", unsafe.Sizeof(a.id), 4},
		{"offsetof(value)", unsafe.Offsetof(a.value), 8},
		{"sizeof(CUlaunchAttributeValue)", unsafe.Sizeof(a.value), 64},
		// The attribute array of one follows the config, aligned.
		{"offsetof(launchEx.attr)", unsafe.Offsetof(l.attr), 56},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %d; want %d", tc.name, tc.got, tc.want)
		}
	}
}

// A driver without cuLaunchKernelEx overlaps nothing and says so when
// asked to launch through it.
func TestLaunchExWithoutEntryPoint(t *testing.T) {
	d := &Driver{}
	if d.CanOverlapLaunch(DeviceInfo{Major: 9}) {
		t.Error("overlapping launches without cuLaunchKernelEx")
	}
	err := d.LaunchEx(1, Dim3{1, 1, 1}, Dim3{32, 1, 1}, 0, 0, true)
	if err == nil || !strings.Contains(err.Error(), "cuLaunchKernelEx") {
		t.Errorf("LaunchEx without the entry point: %v", err)
	}
	d.f.launchKernelEx = 1 // bound, never called here
	for _, tc := range []struct {
		major int
		want  bool
	}{{7, false}, {8, false}, {9, true}, {10, true}, {12, true}} {
		if got := d.CanOverlapLaunch(DeviceInfo{Major: tc.major}); got != tc.want {
			t.Errorf("compute capability %d.x: CanOverlapLaunch = %v; want %v", tc.major, got, tc.want)
		}
	}
}
