"""mtbert known to the Auto classes and the pipeline registry without ``trust_remote_code`` (run on ``import
mtbert``), and :func:`load_pipeline`; the remote code saved next to every checkpoint is :data:`CODE_FILES` of
:data:`CODE_DIR`, copied flat (``register_for_auto_class`` in the class modules)."""

from __future__ import annotations

import os
from pathlib import Path

from transformers import AutoConfig, AutoModel

from ..models.mtbert.configuration_mtbert import MultitaskBertConfig
from ..models.mtbert.modeling_mtbert import MultitaskBertModel
from ..models.mtbert.pipeline_mtbert import PIPELINE_TASK, MultitaskTextPipeline

#: The folder of the remote code in the package; its files are copied, flat, next to every saved checkpoint.
CODE_DIR = Path(__file__).resolve().parent.parent / "models" / "mtbert"
#: Files the remote code consists of; every saved folder and pushed repo carries them.
CODE_FILES = (
    "configuration_mtbert.py",
    "heads_mtbert.py",
    "kinds_mtbert.py",
    "modeling_mtbert.py",
    "pipeline_mtbert.py",
)

_registered = False


# Registration


def register_auto_classes() -> None:
    """Register mtbert with ``AutoConfig``, ``AutoModel`` and the pipeline registry (idempotent).

    Afterwards ``AutoModel.from_pretrained(path)`` and ``transformers.pipeline(model=path)`` (task inferred from
    ``config.json``) load a saved mtbert model with the installed code, without ``trust_remote_code``.
    """
    global _registered
    if _registered:
        return
    from transformers.pipelines import PIPELINE_REGISTRY

    AutoConfig.register(MultitaskBertConfig.model_type, MultitaskBertConfig, exist_ok=True)
    AutoModel.register(MultitaskBertConfig, MultitaskBertModel, exist_ok=True)
    PIPELINE_REGISTRY.register_pipeline(
        PIPELINE_TASK, pipeline_class=MultitaskTextPipeline, pt_model=AutoModel, type="text"
    )
    # Configs built from now on by this (installed) class serve the pipeline named in config.json's
    # custom_pipelines from the registry above, so pipeline(model=path) needs no trust_remote_code
    # (configuration_mtbert.LocalPipelines); a config loaded as remote code keeps asking for it.
    MultitaskBertConfig.local_pipeline_tasks = (PIPELINE_TASK,)
    _registered = True


def load_pipeline(
    model, tokenizer=None, backend: str | None = None, export_dir=None, **kwargs
) -> MultitaskTextPipeline:
    """The ``multitask-text-bert`` pipeline with mtbert's own code (no ``trust_remote_code``): what
    ``transformers.pipeline(model=path)`` builds once mtbert is imported, with the folder checked first and the
    weights read from safetensors only.

    ``model`` is a folder, a Hub id or a loaded :class:`MultitaskBertModel`; other arguments go to
    ``transformers.pipeline`` (``device``, ``batch_size``, ``revision``, ...). Weights load from safetensors only.

    ``backend="onnx"`` or ``"openvino"`` (a saved folder): the encoder passes run on an ONNX Runtime / OpenVINO
    export of the model (``mtbert.inference.serving.load_runtime_model``): the one in ``export_dir``, else one made on
    first
    use in a cache folder; same inputs, same answers (to ~1e-5). ``backend="torch"`` (or ``None``): the model itself.
    """
    from transformers import pipeline

    register_auto_classes()
    from ..inference.serving import resolve_backend

    backend = resolve_backend(backend)  # an unknown backend or a missing runtime: one line, before loading
    if backend is not None:
        if not isinstance(model, (str, os.PathLike)):
            raise ValueError(f"load_pipeline: backend={backend!r} takes a saved mtbert folder, got {model!r}")
        if kwargs.get("quantize") is not None:
            raise ValueError(f"load_pipeline: quantize= is torch's int8; backend={backend!r} runs an export instead")
        if kwargs.get("device") not in (None, "cpu", -1):
            raise ValueError(f"load_pipeline: backend={backend!r} runs on the CPU, device={kwargs['device']!r}")
        from ..inference.serving import load_runtime_model

        model, loaded = load_runtime_model(model, backend, export_dir=export_dir)
        tokenizer = tokenizer if tokenizer is not None else loaded
        return pipeline(  # type: ignore[call-overload]
            PIPELINE_TASK, model=model, tokenizer=tokenizer, pipeline_class=MultitaskTextPipeline, **kwargs
        )
    if export_dir is not None:
        raise ValueError("load_pipeline: export_dir goes with backend='onnx' or 'openvino'")
    if model is None or not isinstance(model, (str, os.PathLike, MultitaskBertModel)):
        raise ValueError(
            f"load_pipeline: model must be a saved mtbert folder, a Hub id or a MultitaskBertModel, got {model!r}"
        )
    if isinstance(model, (str, os.PathLike)):
        from ..inference.loading import check_model_folder, is_local_path

        model = str(model)
        if is_local_path(model):
            check_model_folder(model)
        model_kwargs = {"use_safetensors": True, **kwargs.pop("model_kwargs", {})}
        kwargs["model_kwargs"] = model_kwargs
    return pipeline(  # type: ignore[call-overload]
        PIPELINE_TASK, model=model, tokenizer=tokenizer, pipeline_class=MultitaskTextPipeline, **kwargs
    )
