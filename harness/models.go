package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/longctx/longctx/engine/model"
)

func newModelsCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "models",
		Short: "List the synthetic model presets and the supported checkpoint families",
		Long: `models lists the synthetic presets (real shapes, seeded random weights: speed
and memory figures are real, quality figures mean nothing) and the Hugging
Face model families a checkpoint folder may hold.`,
		Example: `  harness models
  harness models --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			presets := model.SyntheticPresets()
			if asJSON {
				type row struct {
					Name        string `json:"name"`
					Family      string `json:"family"`
					Params      int64  `json:"params"`
					Description string `json:"description"`
				}
				rows := make([]row, len(presets))
				for i, p := range presets {
					rows[i] = row{model.SyntheticPrefix + p.Name, string(p.Config.Family), p.Config.ParamCount(), p.Description}
				}
				return json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]any{
					"synthetic": rows,
					"families":  model.Families(),
				})
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PRESET\tFAMILY\tPARAMS\tDESCRIPTION")
			for _, p := range presets {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", model.SyntheticPrefix+p.Name, p.Config.Family, humanCount(p.Config.ParamCount()), p.Description)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "\nCheckpoint folders (config.json + safetensors) of model_type: %v\n", model.Families())
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func humanCount(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2fB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1fM", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1fK", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}
