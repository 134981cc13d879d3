#!/usr/bin/env python
"""Error analysis of a trained model on the dev sets: QQP accuracy on paraphrases vs non-paraphrases (the paper's
Table 6) with the most confident false positives and negatives, an SST confusion matrix and an STS scatter plot.

    python examples/analyze.py outputs/quickstart --data_dir ../shared/data
    python examples/analyze.py runs/fast/t3_round_robin/seed1 --output_dir analysis/t3 --top_n 10 --max_seq_length 64

Writes analysis.md and the PNGs into --output_dir (default: <model>/analysis) and prints a summary. Only the tasks
the model has are analysed (--tasks picks some of them).
"""

import argparse
import os
import sys

import datasets
import transformers

from mtbert.run import main_guard
from mtbert_research.analysis import analyze, summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="folder of a saved mtbert model (with its tokenizer)")
    parser.add_argument("--data_dir", default="../shared/data", help="minBERT data folder (default: ../shared/data)")
    parser.add_argument("--output_dir", default=None,
                        help="where analysis.md and the PNGs go (default: <model>/analysis)")
    parser.add_argument("--tasks", nargs="+", default=None,
                        help="analyse only these tasks (default: all the model has)")
    parser.add_argument("--top_n", type=int, default=5, help="most confident false positives/negatives to list")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--max_seq_length", type=int, default=128,
                        help="truncation; use the value the model was trained with (the fast profile: 64)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.model):
        parser.error(f"{args.model!r} is not a folder")
    output_dir = args.output_dir or os.path.join(args.model, "analysis")
    datasets.disable_progress_bars()  # keep the tokenizing and weight-loading bars out of the summary
    transformers.utils.logging.disable_progress_bar()
    report = main_guard(
        analyze, args.model, args.data_dir, output_dir, tasks=args.tasks, top_n=args.top_n,
        batch_size=args.batch_size, max_seq_length=args.max_seq_length, device=args.device,
        progress=sys.stderr.isatty(),
    )
    print(summary(report))


if __name__ == "__main__":
    main()
