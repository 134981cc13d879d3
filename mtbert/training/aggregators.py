"""Gradient aggregators for multitask training, expressed as weights over tasks.

Every method here turns the T per-task gradients g_1..g_T (flattened over the
shared parameters) into one update of the form

    update = sum_j w_j g_j,

and computes the T weights ``w`` from the T x T Gram matrix ``G[i, j] = g_i . g_j``
alone (the TorchJD "weighting" view). PCGrad looks like it needs the vectors
themselves, but every projected gradient g_i' is a linear combination of the
original gradients, so we track its coefficients c_i (g_i' = sum_m c_i[m] g_m) and
get every dot product it needs as ``c_i^T G e_j``.

Why this matters for the trainer:

* Only ``G`` crosses tasks. Computing it is one (T x P) @ (P x T) matmul
  (:func:`stack_gram`); the update is one (T,) @ (T x P) product. No projected
  copy of a full gradient is ever materialised, and the T x T math is tiny.
* It is DDP-friendly: all-reduce the per-task gradients once, then every rank
  computes the same ``G`` and, given the same PCGrad task orders (pass
  ``permutations`` or an identically seeded ``generator``), the same ``w``.
* The functions are pure torch, float64 internally, run on ``G``'s device and
  avoid host synchronisation (data-dependent branches use ``torch.where``), so
  the trainer only syncs when it logs. The one exception is IMTL-G on CUDA, whose
  T x T eigendecomposition (``pinv``) checks for errors on the host.

All aggregators share the call ``fn(gram, generator=None) -> AggregatorResult``;
see :data:`AGGREGATORS` and :func:`get_aggregator`.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

__all__ = [
    "AGGREGATORS",
    "AggregatorResult",
    "aggregator_options",
    "cagrad_weights",
    "check_aggregator_options",
    "conflict_statistics",
    "get_aggregator",
    "imtlg_weights",
    "mean_weights",
    "nash_mtl_weights",
    "pcgrad_mean_weights",
    "pcgrad_weights",
    "sample_pcgrad_permutations",
    "stack_gram",
    "sum_weights",
    "upgrad_weights",
]

_DTYPE = torch.float64
# CAGrad enumerates the 2^T - 1 task subsets; past this the batch gets large.
_CAGRAD_MAX_TASKS = 14


class AggregatorResult(NamedTuple):
    """Output of every aggregator.

    ``weights`` (float64, shape [T], on the Gram's device): the update is
    ``sum_j weights[j] * g_j``. ``num_projections`` (int64 scalar tensor): how many
    projections the method applied (0 for methods without projections); a tensor
    so reading it is the caller's choice of sync point.
    """

    weights: Tensor
    num_projections: Tensor


# --------------------------------------------------------------------------- helpers


def _as_gram(gram: Tensor | Sequence[Sequence[float]]) -> Tensor:
    """Validate a Gram matrix and return it as float64 (same device)."""
    if not isinstance(gram, Tensor):
        gram = torch.as_tensor(gram, dtype=_DTYPE)
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1] or gram.shape[0] == 0:
        raise ValueError(f"gram must be a non-empty square [T, T] matrix, got shape {tuple(gram.shape)}")
    if gram.is_complex() or gram.dtype == torch.bool:
        raise ValueError(f"gram must be real, got dtype {gram.dtype}")
    return gram.to(_DTYPE)


def _no_projections(gram: Tensor) -> Tensor:
    return torch.zeros((), dtype=torch.long, device=gram.device)


@contextlib.contextmanager
def _ieee_fp32_matmul(enabled: bool):
    """Temporarily disable TF32 for CUDA matmuls.

    A Gram product has only T rows, so it is bandwidth-bound and TF32 would buy no
    speed, only ~1e-3 relative error in the dot products whose signs PCGrad tests.
    """
    if not enabled:
        yield
        return
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):  # torch >= 2.9
        old = matmul.fp32_precision
        matmul.fp32_precision = "ieee"
        try:
            yield
        finally:
            matmul.fp32_precision = old
    else:  # pragma: no cover - older torch
        old = matmul.allow_tf32
        matmul.allow_tf32 = False
        try:
            yield
        finally:
            matmul.allow_tf32 = old


def stack_gram(grads: Tensor) -> Tensor:
    """Gram matrix ``grads @ grads.T`` of stacked task gradients, as float64.

    ``grads`` is [T, P] (one flattened gradient per row). Half-precision inputs are
    upcast so the matmul accumulates in at least float32 (TF32 is switched off for
    the product); the result is symmetrised to remove rounding asymmetry and
    returned as float64 for the small T x T math.
    """
    if not isinstance(grads, Tensor) or grads.ndim != 2:
        raise ValueError("grads must be a [T, P] tensor (one flattened gradient per row)")
    x = grads if grads.dtype in (torch.float32, torch.float64) else grads.float()
    with _ieee_fp32_matmul(x.is_cuda and x.dtype == torch.float32):
        gram = x @ x.T
    gram = gram.to(_DTYPE)
    return 0.5 * (gram + gram.T)


# ----------------------------------------------------------------- simple weightings


def sum_weights(gram: Tensor, generator: torch.Generator | None = None) -> AggregatorResult:
    """Plain sum of the task gradients (w = 1): the usual multitask loss-sum update."""
    g = _as_gram(gram)
    return AggregatorResult(torch.ones(g.shape[0], dtype=_DTYPE, device=g.device), _no_projections(g))


def mean_weights(gram: Tensor, generator: torch.Generator | None = None) -> AggregatorResult:
    """Mean of the task gradients (w = 1/T): the sum, scaled to be T-independent."""
    g = _as_gram(gram)
    t = g.shape[0]
    return AggregatorResult(torch.full((t,), 1.0 / t, dtype=_DTYPE, device=g.device), _no_projections(g))


# ------------------------------------------------------------------------------ PCGrad


def sample_pcgrad_permutations(
    num_tasks: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Random PCGrad visiting orders: LongTensor [T, T-1], row i a permutation of the other tasks.

    Drawn on the generator's device (default: ``device``) and moved to ``device``,
    so ranks that share a seeded generator draw identical orders.
    """
    if num_tasks < 1:
        raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
    draw_device = generator.device if generator is not None else device
    keys = torch.rand((num_tasks, num_tasks), generator=generator, device=draw_device, dtype=_DTYPE)
    keys.fill_diagonal_(2.0)  # rand < 1, so task i sorts last and is dropped
    perm = keys.argsort(dim=1)[:, : num_tasks - 1]
    return perm.to(device) if device is not None else perm


def _check_permutations(permutations: Tensor | Sequence[Sequence[int]], num_tasks: int, device) -> Tensor:
    perm = torch.as_tensor(permutations, dtype=torch.long)
    if perm.ndim == 1 and perm.numel() == 0 and num_tasks == 1:  # [] for a single task
        perm = perm.reshape(1, 0)
    if perm.ndim != 2 or perm.shape[0] != num_tasks or perm.shape[1] not in (num_tasks - 1, num_tasks):
        raise ValueError(
            f"permutations must have shape [T, T-1] (or [T, T] including the task itself) "
            f"for T={num_tasks}, got {tuple(perm.shape)}"
        )
    if perm.device.type == "cpu":  # validate contents only where it costs no device sync
        width = perm.shape[1]
        for i, row in enumerate(perm.tolist()):
            expected = list(range(num_tasks)) if width == num_tasks else [j for j in range(num_tasks) if j != i]
            if sorted(row) != expected:
                raise ValueError(f"permutations[{i}] = {row} is not a permutation of {expected}")
    return perm.to(device)


def pcgrad_weights(
    gram: Tensor,
    generator: torch.Generator | None = None,
    permutations: Tensor | Sequence[Sequence[int]] | None = None,
) -> AggregatorResult:
    """PCGrad (Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020) as task weights.

    For each task i: g_i' = g_i, then for j in a random order of the other tasks,
    if g_i'.g_j < 0: g_i' <- g_i' - (g_i'.g_j / |g_j|^2) g_j (projection against the
    original g_j, test on the current g_i', as in the reference code). The update is
    sum_i g_i'. With g_i' = sum_m C[i, m] g_m (C starts at the identity) the test is
    ``(C G)[i, j] < 0`` and the step is ``C[i, j] -= (C G)[i, j] / G[j, j]``, so the
    weights are ``w = C.sum(0)``. All T rows advance together: T-1 tiny batched steps.

    ``permutations`` ([T, T-1] tensor or nested list) fixes the visiting order of row
    i, e.g. so that all DDP ranks agree; rows may also be full permutations of
    range(T) ([T, T]), which reproduces the reference implementations that shuffle
    the whole list (the self-step only fires if g_i' came to conflict with g_i).
    Otherwise orders are drawn with ``generator`` (see
    :func:`sample_pcgrad_permutations`). Zero-norm g_j are skipped.
    """
    g = _as_gram(gram)
    t = g.shape[0]
    device = g.device
    if permutations is None:
        perm = sample_pcgrad_permutations(t, generator, device)
    else:
        perm = _check_permutations(permutations, t, device)

    coeffs = torch.eye(t, dtype=_DTYPE, device=device)
    sq_norms = g.diagonal()
    usable = sq_norms > 0
    rows = torch.arange(t, device=device)
    count = _no_projections(g)
    for step in range(perm.shape[1]):
        cols = perm[:, step]  # task j visited by each row i at this step
        dots = (coeffs * g[:, cols].T).sum(dim=1)  # g_i' . g_j = (C G)[i, j_i]
        hit = (dots < 0) & usable[cols]
        step_coef = torch.where(hit, dots / torch.where(hit, sq_norms[cols], 1.0), 0.0)
        coeffs = coeffs.index_put((rows, cols), -step_coef, accumulate=True)
        count = count + hit.sum()
    return AggregatorResult(coeffs.sum(dim=0), count)


def pcgrad_mean_weights(
    gram: Tensor,
    generator: torch.Generator | None = None,
    permutations: Tensor | Sequence[Sequence[int]] | None = None,
) -> AggregatorResult:
    """PCGrad averaged instead of summed (weights / T).

    Matches WeiChengTseng/Pytorch-PCGrad's default ``reduction='mean'`` on shared
    parameters, so learning rates tuned with that package carry over.
    """
    weights, count = pcgrad_weights(gram, generator, permutations)
    return AggregatorResult(weights / weights.shape[0], count)


# ------------------------------------------------------------------------------ IMTL-G


def imtlg_weights(
    gram: Tensor,
    generator: torch.Generator | None = None,
    *,
    rtol: float | None = None,
) -> AggregatorResult:
    """IMTL-G (Liu et al., "Towards Impartial Multi-task Learning", ICLR 2021).

    IMTL-G picks the update g = sum_j w_j g_j with sum_j w_j = 1 whose projections
    onto every unit task gradient u_i = g_i/|g_i| are equal: g.u_i = lambda for all i.
    The paper's closed form, alpha_{2:T} = g_1 U^T (D U^T)^{-1}, alpha_1 = 1 - sum
    alpha_{2:T} (D, U: differences g_1 - g_t, u_1 - u_t), reads in Gram form
    (g.u_i = (G w)_i / |g_i|):

        G w = lambda d,  d_i = sqrt(G_ii)  =>  w = G^+ d / (1^T G^+ d),

    with the pseudo-inverse (eigendecomposition of the symmetric G, ``rtol`` as in
    ``torch.linalg.pinv``) covering linearly dependent gradients, as TorchJD does.
    If 1^T G^+ d vanishes (e.g. two exactly opposite gradients) there is no such
    update and the weights are all zero. Weights may be negative.
    """
    g = _as_gram(gram)
    norms = g.diagonal().clamp_min(0).sqrt()
    v = torch.linalg.pinv(g, rtol=rtol, hermitian=True) @ norms
    total = v.sum()
    ok = total.abs() > 1e-12 * v.abs().sum()
    weights = torch.where(ok, v / torch.where(ok, total, 1.0), 0.0)
    return AggregatorResult(weights, _no_projections(g))


# ------------------------------------------------------------------------------ CAGrad


def _cagrad_dual(gram: Tensor, b: Tensor, radius: Tensor) -> Tensor:
    """Exact minimiser over the simplex of F(w) = b.w + radius * sqrt(w^T G w).

    F is convex and depends on w only through x = g_w in the hull of the gradients.
    An optimum either has g_w = 0 or lies on a support S whose gradients are
    linearly independent, where stationarity b_S + (radius/r) G_S w = mu 1 with
    r = |g_w|, 1.w = 1, w^T G w = r^2 has the closed form (a = G_S^-1 1,
    beta = G_S^-1 b_S, alpha = 1.a, gamma = 1.beta, delta = b_S.beta):

        mu = (gamma + sqrt(gamma^2 - alpha delta + alpha radius^2)) / alpha,
        w_S = (mu a - beta) / (mu alpha - gamma).

    The g_w = 0 case is covered by the affine min-norm point of each support
    ([G_S 1; 1^T 0][w; nu] = [0; 1]). Every support is solved in one batch, infeasible
    candidates are dropped, and the feasible one with the smallest F wins: exact
    (up to rounding) and free of host syncs, at 2^T - 1 tiny solves.
    """
    t = gram.shape[0]
    device = gram.device
    ids = torch.arange(1, 2**t, device=device)
    masks = ((ids[:, None] >> torch.arange(t, device=device)) & 1).to(_DTYPE)  # [K, T]
    k = masks.shape[0]
    outer = masks[:, :, None] * masks[:, None, :]
    gram_s = gram * outer + torch.diag_embed(1.0 - masks)  # identity on inactive tasks

    # Stationary points with g_w != 0.
    sol, info = torch.linalg.solve_ex(gram_s, torch.stack([masks, b * masks], dim=-1))
    a, beta = sol[..., 0], sol[..., 1]
    alpha, gamma, delta = a.sum(-1), beta.sum(-1), (b * beta).sum(-1)
    root = (gamma**2 - alpha * delta + alpha * radius**2).clamp_min(0).sqrt()
    mu = (gamma + root) / alpha
    w_stat = (mu[:, None] * a - beta) / root[:, None]
    ok_stat = info == 0

    # Affine min-norm points (catch g_w = 0).
    border = torch.zeros((k, t + 1, t + 1), dtype=_DTYPE, device=device)
    border[:, :t, :t] = gram_s
    border[:, :t, t] = masks
    border[:, t, :t] = masks
    rhs = torch.zeros((k, t + 1), dtype=_DTYPE, device=device)
    rhs[:, t] = 1.0
    sol_mn, info_mn = torch.linalg.solve_ex(border, rhs)
    w_mn = sol_mn[:, :t]
    ok_mn = info_mn == 0

    cand = torch.cat([w_stat, w_mn])
    ok = torch.cat([ok_stat, ok_mn]) & torch.isfinite(cand).all(-1) & (cand >= -1e-9).all(-1)
    cand = torch.where(ok[:, None], cand.clamp_min(0), 1.0 / t)
    cand = cand / cand.sum(-1, keepdim=True)
    quad = ((cand @ gram) * cand).sum(-1).clamp_min(0)
    objective = torch.where(ok, cand @ b + radius * quad.sqrt(), torch.inf)
    return cand.index_select(0, objective.argmin().reshape(1)).squeeze(0)


def cagrad_weights(
    gram: Tensor,
    c: float = 0.5,
    *,
    rescale: int = 1,
    norm_eps: float = 1e-6,
    generator: torch.Generator | None = None,
) -> AggregatorResult:
    """CAGrad (Liu et al., "Conflict-Averse Gradient Descent for Multi-task Learning", NeurIPS 2021).

    CAGrad moves along d maximising the worst task improvement min_i g_i.d inside
    a ball around the mean gradient g0: |d - g0| <= c |g0|. Its dual depends on G only:

        w* = argmin_{w in simplex} g_w.g0 + c |g0| |g_w|,   g_w = sum_j w_j g_j,
        d  = g0 + (c |g0| / |g_w*|) g_w*,

    i.e. weights 1/T + (c |g0| / |g_w*|) w*, with g_w.g0 = (G 1/T).w and |g_w|^2 = w^T G w.
    The dual is solved exactly on the T-simplex (:func:`_cagrad_dual`, T <= 14; the
    official code uses SLSQP). ``rescale`` follows the official implementation:
    0 none, 1 divide by 1 + c^2 (its default), 2 divide by 1 + c. c = 0 gives the
    mean. If |g_w*| <= norm_eps * max_i |g_i| (a Pareto-stationary hull, where the
    direction of g_w* is noise) the correction is dropped, as TorchJD does.
    """
    if c < 0:
        raise ValueError(f"c must be >= 0, got {c}")
    scales = {0: 1.0, 1: 1.0 + c * c, 2: 1.0 + c}
    if rescale not in scales:
        raise ValueError(f"rescale must be 0, 1 or 2, got {rescale!r}")
    g = _as_gram(gram)
    t = g.shape[0]
    if t > _CAGRAD_MAX_TASKS:
        raise ValueError(f"cagrad_weights enumerates task subsets and supports T <= {_CAGRAD_MAX_TASKS}, got {t}")
    # w* is invariant to scaling G; normalise so tolerances are relative.
    top = g.diagonal().max()
    g = g / torch.where(top > 0, top, 1.0)
    mean = torch.full((t,), 1.0 / t, dtype=_DTYPE, device=g.device)
    b = g @ mean  # g_i . g0
    radius = c * (mean @ b).clamp_min(0).sqrt()  # c |g0|
    w_star = _cagrad_dual(g, b, radius)
    gw_norm = ((w_star @ g) @ w_star).clamp_min(0).sqrt()
    use = (radius > 0) & (gw_norm > norm_eps * g.diagonal().max().clamp_min(0).sqrt())
    lam = torch.where(use, radius / torch.where(use, gw_norm, 1.0), 0.0)
    weights = (mean + lam * w_star) / scales[rescale]
    return AggregatorResult(weights, _no_projections(g))


# ------------------------------------------------------------------------------ UPGrad


def upgrad_weights(
    gram: Tensor,
    generator: torch.Generator | None = None,
    *,
    norm_eps: float = 1e-4,
    reg_eps: float = 1e-4,
) -> AggregatorResult:
    """UPGrad (Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024), through TorchJD.

    Each task gradient g_i is projected onto the dual cone of all of them (the set of updates that conflict with no
    task), and the projections are averaged. In Gram form, for u = e_i / T: v_i = argmin_{v >= u} v^T G v, and
    w = sum_i v_i. This calls TorchJD's maintained ``UPGradWeighting`` (its quadprog solver, on the host; ``G`` is
    normalised by its trace (``norm_eps``) and ``reg_eps`` * I is added, TorchJD's defaults), which takes exactly
    the Gram matrix that mtbert builds: install it with ``pip install 'mtbert[torchjd]'``.
    """
    g = _as_gram(gram)
    try:
        from torchjd.aggregation import UPGradWeighting
        from torchjd.linalg import QuadprogProjector

        projector = QuadprogProjector(norm_eps=norm_eps, reg_eps=reg_eps)
    except ImportError as error:
        raise ImportError(
            f"aggregator upgrad needs TorchJD with its quadprog solver: pip install 'mtbert[torchjd]' ({error})"
        ) from None
    weights = UPGradWeighting(projector=projector)(g).to(_DTYPE)
    return AggregatorResult(weights, _no_projections(g))


# ---------------------------------------------------------------------------------------------------------- Nash-MTL


def nash_mtl_weights(
    gram: Tensor,
    generator: torch.Generator | None = None,
    *,
    max_norm: float = 0.0,
    iterations: int = 30,
) -> AggregatorResult:
    """Nash-MTL (Navon et al., "Multi-Task Learning as a Bargaining Game", ICML 2022).

    The Nash bargaining update d = sum_j alpha_j g_j solves G alpha = 1 / alpha (alpha > 0, elementwise): every task's
    improvement g_i . d equals 1 / alpha_i. That is the stationarity condition of the strictly convex
    f(alpha) = 1/2 alpha^T G alpha - sum_i log alpha_i, solved here by damped Newton steps (step 1 / (1 + lambda),
    lambda the Newton decrement, which keeps alpha > 0 without a line search; ``iterations`` fixed steps, no host
    sync) on G scaled to unit largest diagonal, then rescaled (alpha scales as 1 / sqrt of G). At the solution
    |d|^2 = alpha^T G alpha = T. ``max_norm`` > 0 scales the update down to at most that norm (the paper's clipping;
    0: off). Tasks with a zero gradient get weight 0. The official code (and TorchJD's port, which needs cvxpy and
    ECOS and the T x P matrix) approximates the same point by a sequence of convex programs.
    """
    if max_norm < 0:
        raise ValueError(f"max_norm must be >= 0, got {max_norm}")
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    g = _as_gram(gram)
    t = g.shape[0]
    diag = g.diagonal().clamp_min(0)
    usable = diag > 1e-12 * diag.max().clamp_min(1e-300)
    top = diag.max()
    scale = torch.where(top > 0, top, 1.0)
    # zero-gradient tasks are taken out (identity rows: their alpha stays 1 and is zeroed at the end)
    keep = usable[:, None] & usable[None, :]
    eye = torch.eye(t, dtype=_DTYPE, device=g.device)
    h = torch.where(keep, g / scale, 0.0) + torch.diag_embed((~usable).to(_DTYPE))
    alpha = torch.where(usable, 1.0 / h.diagonal().clamp_min(1e-300).sqrt(), 1.0)
    for _ in range(iterations):
        grad = h @ alpha - 1.0 / alpha
        hessian = h + torch.diag_embed(1.0 / alpha**2) + 1e-12 * eye
        step = torch.linalg.solve(hessian, grad)
        decrement = (grad @ step).clamp_min(0).sqrt()
        alpha = alpha - torch.where(decrement > 0.25, 1.0 / (1.0 + decrement), 1.0) * step
        alpha = alpha.clamp_min(1e-12)  # the damped step keeps alpha > 0; this only guards rounding
    weights = torch.where(usable, alpha / scale.sqrt(), 0.0)
    if max_norm > 0:
        norm = ((weights @ g) @ weights).clamp_min(0).sqrt()
        weights = weights * torch.where(norm > max_norm, max_norm / torch.where(norm > 0, norm, 1.0), 1.0)
    return AggregatorResult(weights, _no_projections(g))


# ------------------------------------------------------------------------- diagnostics


def conflict_statistics(gram: Tensor) -> dict[str, Tensor]:
    """Gradient-conflict diagnostics from the Gram matrix, as tensors (read them when logging).

    Keys: ``cosine`` [T, T] pairwise cosines (0 where a gradient is zero),
    ``conflict_fraction`` share of pairs i < j with cosine < 0 (0 if T = 1),
    ``mean_cosine`` mean cosine over pairs i < j (NaN if T = 1),
    ``norm_ratio`` max |g_i| / min |g_i| (inf if some gradient is zero),
    ``grad_norms`` [T] the norms |g_i|.
    """
    g = _as_gram(gram)
    t = g.shape[0]
    norms = g.diagonal().clamp_min(0).sqrt()
    denom = norms[:, None] * norms[None, :]
    nonzero = denom > 0
    cosine = torch.where(nonzero, g / torch.where(nonzero, denom, 1.0), 0.0).clamp(-1.0, 1.0)
    eye = torch.eye(t, dtype=torch.bool, device=g.device)
    cosine = torch.where(eye & nonzero, 1.0, cosine)
    iu = torch.triu_indices(t, t, offset=1, device=g.device)
    pairs = cosine[iu[0], iu[1]]
    if pairs.numel():
        conflict_fraction = (pairs < 0).to(_DTYPE).mean()
        mean_cosine = pairs.mean()
    else:
        conflict_fraction = torch.zeros((), dtype=_DTYPE, device=g.device)
        mean_cosine = torch.full((), float("nan"), dtype=_DTYPE, device=g.device)
    low, high = norms.min(), norms.max()
    norm_ratio = torch.where(low > 0, high / torch.where(low > 0, low, 1.0), torch.inf)
    return {
        "cosine": cosine,
        "conflict_fraction": conflict_fraction,
        "mean_cosine": mean_cosine,
        "norm_ratio": norm_ratio,
        "grad_norms": norms,
    }


# ---------------------------------------------------------------------------- registry

AGGREGATORS: dict[str, Callable[..., AggregatorResult]] = {
    "sum": sum_weights,
    "mean": mean_weights,
    "pcgrad": pcgrad_weights,
    "pcgrad_mean": pcgrad_mean_weights,
    "imtlg": imtlg_weights,
    "cagrad": cagrad_weights,
    "upgrad": upgrad_weights,
    "nash_mtl": nash_mtl_weights,
}

# the options each aggregator takes from ``aggregator_options`` (its keyword-only parameters): name -> (check, rule)
_OPTION_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "c": (lambda v: _real(v) and v >= 0, "a number >= 0"),
    "rescale": (lambda v: v in (0, 1, 2) and not isinstance(v, bool), "0, 1 or 2"),
    "norm_eps": (lambda v: _real(v) and v >= 0, "a number >= 0"),
    "reg_eps": (lambda v: _real(v) and v >= 0, "a number >= 0"),
    "rtol": (lambda v: v is None or (_real(v) and v >= 0), "a number >= 0"),
    "max_norm": (lambda v: _real(v) and v >= 0, "a number >= 0 (0: no clipping)"),
    "iterations": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "a whole number >= 1"),
}


