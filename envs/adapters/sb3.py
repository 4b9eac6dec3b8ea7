"""stable-baselines3 ``VecEnv`` for parameter sharing: every (world, agent) pair is one slot.

One single-agent SB3 policy then drives every agent of every world, seeing only that
agent's observation: decentralized execution with shared parameters, trained by any SB3
algorithm on ``B * N`` "environments" that are stepped as one batch.

>>> from stable_baselines3 import PPO
>>> from agentcomm.envs.adapters.sb3 import SB3ParameterSharingVecEnv
>>> venv = SB3ParameterSharingVecEnv("IntentCoverage-v0", num_worlds=2)
>>> venv.num_envs  # 2 worlds x 4 agents
8
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv

from .. import make_vec
from ..render import render_frame
from ..world import ACTION_DIM
from . import info_to_numpy, reset_info
from .pettingzoo import check_render_mode

__all__ = ["SB3ParameterSharingVecEnv"]


class SB3ParameterSharingVecEnv(VecEnv):
    """``B`` worlds of ``N`` agents as an SB3 ``VecEnv`` of ``B * N`` slots.

    Slot ``k = b * N + i`` is agent ``i`` of world ``b``:

    * observation ``(Do,)``: that agent's observation;
    * action ``(6,)``: that agent's action (``step`` takes ``[B * N, 6]``);
    * reward: the team reward of world ``b`` (every slot of a world gets the same);
    * done: world ``b``'s episode ended (terminated or truncated); all ``N`` slots of a
      world end together;
    * info: that agent's entries of the world's info (per-world keys repeated), plus,
      when done, ``"terminal_observation"`` (the agent's last observation of the
      episode) and ``"TimeLimit.truncated"`` (truncated and not terminated), the way
      SB3's ``DummyVecEnv`` reports them.

    Finished worlds reset inside the same ``step_wait`` (SB3's autoreset convention), so
    the returned observation of a done slot is the first of the next episode. Wrap in
    ``VecMonitor`` for episode statistics in SB3's logs.

    All slots share one batched world, hence one generator: :meth:`seed` reseeds it at
    the next :meth:`reset`, and ``env_method`` / ``set_attr`` act on the shared world, so
    they accept only every slot at once.

    Args:
        env_id: a registered id.
        num_worlds: ``B``.
        device: torch device of the world.
        render_mode: ``None`` or ``"rgb_array"`` (``get_images`` gives slot ``(b, i)``
            the frame of world ``b`` with agent ``i``'s belief).
        **config: overrides of the scenario's config fields.
    """

    def __init__(
        self,
        env_id: str,
        num_worlds: int = 1,
        device: str | torch.device = "cpu",
        render_mode: str | None = None,
        **config: Any,
    ) -> None:
        self.render_mode = check_render_mode(render_mode)
        self.world = make_vec(env_id, num_envs=num_worlds, device=device, **config)
        self.env_id = env_id
        self.num_worlds = num_worlds
        self.num_agents = self.world.num_agents
        self._actions: torch.Tensor | None = None
        super().__init__(
            num_worlds * self.num_agents,
            spaces.Box(-1.0, 1.0, (self.world.obs_dim,), np.float32),
            spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32),
        )

    # ------------------------------------------------------------------ stepping
    def reset(self) -> np.ndarray:
        """Reset every world (with the seed from :meth:`seed`, if one is pending).

        Returns:
            float32 ``[B * N, Do]``.
        """
        seed = self._seeds[0]
        obs = self.world.reset(seed=seed)
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = self._slot_infos(info_to_numpy(reset_info(self.world)))
        return obs.reshape(self.num_envs, -1).cpu().numpy()

    def step_async(self, actions: np.ndarray) -> None:
        try:
            arr = np.asarray(actions, dtype=np.float32)
        except (TypeError, ValueError) as err:
            raise ValueError(f"actions is not a numeric array: {err}") from err
        if arr.shape != (self.num_envs, ACTION_DIM):
            raise ValueError(
                f"actions has shape {arr.shape}; expected ({self.num_envs}, {ACTION_DIM}) "
                f"(B={self.num_worlds} worlds x N={self.num_agents} agents, 6 each)"
            )
        self._actions = torch.from_numpy(arr.reshape(self.num_worlds, self.num_agents, -1))

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        if self._actions is None:
            raise ValueError("step_wait() called without step_async(actions) first")
        actions, self._actions = self._actions, None
        obs, rew, term, trunc, info = self.world.step(actions)
        n = self.num_agents
        obs_np = obs.reshape(self.num_envs, -1).cpu().numpy()
        rewards = rew.reshape(-1).cpu().numpy()
        term_np, trunc_np = term.cpu().numpy(), trunc.cpu().numpy()
        done_world = term_np | trunc_np
        dones = np.repeat(done_world, n)
        infos = self._slot_infos(info_to_numpy(info))
        if done_world.any():
            self.world.reset_at(torch.from_numpy(done_world).to(self.world.device))
            fresh = self.world.observation().reshape(self.num_envs, -1).cpu().numpy()
            fresh_infos = self._slot_infos(info_to_numpy(reset_info(self.world)))
            for k in np.flatnonzero(dones):
                infos[k]["terminal_observation"] = obs_np[k]
                infos[k]["TimeLimit.truncated"] = bool(trunc_np[k // n] and not term_np[k // n])
                self.reset_infos[k] = fresh_infos[k]
            obs_np = np.where(dones[:, None], fresh, obs_np)
        return obs_np, rewards, dones, infos

    def _slot_infos(self, info: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        n = self.num_agents
        return [
            {key: (v[k // n, k % n] if v.ndim == 2 else v[k // n]) for key, v in info.items()}
            for k in range(self.num_envs)
        ]

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Reseed the shared generator with ``seed`` at the next :meth:`reset` (``None``: keep
        its stream). Returns ``seed`` once per slot, since every slot draws from it."""
        self._seeds = [seed] * self.num_envs
        return self._seeds

    def close(self) -> None:
        """Nothing to release: the world holds tensors only."""

    # ------------------------------------------------------------------ attributes
    def _all_slots(self, indices: Any, what: str) -> None:
        if sorted(self._get_indices(indices)) != list(range(self.num_envs)):
            raise ValueError(
                f"{what} acts on the batched world that all {self.num_envs} slots share; "
                f"indices={indices!r} must be None (every slot)"
            )

    def _target(self, name: str) -> Any:
        # render_mode describes this adapter; everything else is the world's.
        return self if name == "render_mode" else self.world

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        """``getattr(world, attr_name)`` once per requested slot (``render_mode``: the adapter's)."""
        value = getattr(self._target(attr_name), attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        """Set an attribute of the shared world (``indices`` must be every slot)."""
        self._all_slots(indices, "set_attr")
        setattr(self._target(attr_name), attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any
    ) -> list[Any]:
        """Call a method of the shared world once (``indices`` must be every slot); the
        result is repeated per slot."""
        self._all_slots(indices, "env_method")
        result = getattr(self.world, method_name)(*method_args, **method_kwargs)
        return [result] * self.num_envs

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        """No Gymnasium wrappers sit between SB3 and the world."""
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> list[np.ndarray]:
        """One uint8 ``[400, 400, 3]`` frame per slot: world ``b`` as agent ``i`` believes it."""
        if self.render_mode != "rgb_array":
            raise ValueError(
                f"get_images() needs render_mode='rgb_array', got {self.render_mode!r}"
            )
        n = self.num_agents
        return [render_frame(self.world, k // n, agent=k % n) for k in range(self.num_envs)]
