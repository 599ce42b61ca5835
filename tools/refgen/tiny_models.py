#!/usr/bin/env python3
"""Generate tiny random-weight checkpoints of each supported family and the
transformers reference outputs the Go engine is tested against.

For each family it writes OUT/<name>/ with config.json, bf16 safetensors (one
checkpoint sharded, to exercise the index) and reference.json holding the
prompt ids, transformers' fp32 eager-attention logits at the last prompt
position and 24 greedy tokens.

Run on a machine with torch + transformers (the device machine):
    python3 tools/refgen/tiny_models.py --out engine/model/testdata/tiny
"""
import argparse
import json
import os
import shutil

import torch
import transformers
from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig,
                          MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM,
                          Qwen3Config, Qwen3ForCausalLM)

VOCAB = 512
STEPS = 24
PROMPT_LEN = 48  # longer than the Mistral sliding window below
MIN_MARGIN = 2e-3  # top-1 vs top-2 logit gap every greedy step must clear

COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=4096,
    rms_norm_eps=1e-5,
    initializer_range=0.15,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)


def families():
    return {
        # Llama 3.x: llama3 rope scaling with a short original context so the
        # scaled, unscaled and smoothly interpolated frequency bands all occur.
        "llama3": (LlamaConfig, LlamaForCausalLM, dict(
            rope_theta=500000.0,
            rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                              high_freq_factor=4.0, original_max_position_embeddings=64),
            tie_word_embeddings=False), "200KB"),
        # Llama 2: plain rope, tied embeddings.
        "llama2": (LlamaConfig, LlamaForCausalLM, dict(
            rope_theta=10000.0, tie_word_embeddings=True), None),
        # Mistral with a sliding window shorter than the prompt.
        "mistral": (MistralConfig, MistralForCausalLM, dict(
            rope_theta=10000.0, sliding_window=16, tie_word_embeddings=False), None),
        # Qwen2/2.5: q/k/v bias.
        "qwen2": (Qwen2Config, Qwen2ForCausalLM, dict(
            rope_theta=1000000.0, tie_word_embeddings=True, use_sliding_window=False), None),
        # Qwen3: explicit head_dim != hidden/heads, q/k RMSNorm.
        "qwen3": (Qwen3Config, Qwen3ForCausalLM, dict(
            rope_theta=1000000.0, head_dim=32, tie_word_embeddings=False,
            use_sliding_window=False), None),
    }


def randomize_small_params(model, gen):
    """Default init leaves norms at 1 and biases at 0, which would not test
    that the engine applies them; perturb them deterministically."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(0.5 + torch.rand(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))


def greedy(model, prompt):
    ids = torch.tensor([prompt])
    out = model(ids, use_cache=True)
    past = out.past_key_values
    logits = out.logits[0, -1].float()
    last_logits = logits.clone()
    tokens, margins = [], []
    for _ in range(STEPS):
        top2 = torch.topk(logits, 2)
        margins.append(float(top2.values[0] - top2.values[1]))
        tok = int(torch.argmax(logits))
        tokens.append(tok)
        out = model(torch.tensor([[tok]]), past_key_values=past, use_cache=True)
        past = out.past_key_values
        logits = out.logits[0, -1].float()
    return last_logits, tokens, min(margins)


def build(name, cfg_cls, model_cls, extra, shard, out_dir):
    dest = os.path.join(out_dir, name)
    for seed in range(100):
        torch.manual_seed(1000 + seed)
        gen = torch.Generator().manual_seed(2000 + seed)
        cfg = cfg_cls(**COMMON, **extra)
        model = model_cls(cfg).eval()
        randomize_small_params(model, gen)
        shutil.rmtree(dest, ignore_errors=True)
        kwargs = {"max_shard_size": shard} if shard else {}
        model.to(torch.bfloat16).save_pretrained(dest, safe_serialization=True, **kwargs)
        # The reference is what transformers computes from the checkpoint as
        # saved: load it back in fp32 (a model cast to bf16 and back would
        # also have its RoPE inv_freq buffer rounded to bf16).
        ref_model = model_cls.from_pretrained(dest, dtype=torch.float32, attn_implementation="eager").eval()
        prompt = torch.randint(3, VOCAB, (PROMPT_LEN,), generator=gen).tolist()
        with torch.no_grad():
            last_logits, tokens, margin = greedy(ref_model, prompt)
        if margin >= MIN_MARGIN:
            break
    else:
        raise SystemExit(f"{name}: no seed gave a top-2 margin >= {MIN_MARGIN}")

    for junk in ("generation_config.json",):
        p = os.path.join(dest, junk)
        if os.path.exists(p):
            os.remove(p)
    ref = {
        "family": cfg.model_type,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "attn_implementation": "eager",
        "compute_dtype": "float32",
        "seed": 1000 + seed,
        "prompt_ids": prompt,
        "max_new_tokens": STEPS,
        "greedy_tokens": tokens,
        "last_logits": [float(x) for x in last_logits],
        "min_top2_margin": margin,
    }
    with open(os.path.join(dest, "reference.json"), "w") as f:
        json.dump(ref, f)
    files = sorted(os.listdir(dest))
    print(f"{name}: seed {1000 + seed} margin {margin:.4f} tokens {tokens[:8]}... files {files}")
    print(f"  config: {json.dumps({k: v for k, v in cfg.to_dict().items() if 'rope' in k or 'window' in k or k == 'head_dim'})}")
    print(f"  attn: {ref_model.config._attn_implementation}, inv_freq dtype {next(b for n, b in ref_model.named_buffers() if n.endswith('inv_freq')).dtype}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(8)
    for name, (cfg_cls, model_cls, extra, shard) in families().items():
        build(name, cfg_cls, model_cls, extra, shard, args.out)


if __name__ == "__main__":
    main()
