"""Tests for mtbert.data: minBERT files (real and deliberately broken), Hub-style folders, tokenization layouts."""

from __future__ import annotations

import json
import logging
import math
import tempfile
from pathlib import Path

import datasets
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtbert.data import (
    MINBERT_FILES,
    DataFileError,
    clean_text,
    load_minbert_task,
    load_task_splits,
    parse_label,
    read_minbert_file,
    tokenize_batch,
    tokenize_task,
)
from mtbert.data.collators import TaskCollator
from mtbert.models.mtbert.configuration_mtbert import normalize_task_spec

from conftest import SHARED_DATA_DIR, write_minbert_file

SPECS = {task: normalize_task_spec(task, {}) for task in ("sst", "qqp", "sts")}
COLUMNS = {task: (*files.text_columns, files.label_column) for task, files in MINBERT_FILES.items()}


def read(path, task, labelled=True):
    files = MINBERT_FILES[task]
    return read_minbert_file(str(path), SPECS[task], files.text_columns, files.label_column if labelled else None)


def data_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "mtbert.data" and r.levelno >= logging.WARNING]


# ----------------------------------------------------------------------------------------------------------------
# The real files in ../shared/data
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_splits():
    if not SHARED_DATA_DIR.is_dir():
        pytest.skip(f"{SHARED_DATA_DIR} is not available")
    return {task: load_minbert_task(task, SPECS[task], str(SHARED_DATA_DIR)) for task in ("sst", "qqp", "sts")}


EXPECTED_COUNTS = {
    "sst": {"train": 8544, "dev": 1101, "test": 2210},
    "qqp": {"train": 14213, "dev": 1999, "test": 4000},
    "sts": {"train": 6040, "dev": 863, "test": 1725},
}


@pytest.mark.parametrize("task", ["sst", "qqp", "sts"])
def test_real_file_row_counts(real_splits, task):
    assert {split: len(ds) for split, ds in real_splits[task].items()} == EXPECTED_COUNTS[task]


@pytest.mark.parametrize("task", ["sst", "qqp", "sts"])
def test_real_file_columns_and_labels(real_splits, task):
    splits = real_splits[task]
    text_columns = ["text"] if task == "sst" else ["text", "text_pair"]
    assert splits["train"].column_names == ["id", *text_columns, "label"]
    assert splits["test"].column_names == ["id", *text_columns]  # labels withheld
    for split in ("train", "dev"):
        labels = splits[split]["label"]
        if task == "sst":
            assert set(labels) == {0, 1, 2, 3, 4}
        elif task == "qqp":
            assert set(labels) == {0, 1}
        else:
            assert min(labels) >= 0.0 and max(labels) <= 5.0 and len(set(labels)) > 10
    for column in text_columns:
        assert all(t and t == t.strip() for t in splits["train"][column])
    ids = splits["train"]["id"]
    assert len(set(ids)) == len(ids) and all(len(i) == 25 for i in ids[:100])


def test_real_sst_first_rows(real_splits):
    train, test = real_splits["sst"]["train"], real_splits["sst"]["test"]
    assert train[0]["id"] == "32a4f146782cbde1b7fa65799"
    assert train[0]["text"].startswith("The Rock is destined to be the 21st Century 's new")
    assert train[0]["label"] == 3
    # the test file has an extra leading column; id and sentence are still found by name
    assert test[0]["id"] == "b7573736a6ddf7be102b7fee0"
    assert test[0]["text"] == "Effective but too-tepid biopic"


def test_real_qqp_quoting_undone(real_splits):
    train = real_splits["qqp"]["train"]
    row = train[train["id"].index("c326b7599bde9d5661448a4df")]
    assert row["text"] == 'What does the emblem of "The Hindu" represent?'
    assert row["text_pair"] == 'What does the emblem of "THE HINDU" signify?'
    assert row["label"] == 1
    texts = list(train["text"]) + list(train["text_pair"])
    assert not any('"""' in t for t in texts)
    assert sum('"' in t for t in texts) > 100  # the quotes themselves are kept


