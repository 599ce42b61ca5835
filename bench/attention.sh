#!/usr/bin/env bash
# Attention kernel benchmark: our plugins' GPU kernels against PyTorch, in
# one run on one card.
#
# For each plugin given (default: flash eager), `harness bench attention`
# times its attention.prefill and attention.decode kernels over N × batch
# (GQA 32/8, d 128, bf16) and measures the device copy bandwidth; then
# tools/refgen/attn_bench.py times PyTorch SDPA (flash and cuDNN backends)
# and FlexAttention on the same shapes; tools/refgen/attn_table.py joins
# them into one markdown table per plugin and phase (TFLOP/s for prefill,
# µs, K/V GB/s and % of copy bandwidth for decode, and time ratios).
#
# Needs bin/harness and the plugins (make build) and python3 with torch
# (2.11 was used for the DESIGN.md figures). Writes under $OUT (default
# bench/out/attention): <plugin>.jsonl, torch.jsonl, table.md, logs/.
#
#   bench/attention.sh                      # flash and eager, full sweep
#   bench/attention.sh eager                # one plugin
#   N=8k,16k,32k BATCH=1 bench/attention.sh flash
#   PHASE=decode N=32k BATCH=1,8 bench/attention.sh flash
#   SKIP_REFERENCE=1 bench/attention.sh     # our plugins only
#   REF_BUDGET_S=300 bench/attention.sh     # stop PyTorch rows after 300 s
#   COLD_L2=1 PHASE=decode bench/attention.sh flash   # L2 cold on both sides
#
# L2: by default every launch reads the same inputs, so what one launch
# leaves in L2 (50 MB on an H100) serves the next, which flatters shapes
# whose Q/K/V are not much larger than L2. COLD_L2=1 passes --cold-l2 to
# both sides: each launch reads an input set of its own (Q, K, V), in turn
# through as many sets as hold together >= 4x the GPU's L2 (at least 8),
# as a decode step inside a model meets its cache. Rows say "l2": "cold"
# or "warm" and "input_sets"; attn_table.py titles each table with the
# mode and refuses a ratio between a cold and a warm row.
#
# Environment: HARNESS (bin/harness), PYTHON (python3), OUT, N (1k..64k),
# BATCH (1,8), PHASE (prefill,decode), HEADS (32), KV_HEADS (8),
# HEAD_DIM (128), BACKENDS (sdpa-flash,sdpa-cudnn,flex), COLD_L2 (0; 1:
# --cold-l2 on both sides), HARNESS_ARGS and REF_ARGS (extra flags),
# REF_BUDGET_S (0: no limit), SKIP_REFERENCE.
set -uo pipefail
OUT=${OUT:-bench/out/attention}
H=${HARNESS:-bin/harness}
PY=${PYTHON:-python3}
N=${N:-1024,2048,4096,8192,16384,32768,65536}
BATCH=${BATCH:-1,8}
PHASE=${PHASE:-prefill,decode}
HEADS=${HEADS:-32}
KV_HEADS=${KV_HEADS:-8}
HEAD_DIM=${HEAD_DIM:-128}
BACKENDS=${BACKENDS:-sdpa-flash,sdpa-cudnn,flex}
case "${COLD_L2:-0}" in
  1) cold=(--cold-l2) ;;
  0) cold=() ;;
  *) echo "COLD_L2=$COLD_L2: want 1 (cold L2) or 0" >&2; exit 2 ;;
esac
if [ $# -gt 0 ]; then PLUGINS=("$@"); else PLUGINS=(flash eager); fi
mkdir -p "$OUT/logs"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/logs/gpu.txt" 2>&1
shape=(--n "$N" --batch "$BATCH" --phase "$PHASE" --heads "$HEADS" --kv-heads "$KV_HEADS" --head-dim "$HEAD_DIM" ${cold[@]+"${cold[@]}"})
files=()
for p in "${PLUGINS[@]}"; do
  name=$(basename "$p")
  start=$(date +%s)
  # shellcheck disable=SC2086  # HARNESS_ARGS is a list of flags
  "$H" bench attention --attn "$p" "${shape[@]}" --out "$OUT/$name.jsonl" ${HARNESS_ARGS:-} \
    > "$OUT/logs/$name.txt" 2> "$OUT/logs/$name.log"
  rc=$?
  echo "harness bench attention --attn $p: exit $rc in $(( $(date +%s) - start )) s"
  cat "$OUT/logs/$name.txt"
  [ $rc -eq 0 ] || tail -n 5 "$OUT/logs/$name.log"
  [ -s "$OUT/$name.jsonl" ] && files+=("$OUT/$name.jsonl")
done
if [ "${SKIP_REFERENCE:-0}" != 1 ]; then
  start=$(date +%s)
  # shellcheck disable=SC2086
  "$PY" tools/refgen/attn_bench.py "${shape[@]}" --backends "$BACKENDS" --time-budget-s "${REF_BUDGET_S:-0}" \
    --out "$OUT/torch.jsonl" ${REF_ARGS:-} > "$OUT/logs/torch.txt" 2> "$OUT/logs/torch.log"
  rc=$?
  echo "attn_bench.py: exit $rc in $(( $(date +%s) - start )) s"
  [ $rc -eq 0 ] || tail -n 5 "$OUT/logs/torch.log"
  [ -s "$OUT/torch.jsonl" ] && files+=("$OUT/torch.jsonl")
fi
if [ ${#files[@]} -gt 0 ]; then
  "$PY" tools/refgen/attn_table.py "${files[@]}" > "$OUT/table.md"
  cat "$OUT/table.md"
fi
