#!/usr/bin/env bash
# Issue 29's comparison: every task weighting and aggregator in examples/configs/weighting/ (round-robin, PCGrad, the
# plain sum, uncertainty, DWA, FAMO, DB-MTL, UPGrad, Nash-MTL, CAGrad) at the quickstart scale on MiniLM, SEEDS seeds
# each, through examples/run_experiments.py (one process per run, finished runs skipped, so rerunning resumes); then
# the mean ± std table of dev metrics in $RUNS/paper/. Time per step: train_runtime / global_step of each run
# (metrics.json and trainer_state.json), tabulated by the last step below.
#
#   SEEDS="1 2" RUNS=runs/weighting JOBS=1 bash examples/weighting_comparison.sh
#
# Only dev metrics are compared, so the runs write no test-set predictions (write_predictions=false). With JOBS > 1
# on a CPU, each run gets (cores / JOBS) threads unless OMP_NUM_THREADS is set.
#
# One run (one config, one seed) takes about the quickstart's time: under 10 minutes on 2 CPU cores for
# round_robin; strategies sum/pcgrad read one batch of every task per step (about 3x the work per step, a third
# of the steps). UPGrad needs `pip install 'mtbert[torchjd]'`. On a GPU, JOBS=4..8 runs several at once.
set -euo pipefail
SEEDS=${SEEDS:-1 2}; RUNS=${RUNS:-runs/weighting}; JOBS=${JOBS:-1}; PY=${PYTHON:-python}
read -r -a SEED_LIST <<< "$SEEDS"
if [ "$JOBS" -gt 1 ] && [ -z "${OMP_NUM_THREADS:-}" ]; then
  OMP_NUM_THREADS=$(( $(nproc) / JOBS > 0 ? $(nproc) / JOBS : 1 )); export OMP_NUM_THREADS
fi
"$PY" examples/run_experiments.py examples/configs/weighting/*.yaml --profile paper --seeds "${SEED_LIST[@]}" \
  --runs_dir "$RUNS" --jobs "$JOBS" --no_progress --override write_predictions=false
"$PY" - "$RUNS/paper" <<'PY'
import json, pathlib, statistics, sys
root = pathlib.Path(sys.argv[1])
rows = []
for config in sorted(p for p in root.iterdir() if p.is_dir()):
    per_step, average = [], []
    for seed in sorted(config.glob("seed*")):
        metrics, state = seed / "metrics.json", seed / "trainer_state.json"
        if not (metrics.exists() and state.exists()):
            continue
        m, s = json.loads(metrics.read_text()), json.loads(state.read_text())
        per_step.append(m["train_runtime"] / max(1, s["global_step"]))
        average.append(m.get("eval_average", float("nan")))
    if per_step:
        sd = lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0  # noqa: E731
        rows.append(f"| {config.name} | {len(per_step)} | {statistics.mean(average):.4f} ± {sd(average):.4f} | "
                    f"{statistics.mean(per_step):.3f} ± {sd(per_step):.3f} |")
table = ["| config | seeds | eval_average | seconds per step |", "|---|---|---|---|", *rows]
(root / "weighting_time_per_step.md").write_text("\n".join(table) + "\n")
print("\n".join(table))
PY
