"""The ``bc`` training run: expert demonstrations, then behaviour cloning of a diffusion policy.

Reads the common part of the :class:`~agentcomm.policies.train_config.TrainConfig` and its
``bc`` section. Collects expert demonstrations in the batched world (every agent-step of ``B`` worlds), fits
a :class:`~agentcomm.policies.diffusion.DiffusionPolicy` with the DDPM loss
(:func:`~agentcomm.policies.bc.train_bc`), saves it into ``OUT/policy`` and writes
``bc_loss.csv``, ``bc_loss.png`` and TensorBoard scalars beside it.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from agentcomm.policies.run_dir import (
    TrainResult,
    evaluate_run,
    plot_curves,
    policy_metadata,
    write_csv,
)
from agentcomm.policies.train_config import TrainConfig, resolve_device

__all__ = ["train_bc_run"]


def train_bc_run(config: TrainConfig, out: Path) -> TrainResult:
    """Run ``algo="bc"`` into ``out`` (see the module docstring)."""
    from agentcomm.config import merged
    from agentcomm.policies.bc import train_bc
    from agentcomm.policies.demos import Demonstrations, collect_demos, concat_demos
    from agentcomm.policies.diffusion import DiffusionConfig, DiffusionPolicy
    from agentcomm.policies.evaluate import Actor, policy_actor

    device = resolve_device(config.device)
    bc = config.bc
    # A policy that predicts action chunks (policy.action_horizon) learns from the expert's
    # next Ta actions of each agent; it executes the first.
    horizon = int(config.policy.get("action_horizon", 1))

    def collect(seed: int, behaviour: Actor | None = None) -> Demonstrations:
        """``demo_envs`` worlds of demonstrations, split between ``bc.modes`` (a loop over
        modes: each mode is another world config, so another batched world). Every mode's
        worlds draw from ``seed``: they start from the same states, so the modes' rows differ
        by the mode alone at first."""
        modes = bc.modes or (None,)
        parts = []
        for i, mode in enumerate(modes):
            env_config = config.env_config
            if mode is not None:
                env_config = merged(env_config, {"comm": {"mode": mode}})
            parts.append(
                collect_demos(
                    config.env,
                    bc.demo_steps,
                    num_envs=bc.demo_envs // len(modes) + (i < bc.demo_envs % len(modes)),
                    seed=seed,
                    device=device,
                    env_config=env_config,
                    progress=config.progress,
                    horizon=horizon,
                    behaviour=behaviour,
                    expert=bc.expert,
                )
            )
        return parts[0] if len(parts) == 1 else concat_demos(parts)

    demos = collect(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    policy_cfg = DiffusionConfig.from_dict(
        {**config.policy, "obs_dim": demos.obs.shape[1], "action_dim": demos.actions.shape[-1]}
    )
    policy = DiffusionPolicy.from_config(policy_cfg, generator=generator).to(device)
    gen = torch.Generator(device=device).manual_seed(config.seed)
    start = time.perf_counter()

    def fit(obs: torch.Tensor, actions: torch.Tensor, epochs: int, **meta: object) -> list:
        """Train on ``obs``/``actions`` for ``epochs`` more passes; save the EMA policy."""
        return train_bc(
            policy,
            obs.to(device),
            actions.to(device),
            epochs=epochs,
            batch_size=bc.batch_size,
            lr=bc.lr,
            ema_decay=bc.ema_decay,
            generator=gen,
            progress=config.progress,
            save_dir=out / "policy",
            save_metadata=policy_metadata(
                config, demos=int(obs.shape[0]), expert_success_rate=demos.success_rate, **meta
            ),
        ).losses

    losses = list(fit(demos.obs, demos.actions, bc.epochs))
    obs, actions = demos.obs, demos.actions
    for round_ in range(bc.dagger_rounds):
        # DAgger (policies/demos.py): the current policy drives, the expert labels.
        more = collect(config.seed + 1 + round_, policy_actor(policy, config.sampler))
        obs, actions = torch.cat([obs, more.obs]), torch.cat([actions, more.actions])
        if config.progress:
            print(f"[dagger {round_ + 1}] policy success {more.success_rate:.3f}, {len(obs)} rows")
        losses += fit(obs, actions, bc.dagger_epochs, dagger_rounds=round_ + 1)
    rows = [{"epoch": i + 1, "loss": loss} for i, loss in enumerate(losses)]
    write_csv(out / "bc_loss.csv", rows)
    plot_curves(out / "bc_loss.png", [r["epoch"] for r in rows], {"BC loss": losses}, "epoch")
    try:
        from tensorboardX import SummaryWriter

        with SummaryWriter(str(out / "tb")) as writer:
            for row in rows:
                writer.add_scalar("bc/loss", row["loss"], row["epoch"])
    except ImportError:
        pass
    if config.progress:
        print(
            f"[bc] {demos.obs.shape[0]} demos (expert success {demos.success_rate:.3f}), "
            f"{bc.epochs} epochs in {time.perf_counter() - start:.1f}s, "
            f"final loss {losses[-1]:.4f}"
        )
    evaluation = evaluate_run(config, out / "policy", out)
    return TrainResult(str(out), str(out / "policy"), rows, evaluation)
