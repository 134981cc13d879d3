#!/usr/bin/env bash
# The GPU checks in one script (run on the lent GPU machine after ../shared/gpu/prepare.sh here):
#   source .gpu/bootstrap.sh && bash benchmarks/gpu.sh
# PCGrad overhead, training and prediction throughput against the stock recipe (default and at its best), then a full
# minilm_final.yaml training with wall time, samples/s, peak GPU memory and dev metrics. About 8 minutes on an H100.
set -euo pipefail
: "${MTBERT_GPU_MODEL:?source .gpu/bootstrap.sh first}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
echo "== pcgrad overhead"
python benchmarks/pcgrad_overhead.py --device cuda --bf16 --batch_size 32 --rounds 20 \
  --model "$MTBERT_GPU_MODEL" --data_dir "$MTBERT_GPU_DATA" | tail -7
echo "== train throughput (stock recipe with bf16 too)"
python benchmarks/train_throughput.py --device cuda --stock_bf16 --batch_size 32 --rows 4000 --repeats 3 \
  --model "$MTBERT_GPU_MODEL" --data_dir "$MTBERT_GPU_DATA" | tail -9
echo "== predict throughput"
python benchmarks/predict_throughput.py --device cuda --batch_size 256 --repeats 3 \
  --model "$MTBERT_GPU_MODEL" --data_dir "$MTBERT_GPU_DATA" | tail -9
echo "== minilm_final.yaml, bf16"
start=$(date +%s)
python examples/train.py examples/configs/minilm_final.yaml --model_name_or_path "$MTBERT_GPU_MODEL" \
  --data_dir "$MTBERT_GPU_DATA" --output_dir "${OUT:-/tmp}/minilm_final" --bf16 true --disable_tqdm true \
  --dataloader_num_workers 2 --group_by_length true > "${OUT:-/tmp}/minilm_final.log" 2>&1
echo "wall time: $(( $(date +%s) - start )) s"
python - "${OUT:-/tmp}/minilm_final/metrics.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
keys = ["train_runtime", "train_samples_per_second", "train_peak_gpu_memory_mib", "eval_sst_accuracy",
        "eval_qqp_accuracy", "eval_sts_pearson", "eval_average"]
print(json.dumps({k: m.get(k) for k in keys}, indent=1))
PY
