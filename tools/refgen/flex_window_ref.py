#!/usr/bin/env python3
"""Independent reference for the flex attention plugin's sliding-window
mask on the (full-attention) Llama tiny checkpoints.

transformers' Llama has no sliding window, but Mistral is the same
architecture with one: the script loads each Llama checkpoint's weights
into a MistralForCausalLM with the same configuration (RoPE included) and
sliding_window=64, in fp32 with eager attention, and decodes greedily
64 tokens from the reference prompt (48 tokens), so the window cuts in
from position 64 on. It asserts first that the Mistral model without a
window reproduces reference.json's tokens, i.e. that the weights and RoPE
carried over exactly. It records the unwindowed 64-token run too, so the
test can tell that the window changed the outcome.

Run from the repository root on a machine with torch + transformers:
    python3 tools/refgen/flex_window_ref.py --tiny engine/model/testdata/tiny \
        --out plugins/attention/flex/testdata/window_reference.json
"""
import argparse
import json
import os

import torch
import transformers
from transformers import LlamaForCausalLM, MistralConfig, MistralForCausalLM

WINDOW = 64
STEPS = 64
MODELS = ["llama2", "llama3"]


def greedy(model, prompt, steps):
    out = model(torch.tensor([prompt]), use_cache=True)
    past, logits = out.past_key_values, out.logits[0, -1].float()
    tokens, margins = [], []
    for step in range(steps):
        top2 = torch.topk(logits, 2)
        margins.append(float(top2.values[0] - top2.values[1]))
        tok = int(torch.argmax(logits))
        tokens.append(tok)
        if step == steps - 1:
            break
        out = model(torch.tensor([[tok]]), past_key_values=past, use_cache=True)
        past, logits = out.past_key_values, out.logits[0, -1].float()
    return tokens, min(margins)


def as_mistral(llama, window):
    c = llama.config.to_dict()
    for k in ("architectures", "model_type", "transformers_version", "attention_bias", "mlp_bias", "pretraining_tp"):
        c.pop(k, None)
    c["sliding_window"] = window
    cfg = MistralConfig(**c)
    cfg._attn_implementation = "eager"
    m = MistralForCausalLM(cfg).eval()
    missing, unexpected = m.load_state_dict(llama.state_dict(), strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and cfg.tie_word_embeddings)]
    assert not missing and not unexpected, (missing, unexpected)
    if cfg.tie_word_embeddings:
        m.tie_weights()
    return m.to(torch.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiny", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(8)
    results = []
    for name in MODELS:
        d = os.path.join(args.tiny, name)
        with open(os.path.join(d, "reference.json")) as f:
            ref = json.load(f)
        llama = LlamaForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
        prompt = ref["prompt_ids"]
        with torch.no_grad():
            plain = as_mistral(llama, None)
            base, _ = greedy(plain, prompt, len(ref["greedy_tokens"]))
            assert base == ref["greedy_tokens"], f"{name}: Mistral copy gives {base}, reference {ref['greedy_tokens']}"
            full, full_margin = greedy(plain, prompt, STEPS)
            windowed, margin = greedy(as_mistral(llama, WINDOW), prompt, STEPS)
        first_diff = next((i for i, (a, b) in enumerate(zip(full, windowed)) if a != b), None)
        print(f"{name}: window {WINDOW}: margin {margin:.4f}, first token differing from full attention: {first_diff}")
        results.append(dict(name=name, prompt_ids=prompt, window=WINDOW, tokens=windowed, min_top2_margin=margin,
                            full_attention_tokens=full, full_attention_min_top2_margin=full_margin))
    out = dict(transformers_version=transformers.__version__, torch_version=torch.__version__,
               attn_implementation="eager", compute_dtype="float32", reference_model="MistralForCausalLM",
               models=results)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
