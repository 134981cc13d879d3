"""Configuration of a multitask BERT: one backbone configuration plus one specification per task.

This file is remote code: it is copied next to every saved checkpoint, so it imports nothing from mtbert
(only ``transformers``) and the sibling remote-code files import it as ``from .configuration_mtbert import ...``.
"""

from __future__ import annotations

import copy
import difflib
import json
from typing import Any

from transformers import AutoConfig, PretrainedConfig

from .kinds_mtbert import QQP_LABELS, TaskSpec, get_kind, kind_names

#: The kinds registered when this module was imported (``kinds_mtbert.register_kind`` adds more)
TASK_KINDS = kind_names()
POOLINGS = ("cls", "mean")
PAIR_ENCODINGS = ("separate", "cosine", "concat_sep", "concat_nosep", "dual")
CLASSIFIERS = ("linear", "mlp")
PAIR_FEATURES = ("concat", "full")
REGRESSION_LOSSES = ("mse", "cosent", "angle")

# The paper's three tasks. Users can name their own tasks; these are only defaults.
SST_LABELS = ["negative", "somewhat negative", "neutral", "somewhat positive", "positive"]

DEFAULT_TASKS: dict[str, dict[str, Any]] = {
    "sst": {"kind": "sentence_classification", "num_labels": 5, "label_names": SST_LABELS},
    "qqp": {"kind": "pair_classification", "label_names": QQP_LABELS},
    "sts": {"kind": "pair_regression", "score_range": [0.0, 5.0]},
}

# Every key a task may carry, with its default (``None``: derived from the kind): the fields of ``TaskSpec``.
TASK_DEFAULTS: dict[str, Any] = TaskSpec.defaults()


# Backbone families whose position ids start after the padding id (``pad_token_id + 1``).
POSITIONS_AFTER_PADDING = ("roberta", "xlm-roberta", "mpnet", "camembert", "longformer")

# The text pipeline saved with every checkpoint (``pipeline_mtbert.py``): ``config.json`` names it so that
# ``pipeline(model=<folder or Hub repo>, trust_remote_code=True)`` finds and loads it.
CUSTOM_PIPELINES: dict[str, dict[str, Any]] = {
    "multitask-text-bert": {"impl": "pipeline_mtbert.MultitaskTextPipeline", "pt": ["AutoModel"], "type": "text"}
}


class LocalPipelines(dict):
    """``custom_pipelines`` of a config built by the installed mtbert package.

    ``config.json`` names the remote-code pipeline under ``custom_pipelines``, and ``transformers.pipeline`` demands
    ``trust_remote_code=True`` for any task found there (``task in config.custom_pipelines``). When mtbert is
    installed and imported, ``mtbert.hub.register_auto_classes`` registers the same pipeline task locally and lists it
    in ``MultitaskBertConfig.local_pipeline_tasks``; this mapping then answers ``False`` to ``task in ...`` for those
    tasks, so ``pipeline(model=path)`` infers the task from the one entry and builds it from ``PIPELINE_REGISTRY``
    (the installed code) without remote code. Its items, and ``config.json``, are unchanged.
    """

    def __init__(self, pipelines: dict[str, Any], local_tasks=()):
        super().__init__(pipelines)
        self.local_tasks = tuple(local_tasks)

    def __contains__(self, task) -> bool:
        return super().__contains__(task) and task not in self.local_tasks


class MultitaskConfigError(ValueError):
    """A configuration mistake, raised before any model weights are touched."""


def _check_encoder(encoder: dict[str, Any]) -> None:
    """The backbone configuration a model is built from: a model type transformers knows, plain JSON values."""
    from transformers import CONFIG_MAPPING

    model_type = encoder.get("model_type", "bert")
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        raise MultitaskConfigError(f"encoder: model_type {model_type!r} is not a model type transformers knows")
    try:
        json.dumps(encoder)
    except (TypeError, ValueError) as error:
        raise MultitaskConfigError(f"encoder must hold plain JSON values: {error}") from None


def _choice(value: Any, valid: tuple[str, ...], what: str) -> str:
    if value in valid:
        return value
    hint = difflib.get_close_matches(str(value), valid, n=1)
    suggestion = f" Did you mean {hint[0]!r}?" if hint else ""
    raise MultitaskConfigError(f"{what}: {value!r} is not one of {', '.join(valid)}.{suggestion}")


