package gpu

import (
	"encoding/binary"
	"fmt"

	"github.com/longctx/longctx/engine/cuda"
	"github.com/longctx/longctx/engine/kernelrun"
)

// keptCount is how many of n tokens kvpolicy.Select keeps for a target
// with sink and window protected: every protected token, and free ones up
// to the target.
func keptCount(n, target, sink, window int) int {
	if target >= n {
		return n
	}
	lo := min(sink, n)
	hi := max(n-window, 0)
	protected := lo + (n - hi)
	if hi < lo {
		protected = n
	}
	return max(protected, target)
}

// compress applies the KV policy to sequence s once its prompt is cached:
// the plugin's kv.score kernel scores every token of every head, the
// engine's kv_select picks what each head keeps (kvpolicy.Select's rule),
// kv_gather copies the kept rows into buffers of the new size, and the old
// buffers are freed layer by layer, so the memory really comes back.
// reserve is the room left for decoding.
func (kv *batchKV) compress(s, reserve int) error {
	e, c := kv.e, kv.e.cfg
	pol := e.policy
	if pol == nil || pol.Inactive() {
		return nil
	}
	nkv := c.NumKVHeads
	stride := 0
	for l := range c.NumLayers {
		stride = max(stride, kv.maxLen(s, l))
	}
	if stride == 0 {
		return nil
	}
	scratch := &arena{alloc: e.alloc}
	defer scratch.free()
	scores, err := scratch.get(Workspace, int64(4*nkv*stride), "KV scores")
	if err != nil {
		return err
	}
	idx, err := scratch.get(Workspace, int64(4*nkv*stride), "KV keep indices")
	if err != nil {
		return err
	}
	small, err := scratch.get(Workspace, int64(8*nkv+4*nkv+4*nkv+8+2*nkv*int(kvHeadSize)), "KV selection state")
	if err != nil {
		return err
	}
	ptrs := small
	targetDev := ptrs + cuda.DevicePtr(8*nkv)
	countDev := targetDev + cuda.DevicePtr(4*nkv)
	errDev := countDev + cuda.DevicePtr(4*nkv)
	stageK := errDev + 4
	stageK = (stageK + 7) &^ 7
	stageV := stageK + cuda.DevicePtr(int64(nkv)*kvHeadSize)

	ptrBytes := make([]byte, 8*nkv)
	for h := range nkv {
		binary.LittleEndian.PutUint64(ptrBytes[8*h:], uint64(scores)+uint64(4*h*stride))
	}
	if err := e.drv.MemcpyHtoDAsync(ptrs, ptrBytes, e.stream); err != nil {
		return err
	}
	if err := e.drv.MemsetD8Async(errDev, 0, 4, e.stream); err != nil {
		return err
	}
	var ws cuda.DevicePtr
	wsBytes := e.score.Workspace(1, nkv, 1, stride)
	if wsBytes > 0 {
		if ws, err = scratch.get(Workspace, wsBytes, "kv.score workspace"); err != nil {
			return err
		}
	}
	var evicted int64
	for l := range c.NumLayers {
		if pol.Skips(l) {
			continue
		}
		kdesc, vdesc := kv.descAt(l, s)
		targets := make([]int32, nkv)
		kept := make([]int, nkv)
		keepMax := 0
		for h := range nkv {
			n := int(kv.hostK[l][s*nkv+h].Len)
			t := pol.Target(n)
			targets[h] = int32(t)
			kept[h] = keptCount(n, t, pol.Sink, pol.Window)
			keepMax = max(keepMax, kept[h])
			evicted += int64(n - kept[h])
		}
		p := kernelrun.KVScoreParams{
			NumSeqs: 1, NumKVHeads: int32(nkv), HeadDim: int32(c.HeadDim), Layer: int32(l),
			MaxKVLen: int32(kv.maxLen(s, l)), DType: kernelrun.DTypeBF16,
			K: kdesc, Scores: ptrs, Workspace: ws, WorkspaceBytes: uint64(wsBytes),
		}
		if e.opts.KVNeedsValues {
			p.V = vdesc
		}
		if err := e.score.Launch(e.stream, &p); err != nil {
			return fmt.Errorf("layer %d: %w", l, err)
		}
		if err := e.drv.MemcpyHtoDAsync(targetDev, i32Bytes(targets), e.stream); err != nil {
			return err
		}
		if err := e.ops.KVSelect(e.stream, scores, stride, kdesc, nkv, targetDev, pol.Sink, pol.Window, idx, stride, countDev, errDev); err != nil {
			return fmt.Errorf("layer %d: %w", l, err)
		}
		old := kv.slots[s][l]
		nb := headBuf{capacity: keepMax + reserve}
		what := fmt.Sprintf("compacted KV cache (layer %d, %d tokens)", l, nb.capacity)
		d := int64(c.HeadDim)
		if nb.k, err = e.alloc.Alloc(KV, 2*int64(nkv)*int64(nb.capacity)*d, what); err != nil {
			return err
		}
		if nb.v, err = e.alloc.Alloc(KV, 2*int64(nkv)*int64(nb.capacity)*d, what); err != nil {
			e.alloc.Free(nb.k)
			return err
		}
		if nb.pos, err = e.alloc.Alloc(KV, 4*int64(nkv)*int64(nb.capacity), what); err != nil {
			e.alloc.Free(nb.k)
			e.alloc.Free(nb.v)
			return err
		}
		newK := make([]kernelrun.KVHead, nkv)
		newV := make([]kernelrun.KVHead, nkv)
		for h := range nkv {
			newK[h] = kv.headDesc(nb.k, nb, h)
			newV[h] = kv.headDesc(nb.v, nb, h)
		}
		if err := e.drv.MemcpyHtoDAsync(stageK, kernelrun.KVHeadsBytes(newK), e.stream); err != nil {
			return err
		}
		if err := e.drv.MemcpyHtoDAsync(stageV, kernelrun.KVHeadsBytes(newV), e.stream); err != nil {
			return err
		}
		if err := e.ops.KVGather(e.stream, kdesc, vdesc, stageK, stageV, idx, stride, countDev, nkv, c.HeadDim); err != nil {
			return fmt.Errorf("layer %d: %w", l, err)
		}
		if err := e.drv.MemcpyDtoDAsync(kdesc, stageK, uint64(int64(nkv)*kvHeadSize), e.stream); err != nil {
			return err
		}
		if err := e.drv.MemcpyDtoDAsync(vdesc, stageV, uint64(int64(nkv)*kvHeadSize), e.stream); err != nil {
			return err
		}
		// The host-side slices above must outlive the async copies, and the
		// old buffers the gather: wait before releasing either.
		if err := e.drv.StreamSynchronize(e.stream); err != nil {
			return fmt.Errorf("compacting layer %d: %w", l, err)
		}
		kv.slots[s][l] = nb
		e.alloc.Free(old.k)
		e.alloc.Free(old.v)
		e.alloc.Free(old.pos)
		counts := make([]byte, 4*nkv)
		if err := e.drv.MemcpyDtoH(counts, countDev); err != nil {
			return err
		}
		for h := range nkv {
			if got := int(int32(binary.LittleEndian.Uint32(counts[4*h:]))); got != kept[h] {
				return fmt.Errorf("KV compression, layer %d head %d: kv_select kept %d tokens, the policy keeps %d", l, h, got, kept[h])
			}
			newK[h].Len, newV[h].Len = int32(kept[h]), int32(kept[h])
			kv.hostK[l][s*nkv+h], kv.hostV[l][s*nkv+h] = newK[h], newV[h]
		}
	}
	flag := make([]byte, 4)
	if err := e.drv.MemcpyDtoH(flag, errDev); err != nil {
		return err
	}
	if binary.LittleEndian.Uint32(flag) != 0 {
		return fmt.Errorf("KV compression: the %s scorer produced a NaN score", "kv.score")
	}
	kv.evicted[s] += evicted
	return nil
}

// arena frees what it handed out when the call that used it ends.
type arena struct {
	alloc *Allocator
	ptrs  []cuda.DevicePtr
}

func (a *arena) get(cat Category, n int64, what string) (cuda.DevicePtr, error) {
	p, err := a.alloc.Alloc(cat, n, what)
	if err != nil {
		return 0, err
	}
	a.ptrs = append(a.ptrs, p)
	return p, nil
}

func (a *arena) free() {
	for _, p := range a.ptrs {
		a.alloc.Free(p)
	}
	a.ptrs = nil
}

// release frees one pointer the arena handed out before the arena ends.
func (a *arena) release(p cuda.DevicePtr) {
	for i, q := range a.ptrs {
		if q == p {
			a.ptrs = append(a.ptrs[:i], a.ptrs[i+1:]...)
			break
		}
	}
	a.alloc.Free(p)
}
