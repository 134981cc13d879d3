#!/usr/bin/env python
"""Write minBERT leaderboard files (dev and test, every task) for a saved mtbert model and any data folder.

    python examples/predict.py --model_name_or_path outputs/quickstart --data_dir ../shared/data --output_dir preds/

Several --model_name_or_path folders (e.g. one recipe trained with several seeds) predict as an ensemble: class
probabilities, paraphrase probabilities (or cosines) and similarity scores are averaged over the models. The ensemble's
dev metrics are printed as JSON and written to <output_dir>/ensemble_metrics.json.

    python examples/predict.py --model_name_or_path outputs/seed1 outputs/seed2 outputs/seed3 \\
        --data_dir ../shared/data --output_dir preds/ensemble

The arguments are named as in examples/train.py and the Trainer (the older --model and --batch_size still work).
--max_eval_samples / --max_predict_samples predict only the first rows of the dev / test files (a quick check); the
files are then partial, which a warning and <output_dir>/PARTIAL say.

All the files or none: they are written into <parent>/.<name>.incomplete and moved into --output_dir together once
every one is written, so a task whose data or prediction fails leaves --output_dir as it was (files of the same name
are replaced; other files there are kept).

--quantize int8 predicts with every model's linear layers quantized to int8 (dynamic quantization, CPU only; off by
default): faster on most CPUs, predictions move a little (docs/guides/serving.md, "Faster CPU prediction").
--weights bf16 casts one model's weights to bf16 once before predicting (for GPUs: no autocast on every call); the
logits are still returned as float32. Not with --quantize int8.

--backend onnx|openvino runs the model's encoder passes on an ONNX Runtime / OpenVINO export of it (the one in
--export_dir, made by mtbert-export from this model, else one made on first use in a cache folder); the outputs
equal torch's to ~1e-5 (docs/guides/serving.md). CPU only, one model.

--input_file predicts every task of one model for a file of your own inputs instead, into one file with a column per
task (<output_dir>/predictions.csv, .tsv or .jsonl, as the input): a CSV, TSV or JSON Lines file with a text column
(and text_pair for sentence pairs; an optional id column is kept). --tasks all (the default) picks every task whose
input the file holds (pairs: the pair tasks; single sentences: the one-sentence and token tasks), or list some. The
tasks share the encoder: one pass per distinct input encoding (e.g. two concat_sep pair tasks make one).

    python examples/predict.py --model_name_or_path outputs/quickstart --input_file pairs.csv --tasks all \
        --output_dir preds/
"""

import argparse
import json
import logging
import os
import sys

from mtbert.cli.arguments import DashValueMixin, DataArguments, add_argument_with_aliases, check_max_seq_length
from mtbert.cli.run import (
    check_device,
    check_output_folder,
    check_prediction_route,
    check_weights,
    main_guard,
    predict,
    predict_inputs,
)
from mtbert.hub.publish import discard, fresh_staging_dir, publish
from mtbert.inference.loading import load_config
from mtbert.inference.predict import PARTIAL_NOTE, input_tasks, read_inputs
from mtbert.inference.serving import resolve_backend
from mtbert.models.mtbert.configuration_mtbert import MultitaskConfigError
from mtbert.models.mtbert.modeling_mtbert import QUANTIZE_CHOICES, resolve_quantize


def check_models(models: list[str]) -> None:
    """Every ``--model_name_or_path`` is a saved mtbert model (config.json and weight headers, no weights read)."""
    for model in models:
        try:
            load_config(model)
        except MultitaskConfigError as error:
            raise MultitaskConfigError(f"model_name_or_path: {error}") from None


def input_file_tasks(model_path: str, input_file: str, tasks: list[str] | None) -> list[str]:
    """The tasks ``--tasks`` picks for ``--input_file`` (the file read, the model's config; no weights)."""
    return list(input_tasks(load_config(model_path).tasks, tasks, read_inputs(input_file)))


