#!/usr/bin/env python
"""Average the weights of several checkpoints of one run into one model (checkpoint averaging, "model soups").

    python examples/average_checkpoints.py --checkpoints runs/x/checkpoint-100 runs/x/checkpoint-200 \\
        --output_dir averaged/
    python examples/average_checkpoints.py --from_output_dir runs/x --last 3 --output_dir averaged/

The result is an ordinary saved mtbert model (weights, config, remote code and the tokenizer of the last
checkpoint), so examples/predict.py and from_pretrained load it like any other. Keep enough checkpoints while
training (save_total_limit) to have something to average.
"""

import argparse
import json
import os
import sys

from mtbert.cli.run import main_guard
from mtbert.models.mtbert.configuration_mtbert import MultitaskConfigError


def choose_checkpoints(args) -> list[str]:
    from mtbert.inference.averaging import find_checkpoints

    if args.checkpoints:
        return list(args.checkpoints)
    if not os.path.isdir(args.from_output_dir):
        raise MultitaskConfigError(f"--from_output_dir {args.from_output_dir!r} is not a folder")
    found = find_checkpoints(args.from_output_dir)
    complete = find_checkpoints(args.from_output_dir, complete_only=True)
    if found and not complete:
        complete = found  # not written by MultitaskTrainer: no completeness markers to go by
    for folder in found:
        if folder not in complete:
            print(f"mtbert: skipping {folder} (incomplete: no mtbert_checkpoint.json)", file=sys.stderr)
    if not complete:
        raise MultitaskConfigError(f"no checkpoint-<step> folder in {args.from_output_dir!r}")
    if args.last is not None:
        if args.last < 1:
            raise MultitaskConfigError(f"--last must be at least 1, got {args.last}")
        if args.last > len(complete):
            names = ", ".join(os.path.basename(f) for f in complete)
            raise MultitaskConfigError(
                f"--last {args.last}: {args.from_output_dir!r} has only {len(complete)} checkpoint(s) ({names})"
            )
        complete = complete[-args.last :]
    return complete


def average(args) -> list[str]:
    from transformers import AutoTokenizer

    from mtbert.inference.averaging import load_averaged_model

    checkpoints = choose_checkpoints(args)
    model = load_averaged_model(checkpoints)  # checks every folder and its weights first
    tokenizer_source = args.tokenizer or checkpoints[-1]
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    except (OSError, ValueError) as error:
        raise MultitaskConfigError(
            f"no tokenizer in {tokenizer_source!r} ({error}); pass --tokenizer with the run's output folder"
        ) from None
    model.save_pretrained(args.output_dir)
    tokenizer.save_pretrained(args.output_dir)
    with open(os.path.join(args.output_dir, "averaged_from.json"), "w", encoding="utf-8") as handle:
        json.dump({"checkpoints": [os.path.abspath(c) for c in checkpoints]}, handle, indent=2)
    return checkpoints


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoints", nargs="+", help="checkpoint folders to average (each with model.safetensors)")
    source.add_argument("--from_output_dir", help="a training output folder: average its checkpoint-<step> folders")
    parser.add_argument("--last", type=int, default=None, help="with --from_output_dir: only the N newest checkpoints")
    parser.add_argument("--output_dir", required=True, help="where the averaged model is saved")
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the last checkpoint)")
    args = parser.parse_args(argv)
    if args.last is not None and not args.from_output_dir:
        parser.error("--last goes with --from_output_dir")
    checkpoints = main_guard(average, args)
    print(f"averaged {len(checkpoints)} checkpoint(s) into {args.output_dir}:")
    for folder in checkpoints:
        print(f"  {folder}")


if __name__ == "__main__":
    main()
