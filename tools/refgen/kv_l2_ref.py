#!/usr/bin/env python3
"""Reference outputs of L2-norm KV-cache compression (Devoto et al., 2024;
kvpress KnormPress) on the tiny checkpoints, with transformers.

Semantics (what the Go engine's kvpolicy + the kvcache/l2 plugin must
reproduce token for token):
  * prefill the prompt of reference.json in fp32 with eager attention; the
    first generated token comes from the prefill logits;
  * when=prefill: then, for every layer not in skip_layers and every KV head
    of n cached tokens, keep floor(n * (1 - ratio)) tokens: the protected
    ones (the first `sink` and last `window` of the head) and, among the
    others, those with the lowest fp32 L2 norm of the post-RoPE key (as the
    transformers cache stores it), ties going to the earlier token; kept
    tokens stay in their original order and keep their positions;
  * when=decode: after the prefill and after every decode step's forward
    pass, every head holding more than `budget` tokens is cut back to
    `budget` the same way (the highest-norm unprotected keys go);
  * new tokens continue at the original length;
  * greedy decoding of 24 tokens.

Eviction is realised without touching transformers' cache layout: the
cache keeps every token, and an evicted token of a (layer, KV head) is
masked out of every later attention of the query heads reading that KV
head, by wrapping each family's eager_attention_forward. Softmax weights of
masked keys are exactly zero, so this equals removal, and positions
continue at the original length by construction. The script asserts that
with nothing evicted the wrapped model reproduces reference.json's tokens.

Run on a machine with torch + transformers (the device machine), from the
repository root:
    python3 tools/refgen/kv_l2_ref.py --tiny engine/model/testdata/tiny \
        --out plugins/kvcache/l2/testdata/l2_reference.json
"""
import argparse
import importlib
import json
import math
import os

import torch
import transformers
from transformers import AutoModelForCausalLM, DynamicCache

STEPS = 24
FAMILY_MODULES = ["llama", "mistral", "qwen2", "qwen3"]

# (when, ratio, budget, skip_layers, sink, window)
CASES = [
    ("prefill", 0.25, 0, [], 0, 0),
    ("prefill", 0.5, 0, [], 0, 0),
    ("prefill", 0.75, 0, [], 0, 0),
    ("prefill", 0.25, 0, [0, 1], 0, 0),
    ("prefill", 0.5, 0, [0, 1], 0, 0),
    ("prefill", 0.75, 0, [0, 1], 0, 0),
    ("prefill", 0.5, 0, [], 4, 8),
    ("decode", 0.0, 32, [], 0, 0),
    ("decode", 0.0, 24, [1], 4, 4),
]


class Eviction:
    """Per layer, a bool tensor [kv_heads, length]: True where evicted."""

    def __init__(self):
        self.evicted = {}
        self.calls = 0


STATE = Eviction()


