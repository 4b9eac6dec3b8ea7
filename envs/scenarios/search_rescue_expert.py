"""The scripted expert of SearchRescue-v0: sweep a territory, rescue victims, follow leads.

The rules and why they are rational are in the docstring of :func:`search_rescue_expert`; the pieces
every expert shares are in :mod:`agentcomm.envs.expert_base`.
"""

from __future__ import annotations

import functools
import itertools
import math

import torch

from agentcomm.beliefs.grid import window_offsets

from ..expert_base import (
    _act,
    _cells,
    _dist,
    _fresh_teammates,
    _intent_slack,
    _memory,
    _new_step,
    _yields,
)
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
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Territories and four boustrophedon routes through each.

    Territories: the cells sorted by their angle around ``anchor`` and cut into ``agents``
    runs of equal count (quadrants for four agents around the centre), a convention every
    agent knows without a word. Lanes: rows ``radius, 3 radius, ...`` (the last at most
    ``grid - radius``), so the sensing disks of neighbouring lanes tile the area. A waypoint
    sits on each lane at each column and belongs to the territory of its cell. A route
    visits a territory's waypoints lane by lane, alternating direction; its four variants
    start at each of the territory's four route corners (first or last lane, leftward or
    rightward), so an agent enters its territory at the corner nearest to it.

    Returns:
        ``sector [C]`` (territory of each cell), ``waypoints [M, 2]``, ``owner [M]``
        (territory of each waypoint), ``orders [4, M]`` (rank of each waypoint in its
        territory's route, per variant), ``corners [agents, 4, 2]`` (the first waypoint of
        each route) and ``foot [C, M]`` (float, 1 for the cells within ``radius`` of each
        waypoint).
    """
    cells = _cells(grid, device)
    rel = cells - torch.tensor(anchor, device=device)
    rank = torch.atan2(rel[:, 1], rel[:, 0]).argsort().argsort()
    sector = rank * agents // cells.shape[0]  # [C]
    spacing = 2 * radius
    count = max(1, math.ceil(grid / spacing - 1e-6))
    rows = sorted({min(radius + spacing * j, grid - radius) for j in range(count)})
    lanes = torch.tensor(rows if grid > spacing else [grid / 2], device=device)
    cols = torch.arange(grid, device=device, dtype=torch.float32) + 0.5
    waypoints = torch.stack(torch.meshgrid(lanes, cols, indexing="ij"), -1).reshape(-1, 2)
    lane = torch.arange(lanes.numel(), device=device).repeat_interleave(grid)
    home = (waypoints[:, 0].floor().clamp(0, grid - 1) * grid + waypoints[:, 1].floor()).long()
    owner = sector[home]
    orders = torch.zeros(4, waypoints.shape[0], dtype=torch.long, device=device)
    corners = torch.zeros(agents, 4, 2, device=device)
    for i in range(agents):  # a one-off table per configuration
        ids = (owner == i).nonzero().squeeze(1)
        if ids.numel() == 0:
            corners[i] = cells[(sector == i).nonzero()[0, 0]]
            continue
        used, lane_of = torch.unique(lane[ids], return_inverse=True)
        for variant in range(4):
            lane_rank = lane_of if variant < 2 else used.numel() - 1 - lane_of
            first = 1.0 if variant % 2 == 0 else -1.0
            direction = torch.where(lane_rank % 2 == 0, first, -first)
            key = lane_rank.float() * (4.0 * grid) + direction * waypoints[ids, 1]
            route = ids[key.argsort()]
            orders[variant, route] = torch.arange(ids.numel(), device=device)
            corners[i, variant] = waypoints[route[0]]
    foot = ((cells.unsqueeze(1) - waypoints).norm(dim=-1) <= radius + 1e-6).float()
    return sector, waypoints, owner, orders, corners, foot


@functools.lru_cache(maxsize=8)
def _permutations(agents: int, device: torch.device) -> torch.Tensor:
    """``[P, agents]`` long: every assignment of territories to agents (row ``p``: the
    territory of each agent), the identity first."""
    rows = list(itertools.permutations(range(agents)))
    return torch.tensor(rows, dtype=torch.long, device=device).view(len(rows), agents)


def _territories(
    world: CommWorld,
    mem: dict[str, torch.Tensor],
    sector: torch.Tensor,
    corners: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Which territory each agent sweeps, and from which corner.

    Returns ``territory [B, N]`` (the agent's own territory) and ``sweeper [B, N, N]``
    (``sweeper[b, i, s]``: the agent that sweeps territory ``s`` in agent ``i``'s view), and
    records ``variant [B, N]`` (the route variant, :func:`_sweep_plan`) in ``mem``.

    At the start of an episode every agent takes territory ``i`` by convention and, for the
    first ``K`` steps, announces its start position as its intent
    (:func:`search_rescue_expert`; over fading links one header may be lost). An agent that
    has heard every teammate's start by step ``K`` solves the bottleneck assignment on the
    starts as it received them (its own quantized as coarsely as the coarsest it heard):

    .. math:: \pi^* = \arg\min_\pi \Big(\max_j d(x_j, \pi(j)),\ \sum_j d(x_j, \pi(j))\Big)

    lexicographically, with :math:`d(x, s)` the distance from :math:`x` to the nearest
    corner of territory :math:`s`, and permutations in a fixed order (ties go to the first),
    so every agent that heard the same starts picks the same assignment. The team then
    sweeps all territories in parallel after the shortest longest walk; an agent that did
    not hear everyone by step ``K`` keeps the convention (a partial assignment could leave a
    territory to nobody). If it missed exactly one start, it then leaves its territory when
    a fresh teammate's announced goal (an intent announced after step ``K``: the earlier
    ones are starts) lies in it, for the territory with the nearest corner that no such
    goal lies in: its teammates probably heard every start and took the assignment, which
    may give its territory to someone else. An agent that missed more starts never leaves
    the convention: over links that lose most starts its teammates missed starts too and
    kept the convention, a valid partition, and a teammate's goal in its territory is a
    lead, a helper or a coarse intent; leaving would open a territory to nobody. So an
    agent that heard little takes the territory it would take in silence. Permutations are
    enumerated for at most 6 agents; larger teams keep the convention. Each agent enters
    its territory at the route corner nearest to it, chosen when the territory is.
    """
    b, n, dev = world.num_envs, world.num_agents, world.device
    pos = world.pos
    first = world.t == 0
    own = torch.arange(n, device=dev).expand(b, n)
    identity = own.unsqueeze(1).expand(b, n, n)
    territory, sweeper = mem.get("territory"), mem.get("sweeper")
    if territory is None or territory.shape != (b, n):
        territory, sweeper = own.clone(), identity.clone()
        mem["start"] = pos.clone()
        mem["variant"] = torch.zeros(b, n, dtype=torch.long, device=dev)
        mem["decided"] = torch.zeros(b, n, dtype=torch.bool, device=dev)
        mem["starts_heard"] = torch.zeros(b, n, dtype=torch.long, device=dev)
    territory = torch.where(first.view(-1, 1), own, territory)
    sweeper = torch.where(first.view(-1, 1, 1), identity, sweeper)
    start = torch.where(first.view(-1, 1, 1), pos, mem["start"])
    decided = mem["decided"] & ~first.view(-1, 1)
    mem["start"] = start
    choose = first.view(-1, 1).expand(b, n)
    if 1 < n <= 6:
        eye = torch.eye(n, dtype=torch.bool, device=dev)
        # Every intent heard since the start of the episode, up to step K, is a start.
        heard = (world.intent_age < world.t.view(-1, 1, 1)) | eye  # [B, N, N]
        early = (world.t >= 1) & (world.t <= _ANNOUNCE_STEPS)
        decide = early.view(-1, 1) & heard.all(-1) & ~decided  # [B, N]
        # [B, N]: starts heard by step K, its own included
        starts_heard = torch.where(first.view(-1, 1), 0, mem["starts_heard"])
        starts_heard = torch.where(early.view(-1, 1), heard.sum(-1), starts_heard)
        mem["starts_heard"] = starts_heard
        bits = world.intent_bits.masked_fill(eye, world.config.comm.intent_bits).amin(-1)
        mine = world.comm.quantize_intent(start.reshape(b * n, 2), bits.reshape(-1))
        starts = torch.where(eye.view(1, n, n, 1), mine.view(b, n, 1, 2), world.known_intent)
        # [B, N(i), N(j), S]: distance from j's start to the nearest corner of territory s
        reach = _dist(starts, corners.view(-1, 2)).view(b, n, n, n, 4).amin(-1)
        perms = _permutations(n, dev)  # [P, N]
        pairs = (torch.arange(n, device=dev).unsqueeze(1) * n + perms.t()).reshape(-1)
        cost = reach.reshape(b, n, n * n).index_select(2, pairs).view(b, n, n, -1)  # [B,N,N,P]
        score = cost.amax(2) * (4.0 * n * world.grid) + cost.sum(2)  # [B, N, P]
        best = perms[score.argmin(-1)]  # [B, N(i), N(j)]: territory of j in i's view
        inverse = best.argsort(-1)  # [B, N(i), S]: agent of territory s
        pick = best.gather(2, own.unsqueeze(-1)).squeeze(-1)
        territory = torch.where(decide, pick, territory)
        sweeper = torch.where(decide.unsqueeze(-1), inverse, sweeper)
        choose = choose | decide
        decided = decided | decide
        # An agent that missed exactly one start leaves a territory a teammate heads for (its
        # announced goal lies there) and takes the one with the nearest corner that nobody
        # heads for. An agent that missed more keeps the convention: its teammates, over the
        # same links, most likely missed starts too and kept it as well, and a goal in its
        # territory is then a lead, a helper or a coarse intent, not a territory taken.
        late = (world.t > _ANNOUNCE_STEPS).view(-1, 1) & ~decided & (starts_heard >= n - 1)
        goal = world.known_intent.floor().clamp(0, world.grid - 1).long()
        goal_sector = sector[goal[..., 0] * world.grid + goal[..., 1]]  # [B, N, N]
        # Only goals count: an intent announced during the first K steps is a start.
        announced_late = world.intent_age < (world.t - _ANNOUNCE_STEPS).view(-1, 1, 1)
        fresh = _fresh_teammates(world) & announced_late
        every = torch.arange(n, device=dev).view(1, 1, 1, n)
        # [B, N(i), S]: a teammate of i heads for territory s
        heads = ((goal_sector.unsqueeze(-1) == every) & fresh.unsqueeze(-1)).any(2)
        lost = late & heads.gather(2, territory.unsqueeze(-1)).squeeze(-1)
        near = (corners.unsqueeze(0).unsqueeze(0) - pos.view(b, n, 1, 1, 2)).norm(dim=-1)
        alt = near.amin(-1).masked_fill(heads, float("inf")).argmin(-1)
        free = ~heads.all(-1)
        switch = lost & free
        # The teammate heading for the territory given up now sweeps it in i's view.
        there = (goal_sector == territory.unsqueeze(-1)) & fresh  # [B, N, N]
        swapped = sweeper.scatter(2, territory.unsqueeze(-1), there.byte().argmax(-1, True))
        swapped = swapped.scatter(2, alt.unsqueeze(-1), own.unsqueeze(-1))
        territory = torch.where(switch, alt, territory)
        sweeper = torch.where(switch.unsqueeze(-1), swapped, sweeper)
        choose = choose | switch
    mem["decided"] = decided
    # Enter at the nearest corner of the territory (chosen at the start and on reassignment).
    mine_corners = corners[territory]  # [B, N, 4, 2]
    nearest = (mine_corners - pos.unsqueeze(2)).norm(dim=-1).argmin(-1)
    mem["variant"] = torch.where(choose, nearest, mem["variant"])
    mem["territory"], mem["sweeper"] = territory, sweeper
    return territory, sweeper


