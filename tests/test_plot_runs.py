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
    plot_runs.main(["--output", str(output), "--group", "mine", run, "--group", "again", run,
                    "--target", "SST=0.485", "Average=0.75"])
    assert output.stat().st_size > 10_000 and output.read_bytes()[:4] == b"\x89PNG"
    assert "mine {'SST': (0.5, 1)" in capsys.readouterr().out


def test_errors_name_the_bad_argument(tmp_path, capsys):
    run = write_metrics(tmp_path / "a", sst_accuracy=0.5)
    with pytest.raises(SystemExit, match="no metrics.json"):
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
