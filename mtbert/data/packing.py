"""Packed variable-length batches: a padded batch's real tokens concatenated into one row, attention kept inside
each sequence.

Why: length-grouped batches still bring many shapes (a new one almost every batch), and padded tokens cost work.
Packed, a batch of ``B`` rows becomes one row of ``T`` real tokens (``T`` may be padded up to a fixed token budget
so that a CUDA graph captured once serves every batch), with ``cu_seqlens`` (``[0, len_0, len_0 + len_1, ...]``)
saying where each sequence starts and position ids restarted at every sequence (offset by ``padding_idx + 1`` for
RoBERTa-style families, which number positions from there).

Attention runs through transformers' ``AttentionInterface`` under the name :data:`ATTENTION_NAME`:

- on CUDA, with bf16/fp16 activations and no attention dropout, ``torch.nn.attention.varlen.varlen_attn``
  (FlashAttention-2's variable-length kernel, torch >= 2.10);
- elsewhere (the CPU, fp32, attention dropout in training), a reference path: the packed queries, keys and values
  scattered back to the padded ``(B, heads, L, d)`` layout for scaled-dot-product attention with the padding mask
  (plus ModernBERT's sliding window), then gathered again; it computes exactly what the padded path computes, at
  the padded path's attention cost (the linear layers still run on the real tokens only). Without the batch's
  layout at hand (a packed row built by hand), a block-diagonal mask over the packed row is used instead.

The encoder's output is unpacked to the padded ``(B, L, hidden)`` layout before pooling and the heads (padding
positions hold zeros), so CLS/MEAN pooling and token heads read the same positions as without packing.

Supported: BERT, RoBERTa, XLM-R, ELECTRA, DistilBERT, ModernBERT (their attention goes through the interface and
takes ``position_ids``). Other families (MPNet's relative position buckets, DeBERTa, ALBERT) are refused with a
:class:`MultitaskConfigError` and keep padded (bucketed) batches.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models.mtbert.configuration_mtbert import MultitaskConfigError

#: the name packed attention is registered under in transformers' AttentionInterface
ATTENTION_NAME = "mtbert_packed"
#: backbone families whose encoders run packed rows
PACKED_FAMILIES = ("bert", "roberta", "xlm-roberta", "electra", "distilbert", "modernbert")
#: families whose position ids start at ``padding_idx + 1`` (``create_position_ids_from_input_ids``)
OFFSET_POSITION_FAMILIES = ("roberta", "xlm-roberta")


def check_family(encoder_config) -> None:
    """Raise a one-line :class:`MultitaskConfigError` for a backbone family packing does not support."""
    model_type = getattr(encoder_config, "model_type", None)
    if model_type not in PACKED_FAMILIES:
        raise MultitaskConfigError(
            f"packed_batches: backbone family {model_type!r} has no packed (variable-length) attention path; "
            f"supported: {', '.join(PACKED_FAMILIES)}. Turn packed_batches off (static_shapes keeps padded "
            "length buckets)"
        )


def position_offset(encoder_config) -> int:
    """Where a sequence's position ids start: ``pad_token_id + 1`` for RoBERTa-style families, else 0."""
    if getattr(encoder_config, "model_type", None) in OFFSET_POSITION_FAMILIES:
        return int(encoder_config.pad_token_id) + 1
    return 0


