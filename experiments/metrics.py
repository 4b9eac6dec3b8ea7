"""The experiments' entry to the one evaluation (:mod:`agentcomm.policies.evaluate`).

:func:`evaluate` runs ``episodes`` worlds of seed index ``seed`` of the ``evaluation`` split
(:mod:`agentcomm.worlds`) in one batch, through
:func:`agentcomm.policies.evaluate.evaluate`, and returns its result as a flat dict under
the short metric names the experiment tables use. Episodes, success (on the step an
episode ends), return (the agents' mean reward, summed) and the per-agent-step accounting
are that function's, so the main job, ``agentcomm eval`` and training report the same
numbers for the same policy, worlds and seed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from agentcomm.envs.world import CommWorld
from agentcomm.policies.evaluate import EvalResult, load_actor
from agentcomm.policies.evaluate import evaluate as evaluate_actor

__all__ = ["PolicyFn", "evaluate", "make_policy", "metrics"]

#: Maps the batched world to actions ``[B, N, 6]``.
PolicyFn = Callable[[CommWorld], torch.Tensor]


def make_policy(name: str, seed: int = 0) -> PolicyFn:
    """A policy by name, loaded by :func:`agentcomm.policies.evaluate.load_actor`:
    ``"expert"``, ``"random"`` (its draws seeded by ``seed``), ``"shipped:NAME"`` or a policy
    or run directory (learned policies act deterministically)."""
    actor, _ = load_actor(name, generator=torch.Generator().manual_seed(seed))
    return lambda world: actor(world, world.observation())


def metrics(result: EvalResult) -> dict[str, float | int]:
    """``result`` under the experiment tables' metric names (per agent per step unless
    stated): ``success``, ``successes``, ``return``, ``episode_length``, ``channel_uses``,
    ``bits``, ``bits_delivered``, ``capacity_bits``, ``messages_sent``,
    ``messages_delivered``, ``belief_error``, ``fc_channel_uses`` (per world step),
    ``peer_snr_db``, ``fc_snr_db``."""
    return {
        "success": result.success_rate,
        "successes": result.successes,
        "return": result.return_mean,
        "episode_length": result.length_mean,
        "channel_uses": result.channel_uses_per_agent_step,
        "bits": result.bits_per_agent_step,
        "bits_delivered": result.bits_delivered_per_agent_step,
        "capacity_bits": result.capacity_bits_per_agent_step,
        "messages_sent": result.messages_sent_per_agent_step,
        "messages_delivered": result.messages_delivered_per_agent_step,
        "belief_error": result.belief_error,
        "fc_channel_uses": result.fc_channel_uses_per_step,
        "peer_snr_db": result.peer_snr_db,
        "fc_snr_db": result.fc_snr_db,
    }


def evaluate(
    env_id: str,
    policy: PolicyFn | str,
    episodes: int,
    seed: int,
    overrides: dict[str, Any] | None = None,
    device: str = "cpu",
) -> dict[str, float | int]:
    """Evaluate ``policy`` on ``episodes`` worlds in one batch.

    Args:
        env_id: Scenario id.
        policy: A name for :func:`make_policy`, or ``world -> actions [B, N, 6]``.
        episodes: Worlds, one first episode each.
        seed: Seed index into the ``evaluation`` split, in ``[0, agentcomm.worlds.MAX_SEED)``
            (not a world seed: the worlds are ``world_seed("evaluation", seed, 0)``'s).
        overrides: Scenario config overrides (nested dicts).
        device: World device.

    Returns:
        :func:`metrics` of the evaluation.
    """
    if isinstance(policy, str):
        actor, _ = load_actor(policy, generator=torch.Generator().manual_seed(seed))
    else:
        fn = policy
        actor = lambda world, obs: fn(world)  # noqa: E731
    result = evaluate_actor(
        actor,
        env_id,
        episodes,
        num_envs=episodes,
        seed=seed,
        env_config=overrides,
        device=device,
        split="evaluation",
    )
    return metrics(result)
