"""Write docs/configuration.md, the configuration reference, from the code: one source of truth for every setting.

The settings of a run are the fields of ``mtbert.cli.arguments.ModelArguments`` and ``DataArguments``, mtbert's own
fields of ``mtbert.training.training_args.MultitaskTrainingArguments`` (the stock ``TrainingArguments`` fields are
linked, not listed), and the settings of one task (``mtbert.models.mtbert.kinds_mtbert.TaskSpec``, the keys
``normalize_task_spec`` of
``mtbert.models.mtbert.configuration_mtbert`` accepts). The meaning of a field is its ``help=`` metadata; the task
settings, which are a plain dataclass in remote code, take theirs from ``TASK_SETTING_HELP`` below.
``tests/project/test_docs.py`` fails when a field has no help text or when docs/configuration.md is not what this
script writes::

    python docs/gen_config_reference.py           # rewrite docs/configuration.md
    python docs/gen_config_reference.py --check   # exit 1 if it is out of date
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().with_name("configuration.md")
STOCK_DOCS = "https://huggingface.co/docs/transformers/main_classes/trainer#transformers.TrainingArguments"

#: One line per task setting (``TaskSpec`` has no metadata: it is remote code, copied beside every checkpoint).
TASK_SETTING_HELP: dict[str, str] = {
    "kind": (
        "What the task predicts: `sentence_classification`, `sentence_regression`, `pair_classification`, "
        "`pair_regression` or `token_classification` (the registered kinds). `sst`, `qqp` and `sts` know theirs; any "
        "other task name must set it."
    ),
    "num_labels": (
        "Number of classes of a classification task; a pair task may have 3 or more (NLI) with the `separate`, "
        "`concat_sep`, `concat_nosep` and `dual` heads (the cosine head is binary). Read from `label_names` when "
        "those are given."
    ),
    "label_names": (
        "Class names, in label-id order: labels in the data may be written as these names, and the pipeline answers "
        "with them. Token tasks without it read the tag set from the training split."
    ),
    "pooling": "`cls`: the [CLS] state; `mean`: the mean over real tokens (padding excluded).",
    "pair_encoding": (
        "Pair tasks only. `separate`: both sentences encoded alone (in one encoder call), classifier on [u; v]. "
        "`cosine`: cos(u, v); similarity predicts ReLU(cos)·max, paraphrase predicts cos > `cosine_threshold`; both "
        "trained with MSE. `concat_sep`: one sequence `[CLS] a [SEP] b [SEP]`. `concat_nosep`: `[CLS] a b [SEP]`. "
        "`dual`: both at once on one encoder: the `concat_sep` cross-encoder (the task's pooling and classifier) and "
        "the cosine of the two MEAN embeddings (similarity: ReLU(cos)·max; paraphrase: a learned logit s·(cos − t)); "
        "the prediction is their average and the loss the sum of both views' losses."
    ),
    "use_token_type_ids": (
        "Segment embeddings for `concat_sep` (off, as in the paper); refused for backbones without segment embeddings."
    ),
    "classifier": "`linear`: dropout → linear (1-layer); `mlp`: dropout → d×d → GELU → linear (2-layer).",
    "classifier_dropout": "Dropout before the classifier.",
    "cosine_threshold": "Paraphrase threshold of a cosine head.",
    "score_range": "Range of a regression task's scores (the cosine head scales by its top).",
    "loss_weight": "Multiplies the task's loss.",
    "pair_features": (
        "`pair_encoding: separate` only: the classifier reads `concat` = [u; v], or `full` = [u; v; |u−v|; u∗v] "
        "(InferSent/Sentence-BERT)."
    ),
    "regression_loss": (
        "Similarity only. `mse`; `cosent`: CoSENT ranking loss on the cosine (or on a head's score / max); `angle`: "
        "CoSENT on the cosine plus on AnglE's angle difference (cosine/separate heads). Ranking losses raise "
        "Spearman but leave the score scale free, which can lower Pearson."
    ),
    "cosent_scale": "CoSENT's temperature λ.",
    "label_smoothing": (
        "Label-smoothed cross-entropy: sentence classification, or pair classification with 3+ labels (the stock "
        "`label_smoothing_factor` is refused in favour of this)."
    ),
    "rdrop_alpha": (
        "R-Drop: the batch runs twice (two dropout masks) and this weight times their disagreement (symmetric KL; "
        "squared error for scores) joins the loss; training only, double the task's batch cost."
    ),
    "smart_alpha": (
        "SMART-style smoothness: the word embeddings get noise of std `smart_noise`, moved by one max-norm ascent "
        "step of `smart_step_size` towards the largest change in the predictions; this weight times that change "
        "(R-Drop's measure) joins the loss. Training only, about three forward passes per batch of the task; not "
        "together with `rdrop_alpha`."
    ),
    "smart_noise": "SMART: the standard deviation of the noise added to the word embeddings.",
    "smart_step_size": "SMART: the size of the one max-norm ascent step on that noise.",
    "label_all_tokens": (
        "Token tasks: every sub-token of a word carries the word's label; by default only its first does (the others "
        "are ignored by the loss)."
    ),
}

#: Defaults shown in words where the field's own default (``None``) is a placeholder.
DEFAULT_SHOWN: dict[str, str] = {
    "kind": "from the task name (`sst`, `qqp`, `sts`), else required",
    "num_labels": "SST: 5; pair tasks: 2",
    "label_names": "SST: 5 names; QQP: 2",
    "pair_encoding": "`separate` (pair tasks)",
    "score_range": "`[0, 5]` (STS)",
    "tasks": "`sst`, `qqp`, `sts`",
    "attn_implementation": "per family: SDPA where supported, else eager",
    "default_task": "the only task, else none",
    "hidden_dropout_prob": "backbone's",
    "attention_probs_dropout_prob": "backbone's",
    "max_train_samples": "all",
    "max_eval_samples": "all",
    "max_predict_samples": "all",
    "aggregator": "`pcgrad` or `pcgrad_mean`, by `pcgrad_reduction`",
    "head_learning_rate": "`learning_rate`",
    "early_stopping_patience": "off",
}

#: Where a page says more than a one-line help can (appended to the meaning, so the help text stays the source).
SEE_ALSO: dict[str, str] = {
    "tasks": "Its keys: [task settings](#task-settings); [Tasks, heads and kinds](concepts/tasks.md).",
    "model_name_or_path": "[Backbones](concepts/backbones.md).",
    "task_data": "[Your own task](guides/own-task.md).",
    "max_seq_length": "At most the backbone's positions (read from its `config.json`); a joined pair: longest first.",
    "max_train_samples": "n ≥ 1: 0 is refused (leave the task out instead).",
    "max_predict_samples": "The partial files are listed in `predictions/PARTIAL` ([Data formats](data-formats.md)).",
    "hub_datasets": "[Data formats](data-formats.md).",
    "strategy": "[Strategies and aggregators](concepts/strategies.md).",
    "aggregator": "[PCGrad](pcgrad.md).",
    "embedding_updates": "Dev metrics of each: [Performance](performance.md).",
    "cudnn_attention": '[Performance](performance.md), "GPU".',
    "distill": "[Distillation](distillation.md).",
    "overwrite_output_dir": '[Reliability](reliability.md), "Nothing lost".',
    "gradient_telemetry": "[PCGrad](pcgrad.md).",
}

INTRO = """\
# Configuration reference

