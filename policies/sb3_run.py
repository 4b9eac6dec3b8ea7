"""The ``sb3-ppo`` training run: stable-baselines3 PPO with parameter sharing.

Reads the common part of the :class:`~agentcomm.policies.train_config.TrainConfig`, its
``ppo`` section (the loop) and its ``gaussian`` section (the network).

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
    from agentcomm.policies.gaussian_ppo import save_gaussian_actor, train_sb3_ppo

    # SB3's CSV logger rewrites progress.csv: keep the rows of the run being resumed.
    checkpoint = out / "sb3" / "model.zip"
    earlier = read_csv(out / "sb3" / "progress.csv") if resume and checkpoint.is_file() else []
    device = resolve_device(config.device)
    ppo, hidden = config.ppo, config.gaussian.hidden
    n = num_agents(config)
    n_steps = max(1, math.ceil(ppo.train_batch_size / (ppo.num_envs * n)))
    model = train_sb3_ppo(
        config.env,
        env_config=scenario_overrides(config.env_config),
        total_timesteps=ppo.iterations * n_steps * ppo.num_envs * n,
        num_worlds=ppo.num_envs,
        n_steps=n_steps,
        batch_size=ppo.minibatch_size,
        n_epochs=ppo.num_epochs,
        lr=ppo.lr,
        lr_anneal_fraction=ppo.lr_anneal_fraction,
        gamma=ppo.gamma,
        gae_lambda=ppo.lambda_,
        clip_range=ppo.clip_param if ppo.clip_param is not None else 0.2,
        hidden=hidden,
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
        hidden,
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