def test_real_qqp_skip_is_logged_with_a_count(data_dir, caplog):
    with caplog.at_level(logging.INFO, logger="mtbert.data"):
        train = read(data_dir / "quora-train.csv", "qqp")
    assert len(train) == 14213
    messages = data_warnings(caplog)
    assert len(messages) == 1
    assert "quora-train.csv" in messages[0] and "14213 rows kept" in messages[0] and "1 skipped" in messages[0]
    assert "empty text" in messages[0]


def test_real_clean_file_logs_info_not_warning(data_dir, caplog):
    with caplog.at_level(logging.INFO, logger="mtbert.data"):
        read(data_dir / "sts-dev.csv", "sts")
    assert data_warnings(caplog) == []
    assert any("sts-dev.csv: 863 rows" in r.getMessage() for r in caplog.records)


# ----------------------------------------------------------------------------------------------------------------
# Small files with malformed rows
# ----------------------------------------------------------------------------------------------------------------

GOOD_ROWS = {
    "sst": [("id-a", "A fine film .", "4"), ("id-b", "Dull .", "0")],
    "qqp": [("id-a", "How do I cook rice?", "How is rice cooked?", "1.0"), ("id-b", "Why?", "Who?", "0.0")],
    "sts": [("id-a", "A man sings.", "A man is singing.", "4.8"), ("id-b", "A cat.", "The sky.", "0.0")],
}

MALFORMED = [
    # (task, bad row (a tuple of fields, or a raw line), reason in the log message)
    ("sst", ("id-x", "Some text .", ""), "empty label"),
    ("sst", ("id-x", "Some text .", "positive"), "non-numeric label"),
    ("sst", ("id-x", "Some text .", "nan"), "NaN or infinite label"),
    ("sst", ("id-x", "Some text .", "5"), "label outside 0..4"),
    ("sst", ("id-x", "Some text .", "2.5"), "label outside 0..4"),
    ("sst", ("id-x", "   ", "2"), "empty text"),
    ("sst", "7\tid-x\tno label column", "too few fields"),
    ("sst", "7\tid-x\ta\ttab\t3", "too many fields"),
    ("sst", b"7\tid-x\tcaf\xe9 latin-1\t3", "not UTF-8"),
    ("qqp", ("id-x", "Is it?", "Is it so?", "0.5"), "label not 0 or 1"),
    ("qqp", ("id-x", "Is it?", "", "1.0"), "empty text"),
    ("qqp", ("id-x", "Is it?", "Is it so?", "inf"), "NaN or infinite label"),
    ("qqp", '7\tid-x\t"Is it?', "too few fields"),
    ("qqp", '7\tid-x\t"""Is it so?"\t\t', "empty text"),  # like the real file: a quote swallowed a tab
    ("qqp", "7\tid-x\t" + "x" * 140_000 + "\tIs it?\t1.0", "unreadable line (field larger than field limit"),
    ("sst", "7\tid-x\t" + "x" * 100_001 + "\t1", "text longer than 100000 characters"),
    ("sts", ("id-x", "A dog.", "A puppy.", "5.5"), "score outside [0, 5]"),
    ("sts", ("id-x", "A dog.", "A puppy.", "-0.1"), "score outside [0, 5]"),
    ("sts", ("id-x", "A dog.", "A puppy.", "NaN"), "NaN or infinite label"),
    ("sts", ("id-x", '""', "A puppy.", "3.0"), "empty text"),
]


@pytest.mark.parametrize("task,bad,reason", MALFORMED, ids=[f"{t}-{r}" for t, _, r in MALFORMED])
def test_malformed_row_is_skipped_and_counted(write_minbert, caplog, task, bad, reason):
    good = GOOD_ROWS[task]
    path = write_minbert(f"{task}.csv", COLUMNS[task], [good[0], bad, good[1]])
    with caplog.at_level(logging.INFO, logger="mtbert.data"):
        ds = read(path, task)
    assert ds["id"] == ["id-a", "id-b"]
    assert ds["text"] == [good[0][1], good[1][1]]
    if task == "sts":
        assert list(ds["label"]) == pytest.approx([float(good[0][-1]), float(good[1][-1])])
    else:
        assert ds["label"] == [int(float(good[0][-1])), int(float(good[1][-1]))]
    messages = data_warnings(caplog)
    assert len(messages) == 1
    assert f"{task}.csv" in messages[0] and "2 rows kept, 1 skipped" in messages[0] and reason in messages[0]


