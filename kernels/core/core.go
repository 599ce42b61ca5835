// Package core holds the engine's own CUDA kernels: everything of a
// decoder layer besides the GEMMs (cuBLASLt) and attention (plugins):
// embedding, RMSNorm, RoPE with the KV-cache append, SiLU·up, argmax, the
// KV-compaction pair kv_select / kv_gather, and a small-batch GEMV for the
// projections of decode steps. engine/gpu/ops compiles
// them with NVRTC for the device and launches them.
//
// Arithmetic follows Hugging Face transformers in bf16 (see common.cuh);
// each kernel's comment states its exact rounding, which ops' Go
// references replay bit for bit.
package core

import (
	"embed"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strings"

	"github.com/longctx/longctx/kernels/abi"
)

// Sources holds the kernel sources (*.cu) and their shared header (*.cuh).
//
//go:embed *.cu *.cuh
var Sources embed.FS

// Kernel entry points (extern "C" names).
const (
	Embed         = "core_embed"
	RMSNorm       = "core_rmsnorm"
	AddRMSNorm    = "core_add_rmsnorm"
	QKVRoPEAppend = "core_qkv_rope_append"
	KVCommit      = "core_kv_commit"
	SiLUMul       = "core_silu_mul"
	Argmax        = "core_argmax"
	KVSelect      = "core_kv_select"
	KVGather      = "core_kv_gather"
	GEMV          = "core_gemv"
)

// Entries lists every kernel entry point of Source.
func Entries() []string {
	return []string{Embed, RMSNorm, AddRMSNorm, QKVRoPEAppend, KVCommit, SiLUMul, Argmax, KVSelect, KVGather, GEMV}
}

// FileName is the name NVRTC is given for Source, which its diagnostics
// show only where no #line directive applies.
const FileName = "longctx_core.cu"

// abiPrefix is how kernels include the ABI headers.
const abiPrefix = "longctx/abi/"

var quotedInclude = regexp.MustCompile(`^\s*#\s*include\s*"([^"]+)"\s*$`)

// Source returns every kernel as one translation unit, so the module is
// compiled (and toolkit headers parsed) once: the .cu files in name order,
// with quoted includes of this folder's headers and of "longctx/abi/<name>"
// (from kernels/abi) inlined, each once. #line directives keep NVRTC's
// diagnostics pointing at the original files. Inlining rather than handing
// NVRTC the headers separately also puts their text into the compile
// cache's key. Toolkit headers (<cuda_bf16.h>) are left to NVRTC's include
// path.
func Source() (string, error) {
	names, err := fs.Glob(Sources, "*.cu")
	if err != nil {
		return "", fmt.Errorf("kernels/core: %w", err)
	}
	slices.Sort(names)
	var b strings.Builder
	seen := map[string]bool{}
	for _, name := range names {
		if err := inline(&b, Sources, name, "kernels/core/"+name, seen); err != nil {
			return "", err
		}
	}
	return b.String(), nil
}

// inline writes file name of fsys, shown as display, replacing its quoted
// includes by their text.
func inline(b *strings.Builder, fsys fs.FS, name, display string, seen map[string]bool) error {
	if seen[display] {
		return nil
	}
	seen[display] = true
	text, err := fs.ReadFile(fsys, name)
	if err != nil {
		return fmt.Errorf("kernels/core: %w", err)
	}
	fmt.Fprintf(b, "#line 1 %q\n", display)
	for i, line := range strings.Split(strings.TrimSuffix(string(text), "\n"), "\n") {
		m := quotedInclude.FindStringSubmatch(line)
		if m == nil {
			b.WriteString(line)
			b.WriteByte('\n')
			continue
		}
		inc := m[1]
		var err error
		switch {
		case strings.HasPrefix(inc, abiPrefix):
			err = inline(b, abi.Headers, strings.TrimPrefix(inc, abiPrefix), "kernels/abi/"+strings.TrimPrefix(inc, abiPrefix), seen)
		case !strings.Contains(inc, "/"):
			err = inline(b, Sources, inc, "kernels/core/"+inc, seen)
		default:
			err = fmt.Errorf("unknown header %q", inc)
		}
		if err != nil {
			return fmt.Errorf("kernels/core: %s:%d: including %q: %w", display, i+1, inc, err)
		}
		fmt.Fprintf(b, "#line %d %q\n", i+2, display)
	}
	return nil
}
