"""A saved multitask BERT whose forward runs an ONNX Runtime or OpenVINO export: the same pipeline and
``predict.py`` code, another engine.

``load_runtime_model(path, backend="onnx" | "openvino")`` returns ``(model, tokenizer)``: a ``MultitaskBertModel``
(a :class:`RuntimeMultitaskModel`) whose ``forward(task=...)`` and ``forward_tasks`` hand the padded batch to
:class:`~mtbert.models.mtbert.runtime_mtbert.ExportedModel` instead of the torch encoder. Everything that predicts
through the model (``mtbert.inference.predict``, the pipeline, ``examples/predict.py``) then runs the export unchanged:
tokenization, length sorting, heads' post-processing stay mtbert's, so the outputs equal torch's to ~1e-5.

The export comes from ``export_dir`` when it holds one (made by ``mtbert-export`` from this model), else it is made
there on first use: by default in a cache folder, ``$MTBERT_CACHE`` or ``~/.cache/mtbert/exports``, one per model
folder (keyed by its path and its weights' size and time) and backend. The torch encoder's weights are dropped once
the export is there: only the heads' (a few KiB) stay in torch, for the post-processing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any

import torch

from ..models.mtbert.configuration_mtbert import MultitaskConfigError
from ..models.mtbert.modeling_mtbert import TASK_BATCH_KEYS, MultitaskBertModel, MultitaskOutput
from ..models.mtbert.runtime_mtbert import MANIFEST_NAME, ExportedModel, ExportError

logger = logging.getLogger(__name__)

#: ``backend=`` of the pipeline and ``predict.py --backend``: torch, or an export run by its runtime
BACKENDS = ("torch", "onnx", "openvino")
#: the export format each backend runs, and the package it needs (and the extra that installs it)
RUNTIMES = {"onnx": ("onnx", "onnxruntime", "onnx"), "openvino": ("openvino", "openvino", "openvino")}
CACHE_ENV = "MTBERT_CACHE"
#: bumped when what ``export_model`` writes by default changes (2: dual-graph riders, int8 FFN outputs in float)
EXPORT_VERSION = 2


def resolve_backend(backend: str | None) -> str | None:
    """``None`` for torch, else ``"onnx"``/``"openvino"``, with its runtime importable; one line otherwise."""
    if backend is None or backend == "torch":
        return None
    if backend not in RUNTIMES:
        raise MultitaskConfigError(f"backend: {backend!r} is not one of {', '.join(BACKENDS)}")
    _, module, extra = RUNTIMES[backend]
    try:
        __import__(module)
    except ImportError:
        raise MultitaskConfigError(
            f'backend {backend!r} needs the {module!r} package: pip install -e ".[{extra}]" (or pip install {module})'
        ) from None
    return backend


def default_export_dir(model_path: str, backend: str, int8: str | None = None) -> str:
    """The cache folder of ``model_path``'s export for ``backend``: a new one when the weights change."""
    path = os.path.abspath(model_path)
    weights = os.path.join(path, "model.safetensors")
    stamp = f"{path}|{os.path.getsize(weights)}|{os.stat(weights).st_mtime_ns}" if os.path.isfile(weights) else path
    stamp += f"|{EXPORT_VERSION}"  # an export made by an earlier mtbert (other graphs or int8 settings) is redone
    key = hashlib.sha256(stamp.encode()).hexdigest()[:16]
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "mtbert", "exports")
    name = f"{os.path.basename(path.rstrip(os.sep)) or 'model'}-{key}-{backend}" + (f"-int8{int8}" if int8 else "")
    return os.path.join(root, name)


