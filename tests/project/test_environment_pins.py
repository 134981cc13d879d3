"""The pinned test environment stays complete and is the one the README's test command installs."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / "requirements" / "constraints-test.txt"


def pinned() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{line!r} is not an exact pin"
            pins[canonicalize_name(name)] = version
    return pins


def declared() -> list[Requirement]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = cfg["options"]["install_requires"].split("\n") + cfg["options.extras_require"]["dev"].split("\n")
    return [Requirement(line) for line in lines if line.strip()]


def test_every_declared_dependency_is_pinned_except_torch():
    pins = pinned()
    for req in declared():
        name = canonicalize_name(req.name)
        if name == "torch":
            assert name not in pins, "torch's build is chosen per machine: it must not be pinned"
            continue
        assert name in pins, f"{req.name} is required by setup.cfg but not pinned in {CONSTRAINTS.name}"
        assert req.specifier.contains(pins[name], prereleases=True), f"pin {name}=={pins[name]} outside {req}"


def test_readme_test_command_and_ci_use_the_pins():
    readme = (ROOT / "README.md").read_text()
    command = next(line for line in readme.splitlines() if "pytest" in line and line.startswith("pip install"))
    assert "-c requirements/constraints-test.txt" in command
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"-c requirements/constraints-test\.txt -e \"\.\[dev\]\"", ci)
    assert "MTBERT_CI_NEWEST" in ci  # the deliberate newest-releases mode


def test_readme_docs_and_ci_run_the_suite_with_the_same_pytest_arguments():
    """One test command: the README's, the getting-started page's, the contributing page's and the one CI runs
    (two pytest-xdist workers, the tests of a file and the torchrun tests grouped: tests/conftest.py)."""

    def pytest_args(text: str) -> set[str]:
        commands = [line for line in text.splitlines() if line.startswith(("pip install", "python -m pytest"))]
        return {line.split("python -m pytest", 1)[1].strip() for line in commands if "python -m pytest" in line}

    pages = ["README.md", "docs/getting-started.md", "docs/contributing.md", ".ci/run"]
    found = {page: pytest_args((ROOT / page).read_text()) for page in pages}
    assert found[".ci/run"] == {"-q -p no:cacheprovider -n 2 --dist loadgroup"}
    assert all(args == found[".ci/run"] for args in found.values()), found
