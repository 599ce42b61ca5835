#!/usr/bin/env python3
"""bf16 CUDA reference outputs of the tiny checkpoints, for the Go CUDA
backend's end-to-end tests.

tiny_models.py records transformers' fp32 CPU outputs; a bf16 GPU engine
cannot match those bit for bit, and its greedy tokens may legitimately part
from them where two logits are nearly tied. This script records what
transformers itself computes in bf16 on the GPU from the same checkpoints and
prompts, so the Go test compares like with like and can tell a genuine
near-tie (small top-1 minus top-2 margin) from a bug.

For each tiny checkpoint (llama2, llama3, mistral, qwen2, qwen3) and each
attention implementation (eager, the one the test follows; sdpa, for
information) it loads the checkpoint with dtype=torch.bfloat16 on cuda and
records, for the prompt of the folder's reference.json:
  * 24 greedy tokens from model.generate(do_sample=False) with EOS
    disabled, so exactly 24 come out and the loop matches tiny_models.py's
    (which never stops at EOS);
  * step_logits[i]: the logits that chose greedy_tokens[i] (bf16 values
    widened to float32); step_logits[0] is the last prompt position, also
    stored as last_logits (sdpa: null unless --sdpa-step-logits);
  * step_margins[i]: top-1 minus top-2 of step_logits[i]; ties go to the
    lowest token id (torch.argmax);
  * a cross-check: the same greedy loop done by hand with forward calls, as
    tiny_models.py does, and a second generate run (run-to-run identity);
  * a "batch" case: the prompt and its first 31 tokens, each run by its own
    generate call (no padding), tokens and margins.

Run on the device machine, from the repository root:
    python3 tools/refgen/gpu_bf16_ref.py --models engine/model/testdata/tiny \
        --out engine/gpu/testdata/bf16_ref.json
"""
import argparse
import datetime
import hashlib
import json
import os
import platform
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM

FAMILIES = ("llama2", "llama3", "mistral", "qwen2", "qwen3")
IMPLS = ("eager", "sdpa")
STEPS = 24
SHORT_PROMPT = 31  # the second prompt of the batch case: a prefix of the first
SEED = 0


def sha256_files(folder):
    out = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".safetensors"):
            h = hashlib.sha256()
            with open(os.path.join(folder, name), "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            out[name] = h.hexdigest()
    return out


def margins_of(logits_rows):
    """top-1 minus top-2 per row of a [steps, vocab] float32 tensor."""
    top2 = torch.topk(logits_rows, 2, dim=-1).values
    return (top2[:, 0] - top2[:, 1]).tolist()


def load(folder, impl):
    model = AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.bfloat16, attn_implementation=impl).to("cuda").eval()
    got = model.config._attn_implementation
    if got != impl:
        raise SystemExit(f"{folder}: asked for attn {impl}, model uses {got}")
    # Without generation_config.json the model's generation config comes from
    # config.json (eos_token_id=2). generate() falls back to it whenever the
    # call's eos_token_id is None, so EOS has to be removed here (and from the
    # model config, which a legacy path regenerates the generation config from).
    model.generation_config.eos_token_id = None
    if getattr(model.config, "eos_token_id", None) is not None:
        model.config.eos_token_id = None
    return model


def generate(model, prompt):
    ids = torch.tensor([prompt], device="cuda")
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        do_sample=False,
        max_new_tokens=STEPS,
        pad_token_id=0,
        return_dict_in_generate=True,
        output_logits=True,
        output_scores=True,
    )
    tokens = out.sequences[0, len(prompt):].tolist()
    if len(tokens) != STEPS:
        raise SystemExit(f"generate returned {len(tokens)} tokens, want {STEPS} (EOS not disabled?)")
    logits = torch.stack([l[0] for l in out.logits]).float()  # [steps, vocab]
    scores = torch.stack([s[0] for s in out.scores]).float()
    return tokens, logits, bool(torch.equal(logits, scores))


@torch.no_grad()
def manual_greedy(model, prompt):
    """tiny_models.py's loop: one prefill forward, then one forward per token."""
    out = model(torch.tensor([prompt], device="cuda"), use_cache=True)
    past = out.past_key_values
    logits = out.logits[0, -1].float()
    tokens = []
    for _ in range(STEPS):
        tok = int(torch.argmax(logits))
        tokens.append(tok)
        out = model(torch.tensor([[tok]], device="cuda"), past_key_values=past, use_cache=True)
        past = out.past_key_values
        logits = out.logits[0, -1].float()
    return tokens