def trained_length(model_path: str) -> int:
    """The ``max_seq_length`` a model was trained with (``config.json``), so prediction truncates as training did."""
    try:
        config = load_config(model_path)
    except MultitaskConfigError as error:
        raise MultitaskConfigError(f"model_name_or_path: {error}") from None
    return int(getattr(config, "max_seq_length", None) or 128)


class _OneLineParser(DashValueMixin, argparse.ArgumentParser):
    """argparse's mistakes (a value its type or choices refuse, a missing flag) as one ``mtbert: error:`` line and
    exit code 2, like every other setting, rather than the usage text."""

    def error(self, message: str):
        print(f"mtbert: error: {' '.join(str(message).split())}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of this script (tests/cli/test_settings_properties.py fuzzes every flag it has)."""
    parser = _OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_argument_with_aliases(
        parser,
        "--model_name_or_path",
        "--model",
        nargs="+",
        help="folder of a saved mtbert model (or a Hub id); several: predict with their ensemble (required)",
    )
    parser.add_argument("--data_dir", help="minBERT data folder (data_source minbert)")
    parser.add_argument("--data_source", default="minbert", choices=["minbert", "hub"])
    parser.add_argument("--output_dir", required=True, help="where the *-output.csv (or predictions.*) files go")
    add_argument_with_aliases(parser, "--per_device_eval_batch_size", "--batch_size", type=int, default=128)
    parser.add_argument(
        "--max_seq_length",
        type=int,
        default=None,
        help="truncation (default: the length the model was trained with, recorded in its config.json; else 128)",
    )
    parser.add_argument("--max_eval_samples", type=int, default=None, help="predict only the first n dev rows")
    parser.add_argument("--max_predict_samples", type=int, default=None, help="predict only the first n test rows")
    parser.add_argument("--task_data", default=None, help="per-task data sources as JSON (docs/guides/own-task.md)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cpu)")
    parser.add_argument(
        "--quantize",
        default="none",
        choices=QUANTIZE_CHOICES,
        help="int8: dynamic int8 quantization of the linear layers for CPU prediction (default: none, float32)",
    )
    parser.add_argument(
        "--weights",
        default="float32",
        choices=["float32", "bf16"],
        help="bf16: the model's weights cast to bf16 once (GPU prediction; no autocast per call). Default float32",
    )
    parser.add_argument(
        "--backend",
        default="torch",
        choices=["torch", "onnx", "openvino"],
        help="onnx/openvino: run an export of the model with ONNX Runtime / OpenVINO (default: torch)",
    )
    parser.add_argument(
        "--export_dir",
        default=None,
        help="with --backend: the export to run (made there if missing; default: a cache folder)",
    )
    parser.add_argument(
        "--input_file",
        default=None,
        help="a .csv/.tsv/.jsonl file of inputs (text, and text_pair for pairs) to predict instead of the leaderboard "
        "files: <output_dir>/predictions.<ext>, a column per task",
    )
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=None,
        help="with --input_file: the tasks to predict, or all (the default: every task whose input the file holds)",
    )
    return parser


