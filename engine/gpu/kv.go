package gpu

import (
	"encoding/binary"
	"fmt"

	"github.com/longctx/longctx/engine/cuda"
	"github.com/longctx/longctx/engine/kernelrun"
	"github.com/longctx/longctx/engine/weights"
)

// headBuf is one (layer, sequence) slot's cache: K and V of every KV head,
// [kvHeads][capacity][headDim] bf16, and the position of each row,
// [kvHeads][capacity] int32, shared by K and V.
type headBuf struct {
	k, v, pos cuda.DevicePtr
	capacity  int
}

// batchKV is the KV cache of a batch of sequences. The kernels see it
// through descriptor arrays (kernels/abi longctx_kv_head), one for K and
// one for V per layer, indexed seq·kvHeads + head; lengths live in those
// descriptors on the device (the append and commit kernels advance them,
// so a captured decode graph needs no host update) and are mirrored here.
type batchKV struct {
	e            *Engine
	seqs         int
	slots        [][]headBuf // [seq][layer]
	kdesc, vdesc []cuda.DevicePtr
	hostK, hostV [][]kernelrun.KVHead // [layer][seq·kvHeads + head]
	next         []int                // next position of each sequence
	evicted      []int64              // tokens evicted per sequence
}

// kvHeadSize is the stride of a descriptor array on the device.
const kvHeadSize = int64(kernelrun.KVHeadBytes)

func (e *Engine) newBatchKV(seqs int) (*batchKV, error) {
	c := e.cfg
	kv := &batchKV{e: e, seqs: seqs, slots: make([][]headBuf, seqs), next: make([]int, seqs), evicted: make([]int64, seqs)}
	kv.kdesc = make([]cuda.DevicePtr, c.NumLayers)
	kv.vdesc = make([]cuda.DevicePtr, c.NumLayers)
	kv.hostK = make([][]kernelrun.KVHead, c.NumLayers)
	kv.hostV = make([][]kernelrun.KVHead, c.NumLayers)
	for s := range kv.slots {
		kv.slots[s] = make([]headBuf, c.NumLayers)
	}
	n := int64(seqs * c.NumKVHeads)
	for l := range c.NumLayers {
		var err error
		if kv.kdesc[l], err = e.alloc.Alloc(KV, n*kvHeadSize, "KV descriptors"); err != nil {
			return kv, err
		}
		if kv.vdesc[l], err = e.alloc.Alloc(KV, n*kvHeadSize, "KV descriptors"); err != nil {
			return kv, err
		}
		kv.hostK[l] = make([]kernelrun.KVHead, n)
		kv.hostV[l] = make([]kernelrun.KVHead, n)
	}
	return kv, nil
}

// free releases every buffer of the batch.
func (kv *batchKV) free() {
	a := kv.e.alloc
	for _, slot := range kv.slots {
		for _, hb := range slot {
			a.Free(hb.k)
			a.Free(hb.v)
			a.Free(hb.pos)
		}
	}
	for l := range kv.kdesc {
		a.Free(kv.kdesc[l])
		a.Free(kv.vdesc[l])
	}
}

// reserve gives sequence s room for capacity tokens per head in every layer,
// keeping what is cached (used on an empty slot, and after compaction).
func (kv *batchKV) allocSlot(s, capacity int) error {
	e, c := kv.e, kv.e.cfg
	d, h := int64(c.HeadDim), int64(c.NumKVHeads)
	for l := range c.NumLayers {
		hb := headBuf{capacity: capacity}
		var err error
		what := fmt.Sprintf("KV cache (layer %d, %d tokens)", l, capacity)
		if hb.k, err = e.alloc.Alloc(KV, 2*h*int64(capacity)*d, what); err != nil {
			return err
		}
		kv.slots[s][l] = hb // so free() finds the part already allocated
		if hb.v, err = e.alloc.Alloc(KV, 2*h*int64(capacity)*d, what); err != nil {
			return err
		}
		kv.slots[s][l] = hb
		if hb.pos, err = e.alloc.Alloc(KV, 4*h*int64(capacity), what); err != nil {
			return err
		}
		kv.slots[s][l] = hb
		for head := range c.NumKVHeads {
			i := s*c.NumKVHeads + head
			kv.hostK[l][i] = kv.headDesc(hb.k, hb, head)
			kv.hostV[l][i] = kv.headDesc(hb.v, hb, head)
		}
		if err := kv.uploadDesc(l); err != nil {
			return err
		}
	}
	return nil
}

func (kv *batchKV) headDesc(base cuda.DevicePtr, hb headBuf, head int) kernelrun.KVHead {
	d := kv.e.cfg.HeadDim
	return kernelrun.KVHead{
		Data:      base + cuda.DevicePtr(2*head*hb.capacity*d),
		Pos:       hb.pos + cuda.DevicePtr(4*head*hb.capacity),
		RowStride: int32(d),
	}
}