def run_impl(folder, impl, prompt, keep_step_logits):
    torch.manual_seed(SEED)
    model = load(folder, impl)
    tokens, logits, scores_equal = generate(model, prompt)
    tokens2, logits2, _ = generate(model, prompt)
    manual = manual_greedy(model, prompt)
    margins = margins_of(logits)
    argmax_ok = logits.argmax(dim=-1).tolist() == tokens
    rec = {
        "attn_implementation": impl,
        "greedy_tokens": tokens,
        "last_logits": logits[0].tolist(),
        # sdpa's are left out by default: informational, and 300 KB a model.
        "step_logits": logits.tolist() if keep_step_logits else None,
        "step_margins": margins,
        "min_top2_margin": min(margins),
        "argmax_equals_tokens": argmax_ok,
        "scores_equal_logits": scores_equal,
        "repeat_identical": tokens2 == tokens and bool(torch.equal(logits2, logits)),
        "manual_loop_tokens": manual,
        "generate_matches_manual_loop": manual == tokens,
    }
    batch = []
    for p in (prompt, prompt[:SHORT_PROMPT]):
        t, lg, _ = generate(model, p)
        m = margins_of(lg)
        batch.append({
            "prompt_len": len(p),
            "greedy_tokens": t,
            "last_logits": lg[0].tolist(),
            "step_margins": m,
            "min_top2_margin": min(m),
        })
    rec["batch"] = batch
    del model
    torch.cuda.empty_cache()
    return rec, logits


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", required=True, help="folder holding the tiny checkpoints")
    ap.add_argument("--out", required=True)
    ap.add_argument("--sdpa-step-logits", action="store_true",
                    help="also store every step's logits for sdpa (eager's are always stored)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device")

    matmul = torch.backends.cuda.matmul
    doc = {
        "schema": "longctx.gpu_bf16_ref/v1",
        "generated_by": "tools/refgen/gpu_bf16_ref.py",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gpu": {
            "name": torch.cuda.get_device_name(0),
            "capability": "sm_%d%d" % torch.cuda.get_device_capability(0),
        },
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_cuda": torch.version.cuda,
            "transformers": transformers.__version__,
        },
        "settings": {
            "dtype": "bfloat16",
            "device": "cuda",
            "seed": SEED,
            "max_new_tokens": STEPS,
            "eos_disabled": True,
            "batch_prompt_lens": "full prompt and its first %d tokens, separate generate calls" % SHORT_PROMPT,
            "logits": "bf16 lm_head output widened to float32; step_logits[i] chose greedy_tokens[i]",
            "tie_break": "lowest token id (torch.argmax)",
            # Left at torch's defaults; recorded because they change bf16 GEMM results.
            "allow_bf16_reduced_precision_reduction": getattr(matmul, "allow_bf16_reduced_precision_reduction", None),
            "allow_fp16_reduced_precision_reduction": getattr(matmul, "allow_fp16_reduced_precision_reduction", None),
            "allow_tf32": getattr(matmul, "allow_tf32", None),
        },
        "models": {},
    }

    for name in FAMILIES:
        folder = os.path.join(args.models, name)
        with open(os.path.join(folder, "reference.json")) as f:
            ref = json.load(f)
        prompt = ref["prompt_ids"]
        entry = {
            "family": ref["family"],
            "checkpoint": folder,
            "checkpoint_sha256": sha256_files(folder),
            "prompt_ids": prompt,
            "fp32_cpu_greedy_tokens": ref["greedy_tokens"],
            "impls": {},
        }
        step_logits = {}
        for impl in IMPLS:
            rec, logits = run_impl(folder, impl, prompt, impl == "eager" or args.sdpa_step_logits)
            entry["impls"][impl] = rec
            step_logits[impl] = logits
            agree = sum(a == b for a, b in zip(rec["greedy_tokens"], ref["greedy_tokens"]))
            rec["tokens_agreeing_with_fp32_prefix"] = next(
                (i for i, (a, b) in enumerate(zip(rec["greedy_tokens"], ref["greedy_tokens"])) if a != b), STEPS)
            print(f"{name:8s} {impl:5s} tokens {rec['greedy_tokens'][:8]}... "
                  f"min margin {rec['min_top2_margin']:.4f} | fp32 agree {agree}/{STEPS} "
                  f"(prefix {rec['tokens_agreeing_with_fp32_prefix']}) | "
                  f"manual==generate {rec['generate_matches_manual_loop']} "
                  f"repeat {rec['repeat_identical']} argmax {rec['argmax_equals_tokens']} "
                  f"scores==logits {rec['scores_equal_logits']} | "
                  f"batch31 {rec['batch'][1]['greedy_tokens'][:6]}...")
        e, s = entry["impls"]["eager"], entry["impls"]["sdpa"]
        # Steps after the first differing token see different contexts; compare
        # only those up to and including it.
        same = next((i for i, (a, b) in enumerate(zip(e["greedy_tokens"], s["greedy_tokens"])) if a != b), STEPS - 1)
        entry["eager_vs_sdpa"] = {
            "tokens_equal": e["greedy_tokens"] == s["greedy_tokens"],
            "last_logits_max_abs_diff": float((step_logits["eager"][0] - step_logits["sdpa"][0]).abs().max()),
            "steps_compared": same + 1,
            "step_logits_max_abs_diff": float(
                (step_logits["eager"][:same + 1] - step_logits["sdpa"][:same + 1]).abs().max()),
        }
        print(f"{name:8s} eager vs sdpa: {entry['eager_vs_sdpa']}")
        doc["models"][name] = entry

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes); "
          f"{doc['gpu']['name']}, torch {torch.__version__}, transformers {transformers.__version__}, "
          f"allow_bf16_reduced_precision_reduction={doc['settings']['allow_bf16_reduced_precision_reduction']}")


if __name__ == "__main__":
    sys.exit(main())
