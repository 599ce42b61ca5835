package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/longctx/longctx/harness/report"
)

func newReportCommand() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "report RESULTS_DIR --out REPORT_DIR",
		Short: "Draw the comparison plots and an index.html from a results folder",
		Long: `report reads every <cell>.parquet in RESULTS_DIR and draws, as PNG and SVG:
TPOT and TTFT vs context per configuration, throughput vs batch, peak memory
vs context with the out-of-memory points marked, quality vs KV compression
ratio per task, speed–quality and memory–quality Pareto plots, and the needle
heatmap (depth × context). index.html shows them with the tables behind
them. A figure without data is left out, and the page says why.`,
		Example: `  harness report results/ --out report/
  harness report results/default --out report/default && xdg-open report/default/index.html`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sum, err := report.FromDir(args[0], out, report.Options{})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			for _, s := range sum.Skipped {
				fmt.Fprintf(w, "skipped %s: %s\n", s.Figure, s.Reason)
			}
			_, err = fmt.Fprintf(w, "report: %s (%d files)\n", sum.Index, len(sum.Files))
			return err
		},
	}
	cmd.Flags().StringVar(&out, "out", "report", "folder for the plots and index.html")
	return cmd
}
