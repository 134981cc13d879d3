"""One way to load a saved mtbert model and its tokenizer, for every entry point (prediction, ensembles,
averaging, continuing training, error analysis).

- A local path must be a saved mtbert folder: ``config.json`` (valid JSON, ``model_type: mtbert``) and
  ``model.safetensors`` (or a ``model.safetensors.index.json`` with its shards). Weights are read from safetensors
  only (``use_safetensors=True``): a folder with only ``pytorch_model.bin`` is refused, since unpickling a file can
  run code. Truncated weights are found by reading their header, before the model is built.
- Anything else (``user/name``) is a Hub id, loaded by ``from_pretrained`` with the same safetensors-only rule.
- Every mistake is one ``MultitaskConfigError`` line naming the path and what to do, never a traceback.
- Weights load in float32 unless ``dtype`` says otherwise.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch

from ..models.mtbert.configuration_mtbert import MultitaskBertConfig, MultitaskConfigError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.pth", "model.ckpt")
SAVE_HINT = "save one with model.save_pretrained(folder) or train with examples/train.py"


def _one_line(error: BaseException) -> str:
    """An exception's text on one line (some libraries' messages span several)."""
    return " ".join(str(error).split()) or type(error).__name__


def is_local_path(path: str) -> bool:
    """Whether ``path`` names a folder on this machine rather than a Hub id (``user/name``)."""
    return path.startswith((".", "/", "~")) or os.path.isabs(path) or os.path.exists(path) or path.count("/") > 1


def _read_config_json(path: str) -> dict[str, Any]:
    config_file = os.path.join(path, CONFIG_NAME)
    try:
        with open(config_file, encoding="utf-8") as handle:
            config = json.load(handle)
    except json.JSONDecodeError as error:
        raise MultitaskConfigError(
            f"{config_file} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}): the file is "
            f"damaged or truncated; save the model again"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise MultitaskConfigError(f"could not read {config_file}: {_one_line(error)}") from None
    if not isinstance(config, dict):
        raise MultitaskConfigError(f"{config_file} holds a JSON {type(config).__name__}, not a model configuration")
    return config


def is_mtbert_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder whose ``config.json`` says ``model_type: mtbert`` (a backbone folder is not).

    A ``config.json`` that is not JSON raises ``MultitaskConfigError`` rather than passing for a backbone.
    """
    path = os.path.expanduser(str(path))
    if not os.path.isfile(os.path.join(path, CONFIG_NAME)):
        return False
    return _read_config_json(path).get("model_type") == MultitaskBertConfig.model_type