<!-- Generated by docs/gen_config_reference.py from the code's field metadata: do not edit by hand.
     Change the help= texts (or TASK_SETTING_HELP there) and run `python docs/gen_config_reference.py`. -->

A config is a YAML (or JSON) file of settings; command-line flags override it, and
`--tasks.<task>.<key> <value>` overrides one task setting:

```bash
python examples/train.py examples/configs/quickstart.yaml --learning_rate 3e-5 --tasks.sts.pooling cls
```

Unknown keys, misspelled values, and heads that do not fit their task are refused before anything is loaded,
with the valid choices named. `extends: other.yaml` starts from another config; `drop_tasks: [qqp]` in it removes
an inherited task (with its `task_data`, `hub_datasets` and `max_train_samples` entries; `tasks: {qqp: null}` keeps
meaning "qqp with its defaults"). Ranges and combinations are checked when the config is read, before any model or
data loads (the cases are listed in [Reliability](reliability.md)): one line naming the setting, the config file and
key or the flag, and the fix, exit code 2. `python examples/train.py --help` prints the same settings.

The tables below are generated from the code: the `help=` texts of the argument dataclasses and the task settings'
descriptions.
"""

STOCK_TRAINING = f"""\
Besides these, every stock [`TrainingArguments`]({STOCK_DOCS}) field works (`learning_rate`, `num_train_epochs`,
`per_device_train_batch_size`, `gradient_accumulation_steps`, `eval_strategy`, `save_strategy`,
`load_best_model_at_end`, `push_to_hub`, ...). mtbert reads some of them its own way:

