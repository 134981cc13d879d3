"""Packed variable-length batches (mtbert.data.packing, issue 26): on the CPU reference path (block-diagonal SDPA over
the packed row), logits and gradients equal the padded path's for every supported family and every head kind, a
token head reads the same positions, a row padded to a token budget changes nothing, and unsupported families (or
masks that are not right-padded) are refused in one line. A negative control shows the comparison can fail."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from test_backbones import batch_of, make_model

from mtbert.data.packing import (
    PACKED_FAMILIES,
    block_diagonal_mask,
    enable_packing,
    pack,
    position_offset,
    unpack,
)
from mtbert.models.mtbert.configuration_mtbert import MultitaskConfigError

from backbone_fixtures import ALL_HEADS, encoder_config_of

FAMILIES = list(PACKED_FAMILIES)
TOKEN_TASK = {"kind": "token_classification", "label_names": ["O", "B-X", "I-X"]}


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _run(model, task, batch):
    model.zero_grad()
    out = model(task=task, **batch)
    out.loss.backward()
    return out.logits.detach(), _grads(model)


@pytest.mark.parametrize("name", FAMILIES)
def test_packed_logits_and_gradients_equal_padded(name):
    model = make_model(name).eval()  # eval: no dropout, so both passes compute the same function
    for task, spec in ALL_HEADS.items():
        batch = batch_of(name, spec)
        assert (batch["attention_mask"] == 0).any(), "the fixture batch must hold padding"
        logits, grads = _run(model, task, batch)
        hooks = enable_packing(model)
        try:
            packed_logits, packed_grads = _run(model, task, batch)
        finally:
            for hook in hooks:
                hook.remove()
        torch.testing.assert_close(packed_logits, logits, atol=1e-5, rtol=1e-5, msg=f"{name}/{task} logits")
        assert packed_grads.keys() == grads.keys()
        for key in grads:
            torch.testing.assert_close(packed_grads[key], grads[key], atol=1e-5, rtol=1e-4, msg=f"{name}/{task} {key}")


@pytest.mark.parametrize("name", ["bert", "roberta", "modernbert"])
def test_token_head_reads_the_same_positions(name):
    model = make_model(name, tasks={"tags": TOKEN_TASK}).eval()
    batch = batch_of(name, ALL_HEADS["sst"], labels=False)
    labels = torch.where(batch["attention_mask"].bool(), torch.arange(batch["input_ids"].numel()).view_as(
        batch["input_ids"]) % 3, torch.full_like(batch["input_ids"], -100))  # fmt: skip
    batch["labels"] = labels
    logits, grads = _run(model, "tags", batch)
    hooks = enable_packing(model)
    packed_logits, packed_grads = _run(model, "tags", batch)
    for hook in hooks:
        hook.remove()
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(packed_logits[real], logits[real], atol=1e-5, rtol=1e-5)
    for key in grads:
        torch.testing.assert_close(packed_grads[key], grads[key], atol=1e-5, rtol=1e-4)


def test_a_token_budget_pads_the_row_without_changing_results():
    model = make_model("bert").eval()
    batch = batch_of("bert", ALL_HEADS["sst"])
    logits = model(task="sst", **batch).logits
    hooks = enable_packing(model, total_tokens=128)
    seen = []
    spy = model.encoder.embeddings.register_forward_hook(lambda m, a, out: seen.append(out.shape))
    packed = model(task="sst", **batch).logits
    spy.remove()
    for hook in hooks:
        hook.remove()
    assert seen == [torch.Size([1, 128, model.config.hidden_size])]
    torch.testing.assert_close(packed, logits, atol=1e-5, rtol=1e-5)


def test_without_restricted_attention_packing_differs():
    """Negative control: one mask over the whole packed row (sequences see each other) moves the logits."""
    import mtbert.data.packing as packing

    model = make_model("bert").eval()
    batch = batch_of("bert", ALL_HEADS["sst"])
    logits = model(task="sst", **batch).logits
    original, rows_for = packing.block_diagonal_mask, packing._rows_for
    packing._rows_for = lambda cu: None  # the block-diagonal path, with its mask let open
    packing.block_diagonal_mask = lambda cu, total, window=None: torch.ones(1, 1, total, total, dtype=torch.bool)
    try:
        hooks = enable_packing(model)
        leaked = model(task="sst", **batch).logits
    finally:
        packing.block_diagonal_mask, packing._rows_for = original, rows_for
        for hook in hooks:
            hook.remove()
    assert (leaked - logits).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["bert", "distilbert", "modernbert"])
def test_the_block_diagonal_path_is_exact_too(name, monkeypatch):
    """Without the batch's padded layout at hand, attention runs over the packed row with a block-diagonal mask."""
    import mtbert.data.packing as packing

    monkeypatch.setattr(packing, "_rows_for", lambda cu: None)
    model = make_model(name).eval()
    for task in ("sst", "dual"):
        batch = batch_of(name, ALL_HEADS[task])
        logits, grads = _run(model, task, batch)
        hooks = enable_packing(model)
        packed_logits, packed_grads = _run(model, task, batch)
        for hook in hooks:
            hook.remove()
        torch.testing.assert_close(packed_logits, logits, atol=1e-5, rtol=1e-5)
        for key in grads:
            torch.testing.assert_close(packed_grads[key], grads[key], atol=1e-5, rtol=1e-4)


