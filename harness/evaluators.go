package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/longctx/longctx/evaluators/contract"
	evalhost "github.com/longctx/longctx/evaluators/host"
)

func newEvaluatorsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "evaluators",
		Short: "List the WASM scoring modules",
		Long: `Evaluators are WASI modules run in the wazero sandbox: no filesystem, no
network, no environment, a memory cap, a timeout and bounded output. They
are found by name in ./evaluators, $LONGCTX_EVALUATOR_PATH, the user data
folder (…/longctx/evaluators) and bin/evaluators beside the harness
('make build' puts the built-ins there). See evaluators/README.md to write one.`,
		Example: "  harness evaluators list\n  harness evaluators list --json",
		Args:    cobra.NoArgs,
	}
	var asJSON bool
	list := &cobra.Command{
		Use:     "list",
		Short:   "List the evaluators found, with version and score names",
		Example: "  harness evaluators list\n  LONGCTX_EVALUATOR_PATH=~/my-evaluators harness evaluators list --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			h, err := evalhost.New(cmd.Context(), evalhost.Options{})
			if err != nil {
				return err
			}
			defer h.Close(cmd.Context())
			found, listErr := evalhost.List(h.SearchPath())
			type row struct {
				Name     string               `json:"name"`
				Path     string               `json:"path"`
				Shadowed bool                 `json:"shadowed,omitempty"`
				Version  string               `json:"version,omitempty"`
				Scores   []contract.ScoreSpec `json:"scores,omitempty"`
				Error    string               `json:"error,omitempty"`
			}
			var rows []row
			for _, f := range found {
				r := row{Name: f.Name, Path: f.Path, Shadowed: f.Shadowed}
				if !f.Shadowed {
					if ev, err := h.Load(cmd.Context(), f.Path); err != nil {
						r.Error = err.Error()
					} else {
						d := ev.Descriptor()
						r.Version, r.Scores = d.Version, d.Scores
					}
				}
				rows = append(rows, r)
			}
			if asJSON {
				if rows == nil {
					rows = []row{}
				}
				if err := json.NewEncoder(cmd.OutOrStdout()).Encode(rows); err != nil {
					return err
				}
				return listErr
			}
			if len(rows) == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "no evaluators found in %v (run 'make build' in the repository)\n", h.SearchPath())
				return listErr
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tVERSION\tSCORES\tPATH")
			for _, r := range rows {
				var names []string
				for _, s := range r.Scores {
					names = append(names, s.Name)
				}
				scores := strings.Join(names, ",")
				switch {
				case r.Shadowed:
					scores = "(shadowed by an earlier folder)"
				case r.Error != "":
					scores = "error: " + r.Error
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, r.Version, scores, r.Path)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			return listErr
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(list)
	return cmd
}

