#!/usr/bin/env python3
"""Markdown comparison of attention kernel timings.

Reads JSON lines from `harness bench attention --out` (source "harness", one
plugin per file) and tools/refgen/attn_bench.py (source "torch": sdpa-flash,
sdpa-cudnn, flex), joins them on (phase, batch, N, heads, KV heads, head
dim) and prints, for each of our plugins and each phase, one table:

  prefill: TFLOP/s of ours and of each reference, and speed ratios
  decode:  µs per launch of ours and of each reference, our K/V read GB/s
           and its share of the copy bandwidth measured in our run, and
           speed ratios

A ratio is reference time / our time: above 1 ours is faster. A cell that
did not run says why (oom, error, skipped); "n/a" means no such row.

    python3 tools/refgen/attn_table.py bench/out/attention/*.jsonl > table.md
"""
import json
import sys

REFS = ("sdpa-flash", "sdpa-cudnn", "flex")


def load(paths):
    rows = []
    for p in paths:
        with open(p) as f:
            for i, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    print(f"attn_table.py: {p}:{i}: {e}", file=sys.stderr)
    return rows


def key(r):
    return (r["phase"], r["batch"], r["n"], r["heads"], r["kv_heads"], r["head_dim"])


def ok(r):
    return r is not None and r.get("status") == "ok" and r.get("ms")


def cell(r, field, fmt):
    if r is None:
        return "n/a"
    if not ok(r):
        return r.get("status", "?")
    v = r.get(field)
    return "–" if v is None else format(v, fmt)


def ratio(ours, ref):
    if not ok(ours) or not ok(ref):
        return "–"
    return f"{ref['ms'] / ours['ms']:.2f}×"


def header(rows):
    lines = []
    seen = set()
    for r in rows:
        src = (r.get("source"), r.get("plugin") if r.get("source") == "harness" else "torch")
        if src in seen:
            continue
        seen.add(src)
        what = f"{r.get('plugin')} {r.get('plugin_version', '')}".strip() if src[0] == "harness" else f"PyTorch {r.get('plugin_version', '')}"
        bw = r.get("copy_gbps")
        bw = f"{bw:.0f} GB/s" if isinstance(bw, (int, float)) else "not measured"
        lines.append(f"- {what}: {r.get('card')}, driver {r.get('driver')}, {r.get('date')}; device copy bandwidth {bw}")
    cards = {r.get("card") for r in rows}
    if len(cards) > 1:
        lines.append(f"- **different cards in one table: {sorted(map(str, cards))}**")
    return lines


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    rows = load(sys.argv[1:])
    refs = {}
    ours = {}  # plugin -> {key: row}
    order = []
    for r in rows:
        if r.get("source") == "torch" and r.get("plugin") in REFS:
            refs[(r["plugin"],) + key(r)] = r
        elif r.get("source") == "harness":
            p = r.get("plugin")
            if p not in ours:
                ours[p] = {}
                order.append(p)
            ours[p][key(r)] = r
    out = ["# Attention kernels: ours vs PyTorch", ""]
    out += header(rows)
    out += ["", "TFLOP/s: prefill 4·N²·d·heads·batch/2 (causal), decode 4·N·d·heads·batch. "
            "Ratio = reference time / our time (> 1: ours faster).", ""]
    for p in order:
        for phase in ("prefill", "decode"):
            ks = sorted(k for k in ours[p] if k[0] == phase)
            if not ks:
                continue
            heads = {(k[3], k[4], k[5]) for k in ks}
            shape = ", ".join(f"{h}/{kv} heads, d {d}" for h, kv, d in sorted(heads))
            if phase == "prefill":
                out.append(f"## {p}: prefill, causal ({shape}), TFLOP/s")
                cols = ["batch", "N", f"{p} ms", f"{p} TFLOP/s"] + list(REFS) + [f"vs {r}" for r in REFS]
            else:
                out.append(f"## {p}: decode, one query ({shape}), µs per launch")
                cols = ["batch", "N", f"{p} µs", "K/V GB/s", "% copy"] + list(REFS) + [f"vs {r}" for r in REFS]
            out += ["", "| " + " | ".join(cols) + " |", "|" + "---:|" * len(cols)]
            for k in ks:
                o = ours[p][k]
                rs = [refs.get((ref,) + k) for ref in REFS]
                if phase == "prefill":
                    vals = [str(k[1]), str(k[2]), cell(o, "ms", ".2f"), cell(o, "tflops", ".0f")]
                    vals += [cell(r, "tflops", ".0f") for r in rs]
                else:
                    us = lambda r: None if not ok(r) else dict(r, us=r["ms"] * 1e3)  # noqa: E731
                    vals = [str(k[1]), str(k[2]), cell(us(o) or o, "us", ".1f"), cell(o, "gbps", ".0f"),
                            cell(o, "pct_copy", ".0f") + ("%" if ok(o) and o.get("pct_copy") is not None else "")]
                    vals += [cell(us(r) or r, "us", ".1f") for r in rs]
                vals += [ratio(o, r) for r in rs]
                out.append("| " + " | ".join(vals) + " |")
            out.append("")
    if not order:
        out.append("(no harness rows: did `harness bench attention` run?)")
    print("\n".join(out))


if __name__ == "__main__":
    main()