def check_input_file_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--tasks goes with --input_file, and --input_file with one model and none of the leaderboard's data flags."""
    if args.input_file is None:
        if args.tasks is not None:
            parser.error(
                "--tasks picks the tasks to predict for --input_file; pass --input_file (the leaderboard "
                "files cover every task with a test split)"
            )
        return
    if len(args.model_name_or_path) > 1:
        parser.error("--input_file predicts with one model; pass one --model_name_or_path")
    data_flags = [
        f"--{name}"
        for name in ("data_dir", "task_data", "max_eval_samples", "max_predict_samples")
        if getattr(args, name) is not None
    ]
    if args.data_source != "minbert":
        data_flags.append("--data_source")
    if data_flags:
        parser.error(f"{', '.join(data_flags)}: the leaderboard data, which --input_file replaces; give one of them")


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    models = args.model_name_or_path
    if not models:
        parser.error("the following arguments are required: --model_name_or_path")
    check_input_file_flags(parser, args)
    quantize = main_guard(resolve_quantize, args.quantize, args.device)  # CPU only: refused before any work
    main_guard(check_weights, args.weights, quantize)
    if args.weights != "float32" and len(models) > 1:
        parser.error("--weights bf16 predicts with one model (not an ensemble)")
    backend = main_guard(resolve_backend, args.backend)  # a runtime that is installed: refused before any work
    if backend is not None and len(models) > 1:
        parser.error(f"--backend {backend} predicts with one model; pass one --model_name_or_path")
    main_guard(check_prediction_route, backend, quantize, args.weights, args.export_dir, args.device, flag="--")
    main_guard(check_device, args.device)  # a device this machine has: refused before any model loads
    capped = args.max_eval_samples is not None or args.max_predict_samples is not None
    if len(models) > 1 and capped:
        parser.error("--max_eval_samples/--max_predict_samples predict with one model (an ensemble scores every row)")
    if args.per_device_eval_batch_size < 1:
        parser.error(f"--per_device_eval_batch_size must be >= 1, got {args.per_device_eval_batch_size}")
    main_guard(check_output_folder, args.output_dir)
    # 0 is a length like any other (refused below), not "unset"
    max_seq_length = args.max_seq_length if args.max_seq_length is not None else main_guard(trained_length, models[0])
    for model in models:  # above the model's positions: refused before any file is written
        main_guard(check_max_seq_length, max_seq_length, model)
    batch_size = args.per_device_eval_batch_size
    if args.input_file is not None:  # every task of one file of inputs, into one file
        main_guard(check_models, models)
        tasks = main_guard(input_file_tasks, models[0], args.input_file, args.tasks)
        print(
            main_guard(
                predict_inputs,
                models[0],
                args.input_file,
                args.output_dir,
                tasks,
                batch_size,
                args.device,
                quantize,
                max_seq_length,
                args.weights,
                backend,
                args.export_dir,
            )
        )
        return
    data_args = main_guard(
        DataArguments,
        data_source=args.data_source,
        data_dir=args.data_dir,
        max_seq_length=max_seq_length,
        task_data=args.task_data,
        max_eval_samples=args.max_eval_samples,
        max_predict_samples=args.max_predict_samples,
    )
    main_guard(check_models, models)  # saved mtbert models, each: refused before any weights load
    if len(models) == 1:
        written = main_guard(
            predict,
            models[0],
            data_args,
            args.output_dir,
            batch_size,
            args.device,
            quantize,
            args.weights,
            backend,
            args.export_dir,
        )
        metrics = None
    else:
        from mtbert.inference.ensemble import predict_ensemble

        # all the ensemble's files or none: written beside output_dir, moved in together
        staging = fresh_staging_dir(args.output_dir)
        try:
            written, metrics = main_guard(
                predict_ensemble, models, data_args, staging, batch_size, args.device, quantize
            )
        except BaseException:
            discard(staging)
            raise
        publish(staging, args.output_dir, replace=[PARTIAL_NOTE])
        written = [os.path.join(args.output_dir, os.path.basename(path)) for path in written]
    for path in written:
        print(path)
    if metrics is not None:
        print(json.dumps(metrics, indent=2, sort_keys=True))


def setup_logging() -> None:
    """mtbert's info lines (int8 quantization, an ensemble's dev averages) and warnings on stderr; the data reports
    stay quiet (warnings only). stdout keeps only the written paths and the ensemble's metrics."""
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler(sys.stderr)],
    )
    logging.getLogger("mtbert").setLevel(logging.INFO)
    logging.getLogger("mtbert.data").setLevel(logging.WARNING)


if __name__ == "__main__":
    setup_logging()
    main()
