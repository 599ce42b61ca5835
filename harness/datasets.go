package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/longctx/longctx/datasets"
	"github.com/longctx/longctx/datasets/needle"
	"github.com/longctx/longctx/datasets/prompt"
)

func newDatasetsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "datasets",
		Short: "List, inspect and validate the task datasets (NarrativeQA, HotpotQA, needle)",
		Long: `datasets describes the three task families, checks dataset files, and shows
the prompts a model would get: with --data (or, for needle, a grid of
--lengths × --depths) and --tokenizer, 'show' builds every prompt with the
task template and the model's chat template, truncates over-long contexts
in the middle to --max-prompt-tokens (logged, never silent) and groups the
prompts into length buckets by their real token counts.`,
		Example: `  harness datasets list
  harness datasets show narrativeqa
  harness datasets validate data/narrativeqa.jsonl
  harness datasets show hotpotqa --data data/hotpotqa.jsonl --tokenizer ~/models/Qwen3-8B --limit 20 --seed 1
  harness datasets show needle --tokenizer ~/models/Llama-3.1-8B --lengths 1k,4k --depths linear:5`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newDatasetsListCommand(), newDatasetsShowCommand(), newDatasetsValidateCommand())
	return cmd
}

func newDatasetsListCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List the tasks, their file formats, defaults and metrics",
		Example: "  harness datasets list\n  harness datasets list --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tasks := datasets.Tasks()
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(tasks)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TASK\tFORMATS\tMAX NEW TOKENS\tMETRICS\tSUMMARY")
			for _, t := range tasks {
				formats := "generated"
				if len(t.Formats) > 0 {
					formats = joinFormats(t.Formats)
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", t.Name, formats, t.MaxNewTokens, strings.Join(t.Metrics, ","), t.Summary)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func joinFormats(fs []datasets.Format) string {
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = string(f)
	}
	return strings.Join(parts, ",")
}

