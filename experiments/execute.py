"""Execute experiments: every (point, policy, seed) is one batched evaluation by the one
evaluation function (:func:`agentcomm.policies.evaluate.evaluate`, its actor from
:func:`~agentcomm.policies.evaluate.load_actor`); rows go to CSV/JSON and are aggregated over
seeds: success as a rate of the episodes pooled over seeds with a Wilson 95 % interval,
other metrics as seed means.

Points run in-process one after another (``workers=1``), or as tasks on a local
Ray instance (``workers > 1``) or on the cluster Ray is connected to
(``address``), with the same configs. A point that several experiments share (the same
scenario, resolved config, policy, seed and episodes) is evaluated once.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from agentcomm.config import atomic_write_text

from .stats import stratified_episode_bootstrap, wilson_interval
from .study import ExperimentConfig, expand_points, nest

__all__ = [
    "SUMMARY_COLUMNS",
    "SCRIPTED_POLICIES",
    "check_monotone",
    "run_experiments",
    "summarize",
    "summary_table",
    "write_csv",
]

#: Point fields shown in tables and used to group rows (dotted override keys).
LABEL_KEYS = ("comm.mode", "comm.budget", "comm.codec", "channel.tx_power_dbm", "channel.name")

#: The columns of ``summary.csv``, in order (:func:`summary_table`).
SUMMARY_COLUMNS = (
    "scenario",
    "policy",
    "mode",
    "codec",
    "budget",
    "snr_db",
    "episodes",
    "success",
    "ci_low",
    "ci_high",
    "channel_uses_per_agent_step",
    "bits_per_agent_step",
)

#: Labels of the resolved config a run row carries (``config_id``: the whole config;
#: ``setting_id``: the config but for the fields that move a point along or between curves).
_RESOLVED = ("mode", "codec", "budget", "config_id", "setting_id")
#: ``comm`` fields that place a point on a curve (budget) or pick its curve (mode, codec).
_CURVE_FIELDS = ("budget", "codec", "codec_params", "mode")
#: Fields that change what a policy observes or is paid, not the world it acts in: they do not
#: make another setting (a policy conditioned on its channel is drawn beside the expert).
_POLICY_SIDE = ("team_reward_weight",)
_POLICY_SIDE_COMM = ("cost_per_channel_use",)

#: Key of a run's wall time in :func:`_one`'s result; it goes to ``timings``, not to the rows
#: (rows must repeat bit for bit).
_SECONDS = "_seconds"

# Relative cost of a step by codec, only to start the slowest jobs first on parallel workers.
_CODEC_COST = {"raw": 2.0, "jscc": 5.0, "jscc+cddm": 25.0, "jscc+diffcom": 50.0}


def _label(point: dict[str, Any]) -> dict[str, Any]:
    return {k: point.get(k, "") for k in LABEL_KEYS} | {"point": json.dumps(point, sort_keys=True)}


def resolve(env_id: str, point: dict[str, Any]):
    """The scenario config ``point`` (dotted overrides) gives ``env_id``: its defaults filled
    in, checked as the world would check it."""
    from agentcomm.envs import env_class

    return env_class(env_id).config_cls.from_dict(nest(point))


def _one(job: dict[str, Any]) -> dict[str, Any]:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    import torch

    from agentcomm.policies.evaluate import evaluate, load_actor

    from .metrics import metrics

    torch.set_num_threads(1)
    start, cpu = time.perf_counter(), time.process_time()
    actor, _ = load_actor(
        job["policy"], device=job["device"], generator=torch.Generator().manual_seed(job["seed"])
    )
    result = evaluate(
        actor,
        job["env_id"],
        job["episodes"],
        num_envs=job["episodes"],
        seed=job["seed"],
        env_config=nest(job["point"]),
        device=job["device"],
        split="evaluation",
    )
    seconds = (time.perf_counter() - start, time.process_time() - cpu)
    return {**metrics(result), _SECONDS: seconds}


def _jobs(cfgs: Iterable[ExperimentConfig]) -> list[dict[str, Any]]:
    jobs = []
    for cfg in cfgs:
        for point in expand_points(cfg):
            resolved = resolve(cfg.env_id, point)
            comm = resolved.comm
            config = resolved.to_dict()
            setting = {
                **{
                    k: v
                    for k, v in config.items()
                    if k not in _POLICY_SIDE and not k.startswith("observe_")
                },
                "comm": {
                    k: v
                    for k, v in config["comm"].items()
                    if k not in _CURVE_FIELDS + _POLICY_SIDE_COMM
                },
            }
            labels = {
                "mode": comm.mode,
                "codec": comm.codec,
                "budget": comm.budget,
                "config_id": _digest(config),
                "setting_id": _digest(setting),
                "max_steps": resolved.max_steps,
            }
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
                            **labels,
                        }
                    )
    return jobs


def _digest(obj: Any) -> str:
    """A short stable name of a JSON-able object (its canonical JSON's SHA-256, 12 hex);
    numbers are compared as floats (a YAML ``20`` and ``20.0`` name the same config)."""

    def canon(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: canon(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [canon(x) for x in v]
        if isinstance(v, int | float) and not isinstance(v, bool):
            return float(v)
        return v

    return hashlib.sha256(json.dumps(canon(obj), sort_keys=True).encode()).hexdigest()[:12]


def _key(job: dict[str, Any]) -> str:
    """Jobs with equal keys evaluate the same policy on the same worlds and config."""
    fields = ("env_id", "policy", "seed", "episodes", "device", "config_id")
    return json.dumps([job[k] for k in fields])


def _cost(job: dict[str, Any]) -> float:
    learned = 1.0 if job["policy"] in ("expert", "oracle", "random") else 3.0
    return job["episodes"] * job["max_steps"] * _CODEC_COST.get(job["codec"], 1.0) * learned


def _row(job: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    return {
        "experiment": job["experiment"],
        "env_id": job["env_id"],
        "policy": job["policy"],
        "seed": job["seed"],
        "episodes": job["episodes"],
        "mode": job["mode"],
        "codec": job["codec"],
        "budget": job["budget"],
        "config_id": job["config_id"],
        "setting_id": job["setting_id"],
        **_label(job["point"]),
        **result,
    }


def run_experiments(
    cfgs: Iterable[ExperimentConfig],
    workers: int = 1,
    address: str | None = None,
    progress: bool = True,
    timings: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Evaluate every job; rows come back in job order whatever the parallelism.

    ``timings``, when given, receives one entry per evaluation actually run (``env_id``,
    ``policy``, ``seed``, ``episodes``, ``point``, ``seconds`` and ``cpu_seconds``: its wall
    and CPU time in its worker; their ratio shows how much other load slowed it).

    Each row holds the job's labels (``experiment``, ``env_id``, ``policy``, ``seed``,
    ``episodes``, the resolved ``mode``, ``codec`` and ``budget``, the dotted override
    labels and ``point``) and :func:`~agentcomm.experiments.metrics.metrics`. Jobs that
    evaluate the same thing run once; the slowest-looking start first.
    """
    from tqdm import tqdm

    jobs = _jobs(cfgs)
    unique: dict[str, dict[str, Any]] = {}
    for job in jobs:
        unique.setdefault(_key(job), job)
    order = sorted(unique, key=lambda k: -_cost(unique[k]))
    results: dict[str, dict[str, Any]] = {}
    bar = tqdm(total=len(order), desc="evaluating", unit="run", disable=not progress)
    if workers <= 1 and address is None:
        for key in order:
            results[key] = _one(unique[key])
            bar.update()
        bar.close()
        return _collect(jobs, unique, results, timings)
    import ray

    started = not ray.is_initialized()
    if started:
        if address is None:
            init_local_ray(workers)
        else:
            ray.init(address=address)
    try:
        remote = ray.remote(num_cpus=1)(_one)
        pending = {remote.remote(unique[key]): key for key in order}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                results[pending.pop(ref)] = ray.get(ref)
                bar.update()
    finally:
        bar.close()
        if started:
            ray.shutdown()
    return _collect(jobs, unique, results, timings)


def _collect(
    jobs: list[dict[str, Any]],
    unique: dict[str, dict[str, Any]],
    results: dict[str, dict[str, Any]],
    timings: list[dict[str, Any]] | None,
) -> list[dict[str, Any]]:
    seconds = {key: result.pop(_SECONDS) for key, result in results.items()}
    if timings is not None:
        fields = ("env_id", "policy", "seed", "episodes", "point")
        timings += [
            {**{f: unique[key][f] for f in fields}, "seconds": wall, "cpu_seconds": cpu}
            for key in unique
            for wall, cpu in [seconds[key]]
        ]
    return [_row(job, results[_key(job)]) for job in jobs]


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

    Every row's ``successes`` (its successful episodes, as the evaluation counted them) is
    used where present.

    Returns:
        Rows with the point's labels (and the resolved ``mode``, ``codec``, ``budget`` where
        the input rows hold them), ``seeds``, ``episodes`` (n, pooled), ``successes``,
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
        successes = np.array([r.get("successes", s) for r, s in zip(rs, np.round(exact))])
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
        row |= {k: rs[0][k] for k in _RESOLVED if k in rs[0]}
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