// uploadDesc copies layer l's host descriptors to the device.
func (kv *batchKV) uploadDesc(l int) error {
	// Copies on the engine's stream, ordered after the kernels that use
	// the descriptors (a pageable source is staged before the call returns).
	e := kv.e
	if err := e.drv.MemcpyHtoDAsync(kv.kdesc[l], kernelrun.KVHeadsBytes(kv.hostK[l]), e.stream); err != nil {
		return fmt.Errorf("KV descriptors of layer %d: %w", l, err)
	}
	if err := e.drv.MemcpyHtoDAsync(kv.vdesc[l], kernelrun.KVHeadsBytes(kv.hostV[l]), e.stream); err != nil {
		return fmt.Errorf("KV descriptors of layer %d: %w", l, err)
	}
	return nil
}

// committed records on the host that n tokens were appended to every head
// of sequence s (the device counted them in kv_commit).
func (kv *batchKV) committed(s, n int) {
	c := kv.e.cfg
	for l := range c.NumLayers {
		for h := range c.NumKVHeads {
			kv.hostK[l][s*c.NumKVHeads+h].Len += int32(n)
			kv.hostV[l][s*c.NumKVHeads+h].Len += int32(n)
		}
	}
	kv.next[s] += n
}

// bytes is the live size of sequence s's cached keys and values.
func (kv *batchKV) bytes(s int) int64 {
	c := kv.e.cfg
	var n int64
	for l := range c.NumLayers {
		for h := range c.NumKVHeads {
			n += int64(kv.hostK[l][s*c.NumKVHeads+h].Len)
		}
	}
	return n * 2 * 2 * int64(c.HeadDim)
}

// maxCapacity is the largest per-head capacity of any slot, the decode
// attention's max_kv_len (a captured graph keeps it fixed).
func (kv *batchKV) maxCapacity() int {
	m := 0
	for _, slot := range kv.slots {
		for _, hb := range slot {
			m = max(m, hb.capacity)
		}
	}
	return m
}

// maxLen is the longest head of sequence s in layer l.
func (kv *batchKV) maxLen(s, l int) int {
	c := kv.e.cfg
	m := 0
	for h := range c.NumKVHeads {
		m = max(m, int(kv.hostK[l][s*c.NumKVHeads+h].Len))
	}
	return m
}

func (kv *batchKV) descAt(l, s int) (k, v cuda.DevicePtr) {
	off := cuda.DevicePtr(int64(s*kv.e.cfg.NumKVHeads) * kvHeadSize)
	return kv.kdesc[l] + off, kv.vdesc[l] + off
}

// readHeads copies, for every (layer, kv head) of sequence s, the head's
// len rows of elem bytes per row from the device buffer at(desc).
func (kv *batchKV) readHeads(s, elem int, at func(kernelrun.KVHead) cuda.DevicePtr, what string) ([][][]byte, error) {
	c := kv.e.cfg
	if err := kv.e.drv.StreamSynchronize(kv.e.stream); err != nil {
		return nil, err
	}
	out := make([][][]byte, c.NumLayers)
	for l := range c.NumLayers {
		out[l] = make([][]byte, c.NumKVHeads)
		for h := range c.NumKVHeads {
			d := kv.hostK[l][s*c.NumKVHeads+h]
			raw := make([]byte, elem*int(d.Len))
			if d.Len > 0 {
				if err := kv.e.drv.MemcpyDtoH(raw, at(d)); err != nil {
					return nil, fmt.Errorf("reading KV %s: %w", what, err)
				}
			}
			out[l][h] = raw
		}
	}
	return out, nil
}

// positions copies sequence s's cached positions per [layer][kv head].
func (kv *batchKV) positions(s int) ([][][]int32, error) {
	raw, err := kv.readHeads(s, 4, func(d kernelrun.KVHead) cuda.DevicePtr { return d.Pos }, "positions")
	if err != nil {
		return nil, err
	}
	out := make([][][]int32, len(raw))
	for l := range raw {
		out[l] = make([][]int32, len(raw[l]))
		for h, b := range raw[l] {
			out[l][h] = make([]int32, len(b)/4)
			for i := range out[l][h] {
				out[l][h][i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
			}
		}
	}
	return out, nil
}

// keys copies sequence s's cached keys (bf16 widened to fp32) per
// [layer][kv head], row after row.
func (kv *batchKV) keys(s int) ([][][]float32, error) {
	d := kv.e.cfg.HeadDim
	raw, err := kv.readHeads(s, 2*d, func(h kernelrun.KVHead) cuda.DevicePtr { return h.Data }, "keys")
	if err != nil {
		return nil, err
	}
	out := make([][][]float32, len(raw))
	for l := range raw {
		out[l] = make([][]float32, len(raw[l]))
		for h, b := range raw[l] {
			out[l][h] = make([]float32, len(b)/2)
			weights.BF16ToFloat32(out[l][h], b)
		}
	}
	return out, nil
}
