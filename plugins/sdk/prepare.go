package sdk

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/longctx/longctx/engine/attention"
	"github.com/longctx/longctx/engine/kvpolicy"
	"github.com/longctx/longctx/plugins/sdk/pluginpb"
)

// ModelShape is what a plugin learns of the model at Prepare.
type ModelShape struct {
	Family                                   string
	NumLayers, NumHeads, NumKVHeads, HeadDim int
	HiddenSize                               int
	// LayerWindows is each layer's sliding window (0: full attention); nil
	// when no layer slides.
	LayerWindows []int
	// MaxSeqLen is the longest sequence the engine will run.
	MaxSeqLen int
}

// Validate checks that the shape is self-consistent.
func (m ModelShape) Validate() error {
	switch {
	case m.NumLayers <= 0 || m.NumHeads <= 0 || m.NumKVHeads <= 0 || m.HeadDim <= 0:
		return fmt.Errorf("model shape: layers %d, heads %d, kv heads %d, head dim %d must be positive", m.NumLayers, m.NumHeads, m.NumKVHeads, m.HeadDim)
	case m.NumHeads%m.NumKVHeads != 0:
		return fmt.Errorf("model shape: %d heads not a multiple of %d kv heads", m.NumHeads, m.NumKVHeads)
	case m.LayerWindows != nil && len(m.LayerWindows) != m.NumLayers:
		return fmt.Errorf("model shape: %d layer windows for %d layers", len(m.LayerWindows), m.NumLayers)
	case m.MaxSeqLen < 0:
		return fmt.Errorf("model shape: negative max sequence length %d", m.MaxSeqLen)
	}
	return nil
}

// Device is where the engine runs the plan.
type Device struct {
	// Kind is "cpu" or "cuda".
	Kind string
	// Arch is the CUDA target, e.g. "sm_90a"; empty on the CPU.
	Arch string
	// DType is the element type of Q/K/V: "f32", "bf16", "f16".
	DType       string
	MemoryBytes int64
}

// CPU is the CPU engine's device: fp32, reference mode.
var CPU = Device{Kind: "cpu", DType: "f32"}

// Kernel roles, each with a parameter struct in kernels/abi.
const (
	RoleAttentionPrefill = "attention.prefill"
	RoleAttentionDecode  = "attention.decode"
	RoleKVScore          = "kv.score"
)

// GridRule says how a kernel's grid follows from the problem.
type GridRule int

// Grid rules; kernels/abi/launch.h documents them.
const (
	GridQTilesHeadsSeqs    GridRule = GridRule(pluginpb.GridRule_GRID_RULE_Q_TILES_HEADS_SEQS)
	GridHeadsSeqs          GridRule = GridRule(pluginpb.GridRule_GRID_RULE_HEADS_SEQS)
	GridKVTilesKVHeadsSeqs GridRule = GridRule(pluginpb.GridRule_GRID_RULE_KV_TILES_KV_HEADS_SEQS)
	// GridRows is one block per TileQ score-matrix rows (ABI version 2).
	GridRows GridRule = GridRule(pluginpb.GridRule_GRID_RULE_ROWS)
	// GridKVSplitsKVHeadsSeqs is (splits, num_kv_heads, num_seqs) with as
	// many KV splits as fill the GPU once: splits = max(1,
	// min(ceil(max_kv_len / TileKV), floor(resident / (num_kv_heads ×
	// num_seqs)))), 0 when max_kv_len is 0, resident being how many blocks
	// of the kernel the device holds at once (multiprocessors × occupancy
	// at the kernel's block and shared memory). The kernel reads the split
	// count from gridDim.x (ABI version 3).
	GridKVSplitsKVHeadsSeqs GridRule = GridRule(pluginpb.GridRule_GRID_RULE_KV_SPLITS_KV_HEADS_SEQS)
	// GridKVStream is (blocks, 1, 1) with blocks = min(resident,
	// ceil(max_kv_len / TileKV) × num_kv_heads × num_seqs), 0 when
	// max_kv_len is 0, resident as for GridKVSplitsKVHeadsSeqs: stream-K
	// style split-KV decode, the kernel sharing the keys of all (sequence,
	// KV head) pairs evenly among gridDim.x blocks by the heads' real
	// lengths (ABI version 4).
	GridKVStream GridRule = GridRule(pluginpb.GridRule_GRID_RULE_KV_STREAM)
)

// ABIVersion is the newest kernel ABI (LONGCTX_ABI_VERSION in
// kernels/abi/common.h) this SDK describes; kernels of versions 1 to
// ABIVersion are accepted.
const ABIVersion = 4

