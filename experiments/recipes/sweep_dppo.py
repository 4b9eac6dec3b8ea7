"""Grid sweep of DPPO fine-tuning on SearchRescue-v0: one Ray task (one CPU) per trial.

Each trial is a :class:`agentcomm.policies.train.TrainConfig` (``algo="dppo"``) started
from a behaviour-cloned policy and stopped by a wall-clock budget
(``rllib.time_budget_s``), so cheaper settings get more iterations, as they would in
practice. Every starting policy is evaluated once as it is, with the same episodes and
seeds as the trials (deterministic sampling from fixed noise), so that the lift of each
trial is measured against its own start. A sweep chooses a recipe, so every evaluation in
it (the trials' and the starts') runs on ``selection`` worlds (:mod:`agentcomm.worlds`):
the figures reported for the chosen recipe (``experiments/recipes/train_search_rescue.py``) are
measured on ``evaluation`` worlds the sweep never saw.

Starting points (``--starts``): ``shipped`` is the BC policy shipped with the package
(``agentcomm/models/policies/searchrescue-bc``); any other ``NAME=DIR`` names a
``save_policy`` directory (the ``w_`` trials start from ``weak``, which the recorded
sweeps took from a 3x256 BC run of ``experiments/recipes/train_search_rescue.py --start bc``).

Outputs in ``--out``: ``trials.csv`` (one row per trial: its settings, iterations,
agent-steps, seconds, final success and the lift over its start, in points),
``curves.csv`` (rollout success per iteration), one training directory per trial, and a
last line ``RESULT key=value ...`` naming the best trial.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python experiments/recipes/sweep_dppo.py --cpus 2 --minutes 1 \\
        --trials s_lr1e-5 --eval-episodes 64   # a smoke run
    python experiments/recipes/sweep_dppo.py --cpus 15 --minutes 7   # the whole grid, 15 cores
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from agentcomm.experiments.execute import init_local_ray, write_csv
from agentcomm.experiments.recipes.train_search_rescue import RECIPE, load_recipe
from agentcomm.experiments.sweep import int_at_least, positive_float
from agentcomm.experiments.threads import use_one_thread
from agentcomm.policies.checkpoint import shipped_policy_dir

ENV = "SearchRescue-v0"

#: The ``ppo`` and ``dppo`` keys every trial takes from the learning-curve experiment's DPPO
#: recipe (:data:`~agentcomm.experiments.recipes.train_search_rescue.RECIPE`).
SHARED_PPO = ("num_envs", "train_batch_size", "minibatch_size", "num_epochs", "clip_param")
SHARED_DPPO = ("critic_lr", "gamma_denoise")


def base_config(recipe: dict[str, Any]) -> dict[str, Any]:
    """The settings every trial shares, as a TrainConfig mapping: the DPPO ``recipe``'s
    algorithm, scenario, sampler, batch sizes, clip and critic settings (:data:`SHARED_PPO`,
    :data:`SHARED_DPPO`), with the sweep's own iterations (a wall-clock budget stops each
    trial), actor rate and ``selection`` worlds; the trials' overrides add the rest."""
    ppo, dppo = recipe["ppo"], recipe["dppo"]
    return {
        "algo": recipe["algo"],
        "env": recipe["env"],
        "sampler": recipe["sampler"],
        "ppo": {"iterations": 10_000, **{k: ppo[k] for k in SHARED_PPO}, "lr": 1e-5},
        "dppo": {k: dppo[k] for k in SHARED_DPPO},
        "progress": False,
        # Trials are compared to pick a recipe: never on the final figures' worlds.
        "eval_split": "selection",
    }


#: Settings every trial shares (:func:`base_config` of the shipped recipe).
BASE: dict[str, Any] = base_config(load_recipe(RECIPE))

_BIG_BATCH = {"num_envs": 128, "train_batch_size": 16384, "minibatch_size": 4096}


def _set(
    lr: float | None = None,
    *,
    warmup: int | None = None,
    clip: float | None = None,
    critic_input: str | None = None,
    policy: dict[str, Any] | None = None,
    **ppo: Any,
) -> dict[str, Any]:
    """Overrides of BASE as a TrainConfig layer: actor ``lr`` and ``ppo`` (the ``ppo``
    section), critic warm-up iterations, DPPO's ``critic_input``, the clip, the policy's
    sampling fields; ``None``: BASE's."""
    section = dict(ppo)
    if lr is not None:
        section["lr"] = lr
    if clip is not None:
        section["clip_param"] = clip
    dppo = {} if warmup is None else {"critic_warmup_iterations": warmup}
    if critic_input is not None:
        dppo["critic_input"] = critic_input
    out: dict[str, Any] = {}
    if section:
        out["ppo"] = section
    if dppo:
        out["dppo"] = dppo
    if policy:
        out["policy"] = policy
    return out


