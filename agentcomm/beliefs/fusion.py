r"""Fusing beliefs received from other agents: naive, conservative, consensus, fusion centre.

Shape legend: ``B`` worlds, ``N`` agents, ``M`` beliefs being fused, ``H x W`` grid cells,
``d`` Gaussian state dimension, ``...`` any batch shape.

Occupancy grids are log-odds :math:`\ell = \log\frac{p}{1-p}` (see :mod:`agentcomm.beliefs.grid`);
Gaussian beliefs are means and covariances. Which rule is right depends on what the beliefs
share:

* **independent** information (disjoint observations, the same prior counted once): sum the
  log-odds increments (:func:`independent_logodds_sum`, :func:`fusion_centre_logodds` with
  ``method="product"``) or add information matrices (:func:`independent_gaussian_fusion`);
* **unknown common** information (beliefs that have already been exchanged): a conservative
  rule that cannot double count, the weighted geometric mean of densities for grids
  (:func:`weighted_logodds_average`) and covariance intersection for Gaussians
  (:func:`covariance_intersection`);
* **distributed averaging** over a graph: :func:`consensus_average`.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import torch

from agentcomm._checks import check_choice, check_range, check_tensor
from agentcomm.beliefs.gaussian import GaussianBelief
from agentcomm.beliefs.grid import _constant

__all__ = [
    "GRID_FUSION_RULES",
    "consensus_average",
    "covariance_intersection",
    "fuse_received_logodds",
    "fusion_centre_logodds",
    "independent_gaussian_fusion",
    "independent_logodds_sum",
    "weighted_logodds_average",
]

_FLOAT_DTYPES = (torch.float32, torch.float64)
_INV_PHI = (math.sqrt(5.0) - 1.0) / 2.0  # golden-section ratio, ~0.618


# --------------------------------------------------------------------------- occupancy grids


def _prior_tensor(prior: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if isinstance(prior, torch.Tensor):
        check_tensor("prior", prior, dtypes=_FLOAT_DTYPES, finite=True)
        return prior.to(like.dtype)
    check_range("prior", prior, None, None)
    return torch.tensor(prior, dtype=like.dtype, device=like.device)


def independent_logodds_sum(
    own: torch.Tensor, received: torch.Tensor, prior: float | torch.Tensor = 0.0
) -> torch.Tensor:
    r"""Bayes' rule for *independent* beliefs: add the received log-odds increments.

    .. math:: \ell = \ell_{\text{own}} + \sum_{m=1}^{M} (\ell_m - \ell_0)

    Exact when each received belief carries only its sender's own observations
    (conditionally independent given the map) on top of the common prior :math:`\ell_0`.
    After agents have exchanged beliefs it **double counts** the common information: with
    :math:`\ell_i = \ell_0 + \lambda_c + \lambda_i` and :math:`\ell_j = \ell_0 + \lambda_c +
    \lambda_j` sharing the increment :math:`\lambda_c`, the sum is
    :math:`\ell_0 + 2\lambda_c + \lambda_i + \lambda_j` instead of
    :math:`\ell_0 + \lambda_c + \lambda_i + \lambda_j`, and repeated exchanges make beliefs
    grow without bound (rumour propagation). Use :func:`weighted_logodds_average` then.

    Args:
        own: float ``[..., H, W]`` the receiver's log-odds.
        received: float ``[..., M, H, W]`` the senders' log-odds.
        prior: :math:`\ell_0`, a float or a tensor broadcastable to ``[..., H, W]``.
    Returns:
        float ``[..., H, W]``.
    """
    check_tensor("own", own, min_ndim=2, dtypes=_FLOAT_DTYPES)
    check_tensor("received", received, min_ndim=3, dtypes=(own.dtype,))
    if received.shape[:-3] + received.shape[-2:] != own.shape:
        raise ValueError(
            f"received has shape {tuple(received.shape)}; expected [..., M, H, W] matching "
            f"own {tuple(own.shape)}"
        )
    l0 = _prior_tensor(prior, own)
    return _add_increments(own, received - l0.unsqueeze(-3) if l0.ndim >= 2 else received - l0)


def weighted_logodds_average(logodds: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    r"""Conservative fusion: the normalized weighted geometric mean of the densities.

    For each binary cell, :math:`p(x) \propto \prod_m p_m(x)^{w_m}` with
    :math:`\sum_m w_m = 1` has log-odds

    .. math:: \ell = \sum_m w_m \ell_m

    (the normalizer cancels in the odds). This is the exponential-mixture / Chernoff fusion
    rule (Hurley 2002; Julier 2006; Bailey, Julier & Agamennoni, FUSION 2012): it never
    counts information twice, however much the inputs share, at the price of discarding
    some when they are independent.

    Args:
        logodds: float ``[..., M, H, W]``.
        weights: float ``[..., M]``, non-negative with a positive sum over ``M``;
            normalized here.
    Returns:
        float ``[..., H, W]``.
    """
    check_tensor("logodds", logodds, min_ndim=3, dtypes=_FLOAT_DTYPES)
    check_tensor("weights", weights, shape=tuple(logodds.shape[:-2]), dtypes=_FLOAT_DTYPES)
    check_tensor("weights", weights, finite=True)
    if bool((weights < 0).any()):
        raise ValueError("weights holds negative values; allowed: weights >= 0")
    total = weights.sum(dim=-1, keepdim=True)
    if bool((total <= 0).any()):
        raise ValueError("weights sums to 0 for some batch entries; each sum must be > 0")
    w = (weights / total).to(logodds.dtype)
    return (w[..., None, None] * logodds).sum(dim=-3)


def fusion_centre_logodds(
    logodds: torch.Tensor,
    delivered: torch.Tensor,
    prior: float | torch.Tensor = 0.0,
    method: Literal["product", "average"] = "product",
) -> torch.Tensor:
    r"""The fusion centre's map from the beliefs it received this step.

    * ``"product"``: the product of the delivered agents' likelihoods with the prior,
      :math:`\ell_{FC} = \ell_0 + \sum_{i\,\text{delivered}} (\ell_i - \ell_0)`. Exact when the
      agents' increments over the prior are conditionally independent, i.e. each agent's
      belief holds only its own observations (no downlink fused into it yet); otherwise it
      double counts (see :func:`independent_logodds_sum`).
    * ``"average"``: the conservative equal-weight geometric mean of the delivered beliefs,
      :math:`\ell_{FC} = \frac{1}{|D|}\sum_{i \in D} \ell_i` (see
      :func:`weighted_logodds_average`), safe when the beliefs already share information.

    When nothing is delivered in a world, its centre map is the prior.

    Args:
        logodds: float ``[B, N, H, W]`` the agents' beliefs.
        delivered: bool ``[B, N]``, True where the agent's uplink message arrived.
        prior: :math:`\ell_0`, a float or a tensor broadcastable to ``[B, H, W]``.
        method: ``"product"`` or ``"average"``.
    Returns:
        float ``[B, H, W]``.
    """
    check_choice("method", method, ("product", "average"))
    check_tensor("logodds", logodds, ndim=4, dtypes=_FLOAT_DTYPES)
    check_tensor("delivered", delivered, shape=tuple(logodds.shape[:2]), dtypes=(torch.bool,))
    l0 = _prior_tensor(prior, logodds)
    if l0.ndim > 3:
        raise ValueError(
            f"prior has shape {tuple(l0.shape)}; expected one broadcastable to [B, H, W]"
        )
    if method == "product":
        per_agent_l0 = l0.unsqueeze(-3) if l0.ndim == 3 else l0
        # An undelivered belief counts as the prior: its increment is exactly 0.
        return _logodds_product(
            torch.where(delivered[..., None, None], logodds, per_agent_l0), l0, per_agent_l0
        )
    mask = delivered[..., None, None].to(logodds.dtype)
    count = mask.sum(dim=1)  # [B, 1, 1]
    mean = (mask * logodds).sum(dim=1) / count.clamp_min(1.0)
    return torch.where(count > 0, mean, l0)


def _logodds_product(
    logodds: torch.Tensor, prior: float | torch.Tensor, agent_prior: float | torch.Tensor
) -> torch.Tensor:
    r""":math:`\ell_0 + \sum_i (\ell_i - \ell_0)` over dim 1 of ``logodds [B, N, H, W]``,
    without validation (the fusion centre's product of the latest copy of each agent's own
    evidence; ``agent_prior`` is ``prior`` broadcast against ``logodds``)."""
    return prior + (logodds - agent_prior).sum(dim=1)


def _add_increments(
    own: torch.Tensor, increments: torch.Tensor, out: torch.Tensor | None = None, dim: int = -3
) -> torch.Tensor:
    r""":math:`\ell + \sum_m \lambda_m`: ``own [..., H, W]`` plus the increments over the
    prior ``increments [..., M, H, W]`` (:func:`independent_logodds_sum` without
    validation, for increments kept relative to the prior), into ``out`` when given;
    ``dim``: where ``M`` lies in ``increments`` (e.g. ``1`` for ``[B, M, N, H, W]``, the
    same sums in the same order)."""
    return torch.sum(increments, dim=dim, out=out).add_(own)


def _rebase_logodds(
    base: torch.Tensor,
    own: torch.Tensor,
    own_in_base: torch.Tensor,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""A fused map with the receiver's own evidence brought up to date:
    :math:`\ell = \ell_{\text{base}} + (\ell_{\text{own}} - \ell_{\text{own} \in
    \text{base}})`, cell by cell, where ``own_in_base`` is the copy of the receiver's own
    log-odds that ``base`` already holds (the prior where it holds none). Exact for
    independent evidence: nothing counted twice, nothing of its own dropped. Written into
    ``out`` when given."""
    return torch.sub(own, own_in_base, out=out).add_(base)


