"""Checkpoint weight averaging: one model whose weights are the uniform mean of several checkpoints of a run.

Checkpoints saved late in one fine-tuning run lie in the same basin of the loss; their mean tends to sit nearer its
flat centre than any single one (Polyak averaging, SWA, "model soups"), which often generalizes a little better.
Unlike an ensemble (``mtbert.inference.ensemble``) it costs nothing at prediction time: the result is one ordinary
model.

Only checkpoints of the same run (or of runs started from the same weights) should be averaged: the mean of two
unrelated minima is usually a bad model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import torch
from safetensors.torch import load_file
from torch import nn

from ..models.mtbert.configuration_mtbert import MultitaskConfigError
from ..training.checkpoints import MARKER, checkpoint_folders

WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"


def find_checkpoints(output_dir: str, complete_only: bool = False) -> list[str]:
    """The ``checkpoint-<step>`` folders of a Trainer output folder, by step ascending (``checkpoint-10`` after
    ``checkpoint-9``); empty when there are none or the folder does not exist.

    ``complete_only`` keeps only the folders with mtbert's completeness marker (``mtbert_checkpoint.json``, written
    last by ``MultitaskTrainer``), leaving out one a killed run was still writing.
    """
    folders = checkpoint_folders(output_dir)
    if complete_only:
        folders = [f for f in folders if os.path.isfile(os.path.join(f, MARKER))]
    return folders


def load_checkpoint_weights(checkpoint_dir: str) -> dict[str, torch.Tensor]:
    """The tensors of a saved model folder: ``model.safetensors``, or the shards named by its index file."""
    single = os.path.join(checkpoint_dir, WEIGHTS_NAME)
    index = os.path.join(checkpoint_dir, WEIGHTS_INDEX_NAME)
    try:
        if os.path.isfile(single):
            return load_file(single)
        if os.path.isfile(index):
            with open(index, encoding="utf-8") as handle:
                shards = sorted(set(json.load(handle)["weight_map"].values()))
            state: dict[str, torch.Tensor] = {}
            for shard in shards:
                state.update(load_file(os.path.join(checkpoint_dir, shard)))
            return state
    except Exception as error:  # a truncated or foreign file is the same problem for the user
        raise MultitaskConfigError(
            f"checkpoint {checkpoint_dir!r}: its weights are unreadable ({type(error).__name__}: {error})"
        ) from None
    if not os.path.isdir(checkpoint_dir):
        raise MultitaskConfigError(f"checkpoint {checkpoint_dir!r} does not exist")
    raise MultitaskConfigError(f"checkpoint {checkpoint_dir!r} has no {WEIGHTS_NAME}")


def average_checkpoints(checkpoint_dirs: Sequence[str], dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The uniform average of the checkpoints' ``model.safetensors`` (one checkpoint in memory at a time).

    Floating tensors are summed in float32 (float64 stays float64) and cast back to ``dtype`` (default: the first
    checkpoint's dtype of each tensor); non-floating tensors (counters, ids) are taken from the last checkpoint.
    Every checkpoint must hold the same keys with the same shapes: a difference raises ``MultitaskConfigError``
    naming the key, since it means the folders are not checkpoints of one model.
    """
    checkpoint_dirs = [str(d) for d in checkpoint_dirs]
    if not checkpoint_dirs:
        raise MultitaskConfigError("average_checkpoints needs at least one checkpoint folder")
    sums: dict[str, torch.Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    first_dir = checkpoint_dirs[0]
    for number, folder in enumerate(checkpoint_dirs):
        state = load_checkpoint_weights(folder)
        if number == 0:
            for key, tensor in state.items():
                dtypes[key] = tensor.dtype
                if tensor.is_floating_point():
                    sums[key] = tensor.to(torch.promote_types(tensor.dtype, torch.float32)).clone()
                else:
                    sums[key] = tensor
            continue
        missing = [k for k in sums if k not in state]
        extra = [k for k in state if k not in sums]
        if missing:
            raise MultitaskConfigError(
                f"checkpoint {folder!r} has no tensor {missing[0]!r} (which {first_dir!r} has)"
                + (f", nor {len(missing) - 1} other(s)" if len(missing) > 1 else "")
                + ": only checkpoints of the same model can be averaged"
            )
        if extra:
            raise MultitaskConfigError(
                f"checkpoint {folder!r} has a tensor {extra[0]!r} that {first_dir!r} lacks"
                + (f" (and {len(extra) - 1} other(s))" if len(extra) > 1 else "")
                + ": only checkpoints of the same model can be averaged"
            )
        for key, tensor in state.items():
            if tensor.shape != sums[key].shape:
                raise MultitaskConfigError(
                    f"tensor {key!r} has shape {tuple(tensor.shape)} in {folder!r} but {tuple(sums[key].shape)} in "
                    f"{first_dir!r}: only checkpoints of the same model can be averaged"
                )
            if tensor.is_floating_point() != sums[key].is_floating_point():
                raise MultitaskConfigError(
                    f"tensor {key!r} is {tensor.dtype} in {folder!r} but {dtypes[key]} in {first_dir!r}"
                )
            if tensor.is_floating_point():
                sums[key] += tensor.to(sums[key].dtype)
            else:
                sums[key] = tensor  # the last checkpoint's
        del state
    count = len(checkpoint_dirs)
    averaged = {}
    for key, total in sums.items():
        if total.is_floating_point():
            averaged[key] = (total / count).to(dtype or dtypes[key])
        else:
            averaged[key] = total
    return averaged


def load_state_dict_strictly(
    model: nn.Module, state: dict[str, torch.Tensor], source: str = "the averaged weights"
) -> None:
    """``model.load_state_dict(state, strict=True)``, except that a key may be absent from ``state`` when its tensor
    is tied to (shares storage with) one that is present, as ``save_pretrained`` leaves tied copies out.

    Anything else missing, unexpected or of another shape raises ``MultitaskConfigError`` naming the key.
    """
    expected = model.state_dict()
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        raise MultitaskConfigError(f"{source} hold {unexpected[0]!r}, which the model has no place for")
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise MultitaskConfigError(
                f"{source} give {key!r} the shape {tuple(tensor.shape)}; the model's is {tuple(expected[key].shape)}"
            )
    present_storage = {expected[k].untyped_storage().data_ptr() for k in state}
    missing = [
        k for k in expected if k not in state and expected[k].untyped_storage().data_ptr() not in present_storage
    ]
    if missing:
        raise MultitaskConfigError(
            f"{source} lack {missing[0]!r}" + (f" and {len(missing) - 1} other tensor(s)" if len(missing) > 1 else "")
        )
    model.load_state_dict(state, strict=False)


def load_averaged_model(checkpoint_dirs: Sequence[str]):
    """A ``MultitaskBertModel`` (float32) with the averaged weights of ``checkpoint_dirs``.

    The configuration (tasks, heads) comes from the last checkpoint, whose model is loaded and then overwritten
    with the float32 average of all of them; every weight of the model must be set by the average.
    """
    from ..models.mtbert.modeling_mtbert import MultitaskBertModel

    checkpoint_dirs = [str(d) for d in checkpoint_dirs]
    state = average_checkpoints(checkpoint_dirs, dtype=torch.float32)
    last = checkpoint_dirs[-1]
    try:
        model = MultitaskBertModel.from_pretrained(last, dtype="float32", use_safetensors=True)
    except OSError as error:
        raise MultitaskConfigError(f"could not load the model in {last!r}: {error}") from None
    load_state_dict_strictly(model, state, source=f"the average of {len(checkpoint_dirs)} checkpoint(s)")
    model.eval()
    return model


__all__ = [
    "average_checkpoints",
    "find_checkpoints",
    "load_averaged_model",
    "load_checkpoint_weights",
    "load_state_dict_strictly",
]
