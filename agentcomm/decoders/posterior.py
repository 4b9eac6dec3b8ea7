r"""The posterior-mean belief of a sampling receiver, and how to score a belief.

A diffusion receiver draws maps :math:`\ell_1, \dots, \ell_S` from (an
approximation of) the posterior of the sender's log-odds given what arrived.
What the receiver should act on is not one of them but the *posterior-mean
belief*: the probability that a cell holds a victim given the message,

.. math::
    \bar p = \frac1S \sum_{s=1}^S \sigma(\ell_s), \qquad
    \bar\ell = \mathrm{clip}\big(\mathrm{logit}\,\bar p,\ -L,\ L\big),

since :math:`P(\text{victim} \mid y) = E[\sigma(\ell) \mid y]` when the sender's
belief is calibrated. Averaging probabilities (not log-odds) keeps a cell that
half the samples call occupied at about 1/2 instead of at the mean log-odds. The
sample variance of :math:`\sigma(\ell_s)` is the receiver's per-cell uncertainty
about the sender's belief (it shrinks as the SNR grows).

Scores against the true occupancy: :func:`cross_entropy_bits` (the log loss,
lower is better; a calibrated belief minimises it among beliefs with the same
information) and :func:`reliability` (the data of a reliability diagram).

Shape legend: ``M`` messages, ``S`` samples, ``H x W`` grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from agentcomm._checks import check_range, check_tensor

__all__ = ["PosteriorBelief", "cross_entropy_bits", "posterior_belief", "reliability"]


@dataclass
class PosteriorBelief:
    """The posterior-mean belief of ``M`` messages.

    Attributes:
        logodds: float ``[M, ...]``, :math:`\\mathrm{logit}\\,\\bar p` clipped to ``[-L, L]`` (nats).
        prob: float ``[M, ...]``, :math:`\\bar p` in ``[0, 1]``.
        variance: float ``[M, ...]``, the unbiased sample variance of :math:`\\sigma(\\ell_s)`
            over the ``S`` samples (zeros when ``S = 1``: one sample shows no spread).
        samples: ``S``.
    """

    logodds: torch.Tensor
    prob: torch.Tensor
    variance: torch.Tensor
    samples: int


def posterior_belief(samples: torch.Tensor, clip: float) -> PosteriorBelief:
    """Posterior-mean belief of sampled log-odds maps (module docstring).

    Args:
        samples: float ``[M, S, ...]`` sampled log-odds (nats), ``S >= 1``.
        clip: the log-odds bound ``L > 0`` of the result.
    Returns:
        :class:`PosteriorBelief` over ``[M, ...]``.
    """
    check_tensor("samples", samples, finite=True)
    if samples.dim() < 2 or samples.shape[1] < 1:
        raise ValueError(f"samples must be [M, S, ...] with S >= 1; got {tuple(samples.shape)}")
    check_range("clip", clip, 0.0, None, low_inclusive=False)
    s = samples.shape[1]
    p = torch.sigmoid(samples.float())
    mean = p.mean(dim=1)
    var = p.var(dim=1) if s > 1 else torch.zeros_like(mean)
    logodds = torch.logit(mean, eps=1e-12).clamp(-clip, clip).to(samples.dtype)
    return PosteriorBelief(logodds=logodds, prob=mean, variance=var, samples=s)


def cross_entropy_bits(logodds: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Mean per-cell cross-entropy (log loss) of a belief against the true occupancy, in bits.

    :math:`-\\frac{1}{|C|}\\sum_c \\big[z_c \\log_2 \\sigma(\\ell_c) + (1 - z_c)\\log_2 \\sigma(-\\ell_c)\\big]`,
    computed from log-odds (stable for confident cells).

    Args:
        logodds: float ``[...]`` beliefs (nats).
        truth: bool or {0, 1} ``[...]`` of the same shape, where the victims are.
    Returns:
        float scalar tensor (bits per cell).
    """
    check_tensor("logodds", logodds, finite=True)
    if truth.shape != logodds.shape:
        raise ValueError(
            f"truth has shape {tuple(truth.shape)}; it must match logodds {tuple(logodds.shape)}"
        )
    z = truth.to(logodds.dtype)
    nll = -(z * F.logsigmoid(logodds) + (1 - z) * F.logsigmoid(-logodds))
    return nll.mean() / math.log(2)


def reliability(
    prob: torch.Tensor,
    truth: torch.Tensor,
    bins: int = 10,
    edges: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Reliability-diagram data: predicted probability bins vs empirical occupancy frequency.

    Args:
        prob: float ``[...]`` predicted probabilities in ``[0, 1]``.
        truth: bool ``[...]``, the true occupancy, same shape.
        bins: equal-width bins on ``[0, 1]`` (ignored when ``edges`` is given).
        edges: float ``[bins + 1]`` increasing bin edges from 0 to 1, e.g. log-spaced ones
            where almost every cell is near a small prior (equal-width bins then put nearly
            all cells into the first bin and show nothing).
    Returns:
        ``{"predicted", "observed", "count"}``, each ``[bins]``: the mean predicted
        probability, the fraction of occupied cells, and the cells, per bin (NaN where a
        bin is empty).
    """
    if truth.shape != prob.shape:
        raise ValueError(
            f"truth has shape {tuple(truth.shape)}; it must match prob {tuple(prob.shape)}"
        )
    p = prob.detach().flatten().double()
    z = truth.flatten().double()
    if edges is None:
        check_range("bins", bins, 1, None)
        idx = (p * bins).long().clamp(0, bins - 1)
    else:
        e = edges.detach().double().cpu()
        if e.dim() != 1 or e.numel() < 2 or e[0] != 0 or e[-1] != 1 or bool((e.diff() <= 0).any()):
            raise ValueError(
                f"edges={e.tolist()} is not allowed; allowed: a 1-D increasing tensor of at "
                "least 2 values from 0 to 1"
            )
        bins = e.numel() - 1
        idx = (torch.bucketize(p, e.to(p.device), right=True) - 1).clamp(0, bins - 1)
    count = torch.zeros(bins, dtype=torch.float64).index_add_(0, idx, torch.ones_like(p))
    psum = torch.zeros(bins, dtype=torch.float64).index_add_(0, idx, p)
    zsum = torch.zeros(bins, dtype=torch.float64).index_add_(0, idx, z)
    nan = torch.full_like(count, float("nan"))
    ok = count > 0
    return {
        "predicted": torch.where(ok, psum / count.clamp_min(1), nan),
        "observed": torch.where(ok, zsum / count.clamp_min(1), nan),
        "count": count,
    }
