// Package report turns the Parquet run log into figures and one HTML page:
// latency, time to first token, throughput, peak memory with the contexts
// that ran out of memory, quality against KV compression, the
// speed–memory–quality trade-off and the needle-in-a-haystack grid. Each
// figure is written as PNG and SVG, and index.html shows the figures with
// the tables of numbers they were drawn from.
package report

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/vg"

	"github.com/longctx/longctx/harness/results"
)

// Options tune the report; the zero value is a sensible default.
type Options struct {
	// Width and Height of one figure; 0 means 18 × 11 cm.
	Width, Height vg.Length
	// ThroughputContext is the context length at which throughput is
	// drawn against batch size; 0 picks the largest context measured at
	// two or more batch sizes.
	ThroughputContext int64
}

// Skip is a figure that was not drawn, and why.
type Skip struct {
	Figure string
	Reason string
}

// Summary lists what Build wrote.
type Summary struct {
	// Index is the path of index.html.
	Index string
	// Files are the image files written, PNG and SVG, in figure order.
	Files []string
	// Skipped are the figures the results had no data for.
	Skipped []Skip
}

// figure is one entry of the report: its image files (or the reason
// there are none) and the table behind it.
type figure struct {
	Name    string // file name without extension
	Title   string
	Caption string
	Table   table
	Skip    string
	draw    drawer
	w, h    vg.Length
}

// FromDir reads every results file in resultsDir and builds the report in
// outDir.
func FromDir(resultsDir, outDir string, opts Options) (*Summary, error) {
	rows, err := results.ReadDir(resultsDir)
	if err != nil {
		return nil, fmt.Errorf("read results in %s: %w", resultsDir, err)
	}
	return Build(rows, outDir, opts)
}

// Build draws the figures of rows into outDir (created if needed) and
// writes outDir/index.html.
func Build(rows []results.Row, outDir string, opts Options) (*Summary, error) {
	if len(rows) == 0 {
		return nil, errors.New("no result rows to report on")
	}
	if opts.Width <= 0 {
		opts.Width = 18 * vg.Centimeter
	}
	if opts.Height <= 0 {
		opts.Height = 11 * vg.Centimeter
	}
	if opts.ThroughputContext < 0 {
		return nil, fmt.Errorf("throughput context %d is negative", opts.ThroughputContext)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("create report folder: %w", err)
	}
	figs, err := buildFigures(rows, opts)
	if err != nil {
		return nil, err
	}
	sum := &Summary{Index: filepath.Join(outDir, "index.html")}
	for _, f := range figs {
		if f.Skip != "" {
			sum.Skipped = append(sum.Skipped, Skip{Figure: f.Name, Reason: f.Skip})
			continue
		}
		paths, err := saveFigure(outDir, f.Name, f.w, f.h, f.draw)
		if err != nil {
			return nil, err
		}
		sum.Files = append(sum.Files, paths...)
	}
	if err := writeIndex(sum.Index, overviewOf(rows), figs); err != nil {
		return nil, err
	}
	return sum, nil
}

// linesFigure completes a line figure: skipped with reason when no line
// has a point, else drawn by mk.
func linesFigure(f figure, lines []line, reason string, opts Options, mk func() (*plot.Plot, error)) (figure, error) {
	if !anyPoints(lines) {
		f.Skip = reason
		return f, nil
	}
	p, err := mk()
	if err != nil {
		return f, fmt.Errorf("%s figure: %w", f.Name, err)
	}
	f.draw, f.w, f.h = p.Draw, opts.Width, opts.Height
	return f, nil
}

func anyPoints(lines []line) bool {
	for _, l := range lines {
		if len(l.pts) > 0 {
			return true
		}
	}
	return false
}
