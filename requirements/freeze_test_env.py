"""Write requirements/constraints-test.txt: the exact versions of everything ``pip install -e ".[dev]"`` pulls in.

Why: the README's test command and ``.ci/run`` install with ``-c requirements/constraints-test.txt`` so that a fresh
machine gets the environment the suite was last green in, not whatever was released this morning. torch is left out
(its build is chosen per machine: ``.ci/run`` installs the CPU build first). Run it in the environment CI is green
with after a deliberate upgrade (``MTBERT_CI_NEWEST=1 bash .ci/run``) passes::

    python requirements/freeze_test_env.py
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT_PACKAGE, ROOT_EXTRAS = "mtbert", ("dev",)
LEFT_OUT = {"torch", "mtbert"}  # torch: per-machine build; mtbert: the package under test
OUT = Path(__file__).with_name("constraints-test.txt")


def closure(name: str, extras: tuple[str, ...]) -> dict[str, str]:
    """Every installed distribution reachable from ``name[extras]``, canonical name -> version."""
    seen: dict[str, str] = {}
    todo = [(name, extras)]
    while todo:
        dist_name, dist_extras = todo.pop()
        dist = metadata.distribution(dist_name)
        key = canonicalize_name(dist.metadata["Name"])
        first_visit = key not in seen
        seen[key] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            wanted = req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *dist_extras))
            if not wanted:
                continue
            child = canonicalize_name(req.name)
            if (child not in seen or req.extras) and (first_visit or req.extras):
                todo.append((child, tuple(req.extras)))
    return seen


def main() -> int:
    pins = closure(ROOT_PACKAGE, ROOT_EXTRAS)
    lines = [f"{name}=={version}" for name, version in sorted(pins.items()) if name not in LEFT_OUT]
    header = (
        "# The test environment CI is green with (torch aside: its build is per machine).\n"
        "# Made by `python requirements/freeze_test_env.py`;\n"
        "# used as `pip install -c requirements/constraints-test.txt`.\n"
        f"# Python {sys.version_info.major}.{sys.version_info.minor}\n"
    )
    OUT.write_text(header + "\n".join(lines) + "\n")
    print(f"{OUT}: {len(lines)} pins")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
