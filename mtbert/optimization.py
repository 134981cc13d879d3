"""Per-parameter learning rates: task heads at their own rate, encoder layers decayed layer by layer.

Layer-wise learning-rate decay (Howard & Ruder, 2018; Sun et al., 2019) trains the top encoder layer at the base rate
and each layer below at ``decay`` times the rate of the one above, the embeddings lowest: the lower layers hold
general features that fine-tuning on small datasets should move least.
"""

from __future__ import annotations

import re

from torch import nn

_LAYER = re.compile(r"(?:^|\.)layers?\.(\d+)\.")


def encoder_depth(name: str, num_layers: int) -> int:
    """0 for embeddings, ``i + 1`` for the parameters of encoder layer ``i``, ``num_layers`` for anything above."""
    match = _LAYER.search(name)
    if match:
        return int(match.group(1)) + 1
    if "embeddings." in name:
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
    rates = {}
    for name in names:
        if name.startswith("heads."):
            rates[name] = learning_rate if head_learning_rate is None else head_learning_rate
        else:
            rates[name] = learning_rate * layerwise_lr_decay ** (num_layers - encoder_depth(name, num_layers))
    return rates


__all__ = ["encoder_depth", "parameter_learning_rates"]