@dataclass
class PackedRows:
    """A padded ``(B, L)`` batch packed into one row of ``total`` tokens (see the module docstring).

    ``index``: where each real token sits in the flattened ``B * L`` padded layout (to unpack); ``cu_seqlens``:
    int32, ``B + 1`` entries (``B + 2`` when the row is padded to a token budget: the padding forms a last
    sequence of its own, attending only to itself); ``max_length``: an upper bound of the sequence lengths (``L``,
    so that no host sync is needed)."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    token_type_ids: torch.Tensor | None
    cu_seqlens: torch.Tensor
    max_length: int
    index: torch.Tensor
    shape: tuple[int, int]
    real_tokens: int

    def attention_kwargs(self) -> dict:
        """The keyword arguments the attention function reads (transformers' names for packed sequences)."""
        return {
            "cu_seq_lens_q": self.cu_seqlens,
            "cu_seq_lens_k": self.cu_seqlens,
            "max_length_q": self.max_length,
            "max_length_k": self.max_length,
        }


def check_right_padded(attention_mask: torch.Tensor) -> None:
    """The padding-mask check: packing assumes every row's real tokens come first (right padding), as mtbert's
    collators build them. A row with a hole or left padding raises (one line)."""
    lengths = attention_mask.sum(-1, keepdim=True)
    expected = torch.arange(attention_mask.shape[-1], device=attention_mask.device) < lengths
    if not torch.equal(attention_mask.bool(), expected):
        raise MultitaskConfigError(
            "packed_batches: an attention mask is not right-padded (real tokens first, then padding); packing "
            "needs right-padded rows (mtbert's collators build them)"
        )


def pack(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    token_type_ids: torch.Tensor | None = None,
    offset: int = 0,
    pad_token_id: int = 0,
    total_tokens: int | None = None,
) -> PackedRows:
    """Pack a right-padded ``(B, L)`` batch into one row (``total_tokens``: pad the row to this many tokens, for a
    static shape; it must hold the batch's real tokens)."""
    batch, length = input_ids.shape
    keep = attention_mask.reshape(-1).bool()
    index = keep.nonzero().squeeze(-1)
    real = int(index.numel())
    positions = torch.arange(length, device=input_ids.device).expand(batch, length).reshape(-1)[index] + offset
    ids = input_ids.reshape(-1)[index]
    types = None if token_type_ids is None else token_type_ids.reshape(-1)[index]
    lengths = attention_mask.sum(-1).to(torch.int32)
    cu = torch.zeros(batch + 1, dtype=torch.int32, device=input_ids.device)
    cu[1:] = torch.cumsum(lengths, 0)
    max_length = length
    if total_tokens is not None:
        if total_tokens < real:
            raise MultitaskConfigError(f"packed_batches: a batch has {real} tokens, above the budget {total_tokens}")
        extra = total_tokens - real
        if extra:
            ids = torch.cat([ids, ids.new_full((extra,), pad_token_id)])
            positions = torch.cat([positions, positions.new_full((extra,), offset)])
            if types is not None:
                types = torch.cat([types, types.new_zeros(extra)])
            cu = torch.cat([cu, cu.new_full((1,), total_tokens)])
            max_length = max(length, extra)
    return PackedRows(
        input_ids=ids.unsqueeze(0),
        position_ids=positions.unsqueeze(0),
        token_type_ids=None if types is None else types.unsqueeze(0),
        cu_seqlens=cu,
        max_length=max_length,
        index=index,
        shape=(batch, length),
        real_tokens=real,
    )


def unpack(hidden_states: torch.Tensor, rows: PackedRows) -> torch.Tensor:
    """``(1, total, H)`` packed states back to the padded ``(B, L, H)`` layout (zeros at padding)."""
    batch, length = rows.shape
    flat = hidden_states[0, : rows.real_tokens]
    out = flat.new_zeros(batch * length, flat.shape[-1]).index_copy(0, rows.index, flat)
    return out.view(batch, length, -1)


# -- attention ---------------------------------------------------------------------------------------------------

# the packed batches whose encoder pass is running (matched to an attention call by its cu_seqlens tensor)
_running = threading.local()


def _rows_for(cu_seqlens: torch.Tensor) -> PackedRows | None:
    for rows in getattr(_running, "rows", ()):
        if rows.cu_seqlens is cu_seqlens:
            return rows
    return None


def padded_attention(query, key, value, rows: PackedRows, scaling, dropout: float, window: int | None):
    """The reference path: ``(1, heads, total, d)`` packed tensors attended in the padded ``(B, heads, L, d)``
    layout with the padding mask (and a ``window``), returned packed as ``(1, total, heads, d)``."""
    batch, length = rows.shape
    heads, dim = query.shape[1], query.shape[3]

    def to_padded(t):
        flat = t[0, :, : rows.real_tokens].transpose(0, 1)  # (real, heads, d)
        out = flat.new_zeros(batch * length, heads, dim).index_copy(0, rows.index, flat)
        return out.view(batch, length, heads, dim).transpose(1, 2)

    valid = torch.zeros(batch * length, dtype=torch.bool, device=query.device)
    valid = valid.index_fill(0, rows.index, True).view(batch, 1, 1, length)
    if window is not None:
        steps = torch.arange(length, device=query.device)
        valid = valid & ((steps[:, None] - steps[None, :]).abs() <= window)
    out = F.scaled_dot_product_attention(
        to_padded(query), to_padded(key), to_padded(value), attn_mask=valid, dropout_p=dropout, scale=scaling
    )
    packed = out.transpose(1, 2).reshape(batch * length, heads, dim)[rows.index]
    extra = query.shape[2] - rows.real_tokens
    if extra:  # a token budget's padding: attends to nothing real, read by nobody
        packed = torch.cat([packed, packed.new_zeros(extra, heads, dim)])
    return packed.unsqueeze(0)


def block_diagonal_mask(cu_seqlens: torch.Tensor, total: int, window: int | None = None) -> torch.Tensor:
    """``(1, 1, total, total)`` boolean mask: a token sees the tokens of its own sequence (within ``window``
    positions either side, if given)."""
    steps = torch.arange(total, device=cu_seqlens.device)
    segment = torch.searchsorted(cu_seqlens[1:].to(torch.long), steps, right=True)
    mask = segment[:, None] == segment[None, :]
    if window is not None:
        mask &= (steps[:, None] - steps[None, :]).abs() <= window
    return mask[None, None]


def varlen_available() -> bool:
    try:
        from torch.nn.attention.varlen import varlen_attn  # noqa: F401
    except ImportError:
        return False
    return True


def varlen_parameters() -> frozenset[str]:
    """The keyword parameters this torch's ``varlen_attn`` takes (its signature changed between releases)."""
    import inspect

    from torch.nn.attention.varlen import varlen_attn

    return frozenset(inspect.signature(varlen_attn).parameters)


def uses_varlen_kernel(query: torch.Tensor, dropout: float, window: int | None = None) -> bool:
    """Whether the FlashAttention varlen kernel serves this call: CUDA, half precision, no dropout (the kernel has
    none), and a sliding window only where this torch's kernel takes one."""
    if not (query.is_cuda and query.dtype in (torch.bfloat16, torch.float16) and dropout == 0.0):
        return False
    if not varlen_available():
        return False
    return window is None or "window_size" in varlen_parameters()


def packed_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    sliding_window: int | None = None,
    cu_seq_lens_q: torch.Tensor | None = None,
    max_length_q: int | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function contract: ``(1, heads, total, d)`` in, ``(1, total, heads, d)`` out.

    ``sliding_window`` is what ModernBERT's local layers pass (the window plus one, flash-attention's convention)."""
    if cu_seq_lens_q is None:  # an unpacked call (the encoder used directly): plain SDPA over the padded batch
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    window = None if sliding_window is None else int(sliding_window) - 1
    if uses_varlen_kernel(query, dropout, window) and ("scale" in varlen_parameters() or scaling is None):
        from torch.nn.attention.varlen import varlen_attn

        q, k, v = (t[0].transpose(0, 1).contiguous() for t in (query, key, value))  # (total, heads, d)
        options: dict[str, Any] = {} if scaling is None else {"scale": scaling}
        if window is not None:
            options["window_size"] = (window, window)
        spans = cu_seq_lens_q[1:] - cu_seq_lens_q[:-1]
        longest = int(max_length_q) if max_length_q is not None else int(spans.max())
        out: Any = varlen_attn(q, k, v, cu_seq_lens_q, cu_seq_lens_q, longest, longest, **options)
        return out.unsqueeze(0), None
    rows = _rows_for(cu_seq_lens_q)
    if rows is not None:
        return padded_attention(query, key, value, rows, scaling, dropout, window), None
    mask = block_diagonal_mask(cu_seq_lens_q, query.shape[2], window)
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout, scale=scaling)
    return out.transpose(1, 2).contiguous(), None


def _no_mask(*args, **kwargs) -> None:
    """Packed rows need no padding mask: ``cu_seqlens`` carries the sequences' bounds."""
    return None


