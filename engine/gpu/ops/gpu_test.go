package ops

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/longctx/longctx/engine/cuda"
	"github.com/longctx/longctx/engine/kvpolicy"
	"github.com/longctx/longctx/engine/model/rope"
)

// The GPU tests compare each kernel with its Go reference bit for bit;
// where a kernel calls rsqrtf, expf, cosf or sinf, the reference uses the
// device's values of those (deviceLibm), so the comparison stays exact.
// Outputs are poisoned (0xFF bytes) before every launch.

func TestGPUEmbed(t *testing.T) {
	g := openGPU(t)
	rng := rand.New(rand.NewPCG(1, 1))
	const V = 50
	for _, H := range []int{64, 4096, 37} {
		for _, T := range []int{1, 3, 37} {
			g.run(t, fmt.Sprintf("H=%d/T=%d", H, T), func(t *testing.T) {
				table := randBF16(rng, V*H, 1)
				ids := make([]int32, T)
				for i := range ids {
					ids[i] = int32(rng.IntN(V))
				}
				ids[0] = V - 1
				dt, di := g.put(t, u16Bytes(table), 0), g.put(t, i32Bytes(ids), 0)
				out := g.alloc(t, 2*T*H+64)
				must(t, g.k.Embed(0, dt, di, out, T, H))
				want := make([]uint16, T*H)
				RefEmbed(table, ids, want, T, H)
				got := bytesU16(g.get(t, out, 2*T*H+64))
				sameU16(t, "embed", got[:T*H], want)
				sameU16(t, "beyond the output", got[T*H:], filled16(32, 0xffff))
			})
		}
	}
}

// normShapes are the row layouts of the norm tests: dense, padded with
// 16-byte aligned rows, and padded with odd strides (the scalar path).
func normShapes() []struct{ T, H, pad int } {
	var s []struct{ T, H, pad int }
	for _, H := range []int{64, 4096, 37, 5120} {
		for _, T := range []int{1, 3, 37} {
			for _, pad := range []int{0, 8, 3} {
				s = append(s, struct{ T, H, pad int }{T, H, pad})
			}
		}
	}
	return s
}

func TestGPURMSNorm(t *testing.T) {
	g := openGPU(t)
	rng := rand.New(rand.NewPCG(2, 2))
	for _, sh := range normShapes() {
		for _, inPlace := range []bool{false, true} {
			T, H, ld := sh.T, sh.H, sh.H+sh.pad
			g.run(t, fmt.Sprintf("T=%d/H=%d/ld=%d/inplace=%v", T, H, ld, inPlace), func(t *testing.T) {
				x, w := randBF16(rng, T*ld, 2), randBF16(rng, H, 0.5)
				eps := float32(1e-6)
				dx, dw := g.put(t, u16Bytes(x), 0), g.put(t, u16Bytes(w), 0)
				out, ldo := dx, ld
				if !inPlace {
					ldo = H + 1
					out = g.alloc(t, 2*T*ldo)
				}
				must(t, g.k.RMSNorm(0, dx, ld, dw, out, ldo, T, H, eps))
				m := g.deviceLibm(t, func(m Libm) { RefRMSNorm(x, ld, w, make([]uint16, T*ldo), ldo, T, H, eps, m) })
				want := slices.Clone(x)
				if !inPlace {
					want = filled16(T*ldo, 0xffff)
				}
				RefRMSNorm(x, ld, w, want, ldo, T, H, eps, m)
				got := bytesU16(g.get(t, out, 2*T*ldo))
				sameU16(t, "rmsnorm", got, want)
				host := slices.Clone(want)
				RefRMSNorm(x, ld, w, host, ldo, T, H, eps, HostLibm())
				ulpStats(t, "rmsnorm", got, host)
			})
		}
	}
}

