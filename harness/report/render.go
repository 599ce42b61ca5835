package report

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/palette"
	"gonum.org/v1/plot/palette/brewer"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// drawer paints a whole figure onto a canvas.
type drawer func(c draw.Canvas)

// saveFigure writes the figure as name.png and name.svg in dir and returns
// the two paths. gonum/plot panics on some degenerate inputs (a heat map
// whose range is inverted, a log axis reaching zero); the builders avoid
// them, and the recover turns any that slips through into an error naming
// the figure rather than a crashed report.
func saveFigure(dir, name string, w, h vg.Length, d drawer) (paths []string, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("draw %s: %v", name, p)
		}
	}()
	for _, ext := range []string{"png", "svg"} {
		path := filepath.Join(dir, name+"."+ext)
		if err := writeCanvas(path, w, h, ext, d); err != nil {
			return nil, err
		}
		paths = append(paths, path)
	}
	return paths, nil
}

func writeCanvas(path string, w, h vg.Length, format string, d drawer) (err error) {
	cw, err := draw.NewFormattedCanvas(w, h, format)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	d(draw.New(cw))
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close %s: %w", path, cerr)
		}
	}()
	if _, err := cw.WriteTo(f); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func newPlot(title, xLabel, yLabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = vg.Points(13)
	p.X.Label.Text = xLabel
	p.Y.Label.Text = yLabel
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	return p
}

// log2Axis makes x logarithmic with a tick at every power of two in
// [lo, hi], labelled the way context lengths are written (512, 1k, 32k).
func log2Axis(a *plot.Axis, lo, hi float64) {
	a.Scale = plot.LogScale{}
	a.Min, a.Max = lo/1.25, hi*1.25
	var ticks []plot.Tick
	for v := math.Pow(2, math.Floor(math.Log2(lo))); v <= hi*1.0001; v *= 2 {
		ticks = append(ticks, plot.Tick{Value: v, Label: fmtTokens(int64(v))})
	}
	a.Tick.Marker = plot.ConstantTicks(ticks)
}

// xRange returns the smallest and largest x of the lines' points.
func xRange(lines []line) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, l := range lines {
		for _, p := range l.pts {
			lo, hi = math.Min(lo, p.x), math.Max(hi, p.x)
		}
	}
	return lo, hi
}

func toXYs(pts []point) plotter.XYs {
	xys := make(plotter.XYs, len(pts))
	for i, p := range pts {
		xys[i].X, xys[i].Y = p.x, p.y
	}
	return xys
}

// addLines draws each line with points in its own colour, dash and glyph,
// so that lines stay apart in grey print too.
func addLines(p *plot.Plot, lines []line) error {
	for i, l := range lines {
		if len(l.pts) == 0 {
			continue
		}
		ln, pts, err := plotter.NewLinePoints(toXYs(l.pts))
		if err != nil {
			return fmt.Errorf("line %q: %w", l.label, err)
		}
		ln.Color = plotutil.Color(i)
		ln.Width = vg.Points(1.5)
		ln.Dashes = plotutil.Dashes(i)
		pts.Color = plotutil.Color(i)
		pts.Shape = plotutil.Shape(i)
		pts.Radius = vg.Points(3)
		p.Add(ln, pts)
		p.Legend.Add(l.label, ln, pts)
	}
	return nil
}

// yRange returns the smallest and largest y of the lines' points.
func yRange(lines []line) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, l := range lines {
		for _, p := range l.pts {
			lo, hi = math.Min(lo, p.y), math.Max(hi, p.y)
		}
	}
	return lo, hi
}

// headroom is the factor by which to stretch the y range above the data so
// that a legend of n entries in the top corner stays clear of it.
func headroom(n int) float64 { return 1.1 + 0.07*float64(n) }

