"""Pieces every scripted expert shares (:mod:`agentcomm.envs.experts` documents them):
full-speed actions toward a goal, cell tables, distances, the deconfliction rule by
announced intents, and each expert's per-world memory of its own episode.

Shape legend: ``B`` worlds, ``N`` agents, ``C = H * W`` cells, ``K`` candidate points.
"""

from __future__ import annotations

import functools
import weakref

import torch

from .world import CommWorld

_EXACT = "donot_use_mm_for_euclid_dist"
_MEMORIES: weakref.WeakKeyDictionary[CommWorld, dict[str, torch.Tensor]] = (
    weakref.WeakKeyDictionary()
)


def _act(
    world: CommWorld,
    target: torch.Tensor,
    transmit: float = 1.0,
    intent: torch.Tensor | None = None,
) -> torch.Tensor:
    """Actions that head for ``target [B, N, 2]`` (cells) and announce it as the intent (or
    announce ``intent [B, N, 2]``, cells, when given)."""
    g, v = float(world.grid), world.config.max_speed
    delta = target - world.pos
    dist = delta.norm(dim=-1, keepdim=True)
    vel = delta / dist.clamp_min(v)  # full speed until the last step, then exact
    intent = ((target if intent is None else intent) / g * 2 - 1).clamp(-1, 1)
    b, n = world.num_envs, world.num_agents
    comm = torch.tensor([transmit, 0.0], device=world.device).expand(b, n, 2)
    return torch.cat([vel.clamp(-1, 1), intent, comm], -1)


@functools.lru_cache(maxsize=8)
def _cells(grid: int, device: torch.device) -> torch.Tensor:
    """``[C, 2]`` cell centres, row-major."""
    idx = torch.arange(grid, device=device, dtype=torch.float32) + 0.5
    return torch.stack(torch.meshgrid(idx, idx, indexing="ij"), -1).reshape(grid * grid, 2)


@functools.lru_cache(maxsize=8)
def _disk_table(grid: int, radius: float, device: torch.device) -> torch.Tensor:
    """``[C, C]`` float, 1 where two cell centres are within ``radius`` of each other."""
    cells = _cells(grid, device)
    return ((cells.unsqueeze(1) - cells).norm(dim=-1) <= radius + 1e-6).float()


@functools.lru_cache(maxsize=8)
def _drift_table(grid: int, device: torch.device) -> torch.Tensor:
    """``[C, C]`` row-stochastic: a ninth of a cell's mass to each cell of its 3 x 3
    neighbourhood, the share that would leave the area kept in place (reflecting walls)."""
    cells = _cells(grid, device)
    step = (cells.unsqueeze(1) - cells).abs().amax(-1) <= 1.0 + 1e-6  # [C, C]
    table = step.float() / 9.0
    return table + torch.diag(1.0 - table.sum(1))


def _dist(points: torch.Tensor, to: torch.Tensor) -> torch.Tensor:
    """``[..., P, Q]`` Euclidean distances from ``points [..., P, 2]`` to ``to [Q, 2]`` or
    ``to [..., Q, 2]`` (exact: no matrix-product shortcut)."""
    if to.ndim == 2:
        flat = torch.cdist(points.reshape(1, -1, 2), to.unsqueeze(0), compute_mode=_EXACT)
        return flat.view(*points.shape[:-1], to.shape[0])
    lead = points.shape[:-2]
    out = torch.cdist(
        points.reshape(-1, *points.shape[-2:]), to.reshape(-1, *to.shape[-2:]), compute_mode=_EXACT
    )
    return out.view(*lead, points.shape[-2], to.shape[-2])


def _intent_slack(world: CommWorld) -> torch.Tensor:
    """``[B, N, N]`` worst-case error (cells) of the intent agent ``i`` holds for ``j``: half
    the diagonal of its quantization cell, ``grid / 2**bits``."""
    return world.grid / torch.exp2(world.intent_bits.float()) * 0.5**0.5


def _fresh_teammates(world: CommWorld) -> torch.Tensor:
    """bool ``[B, N, N]``: ``j != i`` and ``i`` heard ``j``'s intent within ``intent_max_age``."""
    eye = torch.eye(world.num_agents, dtype=torch.bool, device=world.device)
    return (world.intent_age < world.config.intent_max_age) & ~eye


def _yields(
    world: CommWorld,
    points: torch.Tensor,
    own_dist: torch.Tensor,
    radius: float,
    commit_radius: float,
    teammates: torch.Tensor,
    owner: torch.Tensor | None = None,
) -> torch.Tensor:
    """bool ``[B, N, K]``: agent ``i`` leaves point ``k`` (``points [B, N, K, 2]``, at
    ``own_dist [B, N, K]`` from it) to a teammate (module docstring).

    Args:
        radius: the claim radius ``R``.
        commit_radius: how close ``i``'s previous goal must be to a point for ``i`` to have
            announced it.
        teammates: bool ``[B, N, N]``, whose claims count.
        owner: long ``[B, N, K]``, the agent whose territory holds each point (its goal
            need not be within ``R``), or ``None``.
    """
    n = world.num_agents
    lower = torch.ones(n, n, dtype=torch.bool, device=world.device).tril(-1)  # j < i
    gap = _dist(world.known_intent, points)  # [B, N, N(j), K]
    worst = gap + _intent_slack(world).unsqueeze(-1)
    near = worst <= radius
    if owner is not None:
        agents = torch.arange(n, device=world.device).view(1, 1, n, 1)
        near = near | (owner.unsqueeze(2) == agents)
    mine = own_dist.unsqueeze(2)
    nearer = (worst < mine) | ((worst == mine) & lower.unsqueeze(-1))
    committed = (world.intent.unsqueeze(2) - points).norm(dim=-1) <= commit_radius  # [B,N,K]
    better = torch.where(committed.unsqueeze(2), lower.unsqueeze(-1), nearer)
    return (near & better & teammates.unsqueeze(-1)).any(2)


def _memory(world: CommWorld) -> dict[str, torch.Tensor]:
    """The expert's memory of ``world``: a dict of tensors, empty for a world it has not
    seen (weakly keyed, so it goes with the world)."""
    mem = _MEMORIES.get(world)
    if mem is None:
        mem = {}
        _MEMORIES[world] = mem
    return mem


def _new_step(world: CommWorld, mem: dict[str, torch.Tensor]) -> torch.Tensor:
    """bool ``[B]``: the worlds whose state (step counter, positions) differs from the one
    the memory last saw, so their memory advances; records the current state."""
    key = torch.cat([world.t.float().unsqueeze(1), world.pos.reshape(world.num_envs, -1)], 1)
    last = mem.get("state")
    mem["state"] = key
    if last is None or last.shape != key.shape:
        return torch.ones(world.num_envs, dtype=torch.bool, device=world.device)
    return (last != key).any(1)