def _weight_files(path: str) -> list[str]:
    """The safetensors files of a folder (the single file, or the shards its index names); [] when there are none."""
    single = os.path.join(path, WEIGHTS_NAME)
    if os.path.isfile(single):
        return [single]
    index = os.path.join(path, WEIGHTS_INDEX_NAME)
    if not os.path.isfile(index):
        return []
    try:
        with open(index, encoding="utf-8") as handle:
            shards = sorted(set(json.load(handle)["weight_map"].values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise MultitaskConfigError(
            f"{index} is unreadable ({type(error).__name__}: {_one_line(error)}); save the model again"
        ) from None
    return [os.path.join(path, shard) for shard in shards]


def _check_weights(path: str) -> None:
    from safetensors import safe_open

    files = _weight_files(path)
    if not files:
        from ..hub.push import is_pickle_file

        pickles = [name for name in PICKLE_WEIGHTS if os.path.isfile(os.path.join(path, name))]
        pickles += sorted(name for name in os.listdir(path) if is_pickle_file(name) and name not in pickles)
        if pickles:
            raise MultitaskConfigError(
                f"{path!r} holds only {pickles[0]}: mtbert loads safetensors only (a pickle file can run code when "
                f"opened); convert it where you trust it with model.save_pretrained(folder, safe_serialization=True)"
            )
        raise MultitaskConfigError(f"{path!r} has no {WEIGHTS_NAME}: not a saved mtbert model ({SAVE_HINT})")
    for file in files:
        if not os.path.isfile(file):
            raise MultitaskConfigError(f"{path!r}: the weight shard {os.path.basename(file)} is missing")
        try:
            with safe_open(file, framework="pt"):
                pass
        except Exception as error:  # SafetensorError and OSError mean the same to the user
            raise MultitaskConfigError(
                f"{file} is unreadable ({_one_line(error)}): the weights are truncated or damaged; copy or save the "
                "model again"
            ) from None


def check_model_folder(path: str | os.PathLike) -> str:
    """Raise ``MultitaskConfigError`` unless ``path`` is a saved mtbert model folder; returns the expanded path.

    Cheap: reads ``config.json`` and the weights' headers, not the weights.
    """
    path = os.path.expanduser(str(path))
    if not os.path.exists(path):
        raise MultitaskConfigError(f"model folder {path!r} does not exist")
    if not os.path.isdir(path):
        raise MultitaskConfigError(f"{path!r} is a file; give the folder of a saved mtbert model")
    if not os.path.isfile(os.path.join(path, CONFIG_NAME)):
        raise MultitaskConfigError(f"{path!r} has no {CONFIG_NAME}: not a saved mtbert model folder ({SAVE_HINT})")
    model_type = _read_config_json(path).get("model_type")
    if model_type != MultitaskBertConfig.model_type:
        raise MultitaskConfigError(
            f"{path!r} holds a {model_type or 'untyped'} model, not an mtbert model (config.json model_type "
            f"{model_type!r}); to start from a backbone, pass it as model_name_or_path to train.py"
        )
    _check_weights(path)
    return path


def load_config(path: str | os.PathLike) -> MultitaskBertConfig:
    """The ``MultitaskBertConfig`` of a saved model folder (checked first) or a Hub id; no weights are read."""
    path = str(path)
    if is_local_path(path):
        path = check_model_folder(path)
    try:
        config = MultitaskBertConfig.from_pretrained(path)
    except MultitaskConfigError as error:
        raise MultitaskConfigError(f"the configuration of {path!r} is invalid: {_one_line(error)}") from None
    except (OSError, ValueError) as error:
        raise MultitaskConfigError(f"could not load the configuration of {path!r}: {_one_line(error)}") from None
    if getattr(config, "model_type", None) != MultitaskBertConfig.model_type:
        raise MultitaskConfigError(f"{path!r} is not an mtbert model (model_type {config.model_type!r})")
    return config


def load_tokenizer(path: str | os.PathLike):
    """The tokenizer saved beside a model (``AutoTokenizer``), with one clear line when it cannot be loaded."""
    from transformers import AutoTokenizer

    path = str(path)
    if is_local_path(path) and not os.path.isdir(os.path.expanduser(path)):
        raise MultitaskConfigError(f"model folder {path!r} does not exist")
    try:
        return AutoTokenizer.from_pretrained(os.path.expanduser(path) if is_local_path(path) else path)
    except (OSError, ValueError, TypeError) as error:
        raise MultitaskConfigError(
            f"could not load the tokenizer of {path!r} ({_one_line(error)}); save it beside the model with "
            "tokenizer.save_pretrained(folder)"
        ) from None


def _check_loading_info(path: str, info: dict[str, Any]) -> None:
    """Refuse weights that do not fit the model their config describes: a head left at random would predict
    nonsense without any error."""
    problems = []
    for key, what in (
        ("missing_keys", "missing"),
        ("unexpected_keys", "unexpected"),
        ("mismatched_keys", "of another shape"),
    ):
        names = sorted(str(k if isinstance(k, str) else k[0]) for k in (info.get(key) or ()))
        if names:
            more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
            problems.append(f"{what} {names[0]}{more}")
    if problems:
        raise MultitaskConfigError(
            f"the weights in {path!r} do not fit the model its config.json describes ({'; '.join(problems)}): "
            "saved by another mtbert version, or edited; retrain or convert it with that version"
        )


def load_model(
    path: str | os.PathLike,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str = torch.float32,
):
    """A saved ``MultitaskBertModel`` (safetensors only, ``dtype`` float32 unless told), in eval mode, moved to
    ``device`` when one is given."""
    from ..models.mtbert.modeling_mtbert import MultitaskBertModel

    path = str(path)
    if is_local_path(path):
        path = check_model_folder(path)
    try:
        loaded: Any = MultitaskBertModel.from_pretrained(
            path, dtype=dtype, use_safetensors=True, output_loading_info=True
        )
        model, info = loaded
    except (MultitaskConfigError, OSError) as error:
        raise MultitaskConfigError(f"could not load the model {path!r}: {_one_line(error)}") from None
    except RuntimeError as error:  # e.g. a tensor whose shape differs from the configuration's
        raise MultitaskConfigError(f"could not load the weights of {path!r}: {_one_line(error)[:500]}") from None
    _check_loading_info(path, info)
    if device is not None:
        model.to(device)
    model.eval()
    return model


def load_model_and_tokenizer(
    path: str | os.PathLike,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str = torch.float32,
):
    """``(model, tokenizer)`` of a saved model folder: the folder is checked, then the tokenizer, then the weights."""
    path = str(path)
    if is_local_path(path):
        check_model_folder(path)
    tokenizer = load_tokenizer(path)
    return load_model(path, device=device, dtype=dtype), tokenizer


__all__ = [
    "check_model_folder",
    "is_local_path",
    "is_mtbert_checkpoint",
    "load_config",
    "load_model",
    "load_model_and_tokenizer",
    "load_tokenizer",
]
