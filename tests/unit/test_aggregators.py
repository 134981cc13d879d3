"""Tests for mtbert.training.aggregators: Gram-matrix weightings checked against explicit-vector references."""

import importlib.util

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from mtbert.training.aggregators import (
    AGGREGATORS,
    AggregatorResult,
    cagrad_weights,
    conflict_statistics,
    get_aggregator,
    imtlg_weights,
    mean_weights,
    pcgrad_mean_weights,
    pcgrad_weights,
    sample_pcgrad_permutations,
    stack_gram,
    sum_weights,
)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def gram_of(vectors: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(vectors @ vectors.T)


def combine(weights: torch.Tensor, vectors: np.ndarray) -> np.ndarray:
    return weights.numpy() @ vectors


def direct_pcgrad(vectors: np.ndarray, permutations) -> np.ndarray:
    """PCGrad on explicit vectors, written like the reference loop."""
    out = np.zeros(vectors.shape[1])
    for i, order in enumerate(permutations):
        g_i = vectors[i].copy()
        for j in order:
            g_j = vectors[j]
            dot = g_i @ g_j
            if dot < 0 and g_j @ g_j > 0:
                g_i -= dot / (g_j @ g_j) * g_j
        out += g_i
    return out


def random_permutations(rng, t, include_self=False):
    rows = []
    for i in range(t):
        others = list(range(t)) if include_self else [j for j in range(t) if j != i]
        rows.append([int(j) for j in rng.permutation(others)])
    return rows


# ------------------------------------------------------------------------------ PCGrad


def test_pcgrad_matches_direct_loop(rng):
    total_projections = 0
    for _ in range(200):
        t = int(rng.integers(2, 6))
        dim = int(rng.integers(3, 51))
        vectors = rng.normal(size=(t, dim)) * rng.uniform(0.1, 10.0, size=(t, 1))
        perms = random_permutations(rng, t)
        result = pcgrad_weights(gram_of(vectors), permutations=perms)
        expected = direct_pcgrad(vectors, perms)
        scale = np.abs(vectors).max()
        np.testing.assert_allclose(combine(result.weights, vectors), expected, rtol=1e-9, atol=1e-9 * scale)
        total_projections += int(result.num_projections)
    assert total_projections > 100  # random Gaussians conflict often: the test exercised projections


def test_pcgrad_full_permutations_reproduce_reference_shuffle(rng):
    # Reference code shuffles the whole list, task i included; [T, T] rows reproduce it.
    for _ in range(50):
        t = int(rng.integers(2, 6))
        vectors = rng.normal(size=(t, int(rng.integers(3, 20))))
        perms = random_permutations(rng, t, include_self=True)
        result = pcgrad_weights(gram_of(vectors), permutations=torch.tensor(perms))
        np.testing.assert_allclose(combine(result.weights, vectors), direct_pcgrad(vectors, perms), atol=1e-9)


def test_pcgrad_counts_projections():
    vectors = np.array([[1.0, 0.0], [-1.0, 1.0]])  # cos < 0: each task projects once
    result = pcgrad_weights(gram_of(vectors), permutations=[[1], [0]])
    assert int(result.num_projections) == 2
    assert result.num_projections.dtype == torch.long


def test_pcgrad_without_conflicts_is_plain_sum(rng):
    for _ in range(20):
        t = int(rng.integers(1, 6))
        vectors = rng.uniform(0.0, 1.0, size=(t, 7))  # all dot products >= 0
        result = pcgrad_weights(gram_of(vectors), generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(result.weights, torch.ones(t, dtype=torch.float64))
        assert int(result.num_projections) == 0


def test_pcgrad_single_task_is_its_own_gradient():
    result = pcgrad_weights(torch.tensor([[4.0]]))
    assert result.weights.tolist() == [1.0]
    assert int(result.num_projections) == 0
    assert pcgrad_weights(torch.tensor([[4.0]]), permutations=[[]]).weights.tolist() == [1.0]


def test_pcgrad_opposite_gradients_cancel_like_reference():
    # Reference: g1' = g1 - (g1.g2/|g2|^2) g2 = 0 and likewise g2' = 0, so the update is 0.
    v = np.array([[1.0, -2.0, 3.0]])
    vectors = np.concatenate([v, -v])
    result = pcgrad_weights(gram_of(vectors), generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(combine(result.weights, vectors), direct_pcgrad(vectors, [[1], [0]]), atol=1e-12)
    np.testing.assert_allclose(combine(result.weights, vectors), 0.0, atol=1e-12)
    assert int(result.num_projections) == 2


def test_pcgrad_skips_zero_norm_gradient():
    vectors = np.array([[1.0, 0.0], [0.0, 0.0], [-1.0, 1.0]])
    perms = [[1, 2], [2, 0], [0, 1]]
    result = pcgrad_weights(gram_of(vectors), permutations=perms)
    assert torch.isfinite(result.weights).all()
    np.testing.assert_allclose(combine(result.weights, vectors), direct_pcgrad(vectors, perms), atol=1e-12)


def test_pcgrad_mean_is_pcgrad_over_t(rng):
    vectors = rng.normal(size=(4, 12))
    perms = random_permutations(rng, 4)
    full = pcgrad_weights(gram_of(vectors), permutations=perms)
    mean = pcgrad_mean_weights(gram_of(vectors), permutations=perms)
    torch.testing.assert_close(mean.weights, full.weights / 4)
    assert int(mean.num_projections) == int(full.num_projections)


def test_pcgrad_generator_is_reproducible_and_orders_are_valid(rng):
    gram = gram_of(rng.normal(size=(5, 9)))
    a = pcgrad_weights(gram, generator=torch.Generator().manual_seed(7))
    b = pcgrad_weights(gram, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(a.weights, b.weights)
    perms = sample_pcgrad_permutations(5, torch.Generator().manual_seed(7))
    assert perms.shape == (5, 4)
    for i, row in enumerate(perms.tolist()):
        assert sorted(row) == [j for j in range(5) if j != i]
    torch.testing.assert_close(pcgrad_weights(gram, permutations=perms).weights, a.weights)


@pytest.mark.parametrize("bad", [[[1], [1]], [[0], [0]], [[1, 0], [0, 1], [0, 1]], [[2], [0]]])
def test_pcgrad_rejects_bad_permutations(bad):
    with pytest.raises(ValueError, match="permutation"):
        pcgrad_weights(torch.eye(2), permutations=bad)


# ------------------------------------------------------------------------------ IMTL-G


def test_imtlg_equalises_projections_on_unit_gradients(rng):
    for _ in range(100):
        t = int(rng.integers(1, 7))
        dim = int(rng.integers(t, 40))
        vectors = rng.normal(size=(t, dim)) * rng.uniform(0.1, 10.0, size=(t, 1))
        result = imtlg_weights(gram_of(vectors))
        update = combine(result.weights, vectors)
        units = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        projections = units @ update
        np.testing.assert_allclose(projections, projections.mean(), rtol=1e-7, atol=1e-9)
        assert result.weights.sum().item() == pytest.approx(1.0)
        assert int(result.num_projections) == 0


def test_imtlg_matches_paper_closed_form(rng):
    # alpha_{2:T} = g_1 U^T (D U^T)^{-1}, alpha_1 = 1 - sum(alpha_{2:T}) (Liu et al. 2021, eq. 7).
    vectors = rng.normal(size=(4, 10))
    units = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    d = vectors[0] - vectors[1:]
    u = units[0] - units[1:]
    tail = vectors[0] @ u.T @ np.linalg.inv(d @ u.T)
    alpha = np.concatenate([[1 - tail.sum()], tail])
    np.testing.assert_allclose(imtlg_weights(gram_of(vectors)).weights.numpy(), alpha, rtol=1e-8)


def test_imtlg_degenerate_cases():
    assert imtlg_weights(torch.tensor([[9.0]])).weights.tolist() == pytest.approx([1.0])
    v = np.array([[1.0, 2.0]])
    opposite = imtlg_weights(gram_of(np.concatenate([v, -v]))).weights
    assert torch.isfinite(opposite).all() and opposite.abs().max() == 0


# ------------------------------------------------------------------------------ CAGrad


def cagrad_dual_objective(w, gram, c):
    t = gram.shape[0]
    b = gram @ np.full(t, 1.0 / t)
    radius = c * np.sqrt(max(b.mean(), 0.0))
    return w @ b + radius * np.sqrt(max(w @ gram @ w, 0.0))


def scipy_cagrad_dual(gram, c, rng, starts=4):
    """SLSQP on the simplex as in the official CAGrad code, best of several starts."""
    t = gram.shape[0]
    best = np.inf
    for k in range(starts):
        x0 = np.full(t, 1.0 / t) if k == 0 else rng.dirichlet(np.ones(t))
        res = minimize(
            lambda w: cagrad_dual_objective(w, gram, c),
            x0,
            method="SLSQP",
            bounds=[(0.0, 1.0)] * t,
            constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0}],
            options={"ftol": 1e-14, "maxiter": 1000},
        )
        w = np.clip(res.x, 0, None)
        best = min(best, cagrad_dual_objective(w / w.sum(), gram, c))
    return best


def test_cagrad_with_c_zero_is_mean(rng):
    gram = gram_of(rng.normal(size=(4, 6)))
    for rescale in (0, 1, 2):
        result = cagrad_weights(gram, c=0.0, rescale=rescale)
        torch.testing.assert_close(result.weights, mean_weights(gram).weights)
        assert int(result.num_projections) == 0


def test_cagrad_is_optimal_on_random_cases(rng):
    for trial in range(40):
        t = int(rng.integers(1, 7))
        dim = int(rng.integers(2, 30)) if trial % 3 else int(rng.integers(1, t + 1))  # some rank-deficient
        vectors = rng.normal(size=(t, dim)) * rng.uniform(0.2, 5.0, size=(t, 1))
        if trial % 2:
            vectors += rng.normal(size=dim)  # shared direction: fewer conflicts
        c = float(rng.uniform(0.05, 0.95))
        gram_np = vectors @ vectors.T
        scale = gram_np.diagonal().max()
        weights = cagrad_weights(torch.from_numpy(gram_np), c=c, rescale=0).weights.numpy()

        g0 = vectors.mean(0)
        radius = c * np.linalg.norm(g0)
        d = weights @ vectors
        assert np.linalg.norm(d - g0) <= radius * (1 + 1e-9) + 1e-12  # primal feasible
        worst = (vectors @ d).min()

        # Duality sandwich: worst(d) <= F* <= F(w) for every w, so a tiny gap certifies both.
        extra = weights - 1.0 / t
        if extra.sum() > 1e-12:
            w_star = extra / extra.sum()
            assert w_star.min() >= -1e-9
            dual = cagrad_dual_objective(w_star, gram_np, c)
            assert dual - worst <= 1e-8 * scale
        scipy_best = scipy_cagrad_dual(gram_np, c, rng)
        assert worst >= scipy_best - 1e-8 * scale

        # Brute force: no sampled point of the ball does better on the worst task.
        directions = rng.normal(size=(2000, dim))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        samples = g0 + radius * rng.uniform(0, 1, size=(2000, 1)) ** (1 / dim) * directions
        assert (samples @ vectors.T).min(axis=1).max() <= worst + 1e-9 * scale


def test_cagrad_matches_official_formula_on_fixed_case():
    # Two conflicting tasks: w* = argmin, d = g0 + c|g0|/|g_w| g_w, then / (1 + c^2).
    vectors = np.array([[1.0, 0.2], [-0.5, 1.0]])
    gram = vectors @ vectors.T
    c = 0.5
    grid = np.linspace(0, 1, 200001)
    w = np.stack([grid, 1 - grid], axis=1)
    g0_sq = gram.mean()
    values = w @ gram.mean(1) + c * np.sqrt(g0_sq) * np.sqrt(np.einsum("ki,ij,kj->k", w, gram, w))
    p = grid[int(np.argmin(values))]
    g_w = p * vectors[0] + (1 - p) * vectors[1]
    g0 = vectors.mean(0)
    expected = (g0 + c * np.linalg.norm(g0) / np.linalg.norm(g_w) * g_w) / (1 + c**2)
    got = combine(cagrad_weights(torch.from_numpy(gram), c=c).weights, vectors)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_cagrad_rescale_options(rng):
    gram = gram_of(rng.normal(size=(3, 8)))
    base = cagrad_weights(gram, c=0.4, rescale=0).weights
    torch.testing.assert_close(cagrad_weights(gram, c=0.4, rescale=1).weights, base / 1.16)
    torch.testing.assert_close(cagrad_weights(gram, c=0.4, rescale=2).weights, base / 1.4)
    with pytest.raises(ValueError):
        cagrad_weights(gram, rescale=3)
    with pytest.raises(ValueError):
        cagrad_weights(gram, c=-1.0)


def test_cagrad_degenerate_hulls_fall_back_to_mean():
    v = np.array([[1.0, 2.0]])
    opposite = gram_of(np.concatenate([v, -v]))  # g0 = 0
    torch.testing.assert_close(cagrad_weights(opposite, rescale=0).weights, torch.full((2,), 0.5, dtype=torch.float64))
    # 0 lies in the hull and no direction beats it: |g_w*| = 0, the update is g0.
    vectors = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    torch.testing.assert_close(
        cagrad_weights(gram_of(vectors), rescale=0).weights, torch.full((3,), 1 / 3, dtype=torch.float64)
    )
    zero = cagrad_weights(torch.zeros(2, 2), rescale=0).weights
    torch.testing.assert_close(zero, torch.full((2,), 0.5, dtype=torch.float64))


@pytest.mark.parametrize("name", ["imtlg", "cagrad", "nash_mtl"])
def test_weightings_are_permutation_equivariant(rng, name):
    vectors = rng.normal(size=(5, 11))
    order = rng.permutation(5)
    fn = AGGREGATORS[name]
    w = fn(gram_of(vectors)).weights
    w_perm = fn(gram_of(vectors[order])).weights
    torch.testing.assert_close(w_perm, w[torch.from_numpy(order)])


# ------------------------------------------------------------------------- diagnostics


def test_conflict_statistics_match_direct_computation(rng):
    for _ in range(20):
        t = int(rng.integers(2, 7))
        vectors = rng.normal(size=(t, 13))
        stats = conflict_statistics(gram_of(vectors))
        norms = np.linalg.norm(vectors, axis=1)
        cosine = (vectors @ vectors.T) / np.outer(norms, norms)
        pairs = cosine[np.triu_indices(t, 1)]
        np.testing.assert_allclose(stats["cosine"].numpy(), cosine, atol=1e-12)
        assert stats["conflict_fraction"].item() == pytest.approx((pairs < 0).mean())
        assert stats["mean_cosine"].item() == pytest.approx(pairs.mean())
        assert stats["norm_ratio"].item() == pytest.approx(norms.max() / norms.min())
        np.testing.assert_allclose(stats["grad_norms"].numpy(), norms)
        assert all(isinstance(v, torch.Tensor) for v in stats.values())


def test_conflict_statistics_edge_cases():
    stats = conflict_statistics(gram_of(np.array([[1.0, 0.0], [0.0, 0.0]])))
    assert stats["norm_ratio"].item() == float("inf")
    assert stats["cosine"].tolist() == [[1.0, 0.0], [0.0, 0.0]]
    single = conflict_statistics(torch.tensor([[4.0]]))
    assert single["conflict_fraction"].item() == 0.0
    assert np.isnan(single["mean_cosine"].item())


# ---------------------------------------------------------------------- misc and registry


def test_stack_gram(rng):
    grads = torch.from_numpy(rng.normal(size=(3, 100))).float()
    gram = stack_gram(grads)
    assert gram.dtype == torch.float64 and gram.shape == (3, 3)
    torch.testing.assert_close(gram, gram.T, rtol=0, atol=0)
    expected = grads.double() @ grads.double().T
    torch.testing.assert_close(gram, expected, rtol=1e-5, atol=1e-4)
    low = grads.bfloat16()
    torch.testing.assert_close(stack_gram(low), low.double() @ low.double().T, rtol=1e-5, atol=1e-4)


def test_simple_weightings():
    gram = torch.eye(4)
    assert sum_weights(gram).weights.tolist() == [1.0] * 4
    assert mean_weights(gram).weights.tolist() == [0.25] * 4
    assert mean_weights(gram).weights.dtype == torch.float64


def test_registry_calls_share_one_signature(rng):
    assert set(AGGREGATORS) == {"sum", "mean", "pcgrad", "pcgrad_mean", "imtlg", "cagrad", "upgrad", "nash_mtl"}
    gram = gram_of(rng.normal(size=(3, 5)))
    has_torchjd = importlib.util.find_spec("torchjd") is not None and importlib.util.find_spec("quadprog") is not None
    for name in AGGREGATORS:
        if name == "upgrad" and not has_torchjd:  # an optional extra: mtbert[torchjd]
            continue
        result = get_aggregator(name)(gram, generator=torch.Generator().manual_seed(0))
        assert isinstance(result, AggregatorResult)
        assert result.weights.shape == (3,) and result.weights.dtype == torch.float64
        assert result.num_projections.shape == ()
    assert get_aggregator("PCGrad-Mean") is pcgrad_mean_weights
    bound = get_aggregator("cagrad", c=0.0)
    torch.testing.assert_close(bound(gram).weights, mean_weights(gram).weights)


def test_get_aggregator_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as info:
        get_aggregator("pcgrd")
    message = str(info.value)
    for name in AGGREGATORS:
        assert name in message
    assert "Did you mean 'pcgrad'" in message


@pytest.mark.parametrize("bad", [torch.zeros(2, 3), torch.zeros(0, 0), torch.zeros(3)])
def test_bad_gram_shapes_raise(bad):
    with pytest.raises(ValueError):
        pcgrad_weights(bad)