// contextPlot draws lines against a log2 context axis. With logY (for
// figures spanning orders of magnitude, such as TTFT, which grows with the
// square of the context) the y axis is logarithmic where every value is
// positive.
func contextPlot(title, yLabel string, lines []line, logY bool) (*plot.Plot, error) {
	p := newPlot(title, "context length (tokens)", yLabel)
	if err := addLines(p, lines); err != nil {
		return nil, err
	}
	lo, hi := xRange(lines)
	log2Axis(&p.X, lo, hi)
	ylo, yhi := yRange(lines)
	if logY && ylo > 0 && yhi > ylo {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Y.Min = ylo / 1.5
		p.Y.Max = yhi * math.Pow(yhi/p.Y.Min, headroom(len(lines))-1)
		return p, nil
	}
	p.Y.Min, p.Y.Max = 0, math.Max(yhi, 0)*headroom(len(lines))
	return p, nil
}

// memoryPlot draws peak memory against context and puts a cross in the
// configuration's colour at the top of the plot where it ran out of
// memory, since an OOM has no memory figure to place it by.
func memoryPlot(lines []line, marks []oomMark) (*plot.Plot, error) {
	p := newPlot("Peak memory vs context (× = out of memory)", "context length (tokens)", "peak memory (GiB)")
	if err := addLines(p, lines); err != nil {
		return nil, err
	}
	top := 0.0
	lo, hi := xRange(lines)
	for _, l := range lines {
		for _, pt := range l.pts {
			top = math.Max(top, pt.y)
		}
	}
	for _, m := range marks {
		lo, hi = math.Min(lo, float64(m.ctx)), math.Max(hi, float64(m.ctx))
	}
	if top == 0 {
		// Nothing fitted: the axis only carries the OOM marks.
		top = 1
		p.Y.Label.Text = "peak memory (none measured)"
		p.Y.Tick.Marker = plot.ConstantTicks{}
	}
	oomY := top * 1.1
	colour := map[string]int{}
	for i, l := range lines {
		colour[l.label] = i
	}
	byLabel := map[string]plotter.XYs{}
	var order []string
	for _, m := range marks {
		if _, ok := byLabel[m.label]; !ok {
			order = append(order, m.label)
		}
		byLabel[m.label] = append(byLabel[m.label], plotter.XY{X: float64(m.ctx), Y: oomY})
	}
	for _, label := range order {
		s, err := plotter.NewScatter(byLabel[label])
		if err != nil {
			return nil, fmt.Errorf("OOM marks of %q: %w", label, err)
		}
		s.Shape = draw.CrossGlyph{}
		s.Radius = vg.Points(7)
		s.Color = plotutil.Color(colour[label])
		p.Add(s)
		p.Legend.Add(label+": OOM", s)
	}
	log2Axis(&p.X, lo, hi)
	p.Y.Min, p.Y.Max = 0, top*headroom(len(lines)+len(order))
	return p, nil
}

// linearPlot draws lines against a linear x axis.
func linearPlot(title, xLabel, yLabel string, lines []line, xTicks []float64, tickFmt func(float64) string) (*plot.Plot, error) {
	p := newPlot(title, xLabel, yLabel)
	if err := addLines(p, lines); err != nil {
		return nil, err
	}
	if len(xTicks) > 0 {
		ticks := make([]plot.Tick, len(xTicks))
		for i, v := range xTicks {
			ticks[i] = plot.Tick{Value: v, Label: tickFmt(v)}
		}
		p.X.Tick.Marker = plot.ConstantTicks(ticks)
	}
	lo, hi := xRange(lines)
	pad := math.Max((hi-lo)*0.08, 0.05*math.Max(math.Abs(hi), 1))
	p.X.Min, p.X.Max = lo-pad, hi+pad
	_, yhi := yRange(lines)
	p.Y.Min, p.Y.Max = 0, math.Max(yhi, 0)*headroom(len(lines))
	if p.Y.Max == 0 {
		// All zeros (say, scores of a synthetic model): an empty range would
		// make gonum centre the axis on 0, showing impossible negatives.
		p.Y.Max = 1
	}
	return p, nil
}

