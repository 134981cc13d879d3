"""A clean push: model, tokenizer, code and card saved into a fresh folder and uploaded in one commit, never a
pickle (``training_args.bin``) nor a log."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..models.mtbert.modeling_mtbert import MultitaskBertModel
from .card import render_model_card
from .registration import CODE_FILES

#: File endings that would be unpickled by some loader; never written to a pushed repo. Compared with the whole
#: file name lower-cased (``weights.PKL``, ``model.pth.tar``).
PICKLE_SUFFIXES = (
    ".bin",
    ".pt",
    ".pth",
    ".pth.tar",
    ".pt.tar",
    ".pkl",
    ".pickle",
    ".ckpt",
    ".joblib",
    ".npy",
    ".npz",
    ".dill",
)


def is_pickle_file(name: str) -> bool:
    """Whether a file name ends with a pickle-based suffix, whatever its case."""
    return name.lower().endswith(PICKLE_SUFFIXES)


def save_for_hub(
    model: MultitaskBertModel,
    tokenizer,
    folder: str | os.PathLike,
    *,
    card=None,
    max_seq_length: int | None = None,
) -> list[str]:
    """Save everything a Hub repo needs into ``folder``; returns the files (relative paths, sorted).

    ``max_seq_length`` is recorded in ``config.json`` so the pipeline truncates as training did. Refuses to leave a
    pickle-based file (``*.bin``, ``*.pt``, ...) in the folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if max_seq_length:
        model.config.max_seq_length = int(max_seq_length)
    model.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    if card is not None:
        card.save(folder / "README.md")
    files = sorted(str(p.relative_to(folder)).replace(os.sep, "/") for p in folder.rglob("*") if p.is_file())
    pickles = [f for f in files if is_pickle_file(f)]
    if pickles:
        raise RuntimeError(f"refusing to share pickle-based file(s) {', '.join(pickles)}; weights go in safetensors")
    missing = [f for f in CODE_FILES if f not in files]
    if missing:
        raise RuntimeError(f"the saved model lacks its remote code ({', '.join(missing)}); is mtbert imported?")
    if not any(f == "model.safetensors" or re.fullmatch(r"model-\d+-of-\d+\.safetensors", f) for f in files):
        raise RuntimeError("the saved model has no safetensors weights")
    return files


def push_to_hub(
    model: MultitaskBertModel,
    tokenizer,
    repo_id: str,
    *,
    metrics: Mapping[str, Any] | None = None,
    training_args=None,
    data_args=None,
    token: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str = "Upload mtbert multitask model",
    license: str = "apache-2.0",
    language: str | list[str] = "en",
    tags: Iterable[str] | None = None,
    base_model: str | None = None,
    examples: Mapping[str, Mapping[str, str]] | None = None,
    api=None,
):
    """Create (or reuse) ``repo_id`` and upload model, tokenizer, code, pipeline and card in one commit.

    Returns the ``CommitInfo``. The network calls are ``HfApi.create_repo`` and ``HfApi.create_commit`` only.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    api = api or HfApi()
    repo_id = api.create_repo(repo_id, token=token, private=private, exist_ok=True).repo_id
    card = render_model_card(
        model,
        metrics=metrics,
        training_args=training_args,
        data_args=data_args,
        repo_id=repo_id,
        base_model=base_model,
        license=license,
        language=language,
        tags=tags,
        examples=examples,
    )
    with tempfile.TemporaryDirectory(prefix="mtbert-push-") as folder:
        files = save_for_hub(
            model, tokenizer, folder, card=card, max_seq_length=getattr(data_args, "max_seq_length", None)
        )
        operations = [CommitOperationAdd(path_in_repo=f, path_or_fileobj=os.path.join(folder, f)) for f in files]
        return api.create_commit(
            repo_id=repo_id,
            operations=operations,
            commit_message=commit_message,
            token=token,
            revision=revision,
            create_pr=create_pr,
        )
