#!/usr/bin/env python
"""Prediction speed of a distilled student against its teacher, side by side in one process.

Both are saved mtbert models (e.g. outputs/minilm_distilled and outputs/mpnet_best). Each reads the three test files
(SST, QQP, STS: the rows of the leaderboard files) tokenized once with its own tokenizer in its own heads' layouts
(not timed: the same one-off ``datasets.map`` for both), then predicts every task with
``mtbert.inference.predict.predict_task``
(rows sorted by length, batches of ``--batch_size``) in the same precision (``--bf16``: autocast for both, or
neither). Repeats alternate which model goes first; min/median/max of the rows per second are printed, then the
per-repeat ratios, and last ``student/teacher prediction speed ratio: X`` (the ratio of the median rows per second).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
from common import DEFAULT_DATA_DIR, machine_line

from mtbert.data import load_task_splits, tokenize_task
from mtbert.inference.loading import load_model_and_tokenizer
from mtbert.inference.predict import predict_task


def prepared(path: str, data_dir: str, rows: int | None):
    model, tokenizer = load_model_and_tokenizer(path)
    max_length = getattr(model.config, "max_seq_length", None) or 128
    splits = {}
    for task, spec in model.config.tasks.items():
        test = load_task_splits(task, spec, "minbert", data_dir, splits=("test",))["test"]
        if rows:
            test = test.select(range(min(rows, len(test))))
        splits[task] = tokenize_task(test, tokenizer, spec, max_length)
    return model, tokenizer, splits


def predict_all(model, tokenizer, splits, batch_size: int, bf16: bool) -> int:
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else None
    done = 0
    for task, dataset in splits.items():
        predict_task(model, task, dataset, batch_size, tokenizer.pad_token_id or 0, autocast=autocast, progress=False)
        done += len(dataset)
    return done


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", required=True, help="the distilled model's folder")
    parser.add_argument("--teacher", required=True, help="the teacher's folder")
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--rows", type=int, default=None, help="rows per test file (default: all)")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for both models")
    args = parser.parse_args(argv)
    print(machine_line("cpu"))
    models = {"student": prepared(args.student, args.data_dir, args.rows),
              "teacher": prepared(args.teacher, args.data_dir, args.rows)}  # fmt: skip
    for name, (model, _, splits) in models.items():
        size = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"{name}: {model.config.encoder.get('model_type')} {size:.1f}M parameters, "
              f"{sum(len(s) for s in splits.values())} rows over {', '.join(splits)}")  # fmt: skip
    with contextlib.suppress(Exception):
        predict_all(*models["student"], args.batch_size, args.bf16)  # warm-up (first-call allocations)
    speed: dict[str, list[float]] = {"student": [], "teacher": []}
    for repeat in range(args.repeats):
        order = ["student", "teacher"] if repeat % 2 == 0 else ["teacher", "student"]
        for name in order:
            start = time.perf_counter()
            done = predict_all(*models[name], args.batch_size, args.bf16)
            speed[name].append(done / (time.perf_counter() - start))
    for name, values in speed.items():
        middle = statistics.median(values)
        print(f"{name:8s} rows/s: min {min(values):.1f}  median {middle:.1f}  max {max(values):.1f}")
    ratios = [s / t for s, t in zip(speed["student"], speed["teacher"])]
    print(f"per-repeat ratios student/teacher: {', '.join(f'{r:.2f}' for r in ratios)}")
    ratio = statistics.median(speed["student"]) / statistics.median(speed["teacher"])
    print(f"student/teacher prediction speed ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
