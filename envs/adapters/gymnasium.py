"""Gymnasium views of the batched world: one centralized controller for the whole team.

``gymnasium.make("agentcomm/SearchRescue-v0")`` builds :class:`CentralizedGymEnv` (one
world) and ``gymnasium.make_vec("agentcomm/SearchRescue-v0", num_envs=B,
vectorization_mode="vector_entry_point")`` builds :class:`BatchedGymVectorEnv` (``B``
worlds stepped as one batch); both are registered by ``import agentcomm.envs``.
"""

from __future__ import annotations

from typing import Any, Literal

import gymnasium
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from .. import make_vec
from ..render import render_frame
from ..world import ACTION_DIM, CommWorld
from . import info_to_numpy, reset_info
from .pettingzoo import check_render_mode

__all__ = ["BatchedGymVectorEnv", "CentralizedGymEnv"]


def _joint_spaces(world: CommWorld) -> tuple[spaces.Box, spaces.Box]:
    n = world.num_agents
    obs = spaces.Box(-1.0, 1.0, (n * world.obs_dim,), np.float32)
    act = spaces.Box(-1.0, 1.0, (n * ACTION_DIM,), np.float32)
    return obs, act


def _check_registered(env_id: str, registered_id: str | None) -> None:
    """Refuse an ``env_id`` that contradicts the Gymnasium id the env is made under.

    ``gymnasium.make("agentcomm/A", env_id="B")`` merges ``env_id="B"`` over the registered
    kwargs; building ``B`` under the id ``A`` would mislabel every result.
    """
    if registered_id is not None and env_id != registered_id:
        raise ValueError(
            f"env_id={env_id!r} is not allowed for the Gymnasium id 'agentcomm/{registered_id}' "
            f"(which builds {registered_id!r}); make 'agentcomm/{env_id}' instead"
        )


