"""The steps a script calls, shared by ``examples/train.py`` (the recipe: arguments → data → model → trainer →
train/evaluate/predict/save) and ``examples/predict.py``: logging, loading and tokenizing each task's splits,
building the model, saving, ``metrics.json``, leaderboard files, the final Hub push, and one-line user errors.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import shutil
import sys
from typing import Any

import datasets
import torch
import transformers
from transformers import AutoTokenizer

from ..data.sources import load_task_data, shared_sources
from ..data.tokenization import tokenize_task
from ..data.validation import DataFileError
from ..inference.loading import is_mtbert_checkpoint, load_config, load_model, load_model_and_tokenizer, load_tokenizer
from ..inference.predict import TaskSplits, cap_splits, predict_file, write_predictions
from ..inference.prediction_speed import WEIGHT_DTYPES, cast_weights
from ..models.mtbert.configuration_mtbert import MultitaskConfigError
from ..models.mtbert.modeling_mtbert import MultitaskBertModel, quantize_int8, resolve_quantize
from ..training.checkpoints import CheckpointError, checkpoint_folders
from ..training.training_args import MultitaskTrainingArguments
from .arguments import DataArguments, ModelArguments

logger = logging.getLogger("mtbert")

USER_ERRORS = (MultitaskConfigError, DataFileError, CheckpointError)


def setup_logging(training_args: MultitaskTrainingArguments) -> None:
    """Info on the main process, warnings elsewhere, one format for mtbert, transformers and datasets."""
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    level = logging.INFO if training_args.should_log else logging.WARNING
    logger.setLevel(level)
    logging.getLogger("mtbert.data").setLevel(level)
    transformers.utils.logging.set_verbosity(level)
    datasets.utils.logging.set_verbosity(logging.WARNING)


def use_all_cores_when_alone(training_args: MultitaskTrainingArguments) -> None:
    """``accelerate launch`` without a config pins every process to one CPU thread (OMP_NUM_THREADS=1), which
    makes a single CPU process several times slower than ``python``; a lone CPU process takes all cores back."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    launched_by_accelerate = any(k.startswith("ACCELERATE_") for k in os.environ)
    if (
        launched_by_accelerate
        and training_args.world_size == 1
        and training_args.device.type == "cpu"
        and torch.get_num_threads() == 1
        and cores > 1
    ):
        torch.set_num_threads(cores)
        logger.info("single CPU process under accelerate launch: using %d threads instead of 1", cores)


# What marks a folder as holding a finished run: its dev metrics, model weights or leaderboard files.
FINISHED_RUN_PATTERNS = ("metrics.json", "predictions", "model*.safetensors*", "pytorch_model*.bin*")
# An earlier run's final results that a training run with overwrite_output_dir replaces (taken away even when the new
# run does not write a file of that name, e.g. sharded weights after a single file, no predictions after some).
RESULT_PATTERNS = (
    *FINISHED_RUN_PATTERNS,
    "model.safetensors.index.json",
    "config.json",
    "generation_config.json",
    "README.md",
    "trainer_state.json",
    "training_args.bin",
    "tokenizer*.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "added_tokens.json",
    "*_mtbert.py",  # the model's code, saved beside it for trust_remote_code
)


def _matching(folder: str, patterns) -> list[str]:
    if not os.path.isdir(folder):
        return []
    return sorted(n for n in os.listdir(folder) if any(fnmatch.fnmatch(n, p) for p in patterns))


def finished_run_files(output_dir: str) -> list[str]:
    """The entries of ``output_dir`` that say a run finished there (``metrics.json``, weights, ``predictions/``)."""
    return _matching(output_dir, FINISHED_RUN_PATTERNS)


def earlier_results(output_dir: str) -> list[str]:
    """The entries of ``output_dir`` that belong to a run's final results (model, tokenizer, card, metrics,
    predictions, trainer state): replaced as a whole by a training run's results."""
    return _matching(output_dir, RESULT_PATTERNS)


def _same_folder(a, b) -> bool:
    try:
        return bool(a) and bool(b) and os.path.samefile(str(a), str(b))
    except OSError:
        return False


