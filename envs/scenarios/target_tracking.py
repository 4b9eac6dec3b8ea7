r"""TargetTracking-v0: cooperative tracking of moving targets with Gaussian beliefs.

| | |
|---|---|
| Agents | ``agent_0`` ... ``agent_{N-1}`` (default N = 4), cooperative, one team reward |
| Action space | ``Box(-1, 1, (6,), float32)``: velocity (2), intent (2), transmit (1), uplink share (1) |
| Observation space | ``Box(-1, 1, (Do,), float32)``, Do = 31 by default (layout below) |
| Import | ``agentcomm.make("TargetTracking-v0")`` |

## Description
``T`` targets move with nearly constant velocity (white acceleration noise,
speed capped at ``target_max_speed``, reflected at the borders). An agent
detects a target inside ``sensing.radius`` with probability ``sensing.pd``
and measures its position with Gaussian noise of std ``meas_std`` cells;
target identities are known (no data association). Every agent runs a
Kalman filter per target (state ``[row, col, v_row, v_col]``) and shares it:
each target's message holds the mean and the log-variances of the diagonal,
normalized to ``[-1, 1]`` (8 numbers per target). A receiver rebuilds the
covariance as ``2 diag(P)``, which bounds ``P`` from above because the
position-velocity blocks are 2x2 (:math:`P \preceq 2\,\mathrm{diag}(P)`), so the
transmitted track stays consistent. Received tracks are fused by covariance
intersection (``comm.fusion="ci"``, the default), consensus averaging
(``"average"``), or the naive information sum (``"sum"``, overconfident).

## Observation Space
The base world layout without a belief map, then per target: the fused
estimate's position relative to the agent (2, /grid_size), its velocity (2,
/target_max_speed) and its position standard deviation (1, log-scaled).

With ``observe_operating_point`` (off by default) the world's operating point
follows (5: budget cap, coordination mode one-hot, cost per channel use;
:func:`agentcomm.envs.observe.operating_point`), so Do grows by 5.

## Rewards
Team reward per step, shared by every agent (``team_reward_weight < 1`` mixes in
each agent's own share: the error of its own fused tracks, its own channel uses):

.. math::

    r_t = -\frac{1}{N T G}\sum_{i, \tau} \lVert \hat p^{\,i}_\tau - p_\tau \rVert
          - c \sum_i k^i_t

## Starting State
Agents and targets uniform in the area; target speeds uniform up to the cap;
tracks at the area's centre with a covariance covering the whole area.

## Episode End
Truncated after ``max_steps`` (no early termination). ``success`` becomes True
once the team-mean position error has been below ``error_threshold`` cells
for at least ``success_fraction`` of ``max_steps`` steps.

## Arguments
:class:`TargetTrackingConfig` fields (and every :class:`~agentcomm.envs.config.WorldConfig` field).

## Version History
* v0: initial release.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from agentcomm.beliefs.tracks import GaussianTrackStore
from agentcomm.config import rng

from ..config import CommConfig, SensingConfig, WorldConfig
from ..world import CommWorld

__all__ = ["TargetTracking", "TargetTrackingConfig"]


def _tracking_comm() -> CommConfig:
    return CommConfig(fusion="ci", budget=64)


@dataclass
class TargetTrackingConfig(WorldConfig):
    max_steps: int = field(default=60, metadata=rng(1, 100_000))
    num_targets: int = field(default=2, metadata=rng(1, 64))
    target_max_speed: float = field(default=0.4, metadata=rng(1e-3, 256.0))
    """Cells per step (observations divide by it, so it is kept away from 0; 256 crosses
    the largest area in one step)."""
    accel_std: float = field(default=0.05, metadata=rng(1e-4, 256.0))
    """Std of the targets' random acceleration, cells per step squared (its square is the
    filters' process noise, which must stay a normal float32)."""
    meas_std: float = field(default=0.5, metadata=rng(1e-3, 256.0))
    """Position measurement noise std, cells."""
    error_threshold: float = field(default=1.5, metadata=rng(0.0, 1e6, low_inclusive=False))
    """Team-mean position error (cells) below which a step counts as tracked."""
    success_fraction: float = field(default=0.6, metadata=rng(0.0, 1.0, low_inclusive=False))
    """Fraction of ``max_steps`` that must be tracked for success."""
    compile_fusion: bool = False
    """Run the track fusion (covariance intersection, ``comm.fusion="ci"``) under
    ``torch.compile``: about 7x faster at one world, slower at thousands (see
    ``docs/benchmarks.md``). The first step of each message shape compiles (about 40 s on
    CPU, a few seconds once inductor's on-disk cache holds it); where compiling fails it
    warns and runs eagerly."""
    sensing: SensingConfig = field(default_factory=lambda: SensingConfig(radius=3.0))
    comm: CommConfig = field(default_factory=_tracking_comm)

    def payload_shape(self) -> tuple[int, ...] | None:
        """One row of 8 normalized track values per target (:class:`TargetTracking`)."""
        return (self.num_targets, 8)

    def validate(self, prefix: str = "") -> None:
        super().validate(prefix)
        if self.comm.fusion in ("max", "latest"):
            raise ValueError(
                f"{prefix}comm.fusion={self.comm.fusion!r} is for grids; Gaussian tracks allow "
                "['average', 'ci', 'sum']"
            )