func TestGPUAddRMSNorm(t *testing.T) {
	g := openGPU(t)
	rng := rand.New(rand.NewPCG(3, 3))
	for _, sh := range normShapes() {
		T, H, ld := sh.T, sh.H, sh.H+sh.pad
		g.run(t, fmt.Sprintf("T=%d/H=%d/ld=%d", T, H, ld), func(t *testing.T) {
			resid, delta, w := randBF16(rng, T*ld, 4), randBF16(rng, T*ld, 1), randBF16(rng, H, 0.5)
			eps := float32(1e-5)
			ldo := H + 2
			dr, dd, dw := g.put(t, u16Bytes(resid), 0), g.put(t, u16Bytes(delta), 0), g.put(t, u16Bytes(w), 0)
			out := g.alloc(t, 2*T*ldo)
			must(t, g.k.AddRMSNorm(0, dr, dd, ld, dw, out, ldo, T, H, eps))
			m := g.deviceLibm(t, func(m Libm) {
				RefAddRMSNorm(slices.Clone(resid), delta, ld, w, make([]uint16, T*ldo), ldo, T, H, eps, m)
			})
			wantResid, wantOut := slices.Clone(resid), filled16(T*ldo, 0xffff)
			RefAddRMSNorm(wantResid, delta, ld, w, wantOut, ldo, T, H, eps, m)
			sameU16(t, "residual", bytesU16(g.get(t, dr, 2*T*ld)), wantResid)
			sameU16(t, "normed", bytesU16(g.get(t, out, 2*T*ldo)), wantOut)
		})
	}
}

