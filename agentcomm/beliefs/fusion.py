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

import math
from typing import Literal

import torch

from agentcomm._checks import check_choice, check_range, check_tensor
from agentcomm.beliefs.gaussian import GaussianBelief

__all__ = [
    "consensus_average",
    "covariance_intersection",
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
    m = received.shape[-3]
    return own + received.sum(dim=-3) - m * l0


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
    mask = delivered[..., None, None].to(logodds.dtype)
    count = mask.sum(dim=1)  # [B, 1, 1]
    if method == "product":
        per_agent_l0 = l0.unsqueeze(-3) if l0.ndim == 3 else l0
        return l0 + (mask * (logodds - per_agent_l0)).sum(dim=1)
    mean = (mask * logodds).sum(dim=1) / count.clamp_min(1.0)
    return torch.where(count > 0, mean, l0)


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
    j = (omega[..., None, None] * info).sum(dim=-3)
    cov = torch.linalg.inv(j)
    cov = 0.5 * (cov + cov.transpose(-1, -2))
    y = (omega[..., None] * (info @ means.unsqueeze(-1)).squeeze(-1)).sum(dim=-2)
    mean = (cov @ y.unsqueeze(-1)).squeeze(-1)
    return GaussianBelief(mean=mean, cov=cov.expand(*mean.shape, mean.shape[-1]))


def _ci_objective(
    info: torch.Tensor,
    omega: torch.Tensor,
    criterion: str,
    j: torch.Tensor | None = None,
    p: torch.Tensor | None = None,
) -> torch.Tensor:
    """``tr P(omega)`` or ``log det P(omega)``, ``P(omega)^{-1} = sum_m omega_m info_m``;
    ``j`` (that sum) and ``p`` (its inverse) when the caller has them."""
    if j is None:
        j = (omega[..., None, None] * info).sum(dim=-3)
    if criterion == "trace":
        p = torch.linalg.inv(j) if p is None else p
        return p.diagonal(dim1=-2, dim2=-1).sum(-1)
    return -torch.linalg.slogdet(j).logabsdet


def _ci_gradient(
    info: torch.Tensor, omega: torch.Tensor, criterion: str, p: torch.Tensor | None = None
) -> torch.Tensor:
    r""":math:`\partial f/\partial\omega_m`: :math:`-\mathrm{tr}(P I_m P)` (trace) or
    :math:`-\mathrm{tr}(P I_m)` (log det), ``[..., M]``; ``p``: :math:`P(\omega)` when the
    caller has it."""
    if p is None:
        p = torch.linalg.inv((omega[..., None, None] * info).sum(dim=-3))
    p = p.unsqueeze(-3)
    weight = p @ p if criterion == "trace" else p
    return -(info * weight.transpose(-1, -2)).sum(dim=(-2, -1))


def covariance_intersection(
    means: torch.Tensor,
    covs: torch.Tensor,
    criterion: Literal["trace", "det"] = "trace",
    iterations: int = 60,
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

    Args:
        means: float ``[..., M, d]``.
        covs: float ``[..., M, d, d]``, positive definite, same dtype; batch dimensions
            broadcast against ``means``, and :math:`\omega` is optimized once per
            covariance set (e.g. one ``[M, d, d]`` set for many means).
        criterion: ``"trace"`` or ``"det"``.
        iterations: optimizer steps, >= 1.
    Returns:
        ``(belief, omega)``: the fused :class:`GaussianBelief` (``mean [..., d]``,
        ``cov [..., d, d]``) and the weights ``omega [..., M]`` (non-negative, summing to 1).
    """
    check_choice("criterion", criterion, ("trace", "det"))
    _check_gaussians(means, covs)
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations={iterations!r} must be an integer >= 1")
    m = means.shape[-2]
    info = torch.linalg.inv(covs)
    info = 0.5 * (info + info.transpose(-1, -2))
    if m == 1:
        omega = torch.ones(covs.shape[:-2], dtype=means.dtype, device=means.device)
    elif m == 2:
        omega = _golden_section_omega(info, criterion, iterations)
    else:
        omega = _mirror_descent_omega(covs, info, criterion, iterations)
    fused = _combine(means, info, omega)
    return fused, omega.expand(*fused.mean.shape[:-1], m)


def _golden_section_omega(info: torch.Tensor, criterion: str, iterations: int) -> torch.Tensor:
    # Hand-written rather than scipy.optimize: scipy's scalar minimizers take one problem at a
    # time, and here every batch entry runs the same fixed number of steps in one tensor op.
    batch = info.shape[:-3]
    kw = {"dtype": info.dtype, "device": info.device}

    def f(w1: torch.Tensor) -> torch.Tensor:
        return _ci_objective(info, torch.stack([w1, 1.0 - w1], dim=-1), criterion)

    lo = torch.zeros(batch, **kw)
    hi = torch.ones(batch, **kw)
    c = hi - _INV_PHI * (hi - lo)
    d = lo + _INV_PHI * (hi - lo)
    fc, fd = f(c), f(d)
    for _ in range(iterations):
        left = fc < fd  # the minimum lies in [lo, d]
        lo = torch.where(left, lo, c)
        hi = torch.where(left, d, hi)
        new = torch.where(left, hi - _INV_PHI * (hi - lo), lo + _INV_PHI * (hi - lo))
        fnew = f(new)
        c, d, fc, fd = (
            torch.where(left, new, d),
            torch.where(left, c, new),
            torch.where(left, fnew, fd),
            torch.where(left, fc, fnew),
        )
    w1 = 0.5 * (lo + hi)
    return torch.stack([w1, 1.0 - w1], dim=-1)


def _mirror_descent_omega(
    covs: torch.Tensor, info: torch.Tensor, criterion: str, iterations: int
) -> torch.Tensor:
    inv_tr = 1.0 / covs.diagonal(dim1=-2, dim2=-1).sum(-1)
    omega = inv_tr / inv_tr.sum(dim=-1, keepdim=True)
    # Each iterate's information sum (and, for the trace, its inverse) serves both its
    # objective and the next step's gradient: the very tensors _ci_objective and
    # _ci_gradient would compute, formed once.
    j = (omega[..., None, None] * info).sum(dim=-3)
    p = torch.linalg.inv(j)
    best, best_f = omega, _ci_objective(info, omega, criterion, j, p)
    for t in range(iterations):
        g = _ci_gradient(info, omega, criterion, p)
        # Only the gradient's differences matter on the simplex; dividing by its spread makes
        # the step scale-free (covariances in m^2 or km^2 behave the same).
        g = g - g.mean(dim=-1, keepdim=True)
        g = g / g.abs().amax(dim=-1, keepdim=True).clamp_min(torch.finfo(g.dtype).tiny)
        step = 1.0 / math.sqrt(t + 1.0)
        omega = torch.softmax(torch.log(omega.clamp_min(1e-30)) - step * g, dim=-1)
        j = (omega[..., None, None] * info).sum(dim=-3)
        p = torch.linalg.inv(j)
        fo = _ci_objective(info, omega, criterion, j, p)
        better = fo < best_f
        best = torch.where(better.unsqueeze(-1), omega, best)
        best_f = torch.where(better, fo, best_f)
    return best
