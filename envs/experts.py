"""Scripted experts, one per scenario: the floor every learned policy must beat,
and the source of demonstrations for behaviour cloning.

Each expert reads only what an agent could know (its own fused belief, the
intents it has received and their ages, the known site positions), never the
ground truth, so its success depends on communication the way a learned
policy's does. All experts are batched over ``[B, N]`` and deterministic.

Shape legend: ``B`` worlds, ``N`` agents, ``C = H * W`` cells, ``S`` sites, ``T`` targets.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .world import ACTION_DIM, CommWorld

__all__ = ["EXPERTS", "expert_actions", "random_actions"]

_SPREAD = 4.0  # cells: a teammate's announced goal repels frontier cells this close
_CROWD_PENALTY = 8.0  # cells of extra distance per repelling teammate
_SUSPICIOUS = 2.0  # nats of net evidence for a victim that make a cell worth a second look


def _act(world: CommWorld, target: torch.Tensor, transmit: float = 1.0) -> torch.Tensor:
    """Actions that head for ``target [B, N, 2]`` (cells) and announce it as the intent."""
    g, v = float(world.grid), world.config.max_speed
    delta = target - world.pos
    dist = delta.norm(dim=-1, keepdim=True)
    vel = delta / dist.clamp_min(v)  # full speed until the last step, then exact
    intent = (target / g * 2 - 1).clamp(-1, 1)
    b, n = world.num_envs, world.num_agents
    comm = torch.tensor([transmit, 0.0], device=world.device).expand(b, n, 2)
    return torch.cat([vel.clamp(-1, 1), intent, comm], -1)


def _claims(world: CommWorld, points: torch.Tensor, radius: float) -> torch.Tensor:
    """bool ``[B, N, P]``: point ``p`` is claimed, in agent ``i``'s view, by a teammate of
    lower index whose intent (received within ``intent_max_age`` steps) may lie within
    ``radius`` of it, given the quantization cell the intent was received with. Lower
    indices win ties, so every agent resolves conflicts alike."""
    n = world.num_agents
    fresh = world.intent_age < world.config.intent_max_age  # [B, N, N]
    lower = torch.ones(n, n, dtype=torch.bool, device=world.device).tril(-1)  # j < i
    near = (world.known_intent.unsqueeze(3) - points.unsqueeze(1).unsqueeze(1)).norm(dim=-1)
    # near: [B, N(i), N(j), P]; a coarse intent may be anywhere in its quantization cell.
    slack = (world.intent_resolution * 0.5**0.5).unsqueeze(-1)
    return ((near <= radius + slack) & (fresh & lower).unsqueeze(-1)).any(2)


def search_rescue_expert(world: CommWorld) -> torch.Tensor:
    """Frontier search with intent-based deconfliction, then rescue.

    Each agent heads for the nearest cell its fused belief rates more likely
    occupied than not (a probable victim), unless a teammate's freshly
    announced goal is closer to it; otherwise for the nearest unexplored cell (belief still at
    the prior), penalized by ``_CROWD_PENALTY`` cells for each lower-index
    teammate whose announced goal lies within ``_SPREAD`` cells of it, which
    spreads the team over the area.
    """
    b, n, g = world.num_envs, world.num_agents, world.grid
    cells = world._cell_centres()  # [C, 2]
    belief = world.belief.view(b, n, g * g)
    dist = (world.pos.unsqueeze(2) - cells).norm(dim=-1)  # [B, N, C]
    inf = torch.tensor(float("inf"), device=world.device)
    # Probable victims go to whoever is nearest: a teammate whose fresh announced goal is
    # closer to the cell than this agent is (index breaks ties) will handle it.
    fresh = world.intent_age < world.config.intent_max_age
    eye = torch.eye(n, dtype=torch.bool, device=world.device)
    lower = torch.ones(n, n, dtype=torch.bool, device=world.device).tril(-1)
    d_team = (world.known_intent.unsqueeze(3) - cells).norm(dim=-1)  # [B, N(i), N(j), C]
    closer = (d_team < dist.unsqueeze(2)) | ((d_team == dist.unsqueeze(2)) & lower.unsqueeze(-1))
    taken = (closer & (fresh & ~eye).unsqueeze(-1)).any(2)
    likely = (belief > 0.0) & ~taken
    d_likely = torch.where(likely, dist, inf)
    has_likely = likely.any(-1)
    # Frontier: cells with no evidence yet, and cells with net positive evidence (a
    # detection a miss did not outweigh), which deserve another look.
    evidence = belief - world.prior
    unexplored = (evidence.abs() < 0.5) | (evidence > _SUSPICIOUS)
    # Only lower-index teammates' goals repel: if every agent avoided every other, agents
    # sharing a belief would all flee the same crowd to the same place, step after step.
    near = d_team <= _SPREAD
    crowd = (near & (fresh & lower).unsqueeze(-1)).sum(2).float()
    score = torch.where(unexplored, dist + _CROWD_PENALTY * crowd, inf)
    # With no frontier left, revisit the cells that are most likely occupied, spread out.
    fallback = dist + _CROWD_PENALTY * crowd - 4.0 * evidence
    score = torch.where(unexplored.any(-1, keepdim=True), score, fallback)
    pick = torch.where(has_likely, d_likely.argmin(-1), score.argmin(-1))
    return _act(world, cells[pick])


def intent_coverage_expert(world: CommWorld) -> torch.Tensor:
    """Greedy assignment by announced intents: each agent takes the nearest site
    not claimed by a lower-index teammate (a claim: the teammate's announced goal,
    widened by its quantization cell, reaches the site radius)."""
    sites = world.sites  # [B, S, 2]
    dist = (world.pos.unsqueeze(2) - sites.unsqueeze(1)).norm(dim=-1)  # [B, N, S]
    taken = _claims(world, sites, world.config.site_radius)
    score = torch.where(taken, dist + 1e3, dist)
    pick = score.argmin(-1)
    target = torch.gather(sites, 1, pick.unsqueeze(-1).expand(-1, -1, 2))
    return _act(world, target)


def target_tracking_expert(world: CommWorld) -> torch.Tensor:
    """Pursuit of the fused estimate: agent ``i`` follows target ``i mod T``, heading for
    its predicted position one step ahead."""
    n, t = world.num_agents, world.config.num_targets
    assign = torch.arange(n, device=world.device) % t
    mean = world.track_mean[:, torch.arange(n, device=world.device), assign]  # [B, N, 4]
    target = (mean[..., :2] + mean[..., 2:]).clamp(0.0, float(world.grid))
    return _act(world, target)


#: Expert policy of each scenario id.
EXPERTS: dict[str, Callable[[CommWorld], torch.Tensor]] = {
    "SearchRescue-v0": search_rescue_expert,
    "IntentCoverage-v0": intent_coverage_expert,
    "TargetTracking-v0": target_tracking_expert,
}


def expert_actions(world: CommWorld) -> torch.Tensor:
    """``[B, N, 6]`` actions of the scenario's expert for the current state."""
    if world.env_id not in EXPERTS:
        raise ValueError(
            f"no expert for env_id={world.env_id!r}; experts exist for {sorted(EXPERTS)}"
        )
    return EXPERTS[world.env_id](world)


def random_actions(world: CommWorld, generator: torch.Generator | None = None) -> torch.Tensor:
    """``[B, N, 6]`` uniform random actions in ``[-1, 1]``."""
    shape = (world.num_envs, world.num_agents, ACTION_DIM)
    return torch.rand(shape, generator=generator, device=world.device) * 2 - 1
