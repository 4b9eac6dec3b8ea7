"""The scripted expert of IntentCoverage-v0: nearest site no lower-index teammate claims.

The rules and why they are rational are in the docstring of :func:`intent_coverage_expert`;
the pieces every expert shares are in :mod:`agentcomm.envs.expert_base`.
"""

from __future__ import annotations

import torch

from ..expert_base import _act, _dist, _intent_slack
from ..world import CommWorld

__all__ = ["intent_coverage_expert"]


def _claims(world: CommWorld, points: torch.Tensor, radius: float) -> torch.Tensor:
    """bool ``[B, N, P]``: point ``p`` is claimed, in agent ``i``'s view, by a teammate of
    lower index whose intent (received within ``intent_max_age`` steps) may lie within
    ``radius`` of it, given the quantization cell the intent was received with. Lower
    indices win ties, so every agent resolves conflicts alike."""
    n = world.num_agents
    fresh = world.intent_age < world.config.intent_max_age  # [B, N, N]
    lower = torch.ones(n, n, dtype=torch.bool, device=world.device).tril(-1)  # j < i
    near = _dist(world.known_intent, points.unsqueeze(1).expand(-1, n, -1, -1))
    # near: [B, N(i), N(j), P]; a coarse intent may be anywhere in its quantization cell.
    slack = _intent_slack(world).unsqueeze(-1)
    return ((near <= radius + slack) & (fresh & lower).unsqueeze(-1)).any(2)


def intent_coverage_expert(world: CommWorld) -> torch.Tensor:
    """Greedy assignment by announced intents: each agent takes the nearest site
    not claimed by a lower-index teammate (a claim: the teammate's announced goal,
    widened by its quantization cell, reaches the site radius)."""
    sites = world.sites  # [B, S, 2]
    dist = _dist(world.pos, sites)  # [B, N, S]
    taken = _claims(world, sites, world.config.site_radius)
    score = torch.where(taken, dist + 1e3, dist)
    pick = score.argmin(-1)
    target = torch.gather(sites, 1, pick.unsqueeze(-1).expand(-1, -1, 2))
    return _act(world, target)
