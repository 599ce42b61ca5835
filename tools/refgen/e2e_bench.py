#!/usr/bin/env python3
"""transformers baseline for the end-to-end benchmark: prefill time, decode
ms/token and peak memory of a Llama-3-8B-shaped model (random bf16 weights)
with eager and sdpa attention at long contexts, plus the card's
device-to-device copy bandwidth and bf16 GEMM rate as context for the
decode bandwidth floor.

The weights are random (no checkpoint is needed and none can be fetched on
the device machine); speed and memory depend only on the shapes.

Method, per (attention, context N):
  * prefill: one forward of a random N-token prompt, use_cache=True,
    logits_to_keep=1 (as generate() does; otherwise the [N, 128256] logits
    alone would take gigabytes), 1 warm-up then the median of 3, timed with
    torch.cuda.synchronize around each;
  * decode: from the cache of the last prefill, `steps` single-token
    forwards feeding back the argmax (no host sync), each timed with CUDA
    events; median ms/token;
  * peak memory: torch.cuda.max_memory_allocated, reset before the prefill
    runs and again before the decode steps;
  * torch.OutOfMemoryError is caught per case, recorded as "oom" with the
    stage it hit, memory released, and the next case runs.
decode_floor_ms is (weight bytes less the embedding table + KV bytes at N) /
copy bandwidth: the time just to read every weight and the whole cache once
per token. Peak memory figures include the ~15 GiB of weights.

Run on the device machine, from the repository root:
    python3 tools/refgen/e2e_bench.py --out bench/e2e_transformers.json
    python3 tools/refgen/e2e_bench.py --out /tmp/e2e.json --quick
"""
import argparse
import datetime
import gc
import inspect
import json
import os
import platform
import statistics
import sys
import time

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

GIB = 1 << 30

LLAMA3_8B = dict(
    vocab_size=128256,
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    max_position_embeddings=131072,
    rms_norm_eps=1e-5,
    rope_theta=500000.0,
    # As in Meta-Llama-3.1-8B's config.json.
    rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                      high_freq_factor=4.0, original_max_position_embeddings=8192),
    tie_word_embeddings=False,
    bos_token_id=128000,
    eos_token_id=128001,
    hidden_act="silu",
    attention_bias=False,
    mlp_bias=False,
)


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def free_memory():
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()


