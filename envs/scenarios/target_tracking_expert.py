"""The scripted expert of TargetTracking-v0: pursue located targets, search for the rest.

The rules and why they are rational are in the docstring of :func:`target_tracking_expert`;
the pieces every expert shares are in :mod:`agentcomm.envs.expert_base`.
"""

from __future__ import annotations

import weakref

import torch

from ..expert_base import (
    _act,
    _cell_index,
    _cells,
    _disk_table,
    _dist,
    _drift_table,
    _fresh_teammates,
    _memory,
    _new_step,
    _yields,
)
from ..world import CommWorld

__all__ = ["target_tracking_expert"]

_TRACKED = 1.5  # cells: position std of a track good enough to leave its target to others
_LOCATED = 3.5  # cells: position std below which a track is pursued (the prior's is ~4.6)
_LOOK_STEPS = 1.0  # steps added to every travel time of the search (the look itself)

_SHARES_TRACKS: weakref.WeakKeyDictionary[CommWorld, dict[int, bool]] = weakref.WeakKeyDictionary()
#: bool ``[L]``: whether tracks get through at each of ``comm.budget_levels``, per world.
_SHARES_BY_LEVEL: weakref.WeakKeyDictionary[CommWorld, torch.Tensor] = weakref.WeakKeyDictionary()


def _delivers_track(world: CommWorld, budget: int, intents: int) -> bool:
    """Whether one message of ``budget`` channel uses, whose header carries ``intents``
    intents, delivers the position and velocity of every target (the first four values of
    each track) over a clean link: a dry run of the world's own radio on a private
    generator (the world's random stream is untouched)."""
    if budget <= 0:
        return False
    dev = world.device
    t = world.config.num_targets
    payload = torch.linspace(-0.9, 0.9, t * 8, device=dev).view(1, t, 8)
    one = torch.zeros(1, dtype=torch.long, device=dev)
    ex = world.comm.send(
        one,
        one,
        one,
        torch.full_like(one, budget),
        torch.full((1,), 100.0, device=dev),
        payload,
        0.0,
        torch.Generator(device=dev).manual_seed(0),
        intents=intents,
    )
    # A value that did not fit decodes to the prior, 0, which has no sign.
    arrived = ex.estimate.sign() == payload.sign()
    return bool(ex.payload_ok.all()) and bool(arrived[..., :4].all())


def _shares_at(world: CommWorld, k: int) -> bool:
    """Whether a radio with a budget of ``k`` channel uses carries the targets' states: peer
    messages (distributed), uplink and downlink (centralized; the downlink header holds all
    ``N`` intents), either of the two (hybrid, the budget split in half as :func:`_act` splits
    it). Computed once per world and budget."""
    known = _SHARES_TRACKS.setdefault(world, {})
    if k in known:
        return known[k]
    cm, n = world.config.comm, world.num_agents
    up = k // 2 if cm.mode == "hybrid" else k
    star = _delivers_track(world, up, 1) and _delivers_track(world, k, n)
    mesh = _delivers_track(world, k - up if cm.mode == "hybrid" else k, 1)
    known[k] = {"centralized": star, "distributed": mesh}.get(cm.mode, star or mesh)
    return known[k]


def _shares_tracks(world: CommWorld) -> bool | torch.Tensor:
    """Whether the agents' radios carry the targets' states (:func:`_shares_at`) at the
    configured budget, or, when each world draws its budget cap (``comm.budget_levels``),
    bool ``[B]`` at each world's cap. An agent knows its own radio."""
    levels = world.config.comm.budget_levels
    if levels is None:
        return _shares_at(world, world.config.comm.budget)
    table = _SHARES_BY_LEVEL.get(world)
    if table is None:  # one dry run per level, once per world
        table = torch.tensor([_shares_at(world, int(k)) for k in levels], device=world.device)
        _SHARES_BY_LEVEL[world] = table
    return table.take((world.budget_cap.unsqueeze(1) == world._budget_levels).long().argmax(1))