- `metric_for_best_model` defaults to `average` with `load_best_model_at_end` (which needs matching `eval_strategy`
  and `save_strategy`); `push_to_hub` is refused while `HF_HUB_OFFLINE=1`; in transformers 5 a float
  `warmup_steps` below 1 is a ratio.
- `bf16`: `false`, `true` or `auto`. `auto` turns bf16 mixed precision on for a CUDA GPU with bf16 and for CPUs
  with AMX, and on a CPU with AVX512-BF16 but no AMX lets a 5 s start-up measurement decide (on if bf16 autocast is
  ≥ 1.1x fp32 there: it is faster on some such CPUs and slower on others); the choice and its reason are logged
  (`bf16 on: ...`). Under several processes no measurement is made (ranks could disagree): set it explicitly. On a
  machine without a GPU, `bf16: true` means CPU autocast (no `use_cpu` needed). Measurements:
  [Performance](performance.md).
- `do_train`, `do_eval`, `do_predict`: as in run_glue, name the phases to run (all three when none is named;
  `--do_eval` alone scores an mtbert checkpoint without training; `--do_predict` writes the leaderboard files).
- `group_by_length` is also spelled `train_sampling_strategy: group_by_length`, as in transformers.

Stock flags that the multitask trainer cannot honour are refused with one line saying what to use instead:
`label_smoothing_factor` (use `tasks.<task>.label_smoothing`), `train_sampling_strategy` other than `random`/
`group_by_length`, `length_column_name`, `dataloader_drop_last`, `neftune_noise_alpha`, `batch_eval_metrics`,
`include_for_metrics`, `prediction_loss_only`, `eval_do_concat_batches: false` and `label_names`.
"""


def _one_line(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _default(name: str, value: Any) -> str:
    if name in DEFAULT_SHOWN:
        return DEFAULT_SHOWN[name]
    if value is None:
        return "–"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def _field_default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def _table(rows: list[tuple[str, str, str]]) -> str:
    lines = ["| key | default | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{key}` | {default} | {meaning} |" for key, default, meaning in rows]
    return "\n".join(lines) + "\n"


def _meaning(name: str, help_text: str, choices=None) -> str:
    meaning = _one_line(help_text)
    if (
        name == "aggregator"
    ):  # the registered aggregators (mtbert.training.aggregators.AGGREGATORS), not a list kept here
        from mtbert.training.aggregators import AGGREGATORS

        choices = list(AGGREGATORS)
    if choices:
        meaning += " Values: " + ", ".join(f"`{c}`" for c in choices) + "."
    if name in SEE_ALSO:
        meaning += " " + SEE_ALSO[name]
    return meaning


def own_training_fields() -> list[dataclasses.Field]:
    """The fields of MultitaskTrainingArguments that are mtbert's: new ones, and stock ones it redefines."""
    from transformers import TrainingArguments

    from mtbert.training.training_args import MultitaskTrainingArguments

    stock = {f.name: f for f in dataclasses.fields(TrainingArguments)}
    own = []
    for field in dataclasses.fields(MultitaskTrainingArguments):
        base = stock.get(field.name)
        if base is None or base.metadata.get("help") != field.metadata.get("help"):
            own.append(field)
    return own