def _real(value) -> bool:
    import math

    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def aggregator_options(name: str) -> list[str]:
    """The options ``aggregator_options`` may set for aggregator ``name`` (its keyword parameters with defaults)."""
    import inspect

    fn = AGGREGATORS[name.strip().lower().replace("-", "_")]
    return [
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.name not in ("gram", "generator", "permutations") and p.default is not p.empty
    ]


def check_aggregator_options(name: str, options) -> dict:
    """``aggregator_options`` for aggregator ``name``: a mapping of its options to values in range; anything else
    raises ``ValueError`` in one line that names the key."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise ValueError(f"aggregator_options must be a mapping of {name}'s options, got {options!r}")
    valid = aggregator_options(name)
    for key, value in options.items():
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"aggregator_options.{key}: aggregator {name} takes no {key!r} (it takes "
                f"{', '.join(valid) or 'none'}){hint}"
            )
        check, rule = _OPTION_RULES[key]
        if not check(value):
            raise ValueError(f"aggregator_options.{key} must be {rule}, got {value!r}")
    return dict(options)


def get_aggregator(name: str, **options) -> Callable[..., AggregatorResult]:
    """Look up an aggregator by name (case-insensitive, '-' == '_').

    ``options`` are bound with functools.partial (e.g. ``get_aggregator("cagrad", c=0.4)``).
    Unknown names raise ValueError listing the valid ones, with a close-match hint,
    so a typo in a config fails at start-up rather than mid-training.
    """
    key = name.strip().lower().replace("-", "_") if isinstance(name, str) else name
    if key not in AGGREGATORS:
        valid = sorted(AGGREGATORS)
        close = difflib.get_close_matches(str(key), valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown aggregator {name!r}.{hint} Valid names: {', '.join(valid)}.")
    fn = AGGREGATORS[key]
    return functools.partial(fn, **options) if options else fn