def _joint_actions(actions: Any, world: CommWorld) -> torch.Tensor:
    """``[B, N * 6]`` joint actions -> float32 ``[B, N, 6]``; raises naming the shape."""
    b, n = world.num_envs, world.num_agents
    try:
        arr = np.asarray(actions, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise ValueError(f"action={actions!r} is not a numeric array: {err}") from err
    if arr.size != b * n * ACTION_DIM or arr.shape[-1] != n * ACTION_DIM:
        want = (n * ACTION_DIM,) if b == 1 else (b, n * ACTION_DIM)
        raise ValueError(f"action has shape {arr.shape}; expected {want} (N={n} agents x 6)")
    return torch.from_numpy(arr.reshape(b, n, ACTION_DIM))


class CentralizedGymEnv(gymnasium.Env):
    r"""One agentcomm world as a single-agent Gymnasium env: a centralized controller.

    ## Description
    A single policy controls the whole team at once. This is the centralized baseline
    (and what single-agent tools such as ``check_env`` and stable-baselines3 expect);
    for per-agent control use :class:`~agentcomm.envs.adapters.pettingzoo.ParallelCommEnv`
    or :class:`~agentcomm.envs.adapters.sb3.SB3ParameterSharingVecEnv`. The scenario's
    own documentation (``agentcomm.envs.scenarios``) describes the task.

    ## Action Space
    ``Box(-1, 1, (N * 6,), float32)``: the joint action, agent ``i``'s 6 components at
    ``[6 i, 6 i + 6)`` (velocity 2, intent 2, transmit 1, uplink share 1; see
    :mod:`agentcomm.envs.world`). Values outside ``[-1, 1]`` are clipped.

    ## Observation Space
    ``Box(-1, 1, (N * Do,), float32)``: every agent's own observation concatenated in
    agent order (agent ``i`` at ``[Do i, Do i + Do)``). Each agent's part holds only
    what that agent knows (its fused belief, the intents it received), so the controller
    is centralized in action but not in information.

    ## Rewards
    The team reward :math:`r_t` of the scenario (every agent's reward is the same).

    ## Starting State
    The scenario's (``reset(seed=s)`` reseeds the world's generator).

    ## Episode End
    The scenario's: ``terminated`` on success (except TargetTracking), ``truncated``
    after ``max_steps``. Stepping a finished episode raises ``ValueError``.

    ## Info
    Every key of :data:`~agentcomm.envs.world.INFO_KEYS`, at reset as well as at each
    step: per-agent keys as arrays ``(N,)``, per-world keys as numpy scalars.

    ## Arguments
    ``env_id`` (a registered id), ``render_mode`` (``None`` or ``"rgb_array"``), and
    overrides of the scenario's config fields as keyword arguments. ``registered_id`` is
    set by the Gymnasium registration (the scenario of ``agentcomm/<id>``); an ``env_id``
    that differs from it is refused.

    ## Version History
    * v0: initial release.

    >>> import gymnasium, agentcomm.envs
    >>> env = gymnasium.make("agentcomm/IntentCoverage-v0")
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape == (4 * env.unwrapped.world.obs_dim,), env.action_space.shape
    (True, (24,))
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        env_id: str,
        render_mode: str | None = None,
        registered_id: str | None = None,
        **config: Any,
    ) -> None:
        _check_registered(env_id, registered_id)
        self.render_mode = check_render_mode(render_mode)
        self.world = make_vec(env_id, num_envs=1, **config)
        self.env_id = env_id
        self.observation_space, self.action_space = _joint_spaces(self.world)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a new episode; ``seed`` reseeds the world, ``options`` is ignored (none are
        defined). Returns the joint observation ``(N * Do,)`` and the info."""
        # Gymnasium's contract (and check_env) wants np_random seeded here; the world's
        # own torch generator is the only source of randomness the env uses.
        super().reset(seed=seed)
        obs = self.world.reset(seed=seed)
        return obs.reshape(-1).cpu().numpy(), self._info(info_to_numpy(reset_info(self.world)))

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Advance one step with the joint action ``(N * 6,)``."""
        obs, rew, term, trunc, info = self.world.step(_joint_actions(action, self.world))
        return (
            obs.reshape(-1).cpu().numpy(),
            float(rew[0, 0]),
            bool(term[0]),
            bool(trunc[0]),
            self._info(info_to_numpy(info)),
        )

    @staticmethod
    def _info(info: dict[str, np.ndarray]) -> dict[str, Any]:
        return {k: v[0] for k, v in info.items()}

    def render(self) -> np.ndarray | None:
        """uint8 ``[400, 400, 3]`` with ``render_mode="rgb_array"``; ``None`` without a mode."""
        if self.render_mode is None:
            return None
        return render_frame(self.world, 0)


class BatchedGymVectorEnv(gymnasium.vector.VectorEnv):
    """``B`` worlds as one Gymnasium ``VectorEnv`` of :class:`CentralizedGymEnv` copies.

    The batch is stepped by the world in one call (no per-env Python loop), so this is
    the fast way to collect centralized-controller experience.

    Spaces: ``single_observation_space`` / ``single_action_space`` are those of
    :class:`CentralizedGymEnv`; the batched spaces have a leading ``B``. Observations
    ``[B, N * Do]``, actions ``[B, N * 6]``, rewards ``[B]`` float32 (team reward),
    terminations / truncations ``[B]`` bool; infos a dict of arrays ``[B, N]`` (per-agent
    keys) or ``[B]`` (per-world keys), each with the ``"_key"`` mask Gymnasium uses.

    Autoreset (``metadata["autoreset_mode"]``):

    * ``"same_step"`` (default): a world whose episode ends is reset inside the same
      ``step()``; that step returns the new episode's first observation and reset info
      for it, with the final observation in ``infos["final_obs"]`` (object array, ``None``
      for worlds that did not finish) and the final step's info in
      ``infos["final_info"]`` (masked by ``"_final_obs"`` / ``"_final_info"``). Reward,
      termination and truncation are the final step's. The ``"next_step"`` mode is not
      offered: it would need the world to step only some of its ``B`` worlds.
    * ``"disabled"``: finished worlds are reset by the caller with
      ``reset(options={"reset_mask": mask})``; stepping before that raises.

    Args:
        env_id: a registered id.
        num_envs: ``B``.
        device: torch device of the world.
        render_mode: ``None`` or ``"rgb_array"`` (``render()`` returns one frame per world).
        autoreset_mode: ``"same_step"`` or ``"disabled"``.
        registered_id: set by the Gymnasium registration; an ``env_id`` that differs from
            it is refused.
        **config: overrides of the scenario's config fields.
    """

    def __init__(
        self,
        env_id: str,
        num_envs: int = 1,
        device: str | torch.device = "cpu",
        render_mode: str | None = None,
        autoreset_mode: Literal["same_step", "disabled"] = "same_step",
        registered_id: str | None = None,
        **config: Any,
    ) -> None:
        _check_registered(env_id, registered_id)
        modes = {"same_step": AutoresetMode.SAME_STEP, "disabled": AutoresetMode.DISABLED}
        if autoreset_mode not in modes:
            raise ValueError(
                f"autoreset_mode={autoreset_mode!r} is not allowed; choose one of {list(modes)}"
            )
        self.render_mode = check_render_mode(render_mode)
        self.world = make_vec(env_id, num_envs=num_envs, device=device, **config)
        self.env_id = env_id
        self.num_envs = num_envs
        self.metadata = {
            "render_modes": ["rgb_array"],
            "render_fps": 10,
            "autoreset_mode": modes[autoreset_mode],
        }
        self.single_observation_space, self.single_action_space = _joint_spaces(self.world)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every world, or only those in ``options["reset_mask"]`` (bool ``(B,)``).

        ``seed`` (an int) reseeds the world's one generator, which all ``B`` worlds draw
        from; a list of per-world seeds is not supported for that reason.
        """
        if seed is not None and not isinstance(seed, (int, np.integer)):
            raise ValueError(
                f"seed={seed!r} is not allowed; the {self.num_envs} worlds share one "
                "generator, so pass one int (or None)"
            )
        super().reset(seed=None if seed is None else int(seed))
        mask = (options or {}).get("reset_mask")
        if mask is None:
            self.world.reset(seed=None if seed is None else int(seed))
            mask_t = torch.ones(self.num_envs, dtype=torch.bool)
        else:
            mask_arr = np.asarray(mask)
            if mask_arr.shape != (self.num_envs,) or mask_arr.dtype != np.bool_:
                raise ValueError(
                    f"options['reset_mask'] has shape {mask_arr.shape} and dtype "
                    f"{mask_arr.dtype}; expected bool ({self.num_envs},)"
                )
            if seed is not None:
                self.world.seed(int(seed))
            mask_t = torch.from_numpy(mask_arr)
            self.world.reset_at(mask_t.to(self.world.device))
        info = info_to_numpy(reset_info(self.world))
        return self._obs(self.world.observation()), self._vector_info(info, mask_t.numpy())

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step all ``B`` worlds with joint actions ``[B, N * 6]`` (autoreset: class docstring)."""
        obs, rew, term, trunc, info = self.world.step(_joint_actions(actions, self.world))
        info_np = info_to_numpy(info)
        rewards = rew[:, 0].cpu().numpy()
        terminated, truncated = term.cpu().numpy(), trunc.cpu().numpy()
        done = terminated | truncated
        obs_np = self._obs(obs)
        infos = self._vector_info(info_np, np.ones(self.num_envs, dtype=bool))
        if self.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP and done.any():
            final_obs = np.full(self.num_envs, None, dtype=object)
            for b in np.flatnonzero(done):
                final_obs[b] = obs_np[b]
            self.world.reset_at(torch.from_numpy(done).to(self.world.device))
            fresh = info_to_numpy(reset_info(self.world))
            merged = {
                k: np.where(done.reshape(-1, *[1] * (v.ndim - 1)), fresh[k], v)
                for k, v in info_np.items()
            }
            infos = self._vector_info(merged, np.ones(self.num_envs, dtype=bool))
            infos["final_obs"], infos["_final_obs"] = final_obs, done
            infos["final_info"] = self._vector_info(info_np, done)
            infos["_final_info"] = done
            obs_np = np.where(done[:, None], self._obs(self.world.observation()), obs_np)
        return obs_np, rewards, terminated, truncated, infos

    def _obs(self, obs: torch.Tensor) -> np.ndarray:
        return obs.reshape(self.num_envs, -1).cpu().numpy()

    @staticmethod
    def _vector_info(info: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in info.items():
            out[k], out[f"_{k}"] = v, mask.copy()
        return out

    def render(self) -> tuple[np.ndarray, ...] | None:
        """One uint8 ``[400, 400, 3]`` frame per world with ``render_mode="rgb_array"``."""
        if self.render_mode is None:
            return None
        return tuple(render_frame(self.world, b) for b in range(self.num_envs))
