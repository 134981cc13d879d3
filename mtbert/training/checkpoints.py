"""Checkpoints that can be trusted: a completeness marker written last, and a check before resuming.

The stock Trainer writes a checkpoint folder file by file, so a run killed while saving leaves a folder that looks
like a checkpoint but is not one. MultitaskTrainer writes ``mtbert_checkpoint.json`` after every file of the
checkpoint is in place (and only then lets old checkpoints be rotated away); resuming checks for it and for
readable weights, and names the folder when something is wrong.
"""

from __future__ import annotations

import json
import os
import re

from safetensors import safe_open

MARKER = "mtbert_checkpoint.json"
REQUIRED = ("trainer_state.json", "config.json")
WEIGHTS = ("model.safetensors", "model.safetensors.index.json")


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be resumed from."""


def write_marker(folder: str, global_step: int) -> None:
    tmp = os.path.join(folder, MARKER + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump({"global_step": global_step, "files": sorted(os.listdir(folder))}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, os.path.join(folder, MARKER))


def check_checkpoint(folder: str) -> None:
    """Raise CheckpointError (naming the folder and what is wrong) unless ``folder`` is a complete checkpoint."""
    if not os.path.isdir(folder):
        raise CheckpointError(f"checkpoint {folder!r} does not exist")
    problems = []
    if not os.path.isfile(os.path.join(folder, MARKER)):
        problems.append(f"no {MARKER} (the run stopped while saving it, or it was not written by mtbert)")
    problems += [f"missing {name}" for name in REQUIRED if not os.path.isfile(os.path.join(folder, name))]
    weights = [name for name in WEIGHTS if os.path.isfile(os.path.join(folder, name))]
    if not weights:
        problems.append("no model.safetensors")
    elif weights[0] == "model.safetensors":
        try:
            with safe_open(os.path.join(folder, "model.safetensors"), framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 (a safe_open handle is not iterable)
                    handle.get_slice(key)
        except Exception as error:  # any unreadable file is the same problem for the user
            problems.append(f"model.safetensors is unreadable ({type(error).__name__}: {error})")
    state = os.path.join(folder, "trainer_state.json")
    if os.path.isfile(state):
        try:
            with open(state, encoding="utf-8") as handle:
                json.load(handle)
        except (OSError, ValueError) as error:
            problems.append(f"trainer_state.json is unreadable ({error})")
    if problems:
        raise CheckpointError(f"checkpoint {folder!r} cannot be resumed from: " + "; ".join(problems))


def checkpoint_folders(output_dir: str) -> list[str]:
    """``checkpoint-N`` folders of a run, oldest first."""
    if not os.path.isdir(output_dir):
        return []
    found = []
    for name in os.listdir(output_dir):
        match = re.fullmatch(r"checkpoint-(\d+)", name)
        if match and os.path.isdir(os.path.join(output_dir, name)):
            found.append((int(match.group(1)), os.path.join(output_dir, name)))
    return [path for _, path in sorted(found)]


def last_good_checkpoint(output_dir: str, log=None) -> str | None:
    """The newest complete checkpoint; incomplete ones are reported (through ``log``) and passed over."""
    for folder in reversed(checkpoint_folders(output_dir)):
        try:
            check_checkpoint(folder)
            return folder
        except CheckpointError as error:
            if log is not None:
                log(f"{error}; trying an older one")
    return None


def resolve_resume(resume: str | bool | None, output_dir: str, log=None) -> str | None:
    """``True``/``"last"`` → the newest complete checkpoint in ``output_dir``; a path → that path, checked."""
    if resume in (None, False, "", "False", "false"):
        return None
    if resume is True or str(resume).lower() in ("true", "last"):
        folder = last_good_checkpoint(output_dir, log)
        if folder is None:
            raise CheckpointError(f"resume_from_checkpoint: no complete checkpoint in {output_dir!r}")
        return folder
    try:
        check_checkpoint(str(resume))
    except CheckpointError as error:  # named by the setting that gave it
        raise CheckpointError(f"resume_from_checkpoint: {error}") from None
    return str(resume)
