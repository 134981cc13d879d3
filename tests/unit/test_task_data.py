"""Each task names its own data (``task_data``): the minBERT folder, local CSV/TSV/JSON Lines/parquet files, or a
Hub dataset id (here: local folders laid out like one), with column and split mappings; the test split is optional,
and labels of any number of classes (names mapped through ``label_names``) are read, unknown ones refused."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import datasets
import pytest
import yaml

from mtbert.cli.arguments import DataArguments, parse_args
from mtbert.data import (
    DataFileError,
    FileSource,
    MinbertSource,
    load_task_data,
    load_task_splits,
    parse_label,
    task_source,
)
from mtbert.models.mtbert.configuration_mtbert import normalize_task_spec

from conftest import SHARED_DATA_DIR

ROOT = Path(__file__).resolve().parents[2]
NLI_TOY = ROOT / "examples" / "data" / "nli_toy"
NAMES = ["entailment", "neutral", "contradiction"]
# Written out rather than normalized, so these data tests do not depend on how the configuration derives num_labels.
NLI = {"kind": "pair_classification", "num_labels": 3, "label_names": NAMES}
TOPIC = {"kind": "sentence_classification", "num_labels": 4, "label_names": ["a", "b", "c", "d"]}
SIM = {"kind": "pair_regression", "score_range": [0.0, 1.0]}


def write_csv(path: Path, header: list[str], rows: list[list], sep: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(sep.join(map(str, r)) for r in [header, *rows]) + "\n", encoding="utf-8")
    return path


def nli_rows(n: int, start: int = 0) -> list[list]:
    return [[f"r{start + i}", f"premise {i}", f"hypothesis {i}", NAMES[i % 3]] for i in range(n)]


def load(task, spec, entry, tmp_path, splits=("train", "dev", "test")):
    return load_task_data(task, spec, task_source(task, spec, entry), splits, cache_dir=str(tmp_path / "cache"))


# ---------------------------------------------------------------------------------------------------------------
# Labels: any number of classes, names
# ---------------------------------------------------------------------------------------------------------------


def test_parse_label_pair_classification_with_three_classes():
    assert [parse_label(v, NLI)[0] for v in (0, "1", "2.0", 2)] == [0, 1, 2, 2]
    assert parse_label(3, NLI) == (None, "label outside 0..2")
    assert parse_label("1.5", NLI) == (None, "label outside 0..2")


def test_parse_label_binary_pairs_keep_their_reason_and_default():
    qqp = normalize_task_spec("qqp", {})
    assert parse_label("1.0", qqp) == (1, None)
    assert parse_label(2, qqp) == (None, "label not 0 or 1")
    legacy = {"kind": "pair_classification", "num_labels": 1}  # a pair spec from before multi-class pairs: binary
    assert parse_label(1, legacy) == (1, None) and parse_label(2, legacy)[0] is None
    assert parse_label(1, {"kind": "pair_classification"}) == (1, None)  # num_labels absent: 2


def test_parse_label_names_map_only_when_given():
    assert parse_label("neutral", NLI, NAMES) == (1, None)
    assert parse_label(" Contradiction ", NLI, NAMES) == (2, None)  # stripped, then case-insensitive
    assert parse_label("2", NLI, NAMES) == (2, None)  # indices still work
    assert parse_label("entail", NLI, NAMES) == (None, "label name not in label_names")
    assert parse_label("neutral", NLI) == (None, "non-numeric label")  # minBERT files: numbers only


# ---------------------------------------------------------------------------------------------------------------
# source: files
# ---------------------------------------------------------------------------------------------------------------


def test_folder_with_train_and_validation_only_has_no_test_split(tmp_path):
    """The shipped toy NLI folder: CSV, string labels, no test.csv (today's Hub loader failed: Unknown split)."""
    entry = {"source": "files", "data_dir": str(NLI_TOY), "text_columns": ["premise", "hypothesis"], "id_column": "id"}
    out = load("nli", NLI, entry, tmp_path)
    assert set(out) == {"train", "dev"}
    assert {k: len(v) for k, v in out.items()} == {"train": 48, "dev": 12}
    train = out["train"]
    assert train.column_names == ["id", "text", "text_pair", "label"]
    assert train.features["label"].dtype == "int64"
    assert sorted(set(train["label"])) == [0, 1, 2]
    assert train["id"][0] == "train-0"
    first = next(line for line in (NLI_TOY / "train.csv").read_text().splitlines()[1:2])
    assert train["text"][0] in first and NAMES[train["label"][0]] == first.rsplit(",", 1)[1]


def test_toy_folder_is_what_its_generator_writes(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_nli_toy", NLI_TOY / "make_nli_toy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(str(tmp_path))
    for name in ("train.csv", "validation.csv"):
        assert (tmp_path / name).read_bytes() == (NLI_TOY / name).read_bytes()
    assert not (NLI_TOY / "test.csv").exists()


def test_folder_test_split_is_read_when_present_labelled_or_not(tmp_path):
    folder = tmp_path / "nli"
    write_csv(folder / "train.csv", ["id", "text", "text_pair", "label"], nli_rows(6))
    write_csv(folder / "dev.csv", ["id", "text", "text_pair", "label"], nli_rows(3))
    write_csv(folder / "test.csv", ["id", "text", "text_pair"], [r[:3] for r in nli_rows(4, 100)])
    out = load("nli", NLI, {"source": "files", "data_dir": str(folder)}, tmp_path)
    assert {k: len(v) for k, v in out.items()} == {"train": 6, "dev": 3, "test": 4}
    assert out["test"].column_names == ["id", "text", "text_pair"]  # unlabelled
    assert out["test"]["id"][0] == "r100"  # an "id" column is used when present
    write_csv(folder / "test.csv", ["id", "text", "text_pair", "label"], nli_rows(4, 100))
    out = load("nli", NLI, {"source": "files", "data_dir": str(folder)}, tmp_path)
    assert out["test"]["label"] == [0, 1, 2, 0]


def test_data_files_in_every_format(tmp_path):
    rows = [{"sentence": f"text {i}", "topic": "abcd"[i % 4], "key": i} for i in range(8)]
    table = [[r["sentence"], r["topic"], r["key"]] for r in rows]
    write_csv(tmp_path / "train.tsv", ["sentence", "topic", "key"], table, "\t")
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:4]))
    datasets.Dataset.from_list(rows[:5]).to_parquet(str(tmp_path / "test.parquet"))
    entry = {
        "source": "files",
        "data_files": {
            "train": str(tmp_path / "train.tsv"),
            "validation": [str(tmp_path / "dev.jsonl")],
            "test": str(tmp_path / "test.parquet"),
        },
        "text_columns": "sentence",
        "label_column": "topic",
        "id_column": "key",
    }
    out = load("topic", TOPIC, entry, tmp_path)
    assert {k: len(v) for k, v in out.items()} == {"train": 8, "dev": 4, "test": 5}
    for split in out.values():
        assert split["label"] == [0, 1, 2, 3, 0, 1, 2, 3][: len(split)]
        assert split["id"][:2] == ["0", "1"] and split["text"][1] == "text 1"