def target_tracking_expert(world: CommWorld) -> torch.Tensor:
    r"""Pursue located targets, one agent each; search for the others on a posterior of
    where an undetected target can be.

    **Pursuit.** Agent :math:`i` holds per target :math:`\tau` a fused track: mean position
    :math:`\hat x_\tau`, velocity :math:`\hat u_\tau`, position standard deviation
    :math:`\sigma_\tau` (root mean of the two position variances). A target is *located*
    when :math:`\sigma_\tau \le 3.5` cells (the prior's is ~4.6); the agent pursues the
    nearest located target no teammate holds, heading for its intercept point
    :math:`\hat x_\tau + \hat u_\tau\, \lVert \hat x_\tau - p_i \rVert / v`. A teammate
    holds :math:`\tau` (:func:`_yields`, claim radius :math:`r_s` around :math:`\hat
    x_\tau`) only if the radios carry tracks (:func:`_shares_tracks`) and :math:`i`'s own
    track of :math:`\tau` is good, :math:`\sigma_\tau \le 1.5` cells: success scores every
    agent's own estimate, so leaving a target to a teammate is rational only while the
    teammate's track reaches the agent.

    **Search.** With no free located target and a target not located, the agent searches.
    Its memory holds :math:`q(c)`, the probability that an undetected target is in cell
    :math:`c`, uniform at the start. Every step: (1) drift, :math:`q \leftarrow (1 - a) q +
    a\, q T` with :math:`T` a ninth of each cell's mass to each of its 3 x 3 neighbours
    (reflecting walls) and :math:`a` the targets' top speed in cells per step, about the
    share of a cell's mass that can leave it in a step; (2) misses, :math:`q(c) \leftarrow
    (1 - p_d)\, q(c)` on its own sensing disk and, when tracks are shared, once more per
    teammate heard this step on the disk around that teammate's goal (had the teammate found
    the target there, its track would have arrived); (3) normalization. It heads for

    .. math:: c^* = \arg\max_c \frac{\sum_{|c' - c| \le r_s} q(c')}{d_i(c) / v + 1},

    the probability of seeing the target per step spent getting there and looking. With
    every target located and held, it joins the nearest one as a second observer.

    Why: the Kalman filters use no negative information, so without :math:`q` an agent
    cannot tell where it has already looked; one pursuer per target frees the others to
    search; teammates' goals spread the search only when their finds would reach the agent
    (at a budget that carries no tracks, each agent must find and watch every target itself).
    """
    cfg = world.config
    b, n, g, dev = world.num_envs, world.num_agents, world.grid, world.device
    rs, v, pd = cfg.sensing.radius, cfg.max_speed, cfg.sensing.pd
    c = g * g
    pos = world.pos
    where_, heading = world.track_mean[..., :2], world.track_mean[..., 2:]  # [B, N, T, 2]
    var = torch.diagonal(world.track_cov, dim1=-2, dim2=-1)[..., :2].mean(-1)
    sigma = var.clamp_min(0.0).sqrt()  # [B, N, T]
    located = sigma <= _LOCATED
    gap = (where_ - pos.unsqueeze(2)).norm(dim=-1)  # [B, N, T]
    aim = (where_ + heading * (gap / v).unsqueeze(-1)).clamp(0.0, float(g))
    travel = (aim - pos.unsqueeze(2)).norm(dim=-1)
    shares = _shares_tracks(world)
    per_world = isinstance(shares, torch.Tensor)
    teammates = _fresh_teammates(world) & (shares.view(-1, 1, 1) if per_world else shares)
    held = _yields(world, where_, gap, rs, rs, teammates) & (sigma <= _TRACKED)
    inf = torch.tensor(float("inf"), device=dev)
    free = torch.where(located & ~held, travel, inf).min(-1)
    nearest = torch.where(located, travel, inf).min(-1)
    # --- search posterior q (memory), advanced once per step
    cells = _cells(g, dev)
    disk = _disk_table(g, float(rs), dev)  # [C, C]
    mem = _memory(world)
    new = _new_step(world, mem).view(-1, 1, 1)
    q = mem.get("q")
    if q is None or q.shape != (b, n, c):
        q = torch.full((b, n, c), 1.0 / c, device=dev)
    q_next = torch.where((world.t == 0).view(-1, 1, 1), 1.0 / c, q)
    a = min(1.0, cfg.target_max_speed)
    q_next = (1 - a) * q_next + a * (q_next @ _drift_table(g, dev))
    dist = _dist(pos, cells)  # [B, N, C]
    q_next = q_next * torch.where(dist <= rs, 1.0 - pd, 1.0)
    if per_world or shares:  # worlds that do not share heard nothing: a factor of 1
        heard = (teammates & (world.intent_age == 0)).float()  # [B, N, N]
        goal_cell = _cell_index(world.known_intent, g)  # [B, N, N]
        goals = torch.zeros(b, n, c, device=dev).scatter_add_(2, goal_cell, heard)
        q_next = q_next * (1.0 - pd) ** (goals @ disk)
    q_next = q_next / q_next.sum(-1, keepdim=True).clamp_min(1e-30)
    q = torch.where(new, q_next, q)
    mem["q"] = q
    score = (q @ disk) / (dist / v + _LOOK_STEPS)
    search_goal = cells[score.argmax(-1)]
    rows = torch.arange(b, device=dev).view(-1, 1)
    cols = torch.arange(n, device=dev).view(1, -1)
    target = torch.where(
        (free.values < inf).unsqueeze(-1),
        aim[rows, cols, free.indices],
        torch.where(
            (~located).any(-1, keepdim=True), search_goal, aim[rows, cols, nearest.indices]
        ),
    )
    return _act(world, target)
