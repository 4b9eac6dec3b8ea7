"""PettingZoo ``ParallelEnv`` over one world of the batched core (``B = 1``).

| | |
|---|---|
| Agents | ``possible_agents = ["agent_0", ..., "agent_{N-1}"]``, all act every step |
| Action space | ``Box(-1, 1, (6,), float32)`` per agent (layout: :mod:`agentcomm.envs.world`) |
| Observation space | ``Box(-1, 1, (Do,), float32)`` per agent (``Do``: the scenario's) |
| State space | ``Box(-1, 1, (Ds,), float32)``: :meth:`CommWorld.state` |
| Render modes | ``"rgb_array"`` (:func:`agentcomm.envs.render.render_frame`) |
| Import | ``agentcomm.make("SearchRescue-v0")``; AEC: ``agentcomm.make_aec(...)`` |

The team shares one reward and one episode: every agent receives the team reward,
and all agents terminate (or truncate) together, after which ``agents`` is ``[]``
until the next :meth:`~ParallelCommEnv.reset`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from .. import make_vec
from ..render import render_frame
from ..world import ACTION_DIM
from . import agent_infos, info_to_numpy, reset_info, stack_agent_actions

__all__ = ["ParallelCommEnv"]

_RENDER_MODES = ("rgb_array",)


def check_render_mode(render_mode: str | None) -> str | None:
    """``None`` or ``"rgb_array"``; ``"human"`` needs a display, which the simulator never opens."""
    if render_mode is not None and render_mode not in _RENDER_MODES:
        raise ValueError(
            f"render_mode={render_mode!r} is not supported; choose None or one of "
            f"{list(_RENDER_MODES)} (there is no 'human' window: write frames with "
            "`agentcomm render` or render_frame instead)"
        )
    return render_mode


class ParallelCommEnv(ParallelEnv):
    """One agentcomm world as a PettingZoo ``ParallelEnv`` (see the module docstring).

    Args:
        env_id: a registered id (``agentcomm.list_envs()``).
        render_mode: ``None`` or ``"rgb_array"``.
        **config: overrides of the scenario's config fields (nested dicts for
            ``sensing``, ``channel`` and ``comm``), as for :func:`agentcomm.make_vec`.

    Seeding: ``reset(seed=s)`` reseeds the world's generator, so the same seed and the
    same actions give the same trajectory bit for bit; ``reset()`` continues the
    generator's stream.

    >>> import agentcomm
    >>> env = agentcomm.make("IntentCoverage-v0")
    >>> obs, infos = env.reset(seed=0)
    >>> sorted(obs) == env.possible_agents and sorted(infos["agent_0"]) == sorted(
    ...     agentcomm.envs.world.INFO_KEYS)
    True
    """

    metadata = {
        "render_modes": list(_RENDER_MODES),
        "name": "agentcomm",
        "is_parallelizable": True,
        "render_fps": 10,
    }

    def __init__(self, env_id: str, render_mode: str | None = None, **config: Any) -> None:
        self.render_mode = check_render_mode(render_mode)
        self.world = make_vec(env_id, num_envs=1, **config)
        self.env_id = env_id
        self.metadata = {**type(self).metadata, "name": env_id}
        self.possible_agents: list[str] = list(self.world.agents)
        self.agents: list[str] = []
        obs_box = spaces.Box(-1.0, 1.0, (self.world.obs_dim,), np.float32)
        act_box = spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
        # One object per agent, returned on every call: seeding a space must stick.
        self.observation_spaces = {a: obs_box for a in self.possible_agents}
        self.action_spaces = {a: act_box for a in self.possible_agents}
        self.state_space = spaces.Box(-1.0, 1.0, (self.world.state_dim,), np.float32)

    def observation_space(self, agent: str) -> spaces.Box:
        return self.observation_spaces[self._check_agent(agent)]

    def action_space(self, agent: str) -> spaces.Box:
        return self.action_spaces[self._check_agent(agent)]

    def _check_agent(self, agent: str) -> str:
        if agent not in self.observation_spaces:
            raise ValueError(
                f"agent={agent!r} is not allowed; choose one of {self.possible_agents}"
            )
        return agent

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.generic]]]:
        """Start a new episode.

        Args:
            seed: reseeds the world's generator; ``None`` continues its stream.
            options: accepted for API compatibility (PettingZoo's checker passes some);
                no reset options are defined and the content is ignored.
        Returns:
            ``obs {agent: float32 (Do,)}`` and ``infos {agent: {key: numpy scalar}}``
            holding every key of :data:`~agentcomm.envs.world.INFO_KEYS`.
        """
        obs = self.world.reset(seed=seed)[0].cpu().numpy()
        self.agents = list(self.possible_agents)
        info = info_to_numpy(reset_info(self.world))
        return self._split(obs), agent_infos(info, 0, self.agents)

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """Advance one step.

        Args:
            actions: ``{agent: array (6,)}``, one entry for every agent in ``agents``.
        Returns:
            ``obs``, ``rewards`` (float, the team reward), ``terminations``,
            ``truncations`` (bool), ``infos`` (numpy scalars), each a dict over the
            agents that acted.
        Raises:
            ValueError: the episode has ended (or never started), or ``actions`` is bad.
        """
        if not self.agents:
            raise ValueError(
                "step() called with no live agents: the episode has ended or reset() was "
                "never called; call reset() first"
            )
        agents = self.agents
        obs, rew, term, trunc, info = self.world.step(stack_agent_actions(actions, agents))
        reward = float(rew[0, 0])
        terminated, truncated = bool(term[0]), bool(trunc[0])
        if terminated or truncated:
            self.agents = []
        return (
            self._split(obs[0].cpu().numpy()),
            dict.fromkeys(agents, reward),
            dict.fromkeys(agents, terminated),
            dict.fromkeys(agents, truncated),
            agent_infos(info_to_numpy(info), 0, agents),
        )

    def _split(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        return {a: obs[i] for i, a in enumerate(self.possible_agents)}

    def state(self) -> np.ndarray:
        """float32 ``(Ds,)``: the global state for centralized critics (:meth:`CommWorld.state`)."""
        return self.world.state()[0].cpu().numpy()

    def render(self) -> np.ndarray | None:
        """uint8 ``[400, 400, 3]`` with ``render_mode="rgb_array"``; ``None`` without a mode."""
        if self.render_mode is None:
            return None
        return render_frame(self.world, 0)

    def close(self) -> None:
        """Nothing to release: the world holds tensors only."""
