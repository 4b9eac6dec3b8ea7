"""Confidence intervals for success rates, and the interquartile mean.

A success rate is a fraction of *episodes*, so episodes, not seeds, are the units its
uncertainty is counted in: a point of the main job is a few seeds of many episodes each,
and an interval built from the few per-seed rates (a bootstrap over three seeds spans
their minimum to their maximum) ignores the binomial noise inside every seed and is
far too narrow. Here the counts are pooled over seeds:

* :func:`wilson_interval`: the Wilson score interval of the pooled count (Wilson 1927;
  Brown, Cai & DasGupta, "Interval estimation for a binomial proportion", Stat. Sci.
  2001). Closed form, stays inside [0, 1] and keeps close to its nominal coverage at
  small n and near 0 or 1, where the Wald interval collapses.
* :func:`stratified_episode_bootstrap`: a percentile bootstrap that resamples episodes
  within each seed, for a cross-check that keeps the per-seed structure.

:func:`iqm` (Agarwal et al., NeurIPS 2021) is for many runs of a continuous score; with
fewer than four values it trims nothing, so it refuses them.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["iqm", "stratified_episode_bootstrap", "wilson_interval"]


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50 % of all scores (25 % trimmed each side).

    Args:
        scores: any shape, flattened; at least 4 values, since below that the 25 % cut
            removes nothing and the "IQM" would just be the mean.
    """
    flat = np.asarray(scores, dtype=np.float64).ravel()
    if flat.size < 4:
        raise ValueError(
            f"scores has {flat.size} values; the IQM needs at least 4 (fewer trim nothing)"
        )
    return float(stats.trim_mean(flat, 0.25))


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence} is out of range; allowed: (0, 1)")


def _counts(successes: object, n: object, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate integer counts ``0 <= successes <= n``, ``n >= 1`` (any broadcastable shapes)."""
    k = np.asarray(successes, dtype=np.float64)
    m = np.asarray(n, dtype=np.float64)
    if not (np.all(np.isfinite(m)) and np.all(m == np.round(m)) and np.all(m >= 1)):
        raise ValueError(f"{what}={n!r} is not allowed; allowed: integers >= 1")
    if not (np.all(np.isfinite(k)) and np.all(k == np.round(k))):
        raise ValueError(f"successes={successes!r} is not allowed; allowed: integers")
    if np.any(k < 0) or np.any(k > m):
        raise ValueError(f"successes={successes!r} is not allowed; allowed: 0 <= successes <= n")
    return k, m


def wilson_interval(
    successes: int | np.ndarray, n: int | np.ndarray, confidence: float = 0.95
) -> tuple[float, float, float] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Wilson score interval for a binomial proportion.

    With :math:`\hat p = k/n` and :math:`z` the :math:`(1 + c)/2` normal quantile,

    .. math::
        \frac{\hat p + z^2/(2n)}{1 + z^2/n} \pm
        \frac{z}{1 + z^2/n}\sqrt{\frac{\hat p(1-\hat p)}{n} + \frac{z^2}{4n^2}}.

    Args:
        successes: successful episodes ``k``, integers in ``[0, n]`` (scalar or array).
        n: episodes, integers ``>= 1``; broadcasts against ``successes``.
        confidence: interval mass, in (0, 1).
    Returns:
        ``(p_hat, low, high)``: floats for scalar inputs, arrays of the broadcast shape
        otherwise.
    """
    _check_confidence(confidence)
    k, m = _counts(successes, n, "n")
    z = float(stats.norm.ppf(0.5 + confidence / 2.0))
    p = k / m
    z2n = z * z / m
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z / (1.0 + z2n) * np.sqrt(p * (1.0 - p) / m + z2n / (4.0 * m))
    # At k = 0 (k = n) the low (high) end is exactly 0 (1); set it rather than keep the
    # rounding error of the difference.
    low = np.where(k == 0, 0.0, np.clip(centre - half, 0.0, 1.0))
    high = np.where(k == m, 1.0, np.clip(centre + half, 0.0, 1.0))
    if p.ndim == 0:
        return float(p), float(low), float(high)
    return p, low, high


def stratified_episode_bootstrap(
    successes_per_seed: np.ndarray,
    episodes_per_seed: np.ndarray,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Percentile bootstrap of the pooled success rate, resampling episodes within each seed.

    Resampling ``n_s`` of a seed's 0/1 episode outcomes with replacement has the same
    distribution as one binomial draw ``Binomial(n_s, k_s / n_s)``, so each replicate is
    one such draw per seed (all replicates at once, ``[reps, seeds]``). A point whose
    every episode succeeded (or failed) gets a zero-width interval, as any percentile
    bootstrap of a proportion does; :func:`wilson_interval` does not have that failure.

    Args:
        successes_per_seed: ``[seeds]`` successful episodes of each seed (integers).
        episodes_per_seed: ``[seeds]`` episodes of each seed (integers >= 1).
        reps: bootstrap replicates, >= 1.
        confidence: interval mass, in (0, 1).
        seed: seeds the resampling (same inputs and seed -> same interval).
    Returns:
        ``(pooled rate, low, high)``.
    """
    _check_confidence(confidence)
    if reps < 1:
        raise ValueError(f"reps={reps} is not allowed; allowed: integers >= 1")
    shapes = np.shape(successes_per_seed), np.shape(episodes_per_seed)
    if len(shapes[0]) != 1 or shapes[0] != shapes[1] or shapes[0][0] == 0:
        raise ValueError(
            f"successes_per_seed has shape {shapes[0]} and episodes_per_seed {shapes[1]}; "
            "allowed: two 1-D arrays of the same length >= 1"
        )
    k, m = _counts(successes_per_seed, episodes_per_seed, "episodes_per_seed")
    rng = np.random.default_rng(seed)
    draws = rng.binomial(m.astype(np.int64), k / m, size=(reps, k.size))
    pooled = draws.sum(axis=1) / m.sum()
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(pooled, [alpha, 1.0 - alpha])
    return float(k.sum() / m.sum()), float(low), float(high)
