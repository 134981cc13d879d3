"""Tokenize a task's split the way its head reads it (the head's own encoding, which the pipeline uses too)."""

from __future__ import annotations

import contextlib
import weakref
from typing import Any

import datasets
from datasets.fingerprint import Hasher

from ..models.mtbert.heads_mtbert import encode_texts, input_layout
from ..models.mtbert.kinds_mtbert import get_kind
from ..tasks.token_data import tokenize_token_batch


def tokenize_batch(batch: dict[str, list], tokenizer, spec: dict[str, Any], max_length: int) -> dict[str, list]:
    """Token ids in the layout the task's head reads, plus each row's ``length``; masks are made by the collator.

    The encoding itself is the head's (``heads_mtbert.encode_texts``, which the pipeline uses too), so training and
    inference on the Hub
    tokenize alike by construction.
    """
    if "tokens" in batch and get_kind(spec).input == "tokens":
        return tokenize_token_batch(batch, tokenizer, spec, max_length)
    out: dict[str, list] = encode_texts(tokenizer, spec, batch["text"], batch.get("text_pair"), max_length)
    out["length"] = [max(len(a), len(b)) for a, b in zip(out["input_ids"], out.get("input_ids_b", out["input_ids"]))]
    return out


_TOKENIZER_HASHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _tokenizer_hash(tokenizer) -> str:
    """The tokenizer's ``datasets`` hash, computed once per tokenizer object: hashing a fast tokenizer serializes its
    whole vocabulary, and ``map`` did it several times per call (a quarter of a 300-row prediction's time)."""
    try:
        return _TOKENIZER_HASHES[tokenizer]
    except (KeyError, TypeError):
        value = Hasher.hash(tokenizer)
    with contextlib.suppress(TypeError):  # not weak-referenceable: hashed again next time
        _TOKENIZER_HASHES[tokenizer] = value
    return value


def tokenize_fingerprint(dataset: datasets.Dataset, tokenizer, spec: dict[str, Any], max_length: int) -> str:
    """The tokenized split's fingerprint: the rows', the tokenizer's (with its length, so that added tokens count),
    the head's spec, the length limit and mtbert's version; ``datasets`` reuses a cache file only when all match."""
    from .. import __version__

    parts = [dataset._fingerprint, _tokenizer_hash(tokenizer), len(tokenizer), spec, max_length, __version__]
    return Hasher.hash(["mtbert.tokenize_task", *parts])


def tokenize_task(dataset: datasets.Dataset, tokenizer, spec: dict[str, Any], max_length: int) -> datasets.Dataset:
    """Tokenize a split once with ``datasets.map``; the text columns are kept for predictions and analysis."""
    return dataset.map(
        tokenize_batch,
        batched=True,
        fn_kwargs={"tokenizer": tokenizer, "spec": spec, "max_length": max_length},
        new_fingerprint=tokenize_fingerprint(dataset, tokenizer, spec, max_length),
        desc=f"Tokenizing ({input_layout(spec)})",
    )
