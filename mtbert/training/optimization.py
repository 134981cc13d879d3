"""Per-parameter learning rates (task heads at their own rate, encoder layers decayed layer by layer), and an
AdamW that updates only the word-embedding rows a batch touched.

Layer-wise learning-rate decay (Howard & Ruder, 2018; Sun et al., 2019) trains the top encoder layer at the base rate
and each layer below at ``decay`` times the rate of the one above, the embeddings lowest: the lower layers hold
general features that fine-tuning on small datasets should move least.
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch
from torch import nn

from ..models.mtbert.configuration_mtbert import MultitaskConfigError

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


EMBEDDING_UPDATES = ("dense", "sparse", "frozen")


def word_embedding_weights(model: Any) -> list[nn.Parameter]:
    """The word-embedding matrix of each distinct encoder of a ``MultitaskBertModel`` (one when shared)."""
    encoders = {id(e): e for e in model.task_encoders().values()}.values()
    return [encoder.get_input_embeddings().weight for encoder in encoders]


class RowSparseAdamW(torch.optim.AdamW):
    """AdamW that, in parameter groups marked ``rows_only``, updates only the rows whose gradient is not all zero.

    A batch touches a few hundred rows of a 30k-row word-embedding matrix, yet dense AdamW reads and writes the whole
    matrix and both moment buffers every step (half of AdamW's time on MiniLM), and moves the untouched rows by
    their stale momentum and weight decay. Here untouched rows keep their values and moments, as TF Addons'
    LazyAdam does; bias correction counts the group's steps. Every other group is plain (fused) AdamW.
    """

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        lazy = [
            (p, group)
            for group in self.param_groups
            if group.get("rows_only")
            for p in group["params"]
            if p.grad is not None
        ]
        grads = [p.grad for p, _ in lazy]
        for p, _ in lazy:  # hidden from the dense step, which skips parameters without a gradient
            p.grad = None
        try:
            super().step()
        finally:
            for (p, _), grad in zip(lazy, grads):
                p.grad = grad
        for (p, group), grad in zip(lazy, grads):
            self._rows_step(p, grad, group)
        return loss

    def _rows_step(self, p: torch.Tensor, grad: torch.Tensor, group: dict) -> None:
        state = self.state[p]
        if "exp_avg" not in state:
            state["step"] = torch.zeros((), dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        rows = grad.reshape(grad.shape[0], -1).any(dim=1).nonzero().squeeze(1)
        if rows.numel() == 0:
            return
        beta1, beta2 = group["betas"]
        lr, eps, weight_decay = float(group["lr"]), group["eps"], group["weight_decay"]
        step = float(state["step"])
        g = grad.index_select(0, rows)
        if group.get("maximize"):
            g = -g
        exp_avg = state["exp_avg"].index_select(0, rows).mul_(beta1).add_(g, alpha=1 - beta1)
        exp_avg_sq = state["exp_avg_sq"].index_select(0, rows).mul_(beta2).addcmul_(g, g, value=1 - beta2)
        state["exp_avg"].index_copy_(0, rows, exp_avg)
        state["exp_avg_sq"].index_copy_(0, rows, exp_avg_sq)
        denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2**step)).add_(eps)
        weights = p.index_select(0, rows)
        if weight_decay:
            weights.mul_(1 - lr * weight_decay)
        weights.addcdiv_(exp_avg, denom, value=-lr / (1 - beta1**step))
        p.index_copy_(0, rows, weights.to(p.dtype))


__all__ = [
    "EMBEDDING_UPDATES",
    "RowSparseAdamW",
    "encoder_depth",
    "parameter_learning_rates",
    "word_embedding_weights",
]