def check_output_dir(model_args: ModelArguments, training_args: MultitaskTrainingArguments) -> None:
    """Refuse (one line, before anything loads) a run that would write over a finished run in ``output_dir``, unless
    ``overwrite_output_dir`` is set, the training run resumes from a checkpoint, or it only scores the saved model of
    that very folder (its ``metrics.json``/``predictions/`` describe the same model)."""
    output_dir = training_args.output_dir
    if output_dir is None:
        return
    found = finished_run_files(output_dir)
    if not found or training_args.overwrite_output_dir:
        return
    do_train, _, _ = training_args.run_phases()
    if do_train and str(training_args.resume_from_checkpoint or "").lower() not in ("", "false", "none"):
        return
    if not do_train and _same_folder(model_args.model_name_or_path, output_dir):
        return
    raise MultitaskConfigError(
        f"output_dir {output_dir!r} already holds a finished run ({', '.join(found)}): pass --overwrite_output_dir "
        "true to replace it, --resume_from_checkpoint to continue it, or choose another --output_dir"
    )


def remove_earlier_checkpoints(training_args: MultitaskTrainingArguments) -> list[str]:
    """With ``overwrite_output_dir`` and no resume: the earlier run's ``checkpoint-*`` folders, which would otherwise
    be rotated, resumed or averaged with the new run's. Call on the main process only, right before training."""
    removed = checkpoint_folders(str(training_args.output_dir))
    for folder in removed:
        shutil.rmtree(folder)
    if removed:
        logger.warning(
            "overwrite_output_dir: removed the earlier run's %d checkpoint(s) in %s",
            len(removed),
            training_args.output_dir,
        )
    return removed


def build_model(model_args: ModelArguments) -> MultitaskBertModel:
    """A fresh multitask model on a pretrained backbone, or an mtbert checkpoint to continue from."""
    path = model_args.model_name_or_path
    if is_mtbert_checkpoint(path):
        logger.info("continuing from the mtbert checkpoint %s (its task heads are kept)", path)
        model = load_model(path)
        if model_args.default_task is not None:  # checked against the checkpoint's tasks
            model.config.set_default_task(model_args.default_task)
        return model
    return MultitaskBertModel.from_encoder_pretrained(
        path,
        tasks=model_args.tasks,  # type: ignore[arg-type]  # a mapping once ModelArguments has resolved it
        shared_encoder=model_args.shared_encoder,
        encoder_kwargs=model_args.encoder_kwargs(),
        default_task=model_args.default_task,
    )


def load_tokenized(
    tasks: dict[str, dict[str, Any]], data_args: DataArguments, tokenizer, splits=("train", "dev", "test")
) -> dict[str, TaskSplits]:
    """``{task: {split: tokenized Dataset}}`` for the tasks' heads."""
    out = {}
    sources = data_args.task_sources(tasks)  # each task's task_data entry, else data_source (test may be absent)
    # every task's files are read and checked before any is tokenized: a bad file fails fast
    # tasks reading one data set keep its training rows that lack their label (None): the rows stay aligned, so the
    # tasks share them (MultitaskTrainer: one encoder pass per batch), each learning from the rows labelled for it
    shared = shared_sources(sources)
    raws = {
        task: load_task_data(
            task, spec, sources[task], splits=splits, unlabelled_rows=("train",) if task in shared else ()
        )
        for task, spec in tasks.items()
    }
    for task, spec in tasks.items():
        raw = raws[task]
        caps = {"dev": data_args.max_eval_samples, "test": getattr(data_args, "max_predict_samples", None)}
        full_rows = cap_splits(raw, caps)  # remembered: leaderboard files of capped splits say they are partial
        out[task] = TaskSplits(
            {split: tokenize_task(ds, tokenizer, spec, data_args.max_seq_length) for split, ds in raw.items()},
            full_rows=full_rows,
        )
    return out


