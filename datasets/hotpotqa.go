package datasets

import (
	"encoding/json"
	"fmt"
	"strings"
)

// hotpotRecord is one question of HotpotQA's official JSON
// (hotpot_dev_distractor_v1.json and friends).
type hotpotRecord struct {
	ID              *string            `json:"_id"`
	Question        *string            `json:"question"`
	Answer          *string            `json:"answer"`
	SupportingFacts *[]json.RawMessage `json:"supporting_facts"`
	Context         *[]json.RawMessage `json:"context"`
	Type            *string            `json:"type"`
	Level           *string            `json:"level"`
}

// parseHotpotQA turns one HotpotQA question object into a Sample. The
// context paragraphs become numbered passages in file order, each with its
// title, laid out as in LongBench's hotpotqa file so that both sources give
// the model the same kind of context.
func parseHotpotQA(data []byte) (Sample, error) {
	var r hotpotRecord
	if err := decodeJSON(data, &r); err != nil {
		return Sample{}, err
	}
	id, err := requireString("_id", r.ID, false)
	if err != nil {
		return Sample{}, err
	}
	s := Sample{ID: id, Task: "hotpotqa"}
	if s.Question, err = requireString("question", r.Question, false); err != nil {
		return s, err
	}
	answer, err := requireString("answer", r.Answer, false)
	if err != nil {
		return s, err
	}
	s.References = []string{answer}
	if r.SupportingFacts != nil {
		for i, raw := range *r.SupportingFacts {
			var fact []json.RawMessage
			var title string
			var sent int
			if json.Unmarshal(raw, &fact) != nil || len(fact) != 2 ||
				json.Unmarshal(fact[0], &title) != nil || json.Unmarshal(fact[1], &sent) != nil || sent < 0 {
				return s, fmt.Errorf("field %q: element %d is not a [title, sentence index] pair", "supporting_facts", i)
			}
		}
	}
	if r.Context == nil {
		return s, fmt.Errorf("field %q is missing or null", "context")
	}
	if len(*r.Context) == 0 {
		return s, fmt.Errorf("field %q has no paragraphs", "context")
	}
	var b strings.Builder
	for i, raw := range *r.Context {
		var pair []json.RawMessage
		var title string
		var sentences []string
		if json.Unmarshal(raw, &pair) != nil || len(pair) != 2 ||
			json.Unmarshal(pair[0], &title) != nil || json.Unmarshal(pair[1], &sentences) != nil {
			return s, fmt.Errorf("field %q: paragraph %d is not a [title, [sentences...]] pair", "context", i)
		}
		if i > 0 {
			b.WriteString("\n\n")
		}
		// Sentences after the first carry their own leading space.
		fmt.Fprintf(&b, "Passage %d:\n%s\n%s", i+1, title, strings.TrimSpace(strings.Join(sentences, "")))
	}
	s.Context = b.String()
	return s, nil
}
