package sdk

import (
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/longctx/longctx/plugins/sdk/pluginpb"
)

func validKernel() Kernel {
	return Kernel{
		Role: RoleAttentionPrefill, ABIVersion: ABIVersion, CUDASource: "// src", Entry: "k",
		Launch:         Launch{Grid: GridRows, BlockX: 256, BlockY: 1, BlockZ: 1, TileQ: 8, TileKV: 0, SharedMemBytes: 70000},
		WorkspaceBytes: 64, WorkspaceBytesPerRow: 520, WorkspaceBytesPerScore: 8,
		CompileOptions: []string{"--define-macro=EAGER_HEAD_DIM=128"},
	}
}

// TestKernelRoundTrip sends every Kernel field through the wire format.
func TestKernelRoundTrip(t *testing.T) {
	for _, k := range []Kernel{
		validKernel(),
		{Role: RoleKVScore, ABIVersion: 1, PTX: []byte(".entry x\x00"), Entry: "x",
			Launch: Launch{Grid: GridKVTilesKVHeadsSeqs, BlockX: 128, BlockY: 1, BlockZ: 1, TileKV: 128}},
		{Role: RoleAttentionDecode, ABIVersion: 2, Cubin: []byte{0x7f, 'E', 'L', 'F'}, Entry: "y",
			Launch: Launch{Grid: GridHeadsSeqs, BlockX: 32, BlockY: 2, BlockZ: 1}, WorkspaceBytesPerScore: 11},
		splitKernel(),
		streamKernel(),
	} {
		b, err := proto.Marshal(kernelToPB(k))
		if err != nil {
			t.Fatal(err)
		}
		var p pluginpb.Kernel
		if err := proto.Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
		got := kernelFromPB(&p)
		if !reflect.DeepEqual(got, k) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, k)
		}
	}
}

// splitKernel is a version 3 split-KV decode kernel.
func splitKernel() Kernel {
	return Kernel{
		Role: RoleAttentionDecode, ABIVersion: 3, CUDASource: "// split", Entry: "split",
		Launch:               Launch{Grid: GridKVSplitsKVHeadsSeqs, BlockX: 128, BlockY: 1, BlockZ: 1, TileKV: 256, SharedMemBytes: 65536},
		WorkspaceBytesPerRow: 516 * 8, WorkspaceBytesPerScore: 1,
	}
}

// streamKernel is a version 4 stream-K decode kernel that overlaps the
// kernel before it.
func streamKernel() Kernel {
	return Kernel{
		Role: RoleAttentionDecode, ABIVersion: 4, CUDASource: "// stream", Entry: "stream",
		Launch:               Launch{Grid: GridKVStream, BlockX: 256, BlockY: 1, BlockZ: 1, TileKV: 128, SharedMemBytes: 98304, OverlapPrevious: true},
		WorkspaceBytesPerRow: 516 * 8,
	}
}

// TestKernelWireGridRule: the new grid rules have their own enum values on
// the wire, so an older peer sees them as unknown, not as something else.
func TestKernelWireGridRule(t *testing.T) {
	if p := kernelToPB(splitKernel()); p.GetLaunch().GetGrid() != pluginpb.GridRule_GRID_RULE_KV_SPLITS_KV_HEADS_SEQS {
		t.Errorf("wire kernel %v", p)
	}
	if p := kernelToPB(streamKernel()); p.GetLaunch().GetGrid() != pluginpb.GridRule_GRID_RULE_KV_STREAM || !p.GetLaunch().GetOverlapPrevious() {
		t.Errorf("wire kernel %v", p)
	}
}

