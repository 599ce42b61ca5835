package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/longctx/longctx/engine/gpu"
	"github.com/longctx/longctx/engine/model"
	"github.com/longctx/longctx/engine/sample"
	"github.com/longctx/longctx/plugins/sdk"
)

type generateFlags struct {
	model, tokenizer     string
	prompt, chat, system string
	promptIDs            string
	maxNew, chunk        int
	greedy               bool
	temperature, topP    float64
	minP                 float64
	topK                 int
	seed, weightsSeed    uint64
	stop                 string
	ignoreEOS            bool
	threads              int
	backend              string
	cpuNumerics          string
	asJSON               bool
	plugins              pluginFlags
}

// generateOutput is the --json result; field names are a stable interface
// for scripts.
type generateOutput struct {
	Model          string  `json:"model"`
	Family         string  `json:"family"`
	Synthetic      bool    `json:"synthetic"`
	PromptIDs      []int   `json:"prompt_ids"`
	Tokens         []int   `json:"tokens"`
	Text           string  `json:"text"`
	StopReason     string  `json:"stop_reason"`
	PromptTokens   int     `json:"prompt_tokens"`
	TTFTms         float64 `json:"ttft_ms"`
	TPOTms         float64 `json:"tpot_ms"`
	E2Ems          float64 `json:"e2e_ms"`
	PrefillTokS    float64 `json:"prefill_tok_s"`
	DecodeTokS     float64 `json:"decode_tok_s"`
	KVBytesPrefill int64   `json:"kv_bytes_prefill"`
	KVBytesEnd     int64   `json:"kv_bytes_end"`
	// Numerics is the engine's arithmetic: fp32 or bf16 (the CUDA engine
	// and the CPU engine with --cpu-numerics bf16).
	Numerics string `json:"numerics"`
	// KVEvicted counts the tokens the KV plugin removed (per layer and
	// KV head, summed); Attention and KV describe the plugins run.
	KVEvicted int64         `json:"kv_evicted_tokens"`
	Attention *pluginRecord `json:"attention,omitempty"`
	KV        *pluginRecord `json:"kv,omitempty"`
}