func TestGPUQKVRoPEAppend(t *testing.T) {
	g := openGPU(t)
	rng := rand.New(rand.NewPCG(4, 4))
	type config struct {
		hd, nh, nkv, T  int
		norm, sharedPos bool
		pad             int // row stride = hd + pad
		scaling         float32
	}
	var configs []config
	for _, hd := range []int{16, 32, 64, 128, 256} {
		for _, heads := range [][2]int{{4, 2}, {32, 8}} {
			for _, T := range []int{1, 3, 37} {
				configs = append(configs, config{hd: hd, nh: heads[0], nkv: heads[1], T: T, norm: T != 3, sharedPos: T != 37, pad: 8 * (heads[0] % 8 / 4), scaling: 1})
			}
		}
	}
	configs = append(configs, config{hd: 128, nh: 4, nkv: 2, T: 5, norm: true, sharedPos: true, scaling: 1.25})
	for _, c := range configs {
		g.run(t, fmt.Sprintf("hd=%d/heads=%d,%d/T=%d/norm=%v/sharedpos=%v/pad=%d/scale=%v", c.hd, c.nh, c.nkv, c.T, c.norm, c.sharedPos, c.pad, c.scaling), func(t *testing.T) {
			const S = 2 // sequences in the batch
			hd, nkv, T := c.hd, c.nkv, c.T
			ld := (c.nh+2*nkv)*hd + 16
			stride := hd + c.pad
			inv, err := rope.InvFreq(rope.Params{Type: rope.Default, Theta: 1e6}, hd)
			must(t, err)
			// Tokens go to random sequences at positions up to ~100k (large
			// angles take cosf's slow path); heads start at different lengths.
			base := []int32{int32(rng.IntN(100000)), int32(rng.IntN(50))}
			pos, seq, off := make([]int32, T), make([]int32, T), make([]int32, T)
			count := [S]int32{}
			for i := range T {
				s := int32(rng.IntN(S))
				seq[i], off[i] = s, count[s]
				pos[i] = base[s] + count[s]
				count[s]++
			}
			lens := make([]int, S*nkv)
			capacity := 0
			for i := range lens {
				lens[i] = rng.IntN(40)
				capacity = max(capacity, lens[i]+T)
			}
			qkv := randBF16(rng, T*ld, 1.5)
			var qn, kn []uint16
			if c.norm {
				qn, kn = randBF16(rng, hd, 0.3), randBF16(rng, hd, 0.3)
				for i := range qn {
					qn[i], kn[i] = BF16(1+F32(qn[i])), BF16(1+F32(kn[i]))
				}
			}

			// Device cache: [S·nkv][capacity][stride] for K and V, positions
			// [S·nkv][capacity], shared by K and V or not.
			heads := S * nkv
			dk, dv := g.alloc(t, 2*heads*capacity*stride), g.alloc(t, 2*heads*capacity*stride)
			dpk := g.alloc(t, 4*heads*capacity)
			dpv := dpk
			if !c.sharedPos {
				dpv = g.alloc(t, 4*heads*capacity)
			}
			kd, vd := make([]kvHeadABI, heads), make([]kvHeadABI, heads)
			hk, hv := make([]HostKVHead, heads), make([]HostKVHead, heads)
			for i := range heads {
				kd[i] = kvHeadABI{Data: uint64(dk) + uint64(2*i*capacity*stride), Pos: uint64(dpk) + uint64(4*i*capacity), Len: int32(lens[i]), RowStride: int32(stride)}
				vd[i] = kvHeadABI{Data: uint64(dv) + uint64(2*i*capacity*stride), Pos: uint64(dpv) + uint64(4*i*capacity), Len: int32(lens[i]), RowStride: int32(stride)}
				hk[i] = HostKVHead{Data: filled16(capacity*stride, 0xffff), Pos: filled32(capacity, -1), Len: lens[i], RowStride: stride}
				hv[i] = HostKVHead{Data: filled16(capacity*stride, 0xffff), Pos: filled32(capacity, -1), Len: lens[i], RowStride: stride}
				if c.sharedPos {
					hv[i].Pos = hk[i].Pos
				}
			}
			dkd, dvd := g.put(t, kvHeadBytes(kd), 0), g.put(t, kvHeadBytes(vd), 0)
			dqkv := g.put(t, u16Bytes(qkv), 0)
			var dqn, dkn cuda.DevicePtr
			if c.norm {
				dqn, dkn = g.put(t, u16Bytes(qn), 0), g.put(t, u16Bytes(kn), 0)
			}
			dinv := g.put(t, f32Bytes(inv), 0)
			dpos, dseq, doff := g.put(t, i32Bytes(pos), 0), g.put(t, i32Bytes(seq), 0), g.put(t, i32Bytes(off), 0)
			eps := float32(1e-6)
			must(t, g.k.QKVRoPEAppend(0, dqkv, ld, dqn, dkn, dinv, dpos, dseq, doff, dkd, dvd, T, c.nh, nkv, hd, eps, c.scaling))

			a := RopeArgs{LD: ld, QNorm: qn, KNorm: kn, InvFreq: inv, Pos: pos, TokSeq: seq, TokOff: off,
				T: T, NH: c.nh, NKV: nkv, HD: hd, Eps: eps, AttnScaling: c.scaling}
			m := g.deviceLibm(t, func(m Libm) {
				k2, v2 := slices.Clone(hk), slices.Clone(hv)
				for i := range k2 {
					k2[i].Data, k2[i].Pos = slices.Clone(k2[i].Data), slices.Clone(k2[i].Pos)
					v2[i].Data, v2[i].Pos = slices.Clone(v2[i].Data), slices.Clone(v2[i].Pos)
				}
				RefQKVRoPEAppend(slices.Clone(qkv), k2, v2, a, m)
			})
			wantQKV := slices.Clone(qkv)
			RefQKVRoPEAppend(wantQKV, hk, hv, a, m)
			gotQKV := bytesU16(g.get(t, dqkv, 2*T*ld))
			sameU16(t, "qkv", gotQKV, wantQKV)
			var wantK, wantV []uint16
			var wantPK, wantPV []int32
			for i := range heads {
				wantK, wantV = append(wantK, hk[i].Data...), append(wantV, hv[i].Data...)
				wantPK, wantPV = append(wantPK, hk[i].Pos...), append(wantPV, hv[i].Pos...)
			}
			gotK := bytesU16(g.get(t, dk, 2*heads*capacity*stride))
			sameU16(t, "K cache", gotK, wantK)
			sameU16(t, "V cache", bytesU16(g.get(t, dv, 2*heads*capacity*stride)), wantV)
			sameI32(t, "K positions", bytesI32(g.get(t, dpk, 4*heads*capacity)), wantPK)
			sameI32(t, "V positions", bytesI32(g.get(t, dpv, 4*heads*capacity)), wantPV)
			if got := bytesKVHead(g.get(t, dkd, 24*heads)); !slices.Equal(got, kd) {
				t.Errorf("K descriptors changed: %+v", got)
			}
			if got := bytesKVHead(g.get(t, dvd, 24*heads)); !slices.Equal(got, vd) {
				t.Errorf("V descriptors changed: %+v", got)
			}
			hostQKV := slices.Clone(qkv)
			RefQKVRoPEAppend(hostQKV, cloneHeads(hk), cloneHeads(hv), a, HostLibm())
			ulpStats(t, "rotated q", gotQKV, hostQKV)
		})
	}
}

func cloneHeads(h []HostKVHead) []HostKVHead {
	c := slices.Clone(h)
	for i := range c {
		c[i].Data, c[i].Pos = slices.Clone(c[i].Data), slices.Clone(c[i].Pos)
	}
	return c
}

