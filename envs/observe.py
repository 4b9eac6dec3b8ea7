"""What the agents of the batched world observe, and the global state a critic sees.

Shape legend: ``B`` worlds, ``N`` agents, ``Do`` observation size, ``Ds`` state size.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from agentcomm.topology import COORDINATION_MODES

if TYPE_CHECKING:
    from .world import CommWorld

__all__ = [
    "BUDGET_REFERENCE",
    "OPERATING_POINT_DIM",
    "obs_dim",
    "observation",
    "state",
    "state_dim",
]

#: Columns of the operating point (``observe_operating_point``): budget cap, mode one-hot
#: (3), cost per channel use.
OPERATING_POINT_DIM = 5
#: Budget (channel uses) the budget column maps to 1: a fixed reference, so that the column
#: means the same cap in every config (a cap above it reads 1).
BUDGET_REFERENCE = 1024


def obs_dim(world: CommWorld) -> int:
    """``Do``: the base layout of :func:`observation` plus the scenario's extras."""
    n, m = world.num_agents, world.config.obs_map_size
    grid = m * m if world.belief_kind == "grid" else 0
    extra = OPERATING_POINT_DIM if world.config.observe_operating_point else 0
    extra += n if world.config.observe_agent_index else 0
    extra -= 0 if world.config.observe_own_velocity else 2
    return 2 + 2 + 2 + grid + 4 * (n - 1) + 3 + world._scenario_obs_dim() + extra


def state_dim(world: CommWorld) -> int:
    """``Ds`` of :func:`state`."""
    return 4 * world.num_agents + 1 + world._scenario_state_dim()