func newGenerateCommand() *cobra.Command {
	var f generateFlags
	cmd := &cobra.Command{
		Use:   "generate --model PATH|synthetic:NAME (--prompt TEXT | --prompt-ids IDS | --chat TEXT)",
		Short: "Generate a continuation of one prompt (CPU or GPU engine)",
		Long: `generate loads a Hugging Face checkpoint folder (config.json, safetensors,
tokenizer.json) or a synthetic preset, runs the prompt through the engine and
prints the continuation. Decoding is greedy unless --temperature is above 0.
With a usable GPU (--backend auto, the default) it runs on the CUDA backend,
in bf16, with the eager plugin's GPU kernels unless --attn names another
plugin that has some; --backend cpu runs the fp32 CPU engine, or with
--cpu-numerics bf16 the CPU engine rounding to bf16 where the CUDA engine
does (a CPU reference for GPU results; built-in attention only).

--prompt is encoded with the tokenizer's special tokens (as transformers
does); --chat wraps the text in the model's chat template as a user turn
(with --system as the system turn) and adds the generation prompt;
--prompt-ids takes token ids directly, for checkpoints without a tokenizer.`,
		Example: `  harness generate --model synthetic:tiny --prompt "Once upon a time" --max-new-tokens 32
  harness generate --model ~/models/Qwen3-0.6B --chat "Name three rivers." --max-new-tokens 64
  harness generate --model ~/models/Llama-3.2-1B --prompt "The sky is" --temperature 0.7 --top-p 0.9 --seed 7
  harness generate --model engine/model/testdata/tiny/llama3 --prompt-ids 5,17,42 --json
  harness generate --model synthetic:tiny --prompt "..." --attn flash --kv l2 --kv-opt ratio=0.5 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runGenerate(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.model, "model", "", "checkpoint folder or synthetic:NAME (see 'harness models')")
	fl.StringVar(&f.tokenizer, "tokenizer", "", "tokenizer.json or folder to use instead of the checkpoint's")
	fl.StringVar(&f.prompt, "prompt", "", "prompt text")
	fl.StringVar(&f.promptIDs, "prompt-ids", "", "prompt as comma-separated token ids")
	fl.StringVar(&f.chat, "chat", "", "user message, rendered with the model's chat template")
	fl.StringVar(&f.system, "system", "", "system message for --chat")
	fl.IntVar(&f.maxNew, "max-new-tokens", 64, "tokens to generate at most")
	fl.IntVar(&f.chunk, "chunk-size", 0, "prefill chunk in tokens (0: the whole prompt at once)")
	fl.BoolVar(&f.greedy, "greedy", false, "greedy decoding (the default; conflicts with --temperature > 0)")
	fl.Float64Var(&f.temperature, "temperature", 0, "sampling temperature (0: greedy)")
	fl.IntVar(&f.topK, "top-k", 0, "keep the k most likely tokens (0: off)")
	fl.Float64Var(&f.topP, "top-p", 0, "nucleus sampling mass (0 or 1: off)")
	fl.Float64Var(&f.minP, "min-p", 0, "drop tokens below min-p times the top probability (0: off)")
	fl.Uint64Var(&f.seed, "seed", 0, "sampling seed")
	fl.Uint64Var(&f.weightsSeed, "weights-seed", 0, "seed of a synthetic preset's random weights")
	fl.StringVar(&f.stop, "stop-ids", "", "comma-separated stop token ids (default: the model's EOS ids)")
	fl.BoolVar(&f.ignoreEOS, "ignore-eos", false, "always generate --max-new-tokens tokens")
	fl.IntVar(&f.threads, "threads", 0, "worker goroutines for the CPU kernels (0: all cores)")
	fl.StringVar(&f.backend, "backend", backendAuto, "engine: cuda (bf16 on GPU 0), cpu (fp32), or auto (cuda when a usable GPU is found)")
	fl.StringVar(&f.cpuNumerics, "cpu-numerics", "fp32", "arithmetic of the CPU engine: fp32, or bf16 (rounds where the CUDA engine does; built-in attention only)")
	fl.BoolVar(&f.asJSON, "json", false, "print one JSON object with prompt_ids, tokens, text and timings")
	f.plugins.register(cmd)
	_ = cmd.MarkFlagDirname("model")
	_ = cmd.MarkFlagFilename("tokenizer", "json")
	_ = cmd.RegisterFlagCompletionFunc("model", completeModels)
	return cmd
}

func completeModels(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	var out []string
	for _, p := range model.SyntheticPresets() {
		if name := model.SyntheticPrefix + p.Name; strings.HasPrefix(name, toComplete) {
			out = append(out, name+"\t"+p.Description)
		}
	}
	return out, cobra.ShellCompDirectiveFilterDirs
}

func runGenerate(cmd *cobra.Command, f generateFlags) error {
	if f.model == "" {
		return usagef(cmd, "--model is required (a checkpoint folder or synthetic:NAME)")
	}
	given := 0
	for _, name := range []string{"prompt", "prompt-ids", "chat"} {
		if cmd.Flags().Changed(name) {
			given++
		}
	}
	if given != 1 {
		return usagef(cmd, "give exactly one of --prompt, --prompt-ids or --chat")
	}
	if f.system != "" && !cmd.Flags().Changed("chat") {
		return usagef(cmd, "--system only applies with --chat")
	}
	if f.maxNew < 0 {
		return usagef(cmd, "--max-new-tokens %d must be >= 0", f.maxNew)
	}
	if f.chunk < 0 {
		return usagef(cmd, "--chunk-size %d must be >= 0", f.chunk)
	}
	if err := f.plugins.validate(cmd); err != nil {
		return err
	}
	numerics, err := cpuNumerics(cmd, f.cpuNumerics, f.plugins.attn)
	if err != nil {
		return err
	}
	if f.greedy && f.temperature > 0 {
		return usagef(cmd, "--greedy conflicts with --temperature %v", f.temperature)
	}
	sampler, err := sample.New(sample.Config{Temperature: f.temperature, TopK: f.topK, TopP: f.topP, MinP: f.minP},
		rand.New(rand.NewPCG(f.seed, 0x6c6f6e67637478)))
	if err != nil {
		return usageError{command: cmd.CommandPath(), err: err}
	}
	var stops []int
	if f.stop != "" {
		if stops, err = parseIDs(f.stop); err != nil {
			return usagef(cmd, "--stop-ids: %v", err)
		}
	}

	backend, err := resolveBackend(f.backend, cmd.ErrOrStderr())
	if err != nil {
		return usagef(cmd, "%v", err)
	}
	backend = autoBackend(cmd.Context(), cmd.ErrOrStderr(), f.backend, backend, f.plugins)
	if err := cpuNumericsOnCUDA(cmd, backend); err != nil {
		return err
	}
	device := sdk.CPU
	if backend == backendCUDA {
		if f.plugins.attn == "" {
			f.plugins.attn = "eager" // the GPU has no built-in attention
		}
		if device, _, err = gpuDevice(0); err != nil {
			return err
		}
	}
	plugins, err := openPlugins(cmd.Context(), cmd.ErrOrStderr(), f.plugins, f.model, device)
	if err != nil {
		return err
	}
	defer plugins.Close()
	var lm *loadedModel
	if backend == backendCUDA {
		lm, err = loadGPUModel(f.model, f.tokenizer, plugins, gpu.Options{Seed: f.weightsSeed})
	} else {
		loadOpts := model.LoadOptions{Seed: f.weightsSeed, Workers: f.threads, Numerics: numerics}
		plugins.loadOptions(&loadOpts)
		lm, err = loadModel(f.model, f.tokenizer, loadOpts)
	}
	if err != nil {
		return err
	}
	defer lm.Close()

	prompt, err := buildPrompt(cmd, f, lm)
	if err != nil {
		return err
	}
	vocab := lm.Config().VocabSize
	for i, id := range prompt {
		if id < 0 || id >= vocab {
			return fmt.Errorf("prompt token %d (position %d) is outside the model's vocabulary of %d", id, i, vocab)
		}
	}
	if len(prompt) == 0 {
		return fmt.Errorf("the prompt encodes to no tokens; give a non-empty prompt")
	}

	opts := model.GenerateOptions{
		MaxNewTokens: f.maxNew,
		ChunkSize:    f.chunk,
		Sampler:      sampler,
		StopTokens:   stops,
		IgnoreStop:   f.ignoreEOS,
	}
	var res *model.Result
	var evicted *int64
	if lm.GPU != nil {
		gopts := gpu.GenerateOptions{ChunkSize: f.chunk, StopTokens: stops, IgnoreStop: f.ignoreEOS}
		if !sampler.Config().Greedy() {
			gopts.Sampler = func(int) model.Sampler { return sampler }
		}
		out, _, err := lm.GPU.Generate(cmd.Context(), []gpu.Request{{Prompt: prompt, MaxNewTokens: f.maxNew}}, gopts)
		if err != nil {
			return fmt.Errorf("generate: %w", err)
		}
		res = &out[0].Result
		if plugins.kv != nil {
			evicted = &out[0].EvictedTokens
		}
	} else {
		compressor, err := plugins.apply(&opts)
		if err != nil {
			return err
		}
		if res, err = lm.Model.Generate(cmd.Context(), prompt, opts); err != nil {
			return fmt.Errorf("generate: %w", err)
		}
		if compressor != nil {
			n := compressor.Evicted()
			evicted = &n
		}
	}
	text := ""
	if lm.Tokenizer != nil {
		if text, err = lm.Tokenizer.Decode(res.Tokens, true); err != nil {
			return fmt.Errorf("decode output: %w", err)
		}
	}
	out := summarize(lm, prompt, res, text)
	out.Numerics = lm.Info().Numerics.String()
	out.Attention, out.KV = plugins.records()
	if evicted != nil {
		out.KVEvicted = *evicted
	}
	if f.asJSON {
		return json.NewEncoder(cmd.OutOrStdout()).Encode(out)
	}
	w := cmd.OutOrStdout()
	if lm.Tokenizer != nil {
		fmt.Fprintln(w, text)
	} else {
		fmt.Fprintln(w, joinIDs(res.Tokens))
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "[%s%s] prompt %d tokens, generated %d (%s) | TTFT %.1f ms, TPOT %.2f ms, prefill %.0f tok/s, decode %.1f tok/s, KV %s\n",
		out.Model, syntheticTag(out.Synthetic), out.PromptTokens, len(out.Tokens), out.StopReason,
		out.TTFTms, out.TPOTms, out.PrefillTokS, out.DecodeTokS, humanBytes(out.KVBytesEnd))
	return nil
}

func buildPrompt(cmd *cobra.Command, f generateFlags, lm *loadedModel) ([]int, error) {
	switch {
	case cmd.Flags().Changed("prompt-ids"):
		ids, err := parseIDs(f.promptIDs)
		if err != nil {
			return nil, usagef(cmd, "--prompt-ids: %v", err)
		}
		return ids, nil
	case lm.Tokenizer == nil:
		return nil, fmt.Errorf("%s has no tokenizer.json: pass --tokenizer or use --prompt-ids", f.model)
	case cmd.Flags().Changed("chat"):
		chat := chatTurn(lm.Template)
		if chat == nil {
			return nil, fmt.Errorf("%s has no chat template (tokenizer_config.json): use --prompt", f.model)
		}
		text, err := chat(f.system, f.chat)
		if err != nil {
			return nil, fmt.Errorf("chat template: %w", err)
		}
		// The rendered template already holds its special tokens, so, as
		// transformers' apply_chat_template(tokenize=True), add none.
		return lm.Tokenizer.Encode(text, false)
	default:
		return lm.Tokenizer.Encode(f.prompt, true)
	}
}

func summarize(lm *loadedModel, prompt []int, res *model.Result, text string) generateOutput {
	info := lm.Info()
	out := generateOutput{
		Model: info.Name, Family: string(info.Family), Synthetic: info.Synthetic,
		PromptIDs: prompt, Tokens: res.Tokens, Text: text, StopReason: string(res.StopReason),
		PromptTokens: res.PromptTokens,
		TTFTms:       ms(res.TTFT), E2Ems: ms(res.E2E),
		KVBytesPrefill: res.KVBytesPrefill, KVBytesEnd: res.KVBytesEnd,
	}
	if out.Tokens == nil {
		out.Tokens = []int{}
	}
	if res.Prefill > 0 {
		out.PrefillTokS = float64(res.PromptTokens) / res.Prefill.Seconds()
	}
	// TPOT as defined in DESIGN.md: (e2e − TTFT) / (output tokens − 1).
	if n := len(res.Tokens); n > 1 {
		out.TPOTms = (out.E2Ems - out.TTFTms) / float64(n-1)
		var decode time.Duration
		for _, d := range res.Decode {
			decode += d
		}
		if decode > 0 {
			out.DecodeTokS = float64(len(res.Decode)) / decode.Seconds()
		}
	}
	return out
}

// cpuNumerics reads --cpu-numerics. bf16 runs the CPU engine's built-in
// bf16 eager attention, so it refuses an --attn plugin, whose CPU
// reference computes in fp32.
func cpuNumerics(cmd *cobra.Command, value, attn string) (model.Numerics, error) {
	n, err := model.ParseNumerics(value)
	if err != nil {
		return 0, usagef(cmd, "--cpu-numerics: %v", err)
	}
	if n == model.NumericsBF16 && attn != "" {
		return 0, usagef(cmd, "--cpu-numerics bf16 runs the built-in bf16 eager attention; --attn %s computes in fp32 on the CPU", attn)
	}
	return n, nil
}

// cpuNumericsOnCUDA refuses --cpu-numerics given for a run the CUDA engine
// (bf16 always) would do.
func cpuNumericsOnCUDA(cmd *cobra.Command, backend string) error {
	if backend == backendCUDA && cmd.Flags().Changed("cpu-numerics") {
		return usagef(cmd, "--cpu-numerics applies to the CPU engine, and the run would use the CUDA engine (bf16 always): add --backend cpu")
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func syntheticTag(s bool) string {
	if s {
		return ", synthetic weights"
	}
	return ""
}

func parseIDs(s string) ([]int, error) {
	var ids []int
	for i, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		id, err := strconv.Atoi(part)
		if err != nil || id < 0 {
			return nil, fmt.Errorf("item %d %q is not a token id", i+1, part)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func joinIDs(ids []int) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = strconv.Itoa(id)
	}
	return strings.Join(parts, " ")
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
