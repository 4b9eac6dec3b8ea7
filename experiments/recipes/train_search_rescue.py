"""Learning curves on SearchRescue-v0 (default config): BC, DPPO fine-tuning, Gaussian PPO.

For each seed:

1. the scripted expert, uniform random actions and the starting BC policy are evaluated
   (deterministic evaluation, ``--eval-episodes`` world episodes on the seed's worlds of
   the ``evaluation`` split, the same worlds every method of that seed is evaluated on);
2. DPPO fine-tunes the BC policy inside RLlib on the batched EnvRunner (``algo="dppo"``),
   exploring around the deterministic chain (``policy.exploration="around_eval"``) at the
   last 2 of its 5 DDIM steps, with a critic on the agent's observation and the global
   state;
3. Gaussian PPO learns from scratch for the same number of agent-steps (``algo="ppo"``).

Every policy is evaluated deterministically (the diffusion chain from its fixed noise, the
Gaussian's mean action: ``dppo``, ``ppo``), and the two RL policies also as they ran while
training, sampling their actions (``dppo_stochastic``, ``ppo_stochastic``): Gaussian PPO
acts far better with its noise than with its mean.

Worlds (:mod:`agentcomm.worlds`): the learning curves are the training rollouts' own
success (``train`` worlds); every figure in ``summary.csv`` is a final figure, measured on
the ``evaluation`` worlds of seed index ``seed``, which neither training nor the sweep
that chose the DPPO recipe (``experiments/recipes/sweep_dppo.py``, ``selection`` worlds) saw.

Both RL methods train on the same reward: each agent's own share of the team reward
(``env_config={"team_reward_weight": 0.0}``: the rescues it made, the entropy its sensing
removed); the agents' mean reward, and every success rate reported, are the default task's.

The BC policy (``--start``) is by default the one shipped with the package
(``agentcomm/models/policies/searchrescue-bc``, trained by
``experiments/recipes/train_shipped_policy.py``: 65,536 expert agent-steps, 150 epochs, 11 minutes);
``--start bc`` instead clones a smaller policy per seed first (``algo="bc"``, ~2 minutes).

Settings: the DPPO run, the RL budget and reward both methods share, the evaluation
episodes and the BC start come from the recipe ``configs/dppo_searchrescue.yaml``
(:data:`RECIPE`, the same run for one seed under ``agentcomm train --config``);
``--config`` names another recipe and ``--set KEY=VALUE`` overrides its keys. The seeds,
the per-seed BC clone of ``--start bc`` and Gaussian PPO's own rate, clip and network are
this script's (:func:`full_settings`).

Jobs run as Ray tasks, one CPU and one torch thread each (``--cpus`` at once), longest
first. Outputs in ``--out`` (default ``results/train_search_rescue``; ``--quick`` appends
``_quick``): ``curves.csv`` (method, seed, agent-steps, training-rollout success rate,
return and critic explained variance per iteration), ``summary.csv`` (the evaluations
of every policy), ``learning_curves.png`` (mean +- std over seeds, with the
expert and BC levels), one training directory per method and seed, ``result.json`` and a
last line ``RESULT key=value ...``.

Budget: one seed's DPPO fine-tuning (700 iterations, 2.87M agent-steps, the learning rate
held for 560 iterations and decayed linearly to 0 over the last 140) took 24-27.5 minutes
on one core of a 2-core machine whose other core ran another job (``dppo_minutes_per_seed``
in the RESULT line is the longest): the issue's <= 30 minutes on 2 cores, per fine-tuned
policy. The whole run (3 seeds of DPPO and of Gaussian PPO, 6 jobs on 2 cores) took 70
minutes: +16.4 points (``docs/training.md``). Its first 560 iterations are bit for bit
those of a constant-rate rerun (+13.6 at iteration 560; the first constant-rate run,
differing only in float rounding, +15.8: ``docs/training/search_rescue_dppo/``, the run
the shipped DPPO policy comes from).
``--quick`` (one seed, tiny budgets) takes < 3 minutes; ``--seeds 3 4 --methods dppo``
runs more DPPO seeds alone.

Usage::

    python -m agentcomm.experiments.recipes.train_search_rescue --quick
    nohup python experiments/recipes/train_search_rescue.py > results/train_sr.log 2>&1 &
    # the 560-iteration, constant-rate run the shipped DPPO policy comes from:
    python experiments/recipes/train_search_rescue.py --iterations 560 \\
        --set ppo.lr_anneal_fraction=0
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from agentcomm.config import atomic_write_text, load_yaml, merged
from agentcomm.experiments.execute import init_local_ray, write_csv
from agentcomm.experiments.threads import use_one_thread

ENV = "SearchRescue-v0"

#: The DPPO run of the full experiment, for one seed (a TrainConfig YAML, also run alone by
#: ``agentcomm train --config``): the single source of DPPO's settings, of the RL budget
#: and reward that Gaussian PPO shares, of the evaluation episodes and of the BC start.
RECIPE = Path(__file__).resolve().parent / "configs" / "dppo_searchrescue.yaml"

#: ``ppo`` keys of the recipe that are DPPO's own: Gaussian PPO sets its own rate and clip.
DPPO_OWN_PPO = ("lr", "clip_param")
#: Top-level keys of the recipe that both RL methods share.
SHARED = ("env_config", "eval_split")


def load_recipe(path: str | Path = RECIPE, overrides: dict[str, Any] | None = None) -> dict:
    """The DPPO recipe at ``path`` as a TrainConfig mapping (validated), ``overrides`` (a
    nested mapping, as ``--set`` builds it) merged into its sections."""
    from agentcomm.policies.train_config import TrainConfig

    data = load_yaml(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"recipe={str(path)!r} must hold a mapping, got {type(data).__name__}")
    config = TrainConfig.from_dict(data)
    if overrides:
        data = merged(data, overrides)
        config = config.replace(**overrides)
    if config.algo != "dppo" or config.env != ENV:
        raise ValueError(
            f"recipe={str(path)!r} has algo={config.algo!r}, env={config.env!r}; "
            f"allowed: algo='dppo', env={ENV!r}"
        )
    return data


def full_settings(recipe: dict[str, Any]) -> dict[str, Any]:
    """The full run's settings from a DPPO ``recipe`` (:func:`load_recipe`): ``seeds``,
    ``eval_episodes``, ``pretrained`` (the BC start of ``--start shipped``), and the
    TrainConfig layers ``bc``, ``rl`` (both RL methods), ``dppo`` and ``ppo``; a method's
    run applies ``rl`` and then its own, section by section."""
    ppo = dict(recipe.get("ppo", {}))
    own = {k: ppo.pop(k) for k in DPPO_OWN_PPO if k in ppo}
    dppo = {k: v for k, v in recipe.get("dppo", {}).items() if k != "pretrained"}
    layer = {k: v for k, v in recipe.items() if k not in (*SHARED, "env", "eval_episodes")}
    return {
        "seeds": [0, 1, 2],
        "eval_episodes": recipe["eval_episodes"],
        "pretrained": recipe.get("dppo", {}).get("pretrained"),
        "bc": {
            "bc": {"demo_steps": 64, "demo_envs": 64, "epochs": 80, "batch_size": 1024, "lr": 1e-3},
            "policy": {
                "hidden": 256,
                "depth": 3,
                "denoising_steps": 20,
                "ddim_steps": 5,
                "ft_denoising_steps": 5,
            },
        },
        "rl": {"ppo": ppo, **{k: recipe[k] for k in SHARED if k in recipe}},
        "dppo": {**layer, "ppo": own, "dppo": dppo},
        "ppo": {"ppo": {"lr": 3e-4, "clip_param": 0.2}, "gaussian": {"hidden": [256, 256]}},
    }


def quick_settings(full: dict[str, Any]) -> dict[str, Any]:
    """A smoke run of the whole pipeline (< 3 min), not a result: one seed, small budgets,
    ``full``'s reward, worlds and DPPO recipe (with a 1-iteration critic warm-up)."""
    rl = full["rl"]
    return {
        **full,
        "seeds": [0],
        "eval_episodes": 32,
        "bc": {
            "bc": {"demo_steps": 16, "demo_envs": 32, "epochs": 15, "batch_size": 512, "lr": 1e-3},
            "policy": {
                "hidden": 128,
                "depth": 2,
                "denoising_steps": 10,
                "ddim_steps": 5,
                "ft_denoising_steps": 5,
            },
        },
        "rl": {
            **rl,
            "ppo": {
                **rl["ppo"],
                "iterations": 3,
                "num_envs": 16,
                "train_batch_size": 1024,
                "minibatch_size": 512,
                "num_epochs": 2,
            },
        },
        "dppo": {
            **full["dppo"],
            "dppo": {**full["dppo"]["dppo"], "critic_warmup_iterations": 1},
        },
        "ppo": {"ppo": {"lr": 3e-4, "clip_param": 0.2}, "gaussian": {"hidden": [64, 64]}},
    }