def test_several_reasons_are_counted_separately(write_minbert, caplog):
    rows = [*GOOD_ROWS["sst"], ("x1", "a", ""), ("x2", "b", ""), ("x3", "c", "9"), ("x4", "", "1")]
    path = write_minbert("sst.csv", COLUMNS["sst"], rows)
    with caplog.at_level(logging.INFO, logger="mtbert.data"):
        assert len(read(path, "sst")) == 2
    (message,) = data_warnings(caplog)
    assert "4 skipped (2 empty label, 1 label outside 0..4, 1 empty text)" in message


def test_labels_are_typed_per_kind(write_minbert):
    sst = read(write_minbert("sst.csv", COLUMNS["sst"], [("a", "x", "3.0"), ("b", "y", " 1 ")]), "sst")
    assert sst["label"] == [3, 1] and sst.features["label"].dtype == "int64"
    qqp = read(write_minbert("qqp.csv", COLUMNS["qqp"], [("a", "x", "y", "1.0"), ("b", "y", "z", "0")]), "qqp")
    assert qqp["label"] == [1, 0] and qqp.features["label"].dtype == "int64"
    sts = read(write_minbert("sts.csv", COLUMNS["sts"], [("a", "x", "y", "3.2"), ("b", "y", "z", "5")]), "sts")
    assert list(sts["label"]) == pytest.approx([3.2, 5.0]) and sts.features["label"].dtype == "float32"


def test_unlabelled_file_and_blank_lines(write_minbert):
    path = write_minbert("test.csv", ("sentence1", "sentence2"), [("a", " x ", "y"), "", "\t\t\t", ("b", "u", "v")])
    ds = read(path, "qqp", labelled=False)
    assert ds.column_names == ["id", "text", "text_pair"]
    assert ds["text"] == ["x", "u"] and ds["id"] == ["a", "b"]


def test_stray_carriage_return_inside_a_field_is_whitespace(write_minbert, caplog):
    # csv refuses a bare \r inside an unquoted field; the loader must not crash on it
    path = write_minbert("sst.csv", COLUMNS["sst"], ["0\ta\tgood\rfilm\t4", "1\tb\tok\t2\r"])
    with caplog.at_level(logging.INFO, logger="mtbert.data"):
        ds = read(path, "sst")
    assert ds["text"] == ["good film", "ok"] and ds["label"] == [4, 2]
    assert data_warnings(caplog) == []


def test_missing_id_falls_back_to_row_number(write_minbert):
    ds = read(write_minbert("sst.csv", COLUMNS["sst"], [("", "x", "1"), ("b", "y", "2")]), "sst")
    assert ds["id"] == ["0", "b"]


def test_file_with_no_good_rows_names_the_file(write_minbert):
    path = write_minbert("ids-sst-bad.csv", COLUMNS["sst"], [("a", "x", "7"), ("b", "", "1")])
    with pytest.raises(DataFileError) as excinfo:
        read(path, "sst")
    message = str(excinfo.value)
    assert "ids-sst-bad.csv" in message and "no usable row" in message and "2 skipped" in message


def test_header_only_file_has_no_usable_row(write_minbert):
    with pytest.raises(DataFileError, match=r"header-only\.csv.*no usable row"):
        read(write_minbert("header-only.csv", COLUMNS["sst"], []), "sst")


# ----------------------------------------------------------------------------------------------------------------
# Files that cannot be used at all
# ----------------------------------------------------------------------------------------------------------------


def assert_no_library_frames(excinfo):
    assert excinfo.value.__cause__ is None
    frames = [str(entry.path) for entry in excinfo.traceback]
    assert not any("pandas" in f or "pyarrow" in f for f in frames), frames