// Launch is a kernel's launch geometry.
type Launch struct {
	Grid                   GridRule
	BlockX, BlockY, BlockZ int
	TileQ, TileKV          int
	SharedMemBytes         int
	// OverlapPrevious lets the engine start the kernel while the kernel
	// before it on the stream is still finishing (CUDA programmatic
	// dependent launch, where the GPU has it): the kernel must call
	// longctx_wait_previous (griddepcontrol.wait) before it touches memory
	// (ABI version 4, kernels/abi/launch.h).
	OverlapPrevious bool
}

// Kernel is one entry point for a role. Exactly one of CUDASource, PTX and
// Cubin is set. A role may have several kernels: the engine launches them
// in the order the plan lists them, with the same parameters and one
// shared workspace (kernels/abi/launch.h).
type Kernel struct {
	Role       string
	ABIVersion int
	CUDASource string
	PTX, Cubin []byte
	// Entry is the extern "C" __global__ function's name.
	Entry  string
	Launch Launch
	// The workspace this kernel needs is WorkspaceBytes +
	// WorkspaceBytesPerRow × rows + WorkspaceBytesPerScore × rows ×
	// max_kv_len, rows = num_seqs × num_heads × num_q: a score matrix
	// grows with the problem (ABI version 2 for the per-row and per-score
	// terms).
	WorkspaceBytes         int64
	WorkspaceBytesPerRow   int64
	WorkspaceBytesPerScore int64
	// CompileOptions are NVRTC options added to the engine's.
	CompileOptions []string
}

// Workspace is the bytes of workspace k needs for a problem of rows
// score-matrix rows (num_seqs × num_heads × num_q) against KV heads of at
// most maxKV tokens.
func (k *Kernel) Workspace(rows, maxKV int64) int64 {
	return k.WorkspaceBytes + k.WorkspaceBytesPerRow*rows + k.WorkspaceBytesPerScore*rows*maxKV
}

// Validate checks a kernel description received from a plugin.
func (k *Kernel) Validate(kind Kind) error {
	roles := map[Kind][]string{
		KindAttention: {RoleAttentionPrefill, RoleAttentionDecode},
		KindKVCache:   {RoleKVScore},
	}
	if !slices.Contains(roles[kind], k.Role) {
		return fmt.Errorf("kernel role %q: a %s plugin provides %v", k.Role, kind, roles[kind])
	}
	code := 0
	for _, set := range []bool{k.CUDASource != "", len(k.PTX) > 0, len(k.Cubin) > 0} {
		if set {
			code++
		}
	}
	switch {
	case code != 1:
		return fmt.Errorf("kernel %s: want exactly one of CUDA source, PTX or cubin, got %d", k.Role, code)
	case k.Entry == "":
		return fmt.Errorf("kernel %s: no entry point", k.Role)
	case k.ABIVersion <= 0 || k.ABIVersion > ABIVersion:
		return fmt.Errorf("kernel %s %s: ABI version %d (this harness knows 1 to %d)", k.Role, k.Entry, k.ABIVersion, ABIVersion)
	case k.WorkspaceBytes < 0 || k.WorkspaceBytesPerRow < 0 || k.WorkspaceBytesPerScore < 0:
		return fmt.Errorf("kernel %s %s: negative workspace (%d bytes, %d per row, %d per score)", k.Role, k.Entry, k.WorkspaceBytes, k.WorkspaceBytesPerRow, k.WorkspaceBytesPerScore)
	case k.ABIVersion < 2 && (k.WorkspaceBytesPerRow != 0 || k.WorkspaceBytesPerScore != 0 || k.Launch.Grid == GridRows):
		return fmt.Errorf("kernel %s %s: per-row or per-score workspace and grid rule ROWS need ABI version 2, kernel says %d", k.Role, k.Entry, k.ABIVersion)
	case k.ABIVersion < 3 && k.Launch.Grid == GridKVSplitsKVHeadsSeqs:
		return fmt.Errorf("kernel %s %s: grid rule KV_SPLITS_KV_HEADS_SEQS needs ABI version 3, kernel says %d", k.Role, k.Entry, k.ABIVersion)
	case k.ABIVersion < 4 && k.Launch.Grid == GridKVStream:
		return fmt.Errorf("kernel %s %s: grid rule KV_STREAM needs ABI version 4, kernel says %d", k.Role, k.Entry, k.ABIVersion)
	case k.ABIVersion < 4 && k.Launch.OverlapPrevious:
		// An older kernel does not wait for the one before it.
		return fmt.Errorf("kernel %s %s: overlap_previous needs ABI version 4, kernel says %d", k.Role, k.Entry, k.ABIVersion)
	case k.Launch.BlockX <= 0 || k.Launch.BlockY <= 0 || k.Launch.BlockZ <= 0:
		return fmt.Errorf("kernel %s %s: block %dx%dx%d", k.Role, k.Entry, k.Launch.BlockX, k.Launch.BlockY, k.Launch.BlockZ)
	case k.Launch.SharedMemBytes < 0:
		return fmt.Errorf("kernel %s %s: negative shared memory %d", k.Role, k.Entry, k.Launch.SharedMemBytes)
	}
	return k.Launch.validateGrid()
}