def test_tsv_quotes_are_text_and_empty_cells_are_skipped(tmp_path, caplog):
    folder = tmp_path / "sim"
    write_csv(
        folder / "train.tsv",
        ["a", "b", "score"],
        [['He said "hi', "ok", 0.5], ["None", "NA", 1.0], ["x", "", 0.2], ["y", "z", ""]],
        "\t",
    )
    write_csv(folder / "validation.tsv", ["a", "b", "score"], [["p", "q", 0.1]], "\t")
    with caplog.at_level(logging.INFO, logger="mtbert.data"):
        out = load(
            "sim",
            SIM,
            {"source": "files", "data_dir": str(folder), "text_columns": ["a", "b"], "label_column": "score"},
            tmp_path,
        )
    train = out["train"]
    assert train["text"] == ['He said "hi', "None"]  # a stray quote is text; "None"/"NA" are not missing values
    assert train["text_pair"] == ["ok", "NA"]
    assert "2 rows kept, 2 skipped (1 empty text, 1 empty label)" in caplog.text


def test_splits_renames_a_folders_files(tmp_path):
    folder = tmp_path / "mnli"
    write_csv(folder / "train.csv", ["text", "text_pair", "label"], [r[1:] for r in nli_rows(3)])
    write_csv(folder / "validation_matched.csv", ["text", "text_pair", "label"], [r[1:] for r in nli_rows(2)])
    entry = {"source": "files", "data_dir": str(folder), "splits": {"dev": "validation_matched"}}
    out = load("nli", NLI, entry, tmp_path)
    assert len(out["dev"]) == 2 and out["dev"]["id"] == ["0", "1"]  # no id column: row numbers


