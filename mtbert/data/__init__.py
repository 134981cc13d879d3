"""A task's rows, from its source to the batches a step reads.

- :mod:`.sources`: where each task's train/dev/test splits come from (``minbert`` files, local ``files`` incl.
  CoNLL, ``hub`` datasets), loaded as ``datasets.Dataset`` objects;
- :mod:`.validation`: the row checks every source shares (:class:`DataFileError` for data that cannot be used);
- :mod:`.tokenization`: each split tokenized the way its head reads it; :mod:`.prepare`: the same for a user's own
  dataset in one call;
- :mod:`.collators`, :mod:`.sampling`, :mod:`.packing`, :mod:`.static_shapes`: padding, the multitask batch sampler,
  packed rows and few batch shapes.

The names below are importable from ``mtbert.data`` as before the split (loaded on first use: importing a collator
does not load every source).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: name → submodule that defines it, for ``from mtbert.data import <name>``
_EXPORTS = {
    "sources": (
        "TASK_DATA_SOURCES",
        "load_task_data",
        "load_task_splits",
        "shared_sources",
        "task_source",
    ),
    "sources.files": ("FILE_EXTENSIONS", "FILE_FORMATS", "FileSource", "file_source", "load_file_task"),
    "sources.hub": ("HUB_KEYS", "HUB_SOURCES", "HubSource", "hub_source", "load_hub_task"),
    "sources.minbert": ("MINBERT_FILES", "MinbertFiles", "MinbertSource", "load_minbert_task", "read_minbert_file"),
    "sources.splits": ("REQUIRED_SPLITS", "SPLIT_ALIASES", "split_name"),
    "validation": (
        "LABEL_VALUE_REASONS",
        "SPLITS",
        "DataFileError",
        "LoadReport",
        "clean_text",
        "is_regression",
        "num_classes",
        "parse_label",
    ),
    "tokenization": ("tokenize_batch", "tokenize_task"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "FILE_EXTENSIONS",
    "FILE_FORMATS",
    "HUB_KEYS",
    "HUB_SOURCES",
    "LABEL_VALUE_REASONS",
    "MINBERT_FILES",
    "REQUIRED_SPLITS",
    "SPLITS",
    "SPLIT_ALIASES",
    "TASK_DATA_SOURCES",
    "DataFileError",
    "FileSource",
    "HubSource",
    "LoadReport",
    "MinbertFiles",
    "MinbertSource",
    "clean_text",
    "file_source",
    "hub_source",
    "is_regression",
    "load_file_task",
    "load_hub_task",
    "load_minbert_task",
    "load_task_data",
    "load_task_splits",
    "num_classes",
    "parse_label",
    "read_minbert_file",
    "shared_sources",
    "split_name",
    "task_source",
    "tokenize_batch",
    "tokenize_task",
]

if TYPE_CHECKING:
    from .sources import TASK_DATA_SOURCES, load_task_data, load_task_splits, shared_sources, task_source
    from .sources.files import FILE_EXTENSIONS, FILE_FORMATS, FileSource, file_source, load_file_task
    from .sources.hub import HUB_KEYS, HUB_SOURCES, HubSource, hub_source, load_hub_task
    from .sources.minbert import MINBERT_FILES, MinbertFiles, MinbertSource, load_minbert_task, read_minbert_file
    from .sources.splits import REQUIRED_SPLITS, SPLIT_ALIASES, split_name
    from .tokenization import tokenize_batch, tokenize_task
    from .validation import (
        LABEL_VALUE_REASONS,
        SPLITS,
        DataFileError,
        LoadReport,
        clean_text,
        is_regression,
        num_classes,
        parse_label,
    )


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'mtbert.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # once found, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