def _trial(
    lr: float,
    ft: int | None,
    *,
    team: float | None = None,
    os: bool = False,
    ae: bool = False,
    **ppo: Any,
) -> dict[str, Any]:
    """Overrides of a credit/exploration trial: actor ``lr``, ``K' = ft`` (``None``: the
    policy's own), critic warm-up 5 iterations; ``team``: the world's
    ``team_reward_weight`` (``None``: the default 1); ``os``: critic on observation +
    state; ``ae``: ``exploration="around_eval"``."""
    policy: dict[str, Any] = {} if ft is None else {"ft_denoising_steps": ft}
    if ae:
        policy["exploration"] = "around_eval"
    out = _set(lr, warmup=5, critic_input="obs+state" if os else None, policy=policy, **ppo)
    if team is not None:
        out["env_config"] = {"team_reward_weight": team}
    return out


#: Trial name -> (start, overrides of BASE). ``s_``: shipped BC start, ``w_``: the other.
GRID: dict[str, tuple[str, dict[str, Any]]] = {
    "s_lr1e-5": ("shipped", _set()),
    "s_lr3e-5": ("shipped", _set(3e-5)),
    "s_lr1e-4": ("shipped", _set(1e-4)),
    "s_lr3e-5_warm3": ("shipped", _set(3e-5, warmup=3)),
    "s_lr3e-5_ft2": ("shipped", _set(3e-5, policy={"ft_denoising_steps": 2})),
    "s_lr3e-5_big": ("shipped", _set(3e-5, **_BIG_BATCH)),
    "s_lr3e-5_std0.2": ("shipped", _set(3e-5, policy={"min_sampling_std": 0.2})),
    "s_lr1e-4_clip0.05_warm3": ("shipped", _set(1e-4, warmup=3, clip=0.05)),
    "s_lr3e-5_warm5": ("shipped", _set(3e-5, warmup=5)),
    "s_lr1e-4_ft2_warm5": ("shipped", _set(1e-4, warmup=5, policy={"ft_denoising_steps": 2})),
    "s_lr1e-4_warm5": ("shipped", _set(1e-4, warmup=5)),
    "s_lr3e-4_ft1_warm5": ("shipped", _set(3e-4, warmup=5, policy={"ft_denoising_steps": 1})),
    "s_lr1e-4_clip0.1_warm5": ("shipped", _set(1e-4, warmup=5, clip=0.1)),
    "s_lr1e-4_clip0.1_ft2_warm5": (
        "shipped",
        _set(1e-4, warmup=5, clip=0.1, policy={"ft_denoising_steps": 2}),
    ),
    "s_lr1e-4_ft1_ep10_warm5": (
        "shipped",
        _set(1e-4, warmup=5, policy={"ft_denoising_steps": 1}, num_epochs=10),
    ),
    "s_lr1e-4_ft2_big_ep5_warm3": (
        "shipped",
        _set(1e-4, warmup=3, policy={"ft_denoising_steps": 2}, num_epochs=5, **_BIG_BATCH),
    ),
    "s_lr1e-4_ft2_big_ep5_warm3_lam0.8": (
        "shipped",
        _set(
            0.0001,
            warmup=3,
            policy={"ft_denoising_steps": 2},
            num_epochs=5,
            lambda_=0.8,
            **_BIG_BATCH,
        ),
    ),
    "s_lr3e-5_warm5_cc": ("shipped", _set(3e-5, warmup=5, critic_input="state")),
    "s_lr1e-4_ft2_warm5_cc": (
        "shipped",
        _set(1e-4, warmup=5, critic_input="state", policy={"ft_denoising_steps": 2}),
    ),
    "s_lr1e-4_ft2_warm5_std0.3": (
        "shipped",
        _set(
            0.0001,
            warmup=5,
            policy={"ft_denoising_steps": 2, "min_sampling_std": 0.3, "min_logprob_std": 0.3},
        ),
    ),
    "s_lr3e-5_warm5_std0.2": (
        "shipped",
        _set(3e-5, warmup=5, policy={"min_sampling_std": 0.2, "min_logprob_std": 0.2}),
    ),
    # Own-share credit ("_own0": the world's team_reward_weight = 0): each agent is rewarded for what
    # it rescued and sensed, so one agent's exploration explains more of its return; "_os":
    # with the agent-specific critic (observation + global state); "_ae": exploration
    # around the deterministic chain (the chain before the K' fine-tuned steps is the
    # evaluated one, the fine-tuned steps add their noise).
    "s_lr1e-4_ft2_warm5_own0": ("shipped", _trial(1e-4, 2, team=0.0)),
    "s_lr3e-5_warm5_own0": ("shipped", _trial(3e-5, None, team=0.0)),
    "s_lr1e-4_ft2_warm5_own0.5": ("shipped", _trial(1e-4, 2, team=0.5)),
    "s_lr3e-5_warm5_own0_os": ("shipped", _trial(3e-5, None, team=0.0, os=True)),
    "s_lr1e-4_ft2_warm5_own0_os": ("shipped", _trial(1e-4, 2, team=0.0, os=True)),
    "s_lr1e-4_ft2_warm5_ae": ("shipped", _trial(1e-4, 2, ae=True)),
    "s_lr1e-4_ft2_warm5_ae_own0_os": ("shipped", _trial(1e-4, 2, ae=True, team=0.0, os=True)),
    "s_lr1e-4_ft3_warm5_ae": ("shipped", _trial(1e-4, 3, ae=True)),
    "s_lr2e-4_ft2_warm5_ae_own0_os": ("shipped", _trial(2e-4, 2, ae=True, team=0.0, os=True)),
    "s_lr1e-4_ft3_warm5_ae_own0_os": ("shipped", _trial(1e-4, 3, ae=True, team=0.0, os=True)),
    "s_lr1e-4_ft2_warm5_ae_own0_os_ep5": (
        "shipped",
        _trial(1e-4, 2, ae=True, team=0.0, os=True, num_epochs=5),
    ),
    "s_lr1e-4_ft2_warm5_ae_own0.5_os": ("shipped", _trial(1e-4, 2, ae=True, team=0.5, os=True)),
    "w_lr1e-5": ("weak", _set()),
    "w_lr3e-5": ("weak", _set(3e-5)),
    "w_lr1e-4": ("weak", _set(1e-4)),
    "w_lr3e-5_warm3": ("weak", _set(3e-5, warmup=3)),
    "w_lr3e-5_ft2": ("weak", _set(3e-5, policy={"ft_denoising_steps": 2})),
    "w_lr3e-5_big": ("weak", _set(3e-5, **_BIG_BATCH)),
    "w_lr1e-4_clip0.05_warm3": ("weak", _set(1e-4, warmup=3, clip=0.05)),
}


