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

Rows say how L2 was treated ("l2": "warm", the default and what rows
without the field were: every call read the same inputs; "cold", from
--cold-l2: calls rotated through input sets holding together >= 4x the
L2). Each table is of one mode, named in its title; cold and warm rows of
the same plugin make two tables. Two builds of one plugin (e.g.
`bench/attention.sh plugins/attention/flash old/flash`, both named "flash")
get a table each, labelled by file: "flash [flash]" and "flash [old]".
A cold row is never set beside a warm
reference row as one ratio: where only the other mode's reference row
exists, the script stops with an error naming both files.

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
                    r = json.loads(line)
                except json.JSONDecodeError as e:
                    print(f"attn_table.py: {p}:{i}: {e}", file=sys.stderr)
                    continue
                r["_file"] = f"{p}:{i}"
                r["_path"] = p
                rows.append(r)
    label(rows)
    return rows


def label(rows):
    """Sets each harness row's "_label": its plugin's name, and where rows of
    that name come from more than one file (two builds of a plugin), the
    file's stem too, so that neither overwrites the other."""
    files = {}
    for r in rows:
        if r.get("source") == "harness":
            files.setdefault(r.get("plugin"), set()).add(r["_path"])
    for r in rows:
        if r.get("source") == "harness":
            name = r.get("plugin")
            stem = r["_path"].rsplit("/", 1)[-1].removesuffix(".jsonl")
            r["_label"] = f"{name} [{stem}]" if len(files[name]) > 1 else name


def l2_mode(r):
    """"cold" or "warm" (rows from before --cold-l2 existed were warm)."""
    return r.get("l2") or "warm"


MODE_TITLE = {"warm": "L2 warm (same inputs every call)", "cold": "L2 cold (input sets rotated, together ≥ 4× L2)"}


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
        src = (r.get("source"), r.get("_label") if r.get("source") == "harness" else "torch")
        if src in seen:
            continue
        seen.add(src)
        what = f"{r.get('_label')} {r.get('plugin_version', '')}".strip() if src[0] == "harness" else f"PyTorch {r.get('plugin_version', '')}"
        bw = r.get("copy_gbps")
        bw = f"{bw:.0f} GB/s" if isinstance(bw, (int, float)) else "not measured"
        lines.append(f"- {what}: {r.get('card')}, driver {r.get('driver')}, {r.get('date')}; device copy bandwidth {bw}; "
                     + l2_note(x for x in rows if x.get("source") == r.get("source")
                               and (src[0] != "harness" or x.get("_label") == r.get("_label"))))
    cards = {r.get("card") for r in rows}
    if len(cards) > 1:
        lines.append(f"- **different cards in one table: {sorted(map(str, cards))}**")
    return lines


def l2_note(rows):
    """The L2 modes of rows in words, with the input sets of the cold ones."""
    rows = list(rows)
    parts = []
    for mode in ("warm", "cold"):
        ms = [r for r in rows if l2_mode(r) == mode]
        if not ms:
            continue
        text = f"L2 {mode}"
        if mode == "cold":
            sets = sorted({r["input_sets"] for r in ms if r.get("status") == "ok" and r.get("input_sets")})
            l2 = {r.get("l2_bytes") for r in ms if r.get("l2_bytes")}
            if sets:
                text += f", {sets[0]}–{sets[-1]} input sets" if len(sets) > 1 else f", {sets[0]} input sets"
            if len(l2) == 1:
                text += f" for {l2.pop() >> 20} MiB of L2"
        parts.append(text)
    return " and ".join(parts) or "L2 warm"


def mode_clash(o, ref_name, k, mode, refs):
    """Exits if the reference row for o's shape exists only in the other
    L2 mode: its time beside ours would not be one comparison."""
    other = "warm" if mode == "cold" else "cold"
    r = refs.get((ref_name, other) + k)
    if r is None or (ref_name, mode) + k in refs:
        return
    sys.exit(f"attn_table.py: {o['_file']} ({o.get('plugin')} {k[0]} batch {k[1]} N {k[2]}) was timed with L2 {mode}, "
             f"but {r['_file']} ({ref_name}, same shape) with L2 {other}, and there is no {mode} {ref_name} row for it: "
             f"a cold time beside a warm one is no ratio. Time both sides in the same mode "
             f"(bench/attention.sh: COLD_L2=1 gives --cold-l2 to both).")


