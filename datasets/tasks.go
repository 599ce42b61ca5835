package datasets

import (
	"fmt"
	"strings"

	"github.com/longctx/longctx/datasets/needle"
	"github.com/longctx/longctx/datasets/prompt"
)

// TaskInfo describes a task for `harness datasets list|show`.
type TaskInfo struct {
	Name    string
	Summary string
	// Formats are the file formats that hold the task (none for needle,
	// which is generated).
	Formats []Format
	// Sources say where to get the real files and what to pass.
	Sources []Source
	// Template is the default prompt template's text.
	Template string
	// MaxNewTokens is the default generation budget.
	MaxNewTokens int
	// Metrics are the scores that suit the task, by the evaluators' names.
	Metrics []string
}

// Source is one place to get a task's data.
type Source struct {
	Name   string // e.g. "LongBench"
	Where  string // where to download it
	File   string // the file to pass
	Format Format
}

const narrativeQATemplate = `You are given a story, which can be a book or a movie script, and a question about it. Answer as briefly as you can, with a phrase rather than a sentence where possible.

Story:
{context}

Now answer the question about the story as briefly as possible, without explaining.

Question: {question}
Answer:`

const hotpotQATemplate = `Answer the question using the passages below. The answer may need facts from more than one passage. Give only the answer, without explaining.

{context}

Answer the question using the passages above. Give only the answer, without explaining.

Question: {question}
Answer:`

// Tasks returns the tasks this package knows, sorted by name.
func Tasks() []TaskInfo {
	return []TaskInfo{
		{
			Name:    "hotpotqa",
			Summary: "multi-hop questions over Wikipedia paragraphs (distractor setting: 2 gold and 8 distractor paragraphs)",
			Formats: []Format{FormatLongBench, FormatHotpotQA},
			Sources: []Source{
				{Name: "LongBench", Where: "Hugging Face dataset THUDM/LongBench, data.zip", File: "data/hotpotqa.jsonl (or hotpotqa_e.jsonl)", Format: FormatLongBench},
				{Name: "HotpotQA", Where: "the HotpotQA website (hotpotqa.github.io), dev set distractor", File: "hotpot_dev_distractor_v1.json", Format: FormatHotpotQA},
			},
			Template:     hotpotQATemplate,
			MaxNewTokens: 32,
			Metrics:      []string{"f1", "em"},
		},
		{
			Name:    "narrativeqa",
			Summary: "questions about whole books and movie scripts, answered in a few words",
			Formats: []Format{FormatLongBench, FormatNarrativeQA},
			Sources: []Source{
				{Name: "LongBench", Where: "Hugging Face dataset THUDM/LongBench, data.zip", File: "data/narrativeqa.jsonl", Format: FormatLongBench},
				{Name: "NarrativeQA", Where: "Hugging Face dataset deepmind/narrativeqa", File: "data/test-*.parquet, or a JSONL export (Dataset.to_json)", Format: FormatNarrativeQA},
			},
			Template:     narrativeQATemplate,
			MaxNewTokens: 128,
			Metrics:      []string{"f1", "rouge"},
		},
		{
			Name:         needle.Task,
			Summary:      "needle in a haystack: find secret numbers hidden at a chosen depth of a context of a chosen length (variants: single, multikey, multivalue)",
			Template:     needle.DefaultTemplateText,
			MaxNewTokens: needle.DefaultMaxNewTokens(needle.Single),
			Metrics:      []string{"needle"},
		},
	}
}

// LookupTask returns the task called name.
func LookupTask(name string) (TaskInfo, error) {
	var names []string
	for _, t := range Tasks() {
		if t.Name == name {
			return t, nil
		}
		names = append(names, t.Name)
	}
	return TaskInfo{}, fmt.Errorf("unknown task %q (known: %s)", name, strings.Join(names, ", "))
}

// DefaultTemplate parses the task's built-in template.
func (t TaskInfo) DefaultTemplate() (*prompt.Template, error) {
	return prompt.ParseTemplate("default "+t.Name, t.Template)
}

// PromptOptions adjust Prompts.
type PromptOptions struct {
	// Template replaces every task's default template.
	Template *prompt.Template
	// MaxNewTokens replaces the tasks' defaults when positive.
	MaxNewTokens int
}

// Prompts renders samples with b, each with its task's default template and
// generation budget unless opts override them. A sample of a task with no
// default (a LongBench file of another task) needs opts.Template and
// opts.MaxNewTokens.
func Prompts(b *prompt.Builder, samples []Sample, opts PromptOptions) ([]prompt.Prompt, error) {
	type defaults struct {
		tmpl   *prompt.Template
		maxNew int
	}
	byTask := map[string]defaults{}
	out := make([]prompt.Prompt, 0, len(samples))
	for _, s := range samples {
		d, ok := byTask[s.Task]
		if !ok {
			d = defaults{tmpl: opts.Template, maxNew: opts.MaxNewTokens}
			if info, err := LookupTask(s.Task); err == nil && len(info.Formats) > 0 {
				if d.tmpl == nil {
					if d.tmpl, err = info.DefaultTemplate(); err != nil {
						return nil, err
					}
				}
				if d.maxNew <= 0 {
					d.maxNew = info.MaxNewTokens
				}
			}
			if d.tmpl == nil || d.maxNew <= 0 {
				return nil, fmt.Errorf("sample %s: task %q has no default template or max new tokens; give both", s.ID, s.Task)
			}
			byTask[s.Task] = d
		}
		p, err := b.Build(d.tmpl, prompt.Input{
			Task: s.Task, SampleID: s.ID,
			Context: s.Context, Question: s.Question,
			References: s.References, MaxNewTokens: d.maxNew,
		})
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}
