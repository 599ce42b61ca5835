// Package builtin holds the evaluators that ship with longctx. Each one is a
// descriptor plus a scoring function over evaluators/metrics; the main
// packages in the subdirectories (built with GOOS=wasip1 GOARCH=wasm) only
// call Main with their name, so the WASM modules and the native tests run
// the same code.
package builtin

import (
	"fmt"
	"os"
	"sort"

	"github.com/longctx/longctx/evaluators/contract"
	"github.com/longctx/longctx/evaluators/metrics"
	"github.com/longctx/longctx/evaluators/sdk"
)

// Version is the version every built-in evaluator reports; bump it when a
// score's meaning changes.
const Version = "1.0.0"

// Evaluator is one built-in: its descriptor and a constructor for its
// scoring function (a scorer may keep caches, so each process or goroutine
// makes its own).
type Evaluator struct {
	Descriptor contract.Descriptor
	New        func() sdk.ScoreFunc
}

// withScorer gives each scoring function its own metrics.Scorer, whose
// buffers and stem cache then live as long as the module.
func withScorer(f func(s *metrics.Scorer, it contract.Item, out []float64) error) func() sdk.ScoreFunc {
	return func() sdk.ScoreFunc {
		s := metrics.NewScorer()
		return func(it contract.Item, out []float64) error { return f(s, it, out) }
	}
}

func higher(name, description string) contract.ScoreSpec {
	return contract.ScoreSpec{Name: name, HigherIsBetter: true, Description: description}
}

func describe(name, description string, scores ...contract.ScoreSpec) contract.Descriptor {
	return contract.Descriptor{
		Contract: contract.Version, Name: name, Version: Version,
		Description: description, Scores: scores,
	}
}

var rougeScores = []contract.ScoreSpec{
	higher("rouge1_precision", "unigram precision"),
	higher("rouge1_recall", "unigram recall"),
	higher("rouge1_fmeasure", "unigram F-measure"),
	higher("rouge2_precision", "bigram precision"),
	higher("rouge2_recall", "bigram recall"),
	higher("rouge2_fmeasure", "bigram F-measure"),
	higher("rougeL_precision", "longest-common-subsequence precision"),
	higher("rougeL_recall", "longest-common-subsequence recall"),
	higher("rougeL_fmeasure", "longest-common-subsequence F-measure"),
}

func rougeScore(stem bool) func() sdk.ScoreFunc {
	return withScorer(func(sc *metrics.Scorer, it contract.Item, out []float64) error {
		s, err := sc.ROUGE(it.Prediction, it.References, stem)
		// In the order of rougeScores.
		out[0], out[1], out[2] = s.R1.Precision, s.R1.Recall, s.R1.F
		out[3], out[4], out[5] = s.R2.Precision, s.R2.Recall, s.R2.F
		out[6], out[7], out[8] = s.RL.Precision, s.RL.Recall, s.RL.F
		return err
	})
}

// All lists the built-in evaluators by name.
var All = map[string]Evaluator{
	"squad": {
		Descriptor: describe("squad",
			"SQuAD exact match and token F1 (torchmetrics.text.SQuAD semantics, as fractions), max over references",
			higher("em", "normalised prediction equals a normalised reference"),
			higher("f1", "token-overlap F1 after SQuAD normalisation")),
		New: withScorer(func(sc *metrics.Scorer, it contract.Item, out []float64) error {
			s, err := sc.SQuAD(it.Prediction, it.References)
			out[0], out[1] = s.ExactMatch, s.F1
			return err
		}),
	},
	"hotpotqa": {
		Descriptor: describe("hotpotqa",
			"HotpotQA answer EM/F1 with the official yes/no/noanswer rule, max over references",
			higher("em", "normalised prediction equals a normalised reference"),
			higher("f1", "token F1; 0 when either side is yes/no/noanswer and they differ"),
			higher("precision", "token precision against the best-F1 reference"),
			higher("recall", "token recall against the best-F1 reference")),
		New: withScorer(func(sc *metrics.Scorer, it contract.Item, out []float64) error {
			s, err := sc.HotpotQA(it.Prediction, it.References)
			out[0], out[1], out[2], out[3] = s.ExactMatch, s.F1, s.Precision, s.Recall
			return err
		}),
	},
	"longbench_qa_f1": {
		Descriptor: describe("longbench_qa_f1",
			"LongBench qa_f1_score (narrativeqa, qasper, multifieldqa_en, hotpotqa, 2wikimqa, musique), max over references",
			higher("qa_f1", "token F1 after SQuAD normalisation; 0 when no token is shared")),
		New: withScorer(func(sc *metrics.Scorer, it contract.Item, out []float64) error {
			var err error
			out[0], err = sc.LongBenchQAF1(it.Prediction, it.References)
			return err
		}),
	},
	"rouge": {
		Descriptor: describe("rouge",
			"ROUGE-1/2/L precision, recall and F-measure (rouge-score tokenisation, torchmetrics best-over-references), no stemming",
			rougeScores...),
		New: rougeScore(false),
	},
	"rouge_stem": {
		Descriptor: describe("rouge_stem",
			"ROUGE-1/2/L as the rouge evaluator, with Porter stemming of tokens longer than 3 characters",
			rougeScores...),
		New: rougeScore(true),
	},
	"needle": {
		Descriptor: describe("needle",
			"Needle retrieval: case-insensitive substring match of the needle values (the references) in the prediction",
			higher("string_match_all", "fraction of needle values found (RULER string_match_all)"),
			higher("string_match_part", "1 if any needle value is found (RULER string_match_part)")),
		New: withScorer(func(sc *metrics.Scorer, it contract.Item, out []float64) error {
			s, err := sc.Needle(it.Prediction, it.References)
			out[0], out[1] = s.All, s.Part
			return err
		}),
	},
}

// Names returns the built-in evaluators' names, sorted.
func Names() []string {
	names := make([]string, 0, len(All))
	for n := range All {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Main runs the named built-in as a WASI module; its main package calls it.
func Main(name string) {
	ev, ok := All[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "no built-in evaluator %q\n", name)
		os.Exit(2)
	}
	sdk.Main(ev.Descriptor, ev.New())
}