// paretoPlot draws each configuration as a labelled point and joins the
// non-dominated ones into the frontier.
func paretoPlot(title, xLabel string, pts []paretoPoint) (*plot.Plot, error) {
	p := newPlot(title, xLabel, "mean quality score")
	p.Legend.Top = false
	var all, front, labelAt plotter.XYs
	var labels []string
	// Configurations at the same spot share one label, a line each, so
	// that their names do not overprint.
	at := map[plotter.XY]int{}
	for _, pt := range pts {
		xy := plotter.XY{X: pt.cost, Y: pt.quality}
		all = append(all, xy)
		if pt.frontier {
			front = append(front, xy)
		}
		if i, ok := at[xy]; ok {
			labels[i] += "\n" + pt.label
			continue
		}
		at[xy] = len(labels)
		labelAt = append(labelAt, xy)
		labels = append(labels, pt.label)
	}
	if len(front) > 1 {
		ln, err := plotter.NewLine(front)
		if err != nil {
			return nil, fmt.Errorf("frontier: %w", err)
		}
		ln.Color = color.RGBA{R: 200, A: 255}
		ln.Width = vg.Points(1.5)
		ln.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
		p.Add(ln)
		p.Legend.Add("Pareto frontier", ln)
	}
	s, err := plotter.NewScatter(all)
	if err != nil {
		return nil, fmt.Errorf("configurations: %w", err)
	}
	s.Shape = draw.CircleGlyph{}
	s.Radius = vg.Points(4)
	s.Color = color.RGBA{B: 160, A: 255}
	p.Add(s)
	p.Legend.Add("configuration", s)
	fs, err := plotter.NewScatter(front)
	if err != nil {
		return nil, fmt.Errorf("frontier points: %w", err)
	}
	fs.Shape = draw.RingGlyph{}
	fs.Radius = vg.Points(7)
	fs.Color = color.RGBA{R: 200, A: 255}
	p.Add(fs)
	lb, err := plotter.NewLabels(plotter.XYLabels{XYs: labelAt, Labels: labels})
	if err != nil {
		return nil, fmt.Errorf("labels: %w", err)
	}
	lb.Offset = vg.Point{X: vg.Points(8), Y: vg.Points(6)}
	p.Add(lb)
	// Room for the labels right of the points and above the best one.
	lo, hi := math.Inf(1), math.Inf(-1)
	qhi := 0.0
	for _, pt := range pts {
		lo, hi = math.Min(lo, pt.cost), math.Max(hi, pt.cost)
		qhi = math.Max(qhi, pt.quality)
	}
	span := math.Max(hi-lo, 0.1*math.Max(math.Abs(hi), 1))
	p.X.Min, p.X.Max = math.Max(0, lo-0.1*span), hi+0.6*span
	p.Y.Min, p.Y.Max = 0, math.Max(qhi*1.2, 0.05)
	return p, nil
}

// gridXYZ adapts a needleGrid to plotter.GridXYZ with index coordinates,
// so that every context gets a column of the same width.
type gridXYZ struct{ g *needleGrid }

func (g gridXYZ) Dims() (c, r int)   { return len(g.g.ctxs), len(g.g.depths) }
func (g gridXYZ) Z(c, r int) float64 { return g.g.z[r][c] }
func (g gridXYZ) X(c int) float64    { return float64(c) }
func (g gridXYZ) Y(r int) float64    { return float64(r) }

// needlePalette runs from red (needle missed) through yellow to green
// (needle found).
func needlePalette() (palette.Palette, error) {
	return brewer.GetPalette(brewer.TypeAny, "RdYlGn", 11)
}