func TestKernelValidate(t *testing.T) {
	for _, k := range []Kernel{validKernel(), splitKernel(), streamKernel()} {
		if err := k.Validate(KindAttention); err != nil {
			t.Fatal(err)
		}
	}
	// Kernels of older versions that use nothing newer stay valid.
	for v := 1; v < ABIVersion; v++ {
		k := splitKernel()
		k.ABIVersion, k.Launch.Grid = v, GridKVTilesKVHeadsSeqs
		if v < 2 {
			k.WorkspaceBytesPerRow, k.WorkspaceBytesPerScore = 0, 0
		}
		if err := k.Validate(KindAttention); err != nil {
			t.Errorf("version %d: %v", v, err)
		}
	}
	for _, tt := range []struct {
		name string
		edit func(*Kernel)
		err  string
	}{
		{"negative per score", func(k *Kernel) { k.WorkspaceBytesPerScore = -1 }, "negative workspace"},
		{"negative per row", func(k *Kernel) { k.WorkspaceBytesPerRow = -8 }, "negative workspace"},
		{"negative fixed", func(k *Kernel) { k.WorkspaceBytes = -8 }, "negative workspace"},
		{"future ABI", func(k *Kernel) { k.ABIVersion = ABIVersion + 1 }, "ABI version"},
		{"v1 with per-score", func(k *Kernel) { k.ABIVersion = 1; k.Launch.Grid = GridHeadsSeqs }, "need ABI version 2"},
		{"v1 with rows rule", func(k *Kernel) {
			k.ABIVersion, k.WorkspaceBytesPerRow, k.WorkspaceBytesPerScore = 1, 0, 0
		}, "need ABI version 2"},
		{"unknown rule", func(k *Kernel) { k.Launch.Grid = 99 }, "unknown grid rule"},
		{"unspecified rule", func(k *Kernel) { k.Launch.Grid = 0 }, "unknown grid rule"},
		{"rows without tile", func(k *Kernel) { k.Launch.TileQ = 0 }, "tile_q"},
		{"q tiles without tile", func(k *Kernel) { k.Launch.Grid, k.Launch.TileQ = GridQTilesHeadsSeqs, 0 }, "tile_q"},
		{"kv tiles without tile", func(k *Kernel) { k.Launch.Grid = GridKVTilesKVHeadsSeqs }, "tile_kv"},
		{"negative shared memory", func(k *Kernel) { k.Launch.SharedMemBytes = -1 }, "shared memory"},
		{"wrong role for kind", func(k *Kernel) { k.Role = RoleKVScore }, "provides"},
		{"v2 with splits rule", func(k *Kernel) { k.ABIVersion, k.Launch.Grid, k.Launch.TileKV = 2, GridKVSplitsKVHeadsSeqs, 64 }, "needs ABI version 3"},
		{"v1 with splits rule", func(k *Kernel) {
			k.ABIVersion, k.WorkspaceBytesPerRow, k.WorkspaceBytesPerScore = 1, 0, 0
			k.Launch.Grid, k.Launch.TileKV = GridKVSplitsKVHeadsSeqs, 64
		}, "needs ABI version 3"},
		{"splits without tile", func(k *Kernel) { k.Launch.Grid = GridKVSplitsKVHeadsSeqs }, "tile_kv"},
		{"v3 with stream rule", func(k *Kernel) { k.ABIVersion, k.Launch.Grid, k.Launch.TileKV = 3, GridKVStream, 64 }, "grid rule KV_STREAM needs ABI version 4"},
		{"v1 with stream rule", func(k *Kernel) {
			k.ABIVersion, k.WorkspaceBytesPerRow, k.WorkspaceBytesPerScore = 1, 0, 0
			k.Launch.Grid, k.Launch.TileKV = GridKVStream, 64
		}, "grid rule KV_STREAM needs ABI version 4"},
		{"stream without tile", func(k *Kernel) { k.Launch.Grid = GridKVStream }, "tile_kv"},
		{"v3 overlapping", func(k *Kernel) { k.ABIVersion, k.Launch.OverlapPrevious = 3, true }, "overlap_previous needs ABI version 4"},
		{"v2 overlapping", func(k *Kernel) { k.ABIVersion, k.Launch.OverlapPrevious = 2, true }, "overlap_previous needs ABI version 4"},
	} {
		k := validKernel()
		tt.edit(&k)
		if err := k.Validate(KindAttention); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: error %v, want one containing %q", tt.name, err, tt.err)
		}
	}
}

func TestKernelWorkspace(t *testing.T) {
	k := validKernel()
	// 32 heads × 8192 rows against 8192 keys: 8 bytes per score.
	rows, kv := int64(32*8192), int64(8192)
	if got, want := k.Workspace(rows, kv), 64+520*rows+8*rows*kv; got != want {
		t.Fatalf("Workspace = %d, want %d", got, want)
	}
}
