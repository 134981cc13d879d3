"""The module paths of earlier versions (``mtbert.trainer``, ``mtbert.training_args``, ...) after the package was
regrouped: each is the new module itself, a pickle naming an old class path loads, and ``import mtbert`` stays lazy."""

import importlib
import pickle
import subprocess
import sys

import pytest

import mtbert
from mtbert._compat import MOVED


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_path_is_the_new_module(old):
    module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED[old])
    assert module.__name__ == MOVED[old]
    assert sys.modules[old] is module


def test_from_old_path_import_and_attribute_access():
    from mtbert.trainer import MultitaskTrainer
    from mtbert.training.trainer import MultitaskTrainer as new

    assert MultitaskTrainer is new
    import mtbert.data
    import mtbert.hub

    assert mtbert.data.tokenize_task is importlib.import_module("mtbert.data").tokenize_task
    assert callable(mtbert.hub.push_to_hub)


def test_monkeypatching_an_old_path_patches_the_new_module(monkeypatch):
    import mtbert.training.training_args as new

    monkeypatch.setattr("mtbert.training_args.has_accelerator", lambda: "patched")
    assert new.has_accelerator() == "patched"


def test_pickle_with_an_old_class_path_loads():
    from mtbert.training.training_args import MultitaskTrainingArguments

    # Protocol 0 names the class by module and attribute, as training_args.bin of earlier versions does.
    old = b"cmtbert.training_args\nMultitaskTrainingArguments\np0\n."
    assert pickle.loads(old) is MultitaskTrainingArguments
    for module, name in (
        ("mtbert.configuration_mtbert", "MultitaskBertConfig"),
        ("mtbert.trainer", "MultitaskTrainer"),
    ):
        loaded = pickle.loads(f"c{module}\n{name}\np0\n.".encode())
        assert loaded.__module__ == MOVED[module]


def test_unknown_old_path_still_fails():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("mtbert.no_such_module")


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout


def test_import_mtbert_imports_neither_the_trainer_nor_the_old_paths():
    loaded = _run("import sys, mtbert; print(' '.join(sorted(m for m in sys.modules if m.startswith('mtbert'))))")
    names = set(loaded.split())
    assert "mtbert.training.trainer" not in names
    assert not names & set(MOVED)


def test_python_dash_m_runs_an_old_path():
    out = subprocess.run(
        [sys.executable, "-m", "mtbert.export", "--help"], check=True, capture_output=True, text=True
    ).stdout
    assert "usage: mtbert-export" in out


def test_no_module_left_at_the_top_level():
    from pathlib import Path

    top = {p.stem for p in Path(mtbert.__file__).parent.glob("*.py")}
    assert top == {"__init__", "_compat"}
