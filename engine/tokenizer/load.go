package tokenizer

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// Load reads a Hugging Face tokenizer.json, given its path or the directory
// that holds it.
func Load(path string) (*Tokenizer, error) {
	if info, err := os.Stat(path); err == nil && info.IsDir() {
		path = filepath.Join(path, "tokenizer.json")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	t, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", path, err)
	}
	return t, nil
}

// Parse builds a tokenizer from the contents of a tokenizer.json. Truncation
// and padding settings are ignored: the harness controls sequence lengths
// itself.
func Parse(data []byte) (*Tokenizer, error) {
	root, err := parseObject("", data)
	if err != nil {
		return nil, err
	}
	if v, ok, err := root.optString("version"); err != nil {
		return nil, err
	} else if ok && v != "1.0" {
		return nil, fmt.Errorf("version: unsupported %q", v)
	}
	t := &Tokenizer{}
	if err := component(root, "normalizer", buildNormalizer, &t.normalizer); err != nil {
		return nil, err
	}
	if err := component(root, "pre_tokenizer", buildPreTokenizer, &t.preTokenizer); err != nil {
		return nil, err
	}
	modelObj, err := root.reqObject("model")
	if err != nil {
		return nil, err
	}
	if t.model, err = buildBPE(modelObj); err != nil {
		return nil, err
	}
	if err := component(root, "decoder", buildDecoder, &t.decoder); err != nil {
		return nil, err
	}
	if err := component(root, "post_processor", buildPostProcessor, &t.post); err != nil {
		return nil, err
	}
	tokens, err := parseAddedTokens(root)
	if err != nil {
		return nil, err
	}
	if t.added, err = newAddedVocab(tokens, t.model, t.normalizer); err != nil {
		return nil, fmt.Errorf("added_tokens: %w", err)
	}
	if err := t.finish(); err != nil {
		return nil, err
	}
	return t, nil
}

// component builds an optional top-level section into dst; an absent or
// null section leaves dst nil.
func component[T any](root *jsonObject, key string, build func(*jsonObject) (T, error), dst *T) error {
	obj, err := root.optObject(key)
	if err != nil || obj == nil {
		return err
	}
	*dst, err = build(obj)
	return err
}

// parseAddedTokens reads the added_tokens list. Each entry's id is checked
// for type only: HF assigns the ids itself (see newAddedVocab).
func parseAddedTokens(root *jsonObject) ([]addedToken, error) {
	raw := root.get("added_tokens")
	if raw == nil {
		return nil, nil
	}
	list, err := root.objectList("added_tokens")
	if err != nil {
		return nil, err
	}
	out := make([]addedToken, len(list))
	for i, o := range list {
		t := &out[i]
		if t.content, err = o.reqString("content"); err != nil {
			return nil, err
		}
		if _, err = o.intOr("id", 0); err != nil {
			return nil, err
		}
		for _, f := range []struct {
			key string
			dst *bool
			def bool
		}{
			{"special", &t.special, false},
			{"single_word", &t.singleWord, false},
			{"lstrip", &t.lstrip, false},
			{"rstrip", &t.rstrip, false},
		} {
			if *f.dst, err = o.boolOr(f.key, f.def); err != nil {
				return nil, err
			}
		}
		// When the flag is absent, special tokens match the raw text, as HF's
		// AddedToken::from does.
		if t.normalized, err = o.boolOr("normalized", !t.special); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// finish checks that the post-processor only adds known tokens and computes
// the derived tables once the parts are built.
func (t *Tokenizer) finish() error {
	if t.post != nil {
		for _, id := range t.post.process(nil, true) {
			if _, ok := t.IDToToken(id); !ok {
				return fmt.Errorf("post_processor: adds token id %d, which is not in the vocabulary", id)
			}
		}
	}
	maxID := -1
	for id := range t.model.vocabR {
		maxID = max(maxID, int(id))
	}
	for id, tok := range t.added.byID {
		maxID = max(maxID, id)
		if t.added.special[tok.content] {
			t.specialIDs = append(t.specialIDs, id)
		}
	}
	t.vocabSize = maxID + 1
	sort.Ints(t.specialIDs)
	return nil
}
