package sweep

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestWriteSlurmScript(t *testing.T) {
	spec, err := LoadSpec(filepath.Join("testdata", "full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	opts := SlurmOptions{
		Harness:   "/opt/long ctx/bin/harness",
		CellsFile: "/scratch/my sweep/cells.json",
		Out:       "/scratch/it's results",
		LogDir:    "/scratch/my sweep/logs",
	}
	if err := WriteSlurmScript(&b, spec, testCells(7), opts); err != nil {
		t.Fatal(err)
	}
	script := b.String()
	lines := strings.Split(script, "\n")
	if lines[0] != "#!/bin/bash" {
		t.Errorf("first line %q", lines[0])
	}
	for _, want := range []string{
		"#SBATCH --job-name=longctx-kv-ratio",
		"#SBATCH --array=0-6%4",
		`#SBATCH --output="/scratch/my sweep/logs/%A_%a.log"`,
		"#SBATCH --partition=gpu",
		"#SBATCH --time=02:00:00",
		"#SBATCH --gres=gpu:1",
		"#SBATCH --cpus-per-task=8",
		"#SBATCH --mem=64G",
		"#SBATCH --constraint=h100",
		"#SBATCH --exclusive",
		"module load cuda",
		"source venv/bin/activate",
		`HARNESS='/opt/long ctx/bin/harness'`,
		`CELLS='/scratch/my sweep/cells.json'`,
		`OUT='/scratch/it'\''s results'`,
		`exec "$HARNESS" sweep run-cell --cells "$CELLS" --index "$SLURM_ARRAY_TASK_ID" --out "$OUT"`,
	} {
		if !containsLine(lines, want) {
			t.Errorf("script lacks the line %q:\n%s", want, script)
		}
	}
	// sbatch stops reading #SBATCH lines at the first command, so all of
	// them must come before the body.
	lastSbatch, firstCmd := -1, -1
	for i, l := range lines {
		if strings.HasPrefix(l, "#SBATCH") {
			lastSbatch = i
		} else if firstCmd < 0 && l != "" && !strings.HasPrefix(l, "#") {
			firstCmd = i
		}
	}
	if firstCmd < lastSbatch {
		t.Errorf("line %d is a command before #SBATCH line %d", firstCmd, lastSbatch)
	}
}

func containsLine(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}

func TestWriteSlurmScriptMinimal(t *testing.T) {
	spec := &Spec{}
	var b bytes.Buffer
	if err := WriteSlurmScript(&b, spec, testCells(1), SlurmOptions{Harness: "h", CellsFile: "c", Out: "o", LogDir: "l"}); err != nil {
		t.Fatal(err)
	}
	for _, absent := range []string{"--partition", "--time", "--gres", "--mem", "--cpus-per-task", "%"} {
		if strings.Contains(strings.ReplaceAll(b.String(), "%A_%a", ""), absent) {
			t.Errorf("script with no settings has %q:\n%s", absent, b.String())
		}
	}
	if !strings.Contains(b.String(), "#SBATCH --array=0-0\n") {
		t.Errorf("one cell should give --array=0-0:\n%s", b.String())
	}
}

func TestWriteSlurmScriptErrors(t *testing.T) {
	ok := SlurmOptions{Harness: "h", CellsFile: "c", Out: "o", LogDir: "l"}
	cases := []struct {
		name  string
		spec  Spec
		cells []Cell
		opts  SlurmOptions
	}{
		{"no cells", Spec{}, nil, ok},
		{"no harness", Spec{}, testCells(1), SlurmOptions{CellsFile: "c", Out: "o", LogDir: "l"}},
		{"quote in log dir", Spec{}, testCells(1), SlurmOptions{Harness: "h", CellsFile: "c", Out: "o", LogDir: `a"b`}},
		{"newline in out", Spec{}, testCells(1), SlurmOptions{Harness: "h", CellsFile: "c", Out: "a\nb", LogDir: "l"}},
		{"newline in partition", Spec{Slurm: SlurmSpec{Partition: "a\n#SBATCH --x"}}, testCells(1), ok},
		{"newline in extra", Spec{Slurm: SlurmSpec{Extra: []string{"--a\nrm -rf /"}}}, testCells(1), ok},
	}
	for _, c := range cases {
		if err := WriteSlurmScript(&bytes.Buffer{}, &c.spec, c.cells, c.opts); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
}

func TestPrepareSlurmSkipsDone(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "job dir")
	cells := testCells(5)
	all := ids(cells)
	done := map[string]bool{all[0]: true, all[3]: true}
	job, err := PrepareSlurm(dir, &Spec{Name: "x"}, cells, func(id string) bool { return done[id] }, SlurmOptions{Harness: "bin/harness", Out: "results"})
	if err != nil {
		t.Fatal(err)
	}
	if job.Pending != 3 || job.Skipped != 2 {
		t.Errorf("job %+v, want 3 pending and 2 skipped", job)
	}
	got, err := ReadCellsFile(job.CellsFile)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Cell{cells[1], cells[2], cells[4]}; !reflect.DeepEqual(got, want) {
		t.Errorf("cells file holds %v, want the pending cells %v", ids(got), ids(want))
	}
	script, err := os.ReadFile(job.Script)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(script), "#SBATCH --array=0-2\n") {
		t.Errorf("array does not cover exactly the 3 pending cells:\n%s", script)
	}
	if st, err := os.Stat(filepath.Join(dir, SlurmLogDirName)); err != nil || !st.IsDir() {
		t.Errorf("log folder: %v", err)
	}
	for _, rel := range []string{"bin/harness", "results"} {
		abs, _ := filepath.Abs(rel)
		if !strings.Contains(string(script), shellQuote(abs)) {
			t.Errorf("script does not use the absolute path %s:\n%s", abs, script)
		}
	}

	// Everything done: nothing to submit, nothing written.
	dir2 := filepath.Join(t.TempDir(), "none")
	job, err = PrepareSlurm(dir2, &Spec{}, cells, func(string) bool { return true }, SlurmOptions{Harness: "h", Out: "o"})
	if err != nil || job.Pending != 0 || job.Script != "" {
		t.Errorf("all done: %+v, %v", job, err)
	}
	if _, err := os.Stat(dir2); !os.IsNotExist(err) {
		t.Errorf("all done still created %s", dir2)
	}
}