def _dotted(layer: dict[str, Any]) -> dict[str, Any]:
    """A trial's overrides with each section's keys dotted (``ppo.lr``), for its CSV row."""
    out: dict[str, Any] = {}
    for key, value in layer.items():
        if key in ("ppo", "dppo"):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def _run_trial(
    name: str,
    pretrained: str,
    overrides: dict[str, Any],
    out: str,
    seed: int,
    budget_s: float,
    eval_episodes: int,
) -> dict[str, Any]:
    """One DPPO trial (runs inside a Ray task); returns its summary and curve rows."""
    import torch

    torch.set_num_threads(1)
    from agentcomm.policies.train import TrainConfig, train

    config = (
        TrainConfig.from_dict(BASE)
        .replace(**overrides)
        .replace(
            out=out,
            seed=seed,
            dppo={"pretrained": pretrained},
            rllib={"time_budget_s": budget_s},
            eval_episodes=eval_episodes,
        )
    )
    t0 = time.perf_counter()
    result = train(config)
    hist = result.history
    return {
        "name": name,
        "iterations": len(hist),
        "agent_steps": int(hist[-1]["agent_steps"]) if hist else 0,
        "seconds": time.perf_counter() - t0,
        "success": result.eval["success_rate"],
        "success_stderr": result.eval["success_stderr"],
        "return_mean": result.eval["return_mean"],
        "rollout_success_last3": sum(r["success_rate"] for r in hist[-3:]) / max(1, len(hist[-3:])),
        "curve": [
            {
                "name": name,
                "iteration": int(r["iteration"]),
                "agent_steps": int(r["agent_steps"]),
                "success_rate": r["success_rate"],
                "return_mean": r["episode_return_mean"],
                "vf_explained_var": r.get("vf_explained_var", float("nan")),
            }
            for r in hist
        ],
    }


