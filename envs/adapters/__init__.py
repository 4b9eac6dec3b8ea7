"""Thin adapters from the batched world to PettingZoo, Gymnasium, RLlib and stable-baselines3.

Every adapter owns one :class:`~agentcomm.envs.world.CommWorld` and only converts:
dicts of per-agent numpy arrays (or flat arrays) in, ``[B, N, ...]`` tensors to the
world, and the world's tensors back out. Dynamics, rewards, termination, validation of
action values (clipping to ``[-1, 1]``) and seeding stay in the world.

=========================  ==========================================  ============================
module                     class                                       view of the world
=========================  ==========================================  ============================
``adapters.pettingzoo``    :class:`~.pettingzoo.ParallelCommEnv`       one world, one dict per agent
``adapters.gymnasium``     :class:`~.gymnasium.CentralizedGymEnv`      one world, joint controller
``adapters.gymnasium``     :class:`~.gymnasium.BatchedGymVectorEnv`    ``B`` worlds, joint controller
``adapters.rllib``         :class:`~.rllib.CommMultiAgentEnv`          one world, one dict per agent
``adapters.sb3``           :class:`~.sb3.SB3ParameterSharingVecEnv`    ``B * N`` (world, agent) slots
=========================  ==========================================  ============================

This package imports none of those libraries; each module imports its own. The helpers
below are the conversions the adapters share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..world import ACTION_DIM, CommWorld

__all__ = ["agent_infos", "info_to_numpy", "reset_info", "stack_agent_actions"]


def reset_info(world: CommWorld) -> dict[str, torch.Tensor]:
    """The info of freshly reset worlds, with every key of :data:`~agentcomm.envs.world.INFO_KEYS`.

    TorchRL builds its info specs from the infos of ``reset()`` and drops keys that
    appear only in ``step()``, so the adapters report every key at reset too: nothing
    has been sent yet (accounting zero), ``belief_error`` and ``success`` as the world
    computes them for its current state.

    Args:
        world: the batched world, just reset.
    Returns:
        the keys, shapes and dtypes of :meth:`CommWorld.step`'s info: accounting keys
        zero (int64 counts; ``capacity_bits`` float32), per agent ``[B, N]`` except
        ``fc_channel_uses`` and ``fc_messages_sent`` (``[B]``); ``belief_error``
        (float32 ``[B, N]``) and ``success`` (bool ``[B]``) of the current state.
    """
    return world.reset_info()


def info_to_numpy(info: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The world's info tensors as numpy arrays, same keys, shapes and dtypes."""
    return {k: v.detach().cpu().numpy() for k, v in info.items()}


def agent_infos(
    info: Mapping[str, np.ndarray], index: int, agents: Sequence[str]
) -> dict[str, dict[str, np.generic]]:
    """Split world ``index``'s info into one dict per agent.

    Args:
        info: numpy info arrays, per agent ``[B, N]`` or per world ``[B]``.
        index: the world ``b``.
        agents: agent names in index order (``N`` of them).
    Returns:
        ``{agent: {key: numpy scalar}}``; per-world values are repeated for every agent.
        Numpy scalars keep the world's dtypes (int64, float32, bool) for spec inference.
    """
    out: dict[str, dict[str, np.generic]] = {}
    for i, agent in enumerate(agents):
        out[agent] = {k: (v[index, i] if v.ndim == 2 else v[index]) for k, v in info.items()}
    return out


def stack_agent_actions(actions: Mapping[str, Any], agents: Sequence[str]) -> torch.Tensor:
    """One action per agent, stacked for a one-world step.

    Args:
        actions: ``{agent: array-like of shape (6,)}``, exactly one entry per agent in
            ``agents``; values outside ``[-1, 1]`` are clipped by the world.
        agents: the agents expected to act, in index order.
    Returns:
        float32 ``[1, N, 6]``.
    Raises:
        ValueError: a missing or unknown agent, a non-numeric action, a wrong shape, or
            NaN/inf, naming the agent.
    """
    if not isinstance(actions, Mapping):
        raise ValueError(
            f"actions must be a dict {{agent: array of shape ({ACTION_DIM},)}}, "
            f"got {type(actions).__name__}"
        )
    missing = [a for a in agents if a not in actions]
    unknown = [a for a in actions if a not in agents]
    if missing or unknown:
        raise ValueError(
            f"actions must hold exactly one entry per live agent {list(agents)}; "
            f"missing {missing}, unknown {unknown}"
        )
    rows = []
    for agent in agents:
        try:
            row = np.asarray(actions[agent], dtype=np.float32)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"actions[{agent!r}]={actions[agent]!r} is not a numeric array: {err}"
            ) from err
        if row.shape != (ACTION_DIM,):
            raise ValueError(f"actions[{agent!r}] has shape {row.shape}; expected ({ACTION_DIM},)")
        if not np.isfinite(row).all():
            raise ValueError(f"actions[{agent!r}]={row.tolist()} holds NaN or inf")
        rows.append(row)
    return torch.from_numpy(np.stack(rows)).unsqueeze(0)