def make_wrapper(orig):
    def wrapped(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
        STATE.calls += 1
        ev = STATE.evicted.get(module.layer_idx)
        if ev is not None and bool(ev.any()):
            kv_len = key.shape[-2]
            n_kv, n_q = key.shape[1], query.shape[1]
            full = torch.zeros((n_kv, kv_len), dtype=torch.bool)
            full[:, : ev.shape[1]] = ev
            per_q = full.repeat_interleave(n_q // n_kv, dim=0)  # [heads, kv_len]
            neg = torch.finfo(query.dtype).min
            if attention_mask is None:
                base = torch.zeros((query.shape[0], 1, query.shape[2], kv_len), dtype=query.dtype)
            else:
                base = attention_mask[:, :, :, :kv_len]
                if base.dtype == torch.bool:  # True = attend
                    base = torch.where(base, torch.tensor(0.0, dtype=query.dtype), torch.tensor(neg, dtype=query.dtype))
            attention_mask = torch.where(per_q[None, :, None, :], torch.tensor(neg, dtype=query.dtype), base)
        return orig(module, query, key, value, attention_mask, scaling, dropout, **kwargs)

    return wrapped


def patch_eager():
    for fam in FAMILY_MODULES:
        mod = importlib.import_module(f"transformers.models.{fam}.modeling_{fam}")
        if not getattr(mod.eager_attention_forward, "_kv_ref", False):
            w = make_wrapper(mod.eager_attention_forward)
            w._kv_ref = True
            mod.eager_attention_forward = w


def layer_keys(past, layer):
    if hasattr(past, "layers"):
        return past.layers[layer].keys
    return past.key_cache[layer]


def select(scores, target, sink, window):
    """Indices kept: protected ones plus the highest scores (ties: earlier)."""
    n = len(scores)
    if target >= n:
        return list(range(n))
    protected = [i for i in range(n) if i < sink or i >= n - window]
    free = [i for i in range(n) if not (i < sink or i >= n - window)]
    keep = set(protected)
    k = target - len(protected)
    if k > 0:
        ranked = sorted(free, key=lambda i: -scores[i])  # stable sort
        keep.update(ranked[:k])
    return sorted(keep)


def target(when, ratio, budget, n):
    if when == "prefill":
        return min(n, int(math.floor(n * (1 - ratio))))
    return min(n, budget)


def compress(past, kept, case, num_layers):
    """Apply the policy to every layer's kept positions; update STATE."""
    when, ratio, budget, skip, sink, window = case
    for layer in range(num_layers):
        if layer in skip:
            continue
        keys = layer_keys(past, layer)[0].float()  # [kv_heads, len, head_dim]
        for g in range(keys.shape[0]):
            pos = kept[layer][g]
            t = target(when, ratio, budget, len(pos))
            if t >= len(pos):
                continue
            norms = torch.linalg.vector_norm(keys[g, pos], dim=-1)  # fp32
            scores = [-float(x) for x in norms]
            idx = select(scores, t, sink, window)
            kept[layer][g] = [pos[i] for i in idx]
        length = keys.shape[1]
        ev = torch.ones((keys.shape[0], length), dtype=torch.bool)
        for g in range(keys.shape[0]):
            ev[g, kept[layer][g]] = False
        STATE.evicted[layer] = ev


def run_case(model, prompt, case):
    cfg = model.config
    num_layers, kv_heads = cfg.num_hidden_layers, cfg.num_key_value_heads
    STATE.evicted = {}
    ids = torch.tensor([prompt])
    # A plain DynamicCache keeps every token in every layer, also for
    # Mistral's sliding-window layers (whose default cache trims itself), so
    # cache index == position; the window is still applied by the mask.
    out = model(ids, past_key_values=DynamicCache(), use_cache=True)
    past = out.past_key_values
    logits = out.logits[0, -1].float()
    kept = [[list(range(len(prompt))) for _ in range(kv_heads)] for _ in range(num_layers)]
    if case is not None:
        compress(past, kept, case, num_layers)
    kept_after_prefill = [[list(h) for h in layer] for layer in kept]
    tokens_after_prefill = sum(len(h) for layer in kept for h in layer)
    tokens, margins, step_logits = [], [], None
    for step in range(STEPS):
        top2 = torch.topk(logits, 2)
        margins.append(float(top2.values[0] - top2.values[1]))
        tok = int(torch.argmax(logits))
        tokens.append(tok)
        if step == STEPS - 1:
            break
        pos = len(prompt) + step
        out = model(torch.tensor([[tok]]), past_key_values=past, use_cache=True)
        past = out.past_key_values
        assert layer_keys(past, 0).shape[2] == pos + 1, "cache length does not follow the positions"
        for layer in kept:
            for h in layer:
                h.append(pos)
        if case is not None and case[0] == "decode":
            compress(past, kept, case, num_layers)
        logits = out.logits[0, -1].float()
        if step == 0:
            step_logits = [float(x) for x in logits]
    tokens_end = sum(len(h) for layer in kept for h in layer)
    return dict(tokens=tokens, kept_after_prefill=kept_after_prefill,
                kv_tokens_after_prefill=tokens_after_prefill, kv_tokens_end=tokens_end,
                min_top2_margin=min(margins), step1_logits=step_logits)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiny", required=True, help="folder of tiny checkpoints with reference.json")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(8)
    patch_eager()
    models = []
    for name in sorted(os.listdir(args.tiny)):
        d = os.path.join(args.tiny, name)
        ref_path = os.path.join(d, "reference.json")
        if not os.path.exists(ref_path):
            continue
        with open(ref_path) as f:
            ref = json.load(f)
        model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
        prompt = ref["prompt_ids"]
        with torch.no_grad():
            STATE.calls = 0
            base = run_case(model, prompt, None)
            assert STATE.calls > 0, "the eager attention wrapper was never called"
            assert base["tokens"] == ref["greedy_tokens"][:STEPS], (
                f"{name}: wrapped model without eviction gives {base['tokens']}, reference.json {ref['greedy_tokens']}")
            # Ratio 0 through the eviction path must change nothing either.
            zero = run_case(model, prompt, ("prefill", 0.0, 0, [], 0, 0))
            assert zero["tokens"] == base["tokens"]
            cases = []
            for case in CASES:
                r = run_case(model, prompt, case)
                when, ratio, budget, skip, sink, window = case
                r.update(when=when, ratio=ratio, budget=budget, skip_layers=skip, sink=sink, window=window)
                cases.append(r)
                print(f"{name} {when} ratio={ratio} budget={budget} skip={skip} sink={sink} window={window}: "
                      f"kv {r['kv_tokens_after_prefill']}->{r['kv_tokens_end']} margin {r['min_top2_margin']:.4f} "
                      f"tokens {r['tokens'][:8]}... (uncompressed {base['tokens'][:8]}...)")
        models.append(dict(name=name, prompt_ids=prompt, head_dim=model.config.head_dim if getattr(model.config, "head_dim", None) else model.config.hidden_size // model.config.num_attention_heads,
                           uncompressed_tokens=base["tokens"], cases=cases))
    out = dict(transformers_version=transformers.__version__, torch_version=torch.__version__,
               attn_implementation="eager", compute_dtype="float32", steps=STEPS, models=models)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