def register_attention() -> None:
    """Register :data:`ATTENTION_NAME` with transformers (attention and mask interfaces); idempotent."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(ATTENTION_NAME, packed_attention_forward)
    AttentionMaskInterface.register(ATTENTION_NAME, _no_mask)


# -- the encoder hooks -------------------------------------------------------------------------------------------


class PackedEncoder:
    """Forward hooks that make an encoder run packed: the pre-hook packs ``input_ids``/``attention_mask`` (and
    ``token_type_ids``) and switches the attention implementation to :data:`ATTENTION_NAME`; the post-hook unpacks
    ``last_hidden_state`` and restores the implementation. The encoder's weights and state dict are untouched."""

    def __init__(self, encoder: nn.Module, total_tokens: int | None = None, check_masks: bool = True):
        check_family(encoder.config)
        register_attention()
        self.encoder = encoder
        self.offset = position_offset(encoder.config)
        self.pad_token_id = int(getattr(encoder.config, "pad_token_id", 0) or 0)
        self.total_tokens = total_tokens
        self.check_masks = check_masks
        self._rows: list[PackedRows] = []
        self._implementations: list[str] = []
        self.handles = [
            encoder.register_forward_pre_hook(self._before, with_kwargs=True),
            encoder.register_forward_hook(self._after, always_call=True),
        ]

    def _before(self, module, args, kwargs):
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        attention_mask = kwargs.get("attention_mask")
        if input_ids is None or input_ids.dim() != 2:
            return None
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if self.check_masks:
            check_right_padded(attention_mask)
        rows = pack(
            input_ids,
            attention_mask,
            kwargs.get("token_type_ids"),
            offset=self.offset,
            pad_token_id=self.pad_token_id,
            total_tokens=self.total_tokens,
        )
        self._rows.append(rows)
        if not hasattr(_running, "rows"):
            _running.rows = []
        _running.rows.append(rows)
        self._implementations.append(module.config._attn_implementation)
        module.config._attn_implementation = ATTENTION_NAME
        packed = {k: v for k, v in kwargs.items() if k not in ("input_ids", "attention_mask", "token_type_ids")}
        packed.update(input_ids=rows.input_ids, position_ids=rows.position_ids, **rows.attention_kwargs())
        if rows.token_type_ids is not None:
            packed["token_type_ids"] = rows.token_type_ids
        return (), packed

    def _after(self, module, args, output):
        if not self._rows:  # the pre-hook let the call through unpacked
            return None
        rows = self._rows.pop()
        _running.rows = [r for r in getattr(_running, "rows", []) if r is not rows]
        module.config._attn_implementation = self._implementations.pop()
        if output is None:
            return None
        output.last_hidden_state = unpack(output.last_hidden_state, rows)
        return output

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def enable_packing(model: Any, total_tokens: int | None = None, check_masks: bool = True) -> list[PackedEncoder]:
    """Run every encoder of a :class:`~mtbert.MultitaskBertModel` on packed rows (see the module docstring); returns
    the hooks (``.remove()`` each to turn packing off). Unsupported families raise before anything changes."""
    encoders = {id(e): e for e in model.task_encoders().values()}.values()
    for encoder in encoders:
        check_family(encoder.config)
    return [PackedEncoder(e, total_tokens, check_masks) for e in encoders]


__all__ = [
    "ATTENTION_NAME",
    "PACKED_FAMILIES",
    "PackedEncoder",
    "PackedRows",
    "block_diagonal_mask",
    "check_family",
    "check_right_padded",
    "enable_packing",
    "pack",
    "packed_attention_forward",
    "position_offset",
    "register_attention",
    "unpack",
]
