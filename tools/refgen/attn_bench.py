#!/usr/bin/env python3
"""PyTorch attention kernels on the shapes of `harness bench attention`.

Times torch.nn.functional.scaled_dot_product_attention with the flash
(FA2) and cuDNN backends forced by sdpa_kernel, and FlexAttention
(torch.compile'd flex_attention, causal block mask from create_block_mask),
on random bf16 inputs, GQA (--heads query heads sharing --kv-heads K/V
heads), head dim --head-dim:

  prefill: N causal queries against N keys, q [B, H, N, d], k/v [B, KVH, N, d]
  decode:  one query against N keys (no mask), q [B, H, 1, d]

Timing follows engine/kernelrun/attnbench: a warm-up call (compilation and
autotuning happen there), then measurements of back-to-back calls, each at
least --min-time-ms of GPU time (CUDA events), replayed from a captured CUDA
graph unless --no-graph (so Python's per-call cost is not timed, as the
harness replays its kernels from a graph), median of --repeats. The device
copy bandwidth is measured the same way (tensor.copy_ of --copy-bytes,
read + write counted). TFLOP/s and GB/s count exactly as the harness does:
prefill 4*N^2*d*heads*batch/2 flops and Q+K+V+O bytes, decode
4*N*d*heads*batch flops and K+V bytes (the GQA K/V, even where a backend
needs them repeated).

--cold-l2 follows `harness bench attention --cold-l2`: instead of every
call reading the same q/k/v (so that what one call leaves in L2 serves the
next, "l2": "warm"), each shape gets input sets, each with q, k and v of
its own, as many as hold together at least 4x the device's L2
(torch.cuda.get_device_properties(0).L2_cache_size), never fewer than 8:
cold_sets(), the rule of attnbench.ColdSets, on the bytes one call reads
(q + the N rows of k and v). The calls use set i % n in turn, and a
captured graph holds whole turns (graph_calls), so consecutive calls never
read the same memory. Sets that do not all fit in GPU memory: the row runs
with those that do if at least 2 (and says so in "note"), else it is an
"oom" row. Rows record "l2" ("cold" or "warm"), "l2_bytes", "input_sets"
and "input_set_bytes" as the harness's rows do.

GQA goes through enable_gqa=True; a backend that refuses it gets K/V
repeated with repeat_interleave, recorded as "gqa": "repeat_interleave".
A backend that fails (unsupported shape, out of memory, compile error) is a
row with status "error" or "oom" and the message; the run goes on.

Output: a table on stdout and, with --out, JSON lines with the field names
of `harness bench attention --out` (source "torch", plugin "sdpa-flash",
"sdpa-cudnn" or "flex"), which tools/refgen/attn_table.py joins with the
harness's rows.

    python3 tools/refgen/attn_bench.py --out bench/out/attention/torch.jsonl \\
        [--n 1k,2k,4k,8k,16k,32k,64k] [--batch 1,8] [--phase prefill,decode] \\
        [--backends sdpa-flash,sdpa-cudnn,flex] [--time-budget-s 300] [--cold-l2]
"""
import argparse
import datetime
import gc
import inspect
import json
import math
import statistics
import sys
import time
import warnings

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

BACKENDS = ("sdpa-flash", "sdpa-cudnn", "flex")
SDPA_BACKENDS = {"sdpa-flash": SDPBackend.FLASH_ATTENTION, "sdpa-cudnn": SDPBackend.CUDNN_ATTENTION}
MAX_GRAPH_CALLS = 64  # as attnbench's maxGraphLaunches
COLD_L2_FACTOR = 4  # as attnbench.ColdL2Factor
MIN_INPUT_SETS = 8  # as attnbench.MinInputSets
MAX_INPUT_SETS = 1024  # as attnbench.MaxInputSets