def count_parameters(model) -> str:
    total = sum(p.numel() for p in model.parameters())
    encoders = {id(e): e for e in model.task_encoders().values()}
    encoder = sum(p.numel() for e in encoders.values() for p in e.parameters())
    layout = "one shared encoder" if model.config.shared_encoder else f"{len(encoders)} encoders (one per task)"
    return f"{total / 1e6:.1f}M parameters: {layout} ({encoder / 1e6:.1f}M), heads {(total - encoder) / 1e3:.1f}K"


def load_tokenizer_and_tasks(model_args: ModelArguments):
    """The backbone's tokenizer and the tasks to train: the config's, or those of an mtbert checkpoint to continue.
    Cheap (no weights), so a wrong path fails before anything heavy is loaded."""
    path = model_args.model_name_or_path
    if is_mtbert_checkpoint(path):
        return load_tokenizer(path), load_config(path).tasks
    verbosity = transformers.utils.logging.get_verbosity()
    transformers.utils.logging.set_verbosity_error()  # the backbone's config is not dumped into the log here
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        tasks = model_args.tasks
    except (OSError, ValueError) as error:  # a missing or unreadable backbone, a name that is no repo id
        message = " ".join(str(error).split())
        raise MultitaskConfigError(f"model_name_or_path: could not load the backbone {path!r}: {message}") from None
    finally:
        transformers.utils.logging.set_verbosity(verbosity)
    return tokenizer, tasks


def save_model(trainer, output_dir: str) -> None:
    """The trained model and tokenizer in ``output_dir``. With ``push_to_hub`` the stock ``save_model`` would also push
    ``output_dir`` now (before evaluation, with ``training_args.bin``), so the weights are saved without it and
    :func:`push_final_model` uploads the scored model, code and card once."""
    if not trainer.args.push_to_hub:
        trainer.save_model(output_dir)
        return
    trainer.accelerator.wait_for_everyone()
    if trainer.args.should_save:
        trainer.accelerator.unwrap_model(trainer.model).save_pretrained(output_dir)
        if trainer.processing_class is not None:
            trainer.processing_class.save_pretrained(output_dir)


def write_metrics(output_dir: str, metrics: dict[str, float]) -> str:
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "metrics.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(metrics, handle, indent=2, sort_keys=True)
    return path


def write_leaderboard_files(trainer, data: dict[str, dict[str, datasets.Dataset]], output_dir: str) -> list[str]:
    """minBERT leaderboard files (dev and test) for every task that has a test split; the dev predictions of the
    last ``trainer.evaluate()`` are reused."""
    with_test = {
        t: TaskSplits({"dev": d["dev"], "test": d["test"]}, full_rows=getattr(d, "full_rows", None))
        for t, d in data.items()
        if "test" in d and "dev" in d
    }
    return write_predictions(
        trainer.accelerator.unwrap_model(trainer.model),
        with_test,
        output_dir,
        batch_size=trainer.args.per_device_eval_batch_size,
        pad_token_id=getattr(trainer.processing_class, "pad_token_id", None) or 0,
        known={(task, "dev"): result for task, result in trainer.last_eval_predictions.items()},
        progress=not trainer.args.disable_tqdm,  # --disable_tqdm silences the prediction bars too
        cudnn_attention=trainer.args.cudnn_attention,
    )


def write_model_card(
    trainer, metrics: dict[str, float], data_args: DataArguments, examples=None, folder: str | None = None
) -> str:
    """``<folder>/README.md`` (default ``output_dir``): the model card a push would upload
    (``mtbert.hub.render_model_card``), written locally beside the saved model with the final dev ``metrics``;
    ``examples`` are each task's widget and usage inputs (``mtbert.hub.examples_from_data``). Main process only;
    nothing is pushed."""
    from ..hub.card import render_model_card

    args = trainer.args
    repo_id = getattr(trainer, "hub_model_id", None) or args.hub_model_id
    card = render_model_card(
        trainer.accelerator.unwrap_model(trainer.model),
        metrics=metrics,
        training_args=args,
        data_args=data_args,
        repo_id=repo_id or os.path.basename(os.path.abspath(args.output_dir)),
        examples=examples,
    )
    path = os.path.join(folder or args.output_dir, "README.md")
    card.save(path)
    return path