def test_pack_layout_positions_and_unpack():
    ids = torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0]])
    mask = (ids != 0).long()
    rows = pack(ids, mask, offset=2, total_tokens=8)
    assert rows.input_ids.tolist() == [[5, 6, 7, 8, 9, 0, 0, 0]]
    assert rows.position_ids.tolist() == [[2, 3, 4, 2, 3, 2, 2, 2]]
    assert rows.cu_seqlens.tolist() == [0, 3, 5, 8]
    assert rows.cu_seqlens.dtype == torch.int32
    states = torch.arange(8.0).view(1, 8, 1)
    assert unpack(states, rows)[..., 0].tolist() == [[0, 1, 2, 0], [3, 4, 0, 0]]
    mask4 = block_diagonal_mask(rows.cu_seqlens, 8)[0, 0]
    assert mask4[0, :3].all() and not mask4[0, 3:].any() and mask4[5:, 5:].all() and not mask4[5, :5].any()
    with pytest.raises(MultitaskConfigError, match="budget"):
        pack(ids, mask, total_tokens=4)


def test_roberta_positions_start_after_padding_idx():
    config = encoder_config_of("roberta")
    assert position_offset(config) == config.pad_token_id + 1
    assert position_offset(encoder_config_of("bert")) == 0


@pytest.mark.parametrize("name", ["mpnet", "deberta-v2", "albert"])
def test_families_without_packed_attention_are_refused_in_one_line(name):
    model = make_model(name)
    with pytest.raises(MultitaskConfigError, match="packed_batches") as error:
        enable_packing(model)
    assert "\n" not in str(error.value)


def test_a_left_padded_mask_is_refused():
    model = make_model("bert").eval()
    batch = batch_of("bert", ALL_HEADS["sst"])
    batch["attention_mask"] = batch["attention_mask"].flip(-1)
    hooks = enable_packing(model)
    try:
        with pytest.raises(MultitaskConfigError, match="right-padded"):
            model(task="sst", **batch)
        # the implementation is restored after the failed call: the padded path still runs
        assert model.encoder.config._attn_implementation == "sdpa"
    finally:
        for hook in hooks:
            hook.remove()


@pytest.mark.parametrize("name", ["bert", "modernbert"])
def test_the_varlen_kernel_call_is_laid_out_as_the_kernel_expects(name, monkeypatch):
    """The CUDA branch (``varlen_attn`` on ``(total, heads, d)`` tensors with ``cu_seqlens``) run on the CPU against a
    stand-in kernel that computes each sequence's attention on its own slice: the layout and window plumbing give
    the padded path's logits. (The kernel itself is CUDA-only.)"""
    import torch.nn.attention.varlen as varlen

    import mtbert.data.packing as packing

    calls = []

    def reference_varlen(q, k, v, cu_q, cu_k, max_q, max_k, *, scale=None, window_size=(-1, -1), **kwargs):
        assert q.dim() == 3 and cu_q.dtype == torch.int32 and max_q >= int((cu_q[1:] - cu_q[:-1]).max())
        calls.append(window_size)
        out = torch.empty_like(q)
        bounds = cu_q.tolist()
        for start, end in itertools.pairwise(bounds):
            qs, ks, vs = (t[start:end].transpose(0, 1) for t in (q, k, v))  # (heads, n, d)
            mask = None
            if window_size != (-1, -1):
                steps = torch.arange(end - start)
                mask = (steps[:, None] - steps[None, :]).abs() <= window_size[0]
            out[start:end] = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask, scale=scale).transpose(0, 1)
        return out

    monkeypatch.setattr(varlen, "varlen_attn", reference_varlen)
    monkeypatch.setattr(packing, "uses_varlen_kernel", lambda query, dropout, window=None: True)
    model = make_model(name).eval()
    batch = batch_of(name, ALL_HEADS["sst"])
    logits = model(task="sst", **batch).logits
    hooks = enable_packing(model)
    packed = model(task="sst", **batch).logits
    for hook in hooks:
        hook.remove()
    assert calls
    if name == "modernbert":  # its local layers pass their window
        assert any(window != (-1, -1) for window in calls)
    torch.testing.assert_close(packed, logits, atol=1e-5, rtol=1e-5)