def _most_confident(a: torch.Tensor, b: torch.Tensor, prior: float) -> torch.Tensor:
    r"""Per cell, the more confident of two views of the same evidence (largest
    :math:`|\ell - \ell_0|`, ``b`` on ties): two views that share evidence must not be added."""
    return torch.where((a - prior).abs() > (b - prior).abs(), a, b)


#: Rules of :func:`fuse_received_logodds`.
GRID_FUSION_RULES: tuple[str, ...] = ("average", "max", "sum")


def fuse_received_logodds(
    own: torch.Tensor,
    env: torch.Tensor,
    dst: torch.Tensor,
    src: torch.Tensor,
    received: torch.Tensor,
    informative: torch.Tensor,
    rule: Literal["average", "max", "sum"],
    prior: float,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Fuse ``M`` received grid beliefs into their receivers' own, in one batched pass.

    Only *informative* cells take part: cells that arrived and differ from the prior (and,
    for ``average``, the receiver's own cells that differ from it). A cell at the prior
    (not sent, or never observed) carries no evidence, and averaging it in would drag the
    fused belief back to the prior.

    Rules, for receiver :math:`j` with received maps :math:`\hat\ell_i`, masks :math:`c_i`
    and weights :math:`w_{ji}` (:math:`w_{jj}` for itself):

    * ``average`` (conservative, a weighted geometric mean of the densities; the consensus
      step, :func:`weighted_logodds_average`): :math:`\ell_j \leftarrow \frac{w_{jj} c_j
      \ell_j + \sum_i w_{ji} c_i \hat\ell_i}{w_{jj} c_j + \sum_i w_{ji} c_i}` per cell
      (unchanged where no party is informed).
    * ``sum`` (independent log-odds product, :func:`independent_logodds_sum`):
      :math:`\ell_j \leftarrow \ell_j + \sum_i c_i(\hat\ell_i - \ell_0)`. Exact for
      independent evidence, but double counts what was exchanged before.
    * ``max``: per cell, the most confident of :math:`\ell_j` and the :math:`\hat\ell_i`
      (largest :math:`|\ell - \ell_0|`, the largest value among equally confident
      messages); idempotent, so repeated exchange never inflates it.

    Args:
        own: float ``[B, N, H, W]`` receivers' log-odds.
        env, dst, src: long ``[M]`` world, receiver and sender of each message.
        received: float ``[M, H, W]`` decoded log-odds (the prior where nothing arrived).
        informative: bool ``[M, H, W]``, cells that count as evidence.
        rule: ``"average"``, ``"sum"`` or ``"max"``.
        prior: :math:`\ell_0`.
        weights: float ``[B, N, N]`` ``w[b, j, i]`` (receiver ``j``, sender ``i``); required
            by ``average``.
    Returns:
        float ``[B, N, H, W]``.
    """
    check_choice("rule", rule, GRID_FUSION_RULES)
    check_tensor("own", own, ndim=4, dtypes=_FLOAT_DTYPES)
    b, n, h, w = own.shape
    m = env.shape[0] if isinstance(env, torch.Tensor) else -1
    for name, idx, high in (("env", env, b), ("dst", dst, n), ("src", src, n)):
        check_tensor(name, idx, shape=(m,), dtypes=(torch.long,))
        if m and bool(((idx < 0) | (idx >= high)).any()):
            raise ValueError(f"{name} holds indices outside [0, {high}); allowed: 0 .. {high - 1}")
    check_tensor("received", received, shape=(m, h, w), dtypes=(own.dtype,))
    check_tensor("informative", informative, shape=(m, h, w), dtypes=(torch.bool,))
    check_range("prior", prior, None, None)
    if rule == "average":
        if weights is None:
            raise ValueError("weights=None is not allowed with rule='average'; pass [B, N, N]")
        check_tensor("weights", weights, shape=(b, n, n), dtypes=_FLOAT_DTYPES, finite=True)
    return _fuse_received_logodds(
        own, env, dst, src, received, informative, rule, float(prior), weights
    )


def _fuse_received_logodds(
    own: torch.Tensor,
    env: torch.Tensor,
    dst: torch.Tensor,
    src: torch.Tensor,
    received: torch.Tensor,
    informative: torch.Tensor,
    rule: str,
    prior: float,
    weights: torch.Tensor | None,
) -> torch.Tensor:
    """:func:`fuse_received_logodds` without validation (``received`` and ``informative``
    may be ``[M, ...]`` of any trailing shape with ``H * W`` entries)."""
    b, n = own.shape[:2]
    cells = own[0, 0].numel()
    flat_own = own.reshape(b * n, cells)
    recv = env * n + dst
    est = received.reshape(-1, cells)
    mask = informative.reshape(-1, cells)
    if rule == "sum":
        out = flat_own.index_add(0, recv, torch.where(mask, est - prior, 0.0))
    elif rule == "average":
        wt = weights[env, dst, src].unsqueeze(1).to(own.dtype)
        w_self = torch.diagonal(weights, dim1=1, dim2=2).reshape(b * n, 1).to(own.dtype)
        w_self = torch.where(flat_own != prior, w_self, 0.0)
        num = (flat_own * w_self).index_add(0, recv, torch.where(mask, wt * est, 0.0))
        den = w_self.index_add(0, recv, torch.where(mask, wt, 0.0))
        out = torch.where(den > 0, num / den.clamp_min(1e-12), flat_own)
    else:
        conf = torch.where(mask, (est - prior).abs(), -1.0)
        idx = recv.unsqueeze(1).expand_as(conf)
        best = torch.full_like(flat_own, -1.0).scatter_reduce(0, idx, conf, "amax")
        # The winning message's value for each (receiver, cell): scatter values whose
        # confidence equals the best; ties hold equal confidence, take the largest value.
        win = mask & (conf == best[recv])
        cand = torch.where(win, est, -math.inf)
        val = torch.full_like(flat_own, -math.inf).scatter_reduce(0, idx, cand, "amax")
        out = torch.where(best > (flat_own - prior).abs(), val, flat_own)
    return out.reshape(own.shape)


def consensus_average(x: torch.Tensor, W: torch.Tensor, rounds: int) -> torch.Tensor:
    r"""``rounds`` steps of linear average consensus :math:`x_{t+1} = W x_t`.

    With a doubly stochastic ``W`` on a connected graph (e.g.
    :func:`agentcomm.topology.coordination.metropolis_weights`) the average is preserved and
    the disagreement :math:`\|x_t - \bar x\|` shrinks at least like :math:`\rho^t`, with
    :math:`\rho` the second largest eigenvalue modulus of ``W`` (Xiao & Boyd, "Fast linear
    iterations for distributed averaging", Systems & Control Letters 2004).

    Args:
        x: float ``[B, N, ...]`` each agent's value (log-odds grids ``[B, N, H, W]``, vectors).
        W: float ``[B, N, N]`` consensus weights; agent ``i`` mixes ``W[b, i, j] x[b, j]``.
        rounds: number of exchange rounds ``K >= 0``.
    Returns:
        float ``[B, N, ...]`` after ``K`` rounds, same dtype as ``x``.
    """
    check_tensor("x", x, min_ndim=2, dtypes=_FLOAT_DTYPES)
    b, n = x.shape[:2]
    check_tensor("W", W, shape=(b, n, n), dtypes=_FLOAT_DTYPES)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
        raise ValueError(f"rounds={rounds!r} must be an integer >= 0")
    # W^K by repeated squaring costs log2(K) small [B, N, N] products; applying W K times to
    # x would cost K products over all of x's trailing cells.
    wk = torch.linalg.matrix_power(W.to(x.dtype), rounds)
    return torch.bmm(wk, x.reshape(b, n, -1)).reshape(x.shape)


# --------------------------------------------------------------------------- Gaussians


def _check_gaussians(means: torch.Tensor, covs: torch.Tensor) -> None:
    check_tensor("means", means, min_ndim=2, dtypes=_FLOAT_DTYPES)
    m, d = means.shape[-2:]
    check_tensor("covs", covs, min_ndim=3, dtypes=(means.dtype,))
    try:
        ok = covs.shape[-3:] == (m, d, d)
        torch.broadcast_shapes(covs.shape[:-3], means.shape[:-2])
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(
            f"covs has shape {tuple(covs.shape)}; expected [..., M, d, d] = [..., {m}, {d}, {d}] "
            f"with batch dimensions broadcastable to means' {tuple(means.shape[:-2])}"
        )


def independent_gaussian_fusion(means: torch.Tensor, covs: torch.Tensor) -> GaussianBelief:
    r"""Naive fusion that assumes independent errors: add the information.

    :math:`P^{-1} = \sum_m P_m^{-1}`, :math:`P^{-1}\hat x = \sum_m P_m^{-1} x_m`. Optimal for
    independent estimates; overconfident (``P`` smaller than the true error covariance) when
    their errors are correlated. The baseline that :func:`covariance_intersection` fixes.

    Args:
        means: float ``[..., M, d]``.
        covs: float ``[..., M, d, d]``, positive definite; batch dimensions broadcast
            against ``means`` (e.g. one ``[M, d, d]`` set for many means).
    Returns:
        :class:`GaussianBelief` with ``mean [..., d]``, ``cov [..., d, d]``.
    """
    _check_gaussians(means, covs)
    ones = torch.ones(covs.shape[:-2], dtype=means.dtype, device=means.device)
    return _combine(means, torch.linalg.inv(covs), ones)


def _combine(means: torch.Tensor, info: torch.Tensor, omega: torch.Tensor) -> GaussianBelief:
    j = _info_sum(info, omega)
    cov = torch.linalg.inv(j)
    cov = 0.5 * (cov + cov.transpose(-1, -2))
    y = (omega[..., None] * (info @ means.unsqueeze(-1)).squeeze(-1)).sum(dim=-2)
    mean = (cov @ y.unsqueeze(-1)).squeeze(-1)
    return GaussianBelief(mean=mean, cov=cov.expand(*mean.shape, mean.shape[-1]))


def _info_sum(info: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    r""":math:`\sum_m \omega_m I_m` ``[..., d, d]`` of ``info [..., M, d, d]`` and
    ``omega [..., M]``."""
    return (omega.reshape(*omega.shape, 1, 1) * info).sum(dim=-3)


def _ci_objective(
    info: torch.Tensor,
    omega: torch.Tensor,
    criterion: str,
    j: torch.Tensor | None = None,
    p: torch.Tensor | None = None,
) -> torch.Tensor:
    """``tr P(omega)`` or ``log det P(omega)``, ``P(omega)^{-1} = sum_m omega_m info_m``;
    ``j`` (that sum) and ``p`` (its inverse) when the caller has them."""
    if criterion == "trace" and p is not None:
        return p.diagonal(dim1=-2, dim2=-1).sum(-1)
    if j is None:
        j = _info_sum(info, omega)
    if criterion == "trace":
        return torch.linalg.inv(j).diagonal(dim1=-2, dim2=-1).sum(-1)
    return -torch.linalg.slogdet(j).logabsdet


def _ci_gradient(
    info: torch.Tensor, omega: torch.Tensor, criterion: str, p: torch.Tensor | None = None
) -> torch.Tensor:
    r""":math:`\partial f/\partial\omega_m`: :math:`-\mathrm{tr}(P I_m P)` (trace) or
    :math:`-\mathrm{tr}(P I_m)` (log det), ``[..., M]``; ``p``: :math:`P(\omega)` when the
    caller has it."""
    if p is None:
        p = torch.linalg.inv(_info_sum(info, omega))
    if criterion == "trace":
        # P @ P as the one bmm that matmul runs for a batch of matrices, without its reshapes.
        flat = p.reshape(-1, *p.shape[-2:])
        p = torch.bmm(flat, flat).view(p.shape)
    return -(info * p.unsqueeze(-3).transpose(-1, -2)).sum(dim=(-2, -1))


class _DenseAlgebra:
    """The matrix operations the CI optimizers need, on dense ``[..., d, d]`` matrices;
    the weights are ``[..., M]`` (``m_dim = -1``), per-problem values ``[...]``.
    ``inv_ex`` returns the inverse and whether it exists, without a host sync;
    ``loop_inverse`` is the form of the inverse the optimizers carry (here the same)."""

    m_dim = -1
    info_sum = staticmethod(_info_sum)
    objective = staticmethod(_ci_objective)

    @staticmethod
    def inv_ex(j: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p, info = torch.linalg.inv_ex(j)
        return p, info == 0

    loop_inverse = inv_ex

    @staticmethod
    def descent(info: torch.Tensor, criterion: str, p: torch.Tensor) -> torch.Tensor:
        """Minus the gradient (:func:`_ci_gradient`) at the inverse ``p``, ``[..., M]``."""
        return -_ci_gradient(info, None, criterion, p)

    @staticmethod
    def trace(covs: torch.Tensor) -> torch.Tensor:
        return covs.diagonal(dim1=-2, dim2=-1).sum(-1)

    @staticmethod
    def shapes(info: torch.Tensor) -> tuple[int, tuple[int, ...]]:
        """``M`` and the problems' batch shape of a matrix set ``[..., M, d, d]``."""
        return info.shape[-3], tuple(info.shape[:-3])

    @staticmethod
    def per_weight(mask: torch.Tensor) -> torch.Tensor:
        return mask.unsqueeze(-1)

    @staticmethod
    def per_matrix(mask: torch.Tensor) -> torch.Tensor:
        return mask[..., None, None]


@functools.lru_cache(maxsize=16)
def _sym2_columns(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
    """The constant ``[3, 1]`` columns of :class:`_Sym2BlockAlgebra` (built once per dtype
    and device: no tensor is made, and nothing copied to the device, per call): the
    adjugate's signs, the diagonal and the gradient's weights (see ``__init__``)."""
    return tuple(
        torch.tensor(values, dtype=dtype, device=device)[:, None]
        for values in ((1.0, -1.0, 1.0), (1.0, 0.0, 1.0), (1.0, -2.0, 1.0))
    )


@functools.lru_cache(maxsize=16)
def _scalars(
    values: tuple[float, ...], dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, ...]:
    """0-dim tensors holding ``values``, cached per dtype and device: an op given one wraps
    no Python scalar into a new tensor per call (a few microseconds each), and computes
    the same (the scalar is rounded to ``dtype`` either way)."""
    return tuple(torch.tensor(v, dtype=dtype, device=device) for v in values)


class _Sym2BlockAlgebra:
    """The same operations on block-diagonal matrices of ``K`` symmetric 2 x 2 blocks
    ``[[a, b], [b, d]]``, stored batch-last: a matrix set is ``[M, K, 3, P]`` (``(a, b, d)``
    of ``P`` problems), a matrix ``[K, 3, P]``, the weights ``[M, 1, 1, P]`` (``m_dim =
    0``) and per-problem values ``[1, 1, P]``, shapes that broadcast against the matrices
    with no reshaping.

    Written out by hand because a 2 x 2 inverse is a few elementwise ops where the dense
    form calls LAPACK per matrix and ``bmm`` per product, and batch-last because every op is
    then one pass over ``P`` contiguous numbers: the dense form's reductions over
    dimensions of 4 or 5 and its softmax over ``M`` run several times slower per number.
    Few ops per iteration matter as much, for a handful of problems (one world) costs
    what torch's dispatch of each op costs.

    The optimizers carry each inverse as ``loop_inverse`` gives it, ``[d, b, a] / det``:
    the inverse ``[a', b', d']`` with its off-diagonal negated, ``[a', -b', d']``, one
    multiplication per step fewer. Its trace is the inverse's, and the gradient's weights
    of the off-diagonal carry the sign back, so every value they compute is the one the
    inverse itself gives, to the bit (negation is exact).
    """

    m_dim = 0

    def __init__(self, covs: torch.Tensor) -> None:
        """Constants for ``covs [M, K, 3, P]``, and the information ``info [M, K, 3, P]``."""
        columns = _sym2_columns(covs.dtype, covs.device)
        self._adjugate_sign, self._diagonal, inner = columns
        self._zero = _scalars((0.0,), covs.dtype, covs.device)[0]
        self.info = self.inverse(covs)
        # tr(I X) of symmetric blocks is a.x_a + 2 b.x_b + d.x_d: the gradient's weights,
        # the b weight negated for the loop inverse's negated off-diagonal.
        self._inner_info = self.info * inner

    @staticmethod
    def info_sum(info: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
        return (omega * info).sum(dim=0)

    def _adjugate_det(self, j: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each block's adjugate ``[d, -b, a]`` and determinant ``a d - b^2`` (kept dim)."""
        adj = j.flip(-2) * self._adjugate_sign
        return adj, (j * adj)[..., :2, :].sum(dim=-2, keepdim=True)

    def inverse(self, j: torch.Tensor) -> torch.Tensor:
        """:meth:`inv_ex`'s inverse alone (where whether it exists is not read)."""
        adj, det = self._adjugate_det(j)
        return adj / det

    def inv_ex(self, j: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        adj, det = self._adjugate_det(j)
        # A sum of positive semi-definite blocks is invertible exactly when every block's
        # determinant is positive (the comparison is False for nan as well).
        return adj / det, det.amin(dim=(-3, -2), keepdim=True) > self._zero

    def loop_inverse(self, j: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`inv_ex` with the off-diagonal negated (class docstring): ``[d, b, a] /
        det``, with ``det = d a - b^2`` the difference of the last two rows of ``[a d, b^2,
        d a]``, the very number :meth:`inv_ex`'s ``a d + (-b^2)`` is."""
        swapped = j.flip(-2)
        det = (j * swapped)[..., 1:, :].diff(dim=-2)
        return swapped / det, det.amin(dim=(-3, -2), keepdim=True) > self._zero

    def objective(self, info, omega, criterion, j=None, p=None) -> torch.Tensor:
        """``[..., 1, 1, P]`` of ``j`` or ``p`` ``[..., K, 3, P]`` (``p`` as :meth:`inv_ex`
        or :meth:`loop_inverse` gives it); ``j`` defaults to the sum of ``omega``."""
        if criterion == "trace" and p is not None:
            return self.trace(p)
        if j is None:
            j = self.info_sum(info, omega)
        if criterion == "trace":
            return self.trace(self.loop_inverse(j)[0])
        return -self._adjugate_det(j)[1].log().sum(dim=(-3, -2), keepdim=True)

    def descent(self, info: torch.Tensor, criterion: str, p: torch.Tensor) -> torch.Tensor:
        """Minus the gradient ``[M, 1, 1, P]`` (:func:`_ci_gradient`) of the information
        this algebra was built with (``info`` is that same set; its weighted form is kept
        from construction), at the loop inverse ``p`` ``[a', -b', d']``."""
        if criterion == "trace":  # P I_m P: the blocks of P^2, its b negated as in p
            a, b, d = p.unbind(-2)
            b2 = b * b
            p = torch.stack([a * a + b2, b * (a + d), d * d + b2], dim=-2)
        return (self._inner_info * p).sum(dim=(1, 2), keepdim=True)

    def trace(self, covs: torch.Tensor) -> torch.Tensor:
        return (covs * self._diagonal).sum(dim=(-3, -2), keepdim=True)

    @staticmethod
    def shapes(info: torch.Tensor) -> tuple[int, tuple[int, ...]]:
        """``M`` and the problems' shape ``(1, 1, P)`` of a matrix set ``[M, K, 3, P]``."""
        return info.shape[0], (1, 1, info.shape[-1])

    @staticmethod
    def per_weight(mask: torch.Tensor) -> torch.Tensor:
        return mask

    per_matrix = per_weight

    def combine(
        self, means: torch.Tensor, info: torch.Tensor, omega: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The fused ``mean [K, 2, P]`` and ``cov [K, 3, P]`` of ``means [M, K, 2, P]``."""
        p = self.inverse(self.info_sum(info, omega))
        x0, x1 = means.unbind(2)
        a, b, d = info.unbind(2)
        y = omega * torch.stack([a * x0 + b * x1, b * x0 + d * x1], dim=2)
        y0, y1 = y.sum(dim=0).unbind(1)
        a, b, d = p.unbind(1)
        return torch.stack([a * y0 + b * y1, b * y0 + d * y1], dim=1), p


def _block_tables(blocks: object, d: int) -> tuple[list[int], ...]:
    """The index tables of :func:`_blockwise_ci` (``blocks`` checked by
    :func:`_check_blocks`): the mean's entries in block order ``[2K]`` and the flat ``[d *
    d]`` indices of the blocks' ``(a, b, d)`` entries ``[3K]``, which gather the blocks; and
    the inverse maps that scatter them back, as gathers: each state entry's place among
    the ``2K`` block entries ``[d]``, and each covariance entry's row among the ``3K``
    ``(a, b, d)`` rows and one zero row (row ``3K``, entries outside the blocks) ``[d * d]``."""
    mean_idx, sym, _ = _check_blocks(blocks, d)
    rows = {}
    for k, (i, j) in enumerate(blocks):  # type: ignore[arg-type]
        rows.update({(i, i): 3 * k, (i, j): 3 * k + 1, (j, i): 3 * k + 1, (j, j): 3 * k + 2})
    mean_rows = [mean_idx.index(s) for s in range(d)]
    cov_rows = [rows.get(divmod(q, d), len(sym)) for q in range(d * d)]
    return mean_idx, sym, mean_rows, cov_rows


@functools.lru_cache(maxsize=16)
def _block_indices(
    blocks: tuple[tuple[int, int], ...], d: int, device: torch.device
) -> tuple[torch.Tensor, ...]:
    """:func:`_block_tables` as long tensors on ``device``, checked and built once per
    hashable ``blocks`` (a tuple of tuples, the usual form): a constant argument is not
    validated again, nor an index list copied to the device, per call."""
    return tuple(torch.tensor(t, dtype=torch.long, device=device) for t in _block_tables(blocks, d))


def _check_blocks(blocks: object, d: int) -> tuple[list[int], list[int], list[int]]:
    """``blocks``' mean indices ``[2K]``, the flat ``[d * d]`` indices of the blocks'
    ``(a, b, d)`` entries ``[3K]`` and of all four entries ``[4K]``."""
    ok = isinstance(blocks, (tuple, list)) and all(
        isinstance(blk, (tuple, list))
        and len(blk) == 2
        and all(isinstance(i, int) and not isinstance(i, bool) for i in blk)
        for blk in blocks
    )
    if not ok or sorted(i for blk in blocks for i in blk) != list(range(d)):  # type: ignore[union-attr]
        raise ValueError(
            f"blocks={blocks!r} must be pairs of state indices that partition range({d}), "
            "e.g. ((0, 2), (1, 3)) for a [x, y, vx, vy] state"
        )
    mean_idx = [i for blk in blocks for i in blk]  # type: ignore[union-attr]
    sym = [k for i, j in blocks for k in (i * d + i, i * d + j, j * d + j)]  # type: ignore[union-attr]
    full = [k for i, j in blocks for k in (i * d + i, i * d + j, j * d + i, j * d + j)]  # type: ignore[union-attr]
    return mean_idx, sym, full


def covariance_intersection(
    means: torch.Tensor,
    covs: torch.Tensor,
    criterion: Literal["trace", "det"] = "trace",
    iterations: int = 60,
    blocks: tuple[tuple[int, int], ...] | None = None,
) -> tuple[GaussianBelief, torch.Tensor]:
    r"""Covariance intersection (Julier & Uhlmann, ACC 1997): consistent fusion of estimates
    with unknown cross-correlation.

    .. math::

        P^{-1} = \sum_m \omega_m P_m^{-1},\qquad P^{-1}\hat x = \sum_m \omega_m P_m^{-1} x_m,
        \qquad \omega \in \Delta^{M-1}.

    *Any* :math:`\omega` on the simplex gives a consistent estimate (``P`` bounds the true
    error covariance whatever the correlation); :math:`\omega` is chosen to minimize
    :math:`\mathrm{tr}\,P` or :math:`\log\det P`, both convex in :math:`\omega`.

    * ``M == 2``: a batched golden-section search on :math:`\omega_1 \in [0, 1]`
      (``iterations`` steps shrink the bracket to :math:`0.618^{\text{iterations}}`).
    * ``M > 2``: no closed form exists. We start from the fast-CI weights of Niehsen
      (FUSION 2002), :math:`\omega_m \propto 1/\mathrm{tr}\,P_m`, and run ``iterations``
      steps of exponentiated-gradient (mirror) descent on the simplex with a normalized,
      decaying step, keeping the best iterate. Why: the objective is convex, every step is
      a batched ``[..., M, d, d]`` computation with a fixed count (no data-dependent loop),
      the simplex constraint holds by construction, and keeping the best iterate makes the
      result never worse than Niehsen's closed form (which alone can be far from optimal
      when the covariances differ in shape rather than size).

    Independent axes: when every covariance is block diagonal over the same pairs of state
    dimensions (a constant-velocity track ``[x, y, vx, vy]`` has independent x and y axes,
    ``blocks=((0, 2), (1, 3))``), pass ``blocks`` and every matrix is handled as its 2 x 2
    blocks with closed-form inverses: the same fusion (one :math:`\omega` for all blocks,
    up to float rounding) several times faster. Entries outside the blocks are not read
    and come back zero.

    Args:
        means: float ``[..., M, d]``.
        covs: float ``[..., M, d, d]``, positive definite, same dtype; batch dimensions
            broadcast against ``means``, and :math:`\omega` is optimized once per
            covariance set (e.g. one ``[M, d, d]`` set for many means).
        criterion: ``"trace"`` or ``"det"``.
        iterations: optimizer steps, >= 1.
        blocks: ``None``, or pairs of state indices partitioning ``range(d)`` over which
            ``covs`` are block diagonal.
    Returns:
        ``(belief, omega)``: the fused :class:`GaussianBelief` (``mean [..., d]``,
        ``cov [..., d, d]``) and the weights ``omega [..., M]`` (non-negative, summing to 1).
    """
    check_choice("criterion", criterion, ("trace", "det"))
    _check_gaussians(means, covs)
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations={iterations!r} must be an integer >= 1")
    if blocks is not None:
        return _blockwise_ci(means, covs, criterion, iterations, blocks)
    m = means.shape[-2]
    info = torch.linalg.inv(covs)
    info = 0.5 * (info + info.transpose(-1, -2))
    omega = _ci_weights(covs, info, criterion, iterations, _DenseAlgebra)
    fused = _combine(means, info, omega)
    return fused, omega.expand(*fused.mean.shape[:-1], m)


def _blockwise_ci(
    means: torch.Tensor,
    covs: torch.Tensor,
    criterion: str,
    iterations: int,
    blocks: tuple[tuple[int, int], ...],
) -> tuple[GaussianBelief, torch.Tensor]:
    m, d = means.shape[-2:]
    try:
        mean_idx, sym_idx, mean_rows, cov_rows = _block_indices(blocks, d, means.device)
    except TypeError:  # unhashable blocks (lists): checked per call, tensors cached per device
        mean_idx, sym_idx, mean_rows, cov_rows = (
            _constant(tuple(idx), torch.long, means.device) for idx in _block_tables(blocks, d)
        )
    k = mean_idx.numel() // 2
    batch = torch.broadcast_shapes(means.shape[:-2], covs.shape[:-3])
    # Batch-last [M, K, 3, P] and [M, K, 2, P] (see _Sym2BlockAlgebra).
    sym = covs.flatten(-2)[..., sym_idx].expand(*batch, m, 3 * k).reshape(-1, m, k, 3)
    x = means[..., mean_idx].expand(*batch, m, 2 * k).reshape(-1, m, k, 2)
    sym, x = sym.permute(1, 2, 3, 0).contiguous(), x.permute(1, 2, 3, 0).contiguous()
    algebra = _Sym2BlockAlgebra(sym)
    info = algebra.info
    omega = _ci_weights(sym, info, criterion, iterations, algebra)
    mean_blocks, cov_blocks = algebra.combine(x, info, omega)
    # Back to contiguous [..., d] and [..., d, d] by one gather each (the covariance's
    # entries outside the blocks from an appended zero row).
    mean = mean_blocks.flatten(0, 1).index_select(0, mean_rows).T.contiguous().view(*batch, d)
    cov_rows_zero = torch.cat([cov_blocks.flatten(0, 1), cov_blocks.new_zeros(1, sym.shape[-1])])
    cov = cov_rows_zero.index_select(0, cov_rows).T.contiguous().view(*batch, d, d)
    omega = omega.view(m, -1).T.reshape(*batch, m)
    return GaussianBelief(mean=mean, cov=cov), omega


def _ci_weights(
    covs: torch.Tensor, info: torch.Tensor, criterion: str, iterations: int, algebra
) -> torch.Tensor:
    """CI's ``omega [..., M]`` (:func:`covariance_intersection`) in ``algebra``'s matrices."""
    m, batch = algebra.shapes(info)
    if m == 1:
        return info.new_ones(batch).unsqueeze(algebra.m_dim)
    if m == 2:
        return _golden_section_omega(info, criterion, iterations, algebra)
    return _mirror_descent_omega(covs, info, criterion, iterations, algebra)


def _golden_section_omega(
    info: torch.Tensor, criterion: str, iterations: int, algebra
) -> torch.Tensor:
    # Hand-written rather than scipy.optimize: scipy's scalar minimizers take one problem at a
    # time, and here every batch entry runs the same fixed number of steps in one tensor op.
    dim = algebra.m_dim
    batch = algebra.shapes(info)[1]
    one, inv_phi = _scalars((1.0, _INV_PHI), info.dtype, info.device)

    def f(w1: torch.Tensor) -> torch.Tensor:
        return algebra.objective(info, torch.stack([w1, one - w1], dim=dim), criterion)

    lo = info.new_zeros(batch)
    hi = info.new_ones(batch)
    c = hi - inv_phi * (hi - lo)
    d = lo + inv_phi * (hi - lo)
    fc, fd = f(c), f(d)
    for _ in range(iterations):
        left = fc < fd  # the minimum lies in [lo, d]
        lo = torch.where(left, lo, c)
        hi = torch.where(left, d, hi)
        step = inv_phi * (hi - lo)
        new = torch.where(left, hi - step, lo + step)
        fnew = f(new)
        c, d, fc, fd = (
            torch.where(left, new, d),
            torch.where(left, c, new),
            torch.where(left, fnew, fd),
            torch.where(left, fc, fnew),
        )
    w1 = 0.5 * (lo + hi)
    return torch.stack([w1, one - w1], dim=dim)


@functools.lru_cache(maxsize=16)
def _step_sizes(
    iterations: int, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, ...]:
    r"""Mirror descent's steps :math:`1/\sqrt{t + 1}`, ``t < iterations``, as cached 0-dim
    tensors (:func:`_scalars`)."""
    return _scalars(tuple(1.0 / math.sqrt(t + 1.0) for t in range(iterations)), dtype, device)


def _mirror_descent_omega(
    covs: torch.Tensor, info: torch.Tensor, criterion: str, iterations: int, algebra
) -> torch.Tensor:
    dim = algebra.m_dim
    inv_tr = 1.0 / algebra.trace(covs)
    omega = inv_tr / inv_tr.sum(dim=dim, keepdim=True)
    # Each iterate's information sum (and, for the trace, its inverse) serves both its
    # objective and the next step's gradient: the very tensors the objective and the
    # gradient would compute, formed once.
    j = algebra.info_sum(info, omega)
    p = algebra.loop_inverse(j)[0]
    # The iterates and their objectives; the best is picked once, after the loop.
    omegas, values = [omega], [algebra.objective(info, omega, criterion, j, p)]
    steps = _step_sizes(iterations, info.dtype, info.device)
    tiny = torch.finfo(info.dtype).tiny
    m = _scalars((float(algebra.shapes(info)[0]),), info.dtype, info.device)[0]
    for t in range(iterations):
        # The descent direction, minus the gradient: negating it only flips signs, exactly,
        # so the step below is the one a gradient g gives, to the bit. In place where the
        # tensor is this step's own and autograd keeps no copy of it (the weights stay
        # differentiable in the covariances).
        g = algebra.descent(info, criterion, p)
        # Only the gradient's differences matter on the simplex; dividing by its spread makes
        # the step scale-free (covariances in m^2 or km^2 behave the same).
        g = g.sub_(g.sum(dim=dim, keepdim=True).div_(m))  # the mean, as torch computes it
        g = (g / g.abs().amax(dim=dim, keepdim=True).clamp_min(tiny)).mul_(steps[t])
        trial = torch.softmax(omega.clamp_min(1e-30).log().add_(g), dim=dim)
        j_trial = algebra.info_sum(info, trial)
        # The inverse reports a singular sum instead of raising (no host sync): a step that
        # drives the weight of the only track informative in some direction to zero
        # (float underflow, e.g. very precise sensors) is rejected, and the descent goes on
        # from the last iterate whose information sum is invertible.
        p_trial, ok = algebra.loop_inverse(j_trial)
        omega = torch.where(algebra.per_weight(ok), trial, omega)
        if criterion == "det":  # the trace's objective reads only p
            j = torch.where(algebra.per_matrix(ok), j_trial, j)
        p = torch.where(algebra.per_matrix(ok), p_trial, p)
        omegas.append(omega)
        values.append(algebra.objective(info, omega, criterion, j, p))
    return _first_best(omegas, torch.stack(values), algebra)


@functools.lru_cache(maxsize=16)
def _positions(
    n: int, ndim: int, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``[n, 1, ..., 1]`` (``ndim`` dimensions) holding ``0 .. n - 1``, and ``n`` (0-dim),
    as floats (exact integers: a float minimum runs vectorized, a long one does not), made
    once per shape, dtype and device."""
    positions = torch.arange(n, dtype=dtype, device=device).view(n, *([1] * (ndim - 1)))
    return positions, torch.tensor(n, dtype=dtype, device=device)


def _first_best(omegas: list[torch.Tensor], values: torch.Tensor, algebra) -> torch.Tensor:
    """The iterate a running ``if f < best: best = omega`` over ``omegas`` (weights as
    ``algebra`` lays them out) and their objective ``values`` (stacked, ``[I, ...]``) would
    keep, picked once rather than per step: the first of the smallest values, where a nan
    is never better and a nan first value is never replaced (it counts as -inf, later
    ones as +inf)."""
    inf = math.inf
    f = values.nan_to_num(nan=inf, posinf=inf, neginf=-inf)
    f[0] = values[0].nan_to_num(nan=-inf, posinf=inf, neginf=-inf)
    # The first position holding the smallest value, as the smallest of those positions
    # (argmin over the leading dimension runs about 10x slower for thousands of problems).
    positions, count = _positions(f.shape[0], f.ndim, f.dtype, f.device)
    first = torch.where(f == f.amin(dim=0, keepdim=True), positions, count).amin(dim=0).long()
    index = first.unsqueeze(algebra.m_dim).unsqueeze(0).expand(1, *omegas[0].shape)
    return torch.stack(omegas).gather(0, index).squeeze(0)
