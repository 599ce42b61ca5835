package gpu

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/longctx/longctx/engine/cuda"
	"github.com/longctx/longctx/engine/kvcache"
	"github.com/longctx/longctx/engine/kvpolicy"
	"github.com/longctx/longctx/engine/model"
	"github.com/longctx/longctx/engine/safetensors"
	"github.com/longctx/longctx/engine/weights"
	"github.com/longctx/longctx/plugins/attention/eager"
	"github.com/longctx/longctx/plugins/attention/flash"
	"github.com/longctx/longctx/plugins/kvcache/l2"
	"github.com/longctx/longctx/plugins/sdk"
)

func needGPU(t *testing.T) {
	t.Helper()
	if os.Getenv("LONGCTX_GPU") != "1" {
		t.Skip("GPU test: set LONGCTX_GPU=1 on a machine with an NVIDIA GPU to run it")
	}
}

var tinyModels = []string{"llama2", "llama3", "mistral", "qwen2", "qwen3"}

func tinyDir(name string) string { return filepath.Join("..", "model", "testdata", "tiny", name) }

// cudaDevice is what the plugins are prepared for in these tests.
func cudaDevice(t *testing.T) sdk.Device {
	t.Helper()
	return sdk.Device{Kind: "cuda", Arch: "sm_90a", DType: "bf16"}
}

func shapeOf(cfg model.Config) sdk.ModelShape {
	return sdk.ModelShape{
		Family: string(cfg.Family), NumLayers: cfg.NumLayers, NumHeads: cfg.NumHeads, NumKVHeads: cfg.NumKVHeads,
		HeadDim: cfg.HeadDim, HiddenSize: cfg.HiddenSize, LayerWindows: cfg.LayerWindows, MaxSeqLen: cfg.MaxPositions,
	}
}

func eagerKernels(t *testing.T, cfg model.Config, dev sdk.Device) []sdk.Kernel {
	t.Helper()
	return attentionKernels(t, eager.Plugin(), cfg, dev)
}

// attentionKernels prepares an attention plugin, with its default
// options, for cfg on dev.
func attentionKernels(t *testing.T, p *sdk.Attention, cfg model.Config, dev sdk.Device) []sdk.Kernel {
	t.Helper()
	o, err := sdk.ResolveOptions(p.Options, nil)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := p.Prepare(context.Background(), &sdk.PrepareRequest{Model: shapeOf(cfg), Device: dev, Options: o})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Kernels) == 0 {
		t.Fatalf("%s plugin delivered no GPU kernels", p.Info.Name)
	}
	return plan.Kernels
}

func l2Plan(t *testing.T, cfg model.Config, dev sdk.Device, opts map[string]string) *sdk.KVPlan {
	t.Helper()
	p := l2.Plugin()
	o, err := sdk.ResolveOptions(p.Options, opts)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := p.Prepare(context.Background(), &sdk.PrepareRequest{Model: shapeOf(cfg), Device: dev, Options: o})
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

// loadTiny loads a tiny checkpoint on the GPU with the eager kernels.
func loadTiny(t *testing.T, name string, mod func(*Options)) *Engine {
	t.Helper()
	dir := tinyDir(name)
	cfg, err := model.LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	src, err := safetensors.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	opts := Options{Attention: eagerKernels(t, cfg, cudaDevice(t)), CacheDir: t.TempDir()}
	if mod != nil {
		mod(&opts)
	}
	e, err := Load(cfg, src, dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	})
	return e
}

type refImpl struct {
	GreedyTokens []int       `json:"greedy_tokens"`
	LastLogits   []float32   `json:"last_logits"`
	StepLogits   [][]float32 `json:"step_logits"`
	StepMargins  []float64   `json:"step_margins"`
	Batch        []struct {
		PromptLen    int   `json:"prompt_len"`
		GreedyTokens []int `json:"greedy_tokens"`
	} `json:"batch"`
}

