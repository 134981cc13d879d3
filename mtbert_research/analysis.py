"""Error analysis of a trained model on the dev sets (the paper's section 6.2, and a look at the other tasks).

- paraphrase tasks (QQP): accuracy overall, on true paraphrases and on non-paraphrases (the paper's Table 6), and
  the most confident false positives and false negatives with their text;
- sentence classification (SST): the confusion matrix (rows: true label, columns: predicted), as a table and a PNG
  whose colours are normalised per row;
- similarity (STS): predicted against gold scores as a scatter PNG, Pearson and Spearman in its title.

``examples/analyze.py`` is the command line; the charts need matplotlib (the ``research`` extra). Only the tasks the
model has are analysed; a task whose dev file is missing is skipped with a note.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PAIR_CLASSIFICATION = "pair_classification"
SENTENCE_CLASSIFICATION = "sentence_classification"
PAIR_REGRESSION = "pair_regression"

# What is analysed for a task: binary pair classification → accuracy on paraphrases / non-paraphrases and the most
# confident errors; any other classification (sentences, 3-way NLI pairs) → a confusion matrix; regression → a
# scatter of predicted against gold.
PARAPHRASE, CONFUSION, REGRESSION = "paraphrase", "confusion", "regression"


def analysis_kind(spec: dict[str, Any]) -> str:
    """``PARAPHRASE``, ``CONFUSION`` or ``REGRESSION`` for a task specification."""
    if spec["kind"].endswith("_regression"):
        return REGRESSION
    if spec["kind"] == PAIR_CLASSIFICATION and int(spec.get("num_labels") or 2) <= 2:
        return PARAPHRASE
    return CONFUSION


# ---------------------------------------------------------------------------------------------------------------
# Numbers from predictions (pure functions)
# ---------------------------------------------------------------------------------------------------------------


def _accuracy(predictions: np.ndarray, labels: np.ndarray) -> float | None:
    return float(np.mean(predictions == labels)) if len(labels) else None


def paraphrase_analysis(
    ids: Sequence[str],
    texts: Sequence[str],
    text_pairs: Sequence[str],
    labels: Sequence[float],
    predictions: Sequence[float],
    scores: Sequence[float],
    top_n: int = 5,
) -> dict[str, Any]:
    """Accuracy overall / on true paraphrases (label 1) / on non-paraphrases (label 0), and the ``top_n`` most
    confident errors: false positives with the highest scores, false negatives with the lowest.

    ``scores`` are what the head compares with its threshold: the paraphrase probability, or the cosine.
    """
    labels = np.asarray(labels).astype(np.int64)
    predictions = np.asarray(predictions).astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    positive, negative = labels == 1, labels == 0

    def examples(mask: np.ndarray, descending: bool) -> list[dict[str, Any]]:
        index = np.flatnonzero(mask)
        order = np.argsort(-scores[index] if descending else scores[index], kind="stable")[:top_n]
        return [
            {
                "id": ids[i],
                "text": texts[i],
                "text_pair": text_pairs[i],
                "score": float(scores[i]),
                "label": int(labels[i]),
                "prediction": int(predictions[i]),
            }
            for i in index[order]
        ]

    return {
        "n": len(labels),
        "n_paraphrases": int(positive.sum()),
        "n_non_paraphrases": int(negative.sum()),
        "accuracy": _accuracy(predictions, labels),
        "paraphrase_accuracy": _accuracy(predictions[positive], labels[positive]),
        "non_paraphrase_accuracy": _accuracy(predictions[negative], labels[negative]),
        "false_positives": examples(negative & (predictions == 1), descending=True),
        "false_negatives": examples(positive & (predictions == 0), descending=False),
        "n_false_positives": int((negative & (predictions == 1)).sum()),
        "n_false_negatives": int((positive & (predictions == 0)).sum()),
    }


def confusion_matrix(labels: Sequence[int], predictions: Sequence[int], num_labels: int) -> np.ndarray:
    """``matrix[true, predicted]`` counts."""
    matrix = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, dtype=np.int64), np.asarray(predictions, dtype=np.int64)), 1)
    return matrix


def row_normalise(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its total (a row with no example stays zero)."""
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=np.float64), where=totals > 0)


def classification_analysis(
    labels: Sequence[int], predictions: Sequence[int], label_names: Sequence[str]
) -> dict[str, Any]:
    labels = np.asarray(labels).astype(np.int64)
    predictions = np.asarray(predictions).astype(np.int64)
    matrix = confusion_matrix(labels, predictions, len(label_names))
    totals = matrix.sum(axis=1)
    per_class = [float(matrix[i, i] / totals[i]) if totals[i] else None for i in range(len(label_names))]
    return {
        "n": len(labels),
        "accuracy": _accuracy(predictions, labels),
        "label_names": list(label_names),
        "confusion": matrix,
        "per_class_recall": per_class,  # None for a label with no dev example
    }


