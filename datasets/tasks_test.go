package datasets

import (
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/longctx/longctx/datasets/internal/testtok"
	"github.com/longctx/longctx/datasets/prompt"
)

func TestTasks(t *testing.T) {
	tasks := Tasks()
	var names []string
	for _, task := range tasks {
		names = append(names, task.Name)
		if _, err := task.DefaultTemplate(); err != nil {
			t.Errorf("%s: default template: %v", task.Name, err)
		}
		if task.MaxNewTokens <= 0 || task.Summary == "" || len(task.Metrics) == 0 {
			t.Errorf("%s: incomplete %+v", task.Name, task)
		}
		for _, src := range task.Sources {
			if !slices.Contains(task.Formats, src.Format) || src.File == "" || src.Where == "" {
				t.Errorf("%s: source %+v", task.Name, src)
			}
		}
		got, err := LookupTask(task.Name)
		if err != nil || got.Name != task.Name {
			t.Errorf("LookupTask(%s) = %v, %v", task.Name, got.Name, err)
		}
	}
	if !slices.IsSorted(names) || !slices.Equal(names, []string{"hotpotqa", "narrativeqa", "needle"}) {
		t.Errorf("task names %v", names)
	}
	if _, err := LookupTask("squad"); err == nil || !strings.Contains(err.Error(), "hotpotqa, narrativeqa, needle") {
		t.Errorf("unknown task: %v", err)
	}
}

func TestPrompts(t *testing.T) {
	tok := testtok.NewWords()
	b, err := prompt.NewBuilder(tok, prompt.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	var samples []Sample
	for _, f := range []string{"longbench_narrativeqa.jsonl", "hotpot_distractor.json"} {
		samples = append(samples, load(t, fixture(f), LoadOptions{}).Samples...)
	}
	prompts, err := Prompts(b, samples, PromptOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range prompts {
		s := samples[i]
		task, _ := LookupTask(s.Task)
		tmpl, _ := task.DefaultTemplate()
		_, user := tmpl.Render(s.Context, s.Question)
		if p.Text != user || p.MaxNewTokens != task.MaxNewTokens || p.SampleID != s.ID || p.Task != s.Task ||
			!slices.Equal(p.References, s.References) || p.Depth != -1 {
			t.Errorf("prompt %d: %+v", i, p)
		}
	}

	custom := prompt.MustParseTemplate("custom", "C={context} Q={question}")
	prompts, err = Prompts(b, samples[:1], PromptOptions{Template: custom, MaxNewTokens: 5})
	if err != nil {
		t.Fatal(err)
	}
	if p := prompts[0]; p.Text != "C="+samples[0].Context+" Q="+samples[0].Question || p.MaxNewTokens != 5 {
		t.Errorf("override: %q, %d", p.Text, p.MaxNewTokens)
	}

	other := Sample{ID: "x1", Task: "qasper", Context: "c", Question: "q", References: []string{"a"}}
	if _, err := Prompts(b, []Sample{other}, PromptOptions{}); err == nil || !strings.Contains(err.Error(), `task "qasper" has no default`) {
		t.Errorf("task without defaults: %v", err)
	}
	if _, err := Prompts(b, []Sample{other}, PromptOptions{Template: custom, MaxNewTokens: 9}); err != nil {
		t.Errorf("task without defaults, given both: %v", err)
	}
}