def test_missing_file(tmp_path):
    with pytest.raises(DataFileError) as excinfo:
        read(tmp_path / "nope.csv", "sst")
    assert "nope.csv" in str(excinfo.value) and "not found" in str(excinfo.value)
    assert_no_library_frames(excinfo)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(DataFileError) as excinfo:
        read(path, "sst")
    assert "empty.csv" in str(excinfo.value) and "empty" in str(excinfo.value)
    assert_no_library_frames(excinfo)


def test_missing_columns_named_with_found_columns(tmp_path):
    path = write_minbert_file(
        tmp_path / "quora-train.csv", ("question1", "question2", "is_duplicate"), [("a", "x", "y", "1")]
    )
    with pytest.raises(DataFileError) as excinfo:
        read(path, "qqp")
    message = str(excinfo.value)
    assert "quora-train.csv" in message
    assert "missing column(s) sentence1, sentence2" in message
    assert "found <empty>, id, question1, question2, is_duplicate" in message
    assert_no_library_frames(excinfo)


def test_comma_separated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "sts-train.csv"
    path.write_text(",id,sentence1,sentence2,similarity\n0,a,x,y,1.0\n")
    with pytest.raises(DataFileError, match=r"sts-train\.csv: missing column"):
        read(path, "sts")


def test_load_minbert_task_errors(tmp_path):
    with pytest.raises(DataFileError, match="not a folder"):
        load_minbert_task("sst", SPECS["sst"], str(tmp_path / "absent"))
    with pytest.raises(DataFileError, match=r"ids-sst-train\.csv: file not found"):
        load_minbert_task("sst", SPECS["sst"], str(tmp_path))
    with pytest.raises(DataFileError, match="no minBERT files"):
        load_minbert_task("nli", normalize_task_spec("nli", {"kind": "pair_regression"}), str(tmp_path))
    with pytest.raises(DataFileError, match="data_source must be"):
        load_task_splits("sst", SPECS["sst"], "csv", data_dir=str(tmp_path))
    with pytest.raises(DataFileError, match="needs data_dir"):
        load_task_splits("sst", SPECS["sst"], "minbert")


def test_load_minbert_task_splits_from_a_folder(write_minbert):
    write_minbert("sts-train.csv", COLUMNS["sts"], GOOD_ROWS["sts"])
    path = write_minbert("sts-dev.csv", COLUMNS["sts"], GOOD_ROWS["sts"][:1])
    out = load_task_splits("sts", SPECS["sts"], "minbert", data_dir=str(path.parent), splits=("train", "dev"))
    assert {k: len(v) for k, v in out.items()} == {"train": 2, "dev": 1}


# ----------------------------------------------------------------------------------------------------------------
# Tokenization layouts (MiniLM's uncased WordPiece tokenizer)
# ----------------------------------------------------------------------------------------------------------------


def spec_with(task, **settings):
    return normalize_task_spec(task, settings)


def test_tokenize_single(tokenizer):
    out = tokenize_batch(
        {"text": ["Hello world", "A much longer sentence than the first one"]}, tokenizer, SPECS["sst"], 6
    )
    assert set(out) == {"input_ids", "length"}
    assert out["input_ids"][0] == tokenizer("Hello world")["input_ids"]
    assert out["input_ids"][0][0] == tokenizer.cls_token_id and out["input_ids"][0][-1] == tokenizer.sep_token_id
    assert len(out["input_ids"][1]) == 6 and out["input_ids"][1][-1] == tokenizer.sep_token_id  # truncated
    assert out["length"] == [len(out["input_ids"][0]), 6]


