#!/usr/bin/env bash
# The GPU checks in one script, for one call on the lent GPU machine (after ../shared/gpu/prepare.sh here):
#   source .gpu/bootstrap.sh && bash benchmarks/gpu.sh
# In order of priority (issue 26 first), each under its own time cap and all under one deadline (GPU_DEADLINE_S,
# default 520 s), so a slow part costs the ones after it, never the whole call:
#   1. gpu_graphs.py parts 1-3: packed vs padded and graphs vs eager on this GPU (largest differences); a
#      BERT-base-sized step (random weights, batch 32 x 128, bf16) with cuda_graphs off and on (first-pass cost,
#      warm ms/step, share of the measured bf16 matmul rate); MiniLM steps with dynamic padding, static_shapes,
#      static_shapes + cuda_graphs and packed_batches
#   2. train_throughput.py: training against the stock recipe (default with bf16, and at its best), with mtbert as
#      shipped and with static shapes, static shapes + graphs, packed rows as extra sides of the same rotation
#   3. predict_throughput.py: prediction against the stock pipelines, with bf16 weights cast once, length buckets
#      and packed rows as extra mtbert sides
#   4. gpu_graphs.py part 4: dev metrics of a short run (300 steps, static shapes) with cuda_graphs off and on
#   5. gpu_step.py: share of the bf16 rate per batch size, host syncs, and a profile (GPU busy share, kernels/step)
#   6. minilm_best.yaml end to end (bf16, seed 1, static_shapes + cuda_graphs): wall time, samples/s, peak memory,
#      dev metrics
#   7. pcgrad_overhead.py: round_robin / sum / pcgrad step time and peak memory
# Everything printed goes to $OUT/gpu.log as well; the profile's trace to $OUT/trace.json.gz.
set -uo pipefail
: "${MTBERT_GPU_MODEL:?source .gpu/bootstrap.sh first}"
out="${OUT:-/tmp/gpu_out}"
mkdir -p "$out"
run_dir=/tmp/minilm_best
rm -rf "$run_dir" /tmp/trace.json  # a warm machine keeps /tmp: never report an earlier call's results as this one's
exec > >(tee -a "$out/gpu.log") 2>&1
tee_pid=$!
deadline=$(( $(date +%s) + ${GPU_DEADLINE_S:-520} ))
common=(--model "$MTBERT_GPU_MODEL" --data_dir "$MTBERT_GPU_DATA")
device=${GPU_DEVICE:-cuda}  # GPU_DEVICE=cpu: a dry run of the script here
graphs=true; [ "$device" = cpu ] && graphs=false  # cuda_graphs true is refused off CUDA
tiny=(); [ -n "${GPU_TINY:-}" ] && tiny=(--tiny)  # GPU_TINY=1: gpu_graphs.py's base-size part at 2 x 32 (dry runs)

part() {  # part NAME CAP_SECONDS COMMAND...: run under min(CAP, time left before the deadline)
  local name=$1 cap=$2; shift 2
  local left=$(( deadline - $(date +%s) ))
  (( left < cap )) && cap=$left
  if (( cap < 20 )); then echo "== $name: skipped, ${left} s left"; return; fi
  echo "== $name (at most $cap s)"
  local start=$(date +%s)
  timeout -k 10 "$cap" "$@"  # -k: a process slow to stop on TERM is killed 10 s later
  echo "== $name: rc $?, $(( $(date +%s) - start )) s"
}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader
part "graphs, static shapes, packed: exactness and steps" 170 python benchmarks/gpu_graphs.py "${common[@]}" \
  --device "$device" "${tiny[@]}" --parts 1,2,3 --batch_size 32 --length 128 --steps 30 --warmup 5
# 1000 rows per task: six sides now (an H200 ran three sides of 2000 rows x 3 repeats in about 130 s)
part "train throughput" 170 python benchmarks/train_throughput.py "${common[@]}" --device "$device" --stock_bf16 \
  --mtbert_embedding_updates dense --batch_size 32 --rows 1000 --repeats 3 \
  --mtbert_variant "static=static_shapes:true,cuda_graphs:false" \
  --mtbert_variant "graphs=static_shapes:true,cuda_graphs:$graphs" \
  --mtbert_variant "packed=packed_batches:true,cuda_graphs:false"
part "predict throughput" 90 python benchmarks/predict_throughput.py "${common[@]}" --device "$device" \
  --batch_size 256 --repeats 3 --mtbert_variant "bf16w=weights:bf16" \
  --mtbert_variant "bf16w_buckets=weights:bf16,length_buckets:auto" --mtbert_variant "packed=packed:true"
part "graphs on vs off: dev metrics of a short run" 120 python benchmarks/gpu_graphs.py "${common[@]}" \
  --device "$device" --parts 4 --batch_size 32 --dev_steps 300 --dev_rows 1000 --rows 4000
part "gpu step" 100 python benchmarks/gpu_step.py "${common[@]}" --device "$device" --batch_sizes 32,128 \
  --trace /tmp/trace.json
[ -f /tmp/trace.json ] && gzip -c /tmp/trace.json > "$out/trace.json.gz"
export MINILM_LOG="$out/minilm_best.log" RUN_DIR="$run_dir"
part "minilm_best.yaml, bf16, seed 1, static shapes + graphs (log: minilm_best.log)" 240 bash -c 'python \
  examples/train.py examples/configs/minilm_best.yaml --model_name_or_path "$MTBERT_GPU_MODEL" \
  --data_dir "$MTBERT_GPU_DATA" --output_dir "$RUN_DIR" --seed 1 --bf16 true --disable_tqdm true \
  --dataloader_num_workers 2 --static_shapes true --cuda_graphs auto --overwrite_output_dir true \
  > "$MINILM_LOG" 2>&1'
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
part "pcgrad overhead" 60 python benchmarks/pcgrad_overhead.py "${common[@]}" --device "$device" --bf16 \
  --batch_size 32 --rounds 20
exec >&- 2>&-  # close the pipe into tee and let it write the end of gpu.log before the call returns
wait "$tee_pid"
