package report

import (
	"encoding/xml"
	"errors"
	"html/template"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/longctx/longctx/harness/results"
)

var allFigures = []string{"latency", "ttft", "throughput", "memory", "quality", "pareto", "pareto_memory", "needle_heatmap"}

// buildFixture writes the fixture as Parquet cell files and builds the
// report from the folder, the path `harness report` takes.
func buildFixture(t *testing.T, model string) (string, *Summary) {
	t.Helper()
	resDir := t.TempDir()
	cells := fixtureRows(model)
	for _, id := range sortedCellIDs(cells) {
		if _, err := results.WriteCell(resDir, id, cells[id]); err != nil {
			t.Fatalf("write cell %s: %v", id, err)
		}
	}
	out := filepath.Join(t.TempDir(), "report")
	if dir := os.Getenv("REPORT_KEEP"); dir != "" {
		out = dir
	}
	sum, err := FromDir(resDir, out, Options{})
	if err != nil {
		t.Fatalf("FromDir: %v", err)
	}
	return out, sum
}

func TestBuildWritesEveryFigure(t *testing.T) {
	out, sum := buildFixture(t, "synthetic:llama3-8b")
	if len(sum.Skipped) != 0 {
		t.Errorf("skipped figures on a result set that covers all of them: %+v", sum.Skipped)
	}
	written := map[string]bool{}
	for _, f := range sum.Files {
		written[f] = true
	}
	index, err := os.ReadFile(sum.Index)
	if err != nil {
		t.Fatalf("read index: %v", err)
	}
	html := string(index)
	for _, name := range allFigures {
		pngPath := filepath.Join(out, name+".png")
		svgPath := filepath.Join(out, name+".svg")
		for _, p := range []string{pngPath, svgPath} {
			if !written[p] {
				t.Errorf("Summary.Files lacks %s", p)
			}
			st, err := os.Stat(p)
			if err != nil {
				t.Errorf("%s: %v", p, err)
				continue
			}
			if st.Size() == 0 {
				t.Errorf("%s is empty", p)
			}
			link := `href="` + filepath.Base(p) + `"`
			if !strings.Contains(html, link) {
				t.Errorf("index.html has no link %s", link)
			}
		}
		checkPNG(t, pngPath)
		checkSVG(t, svgPath)
		if !strings.Contains(html, `src="`+name+`.png"`) {
			t.Errorf("index.html does not embed %s.png", name)
		}
	}
	if len(sum.Files) != 2*len(allFigures) {
		t.Errorf("Summary.Files has %d files, want %d: %v", len(sum.Files), 2*len(allFigures), sum.Files)
	}
}

func checkPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Errorf("decode %s: %v", path, err)
		return
	}
	if b := img.Bounds(); b.Dx() <= 200 || b.Dy() <= 200 {
		t.Errorf("%s is only %dx%d pixels", path, b.Dx(), b.Dy())
	}
}

func checkSVG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	d := xml.NewDecoder(f)
	root := ""
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Errorf("parse %s: %v", path, err)
			return
		}
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
		}
	}
	if root != "svg" {
		t.Errorf("%s: root element %q, want svg", path, root)
	}
}

// htmlRow is how index.html writes one table row, escaped by html/template
// as the page is.
func htmlRow(cells ...string) string {
	var b strings.Builder
	tmpl := template.Must(template.New("row").Parse(`<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>`))
	if err := tmpl.Execute(&b, cells); err != nil {
		panic(err)
	}
	return b.String()
}