type refModel struct {
	PromptIDs []int              `json:"prompt_ids"`
	Impls     map[string]refImpl `json:"impls"`
}

func loadRef(t *testing.T) (map[string]refModel, map[string]any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "bf16_ref.json"))
	if err != nil {
		t.Fatalf("%v (generate it with tools/refgen/gpu_bf16_ref.py on the GPU machine)", err)
	}
	var ref struct {
		GPU    map[string]any      `json:"gpu"`
		Models map[string]refModel `json:"models"`
	}
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatal(err)
	}
	return ref.Models, ref.GPU
}

// maxAbs is the largest magnitude in v.
func maxAbs(v []float32) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, math.Abs(float64(x)))
	}
	return m
}

// logitTolerance: logits are bf16 (8 significant bits); two bf16
// implementations that round the same tensors but accumulate GEMMs in a
// different order can differ by a few units in the last place of the
// largest logit.
func logitTolerance(ref []float32) float64 { return 4 * maxAbs(ref) / 256 }

func compareLogits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d logits, want %d", what, len(got), len(want))
	}
	tol := logitTolerance(want)
	worst, at := 0.0, 0
	for i := range got {
		if d := math.Abs(float64(got[i] - want[i])); d > worst {
			worst, at = d, i
		}
	}
	if worst > tol {
		t.Errorf("%s: logit %d differs by %.4g (got %g, want %g), tolerance %.4g", what, at, worst, got[at], want[at], tol)
	}
	t.Logf("%s: max |Δlogit| %.3g (tolerance %.3g)", what, worst, tol)
}

