"""examples/plot_runs.py: how groups of runs are read and averaged, its errors, and that it draws a figure."""

from __future__ import annotations

import json

import pytest

from conftest import load_example_script

plot_runs = load_example_script("plot_runs")


def write_metrics(folder, **metrics):
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({f"eval_{k}": v for k, v in metrics.items()}))
    return str(folder)


def test_multitask_runs_average_per_run(tmp_path):
    runs = [
        write_metrics(tmp_path / "a", sst_accuracy=0.5, qqp_accuracy=0.8, sts_pearson=0.9),
        write_metrics(tmp_path / "b", sst_accuracy=0.4, qqp_accuracy=0.9, sts_pearson=0.8),
    ]
    values = plot_runs.read_group(runs)
    assert values["SST"] == [0.5, 0.4] and values["STS"] == [0.9, 0.8]
    assert values["Average"] == pytest.approx([2.2 / 3, 2.1 / 3])


def test_single_task_runs_average_the_task_means(tmp_path):
    runs = [
        write_metrics(tmp_path / "sst1", sst_accuracy=0.5),
        write_metrics(tmp_path / "sst2", sst_accuracy=0.4),
        write_metrics(tmp_path / "qqp1", qqp_accuracy=0.8),
        write_metrics(tmp_path / "sts1", sts_pearson=0.9),
    ]
    values = plot_runs.read_group(runs)
    assert values["Average"] == pytest.approx([(0.45 + 0.8 + 0.9) / 3])
    # a group that never scores one of the tasks has no average
    assert plot_runs.read_group(runs[:3])["Average"] == []


def test_main_writes_the_figure(tmp_path, capsys):
    run = write_metrics(tmp_path / "a", sst_accuracy=0.5, qqp_accuracy=0.8, sts_pearson=0.9)
    output = tmp_path / "fig" / "cmp.png"
    plot_runs.main(
        [
            "--output",
            str(output),
            "--group",
            "mine",
            run,
            "--group",
            "again",
            run,
            "--target",
            "SST=0.485",
            "Average=0.75",
        ]
    )
    assert output.stat().st_size > 10_000 and output.read_bytes()[:4] == b"\x89PNG"
    assert "mine {'SST': (0.5, 1)" in capsys.readouterr().out


def test_errors_name_the_bad_argument(tmp_path, capsys):
    run = write_metrics(tmp_path / "a", sst_accuracy=0.5)
    with pytest.raises(SystemExit, match=r"no metrics\.json"):
        plot_runs.main(["--output", str(tmp_path / "x.png"), "--group", "g", str(tmp_path / "missing")])
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "metrics.json").write_text(json.dumps({"loss": 1.0}))
    with pytest.raises(SystemExit, match="has none of"):
        plot_runs.main(["--output", str(tmp_path / "x.png"), "--group", "g", str(tmp_path / "other")])
    for argv, message in [
        (["--group", "g", run, "--target", "MNLI=0.5"], "the column must be one of"),
        (["--group", "g", run, "--target", "SST=high"], "is not a number"),
        (["--group", "only-a-label"], "give a label and at least one run"),
    ]:
        with pytest.raises(SystemExit):
            plot_runs.main(["--output", str(tmp_path / "x.png"), *argv])
        assert message in capsys.readouterr().err


def test_every_panel_spans_the_same_height_so_gaps_keep_their_size():
    from mtbert_research.plots import run_group_scale

    groups = [
        ("a", {"SST": [0.40, 0.46], "QQP": [0.812], "STS": [0.85, 0.86], "Average": [0.69]}),
        ("b", {"SST": [0.48], "QQP": [0.813], "STS": [0.85], "Average": [0.71]}),
    ]
    span, limits = run_group_scale(groups, {"Average": 0.75})
    heights = {column: high - low for column, (low, high) in limits.items()}
    assert all(h == pytest.approx(span) for h in heights.values())  # one scale for every panel
    assert span >= 0.08  # the widest panel (SST: 0.40 .. 0.48 and its std) decides it, padded
    # QQP's 0.812 vs 0.813 is then under 2% of its panel's height: it looks as small as it is
    assert 0.001 / heights["QQP"] < 0.02
    for column, (low, high) in limits.items():  # and every point, mean ± std and target is inside its panel
        values = [v for _, group in groups for v in group[column]] + ([0.75] if column == "Average" else [])
        assert low < min(values) and max(values) < high
    # runs a few thousandths apart alone still get the minimum span, not a zoom that inflates them
    assert run_group_scale([("a", {"SST": [0.812], "QQP": [0.813], "STS": [], "Average": []})], {})[0] == 0.05


