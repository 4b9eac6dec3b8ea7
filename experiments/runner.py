"""Execute experiments: every (point, policy, seed) is one batched evaluation; rows
go to CSV/JSON and are aggregated over seeds: success as a rate of the episodes pooled
over seeds with a Wilson 95 % interval, other metrics as seed means.

Points run in-process one after another (``workers=1``), or as tasks on a local
Ray instance (``workers > 1``) or on the cluster Ray is connected to
(``address``), with the same configs.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from agentcomm.config import atomic_write_text

from .evaluate import evaluate, make_policy
from .stats import stratified_episode_bootstrap, wilson_interval
from .study import ExperimentConfig, expand_points, nest

__all__ = ["run_experiments", "summarize", "write_csv"]

#: Point fields shown in tables and used to group rows (dotted override keys).
LABEL_KEYS = ("comm.mode", "comm.budget", "comm.codec", "channel.tx_power_dbm", "channel.name")


def _label(point: dict[str, Any]) -> dict[str, Any]:
    return {k: point.get(k, "") for k in LABEL_KEYS} | {"point": json.dumps(point, sort_keys=True)}


def _one(job: dict[str, Any]) -> dict[str, Any]:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    import torch

    torch.set_num_threads(1)
    metrics = evaluate(
        job["env_id"],
        make_policy(job["policy"], seed=job["seed"]),
        job["episodes"],
        job["seed"],
        nest(job["point"]),
        device=job["device"],
    )
    return {
        "experiment": job["experiment"],
        "env_id": job["env_id"],
        "policy": job["policy"],
        "seed": job["seed"],
        "episodes": job["episodes"],
        **_label(job["point"]),
        **metrics,
    }


def _jobs(cfgs: Iterable[ExperimentConfig]) -> list[dict[str, Any]]:
    jobs = []
    for cfg in cfgs:
        for point in expand_points(cfg):
            for policy in cfg.policies:
                for seed in cfg.seeds:
                    jobs.append(
                        {
                            "experiment": cfg.name,
                            "env_id": cfg.env_id,
                            "policy": policy,
                            "seed": seed,
                            "episodes": cfg.episodes,
                            "point": point,
                            "device": cfg.device,
                        }
                    )
    return jobs


def run_experiments(
    cfgs: Iterable[ExperimentConfig],
    workers: int = 1,
    address: str | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Evaluate every job; rows come back in job order whatever the parallelism."""
    from tqdm import tqdm

    jobs = _jobs(cfgs)
    bar = tqdm(total=len(jobs), desc="evaluating", unit="run", disable=not progress)
    if workers <= 1 and address is None:
        rows = []
        for job in jobs:
            rows.append(_one(job))
            bar.update()
        bar.close()
        return rows
    import ray

    started = not ray.is_initialized()
    if started:
        if address is None:
            init_local_ray(workers)
        else:
            ray.init(address=address)
    try:
        remote = ray.remote(num_cpus=1)(_one)
        pending = {remote.remote(job): i for i, job in enumerate(jobs)}
        rows: list[dict[str, Any] | None] = [None] * len(jobs)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                rows[pending.pop(ref)] = ray.get(ref)
                bar.update()
    finally:
        bar.close()
        if started:
            ray.shutdown()
    return [r for r in rows if r is not None]


def summarize(
    rows: list[dict[str, Any]],
    interval: str = "wilson",
    confidence: float = 0.95,
    reps: int = 2000,
) -> list[dict[str, Any]]:
    """One row per (experiment, policy, point), pooling its seeds' episodes.

    Every input row is one seed: ``success`` (fraction of its episodes) and ``episodes``;
    its successful episodes are ``round(success * episodes)``. Episodes are the units of a
    success rate, so the interval is computed on the counts pooled over seeds, not on the
    few per-seed rates (with three seeds a bootstrap over seeds spans their min and max and
    misses the binomial noise inside each seed). The default is the Wilson score interval
    (:func:`~agentcomm.experiments.stats.wilson_interval`): closed form, inside [0, 1], and
    in ``tests/test_stats.py`` it covers a known rate in about 95 % of simulated runs at
    the main job's n (3 seeds x 128 episodes). ``interval="bootstrap"`` uses
    :func:`~agentcomm.experiments.stats.stratified_episode_bootstrap` (episodes resampled
    within each seed, ``reps`` replicates) instead.

    Returns:
        Rows with the point's labels, ``seeds``, ``episodes`` (n, pooled), ``successes``,
        ``success`` (pooled rate), ``ci_low``, ``ci_high``, ``interval`` (which interval,
        at what confidence) and the seed mean of every other float metric.
    """
    if interval not in ("wilson", "bootstrap"):
        raise ValueError(f"interval={interval!r} is not allowed; allowed: 'wilson', 'bootstrap'")
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["experiment"], r["policy"], r["point"]), []).append(r)
    out = []
    numeric = (
        [k for k, v in rows[0].items() if isinstance(v, float) and k not in ("success",)]
        if rows
        else []
    )
    for rs in groups.values():
        episodes = np.array([int(r["episodes"]) for r in rs])
        exact = np.array([float(r["success"]) for r in rs]) * episodes
        successes = np.round(exact)
        if np.any(np.abs(exact - successes) > 1e-6 * np.maximum(episodes, 1)):
            raise ValueError(
                f"success x episodes = {exact.tolist()} is not a whole number of episodes; "
                "summarize needs per-seed success fractions of 'episodes' episodes"
            )
        if interval == "wilson":
            rate, lo, hi = wilson_interval(int(successes.sum()), int(episodes.sum()), confidence)
        else:
            rate, lo, hi = stratified_episode_bootstrap(
                successes, episodes, reps=reps, confidence=confidence, seed=0
            )
        row = {k: rs[0][k] for k in ("experiment", "env_id", "policy", *LABEL_KEYS, "point")}
        row |= {
            "seeds": len(rs),
            "episodes": int(episodes.sum()),
            "successes": int(successes.sum()),
            "success": rate,
            "ci_low": lo,
            "ci_high": hi,
            "interval": f"{interval} {100 * confidence:g}%",
        }
        row |= {k: float(np.mean([r[k] for r in rs])) for k in numeric}
        out.append(row)
    return out


def init_local_ray(num_cpus: int | None = None, **kwargs: Any) -> None:
    """Start the local Ray instance every experiment script uses: no dashboard, worker logs
    kept off the driver, a 200 MB object store, one torch thread per worker
    (``OMP_NUM_THREADS=1``; two threads on a busy 2-core machine ran 20x slower). Workers
    inherit the driver's environment, ``PYTHONPATH`` included, so agentcomm must be
    importable there (installed, or on ``PYTHONPATH``). ``kwargs`` go to ``ray.init``
    (e.g. ``num_gpus=1``)."""
    for var, value in (("RAY_AUTH_MODE", "disabled"), ("RAY_USAGE_STATS_ENABLED", "0")):
        os.environ.setdefault(var, value)
    import ray

    ray.init(
        num_cpus=num_cpus,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=200 * 1024**2,
        runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}},
        **kwargs,
    )


def write_csv(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Write rows as CSV, atomically; the columns are the union of the rows' keys in
    first-seen order (a row without a key leaves its cell empty)."""
    import io

    buf = io.StringIO()
    if rows:
        keys: list[str] = []
        for row in rows:
            keys += [k for k in row if k not in keys]
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True))