func newScoreCommand() *cobra.Command {
	var (
		evaluator, input string
		asJSON           bool
		timeout          time.Duration
		memLimit         string
	)
	cmd := &cobra.Command{
		Use:   "score --evaluator NAME|PATH.wasm --input preds.jsonl",
		Short: "Score predictions with a sandboxed WASM evaluator",
		Long: `score reads JSON lines {"id", "prediction", "references": [...], "meta": {...}}
(- for standard input), runs them through the evaluator in the wazero
sandbox and prints each item's scores and the mean of every score. With
--json it prints one JSON object per item ({"id", "scores"}) and then
{"aggregate": [...]}.`,
		Example: `  harness score --evaluator squad --input preds.jsonl
  harness score --evaluator rouge --input preds.jsonl --json
  harness score --evaluator ./my_scorer.wasm --input - < preds.jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if evaluator == "" || input == "" {
				return usagef(cmd, "--evaluator and --input are required")
			}
			limit, err := parseBytes(memLimit)
			if err != nil {
				return usagef(cmd, "--memory-limit: %v", err)
			}
			items, err := readItems(cmd, input)
			if err != nil {
				return err
			}
			h, err := evalhost.New(cmd.Context(), evalhost.Options{Timeout: timeout, MemoryLimit: uint64(limit)})
			if err != nil {
				return err
			}
			defer h.Close(cmd.Context())
			ev, err := h.Load(cmd.Context(), evaluator)
			if err != nil {
				return err
			}
			lines, err := ev.Score(cmd.Context(), items)
			if err != nil {
				return err
			}
			agg := evalhost.Aggregate(ev.Descriptor(), lines)
			return printScores(cmd.OutOrStdout(), ev.Descriptor(), lines, agg, asJSON)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&evaluator, "evaluator", "", "evaluator name (see 'harness evaluators list') or path to a .wasm module")
	fl.StringVar(&input, "input", "", "predictions as JSON lines, or - for standard input")
	fl.BoolVar(&asJSON, "json", false, "print JSON lines: one per item, then the aggregate")
	fl.DurationVar(&timeout, "timeout", 2*time.Minute, "wall-clock limit for scoring the whole input")
	fl.StringVar(&memLimit, "memory-limit", "512MiB", "memory cap of the WASM module")
	_ = cmd.MarkFlagFilename("input", "jsonl")
	_ = cmd.RegisterFlagCompletionFunc("evaluator", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		found, _ := evalhost.List(evalhost.DefaultSearchPath())
		var names []string
		for _, f := range found {
			names = append(names, f.Name)
		}
		return names, cobra.ShellCompDirectiveDefault
	})
	return cmd
}

func readItems(cmd *cobra.Command, input string) ([]contract.Item, error) {
	if input == "-" {
		return contract.ReadItems(cmd.InOrStdin(), "stdin")
	}
	f, err := os.Open(input)
	if err != nil {
		return nil, fmt.Errorf("--input: %w", err)
	}
	defer f.Close()
	return contract.ReadItems(f, input)
}

func printScores(w io.Writer, d contract.Descriptor, lines []contract.ScoreLine, agg []evalhost.Summary, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		for _, l := range lines {
			if err := enc.Encode(l); err != nil {
				return err
			}
		}
		type summary struct {
			Name           string  `json:"name"`
			Mean           float64 `json:"mean"`
			Count          int     `json:"count"`
			HigherIsBetter bool    `json:"higher_is_better"`
		}
		out := make([]summary, len(agg))
		for i, s := range agg {
			out[i] = summary{s.Name, s.Mean, s.Count, s.HigherIsBetter}
		}
		return enc.Encode(map[string]any{"evaluator": d.Name, "version": d.Version, "aggregate": out})
	}
	names := d.ScoreNames()
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "ID\t%s\n", strings.Join(names, "\t"))
	for _, l := range lines {
		vals := make([]string, len(names))
		for i, n := range names {
			vals[i] = fmt.Sprintf("%.4f", l.Scores[n])
		}
		fmt.Fprintf(tw, "%s\t%s\n", l.ID, strings.Join(vals, "\t"))
	}
	vals := make([]string, len(agg))
	for i, s := range agg {
		vals[i] = fmt.Sprintf("%.4f", s.Mean)
	}
	fmt.Fprintf(tw, "MEAN (%d items)\t%s\n", len(lines), strings.Join(vals, "\t"))
	return tw.Flush()
}

// parseBytes reads sizes such as 512MiB, 2GiB, 64MB or a plain byte count.
func parseBytes(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}
	s = strings.TrimSpace(s)
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			var v float64
			if _, err := fmt.Sscan(strings.TrimSpace(num), &v); err != nil || v < 0 {
				return 0, fmt.Errorf("%q is not a size like 512MiB", s)
			}
			return int64(v * float64(u.mult)), nil
		}
	}
	var v int64
	if _, err := fmt.Sscan(s, &v); err != nil || v < 0 {
		return 0, fmt.Errorf("%q is not a size like 512MiB", s)
	}
	return v, nil
}