class RuntimeMultitaskModel(MultitaskBertModel):
    """A ``MultitaskBertModel`` whose forward passes run an export (``self.exported``, an
    :class:`~mtbert.models.mtbert.runtime_mtbert.ExportedModel`): logits and embeddings as torch tensors, no loss
    (labels in a batch are ignored). Build it with :func:`load_runtime_model`."""

    exported: ExportedModel

    def _graph_inputs(self, graph: str, batch: dict[str, Any]) -> dict[str, Any]:
        names = self.exported.graphs[graph]["inputs"]
        missing = [name for name in names if batch.get(name) is None]
        if missing:
            raise MultitaskConfigError(f"the exported graph {graph!r} takes {', '.join(names)}; missing {missing}")
        return {name: batch[name].detach().cpu().numpy() for name in names}

    def _rides(self, graph: str, dual_batch: dict[str, Any], task: str, batch: dict[str, Any]) -> bool:
        """Whether ``task`` (a rider of the ``graph`` export, see ``export.dual_riders``) can be answered by running
        ``graph`` on ``dual_batch``: its own batch holds the same ids as the dual inputs it would read there."""
        if task not in self.exported.graphs[graph].get("riders", ()):
            return False
        if self.exported.tasks[task]["graph"] == "pair":
            pairs = [("input_ids", "pair_input_ids"), ("attention_mask", "pair_attention_mask")]
        else:
            pairs = [(name, name) for name in ("input_ids", "attention_mask", "token_type_ids")]
            pairs = [(a, b) for a, b in pairs if a in self.exported.graphs[graph]["inputs"]]
        return all(
            isinstance(batch.get(own), torch.Tensor)
            and isinstance(dual_batch.get(dual), torch.Tensor)
            and batch[own].shape == dual_batch[dual].shape
            and torch.equal(batch[own], dual_batch[dual])
            for own, dual in pairs
        )

    def _run(self, graph: str, tasks: list[str], batch: dict[str, Any]) -> dict[str, MultitaskOutput]:
        specs = self.exported.tasks
        names = [specs[t][what] for t in tasks for what in ("logits", "embeddings")]
        out = self.exported.run_graph(graph, names, **self._graph_inputs(graph, batch))
        return {
            t: MultitaskOutput(
                logits=torch.from_numpy(out[specs[t]["logits"]]),
                embeddings=torch.from_numpy(out[specs[t]["embeddings"]]),
            )
            for t in tasks
        }

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, task=None, return_dict=None,
                pair_input_ids=None, pair_attention_mask=None, **unused):  # fmt: skip
        task = self._resolve_task(task)
        self.heads[task].check_inputs(task, input_ids, pair_input_ids)
        batch = {
            "input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids,
            "pair_input_ids": pair_input_ids, "pair_attention_mask": pair_attention_mask,
        }  # fmt: skip
        output = self._run(self.exported.tasks[task]["graph"], [task], batch)[task]
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return output if return_dict else (output.logits, output.embeddings)

    def forward_tasks(self, batches: dict[str, dict[str, torch.Tensor]]) -> dict[str, MultitaskOutput]:
        """One run per exported graph: the tasks of one graph (one input layout) share it, and ``joined`` or
        ``pair`` tasks whose rows a ``dual`` task's batch already holds are answered by the dual graph's run."""
        if not isinstance(batches, dict) or not batches:
            raise MultitaskConfigError("forward_tasks takes {task: batch}, one entry per task to predict")
        by_graph: dict[str, list[str]] = {}
        for task, batch in batches.items():
            task = self._resolve_task(task)
            unknown = sorted(set(batch) - set(TASK_BATCH_KEYS))
            if unknown:
                raise MultitaskConfigError(f"forward_tasks: the batch of task {task!r} has {', '.join(unknown)}")
            by_graph.setdefault(self.exported.tasks[task]["graph"], []).append(task)
        dual = by_graph.get("dual")
        if dual:
            for graph in [g for g in by_graph if g != "dual"]:
                if all(self._rides("dual", batches[dual[0]], task, batches[task]) for task in by_graph[graph]):
                    dual += by_graph.pop(graph)
        outputs = {}
        for graph, tasks in by_graph.items():
            outputs.update(self._run(graph, tasks, batches[tasks[0]]))
        return {task: outputs[task] for task in batches}


