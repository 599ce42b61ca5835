package tokenizer

import (
	"encoding/json"
	"fmt"
	"math"
)

// postProcessor adds the special tokens a model expects around a sequence
// (a BOS token, say) when the caller asks for them.
type postProcessor interface {
	process(ids []int, addSpecial bool) []int
}

// templateProcessor is HF's TemplateProcessing for single sequences: a list
// of fixed id runs and places for the sequence.
type templateProcessor struct {
	parts []templatePart
}

type templatePart struct {
	ids      []int
	sequence bool
}

func (p templateProcessor) process(ids []int, addSpecial bool) []int {
	if !addSpecial {
		return ids
	}
	var out []int
	for _, part := range p.parts {
		if part.sequence {
			out = append(out, ids...)
		} else {
			out = append(out, part.ids...)
		}
	}
	return out
}

// passThroughProcessor stands for post-processors that change offsets only
// (ByteLevel) and so leave the ids alone.
type passThroughProcessor struct{}

func (passThroughProcessor) process(ids []int, _ bool) []int { return ids }

type sequenceProcessor []postProcessor

func (seq sequenceProcessor) process(ids []int, addSpecial bool) []int {
	for _, p := range seq {
		ids = p.process(ids, addSpecial)
	}
	return ids
}

// buildPostProcessor reads a post_processor section.
func buildPostProcessor(o *jsonObject) (postProcessor, error) {
	typ, err := o.typeName()
	if err != nil {
		return nil, err
	}
	switch typ {
	case "ByteLevel":
		return passThroughProcessor{}, nil
	case "TemplateProcessing":
		return buildTemplate(o)
	case "BertProcessing", "RobertaProcessing":
		// Both wrap a single sequence as cls A sep.
		cls, err := tokenIDPair(o, "cls")
		if err != nil {
			return nil, err
		}
		sep, err := tokenIDPair(o, "sep")
		if err != nil {
			return nil, err
		}
		return templateProcessor{parts: []templatePart{{ids: []int{cls}}, {sequence: true}, {ids: []int{sep}}}}, nil
	case "Sequence":
		list, err := o.objectList("processors")
		if err != nil {
			return nil, err
		}
		seq := make(sequenceProcessor, len(list))
		for i, item := range list {
			if seq[i], err = buildPostProcessor(item); err != nil {
				return nil, err
			}
		}
		return seq, nil
	}
	return nil, o.unsupported(typ)
}

// tokenIDPair reads a ["token", id] pair and returns the id.
func tokenIDPair(o *jsonObject, key string) (int, error) {
	var pair []json.RawMessage
	ok, err := o.decode(key, &pair, `a ["token", id] pair`)
	if err != nil {
		return 0, err
	}
	var name string
	var id uint32
	if !ok || len(pair) != 2 || json.Unmarshal(pair[0], &name) != nil || json.Unmarshal(pair[1], &id) != nil || id > math.MaxInt32 {
		return 0, fmt.Errorf("%s: expected a [\"token\", id] pair", o.at(key))
	}
	return int(id), nil
}

// buildTemplate reads TemplateProcessing's single-sequence template; the
// pair template is not used by the harness.
func buildTemplate(o *jsonObject) (postProcessor, error) {
	specials, err := o.reqObject("special_tokens")
	if err != nil {
		return nil, err
	}
	pieces, err := o.objectList("single")
	if err != nil {
		return nil, err
	}
	var p templateProcessor
	for _, pc := range pieces {
		if seq, err := pc.optObject("Sequence"); err != nil {
			return nil, err
		} else if seq != nil {
			id, err := seq.reqString("id")
			if err != nil {
				return nil, err
			}
			if id != "A" {
				return nil, fmt.Errorf("%s: a single-sequence template can only use sequence A, got %q", seq.at("id"), id)
			}
			p.parts = append(p.parts, templatePart{sequence: true})
			continue
		}
		st, err := pc.optObject("SpecialToken")
		if err != nil {
			return nil, err
		}
		if st == nil {
			return nil, fmt.Errorf("%s: expected a Sequence or a SpecialToken", pc.path)
		}
		name, err := st.reqString("id")
		if err != nil {
			return nil, err
		}
		entry, err := specials.optObject(name)
		if err != nil {
			return nil, err
		}
		if entry == nil {
			return nil, fmt.Errorf("%s: special token %q is not in %s", st.at("id"), name, specials.path)
		}
		var ids []uint32
		if ok, err := entry.decode("ids", &ids, "a list of token ids"); err != nil {
			return nil, err
		} else if !ok {
			return nil, fmt.Errorf("%s: missing", entry.at("ids"))
		}
		part := templatePart{ids: make([]int, len(ids))}
		for i, id := range ids {
			if id > math.MaxInt32 {
				return nil, fmt.Errorf("%s: id %d out of range", entry.at("ids"), id)
			}
			part.ids[i] = int(id)
		}
		p.parts = append(p.parts, part)
	}
	return p, nil
}
