"""Pieces every scripted expert shares (:mod:`agentcomm.envs.experts` documents them):
full-speed actions toward a goal, cell tables, sensing windows, distances, the deconfliction
rule by announced intents, a bottleneck assignment, and each expert's per-world memory of
its own episode.

Shape legend: ``B`` worlds, ``N`` agents, ``C = H * W`` cells, ``K`` candidate points,
``W`` window cells.
"""

from __future__ import annotations

import functools
import itertools
import weakref

import torch

from agentcomm.beliefs.grid import cell_centres, cell_index, window_cells

from .world import CommWorld

_EXACT = "donot_use_mm_for_euclid_dist"
_MEMORIES: weakref.WeakKeyDictionary[CommWorld, dict[str, torch.Tensor]] = (
    weakref.WeakKeyDictionary()
)


def _act(
    world: CommWorld,
    target: torch.Tensor,
    transmit: float | torch.Tensor = 1.0,
    intent: torch.Tensor | None = None,
) -> torch.Tensor:
    """Actions that head for ``target [B, N, 2]`` (cells) and announce it as the intent (or
    announce ``intent [B, N, 2]``, cells, when given), with the transmit component
    ``transmit`` (one value, or one per agent ``[B, N]``) and the uplink-share component 0."""
    g, v = float(world.grid), world.config.max_speed
    delta = target - world.pos
    dist = delta.norm(dim=-1, keepdim=True)
    vel = delta / dist.clamp_min(v)  # full speed until the last step, then exact
    intent = ((target if intent is None else intent) / g * 2 - 1).clamp(-1, 1)
    b, n = world.num_envs, world.num_agents
    send = torch.as_tensor(transmit, dtype=vel.dtype, device=world.device).expand(b, n)
    comm = torch.stack([send, torch.zeros_like(send)], -1)
    return torch.cat([vel.clamp(-1, 1), intent, comm], -1)


#: ``_cells(grid, device)``: ``[C, 2]`` cell centres, row-major (cached).
_cells = cell_centres
#: ``_cell_index(points, grid)``: long ``[...]`` row-major index of the cell holding each of
#: ``points [..., 2]`` (a point off the grid counts in the nearest border cell).
_cell_index = cell_index


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


def _window(world: CommWorld, radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``index [B, N, W]`` and bool ``inside [B, N, W]``: the cells around each agent that
    can lie within ``radius`` of it (:func:`~agentcomm.beliefs.grid.window_cells`, the disk
    around the agent's cell), so that a rule on its sensing disk reads and updates those
    only."""
    return window_cells(_cell_index(world.pos, world.grid), radius, world.grid, "disk")


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


@functools.lru_cache(maxsize=8)
def _permutations(n: int, device: torch.device) -> torch.Tensor:
    """``[P, n]`` long: every assignment of ``n`` tasks to ``n`` agents (row ``p``: the task
    of each agent), in lexicographic order, the identity first."""
    rows = list(itertools.permutations(range(n)))
    return torch.tensor(rows, dtype=torch.long, device=device).view(len(rows), n)


def _bottleneck_assignment(cost: torch.Tensor, weight: float) -> torch.Tensor:
    """long ``[..., N]``: the task of each agent in the assignment of ``N`` agents to ``N``
    tasks (``cost [..., N(agent), N(task)]``) that minimizes ``weight`` times its largest
    cost plus its total, so a ``weight`` above every total puts the largest cost first.
    Permutations are tried in a fixed order, ties going to the first, so every caller with
    the same costs picks the same assignment. All ``N!`` are enumerated: meant for small
    ``N``."""
    n = cost.shape[-1]
    perms = _permutations(n, cost.device)  # [P, N]
    pairs = (torch.arange(n, device=cost.device).unsqueeze(1) * n + perms.t()).reshape(-1)
    picked = cost.flatten(-2).index_select(-1, pairs).view(*cost.shape[:-2], n, -1)  # [..., N, P]
    return perms[(picked.amax(-2) * weight + picked.sum(-2)).argmin(-1)]


def _intent_slack(world: CommWorld) -> torch.Tensor:
    """``[B, N, N]`` worst-case error (cells) of the intent agent ``i`` holds for ``j``: half
    the diagonal of its quantization cell, ``grid / 2**bits``."""
    return world.grid / torch.exp2(world.intent_bits.float()) * 0.5**0.5


def _worst_gap(world: CommWorld, points: torch.Tensor) -> torch.Tensor:
    """``[B, N, N, K]`` the farthest that teammate ``j``'s goal, as agent ``i`` received it,
    may lie from each of ``points`` (``[K, 2]`` or ``[B, N, K, 2]``, cells): the distance to
    the received intent plus :func:`_intent_slack`."""
    return _dist(world.known_intent, points) + _intent_slack(world).unsqueeze(-1)


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
    worst = _worst_gap(world, points)  # [B, N, N(j), K]
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


def _recall(
    world: CommWorld, mem: dict[str, torch.Tensor], key: str, fresh: torch.Tensor
) -> torch.Tensor:
    """A new tensor: ``mem[key]``, with ``fresh`` (its value at the start of an episode) in
    the worlds where ``world.t == 0``, and everywhere if the memory holds no ``key`` of
    ``fresh``'s shape (memory created mid-episode starts from ``fresh``)."""
    old = mem.get(key)
    if old is None or old.shape != fresh.shape:
        return fresh.clone()
    return torch.where((world.t == 0).view(-1, *(1,) * (fresh.ndim - 1)), fresh, old)


def _new_step(world: CommWorld, mem: dict[str, torch.Tensor]) -> torch.Tensor:
    """bool ``[B]``: the worlds whose state (step counter, positions) differs from the one
    the memory last saw, so their memory advances; records the current state."""
    key = torch.cat([world.t.float().unsqueeze(1), world.pos.reshape(world.num_envs, -1)], 1)
    last = mem.get("state")
    mem["state"] = key
    if last is None or last.shape != key.shape:
        return torch.ones(world.num_envs, dtype=torch.bool, device=world.device)
    return (last != key).any(1)