func TestGPUKVCommit(t *testing.T) {
	g := openGPU(t)
	for _, n := range []int{1, 37, 300} {
		g.run(t, fmt.Sprintf("heads=%d", n), func(t *testing.T) {
			kd, vd := make([]kvHeadABI, n+1), make([]kvHeadABI, n+1)
			for i := range kd {
				kd[i] = kvHeadABI{Data: uint64(1000 + i), Pos: uint64(2000 + i), Len: int32(i), RowStride: 128}
				vd[i] = kvHeadABI{Data: uint64(3000 + i), Pos: uint64(2000 + i), Len: int32(2 * i), RowStride: 136}
			}
			dk, dv := g.put(t, kvHeadBytes(kd), 0), g.put(t, kvHeadBytes(vd), 0)
			must(t, g.k.KVCommit(0, dk, dv, n, 3))
			for i := range n { // the last descriptor is beyond n: untouched
				kd[i].Len += 3
				vd[i].Len += 3
			}
			if got := bytesKVHead(g.get(t, dk, 24*(n+1))); !slices.Equal(got, kd) {
				t.Errorf("K descriptors %+v\nwant %+v", got, kd)
			}
			if got := bytesKVHead(g.get(t, dv, 24*(n+1))); !slices.Equal(got, vd) {
				t.Errorf("V descriptors %+v\nwant %+v", got, vd)
			}
		})
	}
}

func TestGPUSiLUMul(t *testing.T) {
	g := openGPU(t)
	rng := rand.New(rand.NewPCG(5, 5))
	for _, I := range []int{64, 4096, 37, 14336} {
		for _, T := range []int{1, 3, 37} {
			for _, pad := range []int{0, 3} {
				if I == 14336 && T == 37 {
					continue
				}
				g.run(t, fmt.Sprintf("I=%d/T=%d/pad=%d", I, T, pad), func(t *testing.T) {
					ldgu, ldo := 2*I+pad, I+pad
					gu := randBF16(rng, T*ldgu, 4)
					dgu := g.put(t, u16Bytes(gu), 0)
					out := g.alloc(t, 2*T*ldo)
					must(t, g.k.SiLUMul(0, dgu, ldgu, out, ldo, T, I))
					m := g.deviceLibm(t, func(m Libm) { RefSiLUMul(gu, ldgu, make([]uint16, T*ldo), ldo, T, I, m) })
					want := filled16(T*ldo, 0xffff)
					RefSiLUMul(gu, ldgu, want, ldo, T, I, m)
					got := bytesU16(g.get(t, out, 2*T*ldo))
					sameU16(t, "silu_mul", got, want)
					host := filled16(T*ldo, 0xffff)
					RefSiLUMul(gu, ldgu, host, ldo, T, I, HostLibm())
					ulpStats(t, "silu_mul", got, host)
				})
			}
		}
	}
}

func TestGPUArgmax(t *testing.T) {
	g := openGPU(t)
	rng := rand.New(rand.NewPCG(6, 6))
	nan := BF16(float32(math.NaN()))
	for _, V := range []int{37, 4096, 128256, 151936} {
		for _, rows := range []int{1, 3, 37} {
			for _, pad := range []int{0, 5} {
				g.run(t, fmt.Sprintf("V=%d/rows=%d/pad=%d", V, rows, pad), func(t *testing.T) {
					ld := V + pad
					logits := randBF16(rng, rows*ld, 3)
					for r := range rows {
						row := logits[r*ld : r*ld+V]
						switch r % 6 {
						case 1: // the maximum twice: the first wins
							i, j := rng.IntN(V), rng.IntN(V)
							row[i], row[j] = BF16(50), BF16(50)
						case 2: // NaN around a maximum
							for range 10 {
								row[rng.IntN(V)] = nan
							}
							row[rng.IntN(V)] = BF16(60)
						case 3: // nothing but NaN
							copy(row, filled16(V, nan))
						case 4: // every value equal, -0 and +0 mixed
							for i := range row {
								row[i] = uint16(rng.IntN(2)) << 15
							}
						case 5: // few distinct values: many ties at the top
							for i := range row {
								row[i] = BF16(float32(rng.IntN(3)))
							}
						}
					}
					dl := g.put(t, u16Bytes(logits), 0)
					out := g.alloc(t, 4*rows+16)
					must(t, g.k.Argmax(0, dl, ld, V, out, rows))
					want := make([]int32, rows)
					RefArgmax(logits, ld, V, rows, want)
					got := bytesI32(g.get(t, out, 4*rows+16))
					sameI32(t, "argmax", got[:rows], want)
					sameI32(t, "beyond the output", got[rows:], filled32(4, -1))
				})
			}
		}
	}
}

