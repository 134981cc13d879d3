"""A script run in a fresh interpreter where mtbert cannot be imported: how the tests check that a saved model and
its pipeline work through remote code alone, as on a machine that has transformers and not mtbert."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

# Put first in every such script: any import of mtbert (or a submodule) fails, as if it were not installed.
BLOCK_MTBERT = textwrap.dedent(
    """
    import importlib.abc
    import sys

    class BlockMtbert(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "mtbert" or name.startswith("mtbert."):
                raise ImportError("mtbert is not installed here")

    sys.meta_path.insert(0, BlockMtbert())
    """
)


def run_without_mtbert(body: str, args, workdir: Path, timeout: int = 300, **env_overrides: str):
    """Write ``BLOCK_MTBERT`` + ``body`` to ``workdir/script.py`` and run it isolated (``python -I``: no
    PYTHONPATH, no user site) from a folder of its own, offline, with its own remote-code module cache.
    Returns the ``subprocess.CompletedProcess`` (output captured as text)."""
    script = workdir / "script.py"
    script.write_text(BLOCK_MTBERT + textwrap.dedent(body))
    elsewhere = workdir / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    env.update(HF_MODULES_CACHE=str(workdir / "modules"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "-I", str(script), *map(str, args)],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
