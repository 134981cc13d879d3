"""Serving a trained multitask BERT without mtbert: ONNX / OpenVINO graphs, and the encoder as a SentenceTransformer.

``export_model(model_or_path, out_dir, format="onnx" | "openvino")`` writes one graph per **input layout** of the
model's tasks, because the heads read different inputs (one sentence; a pair encoded separately as
``(batch, 2, length)``; a pair joined into one sequence, with or without the separator; both, for a ``dual`` head).
A graph holds the encoder(s) and the heads of every task of its layout and answers all of them in one run:

- ``single``: ``input_ids``, ``attention_mask`` of shape ``(batch, length)``; one-sentence heads.
- ``pair``: ``input_ids``, ``attention_mask`` of shape ``(batch, 2, length)``; ``separate`` and ``cosine`` heads.
- ``joined``: ``input_ids``, ``attention_mask`` [, ``token_type_ids``] ``(batch, length)``; ``concat_sep`` heads.
- ``joined_nosep``: ``input_ids``, ``attention_mask`` ``(batch, length)``; ``concat_nosep`` heads.
- ``dual``: the ``joined`` inputs and ``pair_input_ids``, ``pair_attention_mask`` ``(batch, 2, pair_length)``;
  ``dual`` heads, and as riders (``graphs.dual.riders`` in the manifest) the ``joined`` and ``pair`` tasks that read
  the same ids with the same encoder: a request for QQP (``concat_sep``) and STS (``dual``) together is one run.
- ``tokens``: ``input_ids``, ``attention_mask`` ``(batch, length)``; token classification.

All int64, batch and lengths dynamic (up to the encoder's positions); ``token_type_ids`` is an input only when a
task of the graph uses segment embeddings. Outputs, per task of the graph: ``<task>_logits`` (what
``MultitaskBertModel(task=...).logits`` gives: ``(batch, num_labels)`` or ``(batch,)``; per token for a token task)
and ``<task>_embeddings`` (its pooled embeddings: ``(batch, hidden)``, ``(batch, 2, hidden)`` for a pair encoded
separately). Beside the graphs: ``mtbert_export.json`` (which task is in which graph, its inputs and outputs, labels
and how logits become predictions, the tokenization settings), the tokenizer, and ``runtime_mtbert.py``, the runner
(:class:`ExportedModel`) that needs only numpy, ``tokenizers`` and the runtime.

- ONNX: ``<layout>.onnx`` graphs exported with ``torch.onnx.export`` (the dynamo exporter), duplicate constants
  and repeated encoder passes folded; weights of 1 KiB and more are stored once in ``weights.bin``, which every
  graph reads (the encoder is not copied per layout). Runs with ONNX Runtime, or OpenVINO.
- OpenVINO: ``<layout>.xml`` / ``<layout>.bin`` IR converted from those ONNX graphs by OpenVINO's ONNX frontend
  and saved in float32 (``compress_to_fp16=False``); each IR graph has its own ``.bin``, so the encoder's weights
  are stored once per layout (``ExportedModel(onnx_export, backend="openvino")`` runs the ONNX files, stored
  once, with OpenVINO instead).

Each graph is checked after export against the torch model on a batch of another size and length than the one it
was traced with (``verify=True``); the largest differences are recorded in the manifest.

``save_sentence_transformer(model, tokenizer, out_dir, task=None)`` writes the task's encoder and pooling as a
sentence-transformers folder: ``SentenceTransformer(out_dir).encode(texts)`` equals the task's pooled sentence
embeddings (see its docstring for the pooling and why no ``Normalize`` module is added by default).

Static int8 (``int8="static"``, ``--int8 static --data_dir DATA``): the graphs quantized after calibration on
training rows (``calibration_rows`` per graph, one row per sample), the heads, pooling and (by default,
``int8_float="heads+ffn_output"``) every layer's FFN down projection kept in float: NNCF's ``nncf.quantize``
(``ModelType.TRANSFORMER``, those nodes in ``ignored_scope``) for OpenVINO, ONNX Runtime's ``quantize_static`` (QDQ,
per-channel int8 weights, those nodes in ``nodes_to_exclude``) for ONNX. The manifest's
``int8`` entry records it; ``mtbert.inference.serving`` and ``ExportedModel`` run it like any export.

Command line: ``mtbert-export --format onnx|openvino|sentence-transformers MODEL OUT`` (or ``python -m
mtbert.inference.export``).
"""

from __future__ import annotations

import argparse
import ast
import copy
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..hub.publish import discard, fresh_staging_dir, publish
from ..models.mtbert import runtime_mtbert
from ..models.mtbert.configuration_mtbert import MultitaskConfigError
from ..models.mtbert.runtime_mtbert import MANIFEST_NAME, ExportedModel, ExportError, collate

logger = logging.getLogger("mtbert.inference.export")  # the same name when run as python -m mtbert.inference.export

