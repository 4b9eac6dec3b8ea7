r"""SearchRescue-v0: multi-agent search and rescue through semantic collaboration.

| | |
|---|---|
| Agents | ``agent_0`` ... ``agent_{N-1}`` (default N = 4), cooperative, one team reward |
| Action space | ``Box(-1, 1, (6,), float32)``: velocity (2), intent (2), transmit (1), uplink share (1) |
| Observation space | ``Box(-1, 1, (Do,), float32)``, Do = 111 by default (layout below) |
| Import | ``agentcomm.make("SearchRescue-v0")`` |

## Description
Victims hide at random cells of a ``grid_size x grid_size`` area. The agents start at
scattered points, sense the cells within ``sensing.radius`` with a noisy detector (``pd``,
false alarm ``pfa``), keep log-odds occupancy beliefs and share them over wireless links
under a channel-use budget. An agent within ``rescue_radius`` of a victim rescues it; the
rescue is announced to the team (the victim's beacon), so every belief marks the cell clear.
``clear_reach`` (off by default) also clears each agent's own reach every step: without it
the false alarms sensed there stay, and confident cells are mostly wrong (cells at p >= 0.5
hold a victim 7% of the time, 54% with it: ``experiments/belief_calibration.py``).
What must travel is the search itself: where teammates are, where they looked, what they
detected, where they head. Without messages a team can only split the area by a fixed
convention (agent index to region) and walks far to its regions; a team that splits it by
where its members are, and skips what teammates searched, finds every victim far more often.

## Observation Space
The base world layout (:meth:`agentcomm.envs.world.CommWorld.observation`), an egocentric
``crop_size x crop_size`` crop of the fused belief at full resolution (probabilities scaled to
[-1, 1], outside the area -1) and the fraction of victims rescued (scaled); with
``observe_operating_point`` (off by default) the operating point (5: budget cap, mode one-hot,
cost per channel use; :func:`agentcomm.envs.observe.operating_point`), so Do grows by 5.

## Rewards
Team reward per step, shared by every agent (``team_reward_weight < 1`` mixes in each agent's
own share: rescues split among the agents that reached the victim, its own entropy drop, its
own channel uses):

.. math::

    r_t = R_\text{rescue}\, n^\text{new}_t
          + \lambda_\text{info} \frac1N \sum_i \big(\mathcal H(b^i_{t-1}) - \mathcal H(b^i_t)\big)
          - c \sum_i k^i_t

with :math:`n^\text{new}_t` victims rescued this step, :math:`\mathcal H` the belief entropy
(bits), :math:`k^i_t` agent :math:`i`'s channel uses, :math:`c` = ``comm.cost_per_channel_use``.

## Starting State
``start="scattered"`` (default): each agent at its own uniformly drawn point, independently
of its teammates (nobody knows where the others are until they say so). ``start="base"``: all
at ``base`` (default: the centre), jittered by up to half a cell. Victims at distinct random
cells, none within ``rescue_radius`` (plus half a cell) of an agent's start (of the base);
beliefs at the prior :math:`\ell_0 = \log\frac{p_0}{1-p_0}`, :math:`p_0 = V / (H W)`.

| Default | Value |
|---|---|
| ``max_steps`` | 18 |
| ``num_victims`` | 3 |
| ``rescue_radius`` | 1.0 cell |
| grid, agents, sensing | 16 x 16 cells, 4 agents, radius 2, ``pd`` 0.9, ``pfa`` 0.05 |

## Episode End
Terminated when every victim is rescued (success); truncated after ``max_steps``.

## Arguments
:class:`SearchRescueConfig` fields (and every :class:`~agentcomm.envs.config.WorldConfig` field).

## Version History
* v0: initial release. Agents start scattered and episodes last 18 steps by default;
  ``start="base", max_steps=30`` gives the earlier start and length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from agentcomm.beliefs.grid import _LN2, _constant, _take, _window_cells, cell_centres, cell_index
from agentcomm.config import choices, rng

from ..config import WorldConfig
from ..world import CommWorld, _blocked_softplus, _put_where, _with_scratch

__all__ = ["SearchRescue", "SearchRescueConfig"]


@dataclass
class SearchRescueConfig(WorldConfig):
    max_steps: int = field(default=18, metadata=rng(1, 100_000))
    """Episode length: about the time to sweep the area once (16 x 16 cells at four agents'
    fresh 2 x 2 swaths per step: 16 steps), so a team must split it well from its starts."""
    num_victims: int = field(default=3, metadata=rng(1, 1024))
    rescue_radius: float = field(default=1.0, metadata=rng(0.0, 512.0, low_inclusive=False))
    """Distance in cells within which an agent rescues a victim."""
    rescue_reward: float = field(default=10.0, metadata=rng(0.0, 1e6))
    info_gain_weight: float = field(default=0.05, metadata=rng(0.0, 1e6))
    """Reward per bit of mean belief-entropy reduction."""
    start: str = field(default="scattered", metadata=choices("scattered", "base"))
    """``scattered``: each agent at its own uniformly drawn point (teammates learn it only from
    messages); ``base``: all at ``base`` (the earlier start: each other's start is known)."""
    base: tuple[float, float] | None = None
    """Start position of every agent in cells with ``start="base"``; ``None``: the area's
    centre. Only allowed with ``start="base"``."""
    clear_reach: bool = False
    """Each agent marks the cells within ``rescue_radius`` of it empty after every step (a victim
    there would have been rescued); off keeps the false alarms it sensed there (module doc)."""
    crop_size: int = field(default=5, metadata=rng(1, 63))
    """Side of the egocentric full-resolution belief crop in the observation (odd)."""

    def validate(self, prefix: str = "") -> None:
        super().validate(prefix)
        if self.comm.fusion == "ci":
            raise ValueError(
                f"{prefix}comm.fusion='ci' is for Gaussian tracks; grid beliefs allow "
                "['average', 'latest', 'max', 'sum']"
            )
        if self.crop_size % 2 == 0:
            raise ValueError(f"{prefix}crop_size={self.crop_size} must be odd")
        if self.num_victims >= self.grid_size**2 // 2:
            raise ValueError(
                f"{prefix}num_victims={self.num_victims} must be below half the cells "
                f"({self.grid_size**2 // 2})"
            )
        if self.base is None:
            return
        if self.start != "base":
            raise ValueError(
                f"{prefix}base={self.base!r} is only used with {prefix}start='base' "
                f"(got {prefix}start={self.start!r}); allowed with 'scattered': None"
            )
        if len(self.base) != 2 or not all(0.0 <= float(c) < self.grid_size for c in self.base):
            raise ValueError(
                f"{prefix}base={self.base!r} must be two coordinates in [0, {self.grid_size})"
            )


class SearchRescue(CommWorld):
    """Batched SearchRescue-v0 world (see the module docstring)."""

    env_id = "SearchRescue-v0"
    config_cls = SearchRescueConfig
    config: SearchRescueConfig

    def _prior_logodds(self) -> float:
        p0 = self.config.num_victims / self.grid**2
        return math.log(p0 / (1.0 - p0))

    def _allocate(self) -> None:
        super()._allocate()
        b, g, dev, cfg = self.num_envs, self.grid, self.device, self.config
        self.victim_cell = torch.zeros(b, cfg.num_victims, dtype=torch.long, device=dev)
        self.victim_pos = torch.zeros(b, cfg.num_victims, 2, device=dev)
        self.rescued = torch.zeros(b, cfg.num_victims, dtype=torch.bool, device=dev)
        # Reset constants: base, cell centres, cells near the base, window of a start's near cells
        self._base = torch.tensor(cfg.base if cfg.base is not None else (g / 2, g / 2), device=dev)
        self._centres = cell_centres(g, dev)
        near = cfg.rescue_radius + 0.5
        self._near_base = (self._centres - self._base).norm(dim=-1) <= near
        # The disk window (grid.window_offsets) of every cell whose centre can lie within
        # ``near`` of a point of the agent's cell: 13 cells instead of the 25 of the square
        # of reach ceil(near) at the defaults. Its radius has a margin far above float32
        # rounding, so a cell it leaves out is never within ``near`` of the agent even as the
        # distance is computed: the same cells pass as over the whole grid. A reach beyond
        # the grid keeps the square window capped at the grid.
        disk = near * (1.0 + 1e-3)
        fits = math.floor(disk + 0.5) <= g - 1
        self._reach_window = (disk, "disk") if fits else (min(math.ceil(near), g - 1), "square")

    # ------------------------------------------------------------------ reset
    def _reset_scenario(self, mask: torch.Tensor) -> None:
        cfg, g, dev, gen = self.config, self.grid, self.device, self.generator
        b, n, v = self.num_envs, self.num_agents, cfg.num_victims
        if cfg.start == "base":
            jitter = torch.rand(b, n, 2, generator=gen, device=dev) - 0.5
            pos, near = (self._base + jitter).clamp(0.0, g - 1e-4), self._near_base.unsqueeze(0)
        else:
            pos = (torch.rand(b, n, 2, generator=gen, device=dev) * g).clamp(0.0, g - 1e-4)
            near = self._near_cells(pos)
        # Distinct victim cells away from the starts: top-V of random keys, excluded cells last.
        keys = torch.rand(b, g * g, generator=gen, device=dev).masked_fill(near, -1.0)
        m1 = mask.view(-1, 1)
        self.pos = torch.where(m1.unsqueeze(-1), pos, self.pos)
        self.victim_cell = torch.where(m1, keys.topk(v, dim=1).indices, self.victim_cell)
        self.victim_pos = self._centres[self.victim_cell]
        self.rescued = self.rescued & ~m1

    def _reach(self, pos: torch.Tensor, radius: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Window cells ``[B, N, K]`` around ``pos``, and where their centre is on the grid
        within ``radius`` (at most ``rescue_radius + 0.5``)."""
        reach, shape = self._reach_window
        cells, inside = _window_cells(cell_index(pos, self.grid), reach, self.grid, shape)
        # [B, N, K, 2] window cell centre - position (off the grid: any value, not inside)
        centre = self._centres.index_select(0, cells.view(-1)).view(*cells.shape, 2)
        return cells, ((centre - pos.unsqueeze(-2)).norm(dim=-1) <= radius) & inside

    def _near_cells(self, pos: torch.Tensor) -> torch.Tensor:
        """bool ``[B, H * W]``: cells with centre within ``rescue_radius + 0.5`` of an agent at
        ``pos``, from the windows around the agents (the distances of the whole grid's)."""
        b, g = self.num_envs, self.grid
        cells, near = self._reach(pos, self.config.rescue_radius + 0.5)
        out = torch.zeros(b, g * g + 1, dtype=torch.bool, device=self.device)  # + a sink cell
        return out.scatter_(1, torch.where(near, cells, g * g).view(b, -1), True)[:, :-1]

    def _after_comm(self) -> None:
        if self.config.clear_reach:  # no rescue this step: nothing within reach (config doc)
            self.beliefs.clear_own(*self._reach(self.pos, self.config.rescue_radius))

    # ------------------------------------------------------------------ dynamics
    def _true_map(self) -> torch.Tensor:
        b, g = self.num_envs, self.grid
        occ = torch.zeros(b, g * g, dtype=torch.bool, device=self.device)
        return occ.scatter_(1, self.victim_cell, ~self.rescued).view(b, g, g)

    def _scenario_step(self) -> torch.Tensor:
        cfg = self.config
        dist = (self.pos.unsqueeze(2) - self.victim_pos.unsqueeze(1)).norm(dim=-1)  # [B,N,V]
        reach = dist <= cfg.rescue_radius
        new = reach.any(1) & ~self.rescued
        self._reached = (reach, new)  # [B, N, V] and [B, V], for the agents' reward shares
        self.rescued = self.rescued | new
        # A rescue is announced to the whole team (the victim's beacon): every belief, and the
        # fusion centre's copies, mark the cell clear, so no stale evidence pulls agents back.
        self.beliefs.clear_where(self.victim_cell, new)
        return new.sum(1) * cfg.rescue_reward  # long * float: float32, the same bits

    def _belief_reward(self, before: torch.Tensor | None) -> torch.Tensor:
        w = self.config.info_gain_weight
        if w == 0:
            return torch.zeros(self.num_envs, device=self.device)
        # [B, N], each agent's own information term (kept for the reward shares)
        self._entropy_drop = self.beliefs.entropy(before) - self.beliefs.entropy(self.belief)
        return w * self._entropy_drop.mean(1)

    def _reward_shares(self, before: torch.Tensor | None, team: torch.Tensor) -> torch.Tensor:
        # Rescues split among the agents that reached the victim; information to its agent.
        cfg, (reach, new) = self.config, self._reached
        rescuers = (reach & new.unsqueeze(1)).float()
        split = rescuers / rescuers.sum(1, keepdim=True).clamp_min(1.0)
        shares, w = cfg.rescue_reward * split.sum(2), cfg.info_gain_weight
        return shares if w == 0 else shares + w * self._entropy_drop / self.num_agents

    def _belief_error(self, truth: torch.Tensor | None = None) -> torch.Tensor:
        """``kl_to_truth(belief, truth, "mean")`` bit for bit from the entropy's softplus: the KL
        of an empty cell is softplus(l) / ln 2, of a victim's softplus(-l) / ln 2 (taken anew)."""
        softplus = self.beliefs.summary(self.belief, "softplus")["softplus"]
        kl = torch.div(softplus, _LN2, out=_with_scratch(tuple(softplus.shape), self.device))
        # [B, N, V] flat cells of the victims
        pos = self.beliefs.row_starts(self.num_agents) + self.victim_cell.unsqueeze(1)
        occupied = _blocked_softplus(-_take(self.belief, pos)) / _LN2
        _put_where(kl, pos, ~self.rescued.unsqueeze(1).expand(pos.shape), occupied)
        return kl.mean(dim=(-2, -1))

    def _success(self) -> torch.Tensor:
        return self.rescued.all(1)

    # ------------------------------------------------------------------ observation
    def _scenario_obs_dim(self) -> int:
        return self.config.crop_size**2 + 1

    def _scenario_obs(self) -> torch.Tensor:
        b, n, g = self.num_envs, self.num_agents, self.grid
        flat, inside = _window_cells(cell_index(self.pos, g), self.config.crop_size // 2, g)
        prob = torch.sigmoid(self.belief.view(b, n, g * g).gather(2, flat))
        crop = torch.where(inside, prob * 2 - 1, _constant(-1.0, prob.dtype, self.device))
        frac = self.rescued.float().mean(1).view(b, 1, 1).expand(b, n, 1)
        return torch.cat([crop, frac * 2 - 1], dim=-1)

    def _scenario_state_dim(self) -> int:
        return 3 * self.config.num_victims

    def _scenario_state(self) -> torch.Tensor:
        victims = (self.victim_pos / self.grid * 2 - 1).reshape(self.num_envs, -1)
        return torch.cat([victims, self.rescued.float() * 2 - 1], dim=-1)