# ---------------------------------------------------------------------------------------------------------------
# Clear errors: what, where, how to fix
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def nli_folder(tmp_path) -> Path:
    folder = tmp_path / "nli"
    write_csv(folder / "train.csv", ["id", "premise", "hypothesis", "label"], nli_rows(6))
    write_csv(folder / "validation.csv", ["id", "premise", "hypothesis", "label"], nli_rows(3))
    return folder


def error(task, spec, entry, tmp_path) -> str:
    with pytest.raises(DataFileError) as excinfo:
        load(task, spec, entry, tmp_path)
    assert "\n" not in str(excinfo.value)
    return str(excinfo.value)


def test_label_outside_the_classes_stops_with_the_fix(nli_folder, tmp_path):
    write_csv(nli_folder / "train.csv", ["id", "premise", "hypothesis", "label"], [*nli_rows(4), ["x", "p", "h", "3"]])
    entry = {"source": "files", "data_dir": str(nli_folder), "text_columns": ["premise", "hypothesis"]}
    message = error("nli", NLI, entry, tmp_path)
    assert "train.csv" in message and "1 row(s)" in message and "'3' (row 4)" in message
    assert "0..2" in message and "num_labels" in message


def test_unknown_label_name_stops_with_the_names(nli_folder, tmp_path):
    write_csv(nli_folder / "validation.csv", ["id", "premise", "hypothesis", "label"], [["a", "p", "h", "entailed"]])
    entry = {"source": "files", "data_dir": str(nli_folder), "text_columns": ["premise", "hypothesis"]}
    message = error("nli", NLI, entry, tmp_path)
    assert "validation.csv" in message and "'entailed'" in message and "entailment, neutral, contradiction" in message


def test_a_binary_spec_refuses_a_third_class(nli_folder, tmp_path):
    """The silent failure of issue 14: a 3-class file read by a 2-class task must not lose its label-2 rows."""
    entry = {"source": "files", "data_dir": str(nli_folder), "text_columns": ["premise", "hypothesis"]}
    binary = {"kind": "pair_classification", "num_labels": 2, "label_names": NAMES[:2]}
    assert "0..1" in error("nli", binary, entry, tmp_path)


def test_missing_column_names_the_found_ones(nli_folder, tmp_path):
    message = error("nli", NLI, {"source": "files", "data_dir": str(nli_folder)}, tmp_path)
    assert "missing column(s) text, text_pair" in message and "found id, premise, hypothesis, label" in message
    assert "text_columns" in message
    entry = {
        "source": "files",
        "data_dir": str(nli_folder),
        "text_columns": ["premise", "hypothesis"],
        "id_column": "uid",
    }
    assert "missing column(s) uid" in error("nli", NLI, entry, tmp_path)


def test_bad_entries_fail_before_loading(nli_folder, tmp_path):
    base = {"source": "files", "data_dir": str(nli_folder)}
    cases = [
        ({**base, "data_dir": str(tmp_path / "absent")}, "is not a folder"),
        (
            {
                "source": "files",
                "data_files": {"train": str(nli_folder / "train.csv"), "dev": str(tmp_path / "no.csv")},
            },
            "no.csv: file not found (task_data.nli, dev split)",
        ),
        (
            {"source": "files", "data_files": {"train": str(nli_folder / "train.csv"), "tset": "x.csv"}},
            "unknown split 'tset'; use train, dev (or validation) or test",
        ),
        ({"source": "files", "data_files": {"train": str(nli_folder / "train.csv")}}, "no dev file"),
        ({**base, "splits": {"dev": "valid_matched"}}, "no dev file in"),
        ({**base, "colums": ["a", "b"]}, "unknown key(s) colums"),
        ({**base, "format": "xml"}, "'xml' is not one of csv, tsv, json, parquet"),
        ({**base, "text_columns": ["premise"]}, "reads 2 text column(s), got 1"),
        ({"source": "ftp", "data_dir": "x"}, "source: 'ftp' is not one of minbert, files, hub"),
        ({"data_dir": str(nli_folder)}, "source: None is not one of"),
        ({"source": "minbert", "data_dir": str(nli_folder)}, "holds only sst, qqp, sts"),
    ]
    for entry, expected in cases:
        with pytest.raises(DataFileError) as excinfo:
            task_source("nli", NLI, entry)
        assert expected in str(excinfo.value), (entry, str(excinfo.value))
    (nli_folder / "train.jsonl").write_text('{"premise": "p", "hypothesis": "h", "label": 0}\n')
    with pytest.raises(DataFileError, match="several train files"):
        task_source("nli", NLI, base)