def own_scale(world: CommWorld) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Divisor, scale and offset of the position, velocity and intent columns."""
    g, v = float(world.grid), world.config.max_speed
    dev = world.device
    return (
        torch.tensor([g, g, v, v, g, g], device=dev),
        torch.tensor([2.0, 2.0, 1.0, 1.0, 2.0, 2.0], device=dev),
        torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 1.0], device=dev),
    )


def _scale_snr(snr_db: torch.Tensor) -> torch.Tensor:
    return ((snr_db.clamp(-20.0, 40.0) + 20.0) / 30.0 - 1.0).nan_to_num(-1.0)


def observation(world: CommWorld) -> torch.Tensor:
    """``[B, N, Do]`` float32, every entry in ``[-1, 1]``.

    Layout: own position (2, scaled to [-1, 1]), own velocity (2, /max_speed; dropped
    without ``observe_own_velocity``), own intent (2, scaled), the fused belief max-pooled
    to ``obs_map_size`` squared (grid scenarios; probabilities scaled to [-1, 1], or log-odds
    over ``comm.logodds_clip`` with ``observe_belief_as="logodds"``), then for each other
    agent in index order: its last received intent relative to own position
    (2, /grid_size), that intent's age (1, min(age, intent_max_age)/intent_max_age,
    scaled), the mean link SNR to it (1, clipped to [-20, 40] dB, scaled); then
    the fusion-centre link SNR (1), the fraction of agents in link range (1), and the
    elapsed fraction of the episode (1); then the scenario's extras; then, with
    ``observe_operating_point``, the world's operating point (:func:`operating_point`, 5);
    with ``observe_agent_index``, the agent's index one-hot (``N``, 1 at the agent's own).
    """
    cfg = world.config
    b, n, g = world.num_envs, world.num_agents, float(world.grid)
    # Position, velocity, intent in one pass: x / d * s - o per column, the same
    # arithmetic as x / g * 2 - 1 and x / max_speed (* 1 - 0 leaves it, -0.0 too).
    own = torch.cat([world.pos, world.vel, world.intent], dim=-1)
    d, s, o = world._own_scale
    parts = [own / d * s - o]
    if not cfg.observe_own_velocity:
        parts[0] = torch.cat([parts[0][..., :2], parts[0][..., 4:]], dim=-1)
    if world.belief_kind == "grid":
        pooled = world.beliefs.pooled_probability(cfg.obs_map_size)
        if cfg.observe_belief_as == "logodds":
            # A confident cell's logit may be +-inf in float32, which the final clamp bounds;
            # a clip below float32's range makes 0 / 0 of an even cell, read as 0.
            parts.append((torch.logit(pooled) / cfg.comm.logodds_clip).nan_to_num(0.0))
        else:
            parts.append(pooled * 2 - 1)
    rel = (world.known_intent - world.pos.unsqueeze(2)) / g
    # Integer tensors divided by an int: float32 quotients, as .float() first gives them.
    age = world.intent_age.clamp_max(cfg.intent_max_age) / cfg.intent_max_age
    # Peer and fusion-centre SNRs scaled in one pass.
    snr = _scale_snr(torch.cat([world.peer_snr, world.fc_snr.unsqueeze(-1)], dim=-1))
    team = torch.cat([rel, (age * 2 - 1).unsqueeze(-1), snr[..., :n, None]], dim=-1)
    team = team.reshape(b, n * n, -1).index_select(1, world._off_index)
    parts.append(team.reshape(b, n, -1))
    frac_links = world.adj.sum(-1, keepdim=True) / max(n - 1, 1)
    # The elapsed fraction is scaled once per world, then shown to its agents.
    elapsed = (world.t / cfg.max_steps * 2 - 1).view(b, 1, 1).expand(b, n, 1)
    parts += [snr[..., n:], frac_links * 2 - 1, elapsed, world._scenario_obs()]
    if cfg.observe_operating_point:
        parts.append(operating_point(world).unsqueeze(1).expand(b, n, -1))
    if cfg.observe_agent_index:
        parts.append((world._eye.float() * 2 - 1).unsqueeze(0).expand(b, n, n))
    return torch.cat(parts, dim=-1).clamp_(-1.0, 1.0)


def operating_point(world: CommWorld) -> torch.Tensor:
    r"""``[B, 5]`` float32 in ``[-1, 1]``: the operating point every agent of a world sees.

    Columns: the world's budget cap ``k`` (``budget_cap``, drawn per episode from
    ``comm.budget_levels`` or the fixed ``comm.budget``) as
    :math:`2 \min(1, \log_2(1 + k) / \log_2(1 + K_\text{ref})) - 1` with
    :data:`BUDGET_REFERENCE` ``K_ref`` (-1: no communication); the coordination mode
    one-hot (centralized, distributed, hybrid; 1 for the world's mode, -1 otherwise); the
    cost per channel use ``c`` as :math:`2 c / (1 + c) - 1`. The link quality (the drawn
    transmit power) shows in the observation's link SNRs.
    """
    scale = 2.0 / math.log2(1 + BUDGET_REFERENCE)
    budget = (torch.log2(1.0 + world.budget_cap.float()) * scale - 1.0).clamp_max(1.0)
    # The mode and cost columns are the config's: built once per world, not every step.
    rest = getattr(world, "_operating_point_fixed", None)
    if rest is None:
        cm = world.config.comm
        fixed = [1.0 if cm.mode == m else -1.0 for m in COORDINATION_MODES]
        fixed.append(2.0 * cm.cost_per_channel_use / (1.0 + cm.cost_per_channel_use) - 1.0)
        rest = torch.tensor(fixed, device=world.device)
        world._operating_point_fixed = rest
    rest = rest.expand(world.num_envs, -1)
    return torch.cat([budget.unsqueeze(1), rest], dim=1)


def state(world: CommWorld) -> torch.Tensor:
    """``[B, Ds]`` global state for centralized critics: every agent's position and
    velocity (scaled), the elapsed fraction, and the scenario's ground truth."""
    b, g = world.num_envs, float(world.grid)
    parts = [
        (world.pos / g * 2 - 1).reshape(b, -1),
        (world.vel / world.config.max_speed).reshape(b, -1),
        (world.t / world.config.max_steps * 2 - 1).view(b, 1),
        world._scenario_state(),
    ]
    return torch.cat(parts, dim=-1)