def normalize_task_spec(name: str, spec: dict[str, Any] | None) -> dict[str, Any]:
    """Fill a task's defaults and check that its head fits its kind.

    Known task names (``sst``, ``qqp``, ``sts``) inherit their kind and labels; any other task must state ``kind``.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise MultitaskConfigError(f"task name {name!r} must be a Python identifier (letters, digits, underscores)")
    if spec is not None and not isinstance(spec, dict):
        raise MultitaskConfigError(f"task {name!r}: its settings must be a mapping of settings, got {spec!r}")
    spec = dict(spec or {})
    unknown = sorted(set(spec) - set(TASK_DEFAULTS))
    if unknown:
        hints = [difflib.get_close_matches(key, TASK_DEFAULTS, n=1) for key in unknown]
        details = ", ".join(f"{k!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for k, h in zip(unknown, hints))
        raise MultitaskConfigError(
            f"task {name!r}: unknown key(s) {details}; valid keys are {', '.join(TASK_DEFAULTS)}"
        )
    merged = {**TASK_DEFAULTS, **copy.deepcopy(DEFAULT_TASKS.get(name, {}))}
    merged.update({k: v for k, v in spec.items() if v is not None})
    where = f"task {name!r}"
    if merged["kind"] is None:
        raise MultitaskConfigError(f"{where}: set 'kind' to one of {', '.join(kind_names())}")
    task_kind = get_kind(merged["kind"], lambda message: MultitaskConfigError(f"{where} {message}"))
    kind = merged["kind"]
    merged["pooling"] = _choice(merged["pooling"], POOLINGS, f"{where} pooling")
    merged["classifier"] = _choice(merged["classifier"], CLASSIFIERS, f"{where} classifier")
    pair = task_kind.is_pair
    classification = task_kind.has_labels
    if not pair and merged["pair_encoding"] is not None:
        reads = "a sentence split into words" if task_kind.input == "tokens" else "one sentence"
        raise MultitaskConfigError(
            f"{where}: pair_encoding={merged['pair_encoding']!r} needs a sentence pair, but the task is "
            f"{kind} ({reads}). Remove pair_encoding or change the kind."
        )
    if pair:
        merged["pair_encoding"] = _choice(
            merged["pair_encoding"] or "separate", PAIR_ENCODINGS, f"{where} pair_encoding"
        )
    task_kind.complete_spec(merged, where, MultitaskConfigError)
    merged["label_all_tokens"] = bool(merged["label_all_tokens"])
    if merged["label_all_tokens"] and task_kind.input != "tokens":
        raise MultitaskConfigError(
            f"{where}: label_all_tokens labels every sub-token of a word, so it needs kind "
            f"'token_classification' (this task is {kind})"
        )
    dropout = float(merged["classifier_dropout"])
    if not 0.0 <= dropout < 1.0:
        raise MultitaskConfigError(f"{where}: classifier_dropout must be in [0, 1), got {dropout}")
    merged["classifier_dropout"] = dropout
    merged["pair_features"] = _choice(merged["pair_features"], PAIR_FEATURES, f"{where} pair_features")
    merged["regression_loss"] = _choice(merged["regression_loss"], REGRESSION_LOSSES, f"{where} regression_loss")
    if merged["regression_loss"] != "mse" and classification:
        raise MultitaskConfigError(
            f"{where}: regression_loss={merged['regression_loss']!r} ranks similarity scores, so it needs kind "
            f"'pair_regression' or 'sentence_regression' (this task is {kind})"
        )
    merged["cosent_scale"] = float(merged["cosent_scale"])
    if merged["cosent_scale"] <= 0:
        raise MultitaskConfigError(f"{where}: cosent_scale must be > 0, got {merged['cosent_scale']}")
    smoothing = float(merged["label_smoothing"])
    if not 0.0 <= smoothing < 1.0:
        raise MultitaskConfigError(f"{where}: label_smoothing must be in [0, 1), got {smoothing}")
    if smoothing and not (classification and (not pair or merged["num_labels"] > 2)):
        raise MultitaskConfigError(
            f"{where}: label_smoothing applies to a cross-entropy over classes: sentence_classification, or "
            f"pair_classification with 3 or more labels (this task is {kind} with num_labels={merged['num_labels']})"
        )
    merged["label_smoothing"] = smoothing
    merged["rdrop_alpha"] = float(merged["rdrop_alpha"])
    if merged["rdrop_alpha"] < 0:
        raise MultitaskConfigError(f"{where}: rdrop_alpha must be >= 0, got {merged['rdrop_alpha']}")
    for key in ("smart_alpha", "smart_noise", "smart_step_size"):
        merged[key] = float(merged[key])
    if merged["smart_alpha"] < 0:
        raise MultitaskConfigError(f"{where}: smart_alpha must be >= 0, got {merged['smart_alpha']}")
    for key in ("smart_noise", "smart_step_size"):
        if merged[key] <= 0:
            raise MultitaskConfigError(f"{where}: {key} must be > 0, got {merged[key]}")
    if merged["smart_alpha"] and merged["rdrop_alpha"]:
        raise MultitaskConfigError(
            f"{where}: rdrop_alpha and smart_alpha are two consistency regularisers; choose one per task"
        )
    merged["cosine_threshold"] = float(merged["cosine_threshold"])
    merged["loss_weight"] = float(merged["loss_weight"])
    merged["use_token_type_ids"] = bool(merged["use_token_type_ids"])
    from .heads_mtbert import head_class  # the heads import this module; each head checks what fits it

    head_class(merged).check_spec(where, merged)
    return merged


class MultitaskBertConfig(PretrainedConfig):
    r"""Configuration of [`MultitaskBertModel`].

    Args:
        encoder (`dict`): the backbone's configuration (``AutoConfig(...).to_dict()``); any BERT-family encoder.
        tasks (`dict[str, dict]`): one specification per task; keys and defaults are in ``TASK_DEFAULTS``.
        shared_encoder (`bool`): ``False`` gives each task its own encoder (the paper's "ensembling").
        encoder_name_or_path (`str`): where the backbone weights came from, recorded for the model card.
        encoder_attn_implementation (`str`, *optional*): the backbone's attention (``eager``, ``sdpa``, ...); unset,
            each backbone gets SDPA where its family supports it and eager attention elsewhere.
        default_task (`str`, *optional*): the task that the model's ``forward`` and the pipeline run when no
            ``task=`` is given; unset, the only task of a one-task model (a model of several tasks then needs
            ``task=``).

    ``id2label``/``label2id`` are derived from the tasks: the labels of the default task (or of the only task) when
    it is a classification task, else of the first classification task; a model without a classification task keeps
    transformers' defaults. An ``id2label`` passed in (a saved config's) only picks which classification task comes
    first, since config.json stores the tasks in sorted order. Every task's own labels stay in ``tasks``.
    """

    model_type = "mtbert"
    #: pipeline tasks that the installed mtbert serves itself (``mtbert.hub.register_auto_classes`` sets this on the
    #: installed class; a class loaded as remote code keeps it empty), see :class:`LocalPipelines`
    local_pipeline_tasks: tuple[str, ...] = ()

    def __init__(
        self,
        encoder: dict[str, Any] | None = None,
        tasks: dict[str, dict[str, Any]] | None = None,
        shared_encoder: bool = True,
        encoder_name_or_path: str | None = None,
        encoder_attn_implementation: str | None = None,
        default_task: str | None = None,
        **kwargs,
    ):
        if isinstance(encoder, PretrainedConfig):
            encoder = encoder.to_dict()
        if encoder is not None and not isinstance(encoder, dict):
            raise MultitaskConfigError(
                f"encoder must be the backbone's configuration (a dict or a PretrainedConfig), got {encoder!r}"
            )
        encoder = dict(encoder) if encoder is not None else {"model_type": "bert"}
        for key in ("id2label", "label2id", "architectures", "_name_or_path", "transformers_version"):
            encoder.pop(key, None)  # head-specific or bookkeeping fields of the backbone's own config
        _check_encoder(encoder)
        self.encoder = json.loads(json.dumps(encoder))  # plain JSON types, so a save/load round trip is exact
        if tasks is None:
            tasks = {name: {} for name in DEFAULT_TASKS}
        if not isinstance(tasks, dict) or not tasks:
            raise MultitaskConfigError("tasks must be a non-empty mapping of task name to task settings")
        self.tasks = {name: normalize_task_spec(name, spec) for name, spec in tasks.items()}
        if not isinstance(shared_encoder, (bool, int)) or shared_encoder not in (0, 1):  # bool("false") is True
            raise MultitaskConfigError(f"shared_encoder must be True or False, got {shared_encoder!r}")
        self.shared_encoder = bool(shared_encoder)
        for name, value in (
            ("encoder_name_or_path", encoder_name_or_path),
            ("encoder_attn_implementation", encoder_attn_implementation),
        ):
            if value is not None and not isinstance(value, str):
                raise MultitaskConfigError(f"{name} must be a string (or None), got {value!r}")
        self.encoder_name_or_path = encoder_name_or_path
        self.encoder_attn_implementation = encoder_attn_implementation
        self.default_task: str | None = None
        kwargs.pop("hidden_size", None)
        saved = kwargs.pop("id2label", None)  # derived from the tasks (set_default_task), as are these two
        kwargs.pop("label2id", None)
        kwargs.pop("num_labels", None)
        kwargs.setdefault("custom_pipelines", copy.deepcopy(CUSTOM_PIPELINES))
        if type(self).local_pipeline_tasks and isinstance(kwargs["custom_pipelines"], dict):
            kwargs["custom_pipelines"] = LocalPipelines(kwargs["custom_pipelines"], type(self).local_pipeline_tasks)
        super().__init__(**kwargs)
        # config.json keeps its keys sorted, so the tasks' order is not the user's after a reload: a saved id2label
        # that is some task's labels keeps naming that task
        saved = [saved[key] for key in sorted(saved, key=int)] if isinstance(saved, dict) else []
        self.set_default_task(default_task, saved_labels=saved)
        length = getattr(self, "max_seq_length", None)  # recorded by training: inference truncates to it
        if length is not None and (
            isinstance(length, bool) or not isinstance(length, int) or not 4 <= length <= self.max_positions
        ):
            raise MultitaskConfigError(
                f"max_seq_length must be a whole number from 4 to {self.max_positions} (the backbone's positions), "
                f"got {length!r}"
            )

    def set_default_task(self, task: str | None, saved_labels: list[str] | None = None) -> None:
        """Set ``default_task`` (checked: one of the tasks, or ``None``) and the ``id2label``/``label2id`` it
        implies (see the class docstring; among the classification tasks, the one whose labels are ``saved_labels``,
        by default the current ``id2label``, comes first)."""
        if task is not None and (not isinstance(task, str) or task not in self.tasks):
            raise MultitaskConfigError(f"default_task {task!r} is not one of the tasks: {', '.join(self.tasks)}")
        self.default_task = task
        if saved_labels is None and isinstance(getattr(self, "id2label", None), dict):
            id2label: dict = self.id2label or {}
            saved_labels = [id2label[key] for key in sorted(id2label)]  # keep naming the same task
        labelled = self.label_task(saved_labels)
        if labelled is not None:
            names = self.tasks[labelled]["label_names"]
            self.id2label = dict(enumerate(names))
            self.label2id = {name: i for i, name in enumerate(names)}

    def resolved_default_task(self) -> str | None:
        """``default_task``, else the only task of a one-task model, else ``None``."""
        if self.default_task is not None:
            return self.default_task
        return next(iter(self.tasks)) if len(self.tasks) == 1 else None

    def label_task(self, saved_labels: list[str] | None = None) -> str | None:
        """The task whose labels are ``id2label``: the default (or only) task when it is a classification task, else
        the first classification task (the first whose labels are ``saved_labels``, the id2label of a saved config,
        when there is one); ``None`` when no task has labels."""
        default = self.resolved_default_task()
        if default is not None and self.tasks[default]["label_names"]:
            return default
        labelled = [name for name, spec in self.tasks.items() if spec["label_names"]]
        saved = [name for name in labelled if saved_labels and self.tasks[name]["label_names"] == list(saved_labels)]
        return (saved or labelled or [None])[0]  # type: ignore[list-item]

    @property
    def encoder_config(self) -> PretrainedConfig:
        """The backbone configuration as a transformers config object."""
        encoder = dict(self.encoder)
        model_type = encoder.pop("model_type", "bert")
        return AutoConfig.for_model(model_type, **encoder)

    @property
    def hidden_size(self) -> int:
        """The backbone's output width (``dim`` in DistilBERT's config, ``hidden_size`` elsewhere)."""
        return int(self.encoder_config.hidden_size)

    @property
    def max_positions(self) -> int:
        """How many tokens the backbone can read: ``max_position_embeddings``, less the padding offset of families
        that number positions from ``pad_token_id + 1`` (RoBERTa, XLM-R, MPNet)."""
        limit = int(self.encoder.get("max_position_embeddings") or 512)
        if self.encoder.get("model_type") in POSITIONS_AFTER_PADDING:
            limit -= int(self.encoder.get("pad_token_id") or 0) + 1
        return limit

    @property
    def task_names(self) -> list[str]:
        return list(self.tasks)

    def task_spec(self, task: str) -> TaskSpec:
        """A task's completed settings, typed (``config.json`` holds them as the plain mapping ``to_dict`` gives)."""
        if task not in self.tasks:
            raise MultitaskConfigError(f"no task {task!r}; this model's tasks are {', '.join(self.tasks)}")
        return TaskSpec(**self.tasks[task])


# Saving a config copies this file next to it and records ``auto_map`` (AutoConfig → this class).
MultitaskBertConfig.register_for_auto_class("AutoConfig")
