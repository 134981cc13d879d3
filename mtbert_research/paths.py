"""Where things are: the config folder, the training script and run folders (all relative to the current
directory unless given), and the one error a usage mistake raises.

Nothing here points into the git checkout around the installed package: the defaults, ``examples/configs`` and
``examples/train.py``, are looked up from the current directory (run from an mtbert checkout), and every command
takes ``--config_dir`` / ``--train_script`` to point elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_CONFIG_DIR = os.path.join("examples", "configs")
DEFAULT_TRAIN_SCRIPT = os.path.join("examples", "train.py")
PAPER_SUBDIR = "paper"  # <config_dir>/paper/*.yaml: one config per row of the paper's tables

LOG_FILE = "train.log"
RUN_RECORD = "run.json"
METRICS_FILE = "metrics.json"


class ExperimentError(ValueError):
    """A usage mistake (unknown table, missing config, bad --override): one line, exit code 2."""


def paper_config_dir(config_dir: str | os.PathLike | None = None) -> Path:
    """``<config_dir>/paper`` (``config_dir`` default: ``examples/configs`` in the current directory); raises
    ``ExperimentError`` when it is not a folder."""
    base = Path(config_dir if config_dir is not None else DEFAULT_CONFIG_DIR)
    folder = base / PAPER_SUBDIR
    if not folder.is_dir():
        where = "" if base.is_absolute() else f" (relative to {os.getcwd()})"
        raise ExperimentError(
            f"no paper configs: {str(folder)!r} is not a folder{where}; run from an mtbert checkout or pass "
            "--config_dir DIR, the folder that holds paper/*.yaml"
        )
    return folder


def resolve_train_script(train_script: str | os.PathLike | None = None) -> Path:
    """The training script each run executes (default ``examples/train.py`` in the current directory); raises
    ``ExperimentError`` when it is not a file."""
    script = Path(train_script if train_script is not None else DEFAULT_TRAIN_SCRIPT)
    if not script.is_file():
        where = "" if script.is_absolute() else f" (relative to {os.getcwd()})"
        raise ExperimentError(
            f"training script {str(script)!r} not found{where}; run from an mtbert checkout or pass "
            "--train_script PATH"
        )
    return script


def profile_dir(runs_dir: str | os.PathLike, profile: str) -> Path:
    return Path(runs_dir) / profile


def run_dir(runs_dir: str | os.PathLike, profile: str, config: str, seed: int) -> Path:
    return profile_dir(runs_dir, profile) / Path(config).stem / f"seed{seed}"


__all__ = [
    "DEFAULT_CONFIG_DIR",
    "DEFAULT_TRAIN_SCRIPT",
    "LOG_FILE",
    "METRICS_FILE",
    "RUN_RECORD",
    "ExperimentError",
    "paper_config_dir",
    "profile_dir",
    "resolve_train_script",
    "run_dir",
]