def _drop_encoder_weights(model: MultitaskBertModel) -> None:
    """Free the torch encoders' weights (the export holds them); the heads keep theirs."""
    heads = {id(p) for p in model.heads.parameters()}
    for parameter in model.parameters():
        if id(parameter) not in heads:
            parameter.data = torch.empty(0, dtype=parameter.dtype)


def load_runtime_model(
    model_path: str | os.PathLike,
    backend: str,
    export_dir: str | os.PathLike | None = None,
    threads: int | None = None,
    int8: str | None = None,
    **export_kwargs,
):
    """``(model, tokenizer)`` of a saved mtbert folder, the model's passes run by ``backend`` (``"onnx"``: ONNX
    Runtime on an ONNX export; ``"openvino"``: OpenVINO on an IR export). ``export_dir``: an export of this model
    made earlier (``mtbert-export``), or where to make one (default: a cache folder, see the module docstring).
    ``int8="static"`` makes (or expects) a calibrated int8 export (``mtbert.inference.export.export_model``; the
    calibration rows and data folder go in ``export_kwargs``). ``threads``: the runtime's intra-op threads."""
    from .loading import load_model_and_tokenizer

    runtime = resolve_backend(backend)
    if runtime is None:
        raise MultitaskConfigError("load_runtime_model runs an export: backend 'onnx' or 'openvino'")
    backend = runtime
    model_path = os.fspath(model_path)
    if os.path.isfile(os.path.join(model_path, MANIFEST_NAME)):
        raise MultitaskConfigError(
            f"{model_path!r} is an export: pass the saved model folder it was exported from, and "
            f"export_dir={model_path!r} (--export_dir)"
        )
    model, tokenizer = load_model_and_tokenizer(model_path)
    fmt = RUNTIMES[backend][0]
    export_dir = os.fspath(export_dir) if export_dir is not None else default_export_dir(model_path, backend, int8)
    if not os.path.isfile(os.path.join(export_dir, MANIFEST_NAME)):
        from .export import export_model

        logger.info("exporting %s for %s into %s (once)", model_path, backend, export_dir)
        export_model(model, export_dir, format=fmt, tokenizer=tokenizer, int8=int8, overwrite=True, **export_kwargs)
    exported = _open_export(export_dir, backend, threads)
    tasks, manifest = set(model.config.tasks), exported.manifest
    if set(exported.tasks) != tasks:
        raise MultitaskConfigError(
            f"the export in {export_dir!r} has tasks {', '.join(exported.tasks)}, the model {', '.join(tasks)}: "
            "not an export of this model"
        )
    if (manifest.get("int8") or {}).get("mode") != int8:
        have = (manifest.get("int8") or {}).get("mode")
        raise MultitaskConfigError(
            f"the export in {export_dir!r} is {'int8 ' + have if have else 'float32'}, int8={int8!r} was asked"
        )
    _drop_encoder_weights(model)
    model.__class__ = RuntimeMultitaskModel
    model.exported = exported
    return model, tokenizer


def _open_export(export_dir: str, backend: str, threads: int | None) -> ExportedModel:
    fmt, runtime, _ = RUNTIMES[backend]
    try:
        with open(os.path.join(export_dir, MANIFEST_NAME), encoding="utf-8") as handle:
            found = json.load(handle).get("format")
    except (OSError, ValueError) as error:
        raise MultitaskConfigError(f"export_dir {export_dir!r}: not a readable mtbert export ({error})") from None
    if found != fmt:
        raise MultitaskConfigError(
            f"the export in {export_dir!r} is {found!r}; backend {backend!r} runs {fmt!r} exports"
        )
    try:
        return ExportedModel(export_dir, backend=runtime, threads=threads)
    except ExportError as error:
        raise MultitaskConfigError(f"export_dir: {error}") from None


__all__ = ["BACKENDS", "RuntimeMultitaskModel", "default_export_dir", "load_runtime_model", "resolve_backend"]
