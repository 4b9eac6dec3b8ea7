"""The ``sb3-ppo`` training run: stable-baselines3 PPO with parameter sharing.

SB3 writes ``OUT/sb3/progress.csv`` and ``OUT/sb3/model.zip`` (after every rollout's
update); a resumed run keeps the earlier rows. The Gaussian actor is exported to
``OUT/policy`` as safetensors.
"""

from __future__ import annotations

import math
from pathlib import Path

from agentcomm.policies.run_dir import (
    TrainResult,
    evaluate_run,
    policy_metadata,
    read_csv,
    write_csv,
)
from agentcomm.policies.train_config import (
    TrainConfig,
    num_agents,
    resolve_device,
    scenario_obs_dim,
    scenario_overrides,
)

__all__ = ["train_sb3_run"]


def train_sb3_run(config: TrainConfig, out: Path, resume: bool) -> TrainResult:
    """Run ``algo="sb3-ppo"`` into ``out``, from ``sb3/model.zip`` when ``resume``."""
    from agentcomm.policies.baselines import save_gaussian_actor, train_sb3_ppo

    # SB3's CSV logger rewrites progress.csv: keep the rows of the run being resumed.
    checkpoint = out / "sb3" / "model.zip"
    earlier = read_csv(out / "sb3" / "progress.csv") if resume and checkpoint.is_file() else []
    device = resolve_device(config.device)
    n = num_agents(config)
    n_steps = max(1, math.ceil(config.train_batch_size / (config.num_envs * n)))
    model = train_sb3_ppo(
        config.env,
        env_config=scenario_overrides(config.env_config),
        total_timesteps=config.iterations * n_steps * config.num_envs * n,
        num_worlds=config.num_envs,
        n_steps=n_steps,
        batch_size=config.minibatch_size,
        n_epochs=config.num_epochs,
        lr=config.lr,
        lr_anneal_fraction=config.lr_anneal_fraction,
        gamma=config.gamma,
        gae_lambda=config.lambda_,
        clip_range=config.clip_param if config.clip_param is not None else 0.2,
        hidden=config.hidden,
        seed=config.seed,
        device=device,
        log_dir=out / "sb3",
        progress=config.progress,
        checkpoint=checkpoint,
        resume=resume,
    )
    policy_dir = save_gaussian_actor(
        out / "policy",
        "sb3",
        model.policy,
        scenario_obs_dim(config),
        6,
        config.hidden,
        policy_metadata(config),
    )
    history = earlier + read_csv(out / "sb3" / "progress.csv")
    if earlier:
        write_csv(out / "sb3" / "progress.csv", history)
    from tensorboardX import SummaryWriter

    with SummaryWriter(str(out / "tb")) as writer:
        for row in history:
            step = int(row.get("time/total_timesteps", 0))
            for key, value in row.items():
                if math.isfinite(value):
                    writer.add_scalar(key, value, step)
    evaluation = evaluate_run(config, policy_dir, out)
    return TrainResult(str(out), str(policy_dir), history, evaluation)
