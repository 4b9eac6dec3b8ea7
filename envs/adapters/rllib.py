"""RLlib ``MultiAgentEnv`` over one world of the batched core, for RLlib's new API stack.

RLlib ships a PettingZoo wrapper (``ParallelPettingZooEnv``), but it resets the env
unseeded in its constructor, ignores the seed of ``reset`` and breaks ``render``; this
adapter talks to the world directly instead.

>>> from agentcomm.envs.adapters.rllib import CommMultiAgentEnv
>>> env = CommMultiAgentEnv({"env_id": "IntentCoverage-v0", "centralized_critic": True})
>>> sorted(env.observation_spaces["agent_0"].spaces)
['obs', 'state']

With Ray Tune's registry (what ``PPOConfig().environment("agentcomm/SearchRescue-v0",
env_config={...})`` looks up)::

    from agentcomm.envs.adapters.rllib import register_rllib_envs
    register_rllib_envs()  # "agentcomm/IntentCoverage-v0", ...
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium import spaces
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from .. import list_envs, make_vec
from ..render import render_frame
from ..world import ACTION_DIM
from . import agent_infos, info_to_numpy, reset_info, stack_agent_actions
from .pettingzoo import check_render_mode

__all__ = ["ADAPTER_KEYS", "ENV_PREFIX", "CommMultiAgentEnv", "register_rllib_envs"]

#: Prefix of the names under which ``register_rllib_envs`` registers every scenario
#: (``"agentcomm/<EnvId>"``); the batched EnvRunner and ``dppo_config`` read it too.
ENV_PREFIX = "agentcomm/"

#: ``env_config`` keys the adapter reads itself; every other key overrides the scenario config.
ADAPTER_KEYS = ("env_id", "centralized_critic", "render_mode", "device")


class CommMultiAgentEnv(MultiAgentEnv):
    """One agentcomm world as an RLlib ``MultiAgentEnv``.

    Agents ``"agent_0" .. "agent_{N-1}"`` all act every step and share the team reward;
    ``terminateds["__all__"]`` / ``truncateds["__all__"]`` end the episode for the whole
    team at once, after which ``agents`` is ``[]`` until :meth:`reset`.

    Spaces (the same for every agent):

    * action: ``Box(-1, 1, (6,), float32)``;
    * observation: ``Box(-1, 1, (Do,), float32)``, or with ``centralized_critic=True``
      ``Dict({"obs": Box(-1, 1, (Do,)), "state": Box(-1, 1, (Ds,))})``: the agent's own
      observation for the actor and the global state (:meth:`CommWorld.state`, the same
      for every agent) for a centralized critic (``critic_input="state"`` of the DPPO
      module); the actor must read only ``"obs"``.

    Infos: every key of :data:`~agentcomm.envs.world.INFO_KEYS` per agent, at reset
    and at each step (numpy scalars).

    Args:
        config: RLlib's ``env_config``: ``"env_id"`` (required), ``"centralized_critic"``
            (bool, default False), ``"render_mode"`` (``None`` or ``"rgb_array"``),
            ``"device"`` (torch device of the world, default ``"cpu"``), and any
            overrides of the scenario's config fields (nested dicts for ``sensing``,
            ``channel`` and ``comm``).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        overrides = dict(config or {})
        env_id = overrides.pop("env_id", None)
        if env_id is None:
            raise ValueError(
                f"config['env_id'] is required; choose one of {list_envs()} (or use the "
                "names registered by register_rllib_envs())"
            )
        centralized = overrides.pop("centralized_critic", False)
        if not isinstance(centralized, bool):
            raise ValueError(f"config['centralized_critic']={centralized!r} must be a bool")
        self.render_mode = check_render_mode(overrides.pop("render_mode", None))
        device = overrides.pop("device", "cpu")
        self.world = make_vec(env_id, num_envs=1, device=device, **overrides)
        self.env_id = env_id
        self.centralized_critic = centralized
        self.possible_agents = list(self.world.agents)
        self.agents = list(self.possible_agents)
        obs_box = spaces.Box(-1.0, 1.0, (self.world.obs_dim,), np.float32)
        if centralized:
            state_box = spaces.Box(-1.0, 1.0, (self.world.state_dim,), np.float32)
            obs_space: spaces.Space = spaces.Dict({"obs": obs_box, "state": state_box})
        else:
            obs_space = obs_box
        act_box = spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
        self.observation_spaces = {a: obs_space for a in self.possible_agents}
        self.action_spaces = {a: act_box for a in self.possible_agents}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """Start a new episode; ``seed`` reseeds the world's generator (``None`` continues its
        stream); ``options`` is ignored (none are defined)."""
        obs = self.world.reset(seed=seed)[0].cpu().numpy()
        self.agents = list(self.possible_agents)
        return self._obs(obs), agent_infos(info_to_numpy(reset_info(self.world)), 0, self.agents)

    def step(self, action_dict: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """Advance one step with ``{agent: action (6,)}`` for every live agent.

        Returns:
            ``obs``, ``rewards`` (the team reward for each agent), ``terminateds`` and
            ``truncateds`` (per agent plus ``"__all__"``), ``infos``.
        """
        if not self.agents:
            raise ValueError("step() called after the episode ended; call reset() first")
        agents = self.agents
        obs, rew, term, trunc, info = self.world.step(stack_agent_actions(action_dict, agents))
        reward = float(rew[0, 0])
        terminated, truncated = bool(term[0]), bool(trunc[0])
        if terminated or truncated:
            self.agents = []
        terminateds = {**dict.fromkeys(agents, terminated), "__all__": terminated}
        truncateds = {**dict.fromkeys(agents, truncated), "__all__": truncated}
        return (
            self._obs(obs[0].cpu().numpy()),
            dict.fromkeys(agents, reward),
            terminateds,
            truncateds,
            agent_infos(info_to_numpy(info), 0, agents),
        )

    def _obs(self, obs: np.ndarray) -> dict[str, Any]:
        if not self.centralized_critic:
            return {a: obs[i] for i, a in enumerate(self.possible_agents)}
        state = self.world.state()[0].cpu().numpy()
        return {a: {"obs": obs[i], "state": state} for i, a in enumerate(self.possible_agents)}

    def render(self) -> np.ndarray | None:
        """uint8 ``[400, 400, 3]`` with ``render_mode="rgb_array"``; ``None`` without a mode."""
        if self.render_mode is None:
            return None
        return render_frame(self.world, 0)


def _create(env_id: str, env_config: Mapping[str, Any]) -> CommMultiAgentEnv:
    given = env_config.get("env_id", env_id)
    if given != env_id:
        raise ValueError(
            f"env_config['env_id']={given!r} contradicts the registered name {ENV_PREFIX}{env_id}"
        )
    return CommMultiAgentEnv({**env_config, "env_id": env_id})


def register_rllib_envs() -> list[str]:
    """Register every scenario with Ray Tune as ``"agentcomm/<EnvId>"``.

    Each creator takes RLlib's ``env_config`` (config overrides plus the
    :data:`ADAPTER_KEYS` other than ``env_id``) and returns a :class:`CommMultiAgentEnv`.
    The creators are module-level partials, so remote env runners can unpickle them
    (the package must be importable there: installed, or on ``PYTHONPATH`` before
    ``ray.init``).

    Returns:
        the registered names.
    """
    from ray.tune.registry import register_env

    names = []
    for env_id in list_envs():
        name = f"{ENV_PREFIX}{env_id}"
        register_env(name, functools.partial(_create, env_id))
        names.append(name)
    return names
