"""The RLlib training runs: ``dppo`` (fine-tune a BC diffusion policy) and ``ppo`` (Gaussian).

:func:`rllib_config` turns a :class:`~agentcomm.policies.train_config.TrainConfig` into an
RLlib ``AlgorithmConfig`` (:func:`~agentcomm.policies.dppo.dppo_config` or
:func:`~agentcomm.policies.gaussian_ppo.gaussian_ppo_config`, on the batched runner of
:mod:`~agentcomm.policies.env_runner` unless ``rllib.runner="stock"``), from the config's
common part and its ``ppo``, ``rllib`` and ``dppo`` or ``gaussian`` sections; :func:`train_rllib_run`
trains it, one ``progress.csv`` row and one checkpoint per iteration
(:mod:`~agentcomm.policies.run_dir`), resumes from the latest complete checkpoint, and
exports the policy (per agent for per-agent policies).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from agentcomm.policies import run_dir
from agentcomm.policies.ppo_config import annealed_lr
from agentcomm.policies.resume_state import restore_resume_state
from agentcomm.policies.run_dir import (
    TrainResult,
    evaluate_run,
    latest_checkpoint,
    plot_curves,
    policy_metadata,
    read_csv,
    write_csv,
)
from agentcomm.policies.train_config import (
    TrainConfig,
    module_ids,
    num_agents,
    resolve_device,
    scenario_obs_dim,
)

__all__ = ["rllib_config", "train_rllib_run"]


def rllib_config(config: TrainConfig, pretrained: str | None):
    """The RLlib ``AlgorithmConfig`` of a ``dppo`` or ``ppo`` run (``pretrained``: the BC
    policy directory DPPO starts from)."""
    env_config = dict(config.env_config)  # dppo_config adds the state a critic reads
    device = resolve_device(config.device)
    if device != "cpu":
        env_config["device"] = device
    from agentcomm.envs.adapters.rllib import ENV_PREFIX

    env_name = f"{ENV_PREFIX}{config.env}"
    ppo, rllib = config.ppo, config.rllib
    batched = rllib.runner == "batched"
    if not batched:
        from agentcomm.envs.adapters.rllib import register_rllib_envs

        register_rllib_envs()
    agent_ids = [f"agent_{i}" for i in range(num_agents(config))]
    common = dict(
        env_config=env_config,
        num_env_runners=rllib.num_env_runners,
        num_envs_per_env_runner=ppo.num_envs,
        num_learners=rllib.num_learners,
        num_gpus_per_learner=rllib.num_gpus_per_learner,
        train_batch_size=ppo.train_batch_size,
        minibatch_size=ppo.minibatch_size,
        num_epochs=ppo.num_epochs,
        lr=annealed_lr(ppo.lr, ppo.iterations * ppo.train_batch_size, ppo.lr_anneal_fraction),
        gamma=ppo.gamma,
        lambda_=ppo.lambda_,
        vf_clip_param=rllib.vf_clip_param,
        seed=config.seed,
    )
    if config.algo == "dppo":
        from agentcomm.policies.diffusion import ARCHITECTURE_KEYS
        from agentcomm.policies.dppo import dppo_config

        dppo = config.dppo
        clip = ppo.clip_param if ppo.clip_param is not None else 0.01
        clip_min = dppo.clip_param_min if dppo.clip_param_min is not None else clip / 10
        rl_config = dppo_config(
            env_name,
            pretrained=pretrained,
            # The architecture comes from the BC checkpoint; only sampling keys pass on.
            policy={k: v for k, v in config.policy.items() if k not in ARCHITECTURE_KEYS},
            sampler=config.sampler,
            critic_hidden=dppo.critic_hidden,
            critic_input=dppo.critic_input,
            multi_agent=None if batched else rllib.multi_agent,
            agent_ids=agent_ids,
            critic_lr=dppo.critic_lr,
            clip_param=clip,
            clip_param_min=clip_min,
            gamma_denoise=dppo.gamma_denoise,
            critic_warmup_steps=dppo.critic_warmup_iterations * ppo.train_batch_size,
            logprob_reduction=dppo.logprob_reduction,
            logprob_min=dppo.logprob_min,
            logprob_max=dppo.logprob_max,
            **common,
        )
    else:
        from agentcomm.policies.gaussian_ppo import gaussian_ppo_config

        rl_config = gaussian_ppo_config(
            env_name,
            multi_agent=None if batched else rllib.multi_agent,
            agent_ids=agent_ids,
            hidden=config.gaussian.hidden,
            clip_param=ppo.clip_param if ppo.clip_param is not None else 0.2,
            entropy_coeff=config.gaussian.entropy_coeff,
            critic_input=config.gaussian.critic_input,
            **common,
        )
    if batched:
        from agentcomm.policies.env_runner import BatchedCommEnvRunner

        rl_config = rl_config.env_runners(env_runner_cls=BatchedCommEnvRunner)
    return rl_config


def _row(result: dict[str, Any], iteration: int, seconds: float, ids: list[str]) -> dict[str, Any]:
    er = result.get("env_runners", {})
    row: dict[str, Any] = {
        "iteration": iteration,
        "agent_steps": er.get("num_env_steps_sampled_lifetime", math.nan),
        "world_steps": er.get("world_steps_sampled", math.nan),
        "episode_return_mean": er.get("episode_return_mean", math.nan),
        "success_rate": er.get("episode_success_rate", math.nan),
        "channel_uses_per_agent_step": er.get("channel_uses_per_agent_step", math.nan),
        "episode_len_mean": er.get("episode_len_mean", math.nan),
        "seconds": seconds,
    }
    learners = result.get("learners", {})
    for mid in ids:
        stats = learners.get(mid, {})
        suffix = "" if len(ids) == 1 else f"/{mid}"
        for key in ("policy_loss", "vf_loss", "mean_kl_loss", "vf_explained_var", "entropy"):
            if key in stats:
                row[f"{key}{suffix}"] = float(stats[key])
        # The learning rate RLlib set after this iteration's update (the DPPO actor's, or
        # PPO's one optimizer's): what lr_anneal_fraction makes of lr.
        for key in ("actor_learning_rate", "default_optimizer_learning_rate"):
            if key in stats:
                row[f"lr{suffix}"] = float(stats[key])
    return {k: float(v) for k, v in row.items()}


def _export(algo: Any, config: TrainConfig, out: Path, obs_dim: int) -> Path:
    from agentcomm.policies.checkpoint import save_policy
    from agentcomm.policies.gaussian_ppo import save_gaussian_actor

    ids = module_ids(config)
    root = out / "policy"
    for mid in ids:
        module = algo.get_module(mid)
        target = root if len(ids) == 1 else root / mid
        meta = policy_metadata(config, module_id=mid)
        if config.algo == "dppo":
            save_policy(target, module.policy, meta)
        else:
            # A centralized critic is training-only: the actor is what an obs critic's exports.
            tensors = None
            if config.gaussian.critic_input != "obs":
                from agentcomm.policies.central_critic import actor_state_dict

                tensors = actor_state_dict(module)
            save_gaussian_actor(
                target, "rllib", module, obs_dim, 6, config.gaussian.hidden, meta, tensors
            )
    return root


def train_rllib_run(
    config: TrainConfig, out: Path, resume: bool, pretrained: str | None
) -> TrainResult:
    """Run ``algo="dppo"`` or ``"ppo"`` into ``out``.

    Args:
        config: The run's configuration.
        out: Its directory.
        resume: Continue from ``rllib/LATEST.json``'s checkpoint.
        pretrained: Absolute path of the BC policy directory DPPO starts from (``None``
            for ``ppo``).
    """
    rl_config = rllib_config(config, pretrained)
    algo = rl_config.build_algo()
    ids = module_ids(config)
    history: list[dict[str, Any]] = []
    start_iter = 0
    latest = latest_checkpoint(out) if resume else None
    if latest is not None:
        start_iter, path = latest
        algo.restore_from_path(str(path.resolve()))
        restore_resume_state(algo, path)
        history = [r for r in read_csv(out / "progress.csv") if r["iteration"] <= start_iter]
        if config.progress:
            print(f"[resume] from iteration {start_iter} ({path})")
    from tensorboardX import SummaryWriter
    from tqdm.auto import tqdm

    obs_dim = scenario_obs_dim(config)
    writer = SummaryWriter(str(out / "tb"))
    try:
        iterations, budget_s = config.ppo.iterations, config.rllib.time_budget_s
        bar = tqdm(
            range(start_iter, iterations),
            desc=config.algo,
            disable=not config.progress,
            initial=start_iter,
            total=iterations,
        )
        t_loop = time.perf_counter()
        for it in bar:
            t0 = time.perf_counter()
            result = algo.train()
            row = _row(result, it + 1, time.perf_counter() - t0, ids)
            history.append(row)
            write_csv(out / "progress.csv", history)
            for key, value in row.items():
                if key != "iteration" and math.isfinite(value):
                    writer.add_scalar(f"train/{key}", value, int(row["agent_steps"]))
            writer.flush()
            run_dir.save_checkpoint(algo, out, it + 1)
            bar.set_postfix(
                ret=f"{row['episode_return_mean']:.2f}",
                succ=f"{row['success_rate']:.2f}",
                steps=int(row["agent_steps"]),
            )
            if budget_s is not None and t0 - t_loop + row["seconds"] > budget_s:
                break
        policy_dir = _export(algo, config, out, obs_dim)
    finally:
        writer.close()
        algo.stop()
    if history:
        plot_curves(
            out / "progress.png",
            [r["agent_steps"] for r in history],
            {
                "episode return": [r["episode_return_mean"] for r in history],
                "success rate": [r["success_rate"] for r in history],
            },
            "agent-steps",
        )
    evaluation = evaluate_run(config, policy_dir if len(ids) == 1 else out, out)
    return TrainResult(str(out), str(policy_dir), history, evaluation)