#: Full-run settings (sized for <= 30 min on 2 cores with 3 seeds), from :data:`RECIPE`.
FULL = full_settings(load_recipe())
#: Quick settings (< 3 min): a smoke run of the whole pipeline, not a result.
QUICK = quick_settings(FULL)


def run_config(seed: int, *layers: dict[str, Any]):
    """The :class:`~agentcomm.policies.train_config.TrainConfig` of one run on ``ENV``:
    ``layers`` applied in order, each merging into the sections the earlier ones set."""
    from agentcomm.policies.train_config import TrainConfig

    config = TrainConfig.from_dict({"env": ENV, "seed": seed, "progress": False})
    for layer in layers:
        config = config.replace(**layer)
    return config


def _evaluate(method: str, checkpoint: str, seed: int, episodes: int, **actor_kw: Any) -> dict:
    """One summary row (a final figure): ``checkpoint`` (a name or a policy directory) on
    the seed's ``evaluation`` worlds, its draws from a generator seeded by the seed."""
    from agentcomm.policies.evaluate import evaluate, load_actor

    actor, _ = load_actor(checkpoint, generator=torch.Generator().manual_seed(seed), **actor_kw)
    res = evaluate(actor, ENV, episodes, num_envs=64, seed=seed, split="evaluation")
    return {"method": method, "seed": seed, **asdict(res)}


