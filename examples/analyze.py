#!/usr/bin/env python
"""Error analysis of a trained model on the dev sets: QQP accuracy on paraphrases vs non-paraphrases (the paper's
Table 6) with the most confident false positives and negatives, an SST confusion matrix and an STS scatter plot.

    python examples/analyze.py outputs/quickstart --data_dir ../shared/data
    python examples/analyze.py runs/fast/t3_round_robin/seed1 --output_dir analysis/t3 --top_n 10

Writes analysis.md and the PNGs into --output_dir (default: <model>/analysis) and prints a summary. Only the tasks
the model has are analysed (--tasks picks some of them). Sequences are cut at the length the model was trained with
(its config.json) unless --max_seq_length says otherwise; --batch_size is the older name of
--per_device_eval_batch_size.
"""

import argparse
import os
import sys

import datasets
import transformers

from mtbert.cli.arguments import add_argument_with_aliases
from mtbert.cli.run import main_guard
from mtbert.inference.loading import load_config
from mtbert_research.analysis import analyze, summary


def trained_length(model_path: str) -> int:
    """The ``max_seq_length`` the model was trained with (its ``config.json``), else 128."""
    return int(getattr(load_config(model_path), "max_seq_length", None) or 128)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "model",
        nargs="?",
        default=None,
        help="folder of a saved mtbert model (with its tokenizer); or --model_name_or_path",
    )
    parser.add_argument("--model_name_or_path", default=None, help="the same as the positional model folder")
    parser.add_argument("--data_dir", default="../shared/data", help="minBERT data folder (default: ../shared/data)")
    parser.add_argument(
        "--output_dir", default=None, help="where analysis.md and the PNGs go (default: <model>/analysis)"
    )
    parser.add_argument(
        "--tasks", nargs="+", default=None, help="analyse only these tasks (default: all the model has)"
    )
    parser.add_argument("--top_n", type=int, default=5, help="most confident false positives/negatives to list")
    add_argument_with_aliases(parser, "--per_device_eval_batch_size", "--batch_size", type=int, default=128)
    parser.add_argument(
        "--max_seq_length",
        type=int,
        default=None,
        help="truncation (default: the length the model was trained with, from its config.json; else 128)",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.model and args.model_name_or_path and args.model != args.model_name_or_path:
        parser.error("name the model once: the positional folder or --model_name_or_path")
    model = args.model or args.model_name_or_path
    if not model:
        parser.error("the following arguments are required: model (or --model_name_or_path)")
    if not os.path.isdir(model):
        parser.error(f"{model!r} is not a folder")
    max_seq_length = args.max_seq_length or main_guard(trained_length, model)
    output_dir = args.output_dir or os.path.join(model, "analysis")
    datasets.disable_progress_bars()  # keep the tokenizing and weight-loading bars out of the summary
    transformers.utils.logging.disable_progress_bar()
    report = main_guard(
        analyze,
        model,
        args.data_dir,
        output_dir,
        tasks=args.tasks,
        top_n=args.top_n,
        batch_size=args.per_device_eval_batch_size,
        max_seq_length=max_seq_length,
        device=args.device,
        progress=sys.stderr.isatty(),
    )
    print(summary(report))


if __name__ == "__main__":
    main()
