r"""Gaussian beliefs for target tracking: the Kalman filter, batched over any leading shape.

Shape legend: ``...`` any batch shape (e.g. ``[B, N]`` worlds x agents, or ``[B, N, T]`` with
targets), ``d`` state dimension, ``m`` measurement dimension.

The filter (Kalman 1960; notation of Bar-Shalom, Li & Kirubarajan, *Estimation with
Applications to Tracking and Navigation*, 2001, ch. 5):

.. math::

    \hat x^- = F \hat x,\quad P^- = F P F^\top + Q;\qquad
    S = H P^- H^\top + R,\quad K = P^- H^\top S^{-1},

    \hat x^+ = \hat x^- + K (z - H \hat x^-),\quad
    P^+ = (I - K H) P^- (I - K H)^\top + K R K^\top \ \text{(Joseph form)}.

The Joseph form is symmetric and positive semi-definite by construction (a sum of two
congruences), unlike the short form :math:`(I - KH) P^-`, which rounding can push off
symmetry over many steps.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from agentcomm._checks import check_positive, check_tensor

__all__ = [
    "GaussianBelief",
    "constant_velocity_model",
    "kalman_predict",
    "kalman_update",
    "position_measurement_model",
]

_FLOAT_DTYPES = (torch.float32, torch.float64)


@functools.lru_cache(maxsize=16)
def _constants(d: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
    """``0.5`` (0-dim) and the identity ``[d, d]``, made once per dtype and device: the
    filter's hot path then creates no tensor for them per call (the same values)."""
    return torch.tensor(0.5, dtype=dtype, device=device), torch.eye(d, dtype=dtype, device=device)


def _symmetrize(p: torch.Tensor) -> torch.Tensor:
    return _constants(p.shape[-1], p.dtype, p.device)[0] * (p + p.transpose(-1, -2))


@dataclass
class GaussianBelief:
    """A batch of Gaussian beliefs :math:`\\mathcal N(\\text{mean}, \\text{cov})`.

    Attributes:
        mean: float ``[..., d]``.
        cov: float ``[..., d, d]``, symmetric positive (semi-)definite, same dtype as ``mean``.
    """

    mean: torch.Tensor
    cov: torch.Tensor

    def __post_init__(self) -> None:
        check_tensor("mean", self.mean, min_ndim=1, dtypes=_FLOAT_DTYPES)
        d = self.mean.shape[-1]
        check_tensor("cov", self.cov, shape=(*self.mean.shape, d), dtypes=(self.mean.dtype,))

    @property
    def dim(self) -> int:
        """State dimension ``d``."""
        return self.mean.shape[-1]


def _check_matrix(name: str, mat: torch.Tensor, rows: int, cols: int, like: torch.Tensor) -> None:
    check_tensor(name, mat, min_ndim=2, dtypes=(like.dtype,))
    if mat.shape[-2:] != (rows, cols):
        raise ValueError(
            f"{name} has shape {tuple(mat.shape)}; expected [..., {rows}, {cols}] "
            f"(broadcastable batch dimensions)"
        )


def kalman_predict(belief: GaussianBelief, F: torch.Tensor, Q: torch.Tensor) -> GaussianBelief:
    r"""Time update :math:`\hat x^- = F\hat x`, :math:`P^- = F P F^\top + Q`.

    Args:
        belief: :class:`GaussianBelief` with ``mean [..., d]``.
        F: float ``[d, d]`` or ``[..., d, d]`` state transition, same dtype.
        Q: float ``[d, d]`` or ``[..., d, d]`` process-noise covariance.
    Returns:
        the predicted :class:`GaussianBelief`, same shapes (symmetrized covariance).
    """
    d = belief.dim
    _check_matrix("F", F, d, d, belief.mean)
    _check_matrix("Q", Q, d, d, belief.mean)
    mean = (F @ belief.mean.unsqueeze(-1)).squeeze(-1)
    cov = _symmetrize(F @ belief.cov @ F.transpose(-1, -2) + Q)
    return GaussianBelief(mean=mean, cov=cov)