def _evaluate_job(seed: int, episodes: int, start: str | None) -> list[dict[str, Any]]:
    """Expert, random and (when given) the starting BC policy on the seed's eval worlds."""
    torch.set_num_threads(1)
    named = [("expert", "expert"), ("random", "random")] + ([("bc", start)] if start else [])
    return [_evaluate(method, name, seed, episodes) for method, name in named]


def _train_job(method: str, seed: int, layers: list[dict[str, Any]]) -> dict[str, Any]:
    """One ``train()`` run (BC, DPPO or PPO) of :func:`run_config` ``(seed, *layers)``;
    returns its curve rows and evaluation."""
    torch.set_num_threads(1)
    from agentcomm.policies.train import train

    config = run_config(seed, *layers)
    t0 = time.perf_counter()
    result = train(config)
    seconds = time.perf_counter() - t0
    curve = [
        {
            "method": method,
            "seed": seed,
            "iteration": int(row["iteration"]),
            "agent_steps": int(row["agent_steps"]),
            "success_rate": row["success_rate"],
            "return_mean": row["episode_return_mean"],
            "vf_explained_var": row.get("vf_explained_var", math.nan),
        }
        for row in (result.history if method != "bc" else [])
    ]
    summary = [{"method": method, "seed": seed, "seconds": seconds, **(result.eval or {})}]
    if method != "bc" and config.eval_episodes:
        # The policy the agents ran while training (sampled actions), on the same worlds as
        # the deterministic evaluation: Gaussian PPO in particular acts much better with
        # its noise than with its mean action.
        summary.append(
            _evaluate(
                f"{method}_stochastic",
                str(result.policy_dir),
                seed,
                config.eval_episodes,
                sampler=config.sampler,
                stochastic=True,
            )
        )
    return {"curve": curve, "summary": summary, "policy": result.policy_dir}