// selectLaunch runs kv_select over heads that share sink and window and
// checks every head against kvpolicy.Select and RefKVSelect: the kept
// indices, their count, the untouched rest of each index row, the error
// flag.
func (g *gpuEnv) selectLaunch(t *testing.T, cases []selectCase) {
	t.Helper()
	heads := len(cases)
	sink, window := cases[0].sink, cases[0].window
	stride := 1
	for _, c := range cases {
		stride = max(stride, len(c.scores))
	}
	stride += 3 // rows longer than any head
	scores := make([]float32, heads*stride)
	kd := make([]kvHeadABI, heads)
	target := make([]int32, heads)
	for h, c := range cases {
		copy(scores[h*stride:], c.scores)
		for i := len(c.scores); i < stride; i++ {
			scores[h*stride+i] = float32(math.NaN()) // beyond len: must be ignored
		}
		kd[h] = kvHeadABI{Data: 1 << 40, Pos: 1 << 41, Len: int32(len(c.scores)), RowStride: 128}
		target[h] = int32(c.target)
	}
	ds, dk, dt := g.put(t, f32Bytes(scores), 0), g.put(t, kvHeadBytes(kd), 0), g.put(t, i32Bytes(target), 0)
	idx, cnt, flag := g.alloc(t, 4*heads*stride), g.alloc(t, 4*heads), g.alloc(t, 4)
	must(t, g.d.MemsetD8(flag, 0, 4))
	must(t, g.k.KVSelect(0, ds, stride, dk, heads, dt, sink, window, idx, stride, cnt, flag))
	gotIdx := bytesI32(g.get(t, idx, 4*heads*stride))
	gotCnt := bytesI32(g.get(t, cnt, 4*heads))
	if f := bytesI32(g.get(t, flag, 4))[0]; f != 0 {
		t.Fatalf("error flag %d without a NaN score", f)
	}
	for h, c := range cases {
		want, err := kvpolicy.Select(c.scores, c.target, c.sink, c.window)
		must(t, err)
		ref, _ := RefKVSelect(c.scores, c.target, c.sink, c.window)
		row := gotIdx[h*stride : (h+1)*stride]
		if int(gotCnt[h]) != len(want) || len(ref) != len(want) {
			t.Fatalf("%s: kept %d (reference %d), kvpolicy keeps %d", c.name, gotCnt[h], len(ref), len(want))
		}
		for i, w := range want {
			if int(row[i]) != w {
				t.Fatalf("%s: keep[%d] = %d, kvpolicy %d", c.name, i, row[i], w)
			}
		}
		sameI32(t, c.name+": beyond the count", row[len(want):], filled32(stride-len(want), -1))
	}
}

