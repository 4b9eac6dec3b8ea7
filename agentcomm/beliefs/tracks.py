r"""Gaussian track beliefs of a batched world: Kalman filters per agent and target, shared.

Shape legend: ``B`` worlds, ``N`` agents, ``T`` targets, ``M`` messages; a track's state is
``[row, col, v_row, v_col]`` (cells, cells per step).

Every agent runs a constant-velocity Kalman filter per target
(:mod:`agentcomm.beliefs.gaussian`) and shares it: each target's message holds the mean
and the log-variances of the diagonal, normalized to ``[-1, 1]`` (8 numbers per target,
payload ``[T, 8]``). A receiver rebuilds the covariance as ``2 diag(P)``, which bounds
``P`` from above because the position-velocity blocks are 2x2
(:math:`P \preceq 2\,\mathrm{diag}(P)`), so the transmitted track stays consistent.
Received tracks are fused by covariance intersection (``"ci"``,
:func:`~agentcomm.beliefs.fusion.covariance_intersection`), consensus averaging of the
information (``"average"``), or the naive information sum (``"sum"``, overconfident).
The fusion centre keeps its own filter, fuses the uplinked tracks into it and sends it down.
"""

from __future__ import annotations

import functools

import torch

from agentcomm._compile import CompiledOrEager
from agentcomm.beliefs.fusion import covariance_intersection
from agentcomm.beliefs.gaussian import (
    GaussianBelief,
    constant_velocity_model,
    kalman_predict,
    kalman_update,
    position_measurement_model,
)
from agentcomm.beliefs.store import Deliveries

__all__ = ["GaussianTrackStore"]

_LOGVAR_LO, _LOGVAR_HI = -4.0, 8.0  # log-variance range carried by a message (natural log)
# The state's independent axes: rows (row, v_row) and columns (col, v_col). The motion and
# measurement models, the prior and a received track's diagonal covariance never couple them.
_AXES = ((0, 2), (1, 3))


