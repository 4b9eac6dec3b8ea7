"""Success-rate intervals of the main job: the Wilson interval against a hand-computed case,
input validation, the episode bootstrap, ``summarize`` pooling seeds, and coverage of a
known rate in simulated experiments at the main job's n."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest

from agentcomm.experiments.execute import summarize
from agentcomm.experiments.stats import iqm, stratified_episode_bootstrap, wilson_interval
from agentcomm.experiments.study import load_experiment


def _main_job_n() -> tuple[int, int]:
    """Seeds and episodes per seed of the main job's bandwidth sweep (its shipped config)."""
    with resources.as_file(
        resources.files("agentcomm.experiments") / "configs" / "bandwidth.yaml"
    ) as path:
        cfg = load_experiment(path)
    return len(cfg.seeds), cfg.episodes


#: The main job's default n per point (3 seeds x 128 episodes when this was written).
SEEDS, EPISODES_PER_SEED = _main_job_n()


def test_wilson_hand_computed():
    # k = 7, n = 10, 95%: z = 1.959964, z^2 = 3.841459, z^2/n = 0.384146, d = 1 + z^2/n = 1.384146.
    # centre = (0.7 + z^2/(2n)) / d = (0.7 + 0.192073) / 1.384146 = 0.644493
    # half   = z/d * sqrt(0.7*0.3/10 + z^2/(4*100)) = 1.416010 * sqrt(0.021 + 0.009604)
    #        = 1.416010 * 0.174939 = 0.247715
    # -> [0.644493 - 0.247715, 0.644493 + 0.247715] = [0.396778, 0.892209]
    p, lo, hi = wilson_interval(7, 10)
    assert p == 0.7
    assert lo == pytest.approx(0.3968, abs=1e-4)
    assert hi == pytest.approx(0.8922, abs=1e-4)
    # The ends, from the closed form: 0 of n gives [0, z^2/(n + z^2)], n of n [n/(n + z^2), 1].
    p0, lo0, hi0 = wilson_interval(0, 10)
    p1, lo1, hi1 = wilson_interval(10, 10)
    assert (p0, lo0, p1, hi1) == (0.0, 0.0, 1.0, 1.0)
    z2 = 1.959963984540054**2
    assert hi0 == pytest.approx(z2 / (10 + z2)) and lo1 == pytest.approx(10 / (10 + z2))
    # Arrays broadcast and agree with scalar calls; a higher confidence widens the interval.
    ps, los, his = wilson_interval(np.array([7, 0]), 10)
    assert np.allclose([los[0], his[0], his[1]], [lo, hi, hi0])
    _, lo99, hi99 = wilson_interval(7, 10, confidence=0.99)
    assert lo99 < lo and hi99 > hi


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"successes": 11, "n": 10}, r"successes=11 .*0 <= successes <= n"),
        ({"successes": -1, "n": 10}, r"successes=-1 .*0 <= successes <= n"),
        ({"successes": 2.5, "n": 10}, r"successes=2.5 .*integers"),
        ({"successes": 0, "n": 0}, r"n=0 .*integers >= 1"),
        ({"successes": 1, "n": 3.5}, r"n=3.5 .*integers >= 1"),
        ({"successes": 1, "n": 3, "confidence": 1.0}, r"confidence=1.0 .*\(0, 1\)"),
        ({"successes": 1, "n": 3, "confidence": 0.0}, r"confidence=0.0 .*\(0, 1\)"),
    ],
)
def test_wilson_rejects_bad_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        wilson_interval(**kwargs)


def test_episode_bootstrap():
    k, n = np.array([70, 80, 75]), np.array([128, 128, 128])
    est, lo, hi = stratified_episode_bootstrap(k, n, reps=4000, seed=1)
    assert est == pytest.approx(225 / 384)
    assert lo < est < hi
    # Resampling episodes gives about the binomial width of the pooled count (Wilson's).
    _, wlo, whi = wilson_interval(225, 384)
    assert hi - lo == pytest.approx(whi - wlo, rel=0.1)
    assert stratified_episode_bootstrap(k, n, reps=500, seed=3) == stratified_episode_bootstrap(
        k, n, reps=500, seed=3
    )
    # Every episode a success: each resample is too, so the interval collapses.
    assert stratified_episode_bootstrap([5, 5], [5, 5], reps=100) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match=r"reps=0 "):
        stratified_episode_bootstrap(k, n, reps=0)
    with pytest.raises(ValueError, match=r"same length"):
        stratified_episode_bootstrap([1, 2], [4, 4, 4])
    with pytest.raises(ValueError, match=r"episodes_per_seed=.*integers >= 1"):
        stratified_episode_bootstrap([0], [0])
    with pytest.raises(ValueError, match=r"successes=.*0 <= successes <= n"):
        stratified_episode_bootstrap([5], [4])