EXPORT_FORMATS = ("onnx", "openvino")
#: ``int8=`` of ``export_model``: static (calibrated) int8 through NNCF (OpenVINO) or ONNX Runtime's quantize_static
INT8_MODES = ("static",)
#: what static int8 leaves in float32: the heads and pooling only, or also every layer's FFN down projection
#: (measured on the distilled MiniLM: heads only cost 0.010 SST accuracy, heads+ffn_output at most 0.0015 on a task)
INT8_FLOAT_CHOICES = ("heads", "heads+ffn_output")
#: module paths of FFN down projections (the linear layer after the activation, where BERT's activation outliers
#: are): BERT/RoBERTa/MPNet/DeBERTa ``layer.N.output``, DistilBERT ``ffn.lin2``, ModernBERT ``mlp.Wo``, others' fc2
FFN_OUTPUT_SCOPES = re.compile(r"\.layers?\.\d+\.(output|ffn\.lin2|mlp\.Wo|mlp\.fc2|mlp\.down_proj)$")
#: training rows a static int8 export is calibrated on, by default
CALIBRATION_ROWS = 300
CLI_FORMATS = (*EXPORT_FORMATS, "sentence-transformers")
#: the shared weights file of an ONNX export
WEIGHTS_FILE = "weights.bin"
#: initializers smaller than this stay inside their graph file
INLINE_BELOW = 1024
#: the model's token-id inputs, in the order of ``MultitaskBertModel.forward``
GRAPH_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "pair_input_ids", "pair_attention_mask")
RUNTIME_FILE = "runtime_mtbert.py"
#: how logits become predictions, by the head objective's class (``runtime_mtbert.postprocess`` reads this)
OBJECTIVES = {
    "Classes": "classes",
    "Binary": "binary",
    "CosineThreshold": "cosine_threshold",
    "Score": "score",
    "Tags": "tags",
}
#: the token-id columns of each layout, for synthetic samples when no tokenizer is given
LAYOUT_COLUMNS = {
    "single": ("input_ids",),
    "pair": ("input_ids", "input_ids_b"),
    "joined": ("input_ids", "token_type_ids"),
    "joined_nosep": ("input_ids",),
    "dual": ("input_ids", "token_type_ids", "pair_input_ids_a", "pair_input_ids_b"),
    "tokens": ("input_ids",),
}
# Two batches per graph: the first traces it, the second (another batch size and length) checks it.
SAMPLE_TEXTS = (
    ["A fine, moving film.", "The plot never quite holds together, sadly.", "It is a film about a dog."],
    [
        "Bad.",
        "An utterly charming and well acted story with a lot of heart and a few good jokes.",
        "Who wrote this?",
        "Nothing happens for two hours and then it ends.",
        "I laughed, I cried.",
    ],
)
SAMPLE_PAIRS = (
    ["A moving film.", "How is the plot?", "A film about a cat."],
    [
        "Good.",
        "A story with heart and jokes.",
        "Who is the author of this?",
        "Two hours of nothing, then the end.",
        "I cried and laughed at the same time, twice.",
    ],
)


# ---------------------------------------------------------------------------------------------------------------
# The graph of one input layout
# ---------------------------------------------------------------------------------------------------------------


class LayoutGraph(nn.Module):
    """Every task of one input layout in one forward: ``(<task>_logits, <task>_embeddings, ...)`` as float32.

    ``riders`` (a ``dual`` graph only, see :func:`dual_riders`): ``joined`` and ``pair`` tasks answered from the
    dual inputs too, the joined pair as their ``input_ids`` or the two sentences as their ``(batch, 2, length)``
    ids; the exporter folds their encoder passes into the dual head's."""

    def __init__(self, model: nn.Module, tasks: Sequence[str], riders: Sequence[str] = ()):
        super().__init__()
        self.model = model
        self.tasks = tuple(tasks)
        self.riders = tuple(riders)

    def output_names(self) -> list[str]:
        return [f"{task}_{what}" for task in self.tasks + self.riders for what in ("logits", "embeddings")]

    def forward(self, input_ids, attention_mask, token_type_ids=None, pair_input_ids=None, pair_attention_mask=None):
        outputs = []
        for task in self.tasks + self.riders:
            layout = self.model.task_head(task).layout
            if task in self.riders and layout == "pair":  # the dual head's two sentences, as a pair head reads them
                inputs = {"input_ids": pair_input_ids, "attention_mask": pair_attention_mask}
            elif task in self.riders:  # the dual head's joined pair
                inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            else:
                inputs = {
                    "input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids,
                    "pair_input_ids": pair_input_ids, "pair_attention_mask": pair_attention_mask,
                }  # fmt: skip
            out = self.model(**inputs, task=task, return_dict=True)
            outputs += [out.logits.float(), out.embeddings.float()]
        return tuple(outputs)


def layout_groups(model) -> dict[str, list[str]]:
    """``{layout: [tasks]}``: the tasks each graph serves, in the config's task order."""
    groups: dict[str, list[str]] = {}
    for task in model.config.tasks:
        groups.setdefault(model.task_head(task).layout, []).append(task)
    return groups


def dual_riders(model, groups: dict[str, list[str]]) -> list[str]:
    """The ``joined`` and ``pair`` tasks that the ``dual`` graph answers too, so that asking for them together with
    a dual task (QQP ``concat_sep`` beside STS ``dual``) runs one graph, not two encoding the joined pair twice.

    A dual head reads the joined pair (tokenized as ``concat_sep`` tokenizes it) and each sentence alone (as a
    ``pair`` head does); a task rides along when it shares the dual tasks' encoder and, for a joined pair, their
    use of segment ids (else its pass would differ). Its own graph stays, for requests without a dual task."""
    duals = groups.get("dual", [])
    if not duals:
        return []
    encoders = model.task_encoders()
    segments = {model.config.tasks[task]["use_token_type_ids"] for task in duals}
    riders = []
    for layout in ("joined", "pair"):
        for task in groups.get(layout, []):
            same_encoder = all(encoders[task] is encoders[dual] for dual in duals)
            same_segments = layout == "pair" or segments == {model.config.tasks[task]["use_token_type_ids"]}
            if same_encoder and same_segments:
                riders.append(task)
    return riders