def test_the_figure_draws_points_with_error_bars_not_bars(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mtbert_research.plots import plot_run_groups

    figures = []
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))  # keep the figure to inspect it
    groups = [
        ("single-task", {"SST": [0.47, 0.48, 0.476], "QQP": [0.81], "STS": [0.85], "Average": [0.71]}),
        ("multitask", {"SST": [0.49, 0.48], "QQP": [0.812, 0.813], "STS": [0.86, 0.85], "Average": []}),
    ]
    output = tmp_path / "cmp.png"
    plot_run_groups(groups, {"SST": 0.485}, str(output), "Dev scores")
    assert output.read_bytes()[:4] == b"\x89PNG"
    axes = figures[0].axes
    assert [ax.get_title() for ax in axes] == ["SST", "QQP", "STS", "Average"]
    for ax in axes:
        assert not ax.patches  # no bars
        assert [t.get_text() for t in ax.get_xticklabels()] == ["single-task", "multitask"]  # labelled groups
        low, _high = ax.get_ylim()
        assert low > 0.3  # no panel starts at 0 while the others are zoomed
    heights = {round(ax.get_ylim()[1] - ax.get_ylim()[0], 9) for ax in axes}
    assert len(heights) == 1
    sst = axes[0]
    assert len(sst.containers) == 2  # one errorbar (mean ± std) per group
    texts = [t.get_text() for t in sst.texts]
    assert "0.475\n±0.005\nn=3" in texts and any(t.startswith("target 0.485") for t in texts)
    assert any(t.get_text() == "not scored" for t in axes[3].texts)  # the multitask group has no Average here


def _telemetry(projections_per_conflict: float, tasks=("sst", "sts")):
    rows = []
    for step in range(10, 110, 10):
        conflict = 1.0 if step % 30 == 0 else 0.0
        row = {
            "step": step,
            "grad_conflict_fraction": conflict,
            "grad_norm_ratio": 2.0 + step / 20,
            "pcgrad_projections": projections_per_conflict * conflict,
        }
        row.update({f"grad_norm_{t}": 1.0 for t in tasks})
        row.update({f"grad_cos_{a}_{b}": 0.1 - conflict / 5 for a in tasks for b in tasks if a < b})
        rows.append(row)
    return rows


def _telemetry_axes(monkeypatch, history, output):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mtbert_research.plots import plot_gradient_telemetry

    figures = []
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))
    plot_gradient_telemetry(history, str(output))
    assert output.read_bytes()[:4] == b"\x89PNG"
    figure = figures[0]
    figure.canvas.draw()  # tick labels are known once drawn
    return figure.axes


def test_telemetry_lines_are_distinct_and_log_ticks_read_as_numbers(tmp_path, monkeypatch):
    # two tasks: PCGrad projects twice per conflicting pair, so the two fraction lines are identical: drawn once
    axes = _telemetry_axes(monkeypatch, _telemetry(2.0), tmp_path / "two.png")
    assert len(axes[1].get_lines()) == 1 and "identical" in axes[1].get_lines()[0].get_label()
    ticks = [t.get_text() for t in axes[2].get_yticklabels(minor=False) + axes[2].get_yticklabels(minor=True)]
    shown = [t for t in ticks if t]
    assert shown and all("10^" not in t and "times" not in t and "×" not in t and "$" not in t for t in shown)
    assert "5" in shown and "10" in shown
    # three tasks: the lines differ, each with its own style; the cosine lines too
    axes = _telemetry_axes(monkeypatch, _telemetry(1.0, ("sst", "qqp", "sts")), tmp_path / "three.png")
    fractions = axes[1].get_lines()
    assert len(fractions) == 2 and fractions[0].get_linestyle() != fractions[1].get_linestyle()
    cosines = [line for line in axes[0].get_lines() if line.get_label().count(" vs ")]
    assert len(cosines) == 3 and len({(c.get_linestyle(), c.get_marker()) for c in cosines}) == 3
