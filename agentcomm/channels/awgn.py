r"""The additive white Gaussian noise channel :math:`y = x + n`.

Noise :math:`n \sim \mathcal{CN}(0, N_0)`: variance :math:`N_0/2` per real
dimension, :math:`N_0 = 10^{-\mathrm{SNR_{dB}}/10}` for unit-energy symbols
(the convention of :mod:`agentcomm.channels.base`).
"""

from __future__ import annotations

from typing import Any

import torch

from agentcomm.channels.base import Channel

__all__ = ["AWGN"]


class AWGN(Channel):
    r"""Additive white Gaussian noise: :math:`h = 1` for every symbol.

    Args:
        csi: receiver CSI mode (see :class:`~agentcomm.channels.base.Channel`); with
            ``"perfect"`` the receiver knows :math:`h = 1`.
        pilot_snr_db: pilot SNR in dB for ``csi="estimated"``.

    Example:
        >>> import torch
        >>> from agentcomm.channels import AWGN, power_normalize
        >>> g = torch.Generator().manual_seed(0)
        >>> x = power_normalize(torch.randn(4, 8, dtype=torch.complex64, generator=g))
        >>> out = AWGN().apply(x, snr_db=10.0, generator=g)
        >>> out.y.shape, out.h.shape, out.noise_var.shape
        (torch.Size([4, 8]), torch.Size([4, 1]), torch.Size([4, 1]))
    """

    block = True

    def _coefficients(
        self, h_shape: tuple[int, ...], generator: torch.Generator | None, **factory: Any
    ) -> torch.Tensor:
        """All ones (no fading, so ``generator`` is not used)."""
        return torch.ones(h_shape, **factory)
