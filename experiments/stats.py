"""Aggregation across seeds: interquartile mean and stratified bootstrap confidence
intervals (Agarwal et al., "Deep RL at the edge of the statistical precipice",
NeurIPS 2021; the protocol rliable and BenchMARL use).

Written with numpy/scipy rather than depending on ``rliable``, which pins an old
arch/numpy stack; the two functions below are all the protocol needs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats

__all__ = ["iqm", "stratified_bootstrap_ci"]


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50 % of all scores (25 % trimmed each side).

    Args:
        scores: any shape; flattened.
    """
    flat = np.asarray(scores, dtype=np.float64).ravel()
    if flat.size == 0:
        raise ValueError("scores is empty; the IQM needs at least one score")
    return float(stats.trim_mean(flat, 0.25))


def _iqm_rows(x: np.ndarray) -> np.ndarray:
    """IQM of every row of ``[R, n]`` at once (the same trimming as ``trim_mean(., 0.25)``)."""
    n = x.shape[1]
    cut = int(0.25 * n)
    return np.sort(x, axis=1)[:, cut : n - cut].mean(axis=1)


def stratified_bootstrap_ci(
    scores: np.ndarray,
    statistic: Callable[[np.ndarray], float] = iqm,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Point estimate and percentile confidence interval of ``statistic``.

    Runs are resampled with replacement *within each task* (stratified), so every
    bootstrap sample keeps one score per (run, task) slot.

    Args:
        scores: ``[runs, tasks]`` (a 1-D array is one task).
        statistic: maps a ``[runs, tasks]`` array to a float (default :func:`iqm`).
        reps: bootstrap resamples.
        confidence: interval mass, in (0, 1).
        seed: seeds the resampling (same inputs and seed -> same interval).
    Returns:
        ``(estimate, low, high)``.
    """
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"scores has shape {x.shape}; expected [runs, tasks] with runs >= 1")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence} is out of range; allowed (0, 1)")
    if reps < 1:
        raise ValueError(f"reps={reps} must be >= 1")
    rng = np.random.default_rng(seed)
    runs, tasks = x.shape
    idx = rng.integers(0, runs, size=(reps, runs, tasks))
    resampled = np.take_along_axis(x[None].repeat(reps, 0), idx, axis=1)
    if statistic is iqm:
        boot = _iqm_rows(resampled.reshape(reps, -1))
    else:
        boot = np.array([statistic(r) for r in resampled])
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(boot, [alpha, 1.0 - alpha])
    return statistic(x), float(low), float(high)