func TestGPUKVSelect(t *testing.T) {
	g := openGPU(t)
	rng := rand.New(rand.NewPCG(7, 7))
	for _, n := range []int{0, 1, 5, 4097, 32768, 100000} {
		// Group the cases by (sink, window), the launch-wide arguments.
		groups := map[[2]int][]selectCase{}
		var order [][2]int
		for _, c := range selectCases(rng, []int{n}) {
			key := [2]int{c.sink, c.window}
			if groups[key] == nil {
				order = append(order, key)
			}
			groups[key] = append(groups[key], c)
		}
		for _, key := range order {
			g.run(t, fmt.Sprintf("n=%d/sink=%d/window=%d", n, key[0], key[1]), func(t *testing.T) {
				g.selectLaunch(t, groups[key])
			})
		}
	}
	g.run(t, "mixed lengths", func(t *testing.T) {
		var cases []selectCase
		for h := range 64 {
			n := rng.IntN(20000)
			if h%7 == 0 {
				n = rng.IntN(3)
			}
			cases = append(cases, selectCase{name: fmt.Sprintf("head %d n=%d", h, n), scores: makeScores(rng, n, scoreKind(h%4)), target: rng.IntN(n + 1), sink: 4, window: 32})
		}
		g.selectLaunch(t, cases)
	})
	g.run(t, "errors", func(t *testing.T) {
		// Head 0 has a NaN score, head 1 a negative target, head 2 is
		// fine: the flag is set and the first two keep everything.
		const n = 100
		scores := make([]float32, 3*n)
		for i := range scores {
			scores[i] = float32(rng.NormFloat64())
		}
		scores[57] = float32(math.NaN())
		kd := []kvHeadABI{{Len: n}, {Len: n}, {Len: n}}
		ds, dk := g.put(t, f32Bytes(scores), 0), g.put(t, kvHeadBytes(kd), 0)
		dt := g.put(t, i32Bytes([]int32{10, -1, 10}), 0)
		idx, cnt, flag := g.alloc(t, 4*3*n), g.alloc(t, 12), g.alloc(t, 4)
		must(t, g.d.MemsetD8(flag, 0, 4))
		must(t, g.k.KVSelect(0, ds, n, dk, 3, dt, 0, 0, idx, n, cnt, flag))
		if f := bytesI32(g.get(t, flag, 4))[0]; f != SelectNaN && f != SelectNegativeTarget {
			t.Errorf("error flag %d; want %d or %d", f, SelectNaN, SelectNegativeTarget)
		}
		sameI32(t, "counts", bytesI32(g.get(t, cnt, 12)), []int32{n, n, 10})
		got := bytesI32(g.get(t, idx, 4*3*n))
		for h := range 2 {
			for i := range n {
				if got[h*n+i] != int32(i) {
					t.Fatalf("head %d keeps %v; want every index", h, got[h*n:h*n+n])
				}
			}
		}
		want, err := kvpolicy.Select(scores[2*n:], 10, 0, 0)
		must(t, err)
		for i, w := range want {
			if int(got[2*n+i]) != w {
				t.Fatalf("head 2 keep[%d] = %d, want %d", i, got[2*n+i], w)
			}
		}
	})
}

func TestGPUKVGather(t *testing.T) {
	g := openGPU(t)
	rng := rand.New(rand.NewPCG(8, 8))
	for _, hd := range []int{16, 32, 64, 128, 6} {
		for _, heads := range []int{8, 37} {
			for _, layout := range []struct {
				srcPad, dstPad int
				sharedPos      bool
			}{{0, 0, true}, {8, 0, false}, {0, 3, true}} {
				g.run(t, fmt.Sprintf("hd=%d/heads=%d/pads=%d,%d/sharedpos=%v", hd, heads, layout.srcPad, layout.dstPad, layout.sharedPos), func(t *testing.T) {
					gatherCase(t, g, rng, hd, heads, layout.srcPad, layout.dstPad, layout.sharedPos)
				})
			}
		}
	}
}