// heatmapPlot draws one configuration's needle grid, each cell labelled
// with its score; cells without a measurement stay grey.
func heatmapPlot(g *needleGrid, lo, hi float64) (*plot.Plot, error) {
	pal, err := needlePalette()
	if err != nil {
		return nil, fmt.Errorf("palette: %w", err)
	}
	p := plot.New()
	p.Title.Text = g.label
	p.X.Label.Text = "context length (tokens)"
	p.Y.Label.Text = "needle depth"
	hm := plotter.NewHeatMap(gridXYZ{g}, pal)
	hm.Min, hm.Max = lo, hi
	hm.NaN = color.Gray{Y: 200}
	p.Add(hm)
	var xys plotter.XYs
	var labels []string
	var dark []bool
	for r := range g.depths {
		for c := range g.ctxs {
			switch v := g.z[r][c]; {
			case finite(v):
				xys = append(xys, plotter.XY{X: float64(c), Y: float64(r)})
				labels = append(labels, fmtNum(v))
				// The ends of the palette are dark: white text there.
				f := (v - lo) / (hi - lo)
				dark = append(dark, f < 0.2 || f > 0.8)
			case g.oom[c]:
				xys = append(xys, plotter.XY{X: float64(c), Y: float64(r)})
				labels = append(labels, "OOM")
				dark = append(dark, false)
			}
		}
	}
	if len(xys) > 0 {
		lb, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: labels})
		if err != nil {
			return nil, fmt.Errorf("cell labels: %w", err)
		}
		for i := range lb.TextStyle {
			lb.TextStyle[i].XAlign = -0.5
			lb.TextStyle[i].YAlign = -0.5
			lb.TextStyle[i].Font.Size = vg.Points(9)
			if dark[i] {
				lb.TextStyle[i].Color = color.White
			}
		}
		p.Add(lb)
	}
	xt := make([]plot.Tick, len(g.ctxs))
	for i, c := range g.ctxs {
		xt[i] = plot.Tick{Value: float64(i), Label: fmtTokens(c)}
	}
	yt := make([]plot.Tick, len(g.depths))
	for i, d := range g.depths {
		yt[i] = plot.Tick{Value: float64(i), Label: fmt.Sprintf("%.0f%%", d*100)}
	}
	p.X.Tick.Marker = plot.ConstantTicks(xt)
	p.Y.Tick.Marker = plot.ConstantTicks(yt)
	p.X.Min, p.X.Max = -0.5, float64(len(g.ctxs))-0.5
	p.Y.Min, p.Y.Max = -0.5, float64(len(g.depths))-0.5
	return p, nil
}

// heatmapTiles lays the configurations' heat maps out side by side, at
// most three to a row, under one title.
func heatmapTiles(grids []needleGrid, metric string) (drawer, vg.Length, vg.Length, error) {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, g := range grids {
		for _, row := range g.z {
			for _, v := range row {
				if finite(v) {
					lo, hi = math.Min(lo, v), math.Max(hi, v)
				}
			}
		}
	}
	// Scores are fractions: keep the colour scale fixed at [0, 1] so that
	// the same colour means the same recall in every report, unless the
	// metric runs outside it.
	lo, hi = math.Min(lo, 0), math.Max(hi, 1)
	plots := make([]*plot.Plot, len(grids))
	for i := range grids {
		p, err := heatmapPlot(&grids[i], lo, hi)
		if err != nil {
			return nil, 0, 0, fmt.Errorf("heat map of %q: %w", grids[i].label, err)
		}
		plots[i] = p
	}
	cols := min(len(grids), 3)
	rows := (len(grids) + cols - 1) / cols
	w := vg.Length(cols) * 11 * vg.Centimeter
	h := vg.Length(rows)*8*vg.Centimeter + vg.Centimeter
	title := fmt.Sprintf("Needle in a haystack: mean %s (red 0 … green 1; grey: not measured, OOM: out of memory)", metric)
	d := func(c draw.Canvas) {
		c.FillText(draw.TextStyle{Color: color.Black, Font: font.From(plot.DefaultFont, 13), Handler: plot.DefaultTextHandler, XAlign: draw.XCenter, YAlign: draw.YTop},
			vg.Point{X: c.Center().X, Y: c.Max.Y - vg.Points(4)}, title)
		body := c
		body.Max.Y -= vg.Centimeter
		tiles := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
			PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
		for i, p := range plots {
			p.Draw(tiles.At(body, i%cols, i/cols))
		}
	}
	return d, w, h, nil
}
