"""Results that appear together or not at all.

A run's final results (model, tokenizer, model card, ``metrics.json``, ``predictions/``) and a set of leaderboard
files are written into a staging folder beside the output folder (``<parent>/.<name>.incomplete``: the same
filesystem, so moving is a rename), then moved into place in one short step at the end. A run that fails before
that step leaves the output folder as it was, and the staging folder is removed; the earlier results that the new
ones replace are moved aside first and put back if a move fails, so the folder never mixes two runs' results.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable

STAGING_SUFFIX = ".incomplete"
REPLACED_SUFFIX = ".replaced"


def output_folder_problem(output_dir) -> str | None:
    """Why ``output_dir`` cannot be the folder a run writes into (empty, a file, or below a file), else ``None``;
    checked before anything loads, so the mistake is not found after the work is done."""
    if output_dir is None or not str(output_dir).strip():
        return "output_dir is empty: name the folder the results go to"
    path = os.path.abspath(os.path.expanduser(str(output_dir)))
    if os.path.exists(path) and not os.path.isdir(path):
        return f"output_dir {str(output_dir)!r} is a file, not a folder: choose another output_dir"
    parent = os.path.dirname(path)
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent) if os.path.dirname(parent) != parent else ""
    if parent and not os.path.isdir(parent):
        return f"output_dir {str(output_dir)!r} cannot be created: {parent!r} is a file"
    return None


def staging_dir(output_dir: str) -> str:
    """``<parent>/.<name>.incomplete`` for ``<parent>/<name>``: the same on every process of a run."""
    parent, name = os.path.split(os.path.abspath(os.path.expanduser(str(output_dir))))
    return os.path.join(parent, f".{name}{STAGING_SUFFIX}")


def fresh_staging_dir(output_dir: str) -> str:
    """An empty staging folder for ``output_dir`` (what a killed run left there is removed)."""
    staging = staging_dir(output_dir)
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    return staging


def discard(staging: str) -> None:
    """Remove a staging folder and what it holds (a run that failed: nothing of it reaches the output folder)."""
    shutil.rmtree(staging, ignore_errors=True)


def publish(staging: str, output_dir: str, replace: Iterable[str] = ()) -> list[str]:
    """Move every entry of ``staging`` into ``output_dir`` (an entry of the same name there is replaced), and take
    away the entries named in ``replace`` that the new results do not hold (an earlier run's results that would
    otherwise stay beside the new ones). Returns the new paths.

    The entries replaced are first moved aside (``<staging>.replaced``) and deleted only when every new entry
    is in place; if a move fails they are put back and the new entries return to ``staging``.
    """
    os.makedirs(output_dir, exist_ok=True)
    names = sorted(os.listdir(staging))
    stale = [name for name in replace if name not in names]
    aside = staging + REPLACED_SUFFIX
    shutil.rmtree(aside, ignore_errors=True)
    os.makedirs(aside)
    moved_aside, placed = [], []
    try:
        for name in [*names, *stale]:
            target = os.path.join(output_dir, name)
            if os.path.lexists(target):
                os.replace(target, os.path.join(aside, name))
                moved_aside.append(name)
        for name in names:
            os.replace(os.path.join(staging, name), os.path.join(output_dir, name))
            placed.append(name)
    except OSError:
        for name in reversed(placed):
            os.replace(os.path.join(output_dir, name), os.path.join(staging, name))
        for name in reversed(moved_aside):
            os.replace(os.path.join(aside, name), os.path.join(output_dir, name))
        shutil.rmtree(aside, ignore_errors=True)
        raise
    shutil.rmtree(aside, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)
    return [os.path.join(output_dir, name) for name in names]


__all__ = ["discard", "fresh_staging_dir", "publish", "staging_dir"]