def test_tokenize_task_fingerprint_follows_what_changes_the_tokens(tokenizer, monkeypatch):
    """The fingerprint (which picks a ``datasets`` cache file) changes with the rows, the spec, the length limit and
    added tokens, not otherwise; and the tokenizer is hashed once per object, not on every call."""
    from mtbert.data import tokenization

    rows = datasets.Dataset.from_dict({"text": ["Hello world", "Another one"], "label": [0, 1]})
    calls = []
    real_hash = tokenization.Hasher.hash

    def counting_hash(cls, value):
        calls.append(type(value).__name__)
        return real_hash(value)

    monkeypatch.setattr(tokenization.Hasher, "hash", classmethod(counting_hash))
    fresh = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    first = tokenize_task(rows, fresh, SPECS["sst"], 16)
    assert first._fingerprint == tokenize_task(rows, fresh, SPECS["sst"], 16)._fingerprint
    assert calls.count(type(fresh).__name__) == 1  # hashed once, then remembered
    assert first["input_ids"][0] == fresh("Hello world")["input_ids"]
    others = {
        tokenize_task(rows.select([0]), fresh, SPECS["sst"], 16)._fingerprint,
        tokenize_task(rows, fresh, spec_with("sst", pooling="mean"), 16)._fingerprint,
        tokenize_task(rows, fresh, SPECS["sst"], 8)._fingerprint,
    }
    fresh.add_tokens(["zzqqxx"])
    others.add(tokenize_task(rows, fresh, SPECS["sst"], 16)._fingerprint)
    assert len(others) == 4 and first._fingerprint not in others


def test_tokenize_pair_separate(tokenizer):
    batch = {"text": ["How do I cook rice?"], "text_pair": ["Rice?"]}
    for encoding in ("separate", "cosine"):
        out = tokenize_batch(batch, tokenizer, spec_with("qqp", pair_encoding=encoding), 32)
        assert set(out) == {"input_ids", "input_ids_b", "length"}
        a, b = out["input_ids"][0], out["input_ids_b"][0]
        assert a == tokenizer("How do I cook rice?")["input_ids"]
        assert b == tokenizer("Rice?")["input_ids"]
        for ids in (a, b):
            assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
            assert ids.count(tokenizer.sep_token_id) == 1
        assert out["length"] == [max(len(a), len(b))] == [len(a)]


def test_tokenize_concat_sep(tokenizer):
    out = tokenize_batch(
        {"text": ["How do I cook rice?"], "text_pair": ["Rice?"]},
        tokenizer,
        spec_with("qqp", pair_encoding="concat_sep"),
        32,
    )
    assert set(out) == {"input_ids", "token_type_ids", "length"}
    a = tokenizer("How do I cook rice?", add_special_tokens=False)["input_ids"]
    b = tokenizer("Rice?", add_special_tokens=False)["input_ids"]
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert out["input_ids"][0] == [cls, *a, sep, *b, sep]
    assert out["token_type_ids"][0] == [0] * (len(a) + 2) + [1] * (len(b) + 1)
    assert out["length"] == [len(a) + len(b) + 3]


def test_tokenize_concat_nosep(tokenizer):
    spec = spec_with("qqp", pair_encoding="concat_nosep")
    out = tokenize_batch({"text": ["How do I cook rice?"], "text_pair": ["Rice?"]}, tokenizer, spec, 32)
    assert set(out) == {"input_ids", "length"}
    a = tokenizer("How do I cook rice?", add_special_tokens=False)["input_ids"]
    b = tokenizer("Rice?", add_special_tokens=False)["input_ids"]
    assert out["input_ids"][0] == [tokenizer.cls_token_id, *a, *b, tokenizer.sep_token_id]
    assert out["input_ids"][0].count(tokenizer.sep_token_id) == 1
    assert out["length"] == [len(a) + len(b) + 2]


def test_tokenize_concat_nosep_truncates_longest_first(tokenizer):
    spec = spec_with("qqp", pair_encoding="concat_nosep")
    long_a = "one two three four five six seven eight nine ten"
    a = tokenizer(long_a, add_special_tokens=False)["input_ids"]
    b = tokenizer("red green blue", add_special_tokens=False)["input_ids"]
    assert (len(a), len(b)) == (10, 3)
    out = tokenize_batch({"text": [long_a, long_a], "text_pair": ["red green blue", long_a]}, tokenizer, spec, 10)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert out["input_ids"][0] == [cls, *a[:5], *b, sep]  # only the longer sentence is cut
    assert out["input_ids"][1] == [cls, *a[:4], *a[:4], sep]  # equal lengths: both cut evenly
    assert out["length"] == [10, 10]