def push_final_model(trainer, metrics: dict[str, float], data_args: DataArguments, examples=None):
    """One Hub commit with the final model, tokenizer, code and model card (``mtbert.hub.push_to_hub``), after any
    checkpoint upload (``hub_strategy``) still running has finished. Main process only."""
    from ..hub.push import push_to_hub

    args = trainer.args
    pending = getattr(trainer, "push_in_progress", None)
    if pending is not None:
        pending.wait_until_done()
    repo_id = getattr(trainer, "hub_model_id", None) or args.hub_model_id
    return push_to_hub(
        trainer.accelerator.unwrap_model(trainer.model),
        trainer.processing_class,
        repo_id or os.path.basename(os.path.abspath(args.output_dir)),
        metrics=metrics,
        training_args=args,
        data_args=data_args,
        token=args.hub_token,
        private=args.hub_private_repo,
        revision=args.hub_revision,
        commit_message="End of training",
        examples=examples,
    )


def check_prediction_route(backend: str | None, quantize: str | None, weights: str, export_dir: str | None,
                           device=None, flag: str = "") -> None:  # fmt: skip
    """The refusals that :func:`load_for_prediction` and ``examples/predict.py`` share (``flag="--"`` names the
    command-line flags): an export (``backend``, resolved) runs instead of torch's int8 or bf16 weights, on the CPU,
    and ``export_dir`` needs a backend."""
    if backend is None:
        if export_dir is not None:
            raise MultitaskConfigError(f"{flag}export_dir goes with {flag}backend onnx or openvino")
        return
    if quantize is not None:
        raise MultitaskConfigError(
            f"{flag}quantize int8 is torch's dynamic int8; {flag}backend {backend} runs an export instead "
            "(export it with --int8 static for int8)"
        )
    if weights != "float32":
        raise MultitaskConfigError(
            f"{flag}weights {weights} casts torch weights; {flag}backend {backend} runs an export instead"
        )
    if device is not None and torch.device(device).type != "cpu":
        raise MultitaskConfigError(f"{flag}backend {backend} runs on the CPU, not on device {device!r}")


def load_for_prediction(model_path: str, device=None, quantize: str | None = None, backend: str | None = None,
                        export_dir: str | None = None, weights: str = "float32"):  # fmt: skip
    """``(model, tokenizer)`` to predict with: the saved model (``quantize="int8"``: its linear layers int8, CPU
    only; ``weights="bf16"``: its weights cast to bf16 once), or with ``backend="onnx"|"openvino"`` the model whose
    passes run an export of it (``mtbert.inference.serving``)."""
    from ..inference.serving import load_runtime_model, resolve_backend

    quantize = resolve_quantize(quantize, device)
    check_weights(weights, quantize)
    backend = resolve_backend(backend)
    check_prediction_route(backend, quantize, weights, export_dir, device)
    if backend is not None:
        return load_runtime_model(model_path, backend, export_dir=export_dir)
    model, tokenizer = load_model_and_tokenizer(model_path, device=device)
    if quantize == "int8":
        model = quantize_int8(model, device=device, inplace=True)
    return cast_weights(model, weights), tokenizer


def predict(
    model_path: str,
    data_args: DataArguments,
    output_dir: str,
    batch_size: int = 128,
    device=None,
    quantize: str | None = None,
    weights: str = "float32",
    backend: str | None = None,
    export_dir: str | None = None,
) -> list[str]:
    """Write the leaderboard files of a saved model for any data folder (dev and test splits). ``quantize="int8"``
    predicts with the model's linear layers quantized to int8 (CPU only, checked before loading;
    ``modeling_mtbert.quantize_int8``); ``weights="bf16"`` with its weights cast to bf16 once
    (``mtbert.inference.prediction_speed.cast_weights``, for GPUs); ``backend="onnx"|"openvino"`` with an export of
    it."""
    model, tokenizer = load_for_prediction(model_path, device, quantize, backend, export_dir, weights)
    data = load_tokenized(model.config.tasks, data_args, tokenizer, splits=("dev", "test"))
    data = {task: splits for task, splits in data.items() if "test" in splits}  # files only for tasks with a test
    return write_predictions(model, data, output_dir, batch_size=batch_size, pad_token_id=tokenizer.pad_token_id or 0)


