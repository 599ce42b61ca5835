package sweep

import "fmt"

// MaxCells bounds one expansion, so a typo in a grid fails fast instead of
// allocating millions of cells.
const MaxCells = 100_000

// Expand returns the cells of the spec's grid, the cartesian product
//
//	models × attn variants × kv variants × tasks × contexts × batches
//
// with the leftmost factor varying slowest and each list in the order
// written. A plugin's variants are the product of its option values, with
// options sorted by key and the last key varying fastest. Cells with the
// same ID (the same run written twice) are kept once, at their first
// position.
func Expand(s *Spec) ([]Cell, error) {
	attn := make([][]string, 0)
	var attnNames []string
	for _, p := range s.Attn {
		for _, opts := range variants(p.Options) {
			attnNames = append(attnNames, p.Name)
			attn = append(attn, opts)
		}
	}
	var kv [][]string
	var kvNames []string
	for _, p := range s.KV {
		for _, opts := range variants(p.Options) {
			kvNames = append(kvNames, p.Name)
			kv = append(kv, opts)
		}
	}
	total := 1
	for _, n := range []int{len(s.Models), len(attn), len(kv), len(s.Tasks), len(s.Contexts), len(s.Batches)} {
		if n == 0 {
			return nil, nil
		}
		if total > MaxCells/n {
			return nil, fmt.Errorf("the grid has more than %d cells", MaxCells)
		}
		total *= n
	}
	cells := make([]Cell, 0, total)
	seen := make(map[string]bool, total)
	for _, model := range s.Models {
		for a := range attn {
			for k := range kv {
				for _, task := range s.Tasks {
					for _, ctx := range s.Contexts {
						for _, batch := range s.Batches {
							c := Cell{
								Model: model, Attn: attnNames[a], AttnOpts: attn[a],
								KV: kvNames[k], KVOpts: kv[k],
								Task: task.Name, Data: task.Data, Limit: task.Limit,
								Depths: task.Depths, Variant: task.Variant,
								Context: ctx, Batch: batch,
								MaxNewTokens: s.MaxNewTokens, Warmup: s.Warmup, Repeat: s.Repeat,
								Seed: s.Seed, Backend: s.Backend, Device: s.Device, Numerics: s.CPUNumerics,
							}
							id := c.ID()
							if seen[id] {
								continue
							}
							seen[id] = true
							cells = append(cells, c)
						}
					}
				}
			}
		}
	}
	return cells, nil
}

// variants returns every combination of option values as key=value lists,
// in key order with the last key varying fastest. No options give one
// variant without options.
func variants(opts []Option) [][]string {
	out := [][]string{nil}
	for _, o := range opts {
		next := make([][]string, 0, len(out)*len(o.Values))
		for _, prefix := range out {
			for _, v := range o.Values {
				combo := append(append([]string(nil), prefix...), o.Key+"="+v)
				next = append(next, combo)
			}
		}
		out = next
		if len(out) > MaxCells {
			// Expand reports the overflow; stop growing here.
			return out
		}
	}
	return out
}
