"""Run a multitask BERT exported by ``mtbert.inference.export`` (ONNX or OpenVINO IR) with ONNX Runtime or OpenVINO:
text or token ids in, numpy logits out, without torch and without mtbert.

This file imports only the standard library and numpy at import time; ``tokenizers`` (for text) and the backend
(``onnxruntime`` or ``openvino``) are imported when first needed. ``export_model`` copies it next to every export
as ``runtime_mtbert.py``, so a machine without mtbert (or torch) can run::

    import sys; sys.path.insert(0, "exported")          # the export folder
    from runtime_mtbert import ExportedModel
    model = ExportedModel("exported")                  # backend: onnxruntime for ONNX, openvino for IR
    model.logits("sst", ["a fine film"])               # (1, 5) float32
    model.logits("qqp", ["How old are you?"], ["What is your age?"])

An export folder holds one graph per input layout of its tasks (see ``mtbert_export.json``, written beside them):

- ``single``: ``input_ids``, ``attention_mask`` of shape ``(batch, length)``; one-sentence tasks.
- ``pair``: ``input_ids``, ``attention_mask`` of shape ``(batch, 2, length)``; pairs encoded separately / by cosine.
- ``joined``: ``input_ids``, ``attention_mask`` [, ``token_type_ids``] ``(batch, length)``; pairs joined with the
  separator.
- ``joined_nosep``: ``input_ids``, ``attention_mask``; pairs joined without separator.
- ``dual``: the joined inputs and ``pair_input_ids``, ``pair_attention_mask`` ``(batch, 2, pair_length)``.
- ``tokens``: ``input_ids``, ``attention_mask`` ``(batch, length)``; token classification.

Every graph outputs, for each of its tasks, ``<task>_logits`` (what ``MultitaskBertModel(task=...).logits`` gives)
and ``<task>_embeddings`` (its pooled embeddings; a token task's: every token's final state, and its logits are per
sub-token, ``(batch, length, num_labels)``: mapping them to words is left to the caller). Batch and lengths are
dynamic. The text is tokenized here exactly as mtbert's heads tokenize it (``heads_mtbert.encode_texts``) and padded
as its collator pads.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

MANIFEST_NAME = "mtbert_export.json"
#: the runtimes that can run an export, and the formats each reads
BACKENDS = {"onnxruntime": ("onnx",), "openvino": ("openvino", "onnx")}
DEFAULT_BACKEND = {"onnx": "onnxruntime", "openvino": "openvino"}
#: the token-id inputs a graph may take (the arguments of ``MultitaskBertModel.forward``)
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids", "pair_input_ids", "pair_attention_mask")


class ExportError(ValueError):
    """An export folder, backend or input that cannot be used, said in one line."""


def _pad(sequences: Sequence[Sequence[int]], value: int, length: int) -> np.ndarray:
    out = np.full((len(sequences), length), value, dtype=np.int64)
    for row, seq in enumerate(sequences):
        out[row, : len(seq)] = seq
    return out


def collate(rows: dict[str, list[list[int]]], pad_token_id: int) -> dict[str, np.ndarray]:
    """Token-id columns (as ``heads_mtbert.encode_texts`` returns them) padded into graph inputs, as mtbert's
    ``TaskCollator`` pads them: a pair read separately (``input_ids_b``) becomes ``(batch, 2, length)``."""

    def pair(first: str, second: str) -> tuple[np.ndarray, np.ndarray]:
        length = max(len(s) for key in (first, second) for s in rows[key])
        ids = np.stack([_pad(rows[key], pad_token_id, length) for key in (first, second)], axis=1)
        masks = np.stack([_pad([[1] * len(s) for s in rows[key]], 0, length) for key in (first, second)], axis=1)
        return ids, masks

    if "input_ids_b" in rows:
        ids, mask = pair("input_ids", "input_ids_b")
        return {"input_ids": ids, "attention_mask": mask}
    length = max(len(s) for s in rows["input_ids"])
    batch = {
        "input_ids": _pad(rows["input_ids"], pad_token_id, length),
        "attention_mask": _pad([[1] * len(s) for s in rows["input_ids"]], 0, length),
    }
    if "token_type_ids" in rows:
        batch["token_type_ids"] = _pad(rows["token_type_ids"], 0, length)
    if "pair_input_ids_a" in rows:
        batch["pair_input_ids"], batch["pair_attention_mask"] = pair("pair_input_ids_a", "pair_input_ids_b")
    return batch


class TextEncoder:
    """mtbert's tokenization of each input layout with the ``tokenizers`` library (``tokenizer.json``), so that no
    transformers (and no torch) is needed: the same token ids as ``heads_mtbert.encode_texts``."""

    def __init__(self, path: str, truncation_side: str = "right"):
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(path)
        self.tokenizer.no_padding()
        self.truncation_side = truncation_side

    def _encode(self, inputs: list, max_length: int | None, special: bool = True):
        if max_length is None:
            self.tokenizer.no_truncation()
        else:
            self.tokenizer.enable_truncation(max_length, strategy="longest_first", direction=self.truncation_side)
        return self.tokenizer.encode_batch(inputs, add_special_tokens=special)

    def alone(self, texts: list[str], max_length: int) -> list[list[int]]:
        return [e.ids for e in self._encode(list(texts), max_length)]

    def joined(self, texts: list[str], pairs: list[str], max_length: int) -> dict[str, list[list[int]]]:
        encoded = self._encode(list(zip(texts, pairs)), max_length)
        return {"input_ids": [e.ids for e in encoded], "token_type_ids": [e.type_ids for e in encoded]}

    def joined_nosep(self, texts: list[str], pairs: list[str], max_length: int) -> list[list[int]]:
        """The pair with no separator: the single-sequence special tokens around ``a + b``, truncated longest first
        (``heads_mtbert.join_without_separator``)."""
        one = self._encode(["a"], None)[0]
        special = one.special_tokens_mask
        start, end = special.index(0), len(special) - special[::-1].index(0)
        before, after = one.ids[:start], one.ids[end:]
        budget = max_length - len(before) - len(after)
        firsts = self._encode(list(texts), None, special=False)
        seconds = self._encode(list(pairs), None, special=False)
        out = []
        for a, b in zip(firsts, seconds):
            first, second = list(a.ids), list(b.ids)
            while len(first) + len(second) > budget:
                (first if len(first) >= len(second) else second).pop()
            out.append([*before, *first, *second, *after])
        return out

    def encode(self, layout: str, texts: list, pairs: list[str] | None, max_length: int) -> dict[str, list]:
        """Token-id columns of one layout (``single``, ``pair``, ``joined``, ``joined_nosep``, ``dual``, ``tokens``).
        A token task reads a sentence as a string (as mtbert's pipeline does) or already split into words."""
        if layout == "single" or (layout == "tokens" and all(isinstance(t, str) for t in texts)):
            return {"input_ids": self.alone(texts, max_length)}
        if layout == "tokens":
            self.tokenizer.enable_truncation(max_length, strategy="longest_first", direction=self.truncation_side)
            return {"input_ids": [e.ids for e in self.tokenizer.encode_batch(list(texts), is_pretokenized=True)]}
        if pairs is None or len(pairs) != len(texts):
            raise ExportError(f"the {layout!r} layout reads sentence pairs: pass as many text_pairs as texts")
        if layout == "pair":
            return {"input_ids": self.alone(texts, max_length), "input_ids_b": self.alone(pairs, max_length)}
        if layout == "joined":
            return self.joined(texts, pairs, max_length)
        if layout == "joined_nosep":
            return {"input_ids": self.joined_nosep(texts, pairs, max_length)}
        if layout == "dual":
            out = self.joined(texts, pairs, max_length)
            out["pair_input_ids_a"] = self.alone(texts, max_length)
            out["pair_input_ids_b"] = self.alone(pairs, max_length)
            return out
        raise ExportError(f"no text tokenization for layout {layout!r} here: pass token ids to run()")


# ---------------------------------------------------------------------------------------------------------------
# Backends: one compiled graph each, called with {input name: int64 array}, answering {output name: array}
# ---------------------------------------------------------------------------------------------------------------


class _OnnxRuntimeGraph:
    def __init__(self, path: str, threads: int | None, providers: Sequence[str] | None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        self.session = ort.InferenceSession(path, options, providers=list(providers or ["CPUExecutionProvider"]))
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, feeds: dict[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        return dict(zip(outputs, self.session.run(list(outputs), feeds)))


class _OpenVinoGraph:
    def __init__(self, path: str, threads: int | None, device: str):
        import openvino as ov

        # float32 throughout: on CPUs with bf16 support OpenVINO would otherwise run in bf16 (errors ~1e-3)
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(path), device, config)
        self.input_names = [i.get_any_name() for i in self.compiled.inputs]
        self.output_names = [o.get_any_name() for o in self.compiled.outputs]

    def __call__(self, feeds: dict[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        result = self.compiled(feeds)
        return {name: np.asarray(result[self.compiled.output(name)]) for name in outputs}


class ExportedModel:
    """A multitask BERT exported by ``mtbert.inference.export.export_model``, run with ONNX Runtime or OpenVINO.

    Args:
        path: the export folder (with ``mtbert_export.json``).
        backend: ``"onnxruntime"`` or ``"openvino"``; default: ``onnxruntime`` for an ONNX export, ``openvino`` for
            an OpenVINO IR export (OpenVINO also runs an ONNX export).
        threads: intra-op threads of the runtime (default: the runtime's own choice).
        providers: ONNX Runtime execution providers (default: the CPU).
        device: OpenVINO device (default ``"CPU"``; inference precision is pinned to float32).

    ``logits(task, texts, text_pairs)`` tokenizes as mtbert does and returns the task's logits as numpy (the same
    values as ``MultitaskBertModel(task=...).logits``, to ~1e-5); ``embeddings(...)`` the pooled embeddings;
    ``predict(...)`` the predictions and scores as mtbert's heads make them; ``run(task, input_ids=...)`` takes
    padded token ids instead of text. Graphs are loaded when a task first needs them.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        backend: str | None = None,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        device: str = "CPU",
    ):
        self.path = os.fspath(path)
        manifest_file = os.path.join(self.path, MANIFEST_NAME)
        if not os.path.isfile(manifest_file):
            raise ExportError(f"{self.path!r} is not an mtbert export: it has no {MANIFEST_NAME}")
        with open(manifest_file, encoding="utf-8") as handle:
            self.manifest = json.load(handle)
        self.format = self.manifest["format"]
        backend = backend or DEFAULT_BACKEND[self.format]
        if backend not in BACKENDS:
            raise ExportError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
        if self.format not in BACKENDS[backend]:
            raise ExportError(f"backend {backend!r} cannot run a {self.format!r} export (it runs {BACKENDS[backend]})")
        self.backend = backend
        self.threads, self.providers, self.device = threads, providers, device
        self.tasks: dict[str, dict[str, Any]] = self.manifest["tasks"]
        self.graphs: dict[str, dict[str, Any]] = self.manifest["graphs"]
        self.max_length = int(self.manifest["max_length"])
        self.pad_token_id = int(self.manifest["pad_token_id"])
        self.default_task = self.manifest.get("default_task")
        self._compiled: dict[str, Any] = {}
        self._text_encoder: TextEncoder | None = None

    # -- loading ---------------------------------------------------------------------------------------------

    @property
    def task_names(self) -> list[str]:
        return list(self.tasks)

    def _task(self, task: str | None) -> str:
        if task is None:
            task = (
                self.default_task
                if self.default_task is not None
                else (next(iter(self.tasks)) if len(self.tasks) == 1 else None)
            )
            if task is None:
                raise ExportError(f"pass task=..., one of {', '.join(self.tasks)}")
        if task not in self.tasks:
            raise ExportError(f"unknown task {task!r}; this export has {', '.join(self.tasks)}")
        return task

    def graph(self, name: str):
        """The compiled graph ``name`` (loaded on first use)."""
        if name not in self._compiled:
            path = os.path.join(self.path, self.graphs[name]["file"])
            if self.backend == "onnxruntime":
                self._compiled[name] = _OnnxRuntimeGraph(path, self.threads, self.providers)
            else:
                self._compiled[name] = _OpenVinoGraph(path, self.threads, self.device)
        return self._compiled[name]

    @property
    def text_encoder(self) -> TextEncoder:
        if self._text_encoder is None:
            name = self.manifest.get("tokenizer_file")
            if not name:
                raise ExportError("this export has no tokenizer (export it with one): pass token ids to run()")
            self._text_encoder = TextEncoder(
                os.path.join(self.path, name), self.manifest.get("truncation_side") or "right"
            )
        return self._text_encoder

    # -- running ---------------------------------------------------------------------------------------------

    def run_graph(self, graph: str, outputs: Sequence[str] | None = None, **inputs) -> dict[str, np.ndarray]:
        """Every output (or those named) of one graph for padded int64 ``inputs`` (the graph's input names)."""
        spec = self.graphs[graph]
        missing = [name for name in spec["inputs"] if name not in inputs]
        if missing:
            raise ExportError(f"graph {graph!r} takes {', '.join(spec['inputs'])}; missing {', '.join(missing)}")
        feeds = {name: np.asarray(inputs[name], dtype=np.int64) for name in spec["inputs"]}
        return self.graph(graph)(feeds, list(outputs or spec["outputs"]))

    def run(self, task: str | None = None, **inputs) -> dict[str, np.ndarray]:
        """``{"logits", "embeddings"}`` of one task for padded token ids (``input_ids``, ``attention_mask``...:
        the layout of the task's graph; inputs the graph does not take are ignored)."""
        task = self._task(task)
        spec = self.tasks[task]
        graph = self.graphs[spec["graph"]]
        given = {name: value for name, value in inputs.items() if name in graph["inputs"]}
        out = self.run_graph(spec["graph"], [spec["logits"], spec["embeddings"]], **given)
        return {"logits": out[spec["logits"]], "embeddings": out[spec["embeddings"]]}

    def tokenize(
        self, task: str | None, texts: Sequence[str], text_pairs: Sequence[str] | None = None,
        max_length: int | None = None,
    ) -> dict[str, np.ndarray]:  # fmt: skip
        """Padded graph inputs for ``texts`` (and ``text_pairs``), tokenized as the task's head tokenizes."""
        task = self._task(task)
        texts = [texts] if isinstance(texts, str) else list(texts)
        pairs = None if text_pairs is None else ([text_pairs] if isinstance(text_pairs, str) else list(text_pairs))
        rows = self.text_encoder.encode(self.tasks[task]["layout"], texts, pairs, max_length or self.max_length)
        return collate(rows, self.pad_token_id)

    def _batched(self, task, texts, text_pairs, batch_size: int, max_length: int | None) -> dict[str, np.ndarray]:
        task = self._task(task)
        texts = [texts] if isinstance(texts, str) else list(texts)
        if text_pairs is not None:
            text_pairs = [text_pairs] if isinstance(text_pairs, str) else list(text_pairs)
        pieces: list[dict[str, np.ndarray]] = []
        for start in range(0, len(texts), batch_size):
            pairs = None if text_pairs is None else text_pairs[start : start + batch_size]
            batch = self.tokenize(task, texts[start : start + batch_size], pairs, max_length)
            pieces.append(self.run(task, **batch))
        if not pieces:
            raise ExportError("no texts given")
        if self.tasks[task]["layout"] == "tokens":  # per sub-token: batches padded to the longest (zeros)
            length = max(p["logits"].shape[1] for p in pieces)
            for piece in pieces:
                for key, value in piece.items():
                    piece[key] = np.pad(value, [(0, 0), (0, length - value.shape[1])] + [(0, 0)] * (value.ndim - 2))
        return {key: np.concatenate([p[key] for p in pieces]) for key in ("logits", "embeddings")}

    def logits(
        self, task: str | None, texts: Sequence[str], text_pairs: Sequence[str] | None = None, batch_size: int = 32,
        max_length: int | None = None,
    ) -> np.ndarray:  # fmt: skip
        """The task's logits for ``texts`` (``text_pairs`` for a pair task): ``(n, num_labels)`` or ``(n,)``."""
        return self._batched(task, texts, text_pairs, batch_size, max_length)["logits"]

    def embeddings(
        self, task: str | None, texts: Sequence[str], text_pairs: Sequence[str] | None = None, batch_size: int = 32,
        max_length: int | None = None,
    ) -> np.ndarray:  # fmt: skip
        """The task's pooled embeddings: ``(n, hidden)``, or ``(n, 2, hidden)`` for a pair encoded separately."""
        return self._batched(task, texts, text_pairs, batch_size, max_length)["embeddings"]

    def predict(
        self, task: str | None, texts: Sequence[str], text_pairs: Sequence[str] | None = None, batch_size: int = 32,
        max_length: int | None = None,
    ) -> dict[str, np.ndarray]:  # fmt: skip
        """``{"logits", "predictions", "scores"}`` as mtbert's heads make them: the class and its probability; 0/1
        and the paraphrase probability (or the cosine, for a cosine head); the similarity score twice."""
        task = self._task(task)
        logits = self.logits(task, texts, text_pairs, batch_size, max_length)
        predictions, scores = postprocess(self.tasks[task], logits)
        return {"logits": logits, "predictions": predictions, "scores": scores}


def postprocess(spec: dict[str, Any], logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(predictions, scores)`` from a task's logits, as ``heads_mtbert.Objective.postprocess`` makes them."""
    logits = np.asarray(logits, dtype=np.float32)
    objective = spec.get("objective")
    if objective in ("classes", "tags"):  # tags: a class per token, (batch, length, num_labels)
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=-1, keepdims=True)
        return probabilities.argmax(axis=-1), probabilities.max(axis=-1)
    if objective == "binary":
        probabilities = 1.0 / (1.0 + np.exp(-logits))
        return (probabilities > 0.5).astype(np.int64), probabilities
    if objective == "cosine_threshold":
        return (logits > spec["cosine_threshold"]).astype(np.int64), logits
    if objective == "score":
        return logits, logits
    raise ExportError(f"no predictions for objective {objective!r} here: use the logits")


__all__ = ["BACKENDS", "MANIFEST_NAME", "ExportError", "ExportedModel", "TextEncoder", "collate", "postprocess"]