func gatherCase(t *testing.T, g *gpuEnv, rng *rand.Rand, hd, heads, srcPad, dstPad int, sharedPos bool) {
	ss, ds := hd+srcPad, hd+dstPad
	srcCap := 1500
	lens := make([]int, heads)
	stride := 0
	for h := range lens {
		lens[h] = rng.IntN(srcCap + 1)
		if h == 0 {
			lens[h] = 0
		}
		stride = max(stride, lens[h])
	}
	stride = max(stride, 1)
	// Keep sets from the select reference on random scores.
	keep := make([][]int32, heads)
	idx := filled32(heads*stride, -1)
	cnt := make([]int32, heads)
	for h := range heads {
		keep[h], _ = RefKVSelect(makeScores(rng, lens[h], scoresNormal), lens[h]/2, 2, 8)
		copy(idx[h*stride:], keep[h])
		cnt[h] = int32(len(keep[h]))
	}
	srcK, srcV := randBF16(rng, heads*srcCap*ss, 1), randBF16(rng, heads*srcCap*ss, 1)
	srcPK := make([]int32, heads*srcCap)
	for i := range srcPK {
		srcPK[i] = int32(3*i + 1)
	}
	srcPV := srcPK
	if !sharedPos {
		srcPV = make([]int32, heads*srcCap)
		for i := range srcPV {
			srcPV[i] = int32(-5 * i)
		}
	}
	dSK, dSV, dSPK := g.put(t, u16Bytes(srcK), 0), g.put(t, u16Bytes(srcV), 0), g.put(t, i32Bytes(srcPK), 0)
	dSPV := dSPK
	if !sharedPos {
		dSPV = g.put(t, i32Bytes(srcPV), 0)
	}
	dstCap := stride + 4
	dDK, dDV, dDPK := g.alloc(t, 2*heads*dstCap*ds), g.alloc(t, 2*heads*dstCap*ds), g.alloc(t, 4*heads*dstCap)
	dDPV := dDPK
	if !sharedPos {
		dDPV = g.alloc(t, 4*heads*dstCap)
	}
	sk, sv, dk, dv := make([]kvHeadABI, heads), make([]kvHeadABI, heads), make([]kvHeadABI, heads), make([]kvHeadABI, heads)
	hsk, hsv, hdk, hdv := make([]HostKVHead, heads), make([]HostKVHead, heads), make([]HostKVHead, heads), make([]HostKVHead, heads)
	for h := range heads {
		sk[h] = kvHeadABI{Data: uint64(dSK) + uint64(2*h*srcCap*ss), Pos: uint64(dSPK) + uint64(4*h*srcCap), Len: int32(lens[h]), RowStride: int32(ss)}
		sv[h] = kvHeadABI{Data: uint64(dSV) + uint64(2*h*srcCap*ss), Pos: uint64(dSPV) + uint64(4*h*srcCap), Len: int32(lens[h]), RowStride: int32(ss)}
		dk[h] = kvHeadABI{Data: uint64(dDK) + uint64(2*h*dstCap*ds), Pos: uint64(dDPK) + uint64(4*h*dstCap), Len: 77, RowStride: int32(ds)}
		dv[h] = kvHeadABI{Data: uint64(dDV) + uint64(2*h*dstCap*ds), Pos: uint64(dDPV) + uint64(4*h*dstCap), Len: 77, RowStride: int32(ds)}
		hsk[h] = HostKVHead{Data: srcK[h*srcCap*ss : (h+1)*srcCap*ss], Pos: srcPK[h*srcCap : (h+1)*srcCap], Len: lens[h], RowStride: ss}
		hsv[h] = HostKVHead{Data: srcV[h*srcCap*ss : (h+1)*srcCap*ss], Pos: srcPV[h*srcCap : (h+1)*srcCap], Len: lens[h], RowStride: ss}
		hdk[h] = HostKVHead{Data: filled16(dstCap*ds, 0xffff), Pos: filled32(dstCap, -1), RowStride: ds}
		hdv[h] = HostKVHead{Data: filled16(dstCap*ds, 0xffff), Pos: filled32(dstCap, -1), RowStride: ds}
		if sharedPos {
			hdv[h].Pos = hdk[h].Pos
		}
	}
	dsk, dsv := g.put(t, kvHeadBytes(sk), 0), g.put(t, kvHeadBytes(sv), 0)
	ddk, ddv := g.put(t, kvHeadBytes(dk), 0), g.put(t, kvHeadBytes(dv), 0)
	didx, dcnt := g.put(t, i32Bytes(idx), 0), g.put(t, i32Bytes(cnt), 0)
	must(t, g.k.KVGather(0, dsk, dsv, ddk, ddv, didx, stride, dcnt, heads, hd))

	var wantK, wantV []uint16
	var wantPK, wantPV []int32
	for h := range heads {
		RefKVGather(&hdk[h], &hsk[h], keep[h], hd)
		RefKVGather(&hdv[h], &hsv[h], keep[h], hd)
		wantK, wantV = append(wantK, hdk[h].Data...), append(wantV, hdv[h].Data...)
		wantPK, wantPV = append(wantPK, hdk[h].Pos...), append(wantPV, hdv[h].Pos...)
		dk[h].Len, dv[h].Len = cnt[h], cnt[h]
	}
	sameU16(t, "K", bytesU16(g.get(t, dDK, 2*heads*dstCap*ds)), wantK)
	sameU16(t, "V", bytesU16(g.get(t, dDV, 2*heads*dstCap*ds)), wantV)
	sameI32(t, "K positions", bytesI32(g.get(t, dDPK, 4*heads*dstCap)), wantPK)
	sameI32(t, "V positions", bytesI32(g.get(t, dDPV, 4*heads*dstCap)), wantPV)
	if got := bytesKVHead(g.get(t, ddk, 24*heads)); !slices.Equal(got, dk) {
		t.Errorf("destination K descriptors %+v\nwant %+v", got, dk)
	}
	if got := bytesKVHead(g.get(t, ddv, 24*heads)); !slices.Equal(got, dv) {
		t.Errorf("destination V descriptors %+v\nwant %+v", got, dv)
	}
	if got := bytesKVHead(g.get(t, dsk, 24*heads)); !slices.Equal(got, sk) {
		t.Errorf("source K descriptors changed")
	}
}
