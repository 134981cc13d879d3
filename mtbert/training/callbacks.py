"""``TrainerCallback``s for what a multitask run adds around the stock loop, usable with ``MultitaskTrainer``.

- :class:`CheckpointMarkerCallback`: marks each saved checkpoint complete (``mtbert_checkpoint.json``), which
  resuming and checkpoint averaging check for;
- :class:`CheckpointAveragingCallback`: at the end of training, the model becomes the mean of the weights of the last
  N complete checkpoints;
- :class:`ModelCardCallback`: writes mtbert's model card (heads, training settings, per-task ``model-index``) as
  ``README.md`` into every saved checkpoint, and into ``output_dir`` before a push, instead of the stock card.

``MultitaskTrainer`` adds the first always and the others when its arguments ask for them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..inference.averaging import average_checkpoints, find_checkpoints, load_state_dict_strictly
from .checkpoints import write_marker

logger = logging.getLogger(__name__)

__all__ = ["CheckpointAveragingCallback", "CheckpointMarkerCallback", "ModelCardCallback"]


def _barrier() -> None:
    """Wait for every rank (the main process writes markers and checkpoints the others then read)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


class CheckpointMarkerCallback(TrainerCallback):
    """After the stock Trainer has written ``checkpoint-<step>``, write its completeness marker (written last, so a
    run killed while saving leaves a folder that resuming recognises as incomplete)."""

    def on_save(self, args, state, control, **kwargs):
        if args.should_save:
            folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
            if os.path.isdir(folder):
                write_marker(folder, state.global_step)
        return control


class CheckpointAveragingCallback(TrainerCallback):
    """At the end of training, load the mean of the weights of the last ``count`` complete checkpoints of
    ``output_dir`` into the model (on every rank). ``averaged`` (and the log history, as ``averaged_checkpoints``)
    says how many were averaged; with fewer than 2 the model is left as it is."""

    def __init__(self, count: int):
        if count < 2:
            raise ValueError(f"checkpoint averaging needs at least 2 checkpoints, got {count}")
        self.count = count
        self.averaged: int | None = None

    def average_into(self, model, output_dir: str) -> int:
        checkpoints = find_checkpoints(output_dir, complete_only=True)[-self.count :]
        if len(checkpoints) < 2:
            logger.warning(
                "average_checkpoints: %d checkpoint(s) in %s, nothing to average", len(checkpoints), output_dir
            )
            return len(checkpoints)
        load_state_dict_strictly(model, average_checkpoints(checkpoints, dtype=next(model.parameters()).dtype))
        logger.info(
            "averaged the weights of %d checkpoints: %s",
            len(checkpoints),
            ", ".join(os.path.basename(c) for c in checkpoints),
        )
        return len(checkpoints)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        _barrier()  # the last checkpoint's marker is written by the main process
        self.averaged = self.average_into(model, args.output_dir)
        state.log_history.append({"averaged_checkpoints": self.averaged, "step": state.global_step})
        return control


class ModelCardCallback(TrainerCallback):
    """Renders ``README.md`` from mtbert's ``model_card.md``: the model's heads, the training settings and the latest
    per-task dev metrics of the log history. ``data_args`` names each task's dataset and split; ``examples``
    (``{task: {"text", "text_pair"}}``, e.g. each task's first dev row) are the card's widget and usage inputs;
    ``card_kwargs`` (``license``, ``language``, ``tags``, ``finetuned_from``, ``dataset``, ``model_name``) are the
    stock ``create_model_card`` options. ``MultitaskTrainer.create_model_card`` (which ``push_to_hub`` calls) writes
    ``<output_dir>/README.md`` through this callback, and every saved ``checkpoint-<step>`` gets its own card (with
    the dev metrics logged so far; rendering takes milliseconds). A card that cannot be rendered at a checkpoint is
    logged as a warning and does not stop training."""

    def __init__(self, data_args=None, examples=None, **card_kwargs):
        self.data_args = data_args
        self.examples = examples
        self.card_kwargs = card_kwargs

    def on_save(self, args, state, control, model=None, **kwargs):
        folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        if args.should_save and model is not None and os.path.isdir(folder):
            try:
                self.write(model, args, state, folder=folder)
            except Exception as error:  # a card is documentation: never lose a run over it
                logger.warning("could not write the model card of %s: %s", folder, error)
        return control

    def write(self, model, args, state, repo_id: str | None = None, folder: str | None = None, **overrides) -> str:
        from ..hub.card import eval_metrics_from_log_history, render_model_card

        options = {**self.card_kwargs, **{k: v for k, v in overrides.items() if v is not None}}
        data_args = options.pop("data_args", self.data_args)
        tags, dataset = options.get("tags"), options.get("dataset")
        card = render_model_card(
            model,
            metrics=eval_metrics_from_log_history(state.log_history),
            training_args=args,
            data_args=data_args,
            repo_id=repo_id or options.get("model_name") or Path(args.output_dir).absolute().name,
            base_model=options.get("finetuned_from"),
            license=options.get("license") or "apache-2.0",
            language=options.get("language") or "en",
            tags=[tags] if isinstance(tags, str) else tags,
            datasets=[dataset] if isinstance(dataset, str) else dataset,
            examples=options.pop("examples", self.examples),
        )
        folder = folder or args.output_dir
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "README.md")
        card.save(path)
        return path
