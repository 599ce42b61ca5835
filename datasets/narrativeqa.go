package datasets

import (
	"fmt"
	"hash/fnv"
)

// narrativeQARecord is one row of deepmind/narrativeqa as Hugging Face
// exports it (Dataset.to_json): the full story in document.text, one
// question and its answers. Fields the task does not use are not read.
type narrativeQARecord struct {
	Document *struct {
		ID   *string `json:"id"`
		Text *string `json:"text"`
	} `json:"document"`
	Question *struct {
		Text *string `json:"text"`
	} `json:"question"`
	Answers *[]*struct {
		Text *string `json:"text"`
	} `json:"answers"`
}

// narrativeQAFields are the fields of one NarrativeQA row, whichever file
// format they came from.
type narrativeQAFields struct {
	docID, docText, question *string
	answers                  []*string
	answersPresent           bool
}

func parseNarrativeQAJSON(line []byte) (narrativeQAFields, error) {
	var r narrativeQARecord
	if err := decodeJSON(line, &r); err != nil {
		return narrativeQAFields{}, err
	}
	var f narrativeQAFields
	if r.Document == nil {
		return f, fmt.Errorf("field %q is missing or null", "document")
	}
	f.docID, f.docText = r.Document.ID, r.Document.Text
	if r.Question == nil {
		return f, fmt.Errorf("field %q is missing or null", "question")
	}
	f.question = r.Question.Text
	if r.Answers != nil {
		f.answersPresent = true
		for _, a := range *r.Answers {
			if a == nil {
				f.answers = append(f.answers, nil)
				continue
			}
			f.answers = append(f.answers, a.Text)
		}
	}
	return f, nil
}

// narrativeQAState turns rows into samples. The dataset repeats each story
// for every question about it, so stories are shared by id to keep one
// copy in memory; question ids are made unique within the file.
type narrativeQAState struct {
	docs map[string]string
	ids  map[string]int
}

func newNarrativeQAState() *narrativeQAState {
	return &narrativeQAState{docs: map[string]string{}, ids: map[string]int{}}
}

func (st *narrativeQAState) sample(f narrativeQAFields) (Sample, error) {
	docID, err := requireString("document.id", f.docID, false)
	if err != nil {
		return Sample{}, err
	}
	text, err := requireString("document.text", f.docText, false)
	if err != nil {
		return Sample{}, err
	}
	question, err := requireString("question.text", f.question, false)
	if err != nil {
		return Sample{}, err
	}
	refs, err := requireAnswers("answers.text", f.answers, f.answersPresent)
	if err != nil {
		return Sample{}, err
	}
	if prev, ok := st.docs[docID]; ok && prev == text {
		text = prev
	} else if !ok {
		st.docs[docID] = text
	}
	// NarrativeQA has no question ids: derive one that survives filtering
	// and reordering of the file, and number repeats of the same question.
	h := fnv.New64a()
	h.Write([]byte(question))
	id := fmt.Sprintf("%s:%08x", docID, h.Sum64()>>32)
	st.ids[id]++
	if n := st.ids[id]; n > 1 {
		id = fmt.Sprintf("%s~%d", id, n)
	}
	return Sample{ID: id, Task: "narrativeqa", Context: text, Question: question, References: refs}, nil
}
