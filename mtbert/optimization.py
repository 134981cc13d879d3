"""Per-parameter learning rates: task heads at their own rate, encoder layers decayed layer by layer.

Layer-wise learning-rate decay (Howard & Ruder, 2018; Sun et al., 2019) trains the top encoder layer at the base rate
and each layer below at ``decay`` times the rate of the one above, the embeddings lowest: the lower layers hold
general features that fine-tuning on small datasets should move least.
"""

from __future__ import annotations

import re

from torch import nn

from .configuration_mtbert import MultitaskConfigError

# Layer i of every family: ``encoder.layer.i.`` (BERT, RoBERTa, MPNet, DeBERTa, ELECTRA), ``transformer.layer.i.``
# (DistilBERT), ``layers.i.`` (ModernBERT). ALBERT's ``albert_layer_groups.0.albert_layers.0.`` is one layer shared
# by every depth, so it matches nothing (and layer-wise decay is refused for it).
_LAYER = re.compile(r"(?:^|\.)layers?\.(\d+)\.")
# Below layer 0: the embeddings (``embeddings.``, ModernBERT's ``embeddings.tok_embeddings`` too), the projection of
# factorised embeddings up to the hidden width (ELECTRA's ``embeddings_project``, ALBERT's
# ``embedding_hidden_mapping_in``) and the relative-position tables every layer reads, like BERT's absolute position
# embeddings (DeBERTa's ``rel_embeddings`` and their ``encoder.LayerNorm``, MPNet's ``relative_attention_bias``).
_EMBEDDINGS = re.compile(
    r"(?:^|\.)(?:embeddings|embeddings_project|embedding_hidden_mapping_in|rel_embeddings|relative_attention_bias)\."
    r"|(?:^|\.)encoder\.LayerNorm\."
)


def encoder_depth(name: str, num_layers: int) -> int:
    """0 for embeddings, ``i + 1`` for the parameters of encoder layer ``i``, ``num_layers`` for anything above
    (ModernBERT's ``final_norm``, a pooler)."""
    match = _LAYER.search(name)
    if match:
        return int(match.group(1)) + 1
    if _EMBEDDINGS.search(name):
        return 0
    return num_layers


def parameter_learning_rates(
    model: nn.Module, learning_rate: float, head_learning_rate: float | None = None, layerwise_lr_decay: float = 1.0
) -> dict[str, float]:
    """``{parameter name: learning rate}`` for every parameter of a ``MultitaskBertModel``."""
    encoder_config = getattr(model.config, "encoder_config", None)
    num_layers = getattr(encoder_config, "num_hidden_layers", None)
    names = [name for name, _ in model.named_parameters()]
    if num_layers is None:
        depths = [encoder_depth(n, 0) for n in names if _LAYER.search(n)]
        num_layers = max(depths, default=0)
    if layerwise_lr_decay != 1.0:
        found = {int(m.group(1)) for n in names if not n.startswith("heads.") and (m := _LAYER.search(n))}
        if found != set(range(num_layers)):
            model_type = getattr(encoder_config, "model_type", "this backbone")
            raise MultitaskConfigError(
                f"layerwise_lr_decay={layerwise_lr_decay}: the {model_type} backbone has no separate parameters for "
                f"each of its {num_layers} layers (found layers {sorted(found)}; ALBERT shares one layer's weights "
                "across its depth), so there is nothing to decay layer by layer; set layerwise_lr_decay to 1.0"
            )
    rates = {}
    for name in names:
        if name.startswith("heads."):
            rates[name] = learning_rate if head_learning_rate is None else head_learning_rate
        else:
            rates[name] = learning_rate * layerwise_lr_decay ** (num_layers - encoder_depth(name, num_layers))
    return rates


__all__ = ["encoder_depth", "parameter_learning_rates"]