def predict_inputs(
    model_path: str,
    input_file: str,
    output_dir: str,
    tasks: list[str] | None = None,
    batch_size: int = 128,
    device=None,
    quantize: str | None = None,
    max_seq_length: int = 128,
    weights: str = "float32",
    backend: str | None = None,
    export_dir: str | None = None,
) -> str:
    """Predict the tasks ``tasks`` (``None`` or ``["all"]``: every task that fits) of a saved model for every row
    of ``input_file`` into ``<output_dir>/predictions.<ext>``, a column per task, the tasks sharing encoder passes
    (``mtbert.inference.predict.predict_file``); returns the file's path."""
    model, tokenizer = load_for_prediction(model_path, device, quantize, backend, export_dir, weights)
    return predict_file(model, tokenizer, input_file, output_dir, tasks, batch_size, max_seq_length)


def check_weights(weights: str, quantize: str | None = None) -> None:
    """``weights`` (``float32`` or ``bf16``) checked before any model loads; bf16 with int8 quantization refused."""
    if weights not in WEIGHT_DTYPES:
        raise MultitaskConfigError(f"weights: {weights!r} is not one of {', '.join(WEIGHT_DTYPES)}")
    if weights != "float32" and quantize:
        raise MultitaskConfigError(f"weights {weights} and quantize {quantize} exclude each other: pick one")


def check_device(device) -> None:
    """Refuse, before any model loads, a ``device`` that is no device name or that this machine does not have
    (``None``: the default, the CPU)."""
    if device is None:
        return
    from ..models.mtbert.modeling_mtbert import _as_device

    where = _as_device(device)  # not a device name: MultitaskConfigError naming it
    backend = {"cuda": torch.cuda, "xpu": getattr(torch, "xpu", None), "mps": torch.backends.mps}.get(where.type)
    if where.type == "cpu":
        ok = where.index in (None, 0)
    elif backend is None:
        ok = False
    else:
        count = backend.device_count() if hasattr(backend, "device_count") else int(backend.is_available())
        ok = backend.is_available() and (where.index or 0) < count
    if not ok:
        raise MultitaskConfigError(
            f"device {str(device)!r} is not available on this machine: use cpu"
            + (f" or cuda:0..cuda:{torch.cuda.device_count() - 1}" if torch.cuda.is_available() else "")
        )


def check_output_folder(output_dir) -> None:
    """Refuse, before any model loads, an ``output_dir`` that cannot hold the results (empty, a file, below a file)."""
    from ..hub.publish import output_folder_problem

    problem = output_folder_problem(output_dir)
    if problem:
        raise MultitaskConfigError(problem)


def main_guard(fn, *args, **kwargs):
    """Run ``fn``; a configuration or data mistake exits with one clear line (code 2), not a traceback."""
    try:
        return fn(*args, **kwargs)
    except USER_ERRORS as error:
        # one line, whatever the message holds (a quoted value with a newline, a library's multi-line text)
        print(
            f"mtbert: error: {' '.join(line.strip() for line in str(error).splitlines() if line.strip())}",
            file=sys.stderr,
        )
        raise SystemExit(2) from None


__all__ = [
    "build_model",
    "check_device",
    "check_output_dir",
    "check_output_folder",
    "check_prediction_route",
    "count_parameters",
    "earlier_results",
    "finished_run_files",
    "load_tokenized",
    "load_tokenizer_and_tasks",
    "main_guard",
    "predict",
    "predict_inputs",
    "push_final_model",
    "remove_earlier_checkpoints",
    "save_model",
    "setup_logging",
    "use_all_cores_when_alone",
    "write_leaderboard_files",
    "write_metrics",
    "write_model_card",
]
