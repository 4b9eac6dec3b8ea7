"""The scripted expert of SearchRescue-v0: sweep a territory, rescue victims, follow leads.

Rules and reasons: :func:`search_rescue_expert`, :func:`_territories`; shared pieces:
:mod:`agentcomm.envs.expert_base`."""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor
from torch.nn.functional import one_hot

from .. import expert_base as base
from ..world import CommWorld

__all__ = ["search_rescue_expert"]

_CONFIRMED = 0.5  # posterior above which a cell is a victim to rescue, not a lead to check
_UNEXPLORED = 0.5  # nats: evidence this close to none means nobody has sensed the cell
_SWEEP_MARGIN = 2.0  # a lead must beat the sweep's detection rate by this factor
_CANDIDATES = 8  # best-rated cells per agent that are checked against teammates' claims
_ANNOUNCE_STEPS = 3  # steps an agent announces its start (over fading links, more than once)


@functools.lru_cache(maxsize=16)
def _sweep_plan(
    grid: int, agents: int, anchor: tuple[float, float], radius: float, device: torch.device
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Territories and four boustrophedon routes through each.

    Territories: the cells sorted by their angle around ``anchor``, cut into ``agents`` runs
    of equal count (quadrants for four agents around the centre), a convention every agent
    knows without a word. Waypoints: one per column on each lane, rows ``radius, 3 radius,
    ...`` (the last at most ``grid - radius``: neighbouring lanes' sensing disks tile the
    area). A route visits its territory's waypoints lane by lane, alternating direction; its
    four variants start at the four route corners. Returns ``sector [C]`` (territory of each
    cell), ``waypoints [M, 2]``, ``owner [M]`` (territory of each waypoint's cell), ``orders
    [4, M]`` (rank of each waypoint on its route, per variant), ``corners [agents, 4, 2]``
    (first waypoint of each route) and ``foot [C, M]`` (1.0 within ``radius`` of each).
    """
    cells = base._cells(grid, device)
    rel = cells - torch.tensor(anchor, device=device)
    sector = torch.atan2(rel[:, 1], rel[:, 0]).argsort().argsort() * agents // cells.shape[0]
    spacing = 2 * radius
    count = max(1, math.ceil(grid / spacing - 1e-6))
    rows = sorted({min(radius + spacing * j, grid - radius) for j in range(count)})
    lanes = torch.tensor(rows if grid > spacing else [grid / 2], device=device)
    waypoints = torch.stack(torch.meshgrid(lanes, cells[:grid, 1], indexing="ij"), -1).view(-1, 2)
    lane = torch.arange(lanes.numel(), device=device).repeat_interleave(grid)
    owner = sector[base._cell_index(waypoints, grid)]
    orders = torch.zeros(4, waypoints.shape[0], dtype=torch.long, device=device)
    corners = torch.zeros(agents, 4, 2, device=device)
    for i in range(agents):  # a one-off table per configuration
        ids = (owner == i).nonzero().squeeze(1)
        if ids.numel() == 0:
            corners[i] = cells[(sector == i).nonzero()[0, 0]]
            continue
        used, lane_of = torch.unique(lane[ids], return_inverse=True)
        for variant in range(4):  # from the first or the last lane, rightward or leftward
            lane_rank = lane_of if variant < 2 else used.numel() - 1 - lane_of
            direction = torch.where((lane_rank + variant) % 2 == 0, 1.0, -1.0)
            key = lane_rank.float() * (4.0 * grid) + direction * waypoints[ids, 1]
            route = ids[key.argsort()]
            orders[variant, route] = torch.arange(ids.numel(), device=device)
            corners[i, variant] = waypoints[route[0]]
    foot = ((cells.unsqueeze(1) - waypoints).norm(dim=-1) <= radius + 1e-6).float()
    return sector, waypoints, owner, orders, corners, foot


def _territories(
    world: CommWorld, mem: dict[str, Tensor], sector: Tensor, corners: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Each agent's ``territory [B, N]``, ``sweeper [B, N, N]`` (who sweeps territory ``s``
    in agent ``i``'s view) and route ``variant [B, N]`` (entering at the corner nearest to
    the agent when the territory is chosen), kept in ``mem``.

    By convention agent ``i`` sweeps territory ``i``. For the first ``K`` steps every agent
    announces its start as its intent; one that heard every start by step ``K`` takes its part of
    the assignment on the starts as received (its own quantized as coarsely as the coarsest it
    heard) minimizing the longest distance from a start to the nearest corner of its territory, then
    their sum (:func:`~agentcomm.envs.expert_base._bottleneck_assignment`, up to 6 agents): all who
    heard the same starts agree, and the sweep begins sooner. One that missed a start keeps the
    convention (a partial assignment could leave a territory to nobody). If it missed exactly one,
    its teammates probably took the assignment, which may give its territory to another: when a
    fresh teammate's goal (an intent announced after step ``K``; earlier ones are starts) lies in
    it, it leaves it to that teammate for the one with the nearest corner that no such goal lies in;
    a lost header costs a detour, not a territory left to nobody. One that missed more never leaves:
    over links that lose most starts its teammates missed starts too and kept the convention, a
    valid partition, and a goal in its territory is a lead, a helper or a coarse intent; one that
    heard little takes the territory it would in silence.
    """
    b, n, dev = world.num_envs, world.num_agents, world.device
    t, pos, age = world.t.view(-1, 1), world.pos, world.intent_age  # age [B, N, N]
    recall = functools.partial(base._recall, world, mem)
    own = torch.arange(n, device=dev).expand(b, n)
    territory = recall("territory", own)
    sweeper = recall("sweeper", own.unsqueeze(1).expand(b, n, n))
    start = mem["start"] = recall("start", pos)
    decided = recall("decided", torch.zeros(b, n, dtype=torch.bool, device=dev))
    variant, choose = recall("variant", torch.zeros_like(own)), (t == 0).expand(b, n)
    gap = (corners - pos.view(b, n, 1, 1, 2)).norm(dim=-1)  # [B, N, S, 4]
    if 1 < n <= 6:
        eye = torch.eye(n, dtype=torch.bool, device=dev)
        heard = (age < t.unsqueeze(-1)) | eye  # [B, N, N]: every intent heard so far is a start
        early = (t >= 1) & (t <= _ANNOUNCE_STEPS)
        decide = early & heard.all(-1) & ~decided  # [B, N]
        starts_heard = recall("starts_heard", torch.zeros_like(own))
        starts_heard = mem["starts_heard"] = torch.where(early, heard.sum(-1), starts_heard)
        bits = world.intent_bits.masked_fill(eye, world.config.comm.intent_bits).amin(-1)
        mine = world.comm.quantize_intent(start.reshape(b * n, 2), bits.reshape(-1))
        starts = torch.where(eye.view(1, n, n, 1), mine.view(b, n, 1, 2), world.known_intent)
        reach = base._dist(starts, corners.view(-1, 2)).view(b, n, n, n, 4).amin(-1)  # [B,N,N,S]
        best = base._bottleneck_assignment(reach, 4.0 * n * world.grid)  # [B, N(i), N(j)]
        territory = torch.where(decide, best.gather(2, own.unsqueeze(-1)).squeeze(-1), territory)
        sweeper = torch.where(decide.unsqueeze(-1), best.argsort(-1), sweeper)
        choose, decided = choose | decide, decided | decide
        # Missed exactly one start: leave a territory a teammate's goal lies in.
        goal_sector = sector[base._cell_index(world.known_intent, world.grid)]  # [B, N, N]
        fresh = base._fresh_teammates(world) & (age < (t - _ANNOUNCE_STEPS).unsqueeze(-1))
        heads = (one_hot(goal_sector, n).bool() & fresh.unsqueeze(-1)).any(2)  # [B, N, S]
        switch = (t > _ANNOUNCE_STEPS) & ~decided & (starts_heard >= n - 1) & ~heads.all(-1)
        switch &= heads.gather(2, territory.unsqueeze(-1)).squeeze(-1)
        alt = gap.amin(-1).masked_fill(heads, float("inf")).argmin(-1)  # [B, N]
        there = (goal_sector == territory.unsqueeze(-1)) & fresh  # [B, N, N]
        swapped = sweeper.scatter(2, territory.unsqueeze(-1), there.byte().argmax(-1, True))
        swapped = swapped.scatter(2, alt.unsqueeze(-1), own.unsqueeze(-1))
        territory = torch.where(switch, alt, territory)
        sweeper = torch.where(switch.unsqueeze(-1), swapped, sweeper)
        choose = choose | switch
    nearest = gap.gather(2, territory.view(b, n, 1, 1).expand(b, n, 1, 4)).squeeze(2).argmin(-1)
    variant = torch.where(choose, nearest, variant)
    mem.update(territory=territory, sweeper=sweeper, variant=variant, decided=decided)
    return territory, sweeper, variant


def _own_evidence(world: CommWorld, mem: dict[str, Tensor], own: Tensor, dist: Tensor) -> Tensor:
    r"""``[B, N, C]`` the agent's own log-odds ``own`` without the clip: each step plus
    :math:`\log(p_d/p_{fa})` on each cell of its sensing disk (``dist`` at most the sensing
    radius) its evidence rose on (or stayed at the ceiling), :math:`\log((1-p_d)/(1-p_{fa}))`
    where it fell (or stayed at the floor), only on its sensing window (the sensor reports
    nowhere else, :func:`~agentcomm.envs.expert_base._window`). Memory created mid-episode
    starts from the clipped evidence."""
    cfg = world.config
    clip, rs, pd, pfa = cfg.comm.logodds_clip, cfg.sensing.radius, cfg.sensing.pd, cfg.sensing.pfa
    new, start = base._new_step(world, mem), world.t == 0
    total, last = base._recall(world, mem, "own_total", own), mem.get("own_last")
    last = own if last is None or last.shape != own.shape else last
    index, inside = base._window(world, float(rs))
    now, before = own.gather(2, index), last.gather(2, index)  # [B, N, W]
    up = (now > before + 1e-6) | ((now >= clip - 1e-6) & (now >= before - 1e-6))
    down = (now < before - 1e-6) | ((now <= -clip + 1e-6) & (now <= before + 1e-6))
    hit, miss = math.log(pd / pfa), math.log((1 - pd) / (1 - pfa))
    step = torch.where(up, hit, torch.where(down, miss, 0.0))
    counts = inside & (dist.gather(2, index) <= rs) & (new & ~start).view(-1, 1, 1)
    total = total.scatter_add_(2, index, step * counts)
    mem["own_total"], mem["own_last"] = total, torch.where(new.view(-1, 1, 1), own, last)
    return total


def search_rescue_expert(world: CommWorld) -> Tensor:
    r"""Sweep a territory; rescue victims and look again at leads when that beats sweeping.

    **Posterior.** Agent :math:`i` decides on :math:`p_i(c) = \sigma(\ell_i(c))`, its fused
    log-odds with its own clipped evidence replaced by the unclipped sum of its detections
    and misses (:func:`_own_evidence`: the clip at :math:`\pm` ``logodds_clip``, 1.6 nats
    below the prior, forgets misses, and one false alarm of a teammate would lift a cell the
    agent missed many times to :math:`p \approx 0.04`), and 0 within ``rescue_radius`` of
    every position it has occupied this episode (a victim there would have been rescued).

    **Leads and victims.** With travel :math:`d_i(c)`, speed :math:`v`, sensing and rescue
    radii :math:`r_s, r_r` and detection probability :math:`p_d`, going for cell :math:`c`
    yields :math:`\rho_i(c) = p_i(c) / t_r(c)` victims per step if :math:`p_i(c) \ge \tfrac12`
    (a victim: rescue it), else :math:`\max(p_i(c) / t_r(c), p_d\, p_i(c) / t_s(c))` (a lead:
    look again, or rescue), with :math:`t_{r,s}(c) = \max(1, \lceil (d_i(c) - r_{r,s}) / v
    \rceil)`; 0 where a teammate has the cell (:func:`~agentcomm.envs.expert_base._yields`,
    claim radius :math:`r_s`: a teammate whose goal is that close will see it; the owner of
    the cell's territory has it whenever its goal is nearer) and, until the agent's own
    territory is swept, on cells of other territories over one step away (their owners'
    sweeps will see them). Sweeping fresh ground finds :math:`\rho_\text{sweep} = p_d\, p_0\,
    2 r_s v` (a swath :math:`2 r_s` wide advancing :math:`v` per step over cells at the prior
    :math:`p_0`); the agent goes for the best cell :math:`c^*` if :math:`\rho_i(c^*) \ge 2
    \rho_\text{sweep}` (the sweep sees a lead in view again at no cost), or if it is above 0
    when nothing is left to sweep.

    **Sweep.** Otherwise it heads for the first open waypoint on its territory's route
    (:func:`_territories`, :func:`_sweep_plan`), once that is done for the nearest open
    waypoint elsewhere with no teammate's fresh goal within :math:`2 r_s`. Open: its sensing
    disk holds :math:`2 r_s v` unexplored cells, what a step of sweeping fresh ground finds
    (a sliver a teammate's path left is not worth a detour; the leads rule takes it at
    :math:`p_0` once the routes are done); unexplored: evidence within 0.5 nats of the prior
    (or half the least a look moves a clipped belief, if less), fused and own unclipped.

    Why: routes are the shortest cover of a territory, and territories by convention need no
    messages, so the team sweeps in parallel with or without communication (sooner when it
    hears the starts); the fused belief removes what teammates sensed, sends help where it
    is needed and turns their detections into leads, each at its worth: one detection
    (:math:`p \approx 0.18`; ~0.65 false alarms per agent-step) is followed only within 3
    cells, two (:math:`p \approx 0.79`) from up to 10 (:math:`2\rho_\text{sweep} \approx
    0.084` at the defaults).
    """
    cfg = world.config
    b, n, g, dev = world.num_envs, world.num_agents, world.grid, world.device
    rs, rr, v, pd = cfg.sensing.radius, cfg.rescue_radius, cfg.max_speed, cfg.sensing.pd
    cells, pos, mem = base._cells(g, dev), world.pos, base._memory(world)
    dist = base._dist(pos, cells)  # [B, N, C]
    visited = base._recall(world, mem, "visited", torch.zeros_like(dist, dtype=torch.bool))
    visited = mem["visited"] = visited | (dist <= rr)
    belief, own = world.belief.reshape(b, n, -1), world.local.reshape(b, n, -1)
    own_total = _own_evidence(world, mem, own, dist)
    p = (belief + (own_total - own)).sigmoid_().masked_fill_(visited, 0.0)
    anchor = cfg.base if cfg.start == "base" and cfg.base is not None else (g / 2, g / 2)
    anchor = (float(anchor[0]), float(anchor[1]))
    sector, waypoints, owner, orders, corners, foot = _sweep_plan(g, n, anchor, float(rs), dev)
    territory, sweeper, variant = _territories(world, mem, sector, corners)
    teammates = base._fresh_teammates(world)
    # --- sweep (`least`: the fewest nats one look moves a belief at the prior, clip included)
    clip, pfa = cfg.comm.logodds_clip, cfg.sensing.pfa
    least = min(math.log(pd / pfa), -math.log((1 - pd) / (1 - pfa)))
    slack = min(_UNEXPLORED, min(least, clip + world.prior, clip - world.prior) / 2)
    far = torch.maximum((belief - world.prior).abs_(), (own_total - world.prior).abs_())
    worth = min(max(1.0, 2 * rs * v), float(foot.sum(0).min())) - 1e-6
    open_ = ((far < slack).float() @ foot) >= worth  # [B, N, M]
    mine = open_ & (owner == territory.unsqueeze(-1))
    claimed = ((base._worst_gap(world, waypoints) <= 2 * rs) & teammates.unsqueeze(-1)).any(2)
    big = float(10 * waypoints.shape[0])
    key_own = torch.where(mine, orders[variant].float(), big)
    key_help = torch.where(open_ & ~mine & ~claimed, big + base._dist(pos, waypoints), 3 * big)
    key = torch.minimum(key_own, key_help).min(-1)
    sweeping = key.values < 2 * big
    # --- leads and victims
    t_rescue, t_look = ((dist - r).div_(v).ceil_().clamp_min_(1.0) for r in (rr, rs))
    rescue = p / t_rescue
    rate = torch.where(p >= _CONFIRMED, rescue, torch.maximum(rescue, (pd * p).div_(t_look)))
    # The larger radius gives the shorter of the two travel times (ceil is monotone).
    foreign = (sector != territory.unsqueeze(-1)) & ((t_look if rr <= rs else t_rescue) > 1)
    rate = rate.masked_fill_(foreign & mine.any(-1, keepdim=True), 0.0)
    top = rate.topk(min(_CANDIDATES, g * g), dim=-1)
    holder = sweeper.gather(2, sector[top.indices])  # [B, N, K]: who sweeps each candidate
    cand, cand_dist = cells[top.indices], dist.gather(2, top.indices)  # [B, N, K, 2], [B, N, K]
    taken = base._yields(world, cand, cand_dist, rs, 0.5, teammates, holder)
    best = top.values.masked_fill(taken, 0.0).max(-1)
    lead = cells[top.indices.gather(2, best.indices.unsqueeze(-1)).squeeze(-1)]
    rho_sweep = pd * (1.0 / (1.0 + math.exp(-world.prior))) * 2 * rs * v
    go = (best.values >= _SWEEP_MARGIN * rho_sweep) | (~sweeping & (best.values > 0))
    target = torch.where(sweeping.unsqueeze(-1), waypoints[key.indices], pos)
    target = torch.where(go.unsqueeze(-1), lead, target)
    early = (world.t < _ANNOUNCE_STEPS).view(-1, 1, 1)  # announce the start (_territories)
    return base._act(world, target, intent=torch.where(early, mem["start"], target))