def test_unparseable_file_is_one_clear_error(nli_folder, tmp_path):
    (nli_folder / "train.csv").unlink()
    (nli_folder / "train.jsonl").write_text("{not json\n")
    message = error("nli", NLI, {"source": "files", "data_dir": str(nli_folder)}, tmp_path)
    assert message.startswith(str(nli_folder / "train.jsonl")) and "could not be read as json" in message


# ---------------------------------------------------------------------------------------------------------------
# source: hub (a local folder laid out like a Hub dataset)
# ---------------------------------------------------------------------------------------------------------------


def test_hub_folder_without_test_split(nli_folder, tmp_path):
    entry = {"source": "hub", "path": str(nli_folder), "text_columns": ["premise", "hypothesis"], "id_column": "id"}
    out = load("nli", NLI, entry, tmp_path)
    assert set(out) == {"train", "dev"} and out["dev"]["label"] == [0, 1, 2]
    # a test split named explicitly must exist
    message = error("nli", NLI, {**entry, "splits": {"test": "test_matched"}}, tmp_path)
    assert "has no split 'test_matched' (it has train, validation)" in message
    message = error("nli", NLI, {**entry, "splits": {"dev": "dev"}}, tmp_path)
    assert "has no split 'dev'" in message and "splits: {dev: <name>}" in message


def test_hub_split_slices_still_work(nli_folder, tmp_path):
    entry = {
        "source": "hub",
        "path": str(nli_folder),
        "text_columns": ["premise", "hypothesis"],
        "splits": {"train": "train[:4]", "dev": "validation[1:]"},
    }
    out = load("nli", NLI, entry, tmp_path)
    assert len(out["train"]) == 4 and out["dev"]["label"] == [1, 2]


def test_hub_entry_checks(tmp_path):
    with pytest.raises(DataFileError, match=r"set task_data.nli.path"):
        task_source("nli", NLI, {"source": "hub"})
    with pytest.raises(DataFileError, match="unknown key"):
        task_source("sst", normalize_task_spec("sst", {}), {"source": "hub", "data_files": {}})
    with pytest.raises(DataFileError, match="could not load"):
        load("nli", NLI, {"source": "hub", "path": str(tmp_path / "absent")}, tmp_path)


# ---------------------------------------------------------------------------------------------------------------
# Mixing sources: DataArguments, YAML, load_tokenized
# ---------------------------------------------------------------------------------------------------------------


def tasks_with_nli() -> dict:
    tasks = {name: normalize_task_spec(name, {}) for name in ("sst", "qqp", "sts")}
    return {**tasks, "nli": dict(NLI)}


def test_task_sources_mix_the_minbert_folder_and_files(tmp_path):
    (tmp_path / "minbert").mkdir()
    entry = {"source": "files", "data_dir": str(NLI_TOY), "text_columns": ["premise", "hypothesis"]}
    args = DataArguments(data_dir=str(tmp_path / "minbert"), task_data={"nli": entry})
    sources = args.task_sources(tasks_with_nli())
    assert {t: type(s) for t, s in sources.items()} == {
        "sst": MinbertSource,
        "qqp": MinbertSource,
        "sts": MinbertSource,
        "nli": FileSource,
    }
    expected = {"train": (str(NLI_TOY / "train.csv"),), "dev": (str(NLI_TOY / "validation.csv"),)}
    assert sources["nli"].data_files == expected


def test_task_sources_errors(tmp_path):
    from mtbert import MultitaskConfigError

    (tmp_path / "minbert").mkdir()
    with pytest.raises(DataFileError, match=r"task 'nli' has no minBERT files.*task_data.nli"):
        DataArguments(data_dir=str(tmp_path / "minbert")).task_sources(tasks_with_nli())
    with pytest.raises(MultitaskConfigError, match=r"task_data names unknown task.*mnli"):
        DataArguments(data_dir=str(tmp_path / "minbert"), task_data={"mnli": {}}).task_sources(tasks_with_nli())
    # every task with its own data: no data_dir needed
    only = {"source": "files", "data_dir": str(NLI_TOY), "text_columns": ["premise", "hypothesis"]}
    assert set(DataArguments(task_data={"nli": only}).task_sources({"nli": NLI})) == {"nli"}
    with pytest.raises(DataFileError, match="needs data_dir"):
        DataArguments(task_data={"nli": only}).task_sources(tasks_with_nli())


