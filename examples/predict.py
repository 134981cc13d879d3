#!/usr/bin/env python
"""Write minBERT leaderboard files (dev and test, every task) for a saved mtbert model and any data folder.

    python examples/predict.py --model outputs/quickstart --data_dir ../shared/data --output_dir preds/

Several --model folders (e.g. one recipe trained with several seeds) predict as an ensemble: class probabilities,
paraphrase probabilities (or cosines) and similarity scores are averaged over the models. The ensemble's dev
metrics are printed as JSON and written to <output_dir>/ensemble_metrics.json.

    python examples/predict.py --model outputs/seed1 outputs/seed2 outputs/seed3 --data_dir ../shared/data \\
        --output_dir preds/ensemble
"""

import argparse
import json

from mtbert.arguments import DataArguments
from mtbert.loading import load_config
from mtbert.run import main_guard, predict


def trained_length(model_path: str) -> int:
    """The ``max_seq_length`` a model was trained with (``config.json``), so prediction truncates as training did."""
    return int(getattr(load_config(model_path), "max_seq_length", None) or 128)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", required=True, nargs="+",
        help="folder of a saved mtbert model (or a Hub id); several: predict with their ensemble",
    )
    parser.add_argument("--data_dir", help="minBERT data folder (data_source minbert)")
    parser.add_argument("--data_source", default="minbert", choices=["minbert", "hub"])
    parser.add_argument("--output_dir", required=True, help="where the *-output.csv files go")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument(
        "--max_seq_length", type=int, default=None,
        help="truncation (default: the length the model was trained with, recorded in its config.json; else 128)",
    )
    parser.add_argument("--task_data", default=None, help="per-task data sources as JSON (see README, Your own task)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cpu)")
    args = parser.parse_args(argv)
    max_seq_length = args.max_seq_length or main_guard(trained_length, args.model[0])
    data_args = main_guard(
        DataArguments,
        data_source=args.data_source,
        data_dir=args.data_dir,
        max_seq_length=max_seq_length,
        task_data=args.task_data,
    )
    if len(args.model) == 1:
        written = main_guard(predict, args.model[0], data_args, args.output_dir, args.batch_size, args.device)
        metrics = None
    else:
        from mtbert.ensemble import predict_ensemble

        written, metrics = main_guard(
            predict_ensemble, args.model, data_args, args.output_dir, args.batch_size, args.device
        )
    for path in written:
        print(path)
    if metrics is not None:
        print(json.dumps(metrics, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
