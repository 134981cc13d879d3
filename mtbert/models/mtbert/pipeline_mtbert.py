"""A ``transformers`` pipeline that runs any task of a multitask BERT: ``pipe("a fine film", task="sst")``.

This file is remote code: it is copied next to every saved checkpoint (``config.json`` names it under
``custom_pipelines``), so ``pipeline(model=<repo or folder>, trust_remote_code=True)`` works without mtbert
installed. It imports only torch, transformers and its sibling ``configuration_mtbert``.

Inputs: one string, a ``{"text": ..., "text_pair": ...}`` dict (pair tasks), or a list of either. Outputs are
shaped as the stock ``text-classification`` pipeline shapes them (``[{"label", "score"}]`` for a string, one
``{"label", "score"}`` per input of a list, ``top_k``, ``function_to_apply``); a score task (STS) answers
``{"label": <task name>, "score": <score>}`` as a stock regression model does. See :class:`MultitaskTextPipeline`.
With mtbert installed and imported, ``pipeline(model=<folder or repo>)`` builds this class from the installed code
without ``trust_remote_code`` (``configuration_mtbert.LocalPipelines``). ``pipeline(..., quantize="int8")`` runs an
int8 dynamically quantized copy of the model on the CPU (``modeling_mtbert.quantize_int8``).

Several tasks in one call: ``pipe(pair, task=["qqp", "sts"])``, or ``task="all"`` (every task that reads inputs of
that shape: a string → one-sentence and token tasks, a ``{"text", "text_pair"}`` dict → pair tasks), answer
``{task: what pipe(inputs, task=task) answers}`` per input, with one encoder pass per distinct input encoding
(``modeling_mtbert.EncoderPasses``: two ``concat_sep`` tasks share one, ``separate``/``cosine``/``dual`` heads the
per-sentence ones).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from transformers import Pipeline

from .heads_mtbert import encode_texts, head_class
from .kinds_mtbert import get_kind

PIPELINE_TASK = "multitask-text-bert"
#: ``aggregation_strategy`` values of a token task, as in transformers' ``token-classification`` pipeline
AGGREGATION_STRATEGIES = ("none", "simple", "first", "average", "max")
#: what a token task answers when no ``aggregation_strategy`` is given: entity groups
DEFAULT_AGGREGATION = "simple"

_NOT_GIVEN = object()
#: ``function_to_apply`` values, as in transformers' ``text-classification`` pipeline
FUNCTIONS = ("softmax", "sigmoid", "none")
#: ``task=`` for every task whose input fits the inputs (a model's own task of that name wins)
ALL_TASKS = "all"
#: call settings of sentence and pair tasks, and of token tasks (a call with several tasks gives each its own)
SENTENCE_SETTINGS = ("top_k", "function_to_apply", "return_all_scores")
TOKEN_SETTINGS = ("aggregation_strategy", "ignore_labels")


# ---------------------------------------------------------------------------------------------------------------
# Tokenization: the same token ids as mtbert.data.tokenize_batch (which remote code cannot import)
# ---------------------------------------------------------------------------------------------------------------


def collate_rows(rows: list[dict[str, list[int]]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad rows into model inputs exactly as mtbert's ``TaskCollator`` does (pairs → ``(batch, 2, length)``)."""

    def pad(seqs, value, length):
        out = torch.full((len(seqs), length), value, dtype=torch.long)
        for i, seq in enumerate(seqs):
            out[i, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        return out

    def pad_pair(keys):  # two sentences per row, one length: (batch, 2, length) ids and mask
        length = max(len(r[k]) for r in rows for k in keys)
        ids = [pad([r[k] for r in rows], pad_token_id, length) for k in keys]
        masks = [pad([[1] * len(r[k]) for r in rows], 0, length) for k in keys]
        return torch.stack(ids, dim=1), torch.stack(masks, dim=1)

    if "input_ids_b" in rows[0]:
        ids, mask = pad_pair(("input_ids", "input_ids_b"))
        return {"input_ids": ids, "attention_mask": mask}
    length = max(len(r["input_ids"]) for r in rows)
    batch = {
        "input_ids": pad([r["input_ids"] for r in rows], pad_token_id, length),
        "attention_mask": pad([[1] * len(r["input_ids"]) for r in rows], 0, length),
    }
    if "token_type_ids" in rows[0]:
        batch["token_type_ids"] = pad([r["token_type_ids"] for r in rows], 0, length)
    if "pair_input_ids_a" in rows[0]:  # a dual head's sentences on their own
        batch["pair_input_ids"], batch["pair_attention_mask"] = pad_pair(("pair_input_ids_a", "pair_input_ids_b"))
    return batch


# ---------------------------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------------------------


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def normalize_input(item: Any, task: str, spec: dict[str, Any], position: int | None = None) -> tuple[str, str | None]:
    """``(text, text_pair)`` for one input of ``task``, or a ``ValueError``/``TypeError`` that says what to pass."""
    where = "input" if position is None else f"input {position}"
    pair = head_class(spec).pair
    usage = (
        f"task {task!r} ({spec['kind']}) compares two sentences: pass {{'text': ..., 'text_pair': ...}}"
        if pair
        else f"task {task!r} ({spec['kind']}) reads one sentence: pass a string"
    )
    if item is None:
        raise ValueError(f"{where} is None; {usage}")
    if isinstance(item, str):
        text, text_pair = item, None
    elif isinstance(item, dict):
        unknown = sorted(set(item) - {"text", "text_pair"})
        if unknown:
            raise ValueError(f"{where} has unknown key(s) {', '.join(map(repr, unknown))}; {usage}")
        if "text" not in item:
            raise ValueError(f"{where} has no 'text'; {usage}")
        text, text_pair = item["text"], item.get("text_pair")
    else:
        raise TypeError(f"{where} is a {type(item).__name__} ({_describe(item)}); {usage}")
    for name, value in (("text", text), ("text_pair", text_pair)):
        if value is None:
            continue
        if not isinstance(value, str):
            raise TypeError(f"{where}: {name} must be a string, got {type(value).__name__} ({_describe(value)})")
        if not value.strip():
            raise ValueError(f"{where}: {name} is empty; {usage}")
    if text is None:
        raise ValueError(f"{where}: text is None; {usage}")
    if pair and text_pair is None:
        raise ValueError(f"{where} is a single sentence ({_describe(text)}), but {usage}")
    if not pair and text_pair is not None:
        raise ValueError(f"{where} has a text_pair, but {usage}")
    return text, text_pair


def input_shape(item: Any) -> str:
    """``pair`` for a ``{"text", "text_pair"}`` dict, else ``text`` (what ``task="all"`` picks tasks by)."""
    return "pair" if isinstance(item, dict) and item.get("text_pair") is not None else "text"


def row_of(outputs: dict[str, Any], row: int) -> dict[str, Any]:
    """One row of a batch's outputs, shaped as transformers' pipeline iterator hands a batched row to
    ``postprocess`` (tensors keep a batch dimension of one, lists give their item)."""
    return {key: value[row : row + 1] if torch.is_tensor(value) else value[row] for key, value in outputs.items()}


# ---------------------------------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------------------------------


class MultitaskTextPipeline(Pipeline):
    """Run one task of a multitask BERT on strings or sentence pairs, answering as ``text-classification`` does.

    Call it with ``task=`` (any of ``model.config.tasks``; optional when the config has a ``default_task`` or the
    model has one task), ``top_k=``, ``function_to_apply=``, ``max_length=`` (truncation; default
    ``config.max_seq_length`` when the checkpoint records it, else the encoder's position limit) and
    ``batch_size=``. Inputs are tokenized exactly as in training and padded like mtbert's collator.

    ``quantize="int8"`` (a construction argument: ``pipeline(model=..., quantize="int8")``; default ``None``, the
    float32 model as trained) quantizes a copy of the model's linear layers to int8 once, when the pipeline is built
    (``modeling_mtbert.quantize_int8``): CPU only, so the pipeline's device then defaults to the CPU and any other
    device is refused with a ``ValueError`` (``MultitaskConfigError``); bfloat16 weights (``dtype=``) are converted
    to float32 first. Scores move a little; see the README.

    Outputs have the stock ``text-classification`` pipeline's shapes, input for input:

    - a string → a one-item list ``[{"label", "score"}]``; a list (or tuple) of inputs → one ``{"label", "score"}``
      per input; a single pair ``{"text", "text_pair"}`` → one ``{"label", "score"}`` (not in a list: the stock
      pipeline answers a pair dict so too).
    - ``top_k=k``: a list of the ``k`` best ``{"label", "score"}``, best first, per input (a string or pair then
      gives that list, a list of inputs a list of them); ``top_k=None``: every label. ``return_all_scores=True`` is
      the deprecated spelling of ``top_k=None``.
    - classification tasks: ``label`` is the task's label name (``config.tasks[task]["label_names"]``), ``score``
      the probability of that label (``function_to_apply="softmax"``, the default), or ``"sigmoid"``/``"none"``
      applied to the head's logits. A two-label pair head has one logit ``z`` (the log-odds of the second label):
      ``"softmax"`` and ``"sigmoid"`` both give ``[1 - sigmoid(z), sigmoid(z)]``, ``"none"`` the log-odds
      ``[-z, z]``. A ``cosine`` paraphrase head answers the label and the cosine similarity itself (no ``top_k``,
      ``function_to_apply`` only ``"none"``).
    - score tasks (``pair_regression``/``sentence_regression``, e.g. STS): ``{"label": <task name>, "score":
      <predicted score in score_range>}``, as a stock regression model answers ``{"label": "LABEL_0", "score"}``;
      ``top_k`` gives that one entry in a list, ``function_to_apply`` may only be ``"none"``.

    ``task=["qqp", "sts"]`` or ``task="all"`` (the tasks whose input fits: strings → one-sentence and token tasks,
    pairs → pair tasks) answer ``{task: answer}`` per input, each answer what a call with that one task gives it;
    ``top_k``/``function_to_apply`` go to the sentence and pair tasks, ``aggregation_strategy``/``ignore_labels``
    to the token tasks. The tasks share the encoder's passes over inputs they tokenize alike.
    """

    # the model is a MultitaskBertModel and the tokenizer is always set (checked in __init__)
    model: Any
    tokenizer: Any
    _load_tokenizer = True  # type: ignore[assignment]
    _load_processor = False  # type: ignore[assignment]
    _load_image_processor = False  # type: ignore[assignment]
    _load_feature_extractor = False  # type: ignore[assignment]
    _load_video_processor = False  # type: ignore[assignment]

    def __init__(self, *args, quantize: str | None = None, **kwargs):
        # imported here: modeling_mtbert imports this module at its end (so that saving copies it)
        from .modeling_mtbert import quantize_int8, resolve_quantize

        self.quantize = resolve_quantize(quantize, kwargs.get("device"))  # refused before the model moves
        if self.quantize is not None and kwargs.get("device") is None:
            model = kwargs.get("model", args[0] if args else None)
            if getattr(model, "hf_device_map", None) is None:
                kwargs["device"] = "cpu"  # int8 kernels are CPU kernels: not the first GPU, the stock default
        super().__init__(*args, **kwargs)
        if self.tokenizer is None:
            raise ValueError(f"{type(self).__name__} needs a tokenizer (pass tokenizer=...)")
        if not hasattr(self.model.config, "tasks") or not hasattr(self.model, "postprocess"):
            raise ValueError(f"{type(self).__name__} runs multitask BERT models (model_type 'mtbert')")
        if self.quantize == "int8":
            self.model = quantize_int8(self.model, device=self.device)

    # -- parameters ------------------------------------------------------------------------------------------

    def _resolve_task(self, task: str | None) -> str:
        config = self.model.config
        tasks = config.tasks
        if task is None:
            default = getattr(config, "default_task", None)
            if default is None and len(tasks) == 1:
                default = next(iter(tasks))
            if default is not None:
                return default
            raise ValueError(
                f"pass task=..., one of {', '.join(tasks)} (this model has {len(tasks)} tasks and no default_task)"
            )
        if not isinstance(task, str) or task not in tasks:
            raise ValueError(f"unknown task {task!r}; this model has {', '.join(tasks)}")
        return task

    def _several(self, task: Any) -> bool:
        """Whether ``task`` names several tasks: a list (or tuple) of names, or ``"all"``."""
        if isinstance(task, (list, tuple)):
            return True
        return isinstance(task, str) and task == ALL_TASKS and ALL_TASKS not in self.model.config.tasks

    def _resolve_tasks(self, task: Any, items: list) -> tuple[str, ...]:
        """The tasks of ``task=[...]`` (each known, once) or of ``task="all"`` (those whose input fits ``items``)."""
        tasks = self.model.config.tasks
        if isinstance(task, (list, tuple)):
            if not task:
                raise ValueError(f"task=[] names no task; list some of {', '.join(tasks)}, or pass task='all'")
            for name in task:
                if not isinstance(name, str) or name not in tasks:
                    raise ValueError(
                        f"unknown task {name!r} in task={list(task)!r}; this model has {', '.join(tasks)}"
                    )
            repeated = sorted({name for name in task if list(task).count(name) > 1})
            if repeated:
                raise ValueError(f"task={list(task)!r} lists {', '.join(map(repr, repeated))} more than once")
            return tuple(task)
        shapes = {input_shape(item) for item in items if isinstance(item, (str, dict))} or {"text"}  # others: refused
        if len(shapes) > 1:
            raise ValueError(
                "task='all' picks the tasks that fit the inputs, and these mix single sentences and sentence pairs: "
                "call once per kind of input"
            )
        pair = shapes.pop() == "pair"
        fitting = tuple(name for name, spec in tasks.items() if head_class(spec).pair == pair)
        if not fitting:
            what = "sentence pairs" if pair else "one sentence"
            kinds = ", ".join(f"{name} ({spec['kind']})" for name, spec in tasks.items())
            raise ValueError(f"task='all': no task of this model reads {what}; it has {kinds}")
        return fitting

    def _sanitize_parameters(
        self, task=None, top_k=_NOT_GIVEN, function_to_apply=None, return_all_scores=None, max_length=None,
        aggregation_strategy=None, ignore_labels=None, **unknown,
    ):  # fmt: skip
        if "quantize" in unknown:
            raise TypeError(
                f"{type(self).__name__}: quantize is set once, when the pipeline is built "
                "(pipeline(model=..., quantize='int8')), not per call"
            )
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unknown argument(s) {', '.join(sorted(unknown))}; "
                "it takes task, top_k, function_to_apply, max_length, batch_size (token tasks: aggregation_strategy, "
                "ignore_labels)"
            )
        preprocess, forward, postprocess = {}, {}, {}
        if aggregation_strategy is not None:
            name = str(getattr(aggregation_strategy, "value", aggregation_strategy)).lower()
            if name not in AGGREGATION_STRATEGIES:
                raise ValueError(
                    f"aggregation_strategy must be one of {', '.join(AGGREGATION_STRATEGIES)}, got "
                    f"{aggregation_strategy!r}"
                )
            postprocess["aggregation_strategy"] = name
        if ignore_labels is not None:
            if isinstance(ignore_labels, str) or not all(isinstance(x, str) for x in ignore_labels):
                raise ValueError(f"ignore_labels must be a list of tag names, got {ignore_labels!r}")
            postprocess["ignore_labels"] = list(ignore_labels)
        if task is not None:
            task = self._resolve_task(task)
            preprocess["task"] = forward["task"] = postprocess["task"] = task
        if return_all_scores is not None:
            warnings.warn(
                "return_all_scores is deprecated (as in transformers' text-classification pipeline): use top_k=None "
                "for every label's score, or leave top_k out for the best one",
                FutureWarning,
                stacklevel=3,
            )
            if return_all_scores and top_k is _NOT_GIVEN:
                top_k = None
        if top_k is not _NOT_GIVEN:
            if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
                raise ValueError(f"top_k must be a positive integer or None (all labels), got {top_k!r}")
            postprocess["top_k"] = top_k
        if function_to_apply is not None:
            name = str(getattr(function_to_apply, "value", function_to_apply)).lower()
            if name not in FUNCTIONS:
                raise ValueError(f"function_to_apply must be one of {', '.join(FUNCTIONS)}, got {function_to_apply!r}")
            postprocess["function_to_apply"] = name
        if max_length is not None:
            if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 4:
                raise ValueError(f"max_length must be an integer >= 4, got {max_length!r}")
            limit = self.model.config.max_positions  # longer rows would index past the position embeddings
            if max_length > limit:
                raise ValueError(f"max_length {max_length} is more than the model can read ({limit} positions)")
            preprocess["max_length"] = max_length
        return preprocess, forward, postprocess

    def default_max_length(self) -> int:
        """``config.max_seq_length`` when recorded, else the smaller of the tokenizer's and the encoder's limits."""
        recorded = getattr(self.model.config, "max_seq_length", None)
        if recorded:
            return int(recorded)
        limits = [self.model.config.max_positions]
        tokenizer_limit = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < 100_000:
            limits.append(tokenizer_limit)
        return min(limits)

    # -- calling ---------------------------------------------------------------------------------------------

    def __call__(self, inputs, *args, **kwargs):
        """``inputs``: a string, a ``{"text", "text_pair"}`` dict, or a list (or tuple) of them; see the class
        docstring for what comes back."""
        size = kwargs.get("batch_size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValueError(f"batch_size must be a positive integer, got {size!r}")
        if isinstance(inputs, tuple):
            inputs = list(inputs)
        if isinstance(inputs, list) and not inputs:
            return []
        task = kwargs.get("task", self._preprocess_params.get("task"))
        if self._several(task):
            return self._call_tasks(inputs, dict(kwargs))
        task = self._resolve_task(task)
        spec = self.model.config.tasks[task]
        if isinstance(inputs, list):
            for position, item in enumerate(inputs):
                normalize_input(item, task, spec, position)
        elif isinstance(inputs, (str, dict)) or inputs is None:
            normalize_input(inputs, task, spec)
        tokens = get_kind(spec).target == "tags"
        token_settings = [k for k in ("aggregation_strategy", "ignore_labels") if k in kwargs]
        if token_settings and not tokens:
            raise ValueError(f"{', '.join(token_settings)}: only token tasks take it; task {task!r} is {spec['kind']}")
        if tokens:
            sentence_settings = [k for k in ("top_k", "function_to_apply", "return_all_scores") if k in kwargs]
            if sentence_settings:
                raise ValueError(
                    f"{', '.join(sentence_settings)}: task {task!r} tags words (token_classification); it takes "
                    "aggregation_strategy and ignore_labels instead"
                )
            kwargs["task"] = task
            return super().__call__(inputs, *args, **kwargs)
        ranked = "top_k" in kwargs or bool(kwargs.get("return_all_scores")) or "top_k" in self._postprocess_params
        if ranked:
            self._check_top_k(task, spec)
        function = kwargs.get("function_to_apply", self._postprocess_params.get("function_to_apply"))
        if function is not None:
            self._check_function(task, spec, str(getattr(function, "value", function)).lower())
        kwargs["task"] = task
        result = super().__call__(inputs, *args, **kwargs)
        if isinstance(inputs, str) and not ranked:  # as the stock pipeline: a string gets a one-item list
            return [result]
        return result

    def _call_tasks(self, inputs, kwargs: dict[str, Any]):
        """Several tasks over the same inputs: ``{task: answer}`` per input, in batches of ``batch_size`` inputs
        (as a one-task call batches them), every task's rows of a batch through :meth:`_forward_tasks` at once."""
        task = kwargs.pop("task", self._preprocess_params.get("task"))
        batch_size = kwargs.pop("batch_size", None) or self._batch_size or 1
        kwargs.pop("num_workers", None)  # a DataLoader setting: the inputs are a list here
        items = inputs if isinstance(inputs, list) else [inputs]
        tasks = self._resolve_tasks(task, items)
        specs = self.model.config.tasks
        for name in tasks:  # every input fits every task, before any work
            for position, item in enumerate(items):
                normalize_input(item, name, specs[name], position if isinstance(inputs, list) else None)
        preprocess, _, postprocess = self._sanitize_parameters(**kwargs)
        preprocess = {k: v for k, v in {**self._preprocess_params, **preprocess}.items() if k != "task"}
        postprocess = {k: v for k, v in {**self._postprocess_params, **postprocess}.items() if k != "task"}
        token_tasks = [name for name in tasks if get_kind(specs[name]).target == "tags"]
        sentence_tasks = [name for name in tasks if name not in token_tasks]
        groups = ((SENTENCE_SETTINGS, sentence_tasks, "sentence and pair"), (TOKEN_SETTINGS, token_tasks, "token"))
        for settings, takers, what in groups:
            given = [k for k in settings if k in kwargs]
            if given and not takers:
                raise ValueError(f"{', '.join(given)}: only {what} tasks take it, and task={list(tasks)!r} has none")
        ranked = "top_k" in kwargs or bool(kwargs.get("return_all_scores")) or "top_k" in self._postprocess_params
        function = postprocess.get("function_to_apply")
        for name in sentence_tasks:
            if ranked:
                self._check_top_k(name, specs[name])
            if function is not None:
                self._check_function(name, specs[name], function)
        task_settings = {
            name: {k: v for k, v in postprocess.items() if (k in TOKEN_SETTINGS) == (name in token_tasks)}
            for name in tasks
        }
        answers: list[dict[str, Any]] = [{} for _ in items]
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            model_inputs = {name: [self.preprocess(item, task=name, **preprocess) for item in chunk] for name in tasks}
            outputs = self._forward_tasks(model_inputs)
            for name in tasks:
                for row, answer in enumerate(answers[start : start + len(chunk)]):
                    answer[name] = self.postprocess(row_of(outputs[name], row), task=name, **task_settings[name])
        if isinstance(inputs, str) and not ranked:  # as a one-task call answers a string: a one-item list
            for name in sentence_tasks:
                answers[0][name] = [answers[0][name]]
        return answers if isinstance(inputs, list) else answers[0]

    def _check_top_k(self, task: str, spec: dict[str, Any]) -> None:
        if spec["label_names"] is not None and not self.model.task_head(task).objective.has_probabilities:
            raise ValueError(
                f"top_k needs class probabilities; task {task!r} compares a cosine similarity with "
                f"cosine_threshold={spec['cosine_threshold']}"
            )

    def _check_function(self, task: str, spec: dict[str, Any], function: str) -> None:
        if function == "none" or self.model.task_head(task).objective.has_probabilities:
            return
        what = (
            "predicts a score"
            if spec["label_names"] is None
            else f"compares a cosine similarity with cosine_threshold={spec['cosine_threshold']}"
        )
        raise ValueError(f"function_to_apply={function!r} needs class logits; task {task!r} {what}: use 'none'")

    def preprocess(  # type: ignore[override]
        self, inputs, task: str | None = None, max_length: int | None = None
    ) -> dict[str, Any]:
        task = self._resolve_task(task)
        spec = self.model.config.tasks[task]
        text, text_pair = normalize_input(inputs, task, spec)
        if get_kind(spec).target == "tags":  # as the stock token-classification pipeline tokenizes: with offsets
            encoded = self.tokenizer(
                text, truncation=True, max_length=max_length or self.default_max_length(),
                return_special_tokens_mask=True, return_offsets_mapping=True,
            )  # fmt: skip
            return {
                "row": {"input_ids": encoded["input_ids"]},
                "token_row": {
                    "sentence": text,
                    "input_ids": encoded["input_ids"],
                    "special_tokens_mask": encoded["special_tokens_mask"],
                    "offset_mapping": [tuple(x) for x in encoded["offset_mapping"]],
                },
            }
        pairs = None if text_pair is None else [text_pair]
        encoded = encode_texts(self.tokenizer, spec, [text], pairs, max_length or self.default_max_length())
        # One row of plain token-id lists: the default collate hands a batch of them to ``_forward`` as a list,
        # which pads them the way mtbert's collator does.
        return {"row": {key: values[0] for key, values in encoded.items()}}

    def _batch(self, model_inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The padded model inputs of one preprocessed row, or of a batch of them, on the pipeline's device."""
        rows = model_inputs["row"]
        rows = [rows] if isinstance(rows, dict) else list(rows)
        pad_token_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        batch = collate_rows(rows, pad_token_id)
        return {key: value.to(self.device) for key, value in batch.items()}

    def _forward(  # type: ignore[override]
        self, model_inputs: dict[str, Any], task: str | None = None
    ) -> dict[str, torch.Tensor]:
        task = self._resolve_task(task)
        batch = self._batch(model_inputs)
        from .modeling_mtbert import sdpa_kernels  # here: modeling_mtbert imports this module at its end

        with sdpa_kernels(self.device):  # on CUDA, no cuDNN attention plan per new row length
            logits = self.model(task=task, **batch).logits
        return self._task_outputs(task, logits, model_inputs)

    def _forward_tasks(self, model_inputs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
        """``{task: preprocessed rows}`` of the same inputs → ``{task: outputs}`` (on the CPU), as :meth:`_forward`
        gives them for one task, through ``model.forward_tasks``: one encoder pass per distinct input encoding."""
        from .modeling_mtbert import sdpa_kernels

        batched = {task: {key: [row[key] for row in rows] for key in rows[0]} for task, rows in model_inputs.items()}
        with self.device_placement(), self.get_inference_context()():
            batches = {task: self._batch(inputs) for task, inputs in batched.items()}
            with sdpa_kernels(self.device):
                outputs = self.model.forward_tasks(batches)
            return {
                task: self._ensure_tensor_on_device(
                    self._task_outputs(task, outputs[task].logits, batched[task]), device=torch.device("cpu")
                )
                for task in batched
            }

    def _task_outputs(self, task: str, logits: torch.Tensor, model_inputs: dict[str, Any]) -> dict[str, Any]:
        """What ``postprocess`` reads of a task's batch: its logits, and predictions or a token task's rows."""
        if "token_row" in model_inputs:  # a token task: its rows' logits, with what the stock aggregation reads
            token_rows = model_inputs["token_row"]
            token_rows = [token_rows] if isinstance(token_rows, dict) else token_rows
            return {"logits": logits.float(), "token_row": token_rows}
        predictions, scores = self.model.postprocess(task, logits)
        return {"logits": logits.float(), "predictions": predictions, "scores": scores.float()}

    def label_scores(self, task: str, logits: torch.Tensor, function: str | None = None) -> torch.Tensor | None:
        """One row's score per label of a classification task with probabilities (``function_to_apply`` applied;
        ``None`` = softmax, the head's own probabilities), or ``None`` for a cosine or score head."""
        objective = self.model.task_head(task).objective
        if not objective.has_probabilities:
            return None
        logits = logits.float()
        if logits.dim() == 0:  # a two-label head's one logit z: the log-odds of the second label
            if function == "none":
                return torch.stack([-logits, logits])
            return objective.probabilities(logits[None])[0]
        if function == "sigmoid":
            return torch.sigmoid(logits)
        if function == "none":
            return logits
        return objective.probabilities(logits[None])[0]

    def token_entities(
        self,
        task: str,
        logits: torch.Tensor,
        row: dict[str, Any],
        aggregation_strategy: str | None = None,
        ignore_labels: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """A token task's answer for one input, computed by transformers' own ``TokenClassificationPipeline``
        post-processing (so ``entity_group``/``entity``, ``score``, ``word``, ``start``, ``end`` and every
        ``aggregation_strategy`` are exactly the stock pipeline's), from this model's logits for the task."""
        from types import SimpleNamespace

        from transformers.pipelines.token_classification import AggregationStrategy, TokenClassificationPipeline

        labels = self.model.config.tasks[task]["label_names"]
        stock: Any = TokenClassificationPipeline.__new__(TokenClassificationPipeline)  # only its post-processing
        stock.tokenizer = self.tokenizer
        stock.model = SimpleNamespace(config=SimpleNamespace(id2label=dict(enumerate(labels))))
        length = len(row["input_ids"])
        outputs = {
            "logits": logits[:length].float().cpu()[None],
            "sentence": row["sentence"],
            "input_ids": torch.as_tensor(row["input_ids"])[None],
            "offset_mapping": torch.as_tensor(row["offset_mapping"])[None],
            "special_tokens_mask": torch.as_tensor(row["special_tokens_mask"])[None],
            "is_last": True,
        }
        strategy = AggregationStrategy(aggregation_strategy or DEFAULT_AGGREGATION)
        return stock.postprocess([outputs], aggregation_strategy=strategy, ignore_labels=ignore_labels)

    def postprocess(  # type: ignore[override]
        self, model_outputs: dict[str, Any], task: str | None = None, top_k=_NOT_GIVEN,
        function_to_apply=None, aggregation_strategy=None, ignore_labels=None,
    ):  # fmt: skip
        task = self._resolve_task(task)
        spec = self.model.config.tasks[task]
        if "token_row" in model_outputs:
            row = model_outputs["token_row"]
            row = row[0] if isinstance(row, list) else row
            return self.token_entities(task, model_outputs["logits"][0], row, aggregation_strategy, ignore_labels)
        labels = spec["label_names"]
        if top_k is not _NOT_GIVEN:
            self._check_top_k(task, spec)
        if function_to_apply is not None:
            self._check_function(task, spec, function_to_apply)
        scores = self.label_scores(task, model_outputs["logits"][0], function_to_apply)
        if scores is None:  # a score task (the task's name as its one label), or a cosine paraphrase head
            score = float(model_outputs["scores"][0].item())
            label = task if labels is None else labels[int(model_outputs["predictions"][0].item())]
            best = [{"label": label, "score": score}]
        else:
            order = sorted(range(len(labels)), key=lambda i: -float(scores[i]))  # stable: ties keep label order
            best = [{"label": labels[i], "score": float(scores[i])} for i in order]
        if top_k is _NOT_GIVEN:
            return best[0]
        return best if top_k is None else best[:top_k]


__all__ = ["PIPELINE_TASK", "MultitaskTextPipeline", "collate_rows", "encode_texts", "normalize_input"]