@functools.lru_cache(maxsize=8)
def _window_table(
    grid: int, radius: float, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per home cell, the cells that can lie within ``radius`` of a point anywhere in it
    (:func:`~agentcomm.beliefs.grid.window_offsets`): ``index [C, K]`` (flat cell indices,
    each axis clamped to the grid) and bool ``inside [C, K]`` (the cell lies on the grid;
    clamped duplicates are ``False``)."""
    offsets = window_offsets(radius, device=device)  # [K, 2]
    home = torch.stack(
        torch.meshgrid(*(torch.arange(grid, device=device),) * 2, indexing="ij"), -1
    ).reshape(-1, 1, 2)
    cell = home + offsets  # [C, K, 2]
    inside = ((cell >= 0) & (cell < grid)).all(-1)
    cell = cell.clamp(0, grid - 1)
    return cell[..., 0] * grid + cell[..., 1], inside


def _window(world: CommWorld, radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``index [B, N, K]`` and bool ``inside [B, N, K]``: :func:`_window_table` looked up at
    each agent's cell."""
    g = world.grid
    index, inside = _window_table(g, radius, world.device)
    home = world.pos.floor().long().clamp(0, g - 1)  # [B, N, 2]
    flat = (home[..., 0] * g + home[..., 1]).reshape(-1)
    shape = (world.num_envs, world.num_agents, -1)
    return index.index_select(0, flat).view(shape), inside.index_select(0, flat).view(shape)


def _own_evidence(
    world: CommWorld, mem: dict[str, torch.Tensor], own: torch.Tensor, dist: torch.Tensor
) -> torch.Tensor:
    r"""``[B, N, C]`` the agent's own log-odds without the clip.

    Every step the agent's own evidence ``own`` moves up on each cell of its sensing disk
    (``dist [B, N, C]`` from the agent at most the sensing radius) its sensor detected and
    down on each it missed (or stays at the clip ceiling or floor); summing
    :math:`\log(p_d/p_{fa})` per detection and :math:`\log((1-p_d)/(1-p_{fa}))` per miss
    without the clip recovers what the clip forgets. Only the cells that can lie on each
    agent's sensing disk (:func:`_window`) are read and updated: the sensor reports nowhere
    else. Memory created mid-episode starts from the clipped evidence."""
    cfg = world.config
    clip = cfg.comm.logodds_clip
    pd, pfa = cfg.sensing.pd, cfg.sensing.pfa
    hit, miss = math.log(pd / pfa), math.log((1 - pd) / (1 - pfa))
    new = _new_step(world, mem)
    total, last = mem.get("own_total"), mem.get("own_last")
    if total is None or total.shape != own.shape:
        total, last = own.clone(), own.clone()
    start = world.t == 0
    total = torch.where(start.view(-1, 1, 1), own, total)
    index, inside = _window(world, float(cfg.sensing.radius))
    now, before = own.gather(2, index), last.gather(2, index)  # [B, N, W]
    window = inside & (dist.gather(2, index) <= cfg.sensing.radius)
    up = (now > before + 1e-6) | ((now >= clip - 1e-6) & (now >= before - 1e-6))
    down = (now < before - 1e-6) | ((now <= -clip + 1e-6) & (now <= before + 1e-6))
    counts = window & (new & ~start).view(-1, 1, 1)
    step = torch.where(up, hit, torch.where(down, miss, 0.0)) * counts
    total = total.scatter_add_(2, index, step)
    mem["own_total"], mem["own_last"] = total, torch.where(new.view(-1, 1, 1), own, last)
    return total


def search_rescue_expert(world: CommWorld) -> torch.Tensor:
    r"""Sweep a territory; rescue victims and look again at leads when that beats sweeping.

    **Posterior.** Agent :math:`i` decides on :math:`p_i(c) = \sigma(\ell_i(c))`: its fused
    log-odds with its own, clipped, evidence replaced by the unclipped sum of its own
    detections and misses (:func:`_own_evidence`; the clip at :math:`\pm`
    ``logodds_clip`` is only 1.6 nats below the prior, so it forgets misses, and a
    teammate's single false alarm would lift a cell the agent has missed many times to
    :math:`p \approx 0.04`), and :math:`p_i(c) = 0` within ``rescue_radius`` of every
    position the agent has occupied this episode (a victim there would have been rescued).

    **Leads and victims.** With travel :math:`d_i(c)`, speed :math:`v`, sensing radius
    :math:`r_s`, rescue radius :math:`r_r` and detection probability :math:`p_d`, going for
    cell :math:`c` yields, in victims per step,

    .. math::

        \rho_i(c) = \begin{cases}
            p_i(c) / t_r(c) & p_i(c) \ge \tfrac12 \text{ (a victim: rescue it)} \\
            \max\big(p_i(c) / t_r(c),\; p_d\, p_i(c) / t_s(c)\big)
                & \text{otherwise (a lead: look again, or rescue)}
        \end{cases}
        \qquad t_{r,s}(c) = \max\Big(1, \Big\lceil \frac{d_i(c) - r_{r,s}}{v} \Big\rceil\Big),

    set to 0 where a teammate has the cell (:func:`_yields` with claim radius :math:`r_s`,
    since a teammate whose goal is that close will see the cell; the owner of the territory
    holding the cell has it whenever its goal is nearer) and, while the agent's own
    territory is not swept, on cells of other territories more than one step away (their
    owners' sweeps will look at them). Sweeping fresh ground finds victims at
    :math:`\rho_\text{sweep} = p_d\, p_0\, 2 r_s v` (a swath :math:`2 r_s` wide advancing
    :math:`v` per step over cells at the prior :math:`p_0`). The agent goes for the best
    cell :math:`c^*` if

    .. math:: \rho_i(c^*) \ge 2\, \rho_\text{sweep},

    or if :math:`\rho_i(c^*) > 0` once nothing is left to sweep; the factor 2 because a
    lead in view is seen again by the sweep itself at no cost.

    **Territories.** The area is cut into :math:`N` territories (:func:`_sweep_plan`).
    Agent :math:`i` sweeps territory :math:`i` by convention; during the first
    :math:`K = 3` steps it announces its start position as its intent, and once it has heard
    every teammate's start it takes its part of the bottleneck assignment of territories to
    starts (:func:`_territories`), which every agent that heard the same starts computes
    alike. An agent that has not heard every start by step :math:`K` keeps the convention;
    if it missed only one, it gives up a territory a teammate's announced goal lies in for
    the free territory with the nearest corner (an agent that missed more stays: its
    teammates most likely kept the convention too).

    **Sweep.** Otherwise it heads for the first waypoint of its territory's route (the
    variant entered at the corner nearest to it) whose sensing disk still holds an
    unexplored cell (evidence within
    0.5 nats of the prior, or half the least a look can move a clipped belief if that is
    less, both in its fused belief and in its own unclipped evidence: nobody has sensed it);
    once its territory is done, for the nearest open waypoint elsewhere that no
    teammate's fresh goal is within :math:`2 r_s` of.

    Why: the route is the shortest cover of a territory, and territories by convention
    need no messages, so the team sweeps in parallel with or without communication; the
    starts it hears let it shorten the longest walk to a territory (the time to cover the
    area is that walk plus one territory's route); an agent that missed a start keeps the
    convention it would have had without messages until a teammate's goal shows that its
    territory is taken, so a lost header costs a detour, not a territory left to nobody,
    and links that lose most headers leave the whole team on the convention, as silence
    does. The fused belief then removes what teammates have sensed, sends help where it is needed and
    turns teammates' detections into leads. Rates in victims per step put each lead at its
    worth: one detection (:math:`p \approx 0.18`; ~0.65 false alarms per agent-step) is
    followed only within 3 cells, two (:math:`p \approx 0.79`) draw the nearest agent from
    up to 10 cells away (at the defaults, :math:`2\rho_\text{sweep} \approx 0.084`).
    """
    cfg = world.config
    b, n, g, dev = world.num_envs, world.num_agents, world.grid, world.device
    rs, rr, v, pd = cfg.sensing.radius, cfg.rescue_radius, cfg.max_speed, cfg.sensing.pd
    c = g * g
    cells = _cells(g, dev)
    pos = world.pos
    dist = _dist(pos, cells)  # [B, N, C]
    mem = _memory(world)
    visited = mem.get("visited")
    if visited is None or visited.shape != dist.shape:
        visited = torch.zeros_like(dist, dtype=torch.bool)
    visited = (visited & (world.t > 0).view(-1, 1, 1)) | (dist <= rr)
    mem["visited"] = visited
    belief = world.belief.reshape(b, n, c)
    own = world.local.reshape(b, n, c)
    own_total = _own_evidence(world, mem, own, dist)
    ell = belief + (own_total - own)
    p = ell.sigmoid_().masked_fill_(visited, 0.0)
    anchor = cfg.base if cfg.start == "base" and cfg.base is not None else (g / 2, g / 2)
    sector, waypoints, owner, orders, corners, foot = _sweep_plan(
        g, n, (float(anchor[0]), float(anchor[1])), float(rs), dev
    )
    territory, sweeper = _territories(world, mem, sector, corners)
    order = orders[mem["variant"]]  # [B, N, M]
    teammates = _fresh_teammates(world)
    # --- sweep
    m = waypoints.shape[0]
    # One look moves a belief at the prior by at least `least` nats (clip included): less
    # than half of that from the prior, in the fused belief and in the agent's own unclipped
    # evidence, means nobody has sensed the cell.
    clip, pfa = cfg.comm.logodds_clip, cfg.sensing.pfa
    least = min(math.log(pd / pfa), -math.log((1 - pd) / (1 - pfa)))
    least = min(least, clip + world.prior, clip - world.prior)
    slack = min(_UNEXPLORED, least / 2)
    far = torch.maximum((belief - world.prior).abs_(), (own_total - world.prior).abs_())
    unexplored = far < slack  # both within the slack
    # A waypoint is open while looking from it reveals at least what a step of sweeping
    # fresh ground does (2 r_s v cells): slivers a teammate's path left are not worth a
    # detour on the route; once the routes are done, the leads rule takes them at p_0.
    worth = min(max(1.0, 2 * rs * v), float(foot.sum(0).min())) - 1e-6
    open_ = (unexplored.float() @ foot) >= worth  # [B, N, M]
    mine = owner == territory.unsqueeze(-1)
    own_open = (open_ & mine).any(-1)  # [B, N]
    gap = _dist(world.known_intent, waypoints)  # [B, N, N, M]
    near = gap + _intent_slack(world).unsqueeze(-1) <= 2 * rs
    claimed = (near & teammates.unsqueeze(-1)).any(2)
    big = float(10 * m)
    key_own = torch.where(open_ & mine, order.float(), big)
    key_help = torch.where(open_ & ~mine & ~claimed, big + _dist(pos, waypoints), 3 * big)
    key = torch.minimum(key_own, key_help).min(-1)
    sweeping = key.values < 2 * big
    sweep_goal = waypoints[key.indices]
    # --- leads and victims
    t_rescue = (dist - rr).div_(v).ceil_().clamp_min_(1.0)
    t_look = (dist - rs).div_(v).ceil_().clamp_min_(1.0)
    rescue = p / t_rescue
    look = torch.maximum(rescue, (pd * p).div_(t_look))
    rate = torch.where(p >= _CONFIRMED, rescue, look)
    # The larger radius gives the shorter of the two travel times (ceil is monotone).
    soonest = t_look if rr <= rs else t_rescue
    foreign = (sector != territory.unsqueeze(-1)) & (soonest > 1)
    rate = rate.masked_fill_(foreign & own_open.unsqueeze(-1), 0.0)
    top = rate.topk(min(_CANDIDATES, c), dim=-1)
    cand = cells[top.indices]  # [B, N, K, 2]
    holder = sweeper.gather(2, sector[top.indices])  # [B, N, K]: who sweeps each candidate
    taken = _yields(world, cand, dist.gather(2, top.indices), rs, 0.5, teammates, holder)
    best = top.values.masked_fill(taken, 0.0).max(-1)
    lead = cand.gather(2, best.indices.view(b, n, 1, 1).expand(b, n, 1, 2)).squeeze(2)
    p0 = 1.0 / (1.0 + math.exp(-world.prior))
    rho_sweep = pd * p0 * 2 * rs * v
    go = (best.values >= _SWEEP_MARGIN * rho_sweep) | (~sweeping & (best.values > 0))
    target = torch.where(
        go.unsqueeze(-1), lead, torch.where(sweeping.unsqueeze(-1), sweep_goal, pos)
    )
    # The first steps announce where the agent starts (for the assignment of territories).
    early = (world.t < _ANNOUNCE_STEPS).view(-1, 1, 1)
    return _act(world, target, intent=torch.where(early, mem["start"], target))