def cuda_time(fn, warmup, reps):
    """Seconds per call of fn (CUDA events), median and all, after warmup calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times), times


def micro_benchmarks():
    out = {}
    n = 2 * GIB // 2  # 2 GiB of bf16
    src = torch.empty(n, dtype=torch.bfloat16, device="cuda").normal_()
    dst = torch.empty_like(src)
    med, _ = cuda_time(lambda: dst.copy_(src), warmup=2, reps=10)
    moved = 2 * src.numel() * src.element_size()  # read + write
    out["d2d_copy"] = {"tensor_bytes": src.numel() * src.element_size(), "bytes_moved": moved,
                       "median_s": med, "gb_per_s": moved / med / 1e9}
    del src, dst
    free_memory()

    m = 8192
    a = torch.randn(m, m, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(m, m, dtype=torch.bfloat16, device="cuda")
    c = torch.empty(m, m, dtype=torch.bfloat16, device="cuda")
    med, _ = cuda_time(lambda: torch.matmul(a, b, out=c), warmup=3, reps=10)
    out["gemm_bf16"] = {"m": m, "n": m, "k": m, "median_s": med, "tflops": 2 * m ** 3 / med / 1e12}
    del a, b, c
    free_memory()
    return out


def build_model():
    cfg = LlamaConfig(**LLAMA3_8B)
    t0 = time.perf_counter()
    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        # Parameters are created and initialised on the GPU, in bf16: a CPU
        # init of 8B parameters would take minutes.
        with torch.device("cuda"):
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(prev)
    # No model.to(torch.bfloat16): it would also round the fp32 RoPE
    # inv_freq buffer; the parameters are bf16 already (checked below).
    model = model.eval()
    torch.cuda.synchronize()
    build_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())
    p_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    dtypes = sorted({str(p.dtype) for p in model.parameters()})
    devices = sorted({str(p.device) for p in model.parameters()})
    if dtypes != ["torch.bfloat16"] or any(not d.startswith("cuda") for d in devices):
        raise SystemExit(f"model parameters: dtypes {dtypes}, devices {devices}")
    rope = {k: v for k, v in cfg.to_dict().items() if "rope" in k}
    return model, {"build_s": build_s, "param_count": n_params, "param_bytes": p_bytes, "rope": rope}


def set_attn(model, impl):
    try:
        model.set_attn_implementation(impl)
    except AttributeError:  # older transformers: every layer reads the shared config
        model.config._attn_implementation = impl
    got = model.config._attn_implementation
    if got != impl:
        raise SystemExit(f"asked for attention {impl}, model uses {got}")


def kv_bytes(cfg, n):
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * head_dim * n * 2


def kernel_family(name):
    """Which part of the layer a CUDA kernel of the prefill belongs to."""
    low = name.lower()
    if any(k in low for k in ("flash", "fmha", "cudnn", "sdpa", "attention", "mha")):
        return "attention"
    if any(k in low for k in ("gemm", "sm90_xmma", "cutlass", "nvjet", "matmul")):
        return "gemm"
    return "other"


def profile_prefill(model, prompt, keep_kwargs, top=25):
    """One more prefill under torch.profiler: the GPU time of each kernel
    (summed over the layers), grouped into attention / GEMM / other, so that
    the harness's --gpu-profile can be set beside it and the SDPA backend
    transformers ran is on record by its kernel names."""
    from torch.profiler import ProfilerActivity, profile
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        out = model(input_ids=prompt, use_cache=True, **keep_kwargs)
        torch.cuda.synchronize()
    del out
    kernels = {}
    for e in prof.events():
        if e.device_type != torch.autograd.DeviceType.CUDA:
            continue
        k = kernels.setdefault(e.name, {"name": e.name, "calls": 0, "us": 0.0})
        k["calls"] += 1
        k["us"] += e.device_time if hasattr(e, "device_time") else e.cuda_time
    ranked = sorted(kernels.values(), key=lambda k: -k["us"])
    families = {}
    for k in ranked:
        f = kernel_family(k["name"])
        families[f] = families.get(f, 0.0) + k["us"] / 1e3
    return {"total_ms": sum(k["us"] for k in ranked) / 1e3, "families_ms": families,
            "top_kernels": [{**k, "ms": k["us"] / 1e3} for k in ranked[:top]]}


@torch.inference_mode()
def run_case(model, n, steps, keep_kwargs, rec, profile=False):
    """Fills rec as it goes, so a case that runs out of memory keeps what it measured."""
    gen = torch.Generator(device="cuda").manual_seed(1234 + n)
    prompt = torch.randint(0, model.config.vocab_size, (1, n), device="cuda", generator=gen)

    rec["stage"] = "prefill"
    torch.cuda.reset_peak_memory_stats()
    times, out = [], None
    for i in range(4):  # 1 warm-up + 3 timed
        out = None  # drop the previous cache before allocating the next
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = model(input_ids=prompt, use_cache=True, **keep_kwargs)
        torch.cuda.synchronize()
        if i > 0:
            times.append(time.perf_counter() - t0)
    rec["prefill_s_all"] = times
    rec["prefill_s_median"] = statistics.median(times)
    rec["prefill_tokens_per_s"] = n / rec["prefill_s_median"]
    rec["prefill_peak_bytes"] = torch.cuda.max_memory_allocated()
    if profile:
        rec["prefill_profile"] = profile_prefill(model, prompt, keep_kwargs)

    rec["stage"] = "decode"
    past = out.past_key_values
    tok = out.logits[:, -1:].argmax(dim=-1)
    del out
    torch.cuda.reset_peak_memory_stats()
    step_ms = []
    for _ in range(steps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        o = model(input_ids=tok, past_key_values=past, use_cache=True)
        past = o.past_key_values
        tok = o.logits[:, -1:].argmax(dim=-1)
        end.record()
        del o
        end.synchronize()
        step_ms.append(start.elapsed_time(end))
    rec["decode_ms_all"] = step_ms
    rec["decode_ms_median"] = statistics.median(step_ms)
    rec["decode_tokens_per_s"] = 1e3 / rec["decode_ms_median"]
    rec["decode_peak_bytes"] = torch.cuda.max_memory_allocated()
    rec["cache_len_after_decode"] = int(past.get_seq_length()) if hasattr(past, "get_seq_length") else None
    rec["stage"] = "done"
    rec["status"] = "ok"


def write_doc(path, doc):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1, default=str)
    os.replace(tmp, path)


def print_table(results):
    hdr = (f"{'attn':6s} {'N':>6s} {'status':>7s} {'prefill s':>10s} {'prefill tok/s':>13s} "
           f"{'decode ms/tok':>13s} {'floor ms':>9s} {'peak prefill GiB':>16s} {'peak decode GiB':>15s}")
    print(hdr)
    print("-" * len(hdr))

    def f(v, fmt):
        return format(v, fmt) if isinstance(v, (int, float)) else "-".rjust(int(fmt.split(".")[0]))

    def gib(r, key):
        return r[key] / GIB if key in r else None

    for r in results:
        status = r["status"] if r["status"] != "oom" else f"oom@{r['stage'][:3]}"
        print(f"{r['attn']:6s} {r['context']:6d} {status:>7s} "
              f"{f(r.get('prefill_s_median'), '10.3f')} {f(r.get('prefill_tokens_per_s'), '13.0f')} "
              f"{f(r.get('decode_ms_median'), '13.2f')} {f(r.get('decode_floor_ms'), '9.2f')} "
              f"{f(gib(r, 'prefill_peak_bytes'), '16.2f')} {f(gib(r, 'decode_peak_bytes'), '15.2f')}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--contexts", default="8192,16384,32768", help="comma-separated prompt lengths")
    ap.add_argument("--decode-steps", type=int, default=32)
    ap.add_argument("--attn", default="eager,sdpa", help="comma-separated attention implementations")
    ap.add_argument("--quick", action="store_true", help="only the first context")
    ap.add_argument("--profile", action="store_true",
                    help="also profile one prefill per case (torch.profiler): GPU time per kernel")
    ap.add_argument("--time-budget-s", type=float, default=330.0,
                    help="skip cases that would start after this many seconds")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device")
    t_start = time.perf_counter()
    contexts = [int(x) for x in args.contexts.split(",") if x]
    if args.quick:
        contexts = contexts[:1]
    impls = [x for x in args.attn.split(",") if x]

    props = torch.cuda.get_device_properties(0)
    matmul = torch.backends.cuda.matmul
    doc = {
        "schema": "longctx.e2e_transformers/v1",
        "generated_by": "tools/refgen/e2e_bench.py",
        "date": now_iso(),
        "gpu": {"name": props.name, "capability": f"sm_{props.major}{props.minor}",
                "total_memory_bytes": props.total_memory},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "torch_cuda": torch.version.cuda, "transformers": transformers.__version__},
        "settings": {"contexts": contexts, "decode_steps": args.decode_steps, "attn": impls,
                     "prefill_warmup": 1, "prefill_reps": 3, "batch_size": 1,
                     "allow_bf16_reduced_precision_reduction": getattr(matmul, "allow_bf16_reduced_precision_reduction", None),
                     "allow_tf32": getattr(matmul, "allow_tf32", None)},
    }

    write_doc(args.out, doc)
    print(f"{props.name}, torch {torch.__version__}, transformers {transformers.__version__}")
    doc["micro"] = micro_benchmarks()
    bw = doc["micro"]["d2d_copy"]["gb_per_s"] * 1e9
    print(f"d2d copy (2 GiB, read+write): {doc['micro']['d2d_copy']['gb_per_s']:.0f} GB/s; "
          f"bf16 GEMM 8192^3: {doc['micro']['gemm_bf16']['tflops']:.0f} TFLOP/s")

    model, info = build_model()
    cfg = model.config
    sig = inspect.signature(model.forward).parameters
    if "logits_to_keep" in sig:
        keep_kwargs = {"logits_to_keep": 1}
    elif "num_logits_to_keep" in sig:
        keep_kwargs = {"num_logits_to_keep": 1}
    else:
        keep_kwargs = {}
    doc["settings"]["logits_to_keep"] = bool(keep_kwargs)
    doc["model"] = {"shapes": "Llama-3-8B (random bf16 weights)",
                    "config": {k: v for k, v in LLAMA3_8B.items() if k != "rope_scaling"},
                    "weights_allocated_bytes": torch.cuda.memory_allocated(), **info}
    print(f"model built in {info['build_s']:.1f} s: {info['param_count'] / 1e9:.2f} B params, "
          f"{info['param_bytes'] / GIB:.2f} GiB; rope {info['rope']}")

    # A decode step reads every weight but only one row of the embedding table.
    read_bytes = info["param_bytes"] - cfg.vocab_size * cfg.hidden_size * 2
    results = []
    for impl in impls:
        set_attn(model, impl)
        for n in contexts:
            rec = {"attn": impl, "context": n, "status": "error", "stage": "start",
                   "kv_cache_bytes": kv_bytes(cfg, n),
                   "decode_floor_ms": (read_bytes + kv_bytes(cfg, n)) / bw * 1e3}
            elapsed = time.perf_counter() - t_start
            if elapsed > args.time_budget_s:
                rec["status"] = "skipped_time"
                results.append(rec)
                print(f"{impl} N={n}: skipped, {elapsed:.0f} s elapsed")
                continue
            t0 = time.perf_counter()
            oom = None
            try:
                run_case(model, n, args.decode_steps, keep_kwargs, rec, profile=args.profile)
            except torch.OutOfMemoryError as e:
                oom = str(e).split("\n")[0][:300]
            except Exception as e:  # some kernels report OOM as a plain RuntimeError
                msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
                if "out of memory" in msg.lower():
                    oom = msg
                else:
                    rec["status"] = "error"
                    rec["error"] = msg
            if oom is not None:
                rec["status"] = "oom"
                rec["error"] = oom
            # Outside the except block, so the traceback (and the frames holding
            # the case's tensors) is gone before memory is released.
            free_memory()
            rec["case_wall_s"] = time.perf_counter() - t0
            rec["allocated_after_bytes"] = torch.cuda.memory_allocated()
            results.append(rec)
            print(f"{impl} N={n}: {rec['status']} (stage {rec['stage']}) in {rec['case_wall_s']:.1f} s"
                  + (f", prefill {rec['prefill_s_median']:.3f} s" if "prefill_s_median" in rec else "")
                  + (f", decode {rec['decode_ms_median']:.2f} ms/tok" if "decode_ms_median" in rec else ""))
            if "prefill_profile" in rec:
                prof = rec["prefill_profile"]
                print(f"  profiled prefill: {prof['total_ms']:.1f} ms of kernels, "
                      + ", ".join(f"{k} {v:.1f} ms" for k, v in sorted(prof["families_ms"].items())))
                for k in prof["top_kernels"][:12]:
                    print(f"    {k['ms']:9.2f} ms {k['calls']:5d}x  {k['name'][:110]}")
            doc["results"] = results
            write_doc(args.out, doc)  # a run cut short still leaves its finished cases

    doc["results"] = results
    doc["total_wall_s"] = time.perf_counter() - t_start
    print()
    print_table(results)
    print(f"\ntotal {doc['total_wall_s']:.0f} s")
    write_doc(args.out, doc)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
