"""Old module paths (``mtbert.trainer``, ``mtbert.training_args``, ...) importable after the package was regrouped.

Each old path is an alias of its new module: ``import mtbert.trainer`` gives the very module object of
``mtbert.training.trainer`` (so monkeypatching, ``isinstance`` and pickles made by earlier versions, which name
``mtbert.training_args.MultitaskTrainingArguments``, keep working). Nothing is imported until an old path is asked
for: the finder only answers names in :data:`MOVED`. ``python -m mtbert.export`` runs the new module as a script.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys

#: old module path → new module path
MOVED = {
    "mtbert.configuration_mtbert": "mtbert.models.mtbert.configuration_mtbert",
    "mtbert.modeling_mtbert": "mtbert.models.mtbert.modeling_mtbert",
    "mtbert.heads_mtbert": "mtbert.models.mtbert.heads_mtbert",
    "mtbert.kinds_mtbert": "mtbert.models.mtbert.kinds_mtbert",
    "mtbert.pipeline_mtbert": "mtbert.models.mtbert.pipeline_mtbert",
    "mtbert.runtime_mtbert": "mtbert.models.mtbert.runtime_mtbert",
    "mtbert.token_data": "mtbert.tasks.token_data",
    "mtbert.collators": "mtbert.data.collators",
    "mtbert.sampling": "mtbert.data.sampling",
    "mtbert.packing": "mtbert.data.packing",
    "mtbert.static_shapes": "mtbert.data.static_shapes",
    "mtbert.prepare": "mtbert.data.prepare",
    "mtbert.trainer": "mtbert.training.trainer",
    "mtbert.aggregators": "mtbert.training.aggregators",
    "mtbert.weighting": "mtbert.training.weighting",
    "mtbert.backward": "mtbert.training.backward",
    "mtbert.optimization": "mtbert.training.optimization",
    "mtbert.precision": "mtbert.training.precision",
    "mtbert.callbacks": "mtbert.training.callbacks",
    "mtbert.checkpoints": "mtbert.training.checkpoints",
    "mtbert.distillation": "mtbert.training.distillation",
    "mtbert.training_args": "mtbert.training.training_args",
    "mtbert.cuda_graphs": "mtbert.training.cuda_graphs",
    "mtbert.predict": "mtbert.inference.predict",
    "mtbert.ensemble": "mtbert.inference.ensemble",
    "mtbert.export": "mtbert.inference.export",
    "mtbert.serving": "mtbert.inference.serving",
    "mtbert.averaging": "mtbert.inference.averaging",
    "mtbert.prediction_speed": "mtbert.inference.prediction_speed",
    "mtbert.loading": "mtbert.inference.loading",
    "mtbert.publish": "mtbert.hub.publish",
    "mtbert.arguments": "mtbert.cli.arguments",
    "mtbert.run": "mtbert.cli.run",
    "mtbert.search": "mtbert.cli.search",
}


class _AliasLoader(importlib.abc.Loader):
    """Hands back the new module itself; running an old path with ``python -m`` runs the new one."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)

    def exec_module(self, module) -> None:
        """Nothing to run: the new module is already imported."""

    def get_code(self, fullname):  # runpy (``python -m mtbert.export``)
        return compile(
            f"import runpy\nrunpy.run_module({self.target!r}, run_name='__main__', alter_sys=True)\n",
            f"<{fullname}: alias of {self.target}>",
            "exec",
        )

    def is_package(self, fullname) -> bool:
        return False


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new))


def install() -> None:
    """Put the alias finder first on ``sys.meta_path``, once: it answers only the old paths, and must answer them
    before an editable install's finder, which would load a stale file of another checkout under the old name."""
    if not any(isinstance(finder, _AliasFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())
