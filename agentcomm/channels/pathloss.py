r"""Log-distance path loss with optional log-normal shadowing.

.. math::

    \mathrm{PL}(d)\,[\mathrm{dB}] = \mathrm{PL}(d_0) + 10\, n \log_{10}\!\frac{\max(d, d_0)}{d_0}
        + X_\sigma, \qquad X_\sigma \sim \mathcal N(0, \sigma^2)\ [\mathrm{dB}],

(Rappaport, *Wireless Communications*, 2nd ed., 2002, eqs. 4.68-4.69a). Distances
below :math:`d_0` are clamped to :math:`d_0` (the model is not valid in the near
field). The link SNR is
:math:`\mathrm{SNR_{dB}} = P_{tx} - \mathrm{PL}(d) - P_{\mathrm{noise}}` with powers in dBm.
"""

from __future__ import annotations

import torch

from agentcomm._checks import check_finite, check_range, check_tensor

__all__ = ["LogDistancePathLoss"]


class LogDistancePathLoss:
    r"""Log-distance path loss, batched over any distance shape (e.g. ``[B, N, N]``).

    Args:
        exponent: path-loss exponent :math:`n` (2 free space, 2.7-3.5 urban, 4-6 obstructed).
        ref_distance: reference distance :math:`d_0` in metres (> 0).
        ref_loss_db: loss :math:`\mathrm{PL}(d_0)` at the reference distance, dB.
        shadowing_std_db: standard deviation :math:`\sigma` of log-normal shadowing, dB
            (0 disables shadowing). Shadowing is drawn i.i.d. per distance entry, so
            :math:`d_{ij}` and :math:`d_{ji}` get independent draws; symmetrize the
            result if links must be reciprocal.
    """

    def __init__(
        self,
        exponent: float = 3.0,
        ref_distance: float = 1.0,
        ref_loss_db: float = 40.0,
        shadowing_std_db: float = 0.0,
    ) -> None:
        self.exponent = float(check_range("exponent", exponent, 0.0, 10.0))
        self.ref_distance = float(
            check_range("ref_distance", ref_distance, 0.0, 1e9, low_inclusive=False)
        )
        self.ref_loss_db = float(check_range("ref_loss_db", ref_loss_db, -100.0, 300.0))
        self.shadowing_std_db = float(check_range("shadowing_std_db", shadowing_std_db, 0.0, 50.0))

    def loss_db(
        self, distance: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Path loss in dB at each distance.

        Args:
            distance: real float tensor of any shape ``[...]``, metres, finite and >= 0.
            generator: source of the shadowing draw; required when ``shadowing_std_db > 0``.
        Returns:
            real ``[...]`` (dtype of ``distance``): path loss in dB.
        """
        check_tensor("distance", distance, dtypes=(torch.float32, torch.float64), finite=True)
        if bool((distance < 0).any()):
            raise ValueError(
                f"distance holds {int((distance < 0).sum())} negative value(s); must be >= 0"
            )
        if self.shadowing_std_db > 0.0 and generator is None:
            raise ValueError(
                f"generator=None but shadowing_std_db={self.shadowing_std_db} > 0; "
                "pass a torch.Generator for the shadowing draw"
            )
        return self._loss_db(distance, generator)

    def _loss_db(self, distance: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """:meth:`loss_db` without validation, for callers whose distances are finite and
        non-negative by construction (the batched world's per-step links)."""
        ratio = distance.clamp_min(self.ref_distance) / self.ref_distance
        loss = self.ref_loss_db + 10.0 * self.exponent * torch.log10(ratio)
        if self.shadowing_std_db > 0.0:
            shadow = torch.randn(
                distance.shape, generator=generator, dtype=distance.dtype, device=distance.device
            )
            loss = loss + self.shadowing_std_db * shadow
        return loss

    def snr_db(
        self,
        distance: torch.Tensor,
        tx_power_dbm: float | torch.Tensor,
        noise_floor_dbm: float | torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Received SNR in dB: ``tx_power_dbm - loss_db(distance) - noise_floor_dbm``.

        Args:
            distance: real ``[...]``, metres.
            tx_power_dbm: transmit power, dBm; scalar or broadcastable to ``distance``.
            noise_floor_dbm: receiver noise power over the signal bandwidth, dBm; scalar or
                broadcastable to ``distance``.
            generator: source of the shadowing draw; required when ``shadowing_std_db > 0``.
        Returns:
            real ``[...]``: SNR in dB.
        """
        loss = self.loss_db(distance, generator)
        p_tx = torch.as_tensor(tx_power_dbm, dtype=loss.dtype, device=loss.device)
        noise = torch.as_tensor(noise_floor_dbm, dtype=loss.dtype, device=loss.device)
        check_finite("tx_power_dbm", p_tx)
        check_finite("noise_floor_dbm", noise)
        return p_tx - loss - noise

    def _snr_db(
        self,
        distance: torch.Tensor,
        p_tx: torch.Tensor,
        noise: torch.Tensor,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """:meth:`snr_db` without validation; ``p_tx`` and ``noise`` are 0-d tensors in the
        distances' dtype (the same arithmetic, so the same values bit for bit)."""
        return p_tx - self._loss_db(distance, generator) - noise

    def __repr__(self) -> str:
        return (
            f"LogDistancePathLoss(exponent={self.exponent}, ref_distance={self.ref_distance}, "
            f"ref_loss_db={self.ref_loss_db}, shadowing_std_db={self.shadowing_std_db})"
        )
