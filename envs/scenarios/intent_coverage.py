r"""IntentCoverage-v0: intent-driven coordination over unreliable links.

| | |
|---|---|
| Agents | ``agent_0`` ... ``agent_{N-1}`` (default N = 4), cooperative, one team reward |
| Action space | ``Box(-1, 1, (6,), float32)``: velocity (2), intent (2), transmit (1), uplink share (1) |
| Observation space | ``Box(-1, 1, (Do,), float32)``, Do = 33 by default (layout below) |
| Import | ``agentcomm.make("IntentCoverage-v0")`` |

## Description
``N`` agents must occupy ``N`` goal sites, one agent per site. The sites are
known to everyone; who goes where is not. Each agent announces the point it
is heading for (its intent) in the header of its messages; a small budget
coarsens the announced intents (fewer bits per coordinate), weak links and
fading lose them, and an agent that stops hearing a teammate acts on a stale
intent. Lost or stale intents cause conflicts: two agents heading for one site
while another stays empty. No belief maps are exchanged in this scenario.

## Observation Space
The base world layout (:meth:`agentcomm.envs.world.CommWorld.observation`,
without a belief map), then for every site: its position relative to the agent
(2, /grid_size) and whether some agent is on it (1, scaled to [-1, 1]). The sites
are listed in the world's order (``observe_site_order="index"``, the default), or
nearest first in each agent's own observation (``observe_site_order="distance"``): a
permutation of the same columns that makes "the nearest free site" a fixed slot, which a
policy network learns far more easily than an argmin over arbitrary slots.

With ``observe_operating_point`` (off by default) the world's operating point
follows (5: budget cap, coordination mode one-hot, cost per channel use;
:func:`agentcomm.envs.observe.operating_point`), so Do grows by 5.

## Rewards
Team reward per step, shared by every agent
(``team_reward_weight < 1`` mixes in each agent's own share: the distance
terms of the sites it is nearest to, its part of the conflicts on its site, an equal
part of the success bonus, its own channel uses):

.. math::

    r_t = -\frac{1}{N}\sum_{s} \frac{\min_i \lVert p_i - g_s \rVert}{G}
          - \beta\, C_t + R_\text{success}\,\mathbb 1[\text{success}_t]
          - c \sum_i k^i_t

with :math:`g_s` the sites, :math:`G` the grid size, :math:`C_t` the number
of agents beyond the first on an occupied site (conflicts),
:math:`\beta` = ``conflict_penalty`` and :math:`c` = ``comm.cost_per_channel_use``.

## Starting State
Agents uniformly in the area; sites drawn uniformly with pairwise distance at
least ``min_site_separation`` (rejection-free: sites on a jittered lattice
of the area, a random subset per world).

## Episode End
Terminated when every site holds exactly one agent (within ``site_radius``)
(success); truncated after ``max_steps``.

## Arguments
:class:`IntentCoverageConfig` fields (and every :class:`~agentcomm.envs.config.WorldConfig` field).

## Version History
* v0: initial release.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from agentcomm.config import choices, rng

from ..config import WorldConfig
from ..world import CommWorld

__all__ = ["IntentCoverage", "IntentCoverageConfig"]


@dataclass
class IntentCoverageConfig(WorldConfig):
    max_steps: int = field(default=40, metadata=rng(1, 100_000))
    site_radius: float = field(default=0.75, metadata=rng(0.0, 512.0, low_inclusive=False))
    """An agent within this distance (cells) of a site occupies it."""
    conflict_penalty: float = field(default=0.1, metadata=rng(0.0, 1e6))
    success_reward: float = field(default=10.0, metadata=rng(0.0, 1e6))
    observe_site_order: str = field(default="index", metadata=choices("index", "distance"))
    """Order of the sites in the observation: the world's (``"index"``) or nearest first
    per agent (``"distance"``, ties by index)."""

    def payload_shape(self) -> tuple[int, ...] | None:
        """Intents only: no belief payload, so no codec is built."""
        return None


class IntentCoverage(CommWorld):
    """Batched IntentCoverage-v0 world (see the module docstring)."""

    env_id = "IntentCoverage-v0"
    config_cls = IntentCoverageConfig
    config: IntentCoverageConfig
    belief_kind = "none"

    def _allocate(self) -> None:
        super()._allocate()
        b, n, dev = self.num_envs, self.num_agents, self.device
        self.sites = torch.zeros(b, n, 2, device=dev)
        # Candidate sites: centres of a lattice of ceil(sqrt(2N))^2 blocks; each world takes a
        # random subset and jitters inside the block, so sites are spread without rejection.
        side = 1
        while side * side < 2 * n:
            side += 1
        self._lattice = side
        self._block = self.grid / side
        self._locate_sites()

    def _reset_scenario(self, mask: torch.Tensor) -> None:
        b, n, g, dev = self.num_envs, self.num_agents, self.grid, self.device
        side, block = self._lattice, self._block
        pos = torch.rand(b, n, 2, generator=self.generator, device=dev) * g
        pick = torch.rand(b, side * side, generator=self.generator, device=dev).topk(n, 1).indices
        corner = torch.stack([pick // side, pick % side], -1).float() * block
        margin = min(1.0, block / 4)
        jitter = torch.rand(b, n, 2, generator=self.generator, device=dev)
        sites = corner + margin + jitter * (block - 2 * margin)
        m = mask.view(-1, 1, 1)
        self.pos = torch.where(m, pos.clamp(0.0, g - 1e-4), self.pos)
        self.sites = torch.where(m, sites, self.sites)
        self._locate_sites()

    def _locate_sites(self) -> None:
        """Agent-site distances ``[B, N, S]`` and the agents within ``site_radius`` of each
        site long ``[B, S]`` of the current positions and sites: set where those change
        (allocation, reset, the move of a step), read by the reward, success, observation
        and state."""
        self._site_dist = torch.linalg.vector_norm(
            self.pos.unsqueeze(2) - self.sites.unsqueeze(1), dim=-1
        )
        self._occupied = (self._site_dist <= self.config.site_radius).sum(1)

    def _occupancy(self) -> torch.Tensor:
        """long ``[B, S]``: agents within ``site_radius`` of each site."""
        return self._occupied

    def _scenario_step(self) -> torch.Tensor:
        cfg = self.config
        self._locate_sites()  # the agents moved
        dist, occ = self._site_dist, self._occupied  # [B, N, S], [B, S]
        conflicts = (occ - 1).clamp_min(0).sum(1).float()
        cover = dist.min(1).values.mean(1) / self.grid
        success = self._success().float()
        return -cover - cfg.conflict_penalty * conflicts + cfg.success_reward * success

    def _reward_shares(self, before: torch.Tensor | None, team: torch.Tensor) -> torch.Tensor:
        # A site's distance term goes to its nearest agent; a conflict's penalty is split
        # among the agents on that site; the success bonus equally.
        cfg = self.config
        b, n = self.num_envs, self.num_agents
        dist = self._site_dist  # this step's, from _scenario_step
        near, who = dist.min(1)  # [B, S]
        s = dist.shape[2]
        shares = torch.zeros(b, n, device=self.device)
        shares.scatter_add_(1, who, -near / (s * self.grid))
        on = (dist <= cfg.site_radius).float()  # [B, N, S]
        occ = on.sum(1, keepdim=True)
        excess = (occ - 1).clamp_min(0) / occ.clamp_min(1)
        shares = shares - cfg.conflict_penalty * (on * excess).sum(2)
        return shares + cfg.success_reward * self._success().float().unsqueeze(1) / n

    def _success(self) -> torch.Tensor:
        return (self._occupancy() == 1).all(1)

    def _true_map(self) -> torch.Tensor:
        raise RuntimeError("IntentCoverage has no occupancy map")

    def _scenario_obs_dim(self) -> int:
        return 3 * self.num_agents

    def _scenario_obs(self) -> torch.Tensor:
        b, n = self.num_envs, self.num_agents
        rel = (self.sites.unsqueeze(1) - self.pos.unsqueeze(2)) / self.grid  # [B, N, S, 2]
        occ = (self._occupancy() > 0).float().view(b, 1, n, 1).expand(b, n, n, 1)
        cols = torch.cat([rel, occ * 2 - 1], -1)
        if self.config.observe_site_order == "distance":
            # Stable sort: equal distances keep the world's order, so the layout is a
            # function of the state alone.
            order = torch.argsort(self._site_dist, dim=-1, stable=True)  # [B, N, S]
            cols = cols.gather(2, order.unsqueeze(-1).expand(b, n, n, 3))
        return cols.reshape(b, n, -1)

    def _scenario_state_dim(self) -> int:
        return 3 * self.num_agents

    def _scenario_state(self) -> torch.Tensor:
        b = self.num_envs
        occ = (self._occupancy() > 0).float() * 2 - 1
        return torch.cat([(self.sites / self.grid * 2 - 1).reshape(b, -1), occ], -1)
