#!/usr/bin/env bash
# The GPU checks in one script, for one call on the lent GPU machine (after ../shared/gpu/prepare.sh here):
#   source .gpu/bootstrap.sh && bash benchmarks/gpu.sh
# In order of priority, each under its own time cap and all under one deadline (GPU_DEADLINE_S, default 500 s), so
# a slow part costs the ones after it, never the whole call:
#   1. gpu_step.py: share of the measured bf16 matmul rate a training step reaches per batch size, the cost of the
#      per-step host syncs, and a profile (GPU busy share, host syncs and kernels per step, top kernels)
#   2. train_throughput.py: training against the stock recipe (default with bf16, and at its best) on this GPU
#   3. predict_throughput.py: prediction against the stock pipelines
#   4. pcgrad_overhead.py: round_robin / sum / pcgrad step time and peak memory
#   5. minilm_best.yaml end to end (bf16, seed 1): wall time, samples/s, peak GPU memory, dev metrics
# Everything printed goes to $OUT/gpu.log as well; the profile's trace to $OUT/trace.json.gz.
set -uo pipefail
: "${MTBERT_GPU_MODEL:?source .gpu/bootstrap.sh first}"
out="${OUT:-/tmp/gpu_out}"
mkdir -p "$out"
run_dir=/tmp/minilm_best
rm -rf "$run_dir" /tmp/trace.json  # a warm machine keeps /tmp: never report an earlier call's results as this one's
exec > >(tee -a "$out/gpu.log") 2>&1
tee_pid=$!
deadline=$(( $(date +%s) + ${GPU_DEADLINE_S:-500} ))
common=(--model "$MTBERT_GPU_MODEL" --data_dir "$MTBERT_GPU_DATA")
device=${GPU_DEVICE:-cuda}  # GPU_DEVICE=cpu: a dry run of the script here

part() {  # part NAME CAP_SECONDS COMMAND...: run under min(CAP, time left before the deadline)
  local name=$1 cap=$2; shift 2
  local left=$(( deadline - $(date +%s) ))
  (( left < cap )) && cap=$left
  if (( cap < 20 )); then echo "== $name: skipped, ${left} s left"; return; fi
  echo "== $name (at most $cap s)"
  local start=$(date +%s)
  timeout "$cap" "$@"
  echo "== $name: rc $?, $(( $(date +%s) - start )) s"
}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader
part "gpu step" 120 python benchmarks/gpu_step.py "${common[@]}" --device "$device" --trace /tmp/trace.json
[ -f /tmp/trace.json ] && gzip -c /tmp/trace.json > "$out/trace.json.gz"
# 2000 rows per task: on an H200 (2026-11-30) 4000 rows reached 2 of 3 repeats in 130 s, and 2500 rows took about
# 125 s for all 3 in a call of its own
part "train throughput" 150 python benchmarks/train_throughput.py "${common[@]}" --device "$device" --stock_bf16 \
  --mtbert_embedding_updates dense --batch_size 32 --rows 2000 --repeats 3
part "predict throughput" 80 python benchmarks/predict_throughput.py "${common[@]}" --device "$device" \
  --batch_size 256 --repeats 3
part "pcgrad overhead" 60 python benchmarks/pcgrad_overhead.py "${common[@]}" --device "$device" --bf16 \
  --batch_size 32 --rounds 20
export MINILM_LOG="$out/minilm_best.log" RUN_DIR="$run_dir"
part "minilm_best.yaml, bf16, seed 1 (log: minilm_best.log)" 240 bash -c 'python examples/train.py \
  examples/configs/minilm_best.yaml --model_name_or_path "$MTBERT_GPU_MODEL" --data_dir "$MTBERT_GPU_DATA" \
  --output_dir "$RUN_DIR" --seed 1 --bf16 true --disable_tqdm true --dataloader_num_workers 2 \
  --overwrite_output_dir true > "$MINILM_LOG" 2>&1'
if [ -f "$run_dir/metrics.json" ]; then
  cp "$run_dir/metrics.json" "$out/minilm_best_metrics.json"
  python - "$run_dir/metrics.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
keys = ["train_runtime", "train_samples_per_second", "train_peak_gpu_memory_mib", "eval_sst_accuracy",
        "eval_qqp_accuracy", "eval_sts_pearson", "eval_average"]
print(json.dumps({k: m.get(k) for k in keys}, indent=1))
PY
elif [ -f "$out/minilm_best.log" ]; then
  tail -20 "$out/minilm_best.log"
fi
exec >&- 2>&-  # close the pipe into tee and let it write the end of gpu.log before the call returns
wait "$tee_pid"