def parse_size(s):
    """An integer with an optional k/m suffix (binary), as the harness's --n."""
    t = s.strip()
    mult = 1
    if t[-1:] in ("k", "K"):
        mult, t = 1 << 10, t[:-1]
    elif t[-1:] in ("m", "M"):
        mult, t = 1 << 20, t[:-1]
    n = int(t) * mult
    if n <= 0:
        raise argparse.ArgumentTypeError(f"size {s!r} must be positive")
    return n


def parse_bytes(s):
    units = (("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("KB", 10**3), ("MB", 10**6), ("GB", 10**9), ("B", 1))
    s = s.strip()
    for suffix, mult in units:
        if s.endswith(suffix):
            return int(float(s[: -len(suffix)]) * mult)
    return int(s)


def int_list(s):
    return [parse_size(x) for x in s.split(",") if x.strip()]


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def driver_version():
    """The CUDA driver API version as the harness prints it ("13.0")."""
    try:
        v = torch._C._cuda_getDriverVersion()
        return f"{v // 1000}.{v % 1000 // 10}"
    except Exception:  # private API: absent in some builds
        return "unknown"


def free_memory():
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()


def flops(phase, b, n, h, d):
    per_pair = 4.0 * d * h * b
    return per_pair * n if phase == "decode" else per_pair * n * n / 2


def bytes_moved(phase, b, n, h, kvh, d):
    kv = 2.0 * b * kvh * n * d * 2
    if phase == "decode":
        return kv
    return kv + 2.0 * b * n * h * d * 2


def input_bytes(phase, b, n, h, kvh, d):
    """Bytes one call reads from its inputs: q and the N rows of k and v
    (attnbench's Shape.InputBytes)."""
    nq = n if phase == "prefill" else 1
    return b * nq * h * d * 2 + 2 * b * kvh * n * d * 2


def cold_sets(per_set, l2_bytes):
    """Input sets of a --cold-l2 row, as attnbench.ColdSets: the fewest
    that hold together COLD_L2_FACTOR x the L2, never fewer than
    MIN_INPUT_SETS. Raises
    ValueError where that would be more than MAX_INPUT_SETS."""
    if l2_bytes <= 0:
        raise ValueError(f"cold L2: the device's L2 cache size is not known ({l2_bytes} bytes)")
    n = max(MIN_INPUT_SETS, -(-COLD_L2_FACTOR * l2_bytes // per_set))
    if n > MAX_INPUT_SETS:
        raise ValueError(f"cold L2: {per_set} bytes read per call: {n} input sets would be needed to hold "
                         f"{COLD_L2_FACTOR}x the {l2_bytes}-byte L2, more than {MAX_INPUT_SETS}")
    return n


def graph_calls(want, cycle):
    """Calls one captured graph holds, as attnbench's graphLaunches: want,
    at most MAX_GRAPH_CALLS, and with cycle input sets a whole number of
    turns through them (at least one)."""
    n = min(want, MAX_GRAPH_CALLS)
    if cycle > 1:
        n = max(1, n // cycle) * cycle
    return n


def rotating(calls):
    """One call that runs calls[0], calls[1], ... in turn, one per call."""
    if len(calls) == 1:
        return calls[0]
    state = {"next": 0}

    def call():
        i = state["next"]
        state["next"] = (i + 1) % len(calls)
        return calls[i]()
    return call


def bytes_counted(phase):
    return "K+V read" if phase == "decode" else "Q+K+V read + O written"


def event_time(fn, n):
    """Seconds of GPU time between events around n calls of fn."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(n):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3


def capture(fn, n):
    """A CUDA graph of n calls of fn (warmed up on a side stream, as
    torch.cuda.graph asks)."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(n):
            fn()
    return g


def measure(fn, args, use_graph, cycle=1):
    """Per-call seconds of fn, as attnbench's measure: warm-up, calls per
    measurement for about min_time, graph replay when possible, median of
    the repeats (fewer when they would take more than max_time). cycle is
    the number of input sets fn rotates through (graph_calls)."""
    min_time, max_time = args.min_time_ms / 1e3, args.max_time_s
    one = event_time(fn, 1)
    if one < min_time:
        one = event_time(fn, 1)
    one = max(one, 1e-6)
    want = int(min(args.max_iters, math.ceil(min_time / one)))
    per_call, call, graph, note = 1, fn, None, None
    if use_graph and want > 1:
        try:
            n = graph_calls(want, cycle)
            graph = capture(fn, n)
            per_call, call = n, graph.replay
        except Exception as e:  # not capturable: time call by call
            graph, note = None, f"graph capture failed: {type(e).__name__}: {e}"[:300]
            torch.cuda.synchronize()
    max_calls = max(1, args.max_iters // per_call)
    calls = min(max_calls, max(1, math.ceil(want / per_call)))
    times = []
    for attempt in range(4):
        el = event_time(call, calls)
        if el >= min_time / 2 or calls >= max_calls or attempt == 3:
            times.append(el / (calls * per_call))
            break
        per = max(el / calls, 1e-9)
        calls = min(max_calls, max(calls + 1, math.ceil(min_time / per)))
    each = times[0] * calls * per_call
    repeats = args.repeats
    if each * repeats > max_time:
        repeats = max(1, int(max_time / each))
    while len(times) < repeats:
        times.append(event_time(call, calls) / (calls * per_call))
    del graph
    return {"median": statistics.median(times), "min": min(times), "iters": calls * per_call,
            "repeats": len(times), "timing": "graph" if per_call > 1 else "stream", "note": note}


def copy_bandwidth(args):
    n = args.copy_bytes // 2
    src = torch.empty(n, dtype=torch.bfloat16, device="cuda").normal_()
    dst = torch.empty_like(src)
    m = measure(lambda: dst.copy_(src), args, use_graph=False)
    del src, dst
    free_memory()
    return 2 * n * 2 / m["median"] / 1e9


class Flex:
    """Compiled flex_attention and causal block masks, one per length."""

    def __init__(self):
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
        self.create_block_mask = create_block_mask
        self.fn = torch.compile(flex_attention, dynamic=False)
        self.masks = {}
        self.mask_kwargs = {}
        if "_compile" in inspect.signature(create_block_mask).parameters:
            self.mask_kwargs["_compile"] = True

    def causal_mask(self, n):
        if n not in self.masks:
            def causal(b, h, q_idx, kv_idx):
                return q_idx >= kv_idx
            self.masks[n] = self.create_block_mask(causal, None, None, n, n, device="cuda", **self.mask_kwargs)
        return self.masks[n]


def make_call(backend, phase, q, k, v, gqa_native, flex):
    """A no-argument call of the backend on q/k/v; k/v already repeated when
    not gqa_native."""
    causal = phase == "prefill"
    if backend in SDPA_BACKENDS:
        be = SDPA_BACKENDS[backend]

        def call():
            with sdpa_kernel(be):
                return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=gqa_native)
        return call
    mask = flex.causal_mask(q.shape[2]) if causal else None

    def call():
        return flex.fn(q, k, v, block_mask=mask, enable_gqa=gqa_native)
    return call


def error_text(e, caught):
    msg = f"{type(e).__name__}: {e}".strip()
    # sdpa_kernel's refusals say why in warnings, not in the exception.
    reasons = [str(w.message) for w in caught if "sdp" in str(w.message).lower() or "kernel" in str(w.message).lower()]
    if reasons:
        msg += " [" + " | ".join(r.replace("\n", " ") for r in reasons[:4]) + "]"
    return msg[:2000]


def is_oom(e):
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()


def try_backend(backend, phase, sets, gqa, args, flex):
    """(status, error, measurement) of one way of running the backend on
    the input sets [(q, k, v)], in turn."""
    caught = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            calls = []
            for q, k, v in sets:
                if gqa == "native":
                    kk, vv = k, v
                else:
                    rep = q.shape[1] // k.shape[1]
                    kk, vv = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
                calls.append(make_call(backend, phase, q, kk, vv, gqa == "native", flex))
            call = rotating(calls)
            call()  # compiles flex; raises if the backend refuses the inputs
            torch.cuda.synchronize()
            m = measure(call, args, use_graph=not args.no_graph, cycle=len(calls))
        m["gqa"] = gqa
        return "ok", None, m
    except Exception as e:  # a backend's failure is a row, never a crash
        return ("oom" if is_oom(e) else "error"), error_text(e, caught), None


def run_backend(backend, phase, sets, args, flex):
    """One row's timing: enable_gqa first, then K/V repeated per query head."""
    q, k, _ = sets[0]
    ways = ["native", "repeat_interleave"] if q.shape[1] > k.shape[1] else ["native"]
    errors = []
    for gqa in ways:
        status, err, m = try_backend(backend, phase, sets, gqa, args, flex)
        free_memory()
        if m is not None:
            if errors:
                m["note"] = "; ".join(x for x in (m.get("note"), "enable_gqa refused: " + errors[0][1]) if x)
            return m
        errors.append((status, f"{'enable_gqa' if gqa == 'native' else 'repeated K/V'}: {err}"))
        if status == "oom":
            break  # repeating K/V needs more memory still
    status = "oom" if any(s == "oom" for s, _ in errors) else "error"
    return {"status": status, "error": " || ".join(e for _, e in errors)}


def print_table(rows, copy_gbps, args, l2_bytes):
    print(f"PyTorch {torch.__version__} attention on {torch.cuda.get_device_name(0)} (driver {driver_version()})")
    print(f"device copy bandwidth: {copy_gbps:.0f} GB/s ({args.copy_bytes} bytes, tensor.copy_, read + write)")
    print("TFLOP/s: prefill 4*N^2*d*heads*batch/2 (causal), decode 4*N*d*heads*batch; GB/s: prefill Q+K+V+O, decode K+V read")
    l2 = f"{l2_bytes >> 20} MiB L2"
    if args.cold_l2:
        print(f"L2: cold (--cold-l2): calls take input sets (q, k, v of their own) in turn, "
              f"as many (\"sets\") as hold >= {COLD_L2_FACTOR}x the {l2} together, at least {MIN_INPUT_SETS}")
    else:
        print(f"L2: warm: every call reads the same inputs, and what one leaves in the {l2} serves the next (--cold-l2: not)")
    hdr = f"{'backend':>10s} {'phase':>7s} {'batch':>5s} {'N':>6s} {'status':>7s} {'ms':>9s} {'TFLOP/s':>8s} {'GB/s':>6s} {'% copy':>6s} {'gqa':>17s}"
    if args.cold_l2:
        hdr += f" {'sets':>5s}"
    print(hdr)

    def f(v, fmt, width):
        return format(v, fmt) if isinstance(v, (int, float)) else "-".rjust(width)

    for r in rows:
        print(f"{r['plugin']:>10s} {r['phase']:>7s} {r['batch']:5d} {r['n']:6d} {r['status']:>7s} "
              f"{f(r.get('ms'), '9.4f', 9)} {f(r.get('tflops'), '8.1f', 8)} {f(r.get('gbps'), '6.0f', 6)} "
              f"{f(r.get('pct_copy'), '5.0f', 5)}{'%' if r.get('pct_copy') is not None else ' '} {r.get('gqa') or '-':>17s}"
              + (f" {sets_cell(r):>5s}" if args.cold_l2 else ""))
    for r in rows:
        if r.get("error"):
            print(f"{r['plugin']} {r['phase']} batch {r['batch']} N {r['n']}: {r['status']}: {r['error']}")
        if r.get("note"):
            print(f"{r['plugin']} {r['phase']} batch {r['batch']} N {r['n']}: * {r['note']}")


def sets_cell(r):
    if r.get("status") != "ok" or not r.get("input_sets"):
        return "-"
    return str(r["input_sets"]) + ("*" if "input sets fit" in (r.get("note") or "") else "")


def make_sets(phase, b, n, H, KVH, D, per_set, l2_bytes, cold):
    """([(q, k, v)], alloc_err, note): one input set when warm; with cold,
    cold_sets() of them, or as many as fit in GPU memory if at least 2
    (note says so). alloc_err is (status, message) when none can run."""
    nq = n if phase == "prefill" else 1
    want = 1
    if cold:
        try:
            want = cold_sets(per_set, l2_bytes)
        except ValueError as e:
            return [], ("error", str(e)), None
    sets, note = [], None
    for i in range(want):
        try:
            sets.append((torch.randn(b, H, nq, D, dtype=torch.bfloat16, device="cuda"),
                         torch.randn(b, KVH, n, D, dtype=torch.bfloat16, device="cuda"),
                         torch.randn(b, KVH, n, D, dtype=torch.bfloat16, device="cuda")))
        except Exception as e:
            free_memory()
            if cold and i >= 2 and is_oom(e):
                note = (f"cold L2: only {i} of {want} input sets fit in device memory, "
                        f"together {i * per_set / l2_bytes:.1f}x the L2")
                break
            what = f"cold L2: input set {i + 1} of {want} ({per_set} bytes read per call)" if cold else "inputs"
            sets = []
            free_memory()
            return [], ("oom" if is_oom(e) else "error", f"{what}: {type(e).__name__}: {e}"[:2000]), None
    return sets, None, note


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int_list, default=int_list("1024,2048,4096,8192,16384,32768,65536"), help="context lengths, e.g. 1k,8k,32k")
    ap.add_argument("--batch", type=int_list, default=[1, 8])
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--phase", default="prefill,decode", help="prefill, decode, comma-separated")
    ap.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated: " + ", ".join(BACKENDS))
    ap.add_argument("--out", help="JSON lines file")
    ap.add_argument("--min-time-ms", type=float, default=50.0, help="least GPU time of one measurement")
    ap.add_argument("--max-time-s", type=float, default=20.0, help="GPU time budget per shape and backend (fewer repeats)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--max-iters", type=int, default=10000)
    ap.add_argument("--copy-bytes", type=parse_bytes, default=1 << 30)
    ap.add_argument("--no-graph", action="store_true", help="time call by call instead of replaying a CUDA graph")
    ap.add_argument("--cold-l2", action="store_true",
                    help="give every call inputs of its own, in turn through sets holding together >= 4x the GPU's L2, "
                         "so no call reads what an earlier one left in L2 (as harness bench attention --cold-l2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time-budget-s", type=float, default=0, help="rows that would start later are 'skipped' (0: no limit)")
    args = ap.parse_args()

    phases = [p.strip() for p in args.phase.split(",") if p.strip()]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for p in phases:
        if p not in ("prefill", "decode"):
            ap.error(f"--phase {p!r}: want prefill or decode")
    for b in backends:
        if b not in BACKENDS:
            ap.error(f"--backends {b!r}: want one of {', '.join(BACKENDS)}")
    if args.heads < 1 or args.kv_heads < 1 or args.heads % args.kv_heads or args.head_dim < 1:
        ap.error(f"--heads {args.heads} must be a positive multiple of --kv-heads {args.kv_heads}, --head-dim positive")
    if args.repeats < 1 or args.max_iters < 1 or args.min_time_ms <= 0 or args.max_time_s <= 0:
        ap.error("--repeats, --max-iters, --min-time-ms and --max-time-s must be positive")
    if not torch.cuda.is_available():
        sys.exit("attn_bench.py: no CUDA device")

    t0 = time.perf_counter()
    for name in ("cache_size_limit", "recompile_limit"):  # one compilation per shape
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, 1024)
    torch.manual_seed(args.seed)
    H, KVH, D = args.heads, args.kv_heads, args.head_dim
    l2_bytes = int(getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 0))
    if args.cold_l2 and l2_bytes <= 0:
        sys.exit("attn_bench.py: --cold-l2: torch reports no L2 cache size for this device")
    base = {"source": "torch", "card": torch.cuda.get_device_name(0), "driver": driver_version(), "date": now_iso(),
            "plugin_version": torch.__version__, "heads": H, "kv_heads": KVH, "head_dim": D,
            "l2": "cold" if args.cold_l2 else "warm", "l2_bytes": l2_bytes}
    impl = getattr(torch.nn.attention, "current_flash_attention_impl", None)
    flash_impl = impl() if callable(impl) else None

    copy_gbps = copy_bandwidth(args)
    print(f"device copy bandwidth: {copy_gbps:.0f} GB/s", file=sys.stderr)
    flex = None
    if "flex" in backends:
        try:
            flex = Flex()
        except Exception as e:
            print(f"flex_attention unavailable: {e}", file=sys.stderr)

    out = open(args.out, "w") if args.out else None
    rows = []
    for phase in phases:
        for b in args.batch:
            for n in args.n:
                per_set = input_bytes(phase, b, n, H, KVH, D)
                sets, alloc_err, note = make_sets(phase, b, n, H, KVH, D, per_set, l2_bytes, args.cold_l2)
                for backend in backends:
                    row = dict(base, plugin=backend, phase=phase, batch=b, n=n, kv_capacity=n,
                               gbps_counts=bytes_counted(phase), copy_gbps=copy_gbps,
                               input_set_bytes=per_set, ms=None, tflops=None, gbps=None)
                    if sets:
                        row["input_sets"] = len(sets)
                    if note:
                        row["note"] = note
                    if backend == "sdpa-flash" and flash_impl:
                        row["flash_impl"] = flash_impl
                    if args.time_budget_s and time.perf_counter() - t0 > args.time_budget_s:
                        row.update(status="skipped", error=f"time budget of {args.time_budget_s:.0f} s spent")
                    elif alloc_err:
                        row.update(status=alloc_err[0], error=alloc_err[1])
                    elif backend == "flex" and flex is None:
                        row.update(status="error", error="flex_attention could not be imported or compiled")
                    else:
                        r = run_backend(backend, phase, sets, args, flex)
                        if "median" in r:
                            sec = r["median"]
                            row.update(status="ok", ms=sec * 1e3, min_ms=r["min"] * 1e3,
                                       tflops=flops(phase, b, n, H, D) / sec / 1e12,
                                       gbps=bytes_moved(phase, b, n, H, KVH, D) / sec / 1e9,
                                       timing=r["timing"], iters=r["iters"], repeats=r["repeats"], gqa=r["gqa"])
                            if r.get("note"):
                                row["note"] = "; ".join(x for x in (note, r["note"]) if x)
                            if phase == "decode" and copy_gbps > 0:
                                row["pct_copy"] = 100 * row["gbps"] / copy_gbps
                        else:
                            row.update(status=r["status"], error=r["error"])
                    rows.append(row)
                    msg = f"{backend} {phase} batch {b} N {n}: {row['status']}"
                    if row["ms"] is not None:
                        msg += f" {row['ms']:.4f} ms, {row['tflops']:.1f} TFLOP/s, {row['gbps']:.0f} GB/s ({row['gqa']})"
                        if args.cold_l2:
                            msg += f" (L2 cold: {len(sets)} input sets)"
                    if row.get("note"):
                        msg += "; " + row["note"]
                    print(msg, file=sys.stderr, flush=True)
                    if out:
                        out.write(json.dumps(row) + "\n")
                        out.flush()
                del sets
                free_memory()
    if out:
        out.close()
    print_table(rows, copy_gbps, args, l2_bytes)


if __name__ == "__main__":
    main()