func TestIndexShowsTheNumbersBehindTheFigures(t *testing.T) {
	_, sum := buildFixture(t, "synthetic:llama3-8b")
	index, err := os.ReadFile(sum.Index)
	if err != nil {
		t.Fatal(err)
	}
	html := string(index)
	eager, flash := fixtureConfigs[0], fixtureConfigs[1]
	const eagerLabel, flashLabel = "eager+full cuda", "flash+l2@0.5 cuda"
	// At batch 1 a cell of each task runs fixtureRepeats repeats: one QA
	// request and one needle request per depth.
	perCell := strconv.Itoa(fixtureRepeats * (1 + len(fixtureDepths)))
	var needleFlash []float64
	for _, ctx := range fixtureContexts {
		for _, d := range fixtureDepths {
			needleFlash = append(needleFlash, fixtureNeedle(flash, ctx, d))
		}
	}
	needleMean, _ := mean(needleFlash)
	tpot8k := fixtureTPOT(flash, 8192)
	// QA requests of the full cache: one per batch slot and repeat at
	// every context that fits.
	qaRequests := 0
	for _, ctx := range fixtureContexts {
		if !eager.ooms(ctx) {
			for _, b := range fixtureBatches {
				qaRequests += int(b) * fixtureRepeats
			}
		}
	}
	want := map[string]string{
		"TPOT of flash at 32k": htmlRow(flashLabel, "1", "32768", perCell, fmtNum(fixtureTPOT(flash, 32768))),
		"TPOT of eager at 8k":  htmlRow(eagerLabel, "1", "8192", perCell, fmtNum(fixtureTPOT(eager, 8192))),
		"TTFT of eager at 1k":  htmlRow(eagerLabel, "1", "1024", perCell, fmtNum(fixtureTTFT(eager, 1024))),
		"peak of eager at 8k":  htmlRow(eagerLabel, "1", "8192", fmtGiB(float64(fixturePeak(eager, 8192, 1))), "["+memDevice+"]"),
		"OOM of eager at 16k":  htmlRow(eagerLabel, "1", "16384", "OOM", ""),
		// Throughput is drawn at the largest context where both
		// configurations ran both batch sizes: 8k. Two tasks, three
		// repeats: six full batches of four, whose median sum is
		// 4 × 1000/TPOT.
		"throughput of flash, batch 4": htmlRow(flashLabel, "8192", "4", "6", fmtNum(4*1000/tpot8k)),
		"quality of QA, full cache":    htmlRow("narrativeqa", "f1", fmtNum(0), strconv.Itoa(qaRequests), fmtNum(fixtureF1(eager, 1))),
		"quality of needle at 0.5":     htmlRow("needle", "string_match_all", fmtNum(0.5), strconv.Itoa(len(needleFlash)*fixtureRepeats*2), fmtNum(needleMean)),
		"needle cell missed by flash":  htmlRow(flashLabel, "8192", fmtNum(0.5), strconv.Itoa(2*fixtureRepeats), fmtNum(0)),
	}
	for what, row := range want {
		if !strings.Contains(html, row) {
			t.Errorf("index.html lacks the %s row %s", what, row)
		}
	}
	for _, s := range []string{"quality numbers of synthetic models mean nothing", "NVIDIA H100 80GB HBM3"} {
		if !strings.Contains(html, s) {
			t.Errorf("index.html lacks %q", s)
		}
	}
}

func TestIndexEscapesNamesFromTheResults(t *testing.T) {
	const hostile = `<script>alert("x")</script>`
	_, sum := buildFixture(t, hostile)
	index, err := os.ReadFile(sum.Index)
	if err != nil {
		t.Fatal(err)
	}
	html := string(index)
	if strings.Contains(html, "<script>") {
		t.Error("index.html contains a raw <script> tag from a model name")
	}
	if !strings.Contains(html, "&lt;script&gt;") {
		t.Error("index.html does not show the escaped model name")
	}
}

func TestBuildSkipsFiguresWithoutData(t *testing.T) {
	var rows []results.Row
	for _, r := range flatten(fixtureRows("synthetic:llama3-8b")) {
		if r.Task != "needle" {
			rows = append(rows, r)
		}
	}
	out := t.TempDir()
	sum, err := Build(rows, out, Options{})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if len(sum.Skipped) != 1 || sum.Skipped[0].Figure != "needle_heatmap" {
		t.Fatalf("Skipped = %+v, want only needle_heatmap", sum.Skipped)
	}
	if _, err := os.Stat(filepath.Join(out, "needle_heatmap.png")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("needle_heatmap.png written without needle rows (stat: %v)", err)
	}
	index, err := os.ReadFile(sum.Index)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(index), sum.Skipped[0].Reason) {
		t.Errorf("index.html does not say why the needle figure is missing (%q)", sum.Skipped[0].Reason)
	}
	if strings.Contains(string(index), `src="needle_heatmap.png"`) {
		t.Error("index.html embeds a needle figure that was not drawn")
	}
}

// When every request ran out of memory only the memory figure, with its
// OOM marks, has anything to show.
func TestBuildAllOutOfMemory(t *testing.T) {
	var rows []results.Row
	for _, r := range flatten(fixtureRows("synthetic:llama3-8b")) {
		if r.Status == results.StatusOOM {
			rows = append(rows, r)
		}
	}
	out := t.TempDir()
	sum, err := Build(rows, out, Options{})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if len(sum.Files) != 2 || filepath.Base(sum.Files[0]) != "memory.png" {
		t.Errorf("Files = %v, want only the memory figure", sum.Files)
	}
	if len(sum.Skipped) != len(allFigures)-1 {
		t.Errorf("Skipped = %+v, want every figure but memory", sum.Skipped)
	}
	checkPNG(t, filepath.Join(out, "memory.png"))
}

func TestBuildRejectsBadInput(t *testing.T) {
	if _, err := Build(nil, t.TempDir(), Options{}); err == nil {
		t.Error("Build of no rows: no error")
	}
	rows := flatten(fixtureRows("m"))
	if _, err := Build(rows, t.TempDir(), Options{ThroughputContext: -1}); err == nil {
		t.Error("Build with a negative throughput context: no error")
	}
	if _, err := FromDir(filepath.Join(t.TempDir(), "missing"), t.TempDir(), Options{}); err == nil {
		t.Error("FromDir of a missing folder: no error")
	}
}