def _sample_rows(model, tasks, layout, tokenizer, max_length, which: int) -> dict[str, list[list[int]]]:
    """Token-id columns of sample batch ``which`` (0: tracing, 1: checking) in ``layout``."""
    spec = model.config.tasks[tasks[0]]
    texts = SAMPLE_TEXTS[which]
    pairs = SAMPLE_PAIRS[which] if model.task_head(tasks[0]).pair else None
    if layout == "tokens":  # a token task reads sentences split into words
        texts = [text.split() for text in texts]  # type: ignore[misc]
    if tokenizer is not None:
        from ..models.mtbert.heads_mtbert import encode_texts

        return encode_texts(tokenizer, spec, list(texts), None if pairs is None else list(pairs), max_length)
    if layout not in LAYOUT_COLUMNS:
        raise MultitaskConfigError(f"exporting layout {layout!r} needs the model's tokenizer: pass tokenizer=...")
    vocab = int(model.get_input_embeddings().num_embeddings)
    rng = np.random.default_rng(which)
    lengths = [[5, 9, 7], [4, 12, 6, 11, 8]][which]  # random ids, rows of several lengths (padding in the batch)
    rows = {
        column: [[int(x) for x in rng.integers(1, max(2, vocab), size=min(n + offset, max_length))] for n in lengths]
        for offset, column in enumerate(LAYOUT_COLUMNS[layout])
    }
    if "token_type_ids" in rows:  # segments of the joined pair: 0 then 1
        rows["token_type_ids"] = [[int(i >= len(r) // 2) for i in range(len(r))] for r in rows["input_ids"]]
    return rows


def _sample_batch(model, tasks, layout, tokenizer, max_length, pad_token_id, which: int) -> dict[str, torch.Tensor]:
    rows = _sample_rows(model, tasks, layout, tokenizer, max_length, which)
    batch = collate(rows, pad_token_id)
    if not any(model.config.tasks[t]["use_token_type_ids"] for t in tasks):
        batch.pop("token_type_ids", None)  # no task of this graph reads segments: not an input
    unknown = sorted(set(batch) - set(GRAPH_INPUTS))
    if unknown:
        raise MultitaskConfigError(f"layout {layout!r}: model inputs {unknown} cannot be exported")
    return {name: torch.as_tensor(batch[name]) for name in GRAPH_INPUTS if name in batch}


def _dynamic_shapes(batch: dict[str, torch.Tensor], max_positions: int) -> dict[str, dict[int, Any]]:
    """Dynamic batch and length(s): ``(batch, length)``, ``(batch, 2, pair_length)`` for pairs read separately
    (``length`` when the graph has no other sequence)."""
    dim = torch.export.Dim
    batch_dim = dim("batch")
    length = dim("length", max=max_positions)
    pair_length = dim("pair_length", max=max_positions) if "pair_input_ids" in batch else length
    shapes = {}
    for name, tensor in batch.items():
        if tensor.dim() == 3:
            shapes[name] = {0: batch_dim, 2: pair_length if name.startswith("pair_") else length}
        else:
            shapes[name] = {0: batch_dim, 1: length}
    return shapes


# ---------------------------------------------------------------------------------------------------------------
# ONNX and OpenVINO
# ---------------------------------------------------------------------------------------------------------------


def _require(module: str, extra: str):
    try:
        return __import__(module)
    except ImportError:
        raise MultitaskConfigError(
            f'this needs the {module!r} package: pip install -e ".[{extra}]" (or pip install {module})'
        ) from None


def _onnx_graph(graph: LayoutGraph, batch: dict[str, torch.Tensor], max_positions: int, opset: int | None):
    """The layout's graph as an ONNX ``ModelProto`` (weights inline), constants and repeated passes folded."""
    _require("onnxscript", "onnx")
    import onnx_ir as ir
    from onnx_ir.passes import common as passes

    # onnx_ir logs a line per merged constant (the exporter runs these passes too); the exporter's registry warns
    # that torchvision's operators are skipped when torchvision is not installed
    quiet = {name: logging.getLogger(name) for name in ("onnx_ir", "torch.onnx")}
    levels = {name: log.level for name, log in quiet.items()}
    for log in quiet.values():
        log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*axis name.*will not be used")
            warnings.filterwarnings("ignore", category=FutureWarning)
            # optimize=False: the exporter's optimizer folds each use of a weight into its own transposed copy (the
            # files would hold the encoder up to twice); ONNX Runtime and OpenVINO fold and fuse when they load.
            program = torch.onnx.export(
                graph, (), kwargs=batch, input_names=list(batch), output_names=graph.output_names(),
                dynamic_shapes=_dynamic_shapes(batch, max_positions), opset_version=opset, dynamo=True,
                optimize=False, verbose=False,
            )  # fmt: skip
        # Merge equal constants, then the encoder passes that became identical (a shared encoder read by several
        # tasks of one layout runs once). The passes read the weights as plain arrays: those of a proto (the
        # exporter's may be views of torch tensors).
        assert program is not None, "torch.onnx.export returned no program"
        model = ir.serde.deserialize_model(ir.serde.serialize_model(program.model))
        del program
        for step in (
            passes.DeduplicateHashedInitializersPass(),
            passes.CommonSubexpressionEliminationPass(),
            passes.RemoveUnusedNodesPass(),
        ):
            model = step(model).model
    finally:
        for name, log in quiet.items():
            log.setLevel(levels[name])
    return ir.serde.serialize_model(model)


def _opset(proto) -> int | None:
    return next((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)


def _save_onnx_graphs(protos: dict[str, Any], folder: str) -> None:
    """``<name>.onnx`` for each graph, their weights stored once in ``weights.bin`` (external data)."""
    import onnx
    from onnx.external_data_helper import set_external_data

    stored: dict[bytes, tuple[int, int]] = {}
    with open(os.path.join(folder, WEIGHTS_FILE), "wb") as weights:
        for name, proto in protos.items():
            for tensor in proto.graph.initializer:
                data = tensor.raw_data
                if len(data) < INLINE_BELOW:
                    continue
                key = hashlib.sha256(data).digest()
                if key not in stored:
                    align = 4096 if len(data) >= 65536 else 64
                    weights.write(b"\0" * (-weights.tell() % align))
                    stored[key] = (weights.tell(), len(data))
                    weights.write(data)
                offset, length = stored[key]
                set_external_data(tensor, location=WEIGHTS_FILE, offset=offset, length=length)
                tensor.data_location = onnx.TensorProto.EXTERNAL
                tensor.ClearField("raw_data")
            onnx.save_model(proto, os.path.join(folder, f"{name}.onnx"))


def _convert_openvino(onnx_file: str, xml_file: str) -> None:
    """An ONNX graph as float32 OpenVINO IR. Read by OpenVINO's ONNX frontend (``Core.read_model``), the one
    ``openvino.convert_model`` uses: ``convert_model`` also sends usage telemetry unless the user opted out (and
    waits on the network for it); the offline transformations it adds, ``compile_model`` applies when it loads."""
    ov = _require("openvino", "openvino")
    ov.save_model(ov.Core().read_model(onnx_file), xml_file, compress_to_fp16=False)


# ---------------------------------------------------------------------------------------------------------------
# Static (calibrated) int8
# ---------------------------------------------------------------------------------------------------------------


def _training_rows(model, task: str, calibration, data_dir: str | None) -> tuple[list[str], list[str] | None]:
    """``(texts, text_pairs)`` of a task's calibration rows: ``calibration[task]``, else its minBERT train file."""
    if calibration is not None:
        if task not in calibration:
            return [], None
        rows = calibration[task]
    else:
        from ..data.sources import load_task_splits

        rows = load_task_splits(task, model.config.tasks[task], "minbert", data_dir, splits=("train",))["train"]
    texts = list(rows["text"])
    pairs = list(rows["text_pair"]) if model.task_head(task).pair else None
    return texts, pairs


def calibration_feeds(model, tokenizer, groups, graphs, max_length, pad_token_id, calibration, rows, data_dir):
    """``{layout: [graph inputs of one row]}``: ``rows`` training rows per graph (drawn with a fixed seed, shared
    among the graph's tasks), tokenized as the graph's tasks tokenize them, one row per calibration sample (no
    padding in the statistics)."""
    from ..models.mtbert.heads_mtbert import encode_texts

    if tokenizer is None:
        raise MultitaskConfigError("int8='static' calibrates on text: export with the model's tokenizer")
    rng = np.random.default_rng(0)
    feeds: dict[str, list[dict[str, np.ndarray]]] = {}
    for layout, tasks in groups.items():
        texts, pairs = [], []
        share = -(-int(rows) // len(tasks))
        for task in tasks:
            task_texts, task_pairs = _training_rows(model, task, calibration, data_dir)
            picked = rng.permutation(len(task_texts))[:share]
            texts += [task_texts[i] for i in picked]
            pairs += [task_pairs[i] for i in picked] if task_pairs is not None else []
        if not texts:
            raise MultitaskConfigError(f"no calibration rows for the tasks {', '.join(tasks)} (layout {layout!r})")
        texts, pairs = texts[: int(rows)], (pairs[: int(rows)] if pairs else None)
        if layout == "tokens":
            texts = [text.split() for text in texts]
        spec = model.config.tasks[tasks[0]]
        encoded = encode_texts(tokenizer, spec, texts, pairs, max_length)
        names = graphs[layout]["inputs"]
        feeds[layout] = []
        for i in range(len(texts)):
            batch = collate({key: [values[i]] for key, values in encoded.items()}, pad_token_id)
            feeds[layout].append({name: batch[name] for name in names})
    return feeds


def _scopes(node) -> list[str]:
    """The module paths the exporter recorded for a node, outermost first (``[]`` when it recorded none)."""
    value = next((e.value for e in node.metadata_props if e.key == "pkg.torch.onnx.name_scopes"), "")
    try:
        scopes = ast.literal_eval(value) if value else []
    except (ValueError, SyntaxError):
        return [value]
    return [str(scope) for scope in scopes] if isinstance(scopes, (list, tuple)) else [str(scopes)]


def _float_nodes(proto, keep: str = "heads+ffn_output") -> list[str]:
    """The names of the nodes static int8 leaves in float32: those outside the encoder (heads, pooling), and with
    ``keep="heads+ffn_output"`` every node of a layer's FFN down projection (:data:`FFN_OUTPUT_SCOPES`: its matmul,
    bias and residual add)."""

    def float_node(scopes: list[str]) -> bool:
        outside_encoder = not any("encoder" in scope for scope in scopes)
        ffn_output = keep == "heads+ffn_output" and any(FFN_OUTPUT_SCOPES.search(scope) for scope in scopes)
        return outside_encoder or ffn_output

    return [node.name for node in proto.graph.node if float_node(_scopes(node))]


def _fold_weight_transposes(proto):
    """The graph with each ``Transpose`` of a weight replaced by the transposed weight: the exporter writes a linear
    layer as ``MatMul(x, Transpose(W))``, which ONNX Runtime's quantizer would take for an activation (quantized
    per tensor, at every run) instead of a weight (int8 once, per channel)."""
    from onnx import numpy_helper

    weights = {tensor.name: tensor for tensor in proto.graph.initializer}
    for node in list(proto.graph.node):
        if node.op_type != "Transpose" or node.input[0] not in weights:
            continue
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        array = np.transpose(numpy_helper.to_array(weights[node.input[0]]), perm)
        proto.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(array), node.output[0]))
        proto.graph.node.remove(node)
    used = {name for node in proto.graph.node for name in node.input} | {o.name for o in proto.graph.output}
    for tensor in [t for t in proto.graph.initializer if t.name not in used]:
        proto.graph.initializer.remove(tensor)
    return proto


def _quantize_openvino(onnx_file: str, xml_file: str, feeds: list[dict], keep_float: list[str]) -> None:
    """NNCF post-training quantization of the IR: the transformer preset (softmax, layer norms... stay float), the
    heads ignored, statistics from the calibration rows."""
    ov = _require("openvino", "openvino")
    nncf = _require("nncf", "openvino")
    log = logging.getLogger("nncf")  # a line per operation it leaves unquantized
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantized = nncf.quantize(
                ov.Core().read_model(onnx_file), nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER,
                subset_size=len(feeds), ignored_scope=nncf.IgnoredScope(names=keep_float, validate=False),
            )  # fmt: skip
    finally:
        log.setLevel(level)
    ov.save_model(quantized, xml_file, compress_to_fp16=False)


def _quantize_onnx(onnx_file: str, out_file: str, feeds: list[dict], keep_float: list[str]) -> None:
    """ONNX Runtime static quantization: QDQ, per-channel int8 weights, the heads excluded; one self-contained file
    (int8 weights are a quarter of the encoder's)."""
    _require("onnxruntime", "onnx")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.rows = iter(feeds)

        def get_next(self):
            return next(self.rows, None)

    quantize_static(
        onnx_file, out_file, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, nodes_to_exclude=keep_float,
        op_types_to_quantize=["MatMul", "Gemm"], extra_options={"ActivationSymmetric": True},
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# export_model
# ---------------------------------------------------------------------------------------------------------------


def _load(model_or_path, tokenizer):
    if isinstance(model_or_path, (str, os.PathLike)):
        from .loading import load_model_and_tokenizer

        model, loaded = load_model_and_tokenizer(os.fspath(model_or_path))
        return model, tokenizer if tokenizer is not None else loaded
    if not hasattr(model_or_path, "config") or not hasattr(model_or_path.config, "tasks"):
        raise MultitaskConfigError(
            f"export_model takes a MultitaskBertModel or a saved model folder, got {type(model_or_path).__name__}"
        )
    return model_or_path, tokenizer


def _prepared(model) -> Any:
    """The model as exported: float32 on the CPU, in eval mode (a copy when it was not already so)."""
    from ..models.mtbert.modeling_mtbert import quantized_linear_count

    if quantized_linear_count(model):
        raise MultitaskConfigError(
            "the model is int8-quantized (torch dynamic quantization), which does not export: export the float model"
        )
    if any(p.dtype != torch.float32 or p.device.type != "cpu" for p in model.parameters()):
        model = copy.deepcopy(model).to("cpu", torch.float32)
    return model


def default_max_length(model, tokenizer) -> int:
    """``config.max_seq_length`` when recorded, else the smaller of the encoder's and the tokenizer's limits (the
    pipeline's rule)."""
    recorded = getattr(model.config, "max_seq_length", None)
    if recorded:
        return int(recorded)
    limits = [model.config.max_positions]
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < 100_000:
        limits.append(tokenizer_limit)
    return min(limits)


def _task_entry(model, task: str, layout: str, graph_name: str) -> dict[str, Any]:
    from ..models.mtbert.heads_mtbert import head_name

    spec = model.config.tasks[task]
    head = model.task_head(task)
    objective = type(head.objective).__name__
    return {
        "graph": graph_name,
        "layout": layout,
        "logits": f"{task}_logits",
        "embeddings": f"{task}_embeddings",
        "kind": spec["kind"],
        "head": head_name(spec),
        "objective": OBJECTIVES.get(objective, objective.lower()),
        "num_labels": spec["num_labels"],
        "label_names": spec["label_names"],
        "score_range": spec["score_range"],
        "cosine_threshold": spec["cosine_threshold"],
        "pooling": spec["pooling"],
        "use_token_type_ids": spec["use_token_type_ids"],
    }


def _check_out_dir(out_dir: str, overwrite: bool) -> list[str]:
    """The entries of an earlier export in ``out_dir`` (replaced when ``overwrite``); refuses other folders."""
    if os.path.isfile(out_dir):
        raise MultitaskConfigError(f"output folder {out_dir!r} is a file")
    entries = sorted(os.listdir(out_dir)) if os.path.isdir(out_dir) else []
    if entries and not overwrite:
        raise MultitaskConfigError(
            f"output folder {out_dir!r} is not empty: choose another or pass overwrite=True (--overwrite)"
        )
    return entries


def export_model(
    model_or_path,
    out_dir: str | os.PathLike,
    format: str = "onnx",
    tokenizer=None,
    max_length: int | None = None,
    opset: int | None = None,
    verify: bool = True,
    atol: float = 1e-4,
    overwrite: bool = False,
    int8: str | None = None,
    calibration: dict[str, Any] | None = None,
    calibration_rows: int = CALIBRATION_ROWS,
    data_dir: str | None = None,
    int8_float: str = "heads+ffn_output",
) -> dict[str, Any]:
    """Export a multitask BERT (a ``MultitaskBertModel`` or a saved model folder) for ONNX Runtime / OpenVINO.

    Writes into ``out_dir`` one graph per input layout (the module docstring has the inputs and outputs), the
    tokenizer (``tokenizer=``, or the one saved beside a model folder), ``mtbert_export.json`` and
    ``runtime_mtbert.py``; all of them or nothing (a staging folder is moved into place at the end). A non-empty
    ``out_dir`` is refused unless ``overwrite=True``.

    - ``format``: ``"onnx"`` (``<layout>.onnx`` + one shared ``weights.bin``) or ``"openvino"`` (float32 IR,
      ``<layout>.xml`` + ``.bin``).
    - ``max_length``: the truncation that ``ExportedModel`` applies to text (default: ``config.max_seq_length``
      when recorded, else the encoder's and tokenizer's limits); the graphs take any length up to the encoder's.
    - ``opset``: the ONNX opset (default: the exporter's).
    - ``verify``: run each saved graph with its runtime on a batch of another size and length than the traced one
      and compare every output with torch; a difference above ``atol`` raises :class:`MultitaskConfigError`. The
      differences are recorded under ``verified`` in the manifest.

    - ``int8="static"``: calibrated int8 (see :func:`quantize_static_graphs`): ``calibration`` is ``{task: rows}``
      (a ``datasets.Dataset`` or a dict with ``text`` and, for pairs, ``text_pair`` lists: training rows), else the
      minBERT training files in ``data_dir``; ``calibration_rows`` rows per graph. ``verify`` then records the
      differences from torch without refusing them (int8 moves logits by more than ``atol``). ``int8_float``: what
      stays float32 (:data:`INT8_FLOAT_CHOICES`): ``"heads+ffn_output"`` (default: the heads, pooling and every
      layer's FFN down projection, the setting that kept every dev metric within 0.005 of float32 in
      docs/performance.md) or ``"heads"`` (more int8, faster, less accurate).

    Returns the manifest (a dict). The model itself is left as it was (exported in eval mode, float32, on the CPU:
    a copy when it was not). Without a tokenizer the export runs on token ids only (``ExportedModel.run``).
    """
    if format not in EXPORT_FORMATS:
        raise MultitaskConfigError(f"format: {format!r} is not one of {', '.join(EXPORT_FORMATS)}")
    if int8 is not None and int8 not in INT8_MODES:
        raise MultitaskConfigError(f"int8: {int8!r} is not one of {', '.join(INT8_MODES)} (or None: float32)")
    if int8_float not in INT8_FLOAT_CHOICES:
        raise MultitaskConfigError(f"int8_float: {int8_float!r} is not one of {', '.join(INT8_FLOAT_CHOICES)}")
    if int8 is not None and calibration is None and data_dir is None:
        raise MultitaskConfigError("int8='static' calibrates on training rows: pass data_dir=... (or calibration=)")
    if int8 is not None and (isinstance(calibration_rows, bool) or int(calibration_rows) < 1):
        raise MultitaskConfigError(f"calibration_rows must be >= 1, got {calibration_rows!r}")
    out_dir = os.fspath(out_dir)
    earlier = _check_out_dir(out_dir, overwrite)
    _require("onnx", "onnx" if format == "onnx" else "openvino")
    if int8 is not None:
        _require("nncf" if format == "openvino" else "onnxruntime", format)
    if format == "openvino":
        _require("openvino", "openvino")
    model, tokenizer = _load(model_or_path, tokenizer)
    model = _prepared(model)
    if tokenizer is not None and len(tokenizer) > model.get_input_embeddings().num_embeddings:
        raise MultitaskConfigError(
            f"the tokenizer has {len(tokenizer)} tokens but the model's embeddings only "
            f"{model.get_input_embeddings().num_embeddings}: pass the model's own tokenizer"
        )
    max_length = int(max_length or default_max_length(model, tokenizer))
    if not 4 <= max_length <= model.config.max_positions:
        raise MultitaskConfigError(
            f"max_length {max_length}: the model reads 4 to {model.config.max_positions} tokens"
        )
    pad_token_id = (
        int(getattr(tokenizer, "pad_token_id", None) or 0)
        if tokenizer is not None
        else int(model.config.encoder.get("pad_token_id") or 0)
    )
    groups = layout_groups(model)
    was_training = model.training
    model.eval()
    staging = fresh_staging_dir(out_dir)
    try:
        protos, graphs, tasks, checks = {}, {}, {}, {}
        riders = {"dual": dual_riders(model, groups)} if "dual" in groups else {}
        with torch.no_grad():
            for layout, names in groups.items():
                graph = LayoutGraph(model, names, riders.get(layout, ())).eval()
                trace = _sample_batch(model, names, layout, tokenizer, max_length, pad_token_id, 0)
                check = _sample_batch(model, names, layout, tokenizer, max_length, pad_token_id, 1)
                logger.info("exporting graph %r (tasks %s)", layout, ", ".join(names))
                protos[layout] = _onnx_graph(graph, trace, model.config.max_positions, opset)
                expected = dict(zip(graph.output_names(), (t.numpy() for t in graph(**check))))
                checks[layout] = ({k: v.numpy() for k, v in check.items()}, expected)
                suffix = ".onnx" if format == "onnx" else ".xml"
                graphs[layout] = {
                    "file": f"{layout}{suffix}",
                    "inputs": list(trace),
                    "tasks": names,
                    "outputs": graph.output_names(),
                }
                if riders.get(layout):
                    graphs[layout]["riders"] = list(riders[layout])
                for task in names:
                    tasks[task] = _task_entry(model, task, layout, layout)
        feeds: dict[str, list[dict[str, np.ndarray]]] = {}
        if int8 is not None:
            feeds = calibration_feeds(
                model, tokenizer, groups, graphs, max_length, pad_token_id, calibration, calibration_rows, data_dir
            )
        keep_float = {layout: _float_nodes(proto, int8_float) for layout, proto in protos.items()}
        if format == "onnx" and int8 is not None:
            protos = {layout: _fold_weight_transposes(proto) for layout, proto in protos.items()}
        if format == "onnx" and int8 is None:
            _save_onnx_graphs(protos, staging)
        else:
            with tempfile.TemporaryDirectory(dir=staging) as scratch:
                _save_onnx_graphs(protos, scratch)
                for layout in protos:
                    source = os.path.join(scratch, f"{layout}.onnx")
                    if format == "onnx":
                        _quantize_onnx(
                            source, os.path.join(staging, f"{layout}.onnx"), feeds[layout], keep_float[layout]
                        )
                    elif int8 is None:
                        _convert_openvino(source, os.path.join(staging, f"{layout}.xml"))
                    else:
                        _quantize_openvino(
                            source, os.path.join(staging, f"{layout}.xml"), feeds[layout], keep_float[layout]
                        )
        tokenizer_file = None
        truncation_side = "right"
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
            tokenizer_file = "tokenizer.json" if os.path.isfile(os.path.join(staging, "tokenizer.json")) else None
            truncation_side = getattr(tokenizer, "truncation_side", "right") or "right"
            if tokenizer_file is None:
                logger.warning(
                    "the tokenizer has no tokenizer.json (not a fast tokenizer): ExportedModel will take "
                    "token ids only"
                )
        else:
            logger.warning("no tokenizer: the export runs on token ids (ExportedModel.run), not on text")
        manifest = {
            "format": format,
            "graphs": graphs,
            "tasks": tasks,
            "default_task": model.config.resolved_default_task(),
            "max_length": max_length,
            "pad_token_id": pad_token_id,
            "tokenizer_file": tokenizer_file,
            "truncation_side": truncation_side,
            "hidden_size": model.config.hidden_size,
            "encoder_model_type": model.config.encoder.get("model_type"),
            "shared_encoder": model.config.shared_encoder,
            "int8": None
            if int8 is None
            else {
                "mode": int8,
                "tool": "nncf" if format == "openvino" else "onnxruntime.quantization",
                "calibration_rows": {layout: len(rows) for layout, rows in feeds.items()},
                "kept_float": int8_float,
            },
            "exported_with": {"torch": torch.__version__, "opset": _opset(next(iter(protos.values())))},
        }
        _write_manifest(staging, manifest)
        shutil.copyfile(runtime_mtbert.__file__, os.path.join(staging, RUNTIME_FILE))
        if verify:
            manifest["verified"] = _verify(staging, checks, atol if int8 is None else float("inf"))
            _write_manifest(staging, manifest)
    except BaseException:
        discard(staging)
        raise
    finally:
        model.train(was_training)
    publish(staging, out_dir, replace=earlier)
    logger.info("exported %d task(s) in %d %s graph(s) to %s", len(tasks), len(graphs), format, out_dir)
    return manifest


def _write_manifest(folder: str, manifest: dict[str, Any]) -> None:
    with open(os.path.join(folder, MANIFEST_NAME), "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2)
        handle.write("\n")


def _verify(folder: str, checks: dict[str, tuple[dict, dict]], atol: float) -> dict[str, Any]:
    """Run each saved graph with the format's runtime and compare its outputs with torch's."""
    try:
        exported = ExportedModel(folder)
        differences: dict[str, float] = {}
        for layout, (inputs, expected) in checks.items():
            got = exported.run_graph(layout, **inputs)
            for name, value in expected.items():
                difference = float(np.abs(got[name].astype(np.float64) - value).max()) if value.size else 0.0
                differences[name] = max(difference, differences.get(name, 0.0))  # a rider: in two graphs
    except ImportError as error:
        logger.warning("not verified: %s", error)
        return {"backend": None, "reason": str(error)}
    worst = max(differences, key=lambda name: differences[name])
    if differences[worst] > atol:
        raise MultitaskConfigError(
            f"the exported {worst} differs from torch by {differences[worst]:.3g} (> atol {atol:g}); pass "
            "verify=False (--no_verify) to keep such an export"
        )
    logger.info("verified with %s: largest difference %.3g (%s)", exported.backend, differences[worst], worst)
    return {"backend": exported.backend, "atol": atol, "max_abs_diff": differences}


# ---------------------------------------------------------------------------------------------------------------
# The encoder as a SentenceTransformer
# ---------------------------------------------------------------------------------------------------------------


def sentence_embedding_pooling(model, task: str | None = None) -> tuple[str, str]:
    """``(task, pooling)`` of the sentence embeddings :func:`save_sentence_transformer` writes for ``task``
    (default: the config's default task, else any task when they all pool alike). A ``dual`` head's own sentence
    embeddings are MEAN-pooled (its cosine view), whatever its ``pooling`` (which its cross-encoder view uses)."""

    def pooling_of(name: str) -> str:
        return "mean" if model.task_head(name).layout == "dual" else model.config.tasks[name]["pooling"]

    if task is None:
        task = model.config.resolved_default_task()
    if task is None:
        poolings = {pooling_of(name) for name in model.config.tasks}
        if len(poolings) > 1 or not model.config.shared_encoder:
            choice = ", ".join(f"{name} ({pooling_of(name)})" for name in model.config.tasks)
            raise MultitaskConfigError(
                f"pass task=... to choose the sentence embeddings (pooling, and encoder when each task has its own): "
                f"{choice}"
            )
        task = next(iter(model.config.tasks))
    if task not in model.config.tasks:
        raise MultitaskConfigError(f"unknown task {task!r}; this model has {', '.join(model.config.tasks)}")
    return task, pooling_of(task)


def _st_modules():
    try:
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    except ImportError:
        try:
            from sentence_transformers.models import Normalize, Pooling, Transformer  # sentence-transformers < 5.4
        except ImportError:
            raise MultitaskConfigError(
                'this needs sentence-transformers: pip install -e ".[sentence-transformers]"'
            ) from None
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer, Transformer, Pooling, Normalize


def save_sentence_transformer(
    model,
    tokenizer,
    out_dir: str | os.PathLike,
    task: str | None = None,
    normalize: bool = False,
    max_seq_length: int | None = None,
    overwrite: bool = False,
) -> str:
    """Write the encoder of ``task`` as a sentence-transformers model: ``SentenceTransformer(out_dir)`` (offline)
    then encodes a sentence exactly as the task pools it (to ~1e-6).

    The folder holds ``modules.json``, the Transformer module (the encoder's ``config.json`` and
    ``model.safetensors``, the tokenizer, ``sentence_bert_config.json`` with ``max_seq_length``) and
    ``1_Pooling/config.json``: CLS or MEAN pooling, the task's (a ``dual`` head's sentence embeddings are its
    MEAN-pooled cosine view); ``task=None`` takes the default task, or any when every task pools alike.

    No ``Normalize`` module by default: the heads read the pooled vectors as they are (a classifier on ``[u; v]``),
    so the saved model's embeddings *are* mtbert's, and for the cosine similarity that sentence-transformers uses by
    default (``similarity_fn_name`` is set to ``"cosine"``) unit length changes nothing. ``normalize=True`` adds
    one (unit vectors, for a vector store that ranks by dot product); the embeddings are then the task's divided by
    their norm.

    A task whose head reads the pair joined into one sequence (``concat_sep``, ``concat_nosep``: a cross-encoder)
    was never trained to embed one sentence; saving it works but logs a warning. ``max_seq_length``: the
    truncation (default: ``config.max_seq_length`` when recorded, else the encoder's and tokenizer's limits).
    """
    SentenceTransformer, Transformer, Pooling, Normalize = _st_modules()
    if isinstance(model, (str, os.PathLike)):
        from .loading import load_model_and_tokenizer

        model, loaded = load_model_and_tokenizer(os.fspath(model))
        tokenizer = tokenizer if tokenizer is not None else loaded
    if tokenizer is None:
        raise MultitaskConfigError("save_sentence_transformer needs the model's tokenizer")
    task, pooling = sentence_embedding_pooling(model, task)
    if model.task_head(task).layout in ("joined", "joined_nosep"):
        logger.warning(
            "task %r reads a pair joined into one sequence (a cross-encoder): its encoder was not trained "
            "to embed single sentences",
            task,
        )
    out_dir = os.fspath(out_dir)
    earlier = _check_out_dir(out_dir, overwrite)
    model = _prepared(model)
    encoder = model.task_encoders()[task]
    max_seq_length = int(max_seq_length or default_max_length(model, tokenizer))
    staging = fresh_staging_dir(out_dir)
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # the load report would list the pooler below as MISSING
    hf_logging.disable_progress_bar()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            encoder.save_pretrained(scratch)
            tokenizer.save_pretrained(scratch)
            transformer = Transformer(scratch, max_seq_length=max_seq_length)
            # mtbert's encoders have no pooler layer; AutoModel builds one (unused by the sentence embeddings):
            # zeros, saved, so the folder loads without a "newly initialized" report and is the same every time
            pooler = getattr(getattr(transformer, "auto_model", None), "pooler", None)
            if isinstance(pooler, nn.Module):
                with torch.no_grad():
                    for parameter in pooler.parameters():
                        parameter.zero_()
            modules = [transformer, Pooling(model.config.hidden_size, pooling_mode=pooling)]
            if normalize:
                modules.append(Normalize())
            st_model = SentenceTransformer(modules=modules, similarity_fn_name="cosine", device="cpu")
            st_model.save(staging)
    except BaseException:
        discard(staging)
        raise
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    publish(staging, out_dir, replace=earlier)
    logger.info("saved the %s-pooled encoder of task %r as a SentenceTransformer in %s", pooling, task, out_dir)
    return out_dir


# ---------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtbert-export",
        description="Export a saved multitask BERT for serving: ONNX or OpenVINO graphs (one output per task), or "
        "one task's encoder and pooling as a SentenceTransformer folder.",
    )
    parser.add_argument("model", help="a saved mtbert model folder (with its tokenizer)")
    parser.add_argument("out_dir", help="the folder to write (must be empty unless --overwrite)")
    parser.add_argument("--format", choices=CLI_FORMATS, default="onnx")
    parser.add_argument("--max_length", type=int, default=None, help="truncation of text (default: as trained)")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    parser.add_argument("--no_verify", action="store_true", help="skip the check against torch after export")
    parser.add_argument("--task", default=None, help="sentence-transformers: whose encoder and pooling")
    parser.add_argument("--normalize", action="store_true", help="sentence-transformers: add a Normalize module")
    parser.add_argument("--overwrite", action="store_true", help="replace what out_dir holds")
    parser.add_argument(
        "--int8", choices=INT8_MODES, default=None,
        help="static: calibrated int8 (NNCF for openvino, ONNX Runtime quantize_static for onnx); see --int8_float",
    )  # fmt: skip
    parser.add_argument("--calibration_rows", type=int, default=CALIBRATION_ROWS, help="--int8: rows per graph")
    parser.add_argument(
        "--int8_float", choices=INT8_FLOAT_CHOICES, default="heads+ffn_output",
        help="--int8: what stays float32 (default: the heads and every FFN down projection, which keeps accuracy)",
    )  # fmt: skip
    parser.add_argument("--data_dir", default=None, help="--int8: the minBERT data folder (its train files)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        if args.format == "sentence-transformers":
            save_sentence_transformer(
                args.model, None, args.out_dir, task=args.task, normalize=args.normalize,
                max_seq_length=args.max_length, overwrite=args.overwrite,
            )  # fmt: skip
            print(f"saved a SentenceTransformer in {args.out_dir}")
            return 0
        manifest = export_model(
            args.model, args.out_dir, format=args.format, max_length=args.max_length, opset=args.opset,
            verify=not args.no_verify, overwrite=args.overwrite, int8=args.int8, data_dir=args.data_dir,
            calibration_rows=args.calibration_rows, int8_float=args.int8_float,
        )  # fmt: skip
    except (MultitaskConfigError, ExportError) as error:
        print(f"mtbert-export: error: {error}", file=sys.stderr)
        return 2
    for _name, graph in manifest["graphs"].items():
        print(f"{graph['file']}: inputs {', '.join(graph['inputs'])}; tasks {', '.join(graph['tasks'])}")
    verified = manifest.get("verified") or {}
    if verified.get("max_abs_diff") and args.int8:
        worst = max(verified["max_abs_diff"].values())
        print(f"int8 {args.int8}: largest difference from torch fp32 {worst:.2g} (score the dev sets)")
    elif verified.get("max_abs_diff"):
        worst = max(verified["max_abs_diff"].values())
        print(f"verified with {verified['backend']}: largest difference from torch {worst:.2g}")
    return 0


__all__ = [
    "EXPORT_FORMATS",
    "INT8_FLOAT_CHOICES",
    "INT8_MODES",
    "ExportError",
    "ExportedModel",
    "LayoutGraph",
    "calibration_feeds",
    "default_max_length",
    "export_model",
    "layout_groups",
    "main",
    "save_sentence_transformer",
    "sentence_embedding_pooling",
]  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