class TargetTracking(CommWorld):
    """Batched TargetTracking-v0 world (see the module docstring)."""

    env_id = "TargetTracking-v0"
    config_cls = TargetTrackingConfig
    config: TargetTrackingConfig
    belief_kind = "vector"
    terminates_on_success = False

    def _make_beliefs(self) -> GaussianTrackStore:
        cfg = self.config
        return GaussianTrackStore(
            self.num_envs,
            self.num_agents,
            cfg.num_targets,
            self.device,
            float(self.grid),
            cfg.target_max_speed,
            cfg.accel_std,
            cfg.meas_std,
            cfg.comm.fusion,
            cfg.compile_fusion,
        )

    track_mean = property(lambda self: self.beliefs.track_mean, doc="``[B, N, T, 4]`` tracks.")
    track_cov = property(lambda self: self.beliefs.track_cov, doc="``[B, N, T, 4, 4]``.")

    def _allocate(self) -> None:
        super()._allocate()
        b, t, dev = self.num_envs, self.config.num_targets, self.device
        self.target = torch.zeros(b, t, 4, device=dev)
        self.tracked_steps = torch.zeros(b, dtype=torch.long, device=dev)

    def _reset_scenario(self, mask: torch.Tensor) -> None:
        cfg, g, dev, gen = self.config, float(self.grid), self.device, self.generator
        b, n, t = self.num_envs, self.num_agents, cfg.num_targets
        pos = torch.rand(b, n, 2, generator=gen, device=dev) * g
        tpos = torch.rand(b, t, 2, generator=gen, device=dev) * g
        angle = torch.rand(b, t, generator=gen, device=dev) * 2 * math.pi
        speed = torch.rand(b, t, generator=gen, device=dev) * cfg.target_max_speed
        tvel = torch.stack([angle.cos(), angle.sin()], -1) * speed.unsqueeze(-1)
        m2 = mask.view(-1, 1, 1)
        self.pos = torch.where(m2, pos.clamp(0.0, g - 1e-4), self.pos)
        self.target = torch.where(m2, torch.cat([tpos, tvel], -1), self.target)
        self.tracked_steps = torch.where(mask, 0, self.tracked_steps)

    def _scenario_step(self) -> torch.Tensor:
        cfg, g, gen, dev = self.config, float(self.grid), self.generator, self.device
        b, n, t = self.num_envs, self.num_agents, cfg.num_targets
        # Targets: constant velocity + white acceleration, speed cap, reflection at borders.
        acc = torch.randn(b, t, 2, generator=gen, device=dev) * cfg.accel_std
        vel = self.target[..., 2:] + acc
        speed = torch.linalg.vector_norm(vel, dim=-1, keepdim=True)
        vel = vel * (cfg.target_max_speed / speed.clamp_min(cfg.target_max_speed))
        p = self.target[..., :2] + vel
        low, high = p < 0, p > g
        p = torch.where(low, -p, torch.where(high, 2 * g - p, p))
        vel = torch.where(low | high, -vel, vel)
        self.target = torch.cat([p.clamp(0.0, g), vel], -1)
        # Sensing: each agent detects targets in range and measures their positions.
        dist = torch.linalg.vector_norm(self.pos.unsqueeze(2) - p.unsqueeze(1), dim=-1)  # [B, N, T]
        detect = (dist <= cfg.sensing.radius) & (
            torch.rand(b, n, t, generator=gen, device=dev) < cfg.sensing.pd
        )
        z = p.unsqueeze(1) + torch.randn(b, n, t, 2, generator=gen, device=dev) * cfg.meas_std
        self.beliefs.filter(z, detect)
        return torch.zeros(b, device=dev)  # the error term is added after fusion

    def _after_comm(self) -> None:
        tracked = self._errors()[1] < self.config.error_threshold
        self.tracked_steps = self.tracked_steps + tracked.long()

    def _errors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The fused tracks' errors ``[B, N, T]`` (cells) and their mean per world ``[B]``.

        A step reads them several times (the tracked count, the reward, the info), so they
        are kept until the tracks or the targets change: the cache holds the very tensors
        it was computed from and their version counters, so reassigning either (a filter
        step, a fusion, a reset) or writing into it in place invalidates it."""
        mean, target = self.beliefs.track_mean, self.target
        key = getattr(self, "_errors_key", None)
        if (
            key is None
            or key[0] is not mean
            or key[1] is not target
            or key[2] != (mean._version, target._version)
        ):
            errors = self.beliefs.errors(target[..., :2])
            self._errors_value = errors, errors.mean(dim=(1, 2))
            self._errors_key = (mean, target, (mean._version, target._version))
        return self._errors_value

    def _belief_error(self, truth: torch.Tensor | None = None) -> torch.Tensor:
        return self._errors()[0].mean(-1)

    def _belief_reward(self, before: torch.Tensor | None) -> torch.Tensor:
        # The tracking-error term of the reward (module docstring).
        return -self._errors()[1] / self.grid

    def _reward_shares(self, before: torch.Tensor | None, team: torch.Tensor) -> torch.Tensor:
        # Each agent is credited with the error of its own fused tracks.
        return -self._errors()[0].mean(2) / (self.num_agents * self.grid)

    def _success(self) -> torch.Tensor:
        need = math.ceil(self.config.success_fraction * self.config.max_steps)
        return self.tracked_steps >= need

    def _scenario_obs_dim(self) -> int:
        return 5 * self.config.num_targets

    def _scenario_obs(self) -> torch.Tensor:
        b, n, g = self.num_envs, self.num_agents, float(self.grid)
        mean, cov = self.beliefs.track_mean, self.beliefs.track_cov
        rel = (mean[..., :2] - self.pos.unsqueeze(2)) / g
        vel = mean[..., 2:] / self.config.target_max_speed
        var = torch.diagonal(cov, dim1=-2, dim2=-1)[..., :2].mean(-1)
        std = (0.5 * var.clamp_min(1e-6).log() / math.log(g)).unsqueeze(-1)
        return torch.cat([rel, vel, std], -1).reshape(b, n, -1)

    def _scenario_state_dim(self) -> int:
        return 4 * self.config.num_targets

    def _scenario_state(self) -> torch.Tensor:
        b, g, v = self.num_envs, float(self.grid), self.config.target_max_speed
        scaled = torch.cat([self.target[..., :2] / g * 2 - 1, self.target[..., 2:] / v], -1)
        return scaled.reshape(b, -1)