def _plot(path: Path, curves: list[dict], summary: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(9.5, 4.2))
    for method, color in (("dppo", "C0"), ("ppo", "C1")):
        rows = [r for r in curves if r["method"] == method]
        if not rows:
            continue
        seeds = sorted({r["seed"] for r in rows})
        steps = sorted({r["agent_steps"] for r in rows if r["seed"] == seeds[0]})
        table = np.array(
            [[r["success_rate"] for r in rows if r["seed"] == s] for s in seeds], dtype=float
        )
        with warnings.catch_warnings():
            # Iterations in which no episode ended have no success rate (NaN) in any seed.
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, std = np.nanmean(table, 0), np.nanstd(table, 0)
        label = "DPPO from BC (rollouts)" if method == "dppo" else "Gaussian PPO (rollouts)"
        ax.plot(steps, mean, color=color, alpha=0.35, lw=0.8)
        ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.12)
        # One iteration's rollouts hold ~35 episodes (binomial std ~0.08): a trailing mean
        # over 10 iterations shows the trend that the raw curve hides.
        window = min(10, len(mean))
        valid = np.isfinite(mean)
        kernel = np.ones(window)
        sums = np.convolve(np.where(valid, mean, 0.0), kernel)[: len(mean)]
        counts = np.convolve(valid.astype(float), kernel)[: len(mean)]
        with np.errstate(invalid="ignore", divide="ignore"):
            smooth = sums / counts
        ax.plot(steps, smooth, color=color, lw=2, label=f"{label}, mean of last {window}")
    for method, color, style in (("expert", "k", "--"), ("bc", "C2", ":"), ("random", "C7", "-.")):
        vals = [r["success_rate"] for r in summary if r["method"] == method]
        if vals:
            ax.axhline(float(np.mean(vals)), color=color, ls=style, label=f"{method} (eval)")
    for method, color in (("dppo", "C0"), ("ppo", "C1")):
        ends = {r["seed"]: r["agent_steps"] for r in curves if r["method"] == method}
        if not ends:
            continue
        for kind, marker, face in (("", "D", color), ("_stochastic", "o", "none")):
            finals = [r for r in summary if r["method"] == method + kind]
            if finals:
                ax.scatter(
                    [ends[r["seed"]] for r in finals],
                    [r["success_rate"] for r in finals],
                    edgecolors=color,
                    facecolors=face,
                    marker=marker,
                    zorder=5,
                    label=f"{method} final ({kind[1:] or 'deterministic'} eval, per seed)",
                )
    ax.set_xlabel("agent-steps (world steps x 4 agents)")
    ax.set_ylabel("success rate")
    ax.set_title(f"{ENV}, default config, mean +- std over seeds")
    ax.grid(alpha=0.3)
    # Beside the axes: inside, it hid the DPPO curve.
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="< 3 min smoke run (one seed)")
    parser.add_argument("--out", default=None, help="output directory")
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--iterations", type=int, default=None, help="RL iterations per run")
    parser.add_argument(
        "--start",
        choices=("shipped", "bc"),
        default="shipped",
        help="BC policy DPPO starts from: the shipped one, or one cloned per seed first",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=("dppo", "ppo"),
        default=["dppo", "ppo"],
        help="RL methods to run (default both; the expert, random and BC are always evaluated)",
    )
    parser.add_argument("--cpus", type=int, default=2, help="jobs at once (one core each)")
    parser.add_argument(
        "--config",
        default=str(RECIPE),
        help="DPPO recipe (TrainConfig YAML) the run's settings come from (default: %(default)s)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key of the recipe, a section's by its dotted path; VALUE is parsed as "
        "YAML (repeatable), e.g. --set ppo.lr_anneal_fraction=0",
    )
    args = parser.parse_args(argv)
    from agentcomm.policies.train import _set_dotted

    changes: dict[str, Any] = {}
    try:
        for item in args.set:
            key, sep, raw = item.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"--set {item!r} must look like KEY=VALUE")
            _set_dotted(changes, key.strip(), load_yaml(raw), f"--set {item!r}")
        full = full_settings(load_recipe(args.config, changes))
    except ValueError as err:
        parser.error(str(err))
    use_one_thread()

    import ray

    from agentcomm.policies.checkpoint import policy_path

    settings = quick_settings(full) if args.quick else full
    seeds = args.seeds or settings["seeds"]
    out = Path(args.out or ("results/train_search_rescue" + ("_quick" if args.quick else "")))
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    init_local_ray(args.cpus)
    rl = settings["rl"]
    if args.iterations is not None:
        rl = {**rl, "ppo": {**rl["ppo"], "iterations": args.iterations}}
    episodes = settings["eval_episodes"]
    train_task = ray.remote(num_cpus=1, max_retries=0)(_train_job)
    eval_task = ray.remote(num_cpus=1, max_retries=0)(_evaluate_job)
    t_start = time.perf_counter()
    futures = {}
    try:
        starts = {}
        for seed in seeds:
            if args.start == "shipped":
                starts[seed] = str(policy_path(settings["pretrained"]))
            else:
                bc_run = {"algo": "bc", "out": str(out / f"bc_seed{seed}"), "eval_episodes": 0}
                starts[seed] = train_task.remote("bc", seed, [bc_run, settings["bc"]])
        # Longest jobs first, so that the cores stay busy to the end.
        for seed in seeds if "dppo" in args.methods else ():
            pretrained = starts[seed]
            if not isinstance(pretrained, str):
                pretrained = ray.get(pretrained)["policy"]
            futures[("dppo", seed)] = train_task.remote(
                "dppo",
                seed,
                [
                    {
                        "out": str(out / f"dppo_seed{seed}"),
                        "dppo": {"pretrained": pretrained},
                        "eval_episodes": episodes,
                    },
                    rl,
                    settings["dppo"],
                ],
            )
        for seed in seeds if "ppo" in args.methods else ():
            futures[("ppo", seed)] = train_task.remote(
                "ppo",
                seed,
                [
                    {"algo": "ppo", "out": str(out / f"ppo_seed{seed}"), "eval_episodes": episodes},
                    rl,
                    settings["ppo"],
                ],
            )
        for seed in seeds:
            bc_policy = starts[seed] if isinstance(starts[seed], str) else None
            futures[("eval", seed)] = eval_task.remote(seed, episodes, bc_policy)
        curves: list[dict] = []
        summary: list[dict] = []
        pending = {ref: key for key, ref in futures.items()}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            method, seed = pending.pop(done[0])
            res = ray.get(done[0])
            if method == "eval":
                summary += res
                text = ", ".join(f"{r['method']} {r['success_rate']:.3f}" for r in res)
            else:
                curves += res["curve"]
                summary += res["summary"]
                text = f"{method} {res['summary'][0]['success_rate']:.3f} " + ", ".join(
                    [f"({res['summary'][0]['seconds']:.0f}s)"]
                    + [f"{r['method']} {r['success_rate']:.3f}" for r in res["summary"][1:]]
                )
            print(f"seed {seed}: eval success {text}", flush=True)
            write_csv(out / "curves.csv", curves)
            write_csv(out / "summary.csv", summary)
        if args.start == "bc":
            # The per-seed BC policies were evaluated by their own jobs' successors: run
            # the deterministic evaluation on the seed's worlds here.
            for seed in seeds:
                policy = ray.get(starts[seed])["policy"]
                rows = ray.get(eval_task.remote(seed, episodes, policy))
                summary += [r for r in rows if r["method"] == "bc"]
            write_csv(out / "summary.csv", summary)
    finally:
        ray.shutdown()
    _plot(out / "learning_curves.png", curves, summary)

    def mean(method: str) -> float:
        vals = [r["success_rate"] for r in summary if r["method"] == method]
        return sum(vals) / len(vals) if vals else math.nan

    res = {
        m: mean(m)
        for m in ("expert", "random", "bc", "dppo", "ppo", "dppo_stochastic", "ppo_stochastic")
    }
    lift = 100 * (res["dppo"] - res["bc"])
    gap = 100 * (res["expert"] - res["dppo"])
    bc_gap = 100 * (res["expert"] - res["bc"])
    # The target: +15 points over BC, or within 5 of the expert when BC starts
    # within 15 of it.
    met = lift >= 15 or (bc_gap < 15 and gap <= 5)
    elapsed = time.perf_counter() - t_start
    # One seed's fine-tuning budget in wall minutes on one core (its own job's time; the
    # other core ran another job meanwhile).
    dppo_seconds = [r["seconds"] for r in summary if r["method"] == "dppo"]
    dppo_minutes = max(dppo_seconds) / 60 if dppo_seconds else math.nan
    dppo_steps = max((r["agent_steps"] for r in curves if r["method"] == "dppo"), default=0)
    atomic_write_text(
        out / "result.json",
        json.dumps(
            {
                **res,
                "lift_points": lift,
                "gap_to_expert_points": gap,
                "met": met,
                "start": args.start,
                "seeds": seeds,
                "minutes": elapsed / 60,
                "dppo_minutes_per_seed": dppo_minutes,
                "dppo_agent_steps": dppo_steps,
            },
            indent=2,
        ),
    )
    print(
        "RESULT "
        + " ".join(f"{k}_success={v:.3f}" for k, v in res.items())
        + f" dppo_lift_points={lift:.1f} gap_to_expert_points={gap:.1f} target_met={int(met)}"
        + f" start={args.start} seeds={len(seeds)} minutes={elapsed / 60:.1f}"
        + f" dppo_minutes_per_seed={dppo_minutes:.1f} dppo_agent_steps={dppo_steps}"
    )


if __name__ == "__main__":
    main()
