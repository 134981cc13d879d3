"""Load each task's train/dev/test splits as ``datasets.Dataset`` objects and tokenize them for the task's head.

Each task names its own data (``task_data`` in a config, :class:`TaskData` here); tasks without an entry use the
run's ``data_source``. Three sources:
- ``minbert``: the tab-separated files of the CS224N minBERT default project (``ids-sst-*.csv``, ``quora-*.csv``,
  ``sts-*.csv``). Real files are messy (a QQP row whose quote swallows a tab, stray quotes in STS), so rows are
  read with ``csv.QUOTE_NONE``, checked one by one, and bad ones are skipped and counted, never trained on.
- ``files``: local CSV / TSV / JSON Lines / parquet files (one per split, or a folder of ``train.*``,
  ``validation.*`` (or ``dev.*``) and an optional ``test.*``), read with ``datasets.load_dataset``, columns mapped.
- ``hub``: a Hugging Face dataset id (``SetFit/sst5``, ``nyu-mll/glue``/qqp, ``sentence-transformers/stsb`` are
  the defaults of the three tasks) or any local folder laid out like one, with its columns and splits mapped.

Every split becomes a ``Dataset`` with columns ``id``, ``text`` (``text_pair`` for pair tasks) and ``label``
(absent on unlabelled test splits). ``train`` and ``dev`` are required; ``test`` is optional for ``files`` and
``hub`` (a task without one simply gets no leaderboard files).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from typing import Any

import datasets

from ..validation import SPLITS, DataFileError
from .files import FileSource, file_source, load_file_task
from .hub import HubSource, hub_source, load_hub_task
from .minbert import MINBERT_FILES, MinbertSource, load_minbert_task

TASK_DATA_SOURCES = ("minbert", "files", "hub")


def task_source(
    task: str,
    spec: dict[str, Any],
    entry: dict[str, Any] | None = None,
    data_source: str = "minbert",
    data_dir: str | None = None,
    hub_override: dict[str, Any] | str | None = None,
) -> MinbertSource | FileSource | HubSource:
    """Where one task's data comes from, checked before anything is loaded.

    ``entry`` is the task's ``task_data`` mapping (``source: minbert | files | hub`` plus that source's keys); without
    one the task uses the run's ``data_source``/``data_dir`` (and its ``hub_datasets`` entry, ``hub_override``).
    """
    where = f"task_data.{task}"
    if entry is None:
        if data_source == "minbert":
            if not data_dir:
                raise DataFileError("data_source: minbert needs data_dir (a folder with the minBERT .csv files)")
            if task not in MINBERT_FILES:
                raise DataFileError(
                    f"task {task!r} has no minBERT files (a minBERT folder holds {', '.join(MINBERT_FILES)}); "
                    f"name its data in task_data.{task} (source: files or hub)"
                )
            return MinbertSource(data_dir)
        if data_source == "hub":
            return hub_source(task, hub_override, spec)
        raise DataFileError(f"data_source must be 'minbert' or 'hub', got {data_source!r}")
    if isinstance(entry, str):
        raise DataFileError(f"{where}: write a mapping such as {{source: files, data_dir: {entry}}}")
    entry = dict(entry)
    source = entry.pop("source", None)
    if source is None:
        source = "files" if "data_files" in entry else "hub" if "path" in entry else None
    if source not in TASK_DATA_SOURCES:
        raise DataFileError(f"{where}.source: {source!r} is not one of {', '.join(TASK_DATA_SOURCES)}")
    if source == "minbert":
        unknown = set(entry) - {"data_dir"}
        if unknown:
            raise DataFileError(
                f"{where}: unknown key(s) {', '.join(sorted(unknown))} for source: minbert (only data_dir)"
            )
        folder = entry.get("data_dir") or data_dir
        if not folder:
            raise DataFileError(f"{where}: source: minbert needs data_dir (here or at the top level)")
        if task not in MINBERT_FILES:
            raise DataFileError(
                f"{where}: a minBERT folder holds only {', '.join(MINBERT_FILES)}; use source: files or hub"
            )
        if not os.path.isdir(folder):
            raise DataFileError(f"{where}: data_dir {folder!r} is not a folder")
        return MinbertSource(folder)
    if source == "hub":
        return hub_source(task, entry, spec, where)
    return file_source(task, spec, entry, where)


def load_task_data(
    task: str,
    spec: dict[str, Any],
    source: MinbertSource | FileSource | HubSource,
    splits: Iterable[str] = SPLITS,
    cache_dir: str | None = None,
    unlabelled_rows: Iterable[str] = (),
) -> dict[str, datasets.Dataset]:
    """``{split: Dataset}`` of one task from its resolved source (see :func:`task_source`); test may be absent.

    ``unlabelled_rows`` (``files`` and ``hub`` sources): the splits whose rows without this task's label are kept,
    with label ``None``, instead of skipped; for a data set shared with other tasks (:func:`shared_sources`), whose
    rows then stay aligned and train the tasks they have labels for."""
    if isinstance(source, MinbertSource):
        return load_minbert_task(task, spec, source.data_dir, splits)
    if isinstance(source, HubSource):
        return load_hub_task(task, spec, source, splits, cache_dir, unlabelled_rows)
    return load_file_task(task, spec, source, splits, cache_dir, unlabelled_rows)


def shared_sources(sources: dict[str, MinbertSource | FileSource | HubSource]) -> set[str]:
    """The tasks whose ``task_data`` reads the same files (or Hub dataset and splits) as another task's: their
    rows can carry labels for several tasks (:meth:`mtbert.data.sampling.MultitaskDataset.joint_groups`)."""

    def where(source):
        if isinstance(source, FileSource):
            return ("files", tuple(sorted(source.data_files.items())), source.format)
        if isinstance(source, HubSource):
            return ("hub", source.path, source.name, tuple(sorted(source.splits.items())))
        return None

    keys = {task: where(source) for task, source in sources.items()}
    counts = Counter(k for k in keys.values() if k is not None)
    return {task for task, key in keys.items() if key is not None and counts[key] > 1}


def load_task_splits(
    task: str,
    spec: dict[str, Any],
    data_source: str,
    data_dir: str | None = None,
    hub_override: dict[str, Any] | str | None = None,
    splits: Iterable[str] = SPLITS,
    cache_dir: str | None = None,
    task_data: dict[str, Any] | None = None,
) -> dict[str, datasets.Dataset]:
    """One task's splits: from its ``task_data`` entry if given, else by ``data_source`` (``minbert`` or ``hub``)."""
    source = task_source(task, spec, task_data, data_source, data_dir, hub_override)
    return load_task_data(task, spec, source, splits, cache_dir)