def test_tokenize_concat_sep_truncates_to_max_length(tokenizer):
    long_a = "one two three four five six seven eight nine ten"
    out = tokenize_batch(
        {"text": [long_a], "text_pair": ["red green blue"]},
        tokenizer,
        spec_with("qqp", pair_encoding="concat_sep"),
        10,
    )
    ids = out["input_ids"][0]
    assert len(ids) == 10 and ids.count(tokenizer.sep_token_id) == 2
    assert len(out["token_type_ids"][0]) == 10


def test_tokenize_task_keeps_text_columns(tokenizer):
    ds = datasets.Dataset.from_dict(
        {"id": ["a", "b"], "text": ["x y", "z"], "text_pair": ["p", "q r s"], "label": [1.0, 2.0]}
    )
    out = tokenize_task(ds, tokenizer, SPECS["sts"], 16)
    assert set(out.column_names) == {"id", "text", "text_pair", "label", "input_ids", "input_ids_b", "length"}
    assert out["length"] == [4, 5]  # [CLS] x y [SEP] / [CLS] q r s [SEP]


# ----------------------------------------------------------------------------------------------------------------
# Hub-style sources from local folders
# ----------------------------------------------------------------------------------------------------------------


def write_jsonl(path: Path, rows: list[dict]):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_hub_sst5_like_folder(tmp_path):
    folder = tmp_path / "sst5"
    write_jsonl(
        folder / "train.jsonl", [{"text": " good ", "label": 4}, {"text": "bad", "label": 0}, {"text": "", "label": 1}]
    )
    write_jsonl(folder / "validation.jsonl", [{"text": "fine", "label": 3}])
    write_jsonl(folder / "test.jsonl", [{"text": "ok", "label": 2}, {"text": "so so", "label": 1}])
    out = load_task_splits("sst", SPECS["sst"], "hub", hub_override=str(folder), cache_dir=str(tmp_path / "cache"))
    assert {k: len(v) for k, v in out.items()} == {"train": 2, "dev": 1, "test": 2}
    assert out["train"]["text"] == ["good", "bad"] and out["train"]["label"] == [4, 0]  # the empty text is skipped
    assert out["train"]["id"] == ["0", "1"]
    assert out["test"]["label"] == [2, 1]  # a test split with real labels keeps them
    # a label the task does not know is a configuration mistake in a dataset of one's own: one clear error
    write_jsonl(folder / "train.jsonl", [{"text": "good", "label": 4}, {"text": "meh", "label": 9}])
    with pytest.raises(
        DataFileError, match=r"split 'train': 1 row\(s\) with labels .* 9 \(row 1\); expected class indices 0..4"
    ):
        load_task_splits("sst", SPECS["sst"], "hub", hub_override=str(folder), cache_dir=str(tmp_path / "cache2"))


def test_hub_glue_like_folder_with_config(tmp_path):
    folder = tmp_path / "glue"
    (folder).mkdir()
    (folder / "README.md").write_text(
        "---\nconfigs:\n- config_name: qqp\n  data_files:\n"
        "  - split: train\n    path: qqp/train.jsonl\n"
        "  - split: validation\n    path: qqp/validation.jsonl\n"
        "  - split: test\n    path: qqp/test.jsonl\n---\n# glue-like\n"
    )
    write_jsonl(
        folder / "qqp" / "train.jsonl",
        [
            {"question1": "How?", "question2": "How so?", "label": 1, "idx": 10},
            {"question1": "Why?", "question2": "Who?", "label": 0, "idx": 11},
        ],
    )
    write_jsonl(folder / "qqp" / "validation.jsonl", [{"question1": "A?", "question2": "B?", "label": 0, "idx": 5}])
    write_jsonl(
        folder / "qqp" / "test.jsonl",
        [
            {"question1": "C?", "question2": "D?", "label": -1, "idx": 0},
            {"question1": "E?", "question2": "F?", "label": -1, "idx": 1},
        ],
    )
    out = load_task_splits(
        "qqp", SPECS["qqp"], "hub", hub_override={"path": str(folder), "name": "qqp"}, cache_dir=str(tmp_path / "c")
    )
    assert out["train"]["id"] == ["10", "11"]
    assert out["train"]["text"] == ["How?", "Why?"] and out["train"]["text_pair"] == ["How so?", "Who?"]
    assert out["train"]["label"] == [1, 0]
    assert out["dev"]["id"] == ["5"]
    assert out["test"].column_names == ["id", "text", "text_pair"]  # -1 labels: unlabelled
    assert out["test"]["text_pair"] == ["D?", "F?"]


