#!/usr/bin/env python3
"""Reference scores for the built-in evaluators' Go metrics.

Reads evaluators/testdata/metric_cases.json (cases written for longctx) and
writes evaluators/testdata/metric_reference.json with, per case:

  squad      torchmetrics.text.SQuAD: exact_match and f1 as torchmetrics
             returns them, in percent (the Go test divides by 100)
  rouge      torchmetrics.text.rouge.ROUGEScore(rouge_keys=("rouge1",
             "rouge2", "rougeL")), accumulate="best" (its default), once with
             use_stemmer=False and once with use_stemmer=True
  hotpotqa   the official hotpot_evaluate_v1.py answer rules (SQuAD
             normalisation; F1 0 when either side is yes/no/noanswer and they
             differ), written here from the published script's logic; with
             several references: EM and F1 maximised, precision and recall
             from the first reference with the highest F1
  longbench  LongBench's qa_f1_score maximised over references, as its
             eval.py scorer does, written here from the published logic
  needle     RULER's string_match_all and string_match_part for one item

and the NLTK Porter stems (the stemmer torchmetrics uses) of stem_words.

torchmetrics' ROUGE stemming needs nltk. Run on a machine with torch and
torchmetrics (the device machine; nltk travels as a folder, see
evaluators/README.md):
    python3 tools/refgen/metrics_ref.py
"""
import json
import os
import platform
import re
import string
import sys
from collections import Counter

import torch
import torchmetrics
from torchmetrics.text import SQuAD
from torchmetrics.text.rouge import ROUGEScore

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CASES = os.path.join(ROOT, "evaluators", "testdata", "metric_cases.json")
OUT = os.path.join(ROOT, "evaluators", "testdata", "metric_reference.json")


# --- SQuAD answer normalisation, as in the official SQuAD / HotpotQA /
# LongBench scripts: lowercase, drop string.punctuation, articles -> " ",
# collapse whitespace.
def normalize_answer(s):
    s = s.lower()
    exclude = set(string.punctuation)
    s = "".join(ch for ch in s if ch not in exclude)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def token_f1(pred_tokens, gold_tokens):
    common = Counter(pred_tokens) & Counter(gold_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0, 0.0, 0.0
    precision = 1.0 * num_same / len(pred_tokens)
    recall = 1.0 * num_same / len(gold_tokens)
    return (2 * precision * recall) / (precision + recall), precision, recall


def hotpot_one(prediction, ground_truth):
    """Official HotpotQA answer EM and (F1, precision, recall) for one gold."""
    p = normalize_answer(prediction)
    g = normalize_answer(ground_truth)
    em = float(p == g)
    if p in ("yes", "no", "noanswer") and p != g:
        return em, (0.0, 0.0, 0.0)
    if g in ("yes", "no", "noanswer") and p != g:
        return em, (0.0, 0.0, 0.0)
    return em, token_f1(p.split(), g.split())


def hotpot(prediction, refs):
    em = max(hotpot_one(prediction, r)[0] for r in refs)
    best = None
    for r in refs:
        f1 = hotpot_one(prediction, r)[1]
        if best is None or f1[0] > best[0]:
            best = f1
    return {"em": em, "f1": best[0], "precision": best[1], "recall": best[2]}


def longbench_qa_f1(prediction, refs):
    score = 0.0
    for r in refs:
        f1, _, _ = token_f1(normalize_answer(prediction).split(), normalize_answer(r).split())
        score = max(score, f1)
    return score


def needle(prediction, refs):
    found = [1.0 if r.lower() in prediction.lower() else 0.0 for r in refs]
    return {"string_match_all": sum(found) / len(found), "string_match_part": max(found)}


def squad(case):
    metric = SQuAD()
    preds = [{"prediction_text": case["prediction"], "id": case["id"]}]
    target = [{"answers": {"answer_start": [0] * len(case["references"]), "text": case["references"]},
               "id": case["id"]}]
    out = metric(preds, target)
    return {k: float(v) for k, v in out.items()}


def rouge(case, stem):
    metric = ROUGEScore(use_stemmer=stem, rouge_keys=("rouge1", "rouge2", "rougeL"))
    assert metric.accumulate == "best"
    out = metric(case["prediction"], list(case["references"]))
    return {k: float(v) for k, v in sorted(out.items())}


def main():
    import nltk
    from nltk.stem.porter import PorterStemmer

    data = json.load(open(CASES, encoding="utf-8"))
    results = []
    for case in data["cases"]:
        refs = case["references"]
        results.append({
            "id": case["id"],
            "squad": squad(case),
            "rouge": rouge(case, stem=False),
            "rouge_stem": rouge(case, stem=True),
            "hotpotqa": hotpot(case["prediction"], refs),
            "longbench_qa_f1": longbench_qa_f1(case["prediction"], refs),
            "needle": needle(case["prediction"], refs),
        })
    stemmer = PorterStemmer()
    stems = {w: stemmer.stem(w) for w in data["stem_words"]}
    out = {
        "generated_by": "tools/refgen/metrics_ref.py",
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "torchmetrics": torchmetrics.__version__, "nltk": nltk.__version__},
        "cases": results,
        "stems": stems,
    }
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(results)} cases and {len(stems)} stems to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