class GaussianTrackStore:
    """Tracks of ``B`` worlds, ``N`` agents and ``T`` targets (module docstring), behind the
    :class:`~agentcomm.beliefs.store.BeliefStore` protocol.

    State: ``track_mean [B, N, T, 4]``, ``track_cov [B, N, T, 4, 4]`` (each agent's fused
    tracks), ``fc_mean [B, T, 4]``, ``fc_cov [B, T, 4, 4]`` (the fusion centre's).

    Args:
        num_envs, num_agents, num_targets: ``B``, ``N``, ``T``.
        device: where the tracks live.
        area: side of the area in cells (positions normalize by it; the prior covers it).
        max_speed: the targets' speed cap, cells per step.
        accel_std: std of the white acceleration, cells per step squared.
        meas_std: std of a position measurement, cells.
        fusion: ``"ci"``, ``"average"`` or ``"sum"``.
        compile_fusion: run covariance intersection under :func:`torch.compile`
            (:class:`~agentcomm._compile.CompiledOrEager`).
    """

    prior = 0.0
    payload_range = (-1.0, 1.0)
    needs_weights = True

    def __init__(
        self,
        num_envs: int,
        num_agents: int,
        num_targets: int,
        device: torch.device,
        area: float,
        max_speed: float,
        accel_std: float,
        meas_std: float,
        fusion: str,
        compile_fusion: bool = False,
    ) -> None:
        b, n, t, dev = num_envs, num_agents, num_targets, device
        self.num_envs, self.num_agents, self.num_targets, self.device = b, n, t, dev
        self.fusion = fusion
        ci = functools.partial(
            covariance_intersection, criterion="trace", iterations=10, blocks=_AXES
        )
        self._ci = CompiledOrEager(ci, compile_fusion, "track fusion")
        self.payload_shape = (t, 8)
        self.track_mean = torch.zeros(b, n, t, 4, device=dev)
        self.track_cov = torch.zeros(b, n, t, 4, 4, device=dev)
        self.fc_mean = torch.zeros(b, t, 4, device=dev)
        self.fc_cov = torch.zeros(b, t, 4, 4, device=dev)
        # The filters' model: unit time step; accel_std^2 is the white-acceleration PSD.
        self._F, self._Q = constant_velocity_model(1.0, accel_std**2, device=dev)
        self._H, self._R = position_measurement_model(meas_std, device=dev)
        g, v = float(area), max_speed
        self._prior_cov = torch.diag(
            torch.tensor([g * g / 12, g * g / 12, v * v, v * v], device=dev)
        )
        self._prior_mean = torch.tensor([g / 2, g / 2, 0.0, 0.0], device=dev)
        self._scale = torch.tensor([g, g, 2 * v, 2 * v], device=dev)
        self._offset = torch.tensor([0.0, 0.0, -v, -v], device=dev)
        self._missing_cov = torch.eye(4, device=dev) * 1e6  # zero information, in effect
        # The codec's scalars as 0-dim tensors: an op given a Python number wraps it into a
        # new tensor per call; these compute the same (rounded to float32 either way).
        lo, span = _LOGVAR_LO, _LOGVAR_HI - _LOGVAR_LO
        self._one, self._two, self._lo, self._span = (
            torch.tensor(x, device=dev) for x in (1.0, 2.0, lo, span)
        )

    # ------------------------------------------------------------------ filter
    def reset(self, mask: torch.Tensor) -> None:
        """Tracks at the area's centre, covering the whole area, where ``mask [B]``."""
        m2, m3 = mask.view(-1, 1, 1), mask.view(-1, 1, 1, 1)
        self.track_mean = torch.where(m3, self._prior_mean, self.track_mean)
        self.track_cov = torch.where(mask.view(-1, 1, 1, 1, 1), self._prior_cov, self.track_cov)
        self.fc_mean = torch.where(m2, self._prior_mean, self.fc_mean)
        self.fc_cov = torch.where(m3, self._prior_cov, self.fc_cov)

    def filter(self, z: torch.Tensor, detect: torch.Tensor) -> None:
        """One Kalman step: every filter predicts; the agents' update with their position
        measurements ``z [B, N, T, 2]`` where ``detect [B, N, T]``."""
        belief = kalman_predict(GaussianBelief(self.track_mean, self.track_cov), self._F, self._Q)
        belief = kalman_update(belief, z, self._H, self._R, valid_mask=detect)
        self.track_mean, self.track_cov = belief.mean, belief.cov
        fc = kalman_predict(GaussianBelief(self.fc_mean, self.fc_cov), self._F, self._Q)
        self.fc_mean, self.fc_cov = fc.mean, fc.cov

    def errors(self, target_pos: torch.Tensor) -> torch.Tensor:
        """``[B, N, T]`` distance (cells) of each fused track from ``target_pos [B, T, 2]``."""
        return torch.linalg.vector_norm(self.track_mean[..., :2] - target_pos[:, None], dim=-1)

    # ------------------------------------------------------------------ messages
    def encode(self, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
        """``[..., T, 4]``, ``[..., T, 4, 4]`` -> the ``[..., T, 8]`` payload in [-1, 1]."""
        one, two = self._one, self._two
        m = ((mean - self._offset) / self._scale * two - one).clamp(-1, 1)
        logvar = torch.diagonal(cov, dim1=-2, dim2=-1).clamp_min(1e-12).log()
        lv = ((logvar - self._lo) / self._span * two - one).clamp(-1, 1)
        return torch.cat([m, lv], -1)

    def decode(self, payload: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The inverse of :meth:`encode`, with the covariance bound ``2 diag(P)``."""
        one, two = self._one, self._two
        mean = (payload[..., :4].clamp(-1, 1) + one) / two * self._scale + self._offset
        logvar = (payload[..., 4:].clamp(-1, 1) + one) / two * self._span + self._lo
        # 2 diag(P) >= P for the 2x2 position-velocity blocks: a consistent upper bound.
        return mean, torch.diag_embed(two * logvar.exp())

    def peer_payload(self, env: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        return self.encode(self.track_mean[env, src], self.track_cov[env, src])

    uplink_payload = peer_payload

    def centre_payload(self) -> torch.Tensor:
        return self.encode(self.fc_mean, self.fc_cov)

    def codec_goal(self, goal: torch.Tensor) -> None:
        """Tracks have no cells for an intent-aware codec to favour."""
        return None

    # ------------------------------------------------------------------ fusion
    @property
    def fusion_compiled(self) -> bool:
        """Whether track fusion runs compiled (``compile_fusion``, after the first fusion)."""
        return self._ci.compiled

    def _fuse(
        self,
        own_mean: torch.Tensor,
        own_cov: torch.Tensor,
        mean: torch.Tensor,
        cov: torch.Tensor,
        ok: torch.Tensor,
        weights: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fuse own tracks ``[R, T, 4]`` with up to ``S`` received ``[R, S, T, 4]`` (``ok [R, S]``).

        Missing messages get an uninformative covariance (zero information), so no rule
        counts them and one batched call covers every receiver.
        """
        means = torch.cat([own_mean.unsqueeze(1), mean], 1)  # [R, 1+S, T, 4]
        covs = torch.cat([own_cov.unsqueeze(1), cov], 1)
        present = torch.cat([torch.ones_like(ok[:, :1]), ok], 1)  # [R, 1+S]
        covs = torch.where(present[..., None, None, None], covs, self._missing_cov)
        if self.fusion == "ci":
            fused, _ = self._ci(means.transpose(1, 2), covs.transpose(1, 2))
            return fused.mean, fused.cov
        info = torch.linalg.inv(covs)
        w = present.float() if self.fusion == "sum" else weights * present.float()
        if self.fusion == "average":
            w = w / w.sum(1, keepdim=True)
        w = w[..., None, None, None]
        p_inv = (w * info).sum(1)
        cov_out = torch.linalg.inv(p_inv)
        mean_out = (cov_out @ (w * info @ means.unsqueeze(-1)).sum(1)).squeeze(-1)
        return mean_out, 0.5 * (cov_out + cov_out.transpose(-1, -2))

    def receive_peer(self, ex: Deliveries, weights: torch.Tensor | None) -> None:
        b, n, t = self.num_envs, self.num_agents, self.num_targets
        mean, cov = self.decode(ex.estimate)
        rmean = torch.zeros(b, n, n, t, 4, device=self.device)
        rcov = torch.zeros(b, n, n, t, 4, 4, device=self.device)
        ok = torch.zeros(b, n, n, dtype=torch.bool, device=self.device)
        rmean[ex.env, ex.dst, ex.src] = mean
        rcov[ex.env, ex.dst, ex.src] = cov
        ok[ex.env, ex.dst, ex.src] = ex.payload_ok
        w_self = torch.diagonal(weights, dim1=1, dim2=2).unsqueeze(-1)
        w = torch.cat([w_self, weights], -1).reshape(b * n, n + 1)
        m, c = self._fuse(
            self.track_mean.reshape(b * n, t, 4),
            self.track_cov.reshape(b * n, t, 4, 4),
            rmean.reshape(b * n, n, t, 4),
            rcov.reshape(b * n, n, t, 4, 4),
            ok.reshape(b * n, n),
            w,
        )
        self.track_mean, self.track_cov = m.view(b, n, t, 4), c.view(b, n, t, 4, 4)

    def receive_uplink(self, ex: Deliveries) -> None:
        b, n, t = self.num_envs, self.num_agents, self.num_targets
        mean, cov = self.decode(ex.estimate)
        rmean = torch.zeros(b, n, t, 4, device=self.device)
        rcov = torch.zeros(b, n, t, 4, 4, device=self.device)
        ok = torch.zeros(b, n, dtype=torch.bool, device=self.device)
        rmean[ex.env, ex.src] = mean
        rcov[ex.env, ex.src] = cov
        ok[ex.env, ex.src] = ex.payload_ok
        w = torch.ones(b, n + 1, device=self.device)
        self.fc_mean, self.fc_cov = self._fuse(self.fc_mean, self.fc_cov, rmean, rcov, ok, w)

    def receive_downlink(self, ex: Deliveries) -> None:
        mean, cov = self.decode(ex.estimate)
        env, dst = ex.env, ex.dst
        w = torch.ones(env.shape[0], 2, device=self.device)
        m, c = self._fuse(
            self.track_mean[env, dst],
            self.track_cov[env, dst],
            mean.unsqueeze(1),
            cov.unsqueeze(1),
            ex.payload_ok.unsqueeze(1),
            w,
        )
        self.track_mean[env, dst], self.track_cov[env, dst] = m, c

    def refresh(self) -> None:
        """Tracks are fused on arrival: nothing to rebuild."""
