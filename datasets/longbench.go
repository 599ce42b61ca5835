package datasets

import "strings"

// longBenchRecord is one line of a LongBench data file (THUDM/LongBench,
// data/<task>.jsonl). Pointers tell missing fields from empty ones.
type longBenchRecord struct {
	Input   *string    `json:"input"`
	Context *string    `json:"context"`
	Answers *[]*string `json:"answers"`
	ID      *string    `json:"_id"`
	Dataset *string    `json:"dataset"`
}

// parseLongBench turns one LongBench JSONL line into a Sample.
func parseLongBench(line []byte) (Sample, error) {
	var r longBenchRecord
	if err := decodeJSON(line, &r); err != nil {
		return Sample{}, err
	}
	id, err := requireString("_id", r.ID, false)
	if err != nil {
		return Sample{}, err
	}
	s := Sample{ID: id}
	task, err := requireString("dataset", r.Dataset, false)
	if err != nil {
		return s, err
	}
	// LongBench-E files name their task "<task>_e"; the task is the same.
	s.Task = strings.TrimSuffix(task, "_e")
	if s.Context, err = requireString("context", r.Context, false); err != nil {
		return s, err
	}
	if s.Question, err = requireString("input", r.Input, false); err != nil {
		return s, err
	}
	var answers []*string
	if r.Answers != nil {
		answers = *r.Answers
	}
	if s.References, err = requireAnswers("answers", answers, r.Answers != nil); err != nil {
		return s, err
	}
	return s, nil
}