def test_hub_stsb_like_scores_are_scaled(tmp_path):
    folder = tmp_path / "stsb"
    rows = [{"sentence1": "A", "sentence2": "B", "score": 0.5}, {"sentence1": "C", "sentence2": "D", "score": 1.0}]
    for split in ("train", "validation", "test"):
        write_jsonl(folder / f"{split}.jsonl", rows)
    out = load_task_splits("sts", SPECS["sts"], "hub", hub_override=str(folder), cache_dir=str(tmp_path / "c"))
    assert list(out["train"]["label"]) == pytest.approx([2.5, 5.0])
    assert list(out["test"]["label"]) == pytest.approx([2.5, 5.0])
    assert out["dev"]["text_pair"] == ["B", "D"]


def test_hub_errors_are_data_file_errors(tmp_path):
    folder = tmp_path / "wrong"
    for split in ("train", "validation", "test"):
        write_jsonl(folder / f"{split}.jsonl", [{"sentence": "x", "label": 1}])
    with pytest.raises(DataFileError, match=r"missing column.*text.*found sentence, label"):
        load_task_splits("sst", SPECS["sst"], "hub", hub_override=str(folder), cache_dir=str(tmp_path / "c"))
    with pytest.raises(DataFileError, match="unknown key"):
        load_task_splits("sst", SPECS["sst"], "hub", hub_override={"path": str(folder), "colums": 1})
    with pytest.raises(DataFileError, match="no default Hub dataset"):
        load_task_splits("nli", normalize_task_spec("nli", {"kind": "pair_regression"}), "hub")


# ----------------------------------------------------------------------------------------------------------------
# Property-based tests
# ----------------------------------------------------------------------------------------------------------------

quoted_text = st.text(alphabet=st.sampled_from(['"', "'", " ", "a", "b", "\t", "é", "\u2028", "\u00a0"]), max_size=12)
any_text = st.one_of(st.text(max_size=40), quoted_text)


@given(any_text)
@settings(max_examples=300, deadline=None)
def test_clean_text_never_raises_and_is_idempotent(value):
    once = clean_text(value)
    assert isinstance(once, str)
    assert clean_text(once) == once
    assert once == once.strip()


@pytest.mark.parametrize(
    "raw,expected",
    [
        ('"""What is """"X""""?"""', 'What is "X"?'),
        ('"a ""b"" c"', 'a "b" c'),
        ('He said "hi', 'He said "hi'),
        ('"x" and "y"', '"x" and "y"'),
        ("  plain  ", "plain"),
        (None, ""),
        ('""', ""),
    ],
)
def test_clean_text_examples(raw, expected):
    assert clean_text(raw) == expected


label_inputs = st.one_of(
    st.text(max_size=20),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.none(),
)


@given(label_inputs, st.sampled_from(["sst", "qqp", "sts"]))
@settings(max_examples=300, deadline=None)
def test_parse_label_never_raises(raw, task):
    label, reason = parse_label(raw, SPECS[task])
    assert (label is None) != (reason is None)
    if label is not None:
        assert math.isfinite(label)
        if task == "sst":
            assert label in range(5) and isinstance(label, int)
        elif task == "qqp":
            assert label in (0, 1)
        else:
            assert 0.0 <= label <= 5.0


