#!/usr/bin/env bash
# Reproduces the CUDA-backend figures of bench/RESULTS.md (issues 7 and 8)
# on one NVIDIA GPU: the harness on synthetic Llama-3-8B shapes (eager and
# flash attention, full cache and L2 compression, with and without the
# CUDA graph) and, in
# the same run on the same card, Hugging Face transformers on the same
# shapes (tools/refgen/e2e_bench.py: eager and SDPA prefill and decode, the
# device copy bandwidth that sets the decode floor).
#
# Needs bin/harness and the plugins (make build) and, for the reference,
# python3 with torch and transformers. Writes everything under $OUT
# (default bench/out/cuda-backend): Parquet files per run, the harness's
# JSON summaries and logs, transformers.json.
#
#   bench/cuda-backend.sh            # everything
#   SKIP_REFERENCE=1 bench/cuda-backend.sh
#   FIND_OOM=1 bench/cuda-backend.sh # also the --find-oom batch searches (minutes)
#   SKIP_EAGER=1 / SKIP_FLASH=1      # leave out one attention plugin's runs
set -uo pipefail
OUT=${OUT:-bench/out/cuda-backend}
H=${HARNESS:-bin/harness}
MODEL=${MODEL:-synthetic:llama3-8b}
# The card the figures are for: an 80 GB H100. On a bigger card the limit
# keeps the out-of-memory points where they are on the 80 GB one.
MEM=${MEM_LIMIT:-79GiB}
mkdir -p "$OUT/logs" "$OUT/runs"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/logs/gpu.txt" 2>&1
"$H" doctor > "$OUT/logs/doctor.txt" 2>&1
"$H" kernels warm --model "$MODEL" --kv l2 > "$OUT/logs/warm.txt" 2>&1
"$H" kernels warm --model "$MODEL" --attn flash --kv l2 >> "$OUT/logs/warm.txt" 2>&1

run() {
  local name=$1; shift
  local start=$(date +%s)
  "$H" run --backend cuda --model "$MODEL" --task synthetic --warmup 1 --out "$OUT/runs/$name" --json "$@" \
    > "$OUT/logs/$name.json" 2> "$OUT/logs/$name.log"
  echo "$name: exit $? in $(( $(date +%s) - start )) s"
}

if [ "${SKIP_EAGER:-0}" != 1 ]; then
# Unchunked prefill, as transformers does: eager materialises the score
# matrix and runs out of memory at 16k and 32k on 80 GB.
run eager_full --context 8k,16k,32k --max-new-tokens 64 --mem-limit "$MEM"
# Decode at 32k needs the prompt in: prefill it in chunks of 4096.
run eager_full_chunked --context 32k --max-new-tokens 64 --chunk-size 4096 --mem-limit "$MEM"
run eager_l2 --context 8k,32k --max-new-tokens 64 --chunk-size 4096 --kv l2 --kv-opt ratio=0.5 --mem-limit "$MEM"
# What the CUDA graph saves per decode step.
run eager_nograph --context 8k --max-new-tokens 64 --cuda-graph=false --mem-limit "$MEM"
run eager_batch8 --context 8k --batch 8 --max-new-tokens 32 --mem-limit "$MEM"
fi
if [ "${SKIP_FLASH:-0}" != 1 ]; then
# Flash attention never materialises the scores: the whole 32k prompt in
# one prefill, as transformers' SDPA does.
run flash_full --attn flash --context 8k,16k,32k --max-new-tokens 64 --mem-limit "$MEM"
run flash_l2 --attn flash --context 8k,32k --max-new-tokens 64 --kv l2 --kv-opt ratio=0.5 --mem-limit "$MEM"
run flash_batch8 --attn flash --context 8k,32k --batch 8 --max-new-tokens 32 --mem-limit "$MEM"
fi
if [ "${FIND_OOM:-0}" = 1 ]; then
  # The largest batch at 8k under 28 GiB, full cache vs L2 at ratio 0.5.
  run oom_full --context 8k --max-new-tokens 4 --chunk-size 2048 --mem-limit 28GiB --find-oom=batch
  run oom_l2 --context 8k --max-new-tokens 4 --chunk-size 2048 --mem-limit 28GiB --find-oom=batch --kv l2 --kv-opt ratio=0.5
fi
if [ "${SKIP_REFERENCE:-0}" != 1 ]; then
  start=$(date +%s)
  python3 tools/refgen/e2e_bench.py --out "$OUT/transformers.json" > "$OUT/logs/transformers.log" 2>&1
  echo "transformers: exit $? in $(( $(date +%s) - start )) s"
fi