def _eval_start(name: str, pretrained: str, episodes: int, seed: int) -> dict[str, Any]:
    """Deterministic evaluation of a starting policy, with the trials' episodes and seed."""
    import torch

    torch.set_num_threads(1)
    from agentcomm.policies.evaluate import evaluate, load_actor

    actor, _ = load_actor(pretrained, sampler="ddim")
    res = evaluate(actor, ENV, episodes, num_envs=min(64, episodes), seed=seed, split="selection")
    return {"start": name, "success": res.success_rate, "success_stderr": res.success_stderr}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpus", type=int_at_least(1), default=2, help="trials run at once, >= 1")
    parser.add_argument(
        "--minutes", type=positive_float, default=7.0, help="training budget per trial, > 0"
    )
    parser.add_argument("--eval-episodes", type=int_at_least(1), default=512)
    parser.add_argument("--seed", type=int_at_least(0), default=0)
    parser.add_argument(
        "--trials",
        nargs="+",
        default=None,
        help=f"subset of {list(GRID)} (default: every trial whose start policy is given)",
    )
    parser.add_argument(
        "--starts",
        nargs="+",
        default=[],
        help="NAME=DIR starting policies besides 'shipped', e.g. weak=runs/bc/policy "
        "(a save_policy directory, such as `agentcomm train --algo bc` writes)",
    )
    parser.add_argument("--out", default="results/sweep_dppo")
    args = parser.parse_args(argv)
    use_one_thread()

    import ray

    starts = {"shipped": str(shipped_policy_dir("searchrescue-bc"))}
    for item in args.starts:
        key, _, path = item.partition("=")
        if not path:
            raise ValueError(f"--starts: expected NAME=DIR, got {item!r}")
        starts[key] = str(Path(path).resolve())
    names = args.trials or [n for n, (start, _) in GRID.items() if start in starts]
    unknown = sorted(set(names) - set(GRID))
    if unknown:
        raise ValueError(f"--trials: unknown trial(s) {unknown}; allowed {list(GRID)}")
    needed = sorted({GRID[n][0] for n in names})
    missing = [s for s in needed if s not in starts or not Path(starts[s]).is_dir()]
    if missing:
        raise ValueError(f"starting policies {missing} not found: {starts}")

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    init_local_ray(args.cpus)
    trial = ray.remote(num_cpus=1, max_retries=0)(_run_trial)
    # Start evaluations are short: they share the cores rather than wait for a trial to end.
    start_eval = ray.remote(num_cpus=0, max_retries=0)(_eval_start)
    t0 = time.perf_counter()
    try:
        futures = [
            trial.remote(
                n,
                starts[GRID[n][0]],
                GRID[n][1],
                str(out / n),
                args.seed,
                args.minutes * 60,
                args.eval_episodes,
            )
            for n in names
        ]
        start_futures = [
            start_eval.remote(s, starts[s], args.eval_episodes, args.seed) for s in needed
        ]
        start_rows = ray.get(start_futures)
        base = {r["start"]: r["success"] for r in start_rows}
        rows, curves = [], []
        pending = list(futures)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                res = ray.get(done[0])
            except Exception as err:  # a failed trial is reported, the sweep goes on
                print(f"trial failed: {type(err).__name__}: {str(err)[:400]}", flush=True)
                continue
            curves += res.pop("curve")
            start = GRID[res["name"]][0]
            res = {
                "name": res["name"],
                "start": start,
                "start_success": base[start],
                "lift_points": 100 * (res["success"] - base[start]),
                **{k: v for k, v in res.items() if k != "name"},
                **{f"set_{k}": v for k, v in _dotted(GRID[res["name"]][1]).items()},
            }
            rows.append(res)
            print(
                f"{res['name']:<28} start {base[start]:.3f} -> {res['success']:.3f} "
                f"(+-{res['success_stderr']:.3f}) lift {res['lift_points']:+.1f} pts, "
                f"{res['iterations']} it, {res['agent_steps']} agent-steps, "
                f"{res['seconds']:.0f}s",
                flush=True,
            )
            write_csv(out / "trials.csv", rows)
            write_csv(out / "curves.csv", curves)
    finally:
        ray.shutdown()
    for r in start_rows:
        print(f"start {r['start']}: success {r['success']:.3f} (+-{r['success_stderr']:.3f})")
    best = max(rows, key=lambda r: r["lift_points"]) if rows else None
    print(
        f"RESULT trials={len(rows)} minutes={(time.perf_counter() - t0) / 60:.1f} "
        + " ".join(f"start_{r['start']}={r['success']:.3f}" for r in start_rows)
        + (
            f" best={best['name']} best_success={best['success']:.3f} "
            f"best_lift_points={best['lift_points']:.1f}"
            if best
            else " best=none"
        )
    )


if __name__ == "__main__":
    main()