// validateGrid checks that the grid rule is known and has the tile sizes
// it divides by.
func (l Launch) validateGrid() error {
	switch l.Grid {
	case GridQTilesHeadsSeqs, GridRows:
		if l.TileQ <= 0 {
			return fmt.Errorf("grid rule %d needs a positive tile_q, got %d", l.Grid, l.TileQ)
		}
	case GridKVTilesKVHeadsSeqs, GridKVSplitsKVHeadsSeqs, GridKVStream:
		if l.TileKV <= 0 {
			return fmt.Errorf("grid rule %d needs a positive tile_kv, got %d", l.Grid, l.TileKV)
		}
	case GridHeadsSeqs:
	default:
		return fmt.Errorf("unknown grid rule %d", l.Grid)
	}
	return nil
}

// PrepareRequest is what a plugin's Prepare receives.
type PrepareRequest struct {
	Model  ModelShape
	Device Device
	// Options are the user's options resolved against the plugin's schema.
	Options Options
}

// AttentionPlan is an attention plugin's answer to Prepare.
type AttentionPlan struct {
	// Kernels for the device; none on the CPU.
	Kernels []Kernel
	// Reference is the plugin's Go implementation, which the CPU backend
	// calls (over gRPC) and GPU tests use as the oracle. Required.
	Reference attention.Backend
}

// KVPlan is a KV-cache plugin's answer to Prepare.
type KVPlan struct {
	Kernels []Kernel
	// Policy says how many tokens each head keeps and when.
	Policy kvpolicy.Policy
	// Scorer is the Go reference scoring; it may be nil only when the
	// policy never evicts.
	Scorer kvpolicy.Scorer
	// NeedsValues asks the engine to send values as well as keys to Score.
	NeedsValues bool
}

// Prepared is a plan as the host sees it: a handle for later calls, the
// kernels and, for KV plugins, the policy.
type Prepared struct {
	PlanID  string
	Kernels []Kernel
	// Policy and NeedsValues are set for KV plugins.
	Policy      *kvpolicy.Policy
	NeedsValues bool
	// Options are every option's value after defaults.
	Options map[string]string
}

func modelToPB(m ModelShape) *pluginpb.ModelShape {
	return &pluginpb.ModelShape{
		Family: m.Family, NumLayers: int32(m.NumLayers), NumHeads: int32(m.NumHeads),
		NumKvHeads: int32(m.NumKVHeads), HeadDim: int32(m.HeadDim), HiddenSize: int32(m.HiddenSize),
		LayerWindows: toInt32s(m.LayerWindows), MaxSeqLen: int64(m.MaxSeqLen),
	}
}

func modelFromPB(p *pluginpb.ModelShape) ModelShape {
	return ModelShape{
		Family: p.GetFamily(), NumLayers: int(p.GetNumLayers()), NumHeads: int(p.GetNumHeads()),
		NumKVHeads: int(p.GetNumKvHeads()), HeadDim: int(p.GetHeadDim()), HiddenSize: int(p.GetHiddenSize()),
		LayerWindows: fromInt32s(p.GetLayerWindows()), MaxSeqLen: int(p.GetMaxSeqLen()),
	}
}

func deviceToPB(d Device) *pluginpb.Device {
	return &pluginpb.Device{Kind: d.Kind, Arch: d.Arch, Dtype: d.DType, MemoryBytes: d.MemoryBytes}
}

func deviceFromPB(p *pluginpb.Device) Device {
	return Device{Kind: p.GetKind(), Arch: p.GetArch(), DType: p.GetDtype(), MemoryBytes: p.GetMemoryBytes()}
}