def test_yaml_task_data_is_checked_at_parse_time(tmp_path):
    settings = {
        "model_name_or_path": "bert-base-uncased",
        "data_dir": str(tmp_path),
        "output_dir": str(tmp_path / "out"),
        "report_to": "none",
        "use_cpu": True,
        "tasks": {"sst": {}, "nli": {"kind": "pair_classification", "label_names": NAMES}},
        "task_data": {"nli": {"source": "files", "data_dir": str(NLI_TOY), "text_columns": ["premise", "hypothesis"]}},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(settings))
    _, data_args, _ = parse_args([str(path)])
    assert data_args.task_data["nli"]["source"] == "files"
    settings["task_data"]["nli"]["data_dir"] = str(tmp_path / "absent")
    path.write_text(yaml.safe_dump(settings))
    with pytest.raises(DataFileError, match=r"task_data\.nli\.data_dir .* is not a folder"):
        parse_args([str(path)])
    # and from the command line, as JSON
    flag = {"nli": {"source": "files", "data_dir": str(NLI_TOY), "text_columns": ["premise", "hypothesis"]}}
    _, data_args, _ = parse_args([str(path), "--task_data", json.dumps(flag)])
    assert data_args.task_data["nli"]["data_dir"] == str(NLI_TOY)


def test_load_task_splits_keeps_its_old_call_and_takes_an_entry(tmp_path):
    entry = {"source": "files", "data_dir": str(NLI_TOY), "text_columns": ["premise", "hypothesis"]}
    out = load_task_splits("nli", NLI, "minbert", None, splits=("dev",), cache_dir=str(tmp_path), task_data=entry)
    assert list(out) == ["dev"] and len(out["dev"]) == 12


@pytest.mark.skipif(not SHARED_DATA_DIR.is_dir(), reason="../shared/data is not available")
def test_load_tokenized_reads_every_task_from_its_own_source(tokenizer):
    from mtbert.cli.run import load_tokenized

    entry = {"source": "files", "data_dir": str(NLI_TOY), "text_columns": ["premise", "hypothesis"]}
    args = DataArguments(
        data_dir=str(SHARED_DATA_DIR), task_data={"nli": entry}, max_eval_samples=5, max_seq_length=32
    )
    nli = normalize_task_spec("nli", dict(NLI, pair_encoding="concat_sep"))
    tasks = {"sts": normalize_task_spec("sts", {}), "nli": nli}
    data = load_tokenized(tasks, args, tokenizer, splits=("dev", "test"))
    assert set(data["sts"]) == {"dev", "test"} and len(data["sts"]["test"]) == 1725
    assert set(data["nli"]) == {"dev"} and len(data["nli"]["dev"]) == 5
    assert "input_ids" in data["nli"]["dev"].column_names


def test_sentence_regression_scores_from_json_lines(tmp_path):
    spec = normalize_task_spec("rating", {"kind": "sentence_regression", "score_range": [1, 5]})
    folder = tmp_path / "ratings"
    folder.mkdir()
    rows = [{"review": "great", "stars": 4.5}, {"review": "poor", "stars": 1}, {"review": "fine", "stars": None}]
    for split in ("train", "dev"):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = load(
        "rating",
        spec,
        {"source": "files", "data_dir": str(folder), "text_columns": ["review"], "label_column": "stars"},
        tmp_path,
    )
    assert out["train"].column_names == ["id", "text", "label"]
    assert out["train"].features["label"].dtype == "float32"
    assert list(out["dev"]["label"]) == pytest.approx([4.5, 1.0])  # the row without a score is skipped
    (folder / "train.jsonl").write_text(json.dumps({"review": "wow", "stars": 9}) + "\n")
    entry = {"source": "files", "data_dir": str(folder), "text_columns": ["review"], "label_column": "stars"}
    assert "expected scores in [1.0, 5.0]" in error("rating", spec, entry, tmp_path)


def test_task_data_must_be_a_mapping():
    from mtbert import MultitaskConfigError

    with pytest.raises(MultitaskConfigError, match="task_data: 'nli' is neither a JSON mapping"):
        DataArguments(data_dir=".", task_data="nli")