def test_iqm_needs_enough_scores_to_trim():
    # 8 scores: drop the 2 lowest and 2 highest, average the middle 4.
    assert iqm(np.array([0, 100, 1, 2, 3, 4, -50, 7])) == pytest.approx((1 + 2 + 3 + 4) / 4)
    with pytest.raises(ValueError, match="3 values; the IQM needs at least 4"):
        iqm(np.array([0.1, 0.5, 0.9]))


def _row(seed: int, success: float, episodes: int, **extra: float) -> dict:
    point = {"comm.budget": 64}
    return {
        "experiment": "e",
        "env_id": "SearchRescue-v0",
        "policy": "expert",
        "seed": seed,
        "episodes": episodes,
        "comm.mode": "",
        "comm.budget": 64,
        "comm.codec": "",
        "channel.tx_power_dbm": "",
        "channel.name": "",
        "point": json.dumps(point),
        "success": success,
        **extra,
    }


def test_summarize_pools_episodes_over_seeds():
    rows = [
        _row(0, 70 / 128, 128, bits=10.0),
        _row(1, 80 / 128, 128, bits=20.0),
        _row(2, 75 / 128, 128, bits=30.0),
    ]
    (s,) = summarize(rows)
    assert (s["seeds"], s["episodes"], s["successes"]) == (3, 384, 225)
    p, lo, hi = wilson_interval(225, 384)
    assert (s["success"], s["ci_low"], s["ci_high"]) == (p, lo, hi)
    assert s["interval"] == "wilson 95%"
    assert s["bits"] == pytest.approx(20.0)
    assert not {"success_iqm", "success_lo", "success_hi"} & set(s)
    (b,) = summarize(rows, interval="bootstrap", reps=2000)
    assert b["success"] == pytest.approx(p) and b["interval"] == "bootstrap 95%"
    assert b["ci_high"] - b["ci_low"] == pytest.approx(hi - lo, rel=0.15)
    with pytest.raises(ValueError, match="not a whole number of episodes"):
        summarize([_row(0, 0.5001, 128)])
    with pytest.raises(ValueError, match="interval='minmax'"):
        summarize(rows, interval="minmax")


def _coverage(interval, rate: float, experiments: int = 1000, seed: int = 0) -> float:
    """Fraction of ``experiments`` simulated points (``SEEDS`` x ``EPISODES_PER_SEED``
    Bernoulli(``rate``) episodes each) whose interval contains ``rate``.

    ``interval`` maps per-seed success counts ``[experiments, seeds]`` and the episodes
    per seed to ``(low, high)``, each ``[experiments]``."""
    rng = np.random.default_rng(seed)
    counts = rng.binomial(EPISODES_PER_SEED, rate, size=(experiments, SEEDS))
    low, high = interval(counts, EPISODES_PER_SEED)
    return float(np.mean((low <= rate) & (rate <= high)))


def _wilson_pooled(counts: np.ndarray, episodes: int) -> tuple[np.ndarray, np.ndarray]:
    _, low, high = wilson_interval(counts.sum(axis=1), episodes * counts.shape[1])
    return low, high


def _episode_bootstrap(counts: np.ndarray, episodes: int) -> tuple[np.ndarray, np.ndarray]:
    n = np.full(counts.shape[1], episodes)
    ci = np.array(
        [stratified_episode_bootstrap(c, n, reps=1000, seed=i)[1:] for i, c in enumerate(counts)]
    )
    return ci[:, 0], ci[:, 1]


@pytest.mark.parametrize("rate", [0.6, 0.9])
def test_wilson_covers_true_rate_at_main_job_n(rate):
    # 1,000 simulated points of the main job's n (3 seeds x 128 episodes): a 95% interval
    # must cover the true rate about 95% of the time (>= 93% leaves room for the
    # simulation's own noise: its standard error at 95% is 0.7 points).
    assert _coverage(_wilson_pooled, rate) >= 0.93


def test_episode_bootstrap_covers_true_rate_at_main_job_n():
    # 400 simulated points (one bootstrap each); the looser bound allows their larger noise.
    assert _coverage(_episode_bootstrap, 0.6, experiments=400) >= 0.92