def correlations(gold: Sequence[float], predicted: Sequence[float]) -> tuple[float, float]:
    """Pearson and Spearman correlation (NaN when either side is constant)."""
    from scipy import stats

    gold = np.asarray(gold, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    if len(gold) < 2 or np.ptp(gold) == 0 or np.ptp(predicted) == 0:
        return float("nan"), float("nan")
    return float(stats.pearsonr(predicted, gold)[0]), float(stats.spearmanr(predicted, gold)[0])


def regression_analysis(gold: Sequence[float], predicted: Sequence[float]) -> dict[str, Any]:
    gold = np.asarray(gold, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    pearson, spearman = correlations(gold, predicted)
    return {
        "n": len(gold),
        "pearson": pearson,
        "spearman": spearman,
        "mean_absolute_error": float(np.mean(np.abs(predicted - gold))) if len(gold) else None,
        "gold": gold,
        "predicted": predicted,
    }


# ---------------------------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(matrix: np.ndarray, label_names: Sequence[str], output_png: str, title: str = "") -> str:
    """Rows: true label, columns: predicted; each cell shows its count, colours are row-normalised."""
    plt = _pyplot()
    normalised = row_normalise(np.asarray(matrix))
    size = max(4.5, 0.9 * len(label_names) + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    image = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(
                j,
                i,
                f"{int(matrix[i, j])}\n{normalised[i, j]:.0%}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if normalised[i, j] > 0.6 else "black",
            )
    ticks = range(len(label_names))
    ax.set_xticks(ticks)
    ax.set_xticklabels(label_names, rotation=35, ha="right")
    ax.set_yticks(ticks)
    ax.set_yticklabels(label_names)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title(title or "Confusion matrix (colour: share of the true label's row)", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of row")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(output_png)), exist_ok=True)
    fig.savefig(output_png, dpi=120)
    plt.close(fig)
    return output_png


def plot_regression_scatter(
    gold: Sequence[float],
    predicted: Sequence[float],
    output_png: str,
    title: str = "",
    score_range: Sequence[float] | None = None,
) -> str:
    """Predicted against gold, the diagonal for reference, Pearson and Spearman in the title."""
    plt = _pyplot()
    gold = np.asarray(gold, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    pearson, spearman = correlations(gold, predicted)
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.scatter(gold, predicted, s=10, alpha=0.5, edgecolors="none")
    low, high = score_range if score_range else (min(gold.min(), predicted.min()), max(gold.max(), predicted.max()))
    ax.plot([low, high], [low, high], color="black", linewidth=0.8, linestyle="--", label="prediction = gold")
    ax.set_xlabel("gold similarity")
    ax.set_ylabel("predicted similarity")
    ax.legend(loc="upper left", fontsize="small")
    ax.set_title(
        f"{title + chr(10) if title else ''}Pearson {pearson:.3f}, Spearman {spearman:.3f} (n={len(gold)})",
        fontsize=10,
    )
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(output_png)), exist_ok=True)
    fig.savefig(output_png, dpi=120)
    plt.close(fig)
    return output_png


# ---------------------------------------------------------------------------------------------------------------
# A saved model on the dev sets
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class AnalysisReport:
    model: str
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # task → its analysis ("kind", "analysis")
    skipped: dict[str, str] = field(default_factory=dict)  # task → why
    files: list[str] = field(default_factory=list)


def load_model(model_dir: str, device: str | None = None):
    """``(model, tokenizer)`` of a saved mtbert model folder (``mtbert.inference.loading``: safetensors only,
    float32), in eval mode on ``device`` (default: cuda if any)."""
    import torch

    from mtbert.inference.loading import load_model_and_tokenizer

    return load_model_and_tokenizer(model_dir, device=device or ("cuda" if torch.cuda.is_available() else "cpu"))


def load_dev_sets(
    model, tokenizer, data_dir: str, tasks: Sequence[str] | None = None, max_seq_length: int = 128
) -> tuple[dict[str, Any], dict[str, str]]:
    """``({task: tokenized dev Dataset}, {task: why it was skipped})`` for the model's tasks (or ``tasks``)."""
    from mtbert.cli.arguments import DataArguments
    from mtbert.cli.run import load_tokenized
    from mtbert.data import DataFileError

    data_args = DataArguments(data_source="minbert", data_dir=data_dir, max_seq_length=max_seq_length)
    model_tasks = model.config.tasks
    wanted = list(tasks) if tasks else list(model_tasks)
    dev, skipped = {}, {}
    for task in wanted:
        if task not in model_tasks:
            skipped[task] = f"the model has no task {task!r} (it has {', '.join(model_tasks)})"
            continue
        try:
            dev[task] = load_tokenized({task: model_tasks[task]}, data_args, tokenizer, splits=("dev",))[task]["dev"]
        except DataFileError as error:
            skipped[task] = str(error)
    return dev, skipped


def analyze_task(model, task: str, dataset, predictions: dict[str, np.ndarray], top_n: int = 5) -> dict[str, Any]:
    """The analysis of one task (see ``analysis_kind``) from ``predict_task``'s output on its dev ``dataset``."""
    spec = model.config.tasks[task]
    kind, analysis = spec["kind"], analysis_kind(spec)
    labels = np.asarray(dataset["label"])
    if analysis == PARAPHRASE:
        result = paraphrase_analysis(
            dataset["id"],
            dataset["text"],
            dataset["text_pair"],
            labels,
            predictions["predictions"],
            predictions["scores"],
            top_n=top_n,
        )
        result["score_name"] = "cosine" if spec.get("pair_encoding") == "cosine" else "P(paraphrase)"
        if spec.get("pair_encoding") == "cosine":
            result["threshold"] = spec.get("cosine_threshold")
    elif analysis == CONFUSION:
        names = spec.get("label_names") or [str(i) for i in range(spec["num_labels"])]
        result = classification_analysis(labels, predictions["predictions"], names)
    else:
        result = regression_analysis(labels, predictions["predictions"])
        result["score_range"] = spec.get("score_range")
    result["kind"], result["analysis"] = kind, analysis
    return result


def analyze(
    model_dir: str,
    data_dir: str,
    output_dir: str,
    tasks: Sequence[str] | None = None,
    top_n: int = 5,
    batch_size: int = 128,
    max_seq_length: int = 128,
    device: str | None = None,
    progress: bool = False,
    model=None,
    tokenizer=None,
) -> AnalysisReport:
    """Predict the dev sets of a saved model and write ``analysis.md`` and the PNGs into ``output_dir``."""
    from mtbert.inference.predict import predict_task

    if model is None or tokenizer is None:
        model, tokenizer = load_model(model_dir, device)
    dev, skipped = load_dev_sets(model, tokenizer, data_dir, tasks, max_seq_length)
    report = AnalysisReport(model=model_dir, skipped=skipped)
    os.makedirs(output_dir, exist_ok=True)
    for task, dataset in dev.items():
        if "label" not in dataset.column_names:
            report.skipped[task] = "the dev split has no labels"
            continue
        predictions = predict_task(
            model, task, dataset, batch_size=batch_size, pad_token_id=tokenizer.pad_token_id or 0, progress=progress
        )
        result = analyze_task(model, task, dataset, predictions, top_n=top_n)
        if result["analysis"] == CONFUSION:
            path = os.path.join(output_dir, f"{task}_confusion_matrix.png")
            plot_confusion_matrix(
                result["confusion"],
                result["label_names"],
                path,
                f"{task.upper()} dev: accuracy {result['accuracy']:.3f} (n={result['n']})\n"
                "rows: true label, columns: predicted; colour: share of the row",
            )
            result["png"] = path
            report.files.append(path)
        elif result["analysis"] == REGRESSION:
            path = os.path.join(output_dir, f"{task}_scatter.png")
            plot_regression_scatter(
                result["gold"], result["predicted"], path, f"{task.upper()} dev", result.get("score_range")
            )
            result["png"] = path
            report.files.append(path)
        report.tasks[task] = result
    markdown = os.path.join(output_dir, "analysis.md")
    with open(markdown, "w", encoding="utf-8") as handle:
        handle.write(render_markdown(report, output_dir))
    report.files.insert(0, markdown)
    return report


# ---------------------------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def model_label(path: str) -> str:
    """A short name for a model folder: its name, or ``<config>/seed<S>`` for a run_experiments.py run folder."""
    path = os.path.normpath(path)
    name = os.path.basename(path) or path
    if re.fullmatch(r"seed-?\d+", name) and os.path.basename(os.path.dirname(path)):
        return f"{os.path.basename(os.path.dirname(path))}/{name}"
    return name


def render_markdown(report: AnalysisReport, output_dir: str | None = None) -> str:
    name = model_label(report.model)
    lines = [f"# Error analysis: `{name}`", "", f"Model: `{report.model}`. Dev sets.", ""]

    def rel(path: str) -> str:
        return os.path.relpath(path, output_dir) if output_dir else path

    for task, result in report.tasks.items():
        analysis = result["analysis"]
        if analysis == PARAPHRASE:
            lines += [f"## {task.upper()}: accuracy on subsets of the dev set", ""]
            lines += [
                f"| | Overall {task.upper()} (n={result['n']}) | Paraphrases (n={result['n_paraphrases']}) | "
                f"Non-paraphrases (n={result['n_non_paraphrases']}) |",
                "| --- | ---: | ---: | ---: |",
                f"| {_cell(name)} | {_fmt(result['accuracy'])} | {_fmt(result['paraphrase_accuracy'])} | "
                f"{_fmt(result['non_paraphrase_accuracy'])} |",
                "",
                "Paraphrases: pairs with a true label of 1; non-paraphrases: a true label of 0 (the paper's Table 6).",
                "",
            ]
            score = result.get("score_name", "score")
            threshold = f" (threshold {result['threshold']})" if result.get("threshold") is not None else ""
            for key, title, how in (
                (
                    "false_positives",
                    "False positives",
                    f"non-paraphrases predicted as paraphrases, highest {score} first",
                ),
                (
                    "false_negatives",
                    "False negatives",
                    f"paraphrases predicted as non-paraphrases, lowest {score} first",
                ),
            ):
                total = result[f"n_{key}"]
                shown = result[key]
                if not shown:
                    lines += [f"### {title}: none", ""]
                    continue
                lines += [f"### {title}: the {len(shown)} most confident of {total}", "", f"{how}{threshold}.", ""]
                if shown:
                    lines += [f"| # | Question 1 | Question 2 | {score} |", "| ---: | --- | --- | ---: |"]
                    lines += [
                        f"| {i} | {_cell(e['text'])} | {_cell(e['text_pair'])} | {e['score']:.3f} |"
                        for i, e in enumerate(shown, 1)
                    ]
                    lines.append("")
        elif analysis == CONFUSION:
            names = result["label_names"]
            lines += [
                f"## {task.upper()}: confusion matrix",
                "",
                f"Accuracy {_fmt(result['accuracy'])} (n={result['n']}). Rows: true label; columns: predicted.",
                "",
            ]
            lines.append("| true \\ predicted | " + " | ".join(_cell(n) for n in names) + " | recall |")
            lines.append("| --- | " + " | ".join("---:" for _ in names) + " | ---: |")
            for i, label in enumerate(names):
                counts = " | ".join(str(int(c)) for c in result["confusion"][i])
                lines.append(f"| {_cell(label)} | {counts} | {_fmt(result['per_class_recall'][i])} |")
            if result.get("png"):
                lines += ["", f"![{task} confusion matrix]({rel(result['png'])})"]
            lines.append("")
        elif analysis == REGRESSION:
            lines += [
                f"## {task.upper()}: predicted against gold",
                "",
                f"Pearson {_fmt(result['pearson'])}, Spearman {_fmt(result['spearman'])}, "
                f"mean absolute error {_fmt(result['mean_absolute_error'])} (n={result['n']}).",
                "",
            ]
            if result.get("png"):
                lines += [f"![{task} scatter]({rel(result['png'])})", ""]
    if report.skipped:
        lines += ["## Skipped", ""] + [f"- `{t}`: {_cell(why)}" for t, why in report.skipped.items()] + [""]
    return "\n".join(lines).rstrip() + "\n"


def summary(report: AnalysisReport) -> str:
    """A few lines for the terminal."""
    lines = []
    for task, r in report.tasks.items():
        if r["analysis"] == PARAPHRASE:
            lines.append(
                f"{task}: accuracy {_fmt(r['accuracy'])} (paraphrases {_fmt(r['paraphrase_accuracy'])}, "
                f"non-paraphrases {_fmt(r['non_paraphrase_accuracy'])}); "
                f"{r['n_false_positives']} false positives, {r['n_false_negatives']} false negatives"
            )
        elif r["analysis"] == CONFUSION:
            lines.append(f"{task}: accuracy {_fmt(r['accuracy'])} (n={r['n']})")
        elif r["analysis"] == REGRESSION:
            lines.append(f"{task}: Pearson {_fmt(r['pearson'])}, Spearman {_fmt(r['spearman'])} (n={r['n']})")
    lines += [f"{task}: skipped ({why})" for task, why in report.skipped.items()]
    lines += [f"wrote {path}" for path in report.files]
    return "\n".join(lines)


__all__ = [
    "AnalysisReport",
    "analysis_kind",
    "analyze",
    "analyze_task",
    "classification_analysis",
    "confusion_matrix",
    "correlations",
    "load_dev_sets",
    "load_model",
    "paraphrase_analysis",
    "plot_confusion_matrix",
    "plot_regression_scatter",
    "regression_analysis",
    "render_markdown",
    "row_normalise",
    "summary",
]