func kernelToPB(k Kernel) *pluginpb.Kernel {
	out := &pluginpb.Kernel{
		Role: k.Role, AbiVersion: int32(k.ABIVersion), Entry: k.Entry, WorkspaceBytes: k.WorkspaceBytes,
		WorkspaceBytesPerRow: k.WorkspaceBytesPerRow, WorkspaceBytesPerScore: k.WorkspaceBytesPerScore,
		CompileOptions: slices.Clone(k.CompileOptions),
		Launch: &pluginpb.Launch{
			Grid: pluginpb.GridRule(k.Launch.Grid), BlockX: int32(k.Launch.BlockX), BlockY: int32(k.Launch.BlockY),
			BlockZ: int32(k.Launch.BlockZ), TileQ: int32(k.Launch.TileQ), TileKv: int32(k.Launch.TileKV),
			SharedMemBytes: int32(k.Launch.SharedMemBytes), OverlapPrevious: k.Launch.OverlapPrevious,
		},
	}
	switch {
	case k.CUDASource != "":
		out.Code = &pluginpb.Kernel_CudaSource{CudaSource: k.CUDASource}
	case len(k.PTX) > 0:
		out.Code = &pluginpb.Kernel_Ptx{Ptx: k.PTX}
	case len(k.Cubin) > 0:
		out.Code = &pluginpb.Kernel_Cubin{Cubin: k.Cubin}
	}
	return out
}

func kernelFromPB(p *pluginpb.Kernel) Kernel {
	l := p.GetLaunch()
	return Kernel{
		Role: p.GetRole(), ABIVersion: int(p.GetAbiVersion()), CUDASource: p.GetCudaSource(),
		PTX: p.GetPtx(), Cubin: p.GetCubin(), Entry: p.GetEntry(), WorkspaceBytes: p.GetWorkspaceBytes(),
		WorkspaceBytesPerRow: p.GetWorkspaceBytesPerRow(), WorkspaceBytesPerScore: p.GetWorkspaceBytesPerScore(),
		CompileOptions: slices.Clone(p.GetCompileOptions()),
		Launch: Launch{
			Grid: GridRule(l.GetGrid()), BlockX: int(l.GetBlockX()), BlockY: int(l.GetBlockY()), BlockZ: int(l.GetBlockZ()),
			TileQ: int(l.GetTileQ()), TileKV: int(l.GetTileKv()), SharedMemBytes: int(l.GetSharedMemBytes()),
			OverlapPrevious: l.GetOverlapPrevious(),
		},
	}
}

func policyToPB(p kvpolicy.Policy, needsValues bool) *pluginpb.KVPolicy {
	return &pluginpb.KVPolicy{
		When: pluginpb.KVPolicy_When(p.When), Ratio: p.Ratio, Budget: int64(p.Budget),
		SkipLayers: toInt32s(p.SkipLayers), Sink: int32(p.Sink), Window: int32(p.Window), NeedsValues: needsValues,
	}
}

func policyFromPB(p *pluginpb.KVPolicy) kvpolicy.Policy {
	return kvpolicy.Policy{
		When: kvpolicy.When(p.GetWhen()), Ratio: p.GetRatio(), Budget: int(p.GetBudget()),
		SkipLayers: fromInt32s(p.GetSkipLayers()), Sink: int(p.GetSink()), Window: int(p.GetWindow()),
	}
}

func preparedFromPB(kind Kind, m ModelShape, p *pluginpb.Preparation) (*Prepared, error) {
	if p.GetPlanId() == "" || len(p.GetPlanId()) > 128 {
		return nil, fmt.Errorf("plugin returned an invalid plan id %q", p.GetPlanId())
	}
	out := &Prepared{PlanID: p.GetPlanId(), Options: maps.Clone(p.GetResolvedOptions())}
	for i, k := range p.GetKernels() {
		kern := kernelFromPB(k)
		if err := kern.Validate(kind); err != nil {
			return nil, fmt.Errorf("kernel %d: %w", i, err)
		}
		out.Kernels = append(out.Kernels, kern)
	}
	switch kind {
	case KindKVCache:
		if p.GetPolicy() == nil {
			return nil, errors.New("kvcache plugin returned no policy")
		}
		pol := policyFromPB(p.GetPolicy())
		if err := pol.Validate(m.NumLayers); err != nil {
			return nil, err
		}
		out.Policy, out.NeedsValues = &pol, p.GetPolicy().GetNeedsValues()
	case KindAttention:
		if p.GetPolicy() != nil {
			return nil, errors.New("attention plugin returned a KV policy")
		}
	}
	return out, nil
}
