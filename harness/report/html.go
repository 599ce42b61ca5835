package report

import (
	"bytes"
	"fmt"
	"html/template"
	"os"
	"path/filepath"
	"sort"

	"github.com/longctx/longctx/harness/results"
)

// overview is the run summary at the top of index.html.
type overview struct {
	Models, Backends, Devices, Runs []string
	Cells, Requests, Warmup         int
	OK, OOM, Error, Other           int
	Synthetic                       bool
}

func overviewOf(rows []results.Row) overview {
	sets := map[string]map[string]bool{"model": {}, "backend": {}, "device": {}, "run": {}, "cell": {}}
	var o overview
	for i := range rows {
		r := &rows[i]
		sets["model"][r.Model] = true
		sets["backend"][r.Backend] = true
		sets["device"][r.DeviceName] = true
		sets["run"][r.RunID] = true
		sets["cell"][r.CellID] = true
		o.Synthetic = o.Synthetic || r.Synthetic
		if r.Warmup {
			o.Warmup++
			continue
		}
		o.Requests++
		switch r.Status {
		case results.StatusOK:
			o.OK++
		case results.StatusOOM:
			o.OOM++
		case results.StatusError:
			o.Error++
		default:
			o.Other++
		}
	}
	o.Models = sortedSet(sets["model"])
	o.Backends = sortedSet(sets["backend"])
	o.Devices = sortedSet(sets["device"])
	o.Runs = sortedSet(sets["run"])
	o.Cells = len(sets["cell"])
	return o
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// The page is html/template so that every model name, label and error text
// from the results is escaped: results files come from other machines.
var indexTemplate = template.Must(template.New("index").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>longctx report</title>
<style>
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 2em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
td.num { text-align: right; }
img { max-width: 100%; border: 1px solid #eee; }
.warning { background: #fff3cd; border: 1px solid #e0c060; padding: 0.6em 1em; }
.skipped { color: #a33; }
</style>
</head>
<body>
<h1>longctx report</h1>
<h2>Run overview</h2>
{{with .Overview}}
{{if .Synthetic}}<p class="warning"><strong>Synthetic models:</strong> some results come from synthetic models with random weights; quality numbers of synthetic models mean nothing.</p>{{end}}
<table>
<tr><th>models</th><td>{{range $i, $m := .Models}}{{if $i}}, {{end}}{{$m}}{{end}}</td></tr>
<tr><th>backends</th><td>{{range $i, $m := .Backends}}{{if $i}}, {{end}}{{$m}}{{end}}</td></tr>
<tr><th>devices</th><td>{{range $i, $m := .Devices}}{{if $i}}, {{end}}{{$m}}{{end}}</td></tr>
<tr><th>runs</th><td>{{range $i, $m := .Runs}}{{if $i}}, {{end}}{{$m}}{{end}}</td></tr>
<tr><th>cells</th><td class="num">{{.Cells}}</td></tr>
<tr><th>measured requests</th><td class="num">{{.Requests}}</td></tr>
<tr><th>ok / oom / error</th><td class="num">{{.OK}} / {{.OOM}} / {{.Error}}{{if .Other}} ({{.Other}} with an unknown status){{end}}</td></tr>
<tr><th>warm-up requests (not counted)</th><td class="num">{{.Warmup}}</td></tr>
</table>
{{end}}
<h2>Figures</h2>
<ul>
{{range .Figures}}<li><a href="#{{.Name}}">{{.Title}}</a>{{if .Skip}} <span class="skipped">(not drawn: {{.Skip}})</span>{{end}}</li>
{{end}}</ul>
{{range .Figures}}
<section id="{{.Name}}">
<h2>{{.Title}}</h2>
{{if .Skip}}<p class="skipped">Not drawn: {{.Skip}}.</p>{{else}}
<p><a href="{{.Name}}.svg"><img src="{{.Name}}.png" alt="{{.Title}}"></a></p>
<p>Files: <a href="{{.Name}}.png">{{.Name}}.png</a> · <a href="{{.Name}}.svg">{{.Name}}.svg</a></p>
{{end}}
<p>{{.Caption}}</p>
{{if .Table.Rows}}<table>
<tr>{{range .Table.Columns}}<th>{{.}}</th>{{end}}</tr>
{{range .Table.Rows}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>
{{end}}</table>{{end}}
</section>
{{end}}
</body>
</html>
`))

// writeIndex renders index.html to path, through a temporary file so that
// a failed render leaves no half page.
func writeIndex(path string, o overview, figs []figure) error {
	var buf bytes.Buffer
	if err := indexTemplate.Execute(&buf, struct {
		Overview overview
		Figures  []figure
	}{o, figs}); err != nil {
		return fmt.Errorf("render %s: %w", path, err)
	}
	tmp := filepath.Join(filepath.Dir(path), ".index.html.tmp")
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return nil
}
