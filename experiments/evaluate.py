"""Batched evaluation of a policy on one environment configuration.

Every episode of a batch runs in its own world of one batched environment; each
world contributes its *first* episode only (worlds that finish early are reset
to keep the batch stepping, and their later steps are not counted).

The worlds are the ``evaluation`` split's (:mod:`agentcomm.worlds`): seed index ``s``
runs on world seed ``world_seed("evaluation", s, 0)``, so the seeds of an experiment
never share a world, and none is a world that training or selection used.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

import agentcomm
from agentcomm.envs.experts import expert_actions, random_actions
from agentcomm.envs.world import CommWorld
from agentcomm.worlds import world_seed

__all__ = ["PolicyFn", "evaluate", "make_policy"]

#: Maps the batched world to actions ``[B, N, 6]``.
PolicyFn = Callable[[CommWorld], torch.Tensor]


def make_policy(name: str, seed: int = 0) -> PolicyFn:
    """``"expert"``, ``"random"``, ``"shipped:NAME"`` (a policy shipped in
    ``agentcomm/models/policies/NAME``) or the path of a policy checkpoint directory
    (:func:`agentcomm.policies.load_policy`; sampled deterministically with DDIM)."""
    if name == "expert":
        return expert_actions
    if name == "random":
        gen = torch.Generator().manual_seed(seed)
        return lambda world: random_actions(world, gen)
    from agentcomm.policies import load_policy
    from agentcomm.policies.checkpoint import policy_path

    policy = load_policy(policy_path(name))
    policy.eval()

    def act(world: CommWorld) -> torch.Tensor:
        obs = world.observation()
        b, n, d = obs.shape
        with torch.no_grad():
            out = policy.sample(
                obs.reshape(b * n, d), deterministic=True, mode="ddim", with_logprob=False
            )
        return out.action.reshape(b, n, -1).clamp(-1, 1)

    return act


@dataclass
class _Totals:
    steps: torch.Tensor
    ret: torch.Tensor
    solved: torch.Tensor
    sums: dict[str, torch.Tensor]


_PER_AGENT = (
    "channel_uses",
    "bits",
    "bits_delivered",
    "capacity_bits",
    "messages_sent",
    "messages_delivered",
    "belief_error",
)


def evaluate(
    env_id: str,
    policy: PolicyFn,
    episodes: int,
    seed: int,
    overrides: dict[str, Any] | None = None,
    device: str = "cpu",
) -> dict[str, float]:
    """Run ``episodes`` first episodes in parallel and average their statistics.

    Args:
        env_id: Scenario id.
        policy: ``world -> actions [B, N, 6]``.
        episodes: Worlds, one first episode each.
        seed: Seed index into the ``evaluation`` split, in ``[0, agentcomm.worlds.MAX_SEED)``
            (not a world seed: the worlds are ``world_seed("evaluation", seed, 0)``'s).
        overrides: Scenario config overrides (nested dicts).
        device: World device.

    Returns:
        A flat dict: ``success`` (fraction), ``return`` (team return), ``episode_length``,
        per agent per step ``channel_uses``, ``bits``, ``bits_delivered``,
        ``capacity_bits``, ``messages_sent``, ``messages_delivered``, ``belief_error``;
        ``fc_channel_uses`` per step; ``peer_snr_db`` and ``fc_snr_db`` (mean link SNRs
        over all agent pairs / agents and steps, dB).
    """
    worlds = world_seed("evaluation", seed, 0)
    world = agentcomm.make_vec(
        env_id, num_envs=episodes, device=device, seed=worlds, **(overrides or {})
    )
    world.reset(seed=worlds)
    dev = world.device
    tot = _Totals(
        steps=torch.zeros(episodes, device=dev),
        ret=torch.zeros(episodes, device=dev),
        solved=torch.zeros(episodes, dtype=torch.bool, device=dev),
        sums={k: torch.zeros(episodes, dtype=torch.float64, device=dev) for k in _PER_AGENT},
    )
    extra = {
        k: torch.zeros(episodes, dtype=torch.float64, device=dev) for k in ("fc", "psnr", "fsnr")
    }
    active = torch.ones(episodes, dtype=torch.bool, device=dev)
    n = world.num_agents
    off = ~torch.eye(n, dtype=torch.bool, device=dev)
    for _ in range(world.config.max_steps):
        _, rew, term, trunc, info = world.step(policy(world))
        a = active.double()
        tot.steps += active.float()
        tot.ret += rew[:, 0] * active.float()
        tot.solved |= info["success"] & active
        for k in _PER_AGENT:
            tot.sums[k] += info[k].double().mean(1) * a
        extra["fc"] += info["fc_channel_uses"].double() * a
        extra["psnr"] += world.peer_snr[:, off].double().mean(1) * a
        extra["fsnr"] += world.fc_snr.double().mean(1) * a
        done = term | trunc
        active &= ~done
        if not bool(active.any()):
            break
        if bool(done.any()):
            world.reset_at(done)
    steps = tot.steps.double()
    out = {
        "success": float(tot.solved.double().mean()),
        "return": float(tot.ret.double().mean()),
        "episode_length": float(steps.mean()),
    }
    for k in _PER_AGENT:
        out[k] = float((tot.sums[k] / steps).mean())
    out["fc_channel_uses"] = float((extra["fc"] / steps).mean())
    out["peer_snr_db"] = float((extra["psnr"] / steps).mean())
    out["fc_snr_db"] = float((extra["fsnr"] / steps).mean())
    for k, v in out.items():
        if not math.isfinite(v):
            raise RuntimeError(f"evaluation of {env_id} produced a non-finite {k}={v}")
    return out