# Surrogates cannot be written as UTF-8; undecodable bytes are covered by the "not UTF-8" malformed-row case.
field_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(['"', "\t", "'", " ", "\\", "\r", "é", "😀", "\x00", "\u2028"]),
        st.characters(exclude_categories=("Cs",)),
    ),
    max_size=15,
)
label_text = st.one_of(st.sampled_from(["0", "1", "1.0", "4", "5", "0.5", "", "nan", "x"]), st.text(max_size=4))


@given(
    task=st.sampled_from(["sst", "qqp", "sts"]),
    rows=st.lists(st.tuples(field_text, field_text, field_text, label_text), max_size=6),
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_read_minbert_file_only_raises_data_file_error(task, rows):
    columns = COLUMNS[task]
    lines = []
    for row_id, first, second, label in rows:
        fields = (row_id, first, label) if task == "sst" else (row_id, first, second, label)
        lines.append("\t".join(["0", *fields]))
    with tempfile.TemporaryDirectory() as folder:
        path = write_minbert_file(Path(folder) / "f.csv", columns, lines)
        try:
            ds = read(path, task)
        except DataFileError:
            return
    assert 1 <= len(ds) <= len(rows)
    for text in ds["text"]:
        assert text and text == text.strip()
    for label in ds["label"]:
        assert parse_label(label, SPECS[task]) == (label, None)


token_lists = st.lists(st.integers(min_value=1, max_value=30000), min_size=1, max_size=20)


@given(
    rows=st.lists(st.tuples(token_lists, token_lists), min_size=1, max_size=6),
    layout=st.sampled_from(["single", "pair_separate", "concat_sep"]),
    pad=st.sampled_from([0, 3]),
    multiple=st.sampled_from([None, 8]),
)
@settings(max_examples=100, deadline=None)
def test_task_collator_shapes_and_masks(rows, layout, pad, multiple):
    if layout == "pair_separate":
        items = [{"input_ids": a, "input_ids_b": b, "label": float(i)} for i, (a, b) in enumerate(rows)]
        longest = max(max(len(a), len(b)) for a, b in rows)
    elif layout == "concat_sep":
        items = [{"input_ids": a, "token_type_ids": [i % 2 for i in range(len(a))], "label": 1} for a, _ in rows]
        longest = max(len(a) for a, _ in rows)
    else:
        items = [{"input_ids": a, "label": 2} for a, _ in rows]
        longest = max(len(a) for a, _ in rows)
    length = longest if multiple is None else -(-longest // multiple) * multiple
    batch = TaskCollator(pad_token_id=pad, pad_to_multiple_of=multiple)(items)
    n = len(rows)
    sides = [("input_ids", 0)] + ([("input_ids_b", 1)] if layout == "pair_separate" else [])
    if layout == "pair_separate":
        assert batch["input_ids"].shape == batch["attention_mask"].shape == (n, 2, length)
        assert batch["labels"].dtype == torch.float32
    else:
        assert batch["input_ids"].shape == batch["attention_mask"].shape == (n, length)
        assert batch["labels"].dtype == torch.long
    assert ("token_type_ids" in batch) == (layout == "concat_sep")
    for r, item in enumerate(items):
        for key, side in sides:
            ids = batch["input_ids"][r, side] if layout == "pair_separate" else batch["input_ids"][r]
            mask = batch["attention_mask"][r, side] if layout == "pair_separate" else batch["attention_mask"][r]
            k = len(item[key])
            assert int(mask.sum()) == k and mask[:k].all()
            assert ids[:k].tolist() == item[key]
            assert (ids[k:] == pad).all()
        if layout == "concat_sep":
            tt = batch["token_type_ids"][r]
            assert (
                tt[: len(item["input_ids"])].tolist() == item["token_type_ids"]
                and (tt[len(item["input_ids"]) :] == 0).all()
            )
    assert batch["labels"].tolist() == [item["label"] for item in items]


def test_task_collator_rejects_empty_batch():
    with pytest.raises(ValueError, match="empty batch"):
        TaskCollator()([])
