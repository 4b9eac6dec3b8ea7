"""Expert demonstrations collected in the batched world, for behaviour cloning.

Shape legend: ``T`` world steps per world, ``B`` worlds, ``N`` agents, ``D = T * B * N``
demonstrations (one per agent-step), ``Do`` observation dim, ``Da = 6`` action dim.

Every agent of every world contributes one ``(observation, expert action)`` pair per step,
so a policy shared by all agents (parameter sharing) is cloned from ``B * N`` streams at
once. The expert reads only what an agent could know (:mod:`agentcomm.envs.experts`). By
default collection runs the world with the expert's own actions, so the dataset covers the
expert's state distribution; with a ``behaviour`` policy the world follows that policy and
every visited state is labelled with the expert's action there (DAgger, Ross, Gordon &
Bagnell, AISTATS 2011), so a cloned policy learns to recover from the states its own
mistakes lead to.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from agentcomm._checks import check_choice, check_range
from agentcomm.io import atomic_write

__all__ = ["Demonstrations", "collect_demos", "concat_demos", "load_demos", "save_demos"]


@dataclass
class Demonstrations:
    """Expert ``(observation, action)`` pairs and the expert's episode outcomes.

    Attributes:
        obs: ``[D, Do]`` float32 observations, rows ordered ``(t, b, n)``.
        actions: ``[D, Da]`` float32 expert actions in ``[-1, 1]``.
        env_id: Scenario id the demonstrations come from.
        env_config: The scenario config overrides used (nested dict).
        seed: Seed of the world's generator.
        episodes: Episodes that ended during collection.
        successes: How many of those ended in success.
        returns: ``[episodes]`` float32 team returns of the ended episodes.
    """

    obs: torch.Tensor
    actions: torch.Tensor
    env_id: str
    env_config: dict[str, Any]
    seed: int
    episodes: int
    successes: int
    returns: torch.Tensor

    @property
    def success_rate(self) -> float:
        """Fraction of ended expert episodes that succeeded (``nan`` if none ended)."""
        return self.successes / self.episodes if self.episodes else float("nan")


def collect_demos(
    env_id: str,
    num_steps: int,
    num_envs: int = 64,
    seed: int = 0,
    device: str | torch.device = "cpu",
    env_config: dict[str, Any] | None = None,
    progress: bool = False,
    horizon: int = 1,
    behaviour: Callable[[Any, torch.Tensor], torch.Tensor] | None = None,
    expert: str = "default",
) -> Demonstrations:
    """Run the scenario's expert in ``num_envs`` parallel worlds and record every agent-step.

    Worlds that end (success or time limit) are reset in place and keep going, so the
    dataset holds exactly ``num_steps * num_envs * num_agents`` rows.

    Args:
        env_id: Registered scenario id (``agentcomm.list_envs()``).
        num_steps: ``T``, world steps per world, >= 1.
        num_envs: ``B``, parallel worlds, >= 1.
        seed: Seed of the world's generator; the expert is deterministic, so the same
            seed gives the same dataset bit for bit on CPU.
        device: Device the world runs on; the returned tensors are on CPU.
        env_config: Scenario config overrides (e.g. ``{"comm": {"budget": 16}}``).
        progress: Show a tqdm bar over steps.
        horizon: ``Ta``, actions per row: with ``Ta > 1`` each row holds the expert's next
            ``Ta`` actions of that agent (an action chunk), the last action repeated past
            the end of its episode or of the recording.
        behaviour: ``(world, obs [B, N, Do]) -> actions [B, N, 6]``, the policy the worlds
            follow while the expert labels every state (DAgger; module docstring); ``None``:
            the expert itself. The episode counts and returns are then the behaviour's.
        expert: The teacher: the scenario's expert or one of its variants
            (:func:`agentcomm.envs.experts.expert_variants`).

    Returns:
        ``Demonstrations`` with ``obs [T*B*N, Do]`` and ``actions [T*B*N, 6]``
        (``[T*B*N, Ta, 6]`` when ``horizon > 1``).
    """
    import agentcomm
    from agentcomm.envs.experts import expert_actions, expert_variants

    check_range("num_steps", num_steps, 1)
    check_range("num_envs", num_envs, 1)
    check_range("horizon", horizon, 1)
    check_choice("expert", expert, expert_variants(env_id))
    overrides = dict(env_config or {})
    world = agentcomm.make_vec(env_id, num_envs=num_envs, device=device, seed=seed, **overrides)
    obs = world.reset(seed=seed)
    obs_buf = torch.empty(num_steps, *obs.shape, dtype=torch.float32, device=world.device)
    act_buf = torch.empty(
        num_steps, num_envs, world.num_agents, 6, dtype=torch.float32, device=world.device
    )
    done_buf = torch.zeros(num_steps, num_envs, dtype=torch.bool, device=world.device)
    running = torch.zeros(num_envs, device=world.device)
    returns: list[torch.Tensor] = []
    successes = 0
    for t in tqdm(range(num_steps), desc=f"demos {env_id}", disable=not progress):
        action = expert_actions(world, expert)
        obs_buf[t] = obs
        act_buf[t] = action
        if behaviour is not None:
            action = behaviour(world, obs)
        obs, reward, terminated, truncated, info = world.step(action)
        running += reward.mean(1)  # the team reward, also under team_reward_weight < 1
        done = terminated | truncated
        done_buf[t] = done
        if bool(done.any()):
            returns.append(running[done].cpu())
            successes += int(info["success"][done].sum())
            running = torch.where(done, 0.0, running)
            world.reset_at(done)
            obs = world.observation()
    ret = torch.cat(returns) if returns else torch.zeros(0)
    actions = act_buf.reshape(-1, 6)
    if horizon > 1:
        actions = _chunks(act_buf, done_buf, horizon).reshape(-1, horizon, 6)
    return Demonstrations(
        obs=obs_buf.reshape(-1, world.obs_dim).cpu(),
        actions=actions.clamp(-1.0, 1.0).cpu(),
        env_id=env_id,
        env_config=overrides,
        seed=seed,
        episodes=int(ret.numel()),
        successes=successes,
        returns=ret.float(),
    )


def _chunks(actions: torch.Tensor, done: torch.Tensor, horizon: int) -> torch.Tensor:
    """``[T, B, N, Ta, A]`` chunks of the next ``Ta`` actions from ``actions [T, B, N, A]``.

    Offset ``k`` of the chunk at step ``t`` is step ``t + k`` while no episode ended at steps
    ``t .. t+k-1`` and ``t + k < T``; otherwise the chunk repeats its last valid action.
    The loop runs over the ``Ta`` offsets only.
    """
    steps = actions.shape[0]
    # ends[t] = episodes ended before step t; an end in [t, t+k) iff ends[t+k] > ends[t].
    ends = torch.cat([torch.zeros_like(done[:1], dtype=torch.long), done.long().cumsum(0)])
    t = torch.arange(steps, device=actions.device)
    out = [actions]
    for k in range(1, horizon):
        src = (t + k).clamp(max=steps - 1)
        valid = (t + k < steps).view(-1, 1) & (ends[src] == ends[t])
        out.append(torch.where(valid.view(steps, -1, 1, 1), actions[src], out[-1]))
    return torch.stack(out, dim=3)


def save_demos(path: str | os.PathLike, demos: Demonstrations) -> Path:
    """Write ``demos`` to one safetensors file; the metadata goes in its JSON header.

    Args:
        path: File path (``.safetensors``); parent directories are created.
        demos: The demonstrations.

    Returns:
        The written path.
    """
    path = Path(path)
    meta = {
        "env_id": demos.env_id,
        "env_config": json.dumps(demos.env_config, sort_keys=True),
        "seed": str(demos.seed),
        "episodes": str(demos.episodes),
        "successes": str(demos.successes),
    }
    tensors = {
        "obs": demos.obs.contiguous(),
        "actions": demos.actions.contiguous(),
        "returns": demos.returns.contiguous(),
    }
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    return path


def concat_demos(parts: list[Demonstrations]) -> Demonstrations:
    """One dataset of ``parts`` collected on one scenario (rows, episodes and returns in
    order); its ``env_config`` and ``seed`` are the first part's."""
    if not parts or any(p.env_id != parts[0].env_id for p in parts):
        raise ValueError(
            f"parts={[p.env_id for p in parts]!r} is not allowed; expected demonstrations "
            "of one scenario"
        )
    return Demonstrations(
        obs=torch.cat([p.obs for p in parts]),
        actions=torch.cat([p.actions for p in parts]),
        env_id=parts[0].env_id,
        env_config=parts[0].env_config,
        seed=parts[0].seed,
        episodes=sum(p.episodes for p in parts),
        successes=sum(p.successes for p in parts),
        returns=torch.cat([p.returns for p in parts]),
    )


def load_demos(path: str | os.PathLike) -> Demonstrations:
    """Read demonstrations written by :func:`save_demos`; a damaged file raises
    ``ValueError`` naming it."""
    from agentcomm._integrity import load_tensors, tensors_metadata

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path={str(path)!r} is not a file")
    meta = tensors_metadata(path)
    missing = sorted({"env_id", "env_config", "seed", "episodes", "successes"} - set(meta))
    if missing:
        raise ValueError(f"{str(path)!r} is not a demonstrations file (metadata lacks {missing})")
    tensors = load_tensors(path)
    return Demonstrations(
        obs=tensors["obs"],
        actions=tensors["actions"],
        env_id=meta["env_id"],
        env_config=json.loads(meta["env_config"]),
        seed=int(meta["seed"]),
        episodes=int(meta["episodes"]),
        successes=int(meta["successes"]),
        returns=tensors["returns"],
    )