// TestGPUMatchesTransformersBF16: on every tiny checkpoint the GPU engine's
// 24 greedy tokens equal transformers' bf16 eager generation on the same
// card, and the logits of the prompt and of every step agree within bf16
// tolerance. With cuBLASLt for every projection (the default for matrices
// this small) the engine rounds exactly where transformers does; with the
// engine's GEMV forced onto the decode projections the sums are ordered
// differently, so tokens may part only at a step where the reference's
// top two logits are within the tolerance of each other.
func TestGPUMatchesTransformersBF16(t *testing.T) {
	needGPU(t)
	refs, gpuInfo := loadRef(t)
	t.Logf("reference made on %v", gpuInfo)
	for _, mode := range []string{"cublaslt", "gemv"} {
		for _, name := range tinyModels {
			t.Run(mode+"/"+name, func(t *testing.T) {
				ref := refs[name]
				want := ref.Impls["eager"]
				e := loadTiny(t, name, func(o *Options) {
					if mode == "gemv" {
						o.GEMVMinWeights = 1
					}
				})
				res, _, err := e.Generate(context.Background(), []Request{{Prompt: ref.PromptIDs, MaxNewTokens: len(want.GreedyTokens)}},
					GenerateOptions{IgnoreStop: true, KeepPrefillLogits: true, KeepStepLogits: true})
				if err != nil {
					t.Fatal(err)
				}
				got := res[0]
				compareLogits(t, "prompt logits", got.PrefillLogits, want.LastLogits)
				for i := range got.Tokens {
					if i > 0 {
						compareLogits(t, "step "+itoa(i)+" logits", got.StepLogits[i-1], want.StepLogits[i])
					}
					if got.Tokens[i] == want.GreedyTokens[i] {
						continue
					}
					if mode == "cublaslt" || want.StepMargins[i] > logitTolerance(want.StepLogits[i]) {
						t.Fatalf("tokens differ first at step %d (reference top-2 margin there %.4g):\n got %v\nwant %v",
							i, want.StepMargins[i], got.Tokens, want.GreedyTokens)
					}
					t.Logf("tokens part at step %d, where the reference's top-2 margin is %.4g (a near-tie)", i, want.StepMargins[i])
					break
				}
			})
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestGPUFlashMatchesTransformersSDPA: with the flash plugin's kernels
// (fp32 scores and softmax, bf16 probabilities) every tiny checkpoint's
// prompt logits agree with transformers' bf16 SDPA attention within bf16
// tolerance (on an H100 they are identical), and its 24 greedy tokens equal
// SDPA's up to the first step where SDPA's own top two logits are within
// that tolerance (a near-tie, where rounding may pick either). Eager
// attention is not the reference here: it rounds the scores to bf16, which
// moves logits by up to ~2 bf16 steps against both (measured 0.12).
func TestGPUFlashMatchesTransformersSDPA(t *testing.T) {
	needGPU(t)
	refs, _ := loadRef(t)
	for _, name := range tinyModels {
		t.Run(name, func(t *testing.T) {
			ref := refs[name]
			e := loadTiny(t, name, func(o *Options) {
				o.Attention = attentionKernels(t, flash.Plugin(), tinyConfig(t, name), cudaDevice(t))
			})
			n := len(ref.Impls["sdpa"].GreedyTokens)
			res, _, err := e.Generate(context.Background(), []Request{{Prompt: ref.PromptIDs, MaxNewTokens: n}},
				GenerateOptions{IgnoreStop: true, KeepPrefillLogits: true})
			if err != nil {
				t.Fatal(err)
			}
			got, want := res[0], ref.Impls["sdpa"]
			compareLogits(t, "prompt logits", got.PrefillLogits, want.LastLogits)
			for i := range got.Tokens {
				if got.Tokens[i] == want.GreedyTokens[i] {
					continue
				}
				// SDPA's step logits are not in the reference; the prompt's
				// largest logit sets the tolerance.
				if i == 0 || want.StepMargins[i] > logitTolerance(want.LastLogits) {
					t.Fatalf("tokens differ first at step %d (SDPA's top-2 margin there %.4g):\n got %v\nwant %v",
						i, want.StepMargins[i], got.Tokens, want.GreedyTokens)
				}
				t.Logf("tokens part at step %d, a near-tie (SDPA's top-2 margin %.4g)", i, want.StepMargins[i])
				break
			}
		})
	}
}

// tinyConfig reads a tiny checkpoint's config.
func tinyConfig(t *testing.T, name string) model.Config {
	t.Helper()
	cfg, err := model.LoadConfig(tinyDir(name))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestGPUBatchAndChunks: a batch of two prompts of different lengths decodes
// together to each prompt's own reference tokens; chunked prefill and
// decoding without the CUDA graph give the same tokens and logits.
func TestGPUBatchAndChunks(t *testing.T) {
	needGPU(t)
	refs, _ := loadRef(t)
	for _, name := range tinyModels {
		t.Run(name, func(t *testing.T) {
			ref := refs[name]
			want := ref.Impls["eager"]
			e := loadTiny(t, name, nil)
			var reqs []Request
			for _, b := range want.Batch {
				reqs = append(reqs, Request{Prompt: ref.PromptIDs[:b.PromptLen], MaxNewTokens: len(b.GreedyTokens)})
			}
			res, stats, err := e.Generate(context.Background(), reqs, GenerateOptions{IgnoreStop: true})
			if err != nil {
				t.Fatal(err)
			}
			for i, b := range want.Batch {
				if !slices.Equal(res[i].Tokens, b.GreedyTokens) {
					t.Errorf("batch member %d (%d prompt tokens):\n got %v\nwant %v", i, b.PromptLen, res[i].Tokens, b.GreedyTokens)
				}
			}
			if stats.PeakEngineBytes <= e.Info().WeightBytes {
				t.Errorf("peak engine bytes %d not above the weights %d", stats.PeakEngineBytes, e.Info().WeightBytes)
			}
			one := []Request{{Prompt: ref.PromptIDs, MaxNewTokens: 8}}
			base, _, err := e.Generate(context.Background(), one, GenerateOptions{IgnoreStop: true, KeepStepLogits: true})
			if err != nil {
				t.Fatal(err)
			}
			for _, chunk := range []int{7, 16} {
				r, _, err := e.Generate(context.Background(), one, GenerateOptions{IgnoreStop: true, ChunkSize: chunk, KeepStepLogits: true})
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(r[0].Tokens, base[0].Tokens) {
					t.Errorf("chunk %d: tokens %v, unchunked %v", chunk, r[0].Tokens, base[0].Tokens)
				}
			}
			e.opts.NoGraph = true
			r, _, err := e.Generate(context.Background(), one, GenerateOptions{IgnoreStop: true, KeepStepLogits: true})
			e.opts.NoGraph = false
			if err != nil {
				t.Fatal(err)
			}
			for i := range r[0].StepLogits {
				if !slices.Equal(r[0].StepLogits[i], base[0].StepLogits[i]) {
					t.Errorf("step %d: logits without the graph differ from the graph's", i+1)
				}
			}
		})
	}
}

// TestGPUOutOfMemoryRecovers: a run over the memory limit fails with
// model.ErrOutOfMemory, frees what it took, and the engine runs the next
// request.
func TestGPUOutOfMemoryRecovers(t *testing.T) {
	needGPU(t)
	e := loadTiny(t, "llama3", func(o *Options) { o.MemLimit = 64 << 20 })
	before := e.Usage().Total
	long := make([]int, 30000)
	for i := range long {
		long[i] = 3 + i%500
	}
	_, _, err := e.Generate(context.Background(), []Request{{Prompt: long, MaxNewTokens: 4}}, GenerateOptions{})
	if !errors.Is(err, model.ErrOutOfMemory) {
		t.Fatalf("30000 tokens under a 64 MiB limit: %v, want ErrOutOfMemory", err)
	}
	t.Logf("oom: %v", err)
	if after := e.Usage().Total; after != before {
		t.Errorf("after the oom %d bytes are allocated, before %d", after, before)
	}
	if _, _, err := e.Generate(context.Background(), []Request{{Prompt: long[:100], MaxNewTokens: 4}}, GenerateOptions{}); err != nil {
		t.Fatalf("the next request failed: %v", err)
	}
}

// TestGPUSyntheticWeightsMatchHost: weights generated on the device equal
// model.SyntheticSource's, byte for byte.
func TestGPUSyntheticWeightsMatchHost(t *testing.T) {
	needGPU(t)
	preset, err := model.FindPreset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	src, err := model.NewSyntheticSource(preset.Config, 7)
	if err != nil {
		t.Fatal(err)
	}
	e, err := Load(preset.Config, src, "synthetic:tiny", Options{Attention: eagerKernels(t, preset.Config, cudaDevice(t)), CacheDir: t.TempDir(), Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for _, c := range []struct {
		name string
		ptr  func() uint64
	}{
		{"model.embed_tokens.weight", func() uint64 { return uint64(e.w.embed) }},
		{"model.layers.1.mlp.down_proj.weight", func() uint64 { return uint64(e.w.layers[1].down) }},
		{"model.layers.2.input_layernorm.weight", func() uint64 { return uint64(e.w.layers[2].inNorm) }},
	} {
		want, err := src.Tensor(c.name)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(want.Data))
		if err := e.th.do(func() error { return e.drv.MemcpyDtoH(got, devPtr(c.ptr())) }); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want.Data) {
			t.Errorf("%s: device bytes differ from the host source's", c.name)
		}
	}
}

// TestGPUL2SelectsLikeThePolicy: the GPU's score kernel, kv_select and
// kv_gather keep exactly the positions kvpolicy.Select picks from the l2
// reference scores of the same cached keys (read from an uncompressed run
// of the same engine on the same prompt), and the KV bytes shrink to the
// kept tokens.
func TestGPUL2SelectsLikeThePolicy(t *testing.T) {
	needGPU(t)
	refs, _ := loadRef(t)
	for _, name := range tinyModels {
		for _, ratio := range []string{"0.25", "0.5", "0.75"} {
			t.Run(name+"/"+ratio, func(t *testing.T) {
				cfg, err := model.LoadConfig(tinyDir(name))
				if err != nil {
					t.Fatal(err)
				}
				prompt := refs[name].PromptIDs
				full := loadTiny(t, name, nil)
				base, _, err := full.Generate(context.Background(), []Request{{Prompt: prompt}}, GenerateOptions{KeepKVKeys: true, KeepKVPositions: true})
				if err != nil {
					t.Fatal(err)
				}
				plan := l2Plan(t, cfg, cudaDevice(t), map[string]string{"ratio": ratio, "skip_layers": "1", "sink": "2", "window": "3"})
				e := loadTiny(t, name, func(o *Options) { o.KVScore, o.KVPolicy = plan.Kernels, &plan.Policy })
				res, _, err := e.Generate(context.Background(), []Request{{Prompt: prompt, MaxNewTokens: 2}}, GenerateOptions{IgnoreStop: true, KeepKVPositions: true})
				if err != nil {
					t.Fatal(err)
				}
				pol := plan.Policy
				var tokens int64
				for l := range cfg.NumLayers {
					for h := range cfg.NumKVHeads {
						want := base[0].KVPositions[l][h]
						if !pol.Skips(l) {
							scores, err := l2.Score(context.Background(), &kvpolicy.ScoreInput{HeadDim: cfg.HeadDim, K: [][]float32{base[0].KVKeys[l][h]}})
							if err != nil {
								t.Fatal(err)
							}
							keep, err := kvpolicy.Select(scores[0], pol.Target(len(want)), pol.Sink, pol.Window)
							if err != nil {
								t.Fatal(err)
							}
							sel := make([]int32, len(keep))
							for i, k := range keep {
								sel[i] = want[k]
							}
							want = sel
						}
						if got := res[0].KVPositions[l][h]; !slices.Equal(got, want) {
							t.Fatalf("layer %d head %d keeps %v, the policy %v", l, h, got, want)
						}
						tokens += int64(len(want))
					}
				}
				if wantBytes := tokens * kvcache.TokenBytes(cfg.HeadDim, 2); res[0].KVBytesPrefill != wantBytes {
					t.Errorf("KV bytes after compression %d, want %d (%d tokens)", res[0].KVBytesPrefill, wantBytes, tokens)
				}
				if res[0].EvictedTokens != int64(cfg.NumLayers*cfg.NumKVHeads*len(prompt))-tokens {
					t.Errorf("evicted %d tokens, want %d", res[0].EvictedTokens, int64(cfg.NumLayers*cfg.NumKVHeads*len(prompt))-tokens)
				}
			})
		}
	}
}

// TestGPUL2MatchesCPU compares the kept sets of the bf16 GPU engine (eager
// attention) with the CPU engine's over the five tiny checkpoints with a
// 1000-token prompt, at each ratio. Against the CPU engine in bf16
// numerics (model.NumericsBF16: it rounds where this engine stores bf16)
// the overlap must reach issue 7's 0.99; only the order of fp32 sums
// differs. Against the fp32 CPU engine the keys drift apart by bf16
// rounding through every layer, which swaps tokens whose norms straddle
// the cut: that overlap is reported (bench/RESULTS.md), and for both
// engines every disagreement must be such a near-tie (the CPU score of a
// token only the GPU kept is within 3% of the CPU's cut-off score).
func TestGPUL2MatchesCPU(t *testing.T) {
	needGPU(t)
	prompt := make([]int, 1000)
	for i := range prompt {
		prompt[i] = 3 + (i*7919+i*i*31)%500
	}
	const target = 0.99
	modes := []model.Numerics{model.NumericsBF16, model.NumericsFP32}
	for _, ratio := range []string{"0.25", "0.5", "0.75"} {
		var same, total [2]int
		worst := [2]float64{}
		for _, name := range tinyModels {
			dir := tinyDir(name)
			cfg, err := model.LoadConfig(dir)
			if err != nil {
				t.Fatal(err)
			}
			plan := l2Plan(t, cfg, cudaDevice(t), map[string]string{"ratio": ratio})
			e := loadTiny(t, name, func(o *Options) { o.KVScore, o.KVPolicy = plan.Kernels, &plan.Policy })
			res, _, err := e.Generate(context.Background(), []Request{{Prompt: prompt, MaxNewTokens: 2}},
				GenerateOptions{IgnoreStop: true, KeepKVPositions: true})
			if err != nil {
				t.Fatal(err)
			}
			for i, num := range modes {
				cpuKept, cpuScores := cpuL2Positions(t, dir, prompt, plan.Policy, num)
				s0, t0 := same[i], total[i]
				for l := range cfg.NumLayers {
					for h := range cfg.NumKVHeads {
						g, w := res[0].KVPositions[l][h], cpuKept[l][h]
						if len(g) != len(w) {
							t.Fatalf("%s layer %d head %d keeps %d tokens, CPU (%s) %d", name, l, h, len(g), num, len(w))
						}
						sc := cpuScores[l][h]
						cut := float32(math.Inf(1))
						for _, p := range w {
							cut = min(cut, sc[p])
						}
						for _, p := range g {
							if slices.Contains(w, int(p)) {
								same[i]++
								continue
							}
							gap := cut - sc[p]
							worst[i] = max(worst[i], float64(gap)/math.Abs(float64(cut)))
							if gap > 0.03*float32(math.Abs(float64(cut))) {
								t.Errorf("%s ratio %s layer %d head %d: the GPU kept position %d whose CPU (%s) score %g is %.3g below the cut %g: not a near-tie",
									name, ratio, l, h, p, num, sc[p], gap, cut)
							}
						}
						total[i] += len(w)
					}
				}
				t.Logf("ratio %s %s: overlap with the %s CPU engine %.4f (%d of %d)", ratio, name, num,
					float64(same[i]-s0)/float64(total[i]-t0), same[i]-s0, total[i]-t0)
			}
		}
		for i, num := range modes {
			overlap := float64(same[i]) / float64(total[i])
			t.Logf("ratio %s: kept-set overlap with the %s CPU engine %.4f (%d of %d); largest CPU-score gap of a swapped token %.2g%% of the cut",
				ratio, num, overlap, same[i], total[i], 100*worst[i])
			if num == model.NumericsBF16 && overlap < target {
				t.Errorf("ratio %s: kept-set overlap with the bf16 CPU engine %.4f, want at least %.2f", ratio, overlap, target)
			}
		}
	}
}

// cpuL2Positions runs the CPU engine in numerics num with the l2 reference
// scorer and returns the kept positions per [layer][kv head] and every
// token's score before compression (indexed by position: the prompt starts
// at 0).
func cpuL2Positions(t *testing.T, dir string, prompt []int, pol kvpolicy.Policy, num model.Numerics) ([][][]int, [][][]float32) {
	t.Helper()
	m, err := model.Load(dir, model.LoadOptions{Numerics: num, Open: func(d string) (weights.Source, error) { return safetensors.Open(d) }})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	comp, err := kvpolicy.NewCompressor(pol, kvpolicy.ScorerFunc(l2.Score))
	if err != nil {
		t.Fatal(err)
	}
	var kept [][][]int
	var scores [][][]float32
	_, err = m.Generate(context.Background(), prompt, model.GenerateOptions{
		AfterPrefill: func(ctx context.Context, s *model.Sequence) error {
			c := s.Cache()
			for l := range c.Layers() {
				sc, err := l2.Score(ctx, &kvpolicy.ScoreInput{HeadDim: c.HeadDim(), K: c.View(l).K})
				if err != nil {
					return err
				}
				scores = append(scores, sc)
			}
			if err := comp.AfterPrefill(ctx, c); err != nil {
				return err
			}
			for l := range c.Layers() {
				kept = append(kept, c.View(l).Pos)
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return kept, scores
}

func devPtr(p uint64) cuda.DevicePtr { return cuda.DevicePtr(p) }