func TestCellsFileRoundTrip(t *testing.T) {
	spec, err := LoadSpec(filepath.Join("testdata", "full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cells, err := Expand(spec)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cells.json")
	if err := WriteCellsFile(path, cells); err != nil {
		t.Fatal(err)
	}
	got, err := ReadCellsFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, cells) {
		t.Fatal("cells changed in the round trip")
	}
	for _, i := range []int{0, len(cells) - 1} {
		c, err := CellAt(path, i)
		if err != nil || c.ID() != cells[i].ID() {
			t.Errorf("CellAt(%d) = %s, %v; want %s", i, c.ID(), err, cells[i].ID())
		}
	}
	for _, i := range []int{-1, len(cells)} {
		if _, err := CellAt(path, i); err == nil || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("CellAt(%d): %v, want out of range", i, err)
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temp files left behind: %v", entries)
	}
}

func TestDecodeCellsErrors(t *testing.T) {
	valid := `{"model":"m","attn":"a","kv":"k","task":"t","context":1,"batch":1,"max_new_tokens":1,"repeat":1}`
	cases := map[string]string{
		"not json":       "cells",
		"wrong version":  `{"version":2,"cells":[]}`,
		"no version":     `{"cells":[]}`,
		"unknown field":  `{"version":1,"cells":[{"modle":"m"}]}`,
		"invalid cell":   `{"version":1,"cells":[` + valid + `,{"model":"m"}]}`,
		"trailing data":  `{"version":1,"cells":[]} {}`,
		"wrong type":     `{"version":1,"cells":[{"context":"1k"}]}`,
		"bad kv options": `{"version":1,"cells":[{"model":"m","attn":"a","kv":"k","kv_opts":["ratio"],"task":"t","context":1,"batch":1,"max_new_tokens":1,"repeat":1}]}`,
	}
	for name, in := range cases {
		if _, err := DecodeCells(strings.NewReader(in)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	got, err := DecodeCells(strings.NewReader(`{"version":1,"cells":[` + valid + `]}`))
	if err != nil || len(got) != 1 {
		t.Errorf("valid file: %v, %v", got, err)
	}
	if err != nil {
		return
	}
	if !strings.Contains(got[0].ID(), "m_a_k_t_c1_b1-") {
		t.Errorf("decoded cell ID %s", got[0].ID())
	}
}

func FuzzDecodeCells(f *testing.F) {
	var b bytes.Buffer
	if err := EncodeCells(&b, testCells(2)); err != nil {
		f.Fatal(err)
	}
	f.Add(b.Bytes())
	f.Add([]byte(`{"version":1,"cells":[{"context":-1}]}`))
	f.Add([]byte(`{"version":1,"cells":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cells, err := DecodeCells(bytes.NewReader(data))
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := EncodeCells(&out, cells); err != nil {
			t.Fatal(err)
		}
		again, err := DecodeCells(&out)
		if err != nil {
			t.Fatalf("re-decoding an encoded file: %v", err)
		}
		if !reflect.DeepEqual(ids(again), ids(cells)) {
			t.Fatal("IDs changed after a round trip")
		}
	})
}

func TestParseJobID(t *testing.T) {
	for in, want := range map[string]string{"42\n": "42", "1234;cluster\n": "1234"} {
		if got, err := parseJobID(in); err != nil || got != want {
			t.Errorf("parseJobID(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "Submitted batch job 42", "12a", ";x"} {
		if _, err := parseJobID(in); err == nil {
			t.Errorf("parseJobID(%q) accepted", in)
		}
	}
}

func TestParseStates(t *testing.T) {
	// Shapes of `scontrol -o show job` and `sacct -X -P` output (fields cut).
	sc := "JobId=4 ArrayJobId=2 ArrayTaskId=2 JobState=COMPLETED Reason=None\n" +
		"JobId=3 ArrayJobId=2 ArrayTaskId=1 JobState=FAILED Reason=NonZeroExitCode\n" +
		"JobId=2 ArrayJobId=2 ArrayTaskId=0 JobState=COMPLETED Reason=None\n"
	states, err := parseScontrol(sc)
	if err != nil {
		t.Fatal(err)
	}
	want := []TaskState{{"2", "COMPLETED"}, {"1", "FAILED"}, {"0", "COMPLETED"}}
	if !reflect.DeepEqual(states, want) {
		t.Errorf("parseScontrol = %v, want %v", states, want)
	}
	err = checkStates("2", states)
	if err == nil || !strings.Contains(err.Error(), "task 1 FAILED") || !strings.Contains(err.Error(), "1 of 3") {
		t.Errorf("checkStates = %v", err)
	}
	if err := checkStates("2", []TaskState{{"0", "COMPLETED"}}); err != nil {
		t.Errorf("all completed: %v", err)
	}
	if _, err := parseScontrol("JobId=2 Name=x\n"); err == nil {
		t.Error("scontrol line without JobState accepted")
	}
	if _, err := parseScontrol("\n"); err == nil {
		t.Error("empty scontrol output accepted")
	}

	sa, err := parseSacct("7_0|COMPLETED\n7_1|CANCELLED by 0\n8|TIMEOUT\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := []TaskState{{"0", "COMPLETED"}, {"1", "CANCELLED"}, {"", "TIMEOUT"}}; !reflect.DeepEqual(sa, want) {
		t.Errorf("parseSacct = %v, want %v", sa, want)
	}
	for _, bad := range []string{"", "7_0", "7_0|", "7_0| "} {
		if _, err := parseSacct(bad); err == nil {
			t.Errorf("parseSacct(%q) accepted", bad)
		}
	}
}

func TestWaitRejectsBadID(t *testing.T) {
	if err := Wait(context.Background(), "1; rm -rf /", 0); err == nil {
		t.Error("Wait accepted a job id that is not a number")
	}
}