func newDatasetsValidateCommand() *cobra.Command {
	var (
		format string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "validate PATH",
		Short: "Parse a whole dataset file and report its format, counts and bad records",
		Long: `validate detects the file's format (or takes --format), parses every record
and reports the valid and bad record counts, the first problems with their
file and line, the tasks it holds and context sizes. It exits non-zero when
any record is bad.`,
		Example: `  harness datasets validate data/narrativeqa.jsonl
  harness datasets validate hotpot_dev_distractor_v1.json --format hotpotqa --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := datasets.ParseFormat(format)
			if err != nil {
				return usagef(cmd, "--format: %v", err)
			}
			rep, err := datasets.Validate(args[0], f)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				problems := make([]string, len(rep.Problems))
				for i, p := range rep.Problems {
					problems[i] = p.Error()
				}
				if err := json.NewEncoder(out).Encode(map[string]any{
					"path": rep.Path, "format": rep.Format, "records": rep.Records, "bad": rep.Bad,
					"problems": problems, "tasks": rep.Tasks,
					"min_context_chars": rep.MinContext, "max_context_chars": rep.MaxContext, "mean_context_chars": rep.MeanContext,
				}); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(out, "%s: format %s, %d valid records, %d bad\n", rep.Path, rep.Format, rep.Records, rep.Bad)
				for _, t := range rep.Tasks {
					fmt.Fprintf(out, "  task %s: %d\n", t.Task, t.Count)
				}
				if rep.Records > 0 {
					fmt.Fprintf(out, "  context: %d to %d characters, mean %.0f\n", rep.MinContext, rep.MaxContext, rep.MeanContext)
				}
				for _, p := range rep.Problems {
					fmt.Fprintf(out, "  bad: %v\n", p)
				}
			}
			if rep.Bad > 0 {
				return fmt.Errorf("%s: %d bad records", rep.Path, rep.Bad)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "auto", "file format: "+joinFormats(datasets.Formats()))
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

type showFlags struct {
	data, format, tokenizer, template, haystack string
	lengths, depths, variant                    string
	limit, maxPrompt, maxNew, needles, print    int
	perCell                                     int
	seed                                        uint64
	head, skipBad, asJSON                       bool
}

func newDatasetsShowCommand() *cobra.Command {
	var f showFlags
	cmd := &cobra.Command{
		Use:   "show NAME",
		Short: "Describe a task; with --tokenizer, build its prompts and show their lengths",
		Long: `show prints a task's summary, where to get its data and its default prompt
template. With --tokenizer (a tokenizer.json or model folder) it also builds
the prompts: from --data for narrativeqa and hotpotqa, from a --lengths ×
--depths grid for needle. It prints one line per prompt (id, prompt and
context tokens, truncation, depth) and the length buckets; --print N shows
the first N prompt texts, --json prints the prompt records.`,
		Example: `  harness datasets show narrativeqa
  harness datasets show narrativeqa --data data/narrativeqa.jsonl --tokenizer ~/models/Qwen3-8B --limit 10 --max-prompt-tokens 8k
  harness datasets show needle --tokenizer ~/models/Llama-3.1-8B --lengths 512,2k --depths 0,0.5,1 --variant multikey --print 1`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeTasks,
		RunE:              func(cmd *cobra.Command, args []string) error { return runDatasetsShow(cmd, args[0], f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.data, "data", "", "dataset file (narrativeqa, hotpotqa)")
	fl.StringVar(&f.format, "format", "auto", "file format: "+joinFormats(datasets.Formats()))
	fl.IntVar(&f.limit, "limit", 0, "keep N samples, chosen at random with --seed (0: all)")
	fl.Uint64Var(&f.seed, "seed", 0, "seed for --limit sampling and the needle generator")
	fl.BoolVar(&f.head, "head", false, "with --limit, take the first N samples instead of a random choice")
	fl.BoolVar(&f.skipBad, "skip-bad", false, "skip and count bad records instead of failing")
	fl.StringVar(&f.tokenizer, "tokenizer", "", "tokenizer.json or model folder: build the prompts and count their tokens")
	fl.StringVar(&f.template, "template", "", "prompt template file replacing the task's default")
	fl.IntVar(&f.maxPrompt, "max-prompt-tokens", 0, "truncate contexts in the middle so prompts fit this many tokens (0: no limit)")
	fl.IntVar(&f.maxNew, "max-new-tokens", 0, "override the task's default generation budget")
	fl.StringVar(&f.lengths, "lengths", "1k,2k,4k", "needle: prompt lengths in tokens, e.g. 512,1k,32k")
	fl.StringVar(&f.depths, "depths", "linear:5", "needle: depths, linear:N or a list like 0,0.5,1")
	fl.StringVar(&f.variant, "variant", "single", "needle: single, multikey or multivalue")
	fl.IntVar(&f.needles, "needles", 0, "needle: needles for multikey/multivalue (0: the default)")
	fl.IntVar(&f.perCell, "per-cell", 1, "needle: prompts per (length, depth) cell")
	fl.StringVar(&f.haystack, "haystack", "", "needle: folder of .txt files to use as the haystack (default: built-in synthetic filler)")
	fl.IntVar(&f.print, "print", 0, "print the text of the first N prompts")
	fl.BoolVar(&f.asJSON, "json", false, "print the task (and prompt records) as JSON")
	_ = cmd.MarkFlagFilename("data")
	_ = cmd.MarkFlagFilename("template")
	_ = cmd.MarkFlagDirname("haystack")
	return cmd
}

func completeTasks(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var names []string
	for _, t := range datasets.Tasks() {
		names = append(names, t.Name+"\t"+t.Summary)
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

func runDatasetsShow(cmd *cobra.Command, name string, f showFlags) error {
	task, err := datasets.LookupTask(name)
	if err != nil {
		return usageError{command: cmd.CommandPath(), err: err}
	}
	isNeedle := task.Name == "needle"
	if f.data != "" && isNeedle {
		return usagef(cmd, "--data does not apply to needle, which is generated (use --lengths, --depths)")
	}
	if f.data != "" && f.tokenizer == "" {
		return usagef(cmd, "--data needs --tokenizer to build and count the prompts (use 'datasets validate' to only check a file)")
	}
	if f.tokenizer == "" {
		return printTask(cmd.OutOrStdout(), task, f.asJSON)
	}
	if !isNeedle && f.data == "" {
		return usagef(cmd, "--tokenizer with task %s needs --data FILE", task.Name)
	}

	tok, tmpl, err := loadText(f.tokenizer)
	if err != nil {
		return fmt.Errorf("--tokenizer: %w", err)
	}
	chat := chatTurn(tmpl)
	builder, err := prompt.NewBuilder(tok, prompt.Options{
		Chat: chat,
		// Chat templates write BOS into the text themselves.
		AddSpecial: chat == nil,
		Budget:     f.maxPrompt,
	})
	if err != nil {
		return err
	}
	var override *prompt.Template
	if f.template != "" {
		if override, err = prompt.LoadTemplate(f.template); err != nil {
			return fmt.Errorf("--template: %w", err)
		}
	}

	var prompts []prompt.Prompt
	if isNeedle {
		prompts, err = needlePrompts(cmd, builder, override, f)
	} else {
		prompts, err = datasetPrompts(cmd, builder, override, task, f)
	}
	if err != nil {
		return err
	}
	return printPrompts(cmd.OutOrStdout(), prompts, f)
}

func needlePrompts(cmd *cobra.Command, b *prompt.Builder, tmpl *prompt.Template, f showFlags) ([]prompt.Prompt, error) {
	lengths, err := needle.ParseLengths(f.lengths)
	if err != nil {
		return nil, usagef(cmd, "--lengths: %v", err)
	}
	depths, err := needle.ParseDepths(f.depths)
	if err != nil {
		return nil, usagef(cmd, "--depths: %v", err)
	}
	variant, err := needle.ParseVariant(f.variant)
	if err != nil {
		return nil, usagef(cmd, "--variant: %v", err)
	}
	cfg := needle.Config{
		Lengths: lengths, Depths: depths, Variant: variant, Needles: f.needles,
		PerCell: f.perCell, Seed: f.seed, Template: tmpl, MaxNewTokens: f.maxNew,
	}
	if f.haystack != "" {
		h, err := needle.LoadHaystackDir(f.haystack)
		if err != nil {
			return nil, fmt.Errorf("--haystack: %w", err)
		}
		cfg.Haystack = h
	}
	return needle.Generate(b, cfg)
}

func datasetPrompts(cmd *cobra.Command, b *prompt.Builder, tmpl *prompt.Template, task datasets.TaskInfo, f showFlags) ([]prompt.Prompt, error) {
	format, err := datasets.ParseFormat(f.format)
	if err != nil {
		return nil, usagef(cmd, "--format: %v", err)
	}
	ds, err := datasets.Load(f.data, datasets.LoadOptions{Format: format, Limit: f.limit, Seed: f.seed, Head: f.head, SkipBad: f.skipBad})
	if err != nil {
		return nil, err
	}
	if ds.Skipped > 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "%s: skipped %d bad records (--skip-bad); first: %v\n", f.data, ds.Skipped, ds.Problems[0])
	}
	samples := ds.Samples[:0:0]
	for _, s := range ds.Samples {
		if s.Task == task.Name {
			samples = append(samples, s)
		}
	}
	if len(samples) == 0 {
		return nil, fmt.Errorf("%s holds no %s samples (%d samples of other tasks)", f.data, task.Name, len(ds.Samples))
	}
	return datasets.Prompts(b, samples, datasets.PromptOptions{Template: tmpl, MaxNewTokens: f.maxNew})
}

func printTask(w io.Writer, t datasets.TaskInfo, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(t)
	}
	fmt.Fprintf(w, "%s: %s\n", t.Name, t.Summary)
	fmt.Fprintf(w, "max new tokens: %d; metrics: %s\n", t.MaxNewTokens, strings.Join(t.Metrics, ", "))
	for _, s := range t.Sources {
		fmt.Fprintf(w, "source %s (format %s): %s — pass %s\n", s.Name, s.Format, s.Where, s.File)
	}
	fmt.Fprintf(w, "\ndefault prompt template:\n%s\n", t.Template)
	return nil
}

func printPrompts(w io.Writer, prompts []prompt.Prompt, f showFlags) error {
	if f.asJSON {
		enc := json.NewEncoder(w)
		for _, p := range prompts {
			if err := enc.Encode(p); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SAMPLE\tPROMPT TOKENS\tCONTEXT TOKENS\tDEPTH\tTRUNCATED")
	for _, p := range prompts {
		depth, trunc := "-", "-"
		if p.Depth >= 0 {
			depth = fmt.Sprintf("%.2f", p.Depth)
		}
		if p.Truncated {
			trunc = fmt.Sprintf("from %d", p.TruncatedFrom)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", p.SampleID, p.PromptTokens, p.ContextTokens, depth, trunc)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	buckets, err := prompt.Buckets(prompts, prompt.DefaultEdges())
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "\nlength buckets (prompt tokens):")
	for _, b := range buckets {
		if len(b.Indices) > 0 {
			fmt.Fprintf(w, "  %-8s %d\n", b.Label(), len(b.Indices))
		}
	}
	for i := 0; i < f.print && i < len(prompts); i++ {
		fmt.Fprintf(w, "\n--- %s (%d tokens) ---\n%s\n", prompts[i].SampleID, prompts[i].PromptTokens, prompts[i].Text)
	}
	return nil
}
