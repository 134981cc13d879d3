"""Sharing on the Hugging Face Hub: auto-class registration (:mod:`.registration`), the model card (:mod:`.card`), and
a clean push (:mod:`.push`); every name is importable from ``mtbert.hub`` as before the split.

- :func:`register_auto_classes` (run on ``import mtbert``): ``AutoConfig``/``AutoModel`` know ``mtbert`` locally, so
  ``AutoModel.from_pretrained(path)`` needs no ``trust_remote_code``, and the ``multitask-text-bert`` pipeline is in
  ``PIPELINE_REGISTRY``. Saving copies the remote code anyway (``register_for_auto_class`` in the class modules), so
  a saved folder or pushed repo loads with ``trust_remote_code=True`` where mtbert is not installed.
- :func:`render_model_card` fills ``model_card.md`` (a Jinja template) with ``huggingface_hub.ModelCard``: YAML
  metadata with ``model-index`` results, then the heads, the training settings, intended use, limitations and how
  to load the model.
- :func:`push_to_hub` saves model, tokenizer, code and card into a fresh folder and uploads exactly those files in
  one commit: ``model.safetensors`` (never a pickle), ``config.json`` (with ``auto_map`` and ``custom_pipelines``),
  the three code files, the tokenizer files and ``README.md``. No ``training_args.bin``, no logs.
"""

from ..models.mtbert.pipeline_mtbert import PIPELINE_TASK
from .card import (
    DATASET_NAMES,
    DEFAULT_EXAMPLES,
    HUB_TASK_TYPES,
    METRIC_IDS,
    MINILM_HUB_ID,
    NEUTRAL_EXAMPLES,
    TEMPLATE_NAME,
    build_card_data,
    eval_metrics_from_log_history,
    examples_from_data,
    model_card_template_path,
    render_model_card,
    resolve_base_model,
    task_datasets,
    task_examples,
    task_metrics,
)
from .push import PICKLE_SUFFIXES, is_pickle_file, push_to_hub, save_for_hub
from .registration import CODE_DIR, CODE_FILES, load_pipeline, register_auto_classes

__all__ = [
    "CODE_DIR",
    "CODE_FILES",
    "DATASET_NAMES",
    "DEFAULT_EXAMPLES",
    "HUB_TASK_TYPES",
    "METRIC_IDS",
    "MINILM_HUB_ID",
    "NEUTRAL_EXAMPLES",
    "PICKLE_SUFFIXES",
    "PIPELINE_TASK",
    "TEMPLATE_NAME",
    "build_card_data",
    "eval_metrics_from_log_history",
    "examples_from_data",
    "is_pickle_file",
    "load_pipeline",
    "model_card_template_path",
    "push_to_hub",
    "register_auto_classes",
    "render_model_card",
    "resolve_base_model",
    "save_for_hub",
    "task_datasets",
    "task_examples",
    "task_metrics",
]