def kalman_update(
    belief: GaussianBelief,
    z: torch.Tensor,
    H: torch.Tensor,
    R: torch.Tensor,
    valid_mask: torch.Tensor | None = None,
) -> GaussianBelief:
    r"""Measurement update with the Joseph-form covariance (module docstring).

    Args:
        belief: the prior :class:`GaussianBelief`, ``mean [..., d]``.
        z: float ``[..., m]`` measurements.
        H: float ``[m, d]`` or ``[..., m, d]`` measurement matrix.
        R: float ``[m, m]`` or ``[..., m, m]`` measurement-noise covariance (positive definite).
        valid_mask: bool ``[...]``; where False (no measurement: out of range, message lost)
            the prior is returned unchanged. ``None`` means every measurement is valid.
    Returns:
        the posterior :class:`GaussianBelief`, same shapes as ``belief``.
    """
    d = belief.dim
    check_tensor("z", z, min_ndim=1, dtypes=(belief.mean.dtype,))
    m = z.shape[-1]
    _check_matrix("H", H, m, d, belief.mean)
    _check_matrix("R", R, m, m, belief.mean)
    ht = H.transpose(-1, -2)
    innovation = z - (H @ belief.mean.unsqueeze(-1)).squeeze(-1)
    s = _symmetrize(H @ belief.cov @ ht + R)
    # K = P H^T S^{-1}; with P and S symmetric, K^T = S^{-1} H P, one batched solve.
    gain = torch.linalg.solve(s, H @ belief.cov).transpose(-1, -2)
    mean = belief.mean + (gain @ innovation.unsqueeze(-1)).squeeze(-1)
    eye = _constants(d, belief.mean.dtype, belief.mean.device)[1]
    a = eye - gain @ H
    cov = _symmetrize(a @ belief.cov @ a.transpose(-1, -2) + gain @ R @ gain.transpose(-1, -2))
    if valid_mask is not None:
        check_tensor("valid_mask", valid_mask, dtypes=(torch.bool,))
        if valid_mask.shape != belief.mean.shape[:-1]:
            raise ValueError(
                f"valid_mask has shape {tuple(valid_mask.shape)}; expected "
                f"{tuple(belief.mean.shape[:-1])} (the belief's batch shape)"
            )
        mean = torch.where(valid_mask.unsqueeze(-1), mean, belief.mean)
        cov = torch.where(valid_mask[..., None, None], cov, belief.cov)
    return GaussianBelief(mean=mean, cov=cov)


def constant_velocity_model(
    dt: float,
    q: float,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Nearly-constant-velocity model in 2-D for the state :math:`[x, y, v_x, v_y]`.

    Continuous white-noise acceleration of power spectral density ``q`` on each axis,
    discretized exactly (Bar-Shalom et al. 2001, sec. 6.2.2):

    .. math::

        F = \begin{bmatrix} I_2 & \Delta t I_2 \\ 0 & I_2 \end{bmatrix},\qquad
        Q = q \begin{bmatrix} \Delta t^3/3\, I_2 & \Delta t^2/2\, I_2 \\
        \Delta t^2/2\, I_2 & \Delta t\, I_2 \end{bmatrix}.

    Args:
        dt: time step (s), > 0.
        q: acceleration noise power spectral density (m^2/s^3), > 0.
    Returns:
        ``(F, Q)``, each float ``[4, 4]``.
    """
    check_positive("dt", dt)
    check_positive("q", q)
    eye = torch.eye(2, dtype=dtype, device=device)
    zero = torch.zeros(2, 2, dtype=dtype, device=device)
    f = torch.cat([torch.cat([eye, dt * eye], 1), torch.cat([zero, eye], 1)], 0)
    cross = q * dt**2 / 2 * eye
    qm = torch.cat(
        [torch.cat([q * dt**3 / 3 * eye, cross], 1), torch.cat([cross, q * dt * eye], 1)], 0
    )
    return f, qm


def position_measurement_model(
    std: float,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Position-only measurement of :math:`[x, y, v_x, v_y]`: :math:`z = [x, y] + v`.

    Args:
        std: measurement noise standard deviation per axis (m), > 0.
    Returns:
        ``(H, R)``: float ``[2, 4]`` and ``[2, 2]`` (:math:`R = \sigma^2 I_2`).
    """
    check_positive("std", std)
    h = torch.zeros(2, 4, dtype=dtype, device=device)
    h[0, 0] = 1.0
    h[1, 1] = 1.0
    return h, std**2 * torch.eye(2, dtype=dtype, device=device)
