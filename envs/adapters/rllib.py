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
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from agentcomm._checks import check_choice, check_device

from .. import list_envs, make_vec
from ..render import render_frame
from ..world import ACTION_DIM
from . import agent_infos, info_to_numpy, reset_info, stack_agent_actions
from .pettingzoo import check_render_mode

__all__ = [
    "ADAPTER_KEYS",
    "ENV_PREFIX",
    "CommMultiAgentEnv",
    "RLlibEnvConfig",
    "parse_env_config",
    "register_rllib_envs",
]

#: Prefix of the names under which ``register_rllib_envs`` registers every scenario
#: (``"agentcomm/<EnvId>"``); the batched EnvRunner and ``dppo_config`` read it too.
ENV_PREFIX = "agentcomm/"

#: ``env_config`` keys the adapter reads itself; every other key overrides the scenario config.
ADAPTER_KEYS = ("env_id", "centralized_critic", "render_mode", "device")


@dataclass(frozen=True)
class RLlibEnvConfig:
    """RLlib's ``env_config`` split into the :data:`ADAPTER_KEYS` and the scenario overrides.

    Attributes:
        env_id: a registered scenario id, e.g. ``"SearchRescue-v0"``.
        overrides: every other key, for the scenario's config (nested dicts for
            ``sensing``, ``channel`` and ``comm``).
        centralized_critic: observations carry the global state for a centralized critic.
        render_mode: ``None`` or ``"rgb_array"``.
        device: torch device of the world (``"auto"`` resolved to ``"cuda"`` when a GPU is
            available, else ``"cpu"``).
    """

    env_id: str
    overrides: dict[str, Any]
    centralized_critic: bool = False
    render_mode: str | None = None
    device: str = "cpu"


def parse_env_config(env_config: Mapping[str, Any] | None, env: Any = None) -> RLlibEnvConfig:
    """Read the :data:`ADAPTER_KEYS` of an RLlib ``env_config``, the one rule for every
    RLlib entry point (this adapter and the batched EnvRunner).

    Args:
        env_config: scenario overrides plus ``"env_id"``, ``"centralized_critic"`` (bool,
            default False), ``"render_mode"`` and ``"device"`` (``"cpu"``, ``"cuda[:i]"``
            or ``"auto"``; default ``"cpu"``).
        env: the RLlib env name, ``"agentcomm/<EnvId>"`` or ``"<EnvId>"``; ``None`` when
            the caller has none, and then ``env_config["env_id"]`` is required.
    Raises:
        ValueError: naming the key: no scenario id, an unknown one, ``env_config['env_id']``
            contradicting ``env``, a non-bool ``centralized_critic``, an unknown render
            mode or a device this machine lacks.
    """
    if env_config is not None and not isinstance(env_config, Mapping):
        raise ValueError(f"env_config={env_config!r} is not allowed; expected a mapping")
    overrides = dict(env_config or {})
    given = overrides.pop("env_id", None)
    if env is not None:
        if not isinstance(env, str):
            raise ValueError(
                f"env={env!r} is not allowed; expected '{ENV_PREFIX}<EnvId>' with EnvId one "
                f"of {list_envs()}"
            )
        env_id = env.removeprefix(ENV_PREFIX)
        if given is not None and given != env_id:
            raise ValueError(f"env_config['env_id']={given!r} contradicts env={env!r}")
    elif given is None:
        raise ValueError(
            f"env_config['env_id'] is required; choose one of {list_envs()} (or use the "
            "names registered by register_rllib_envs())"
        )
    else:
        env_id = given
    name = "env" if env is not None else "env_config['env_id']"
    check_choice(name, env_id, list_envs())
    centralized = overrides.pop("centralized_critic", False)
    if not isinstance(centralized, bool):
        raise ValueError(
            f"env_config['centralized_critic']={centralized!r} is not allowed; expected "
            "true or false"
        )
    render_mode = check_render_mode(overrides.pop("render_mode", None))
    device = overrides.pop("device", "cpu")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = str(check_device("env_config['device']", device))
    return RLlibEnvConfig(env_id, overrides, centralized, render_mode, device)


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
        spec = parse_env_config(config)
        centralized = spec.centralized_critic
        self.render_mode = spec.render_mode
        self.world = make_vec(spec.env_id, num_envs=1, device=spec.device, **spec.overrides)
        self.env_id = spec.env_id
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
    parse_env_config(env_config, f"{ENV_PREFIX}{env_id}")  # env_config['env_id'] must agree
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
