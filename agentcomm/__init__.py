"""agentcomm: multi-agent simulation of intent-driven semantic communications.

The core package (channels, topology, beliefs, codecs) imports no RL library;
``make``, ``make_vec`` and ``list_envs`` load the environments on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "list_envs", "make", "make_aec", "make_vec"]


def list_envs() -> list[str]:
    """The registered environment ids."""
    from agentcomm.envs import list_envs as _list

    return _list()


def make(env_id: str, render_mode: str | None = None, **config: Any):
    """A PettingZoo ``ParallelEnv`` of ``env_id`` (one world). See :func:`agentcomm.envs.make`."""
    from agentcomm.envs import make as _make

    return _make(env_id, render_mode=render_mode, **config)


def make_aec(env_id: str, render_mode: str | None = None, **config: Any):
    """A PettingZoo ``AECEnv`` of ``env_id``. See :func:`agentcomm.envs.make_aec`."""
    from agentcomm.envs import make_aec as _make_aec

    return _make_aec(env_id, render_mode=render_mode, **config)


def make_vec(
    env_id: str, num_envs: int = 1, device: str = "cpu", seed: int | None = None, **config: Any
):
    """The batched torch world of ``env_id``. See :func:`agentcomm.envs.make_vec`."""
    from agentcomm.envs import make_vec as _make_vec

    return _make_vec(env_id, num_envs=num_envs, device=device, seed=seed, **config)
