"""The flow of one run, shared by ``examples/train.py`` and ``examples/predict.py``.

load data → tokenize once per split → build the model from a backbone (or an mtbert checkpoint) → train with
``MultitaskTrainer`` → evaluate every dev set → save model, tokenizer, ``metrics.json`` and leaderboard files.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

import datasets
import torch
import transformers
from transformers import AutoTokenizer, set_seed

from .arguments import DataArguments, ModelArguments
from .configuration_mtbert import MultitaskBertConfig, MultitaskConfigError
from .checkpoints import CheckpointError, resolve_resume
from .data import DataFileError, load_task_splits, tokenize_task
from .modeling_mtbert import MultitaskBertModel
from .predict import write_predictions
from .trainer import MultitaskTrainer
from .training_args import MultitaskTrainingArguments

logger = logging.getLogger("mtbert")

USER_ERRORS = (MultitaskConfigError, DataFileError, CheckpointError)


def setup_logging(training_args: MultitaskTrainingArguments) -> None:
    """Info on the main process, warnings elsewhere, one format for mtbert, transformers and datasets."""
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", handlers=[logging.StreamHandler(sys.stdout)]
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


def is_mtbert_checkpoint(path: str) -> bool:
    config_file = os.path.join(path, "config.json")
    if not os.path.isfile(config_file):
        return False
    with open(config_file, encoding="utf-8") as handle:
        return json.load(handle).get("model_type") == MultitaskBertConfig.model_type


def build_model(model_args: ModelArguments) -> MultitaskBertModel:
    """A fresh multitask model on a pretrained backbone, or an mtbert checkpoint to continue from."""
    path = model_args.model_name_or_path
    if is_mtbert_checkpoint(path):
        logger.info("continuing from the mtbert checkpoint %s (its task heads are kept)", path)
        return MultitaskBertModel.from_pretrained(path, dtype="float32", use_safetensors=True)
    return MultitaskBertModel.from_encoder_pretrained(
        path,
        tasks=model_args.tasks,
        shared_encoder=model_args.shared_encoder,
        encoder_kwargs=model_args.encoder_kwargs(),
    )


def load_tokenized(
    tasks: dict[str, dict[str, Any]], data_args: DataArguments, tokenizer, splits=("train", "dev", "test")
) -> dict[str, dict[str, datasets.Dataset]]:
    """``{task: {split: tokenized Dataset}}`` for the tasks' heads."""
    out = {}
    hub = data_args.hub_datasets or {}
    for task, spec in tasks.items():
        raw = load_task_splits(
            task, spec, data_args.data_source, data_args.data_dir, hub.get(task), splits=splits
        )
        if data_args.max_eval_samples and "dev" in raw:
            raw["dev"] = raw["dev"].select(range(min(data_args.max_eval_samples, len(raw["dev"]))))
        out[task] = {split: tokenize_task(ds, tokenizer, spec, data_args.max_seq_length) for split, ds in raw.items()}
    return out


def count_parameters(model) -> str:
    total = sum(p.numel() for p in model.parameters())
    encoders = {id(e): e for e in model.task_encoders().values()}
    encoder = sum(p.numel() for e in encoders.values() for p in e.parameters())
    layout = "one shared encoder" if model.config.shared_encoder else f"{len(encoders)} encoders (one per task)"
    return f"{total / 1e6:.1f}M parameters: {layout} ({encoder / 1e6:.1f}M), heads {(total - encoder) / 1e3:.1f}K"


