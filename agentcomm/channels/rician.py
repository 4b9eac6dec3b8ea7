r"""Rician fading: a line-of-sight path plus Rayleigh scattering.

.. math::

    h = \sqrt{\tfrac{K}{K+1}}\, e^{j\phi_{\mathrm{LOS}}} + \sqrt{\tfrac{1}{K+1}}\, g,
    \qquad g \sim \mathcal{CN}(0, 1),

so :math:`\mathbb E|h|^2 = 1` for every Rician factor :math:`K \ge 0`
(:math:`K = 0` is Rayleigh, :math:`K \to \infty` is AWGN); Goldsmith,
*Wireless Communications*, 2005, sec. 3.2.2. The power :math:`|h|^2` has mean 1
and variance :math:`(1+2K)/(1+K)^2`. Noise is :math:`\mathcal{CN}(0, N_0)`
(:math:`N_0/2` per real dimension).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from agentcomm._checks import check_range
from agentcomm.channels.base import Channel, CSIMode, complex_normal

__all__ = ["Rician"]


class Rician(Channel):
    r"""Rician fading with factor :math:`K` (linear), per message or per symbol.

    Args:
        k_factor: Rician factor :math:`K \ge 0` (linear power ratio LOS / scattered).
        block: ``True``: one coefficient per message (``[..., 1]``); ``False``: an
            independent scattered component per symbol (``[..., k]``).
        los_phase: phase :math:`\phi_{\mathrm{LOS}}` of the line-of-sight component, radians in
            :math:`[-2\pi, 2\pi]`.
        csi: receiver CSI mode (``"perfect"``, ``"estimated"``, ``"none"``).
        pilot_snr_db: pilot SNR in dB for ``csi="estimated"``.
    """

    def __init__(
        self,
        k_factor: float = 1.0,
        block: bool = True,
        los_phase: float = 0.0,
        csi: CSIMode = "perfect",
        pilot_snr_db: float = 20.0,
    ) -> None:
        super().__init__(csi=csi, pilot_snr_db=pilot_snr_db)
        self.k_factor = float(check_range("k_factor", k_factor, 0.0, 1e6))
        if not isinstance(block, bool):
            raise ValueError(
                f"block={block!r} must be a bool (True: per message, False: per symbol)"
            )
        self.block = block
        self.los_phase = float(check_range("los_phase", los_phase, -2 * math.pi, 2 * math.pi))

    def _coefficients(
        self, h_shape: tuple[int, ...], generator: torch.Generator | None, **factory: Any
    ) -> torch.Tensor:
        r"""Unit-mean-power Rician coefficients: scaled :math:`\mathcal{CN}(0, 1)` scatter
        plus the line-of-sight term."""
        scatter = complex_normal(h_shape, generator, **factory)
        los_amp = math.sqrt(self.k_factor / (self.k_factor + 1.0))
        los = complex(los_amp * math.cos(self.los_phase), los_amp * math.sin(self.los_phase))
        return scatter * math.sqrt(1.0 / (self.k_factor + 1.0)) + los

    def __repr__(self) -> str:
        return (
            f"Rician(k_factor={self.k_factor}, block={self.block}, los_phase={self.los_phase}, "
            f"csi={self.csi!r}, pilot_snr_db={self.pilot_snr_db})"
        )
