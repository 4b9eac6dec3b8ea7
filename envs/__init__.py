"""Environments of agentcomm: one batched torch world, three scenarios, adapters.

Importing this package builds nothing: scenarios are looked up lazily by id
(like Gymnasium's string entry points), and it registers the Gymnasium ids
``agentcomm/<EnvId>`` so that ``gymnasium.make("agentcomm/SearchRescue-v0")``
works after ``import agentcomm.envs``.

>>> import agentcomm
>>> agentcomm.list_envs()
['IntentCoverage-v0', 'SearchRescue-v0', 'TargetTracking-v0']
"""

from __future__ import annotations

import importlib
from typing import Any

import torch

__all__ = ["ENV_ENTRY_POINTS", "env_class", "list_envs", "make", "make_aec", "make_vec"]

#: Registered scenario ids and their lazy entry points ``module:Class``.
ENV_ENTRY_POINTS: dict[str, str] = {
    "SearchRescue-v0": "agentcomm.envs.scenarios.search_rescue:SearchRescue",
    "IntentCoverage-v0": "agentcomm.envs.scenarios.intent_coverage:IntentCoverage",
    "TargetTracking-v0": "agentcomm.envs.scenarios.target_tracking:TargetTracking",
}


def list_envs() -> list[str]:
    """The registered scenario ids, sorted."""
    return sorted(ENV_ENTRY_POINTS)


def env_class(env_id: str) -> type:
    """The batched world class registered as ``env_id``."""
    if env_id not in ENV_ENTRY_POINTS:
        raise ValueError(f"env_id={env_id!r} is not registered; choose one of {list_envs()}")
    module, _, name = ENV_ENTRY_POINTS[env_id].partition(":")
    return getattr(importlib.import_module(module), name)


def make_vec(
    env_id: str,
    num_envs: int = 1,
    device: str | torch.device = "cpu",
    seed: int | None = None,
    **config: Any,
):
    """The batched world: ``num_envs`` parallel copies of ``env_id`` as ``[B, N, ...]`` tensors.

    ``config`` holds overrides of the scenario's config fields (nested dicts for
    ``sensing``, ``channel`` and ``comm``). ``seed`` must be ``None`` or an integer, and
    ``device`` one this machine has (``"cuda"`` without CUDA is refused here, by name).
    """
    from agentcomm._checks import check_device, check_seed

    cls = env_class(env_id)
    seed = check_seed("seed", seed)
    device = check_device("device", device)
    return cls(config, num_envs=num_envs, device=device, seed=seed)


def make(env_id: str, render_mode: str | None = None, **config: Any):
    """A PettingZoo ``ParallelEnv`` over one world (``B = 1``)."""
    from .adapters.pettingzoo import ParallelCommEnv

    return ParallelCommEnv(env_id, render_mode=render_mode, **config)


def make_aec(env_id: str, render_mode: str | None = None, **config: Any):
    """A PettingZoo ``AECEnv`` (through PettingZoo's ``parallel_to_aec`` converter)."""
    from pettingzoo.utils.conversions import parallel_to_aec

    return parallel_to_aec(make(env_id, render_mode=render_mode, **config))


def _register_gymnasium() -> None:
    import gymnasium

    for env_id in ENV_ENTRY_POINTS:
        gym_id = f"agentcomm/{env_id}"
        if gym_id not in gymnasium.registry:
            gymnasium.register(
                id=gym_id,
                entry_point="agentcomm.envs.adapters.gymnasium:CentralizedGymEnv",
                vector_entry_point="agentcomm.envs.adapters.gymnasium:BatchedGymVectorEnv",
                # ``registered_id`` pins the scenario to the id: gymnasium.make merges the
                # caller's kwargs over these, so an ``env_id=`` of another scenario would
                # otherwise build that scenario under this id.
                kwargs={"env_id": env_id, "registered_id": env_id},
                disable_env_checker=False,
            )


_register_gymnasium()
