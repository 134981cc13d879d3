"""Tests for the packaged offline metrics and the mtbert.metrics facade."""

import socket
import warnings

import evaluate
import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score

import mtbert.metrics as metrics
from mtbert.metrics import (
    PRIMARY_METRIC,
    average_score,
    compute_task_metrics,
    load_metric,
    metric_path,
)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("name", ["accuracy", "f1", "pearsonr", "spearmanr"])
def test_packaged_module_loads_from_folder(name):
    module = evaluate.load(str(metric_path(name)), keep_in_memory=True)
    assert isinstance(module, evaluate.Metric)
    assert module.name == name
    assert module.description.strip() and module.citation.strip()
    expected = "int64" if name in ("accuracy", "f1") else "float64"
    assert {f.dtype for f in module.features.values()} == {expected}


def test_accuracy_matches_sklearn(rng):
    preds, refs = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    result = load_metric("accuracy").compute(predictions=preds, references=refs)
    assert set(result) == {"accuracy"}
    assert type(result["accuracy"]) is float
    assert result["accuracy"] == pytest.approx(accuracy_score(refs, preds))


def test_f1_matches_sklearn(rng):
    preds, refs = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    result = load_metric("f1").compute(predictions=preds, references=refs)
    assert set(result) == {"f1"}
    assert type(result["f1"]) is float
    assert result["f1"] == pytest.approx(f1_score(refs, preds, pos_label=1))


def test_f1_without_positives_is_zero():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_metric("f1").compute(predictions=[0, 0, 0], references=[0, 0, 0]) == {"f1": 0.0}


@pytest.mark.parametrize("name, reference", [("pearsonr", stats.pearsonr), ("spearmanr", stats.spearmanr)])
def test_correlations_match_scipy(rng, name, reference):
    refs = rng.uniform(0, 5, 300)
    preds = refs + rng.normal(0, 1.5, 300)
    result = load_metric(name).compute(predictions=preds, references=refs)
    assert set(result) == {name}
    assert type(result[name]) is float
    assert result[name] == pytest.approx(float(reference(preds, refs)[0]), abs=1e-10)


@pytest.mark.parametrize("name", ["pearsonr", "spearmanr"])
@pytest.mark.parametrize(
    "preds, refs",
    [([2.5] * 10, list(range(10))), (list(range(10)), [1.0] * 10), ([3.0] * 10, [3.0] * 10), ([1.0], [2.0])],
)
def test_degenerate_correlation_is_zero_without_warnings(name, preds, refs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = load_metric(name).compute(predictions=preds, references=refs)
    assert result == {name: 0.0}


def test_compute_task_metrics_keys_and_values(rng):
    labels = rng.integers(0, 2, 100)
    preds = rng.integers(0, 2, 100)
    sent = compute_task_metrics("sentence_classification", preds, labels)
    assert set(sent) == {"accuracy"}
    pair = compute_task_metrics("pair_classification", preds, labels)
    assert set(pair) == {"accuracy", "f1"}
    assert pair["f1"] == pytest.approx(f1_score(labels, preds))

    scores = rng.uniform(0, 5, 100)
    reg = compute_task_metrics("pair_regression", scores + rng.normal(0, 1, 100), scores)
    assert set(reg) == {"pearson", "spearman"}
    assert all(type(v) is float for d in (sent, pair, reg) for v in d.values())


def test_compute_task_metrics_accepts_column_vector_and_constant_input():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = compute_task_metrics("pair_regression", np.full((5, 1), 2.0), np.arange(5.0))
    assert result == {"pearson": 0.0, "spearman": 0.0}


@pytest.mark.parametrize(
    "kind, preds, refs, match",
    [
        ("span_extraction", [0], [0], "Unknown task kind"),
        ("sentence_classification", [0, 1], [0], "length"),
        ("pair_regression", [], [], "empty"),
        ("pair_classification", [[0.1, 0.9]], [1], "one-dimensional"),
    ],
)
def test_compute_task_metrics_errors(kind, preds, refs, match):
    with pytest.raises(ValueError, match=match):
        compute_task_metrics(kind, preds, refs)


def test_average_score_uses_primary_metrics():
    assert PRIMARY_METRIC == {
        "sentence_classification": "accuracy",
        "pair_classification": "accuracy",
        "sentence_regression": "pearson",
        "pair_regression": "pearson",
        "token_classification": "f1",
    }
    task_metrics = {
        "sst": {"accuracy": 0.9},
        "qqp": {"accuracy": 0.8, "f1": 0.1},
        "sts": {"pearson": 0.7, "spearman": 0.2},
    }
    kinds = {"sst": "sentence_classification", "qqp": "pair_classification", "sts": "pair_regression"}
    assert average_score(task_metrics, kinds) == pytest.approx(0.8)
    assert type(average_score(task_metrics, kinds)) is float


@pytest.mark.parametrize(
    "task_metrics, kinds, match",
    [
        ({}, {}, "at least one"),
        ({"sst": {"accuracy": 0.9}}, {}, "No task kind"),
        ({"sst": {"accuracy": 0.9}}, {"sst": "tagging"}, "Unknown task kind"),
        ({"sts": {"spearman": 0.9}}, {"sts": "pair_regression"}, "pearson"),
    ],
)
def test_average_score_errors(task_metrics, kinds, match):
    with pytest.raises(ValueError, match=match):
        average_score(task_metrics, kinds)


def test_unknown_metric_name():
    with pytest.raises(ValueError, match="Unknown metric"):
        load_metric("bleu")


def test_loads_offline_without_network(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    monkeypatch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True)

    def no_network(*args, **kwargs):
        raise OSError("network access attempted in offline metric test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    load_metric.cache_clear()
    try:
        for name in metrics.METRIC_NAMES:
            assert load_metric(name) is load_metric(name)  # cached
        assert compute_task_metrics("pair_classification", [1, 0, 1], [1, 1, 1]) == pytest.approx(
            {"accuracy": 2 / 3, "f1": 0.8}
        )
    finally:
        load_metric.cache_clear()


def test_three_way_pair_classification_reports_macro_f1():
    """A 3-class pair task (NLI) gets accuracy and the macro F1 over its classes, not a binary F1 of class 1."""
    predictions, references = [0, 1, 2, 2, 1, 0], [0, 1, 2, 1, 1, 2]
    result = metrics.compute_task_metrics("pair_classification", predictions, references, num_labels=3)
    per_class = []
    for c in (0, 1, 2):
        tp = sum(p == c and r == c for p, r in zip(predictions, references))
        fp = sum(p == c and r != c for p, r in zip(predictions, references))
        fn = sum(p != c and r == c for p, r in zip(predictions, references))
        per_class.append(2 * tp / (2 * tp + fp + fn))
    assert result["f1"] == pytest.approx(sum(per_class) / 3)
    assert result["accuracy"] == pytest.approx(4 / 6)
    binary = metrics.compute_task_metrics("pair_classification", [0, 1, 1], [0, 1, 0])
    assert binary["f1"] == pytest.approx(2 / 3)  # two classes: still the binary F1 of class 1


def test_sentence_regression_reports_correlations():
    result = metrics.compute_task_metrics("sentence_regression", [0.1, 0.5, 0.9, 0.2], [1.0, 2.0, 3.5, 1.5])
    assert set(result) == {"pearson", "spearman"} and result["spearman"] == pytest.approx(1.0)