def summary_table(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of ``summary.csv``: one per point, exactly :data:`SUMMARY_COLUMNS`.

    ``scenario`` is the env id; ``mode``, ``codec`` and ``budget`` (complex channel uses per
    link per step) are the resolved config's, so perfect communication is codec ``raw`` and
    no communication budget 0 (a ``raw`` row's budget is its config's); ``snr_db`` is the mean SNR of the links the mode relies on
    (agent to fusion centre in ``centralized``, agent to agent otherwise), measured over the
    episodes; ``episodes`` is n pooled over seeds, ``success`` its rate with the Wilson
    interval ``ci_low``/``ci_high``; ``channel_uses_per_agent_step`` counts peer messages,
    uplinks and the fusion centre's downlinks, and ``bits_per_agent_step`` the information
    bits those messages carried. A point two experiments share appears once (the first).
    """
    out: dict[tuple, dict[str, Any]] = {}
    for r in summary:
        snr = r["fc_snr_db"] if r["mode"] == "centralized" else r["peer_snr_db"]
        row = {
            "scenario": r["env_id"],
            "policy": r["policy"],
            "mode": r["mode"],
            "codec": r["codec"],
            "budget": int(r["budget"]),
            "snr_db": round(float(snr), 2),
            "episodes": int(r["episodes"]),
            "success": float(r["success"]),
            "ci_low": float(r["ci_low"]),
            "ci_high": float(r["ci_high"]),
            "channel_uses_per_agent_step": float(r["channel_uses"]),
            "bits_per_agent_step": float(r["bits"]),
        }
        out.setdefault((r["env_id"], r["policy"], r["config_id"]), row)
    return list(out.values())


#: Policies whose curves check the simulator: scripted rules that act on what they receive,
#: so more communication must not make them worse. A learned policy may well score worse with
#: more (it learnt to): that is a finding about the policy, listed apart, not a fault.
SCRIPTED_POLICIES = ("expert", "oracle")


def check_monotone(summary: list[dict[str, Any]], learned: bool = False) -> list[str]:
    """Where more communication scores worse beyond the intervals, one line each.

    ``summary``: :func:`summarize` rows; the curves of :data:`SCRIPTED_POLICIES` (the
    simulator check), or with ``learned`` those of every other policy. Within every curve (scenario, policy, mode, codec
    and the rest of the point's overrides, e.g. the transmit power) success must not fall
    as the budget grows: for budgets ``a < b`` it is a violation when the 95 % interval at
    ``b`` lies wholly below the interval at ``a`` (``ci_high(b) < ci_low(a)``). The budget-0
    row of a mode (no communication, whatever the codec) starts every codec's curve of that
    mode. Perfect communication (codec ``raw``) must score at least as well as every finite
    budget of the same mode and setting, by the same rule. A point two experiments share is
    checked once.
    """

    def group(r: dict[str, Any]) -> tuple:
        return (r["env_id"], r["policy"], r["mode"], r["setting_id"])

    summary = [r for r in summary if (r["policy"] in SCRIPTED_POLICIES) != learned]
    seen: set[tuple] = set()
    floors: dict[tuple, list[dict[str, Any]]] = {}
    raws: dict[tuple, list[dict[str, Any]]] = {}
    curves: dict[tuple, list[dict[str, Any]]] = {}
    for r in summary:
        key = (*group(r), r["codec"], int(r["budget"]))
        if key in seen:
            continue
        seen.add(key)
        if r["codec"] == "raw":
            raws.setdefault(group(r), []).append(r)
        elif int(r["budget"]) == 0:
            floors.setdefault(group(r), []).append(r)
        else:
            curves.setdefault((*group(r), r["codec"]), []).append(r)
    for key, rs in floors.items():
        if not any(k[:4] == key for k in curves):
            curves[(*key, rs[0]["codec"])] = []

    def name(r: dict[str, Any]) -> str:
        return (
            f"{r['codec']}@{r['budget']} {r['success']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
        )

    out = []
    for key, rs in curves.items():
        points = sorted(floors.get(key[:4], []) + rs, key=lambda r: int(r["budget"]))
        where = f"{key[0]} {key[1]} {key[2]} {key[4]} (setting {key[3]})"
        for i, low in enumerate(points):
            for high in points[i + 1 :]:
                if int(high["budget"]) > int(low["budget"]) and high["ci_high"] < low["ci_low"]:
                    out.append(f"{where}: {name(high)} < {name(low)}")
        for ideal in raws.get(key[:4], []):
            for r in points:
                if ideal["ci_high"] < r["ci_low"]:
                    out.append(f"{where}: raw {name(ideal)} < {name(r)}")
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
