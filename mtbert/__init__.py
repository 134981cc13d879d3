"""mtbert: one BERT for several sentence tasks, with configurable heads and multitask training strategies."""

from .models.mtbert.configuration_mtbert import MultitaskBertConfig, MultitaskConfigError
from .models.mtbert.modeling_mtbert import MultitaskBertModel, MultitaskOutput
from .models.mtbert.pipeline_mtbert import PIPELINE_TASK, MultitaskTextPipeline

__version__ = "0.1.0"

# mtbert.trainer, mtbert.training_args, ...: the module paths of earlier versions, as aliases of the new modules.
from ._compat import install as _install_old_paths

# AutoConfig / AutoModel / pipeline registry know mtbert once it is imported (no trust_remote_code needed locally).
from .hub import register_auto_classes

_install_old_paths()
register_auto_classes()

__all__ = [
    "PIPELINE_TASK",
    "ExportedModel",
    "MultitaskBertConfig",
    "MultitaskBertModel",
    "MultitaskConfigError",
    "MultitaskOutput",
    "MultitaskTextPipeline",
    "MultitaskTrainer",
    "MultitaskTrainingArguments",
    "export_model",
    "mtl_backward",
    "prepare_dataset",
    "save_sentence_transformer",
]


def __getattr__(name):
    # The trainer pulls in datasets/evaluate/accelerate; import it only when asked for.
    if name == "MultitaskTrainer":
        from .training.trainer import MultitaskTrainer

        return MultitaskTrainer
    if name == "MultitaskTrainingArguments":
        from .training.training_args import MultitaskTrainingArguments

        return MultitaskTrainingArguments
    if name == "prepare_dataset":
        from .data.prepare import prepare_dataset

        return prepare_dataset
    if name == "mtl_backward":
        from .training.backward import mtl_backward

        return mtl_backward
    if name in ("export_model", "ExportedModel", "save_sentence_transformer"):  # serving: mtbert.inference.export
        from .inference import export

        return getattr(export, name)
    raise AttributeError(f"module 'mtbert' has no attribute {name!r}")
