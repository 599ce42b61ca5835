package tokenizer

import (
	"strings"
	"testing"
)

// minimalModel is a valid BPE model section for building test files.
const minimalModel = `{"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}`

// withSections returns a tokenizer.json with the given top-level sections
// (raw JSON values) and minimalModel unless a model is given.
func withSections(sections map[string]string) string {
	if _, ok := sections["model"]; !ok {
		sections["model"] = minimalModel
	}
	var parts []string
	for k, v := range sections {
		parts = append(parts, `"`+k+`": `+v)
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// parseErrorCases are malformed files and the error each must give; the
// fuzz test also starts from them.
var parseErrorCases = []struct {
	name string
	json string
	want string // substring of the error
}{
	{"not json", `tokenizer`, "tokenizer.json: expected a JSON object"},
	{"array", `[1, 2]`, "tokenizer.json: expected a JSON object"},
	{"no model", `{"version": "1.0"}`, "model: missing"},
	{"null model", `{"model": null}`, "model: missing"},
	{"bad version", withSections(map[string]string{"version": `"2.0"`}), `version: unsupported "2.0"`},
	{"model not object", withSections(map[string]string{"model": `"BPE"`}), "model: expected a JSON object"},
	{"other model", withSections(map[string]string{"model": `{"type": "WordPiece", "vocab": {}}`}), `model.type: unsupported "WordPiece"`},
	{"untyped model without merges", withSections(map[string]string{"model": `{"vocab": {}}`}), "model.type: missing"},
	{"no vocab", withSections(map[string]string{"model": `{"type": "BPE", "merges": []}`}), "model.vocab: missing"},
	{"vocab list", withSections(map[string]string{"model": `{"type": "BPE", "vocab": [1], "merges": []}`}), "model.vocab: expected an object"},
	{"vocab string id", withSections(map[string]string{"model": `{"type": "BPE", "vocab": {"a": "0"}, "merges": []}`}), "model.vocab: expected an object"},
	{"negative id", withSections(map[string]string{"model": `{"type": "BPE", "vocab": {"a": -1}, "merges": []}`}), `model.vocab["a"]: id -1`},
	{"fractional id", withSections(map[string]string{"model": `{"type": "BPE", "vocab": {"a": 1.5}, "merges": []}`}), "model.vocab: expected an object of token: integer id"},
	{"huge id", withSections(map[string]string{"model": `{"type": "BPE", "vocab": {"a": 4294967296}, "merges": []}`}), `model.vocab["a"]`},
	{"duplicate id", withSections(map[string]string{"model": `{"type": "BPE", "vocab": {"a": 0, "b": 0}, "merges": []}`}), `model.vocab: id 0 is used by both "a" and "b"`},
	{"no merges", withSections(map[string]string{"model": `{"type": "BPE", "vocab": {"a": 0}}`}), "model.merges: missing"},
	{"merges not list", withSections(map[string]string{"model": `{"type": "BPE", "vocab": {"a": 0}, "merges": 5}`}), "model.merges: expected a list"},
	{"merge unknown left", withSections(map[string]string{"model": `{"type": "BPE", "vocab": {"a": 0}, "merges": ["x a"]}`}), `model.merges[0]: token "x" is not in the vocabulary`},
	{"merge unknown right", withSections(map[string]string{"model": `{"type": "BPE", "vocab": {"a": 0}, "merges": [["a", "y"]]}`}), `model.merges[0]: token "y" is not in the vocabulary`},
	{"merge result unknown", withSections(map[string]string{"model": `{"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}`}), `model.merges[0]: merged token "ab" is not in the vocabulary`},
	{"merge three parts", withSections(map[string]string{"model": `{"type": "BPE", "vocab": {"a": 0}, "merges": ["a a a"]}`}), `model.merges[0]: "a a a" is not two tokens`},
	{"merge one part", withSections(map[string]string{"model": `{"type": "BPE", "vocab": {"a": 0}, "merges": ["aa"]}`}), `model.merges[0]: "aa" is not two tokens`},
	{"merge triple", withSections(map[string]string{"model": `{"type": "BPE", "vocab": {"a": 0}, "merges": [["a", "a", "a"]]}`}), "model.merges[0]: expected a pair of tokens, got 3"},
	{"merge prefix too long", withSections(map[string]string{"model": `{"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"], "continuing_subword_prefix": "##"}`}), `model.merges[0]: cannot drop continuing_subword_prefix "##" from token "b"`},
	{"dropout", withSections(map[string]string{"model": `{"type": "BPE", "vocab": {"a": 0}, "merges": [], "dropout": 0.1}`}), "model.dropout: BPE dropout 0.1 is not supported"},
	{"bool as string", withSections(map[string]string{"model": `{"type": "BPE", "vocab": {"a": 0}, "merges": [], "byte_fallback": "yes"}`}), "model.byte_fallback: expected true or false"},
	{"unk not string", withSections(map[string]string{"model": `{"type": "BPE", "vocab": {"a": 0}, "merges": [], "unk_token": 3}`}), "model.unk_token: expected a string"},
	{"normalizer without type", withSections(map[string]string{"normalizer": `{}`}), "normalizer.type: missing"},
	{"unknown normalizer", withSections(map[string]string{"normalizer": `{"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Precompiled"}]}`}), `normalizer.normalizers[1].type: unsupported "Precompiled"`},
	{"normalizers not list", withSections(map[string]string{"normalizer": `{"type": "Sequence", "normalizers": {}}`}), "normalizer.normalizers: expected a list"},
	{"prepend without text", withSections(map[string]string{"normalizer": `{"type": "Prepend"}`}), "normalizer.prepend: missing"},
	{"unknown pre-tokenizer", withSections(map[string]string{"pre_tokenizer": `{"type": "Sequence", "pretokenizers": [{"type": "Foo"}]}`}), `pre_tokenizer.pretokenizers[0].type: unsupported "Foo"`},
	{"bad behavior", withSections(map[string]string{"pre_tokenizer": `{"type": "Split", "pattern": {"String": " "}, "behavior": "Sideways"}`}), `pre_tokenizer.behavior: unsupported "Sideways"`},
	{"bad regex", withSections(map[string]string{"pre_tokenizer": `{"type": "Split", "pattern": {"Regex": "(a"}, "behavior": "Isolated"}`}), "pre_tokenizer.pattern.Regex: compiling regex"},
	{"pattern without kind", withSections(map[string]string{"pre_tokenizer": `{"type": "Split", "pattern": {"Glob": "*"}, "behavior": "Isolated"}`}), `pre_tokenizer.pattern: expected {"String": ...} or {"Regex": ...}`},
	{"bad prepend scheme", withSections(map[string]string{"pre_tokenizer": `{"type": "Metaspace", "replacement": "_", "prepend_scheme": "sometimes"}`}), `pre_tokenizer.prepend_scheme: unsupported "sometimes"`},
	{"long replacement", withSections(map[string]string{"pre_tokenizer": `{"type": "Metaspace", "replacement": "__"}`}), "pre_tokenizer.replacement: expected a single character"},
	{"unknown decoder", withSections(map[string]string{"decoder": `{"type": "Sequence", "decoders": [{"type": "Fuse"}, {"type": "WordPiece"}]}`}), `decoder.decoders[1].type: unsupported "WordPiece"`},
	{"strip content", withSections(map[string]string{"decoder": `{"type": "Strip", "content": "", "start": 1, "stop": 0}`}), "decoder.content: expected a single character"},
	{"strip negative", withSections(map[string]string{"decoder": `{"type": "Strip", "content": " ", "start": -1, "stop": 0}`}), "start and stop must not be negative"},
	{"strip fractional", withSections(map[string]string{"decoder": `{"type": "Strip", "content": " ", "start": 1.5, "stop": 0}`}), "decoder.start: expected an integer"},
	{"unknown post-processor", withSections(map[string]string{"post_processor": `{"type": "Magic"}`}), `post_processor.type: unsupported "Magic"`},
	{"template missing special", withSections(map[string]string{"post_processor": `{"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}], "special_tokens": {}}`}), `post_processor.single[0].SpecialToken.id: special token "<s>" is not in post_processor.special_tokens`},
	{"template sequence B", withSections(map[string]string{"post_processor": `{"type": "TemplateProcessing", "single": [{"Sequence": {"id": "B", "type_id": 0}}], "special_tokens": {}}`}), "can only use sequence A"},
	{"template bad piece", withSections(map[string]string{"post_processor": `{"type": "TemplateProcessing", "single": [{"Other": {}}], "special_tokens": {}}`}), "post_processor.single[0]: expected a Sequence or a SpecialToken"},
	{"template bad ids", withSections(map[string]string{"post_processor": `{"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>"}}], "special_tokens": {"<s>": {"ids": [-1]}}}`}), `post_processor.special_tokens.<s>.ids: expected a list of token ids`},
	{"bert pair", withSections(map[string]string{"post_processor": `{"type": "BertProcessing", "sep": ["[SEP]", 2], "cls": ["[CLS]"]}`}), `post_processor.cls: expected a ["token", id] pair`},
	{"template unknown id", withSections(map[string]string{"post_processor": `{"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>"}}, {"Sequence": {"id": "A"}}], "special_tokens": {"<s>": {"ids": [7]}}}`}), "post_processor: adds token id 7, which is not in the vocabulary"},
	{"added not list", withSections(map[string]string{"added_tokens": `{}`}), "added_tokens: expected a list"},
	{"added without content", withSections(map[string]string{"added_tokens": `[{"id": 5, "special": true}]`}), "added_tokens[0].content: missing"},
	{"added bad flag", withSections(map[string]string{"added_tokens": `[{"id": 5, "content": "<x>", "lstrip": 1}]`}), "added_tokens[0].lstrip: expected true or false"},
	{"added bad id", withSections(map[string]string{"added_tokens": `[{"id": "5", "content": "<x>"}]`}), "added_tokens[0].id: expected an integer"},
}

func TestParseErrors(t *testing.T) {
	for _, tt := range parseErrorCases {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := Parse([]byte(tt.json))
			if err == nil {
				t.Fatalf("Parse succeeded (%T), want error containing %q", tok, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestParseAcceptsMinimalFile(t *testing.T) {
	tok, err := Parse([]byte(withSections(map[string]string{})))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := tok.Encode("aab", true)
	if err != nil {
		t.Fatal(err)
	}
	// Merge "a b" gives ab (id 2) after the first a (id 0).
	if !equalInts(ids, []int{0, 2}) {
		t.Fatalf("Encode(aab) = %v, want [0 2]", ids)
	}
	if got, _ := tok.Decode(ids, false); got != "a ab" {
		t.Fatalf("Decode without decoder = %q, want tokens joined by spaces", got)
	}
}

func TestUnknownTokenMissingFromVocabulary(t *testing.T) {
	tok, err := Parse([]byte(withSections(map[string]string{"model": `{"type": "BPE", "vocab": {"a": 0}, "merges": [], "unk_token": "<unk>"}`})))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.Encode("a", false); err != nil {
		t.Fatalf("text without unknown characters: %v", err)
	}
	_, err = tok.Encode("ax", false)
	if err == nil || !strings.Contains(err.Error(), `unk_token "<unk>" is not in the model vocabulary`) {
		t.Fatalf("Encode(ax) error = %v, want one naming the missing unk_token", err)
	}
}

func TestEncodeRejectsInvalidUTF8(t *testing.T) {
	tok, err := Parse([]byte(withSections(map[string]string{})))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.Encode("a\xffb", false); err == nil || !strings.Contains(err.Error(), "not valid UTF-8") {
		t.Fatalf("error = %v, want invalid UTF-8", err)
	}
}

func TestDecodeRejectsNegativeIDs(t *testing.T) {
	tok, err := Parse([]byte(withSections(map[string]string{})))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.Decode([]int{0, -1}, false); err == nil {
		t.Fatal("Decode accepted a negative id")
	}
	// Ids that name no token are skipped, as HF does.
	if got, err := tok.Decode([]int{0, 99, 1}, false); err != nil || got != "a b" {
		t.Fatalf("Decode with unknown id = %q, %v; want %q", got, err, "a b")
	}
}