def sets_cells(o, rs, mode, notes):
    """The "sets" cell of a cold table (ours; the references' where they
    differ), starred where a row ran with fewer sets than the rule asked
    for, its note added to notes. No cell for a warm table."""
    if mode != "cold":
        return []
    def n(r):
        return r.get("input_sets") if ok(r) else None
    text = str(n(o)) if n(o) else "–"
    others = sorted({n(r) for r in rs if n(r) and n(r) != n(o)})
    if others:
        text += " (ref " + ", ".join(map(str, others)) + ")"
    for r in [o] + rs:
        if ok(r) and "input sets fit" in (r.get("note") or ""):
            text += "\\*"
            notes.append(f"{r.get('plugin')} {r['phase']} batch {r['batch']} N {r['n']}: {r['note']}")
            break
    return [text]


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    rows = load(sys.argv[1:])
    refs = {}  # (reference, L2 mode) + key -> row
    ours = {}  # (plugin, L2 mode) -> {key: row}
    order = []
    for r in rows:
        if r.get("source") == "torch" and r.get("plugin") in REFS:
            refs[(r["plugin"], l2_mode(r)) + key(r)] = r
        elif r.get("source") == "harness":
            p = (r["_label"], l2_mode(r))
            if p not in ours:
                ours[p] = {}
                order.append(p)
            ours[p][key(r)] = r
    out = ["# Attention kernels: ours vs PyTorch", ""]
    out += header(rows)
    modes = {l2_mode(r) for r in rows}
    explain = {"warm": "L2 warm: every call read the same inputs, so what one call left in L2 served the next.",
               "cold": "L2 cold (--cold-l2): calls rotated through input sets (Q, K, V of their own) holding together "
                       "≥ 4× the L2, so none found its inputs in L2, as inside a model; \"sets\" is their number."}
    out += ["", "TFLOP/s: prefill 4·N²·d·heads·batch/2 (causal), decode 4·N·d·heads·batch. "
            "Ratio = reference time / our time (> 1: ours faster). "
            + " ".join(explain[m] for m in ("warm", "cold") if m in modes), ""]
    for p, mode in order:
        for phase in ("prefill", "decode"):
            ks = sorted(k for k in ours[(p, mode)] if k[0] == phase)
            if not ks:
                continue
            heads = {(k[3], k[4], k[5]) for k in ks}
            shape = ", ".join(f"{h}/{kv} heads, d {d}" for h, kv, d in sorted(heads))
            sets_col = ["sets"] if mode == "cold" else []
            if phase == "prefill":
                out.append(f"## {p}: prefill, causal ({shape}), TFLOP/s, {MODE_TITLE[mode]}")
                cols = ["batch", "N", f"{p} ms", f"{p} TFLOP/s"] + sets_col + list(REFS) + [f"vs {r}" for r in REFS]
            else:
                out.append(f"## {p}: decode, one query ({shape}), µs per launch, {MODE_TITLE[mode]}")
                cols = ["batch", "N", f"{p} µs", "K/V GB/s", "% copy"] + sets_col + list(REFS) + [f"vs {r}" for r in REFS]
            out += ["", "| " + " | ".join(cols) + " |", "|" + "---:|" * len(cols)]
            notes = []
            for k in ks:
                o = ours[(p, mode)][k]
                for ref in REFS:
                    mode_clash(o, ref, k, mode, refs)
                rs = [refs.get((ref, mode) + k) for ref in REFS]
                if phase == "prefill":
                    vals = [str(k[1]), str(k[2]), cell(o, "ms", ".2f"), cell(o, "tflops", ".0f")]
                    vals += sets_cells(o, rs, mode, notes)
                    vals += [cell(r, "tflops", ".0f") for r in rs]
                else:
                    us = lambda r: None if not ok(r) else dict(r, us=r["ms"] * 1e3)  # noqa: E731
                    vals = [str(k[1]), str(k[2]), cell(us(o) or o, "us", ".1f"), cell(o, "gbps", ".0f"),
                            cell(o, "pct_copy", ".0f") + ("%" if ok(o) and o.get("pct_copy") is not None else "")]
                    vals += sets_cells(o, rs, mode, notes)
                    vals += [cell(us(r) or r, "us", ".1f") for r in rs]
                vals += [ratio(o, r) for r in rs]
                out.append("| " + " | ".join(vals) + " |")
            out.append("")
            if notes:
                out += [f"\\* {n}" for n in notes] + [""]
    if not order:
        out.append("(no harness rows: did `harness bench attention` run?)")
    print("\n".join(out))


if __name__ == "__main__":
    main()
