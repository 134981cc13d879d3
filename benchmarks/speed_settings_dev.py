#!/usr/bin/env python
"""What the prediction speed settings cost in dev metrics, and what they gain in rows/s, for one trained model.

For a saved mtbert model (e.g. ``outputs/quickstart``) it predicts every task's dev set three ways, in one process:
fp32 (as trained), bf16 autocast, and int8 dynamic quantization of the linear layers (``predict.py --quantize
int8``), and prints each task's metrics, the mean of the primary metrics, the largest change of any dev metric
against fp32, and rows/s (prediction only, length-sorted batches, the median of ``--repeats`` passes).

    python benchmarks/speed_settings_dev.py --model outputs/quickstart
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from common import DEFAULT_DATA_DIR, machine_line

from mtbert.cli.arguments import DataArguments
from mtbert.cli.run import load_tokenized
from mtbert.inference.loading import load_model_and_tokenizer
from mtbert.inference.predict import predict_task
from mtbert.metrics import PRIMARY_METRIC, compute_task_metrics
from mtbert.models.mtbert.modeling_mtbert import quantize_int8


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a saved mtbert model folder")
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--settings", nargs="+", default=["fp32", "bf16", "int8"], choices=["fp32", "bf16", "int8"])
    args = parser.parse_args()
    import datasets
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    datasets.disable_progress_bars()
    print(machine_line(), flush=True)
    model, tokenizer = load_model_and_tokenizer(args.model)
    model.float().eval()
    max_seq_length = int(getattr(model.config, "max_seq_length", None) or 128)
    data_args = DataArguments(data_source="minbert", data_dir=args.data_dir, max_seq_length=max_seq_length)
    dev = {
        task: splits["dev"]
        for task, splits in load_tokenized(model.config.tasks, data_args, tokenizer, splits=("dev",)).items()
    }
    rows = sum(len(d) for d in dev.values())
    results = {}
    for setting in args.settings:
        run_model = quantize_int8(model) if setting == "int8" else model
        autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if setting == "bf16" else None
        timings, metrics = [], {}
        for _ in range(args.repeats):
            start = time.perf_counter()
            outputs = {
                task: predict_task(
                    run_model,
                    task,
                    ds,
                    batch_size=args.batch_size,
                    pad_token_id=tokenizer.pad_token_id or 0,
                    autocast=autocast,
                    progress=False,
                )
                for task, ds in dev.items()
            }
            timings.append(time.perf_counter() - start)
        for task, out in outputs.items():
            spec = model.config.tasks[task]
            labels = dev[task]["label"]
            scores = compute_task_metrics(spec["kind"], out["predictions"], labels, spec.get("num_labels"))
            metrics.update({f"{task}_{k}": round(float(v), 4) for k, v in scores.items()})
        primary = [metrics[f"{t}_{PRIMARY_METRIC[model.config.tasks[t]['kind']]}"] for t in dev]
        metrics["mean"] = round(statistics.mean(primary), 4)
        speed = rows / statistics.median(timings)
        results[setting] = (metrics, speed)
        print(f"{setting}: {rows / statistics.median(timings):.1f} rows/s; {json.dumps(metrics)}", flush=True)
    if "fp32" in results:
        base, base_speed = results["fp32"]
        for setting, (metrics, speed) in results.items():
            if setting == "fp32":
                continue
            change = max(abs(metrics[k] - base[k]) for k in base)
            worst = max(base, key=lambda k: abs(metrics[k] - base[k]))
            print(
                f"{setting} vs fp32: speed {speed / base_speed:.2f}x, largest dev-metric change {change:.4f} "
                f"({worst}: {base[worst]:.4f} -> {metrics[worst]:.4f})"
            )


if __name__ == "__main__":
    main()