def argument_sections() -> list[tuple[str, str, list[dataclasses.Field]]]:
    """(section title, class path, fields) of the argument dataclasses, in page order."""
    from mtbert.cli.arguments import DataArguments, ModelArguments

    return [
        ("Model", "mtbert.cli.arguments.ModelArguments", list(dataclasses.fields(ModelArguments))),
        ("Data", "mtbert.cli.arguments.DataArguments", list(dataclasses.fields(DataArguments))),
        ("Training", "mtbert.training.training_args.MultitaskTrainingArguments", own_training_fields()),
    ]


def task_settings() -> dict[str, Any]:
    """Every key a task may carry, with its default: what ``normalize_task_spec`` accepts."""
    from mtbert.models.mtbert.configuration_mtbert import TASK_DEFAULTS

    return dict(TASK_DEFAULTS)


def missing_help() -> list[str]:
    """Settings without a description: ``Class.field`` for dataclass fields, ``tasks.<key>`` for task settings."""
    missing = [
        f"{owner}.{field.name}"
        for _, owner, fields in argument_sections()
        for field in fields
        if not str(field.metadata.get("help", "")).strip()
    ]
    missing += [f"tasks.{key}" for key in task_settings() if not TASK_SETTING_HELP.get(key, "").strip()]
    return missing


def _field_rows(fields: list[dataclasses.Field]) -> list[tuple[str, str, str]]:
    rows = []
    for field in fields:
        meaning = _meaning(field.name, field.metadata.get("help", ""), field.metadata.get("choices"))
        rows.append((field.name, _default(field.name, _field_default(field)), meaning))
    return rows


def render() -> str:
    """The text of docs/configuration.md."""
    from mtbert.models.mtbert.configuration_mtbert import DEFAULT_TASKS

    sections = {title: (owner, fields) for title, owner, fields in argument_sections()}
    parts = [INTRO]
    for title in ("Model", "Task settings", "Data", "Training"):
        if title == "Task settings":
            known = ", ".join(f"`{name}` ({spec['kind']})" for name, spec in DEFAULT_TASKS.items())
            parts.append(
                "## Task settings\n\n"
                "Keys of one task under `tasks.<name>` (`--tasks.<name>.<key> VALUE`): the fields of "
                "`mtbert.models.mtbert.kinds_mtbert.TaskSpec`, completed and checked by "
                "`mtbert.models.mtbert.configuration_mtbert.normalize_task_spec`. "
                "Known task names bring their kind and labels: "
                f"{known}; any other name needs `kind`. See [Tasks, heads and kinds](concepts/tasks.md).\n"
            )
            settings = task_settings().items()
            rows = [(k, _default(k, value), _meaning(k, TASK_SETTING_HELP.get(k, ""))) for k, value in settings]
            parts.append(_table(rows))
            continue
        owner, fields = sections[title]
        which = "mtbert's own fields" if title == "Training" else "Fields"
        parts.append(f"## {title}\n\n{which} of `{owner}`.\n")
        parts.append(_table(_field_rows(fields)))
    parts.append("### Stock settings\n\n" + STOCK_TRAINING)
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/configuration.md is out of date")
    args = parser.parse_args(argv)
    missing = missing_help()
    if missing:
        print(f"settings without help text: {', '.join(missing)}", file=sys.stderr)
        return 1
    text = render()
    if args.check:
        if not OUT.is_file() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} is out of date: run python docs/gen_config_reference.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