def train(
    model_args: ModelArguments, data_args: DataArguments, training_args: MultitaskTrainingArguments
) -> dict[str, float]:
    """Train, evaluate, save. Returns the final metrics (also written to ``<output_dir>/metrics.json``)."""
    setup_logging(training_args)
    logger.info(
        "world size %d (this is rank %d), device %s, strategy %s",
        training_args.world_size, training_args.process_index, training_args.device, training_args.strategy,
    )
    use_all_cores_when_alone(training_args)
    set_seed(training_args.seed)
    # cheap checks first: a bad checkpoint, backbone or data file fails before any weights are loaded
    resume = None
    if not training_args.eval_only:
        resume = resolve_resume(training_args.resume_from_checkpoint, training_args.output_dir, logger.warning)
    path = model_args.model_name_or_path
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        tasks = MultitaskBertConfig.from_pretrained(path).tasks if is_mtbert_checkpoint(path) else model_args.tasks
    except OSError as error:
        raise MultitaskConfigError(f"could not load the backbone {path!r}: {error}") from None
    data = load_tokenized(tasks, data_args, tokenizer)
    model = build_model(model_args)
    logger.info(count_parameters(model))
    trainer = MultitaskTrainer(
        model=model,
        args=training_args,
        train_datasets={t: d["train"] for t, d in data.items()},
        eval_datasets={t: d["dev"] for t, d in data.items()},
        max_train_samples=data_args.train_caps(tasks),
        processing_class=tokenizer,
    )
    metrics: dict[str, float] = {}
    if not training_args.eval_only:
        if resume:
            logger.info("resuming from %s", resume)
        result = trainer.train(resume_from_checkpoint=resume)
        metrics.update(result.metrics)  # with average_checkpoints, the model is already the average
        if torch.cuda.is_available():
            metrics["train_peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        # _internal_call: with push_to_hub, the stock save_model would push output_dir now (before evaluation,
        # with training_args.bin); the push below uploads the final model, code and card once training is scored.
        trainer.save_model(training_args.output_dir, _internal_call=True)
        trainer.save_state()  # trainer_state.json with the whole log history (per-task losses included)
    metrics.update(trainer.evaluate())
    if trainer.is_world_process_zero():
        os.makedirs(training_args.output_dir, exist_ok=True)
        with open(os.path.join(training_args.output_dir, "metrics.json"), "w", encoding="utf-8") as handle:
            json.dump(metrics, handle, indent=2, sort_keys=True)
        if data_args.write_predictions:
            written = write_predictions(
                trainer.accelerator.unwrap_model(trainer.model),
                {t: {"dev": d["dev"], "test": d["test"]} for t, d in data.items()},
                os.path.join(training_args.output_dir, "predictions"),
                batch_size=training_args.per_device_eval_batch_size,
                pad_token_id=tokenizer.pad_token_id or 0,
                known={(task, "dev"): result for task, result in trainer.last_eval_predictions.items()},
            )
            logger.info("wrote %d prediction files to %s", len(written), os.path.dirname(written[0]))
    trainer.accelerator.wait_for_everyone()
    summary = {k: round(v, 4) for k, v in metrics.items() if k.startswith("eval_") and not k.endswith("runtime")}
    logger.info("dev metrics: %s", json.dumps(summary))
    if training_args.push_to_hub and trainer.is_world_process_zero():
        from .hub import push_to_hub

        trainer._finish_current_push()  # a checkpoint upload (hub_strategy) still running
        repo_id = trainer.hub_model_id or training_args.hub_model_id
        commit = push_to_hub(
            trainer.accelerator.unwrap_model(trainer.model),
            tokenizer,
            repo_id or os.path.basename(os.path.abspath(training_args.output_dir)),
            metrics=metrics,
            training_args=training_args,
            data_args=data_args,
            token=training_args.hub_token,
            private=training_args.hub_private_repo,
            revision=training_args.hub_revision,
            commit_message="End of training",
        )
        logger.info("pushed model, tokenizer, code and model card: %s", commit.commit_url)
    return metrics


def predict(model_path: str, data_args: DataArguments, output_dir: str, batch_size: int = 128, device=None) -> list[str]:
    """Write the leaderboard files of a saved model for any data folder (dev and test splits)."""
    if model_path.startswith((".", "/", "~")) and not is_mtbert_checkpoint(os.path.expanduser(model_path)):
        raise MultitaskConfigError(f"--model {model_path!r}: not a saved mtbert model folder (no mtbert config.json)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        model = MultitaskBertModel.from_pretrained(model_path, dtype="float32", use_safetensors=True)
    except OSError as error:
        raise MultitaskConfigError(f"could not load the model {model_path!r}: {error}") from None
    if device is not None:
        model.to(device)
    data = load_tokenized(model.config.tasks, data_args, tokenizer, splits=("dev", "test"))
    return write_predictions(model, data, output_dir, batch_size=batch_size, pad_token_id=tokenizer.pad_token_id or 0)


def main_guard(fn, *args, **kwargs):
    """Run ``fn``; a configuration or data mistake exits with one clear line (code 2), not a traceback."""
    try:
        return fn(*args, **kwargs)
    except USER_ERRORS as error:
        print(f"mtbert: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


__all__ = ["train", "predict", "build_model", "load_tokenized", "main_guard"]
