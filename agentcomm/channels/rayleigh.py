r"""Rayleigh fading: :math:`y = h x + n`, :math:`h \sim \mathcal{CN}(0, 1)`.

Two models, named apart because they behave very differently for coded
transmission (Tse & Viswanath, *Fundamentals of Wireless Communication*, 2005,
ch. 3 and 5):

* :class:`RayleighFastFading`: an independent coefficient for every symbol
  (ideal interleaving); a codeword sees many fades and the ergodic capacity
  :math:`\mathbb E\log_2(1+|h|^2\,\mathrm{SNR})` is achievable.
* :class:`RayleighBlockFading`: one coefficient for a whole message (the
  coherence time exceeds a message); a codeword sees one fade and fails in
  outage when :math:`\log_2(1+|h|^2\,\mathrm{SNR})` is below its rate.

:math:`|h|^2` is exponential with mean 1, so the mean received SNR equals the
nominal SNR. Noise is :math:`\mathcal{CN}(0, N_0)` (:math:`N_0/2` per real dimension).
"""

from __future__ import annotations

from typing import Any

import torch

from agentcomm.channels.base import Channel, complex_normal

__all__ = ["RayleighBlockFading", "RayleighFastFading"]


class _RayleighFading(Channel):
    r"""The draw both Rayleigh models share; :attr:`block` picks the coefficient shape."""

    def _coefficients(
        self, h_shape: tuple[int, ...], generator: torch.Generator | None, **factory: Any
    ) -> torch.Tensor:
        r"""Samples of :math:`h \sim \mathcal{CN}(0, 1)` of shape ``h_shape``."""
        return complex_normal(h_shape, generator, **factory)


class RayleighFastFading(_RayleighFading):
    r"""Rayleigh fading with an independent :math:`h \sim \mathcal{CN}(0,1)` per symbol.

    :meth:`generate` returns complex ``[..., k]``.

    Args:
        csi: receiver CSI mode (``"perfect"``, ``"estimated"``, ``"none"``); with
            ``"estimated"`` each symbol's coefficient gets its own pilot estimate.
        pilot_snr_db: pilot SNR in dB for ``csi="estimated"``.
    """

    block = False


class RayleighBlockFading(_RayleighFading):
    r"""Rayleigh fading with one :math:`h \sim \mathcal{CN}(0,1)` per message (last axis).

    :meth:`generate` returns complex ``[..., 1]``, broadcast over the ``k`` symbols of a
    message.

    Args:
        csi: receiver CSI mode (``"perfect"``, ``"estimated"``, ``"none"``); with
            ``"estimated"`` one pilot estimate covers the whole message.
        pilot_snr_db: pilot SNR in dB for ``csi="estimated"``.
    """

    block = True
