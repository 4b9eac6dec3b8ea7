r"""Information-theoretic bounds drawn beside the measured points.

Shannon: a link of mean SNR :math:`\gamma` carries at most :math:`\log_2(1+\gamma)`
bits per complex channel use (AWGN; by Jensen's inequality also an upper bound on the
ergodic capacity of unit-power fading), and :math:`\log_2(e)\,e^{1/\gamma}E_1(1/\gamma)`
with Rayleigh fading and receiver CSI. The environments report, per agent and step, the
bits delivered (uplink, fusion-centre downlink and peer messages; an analog message counts
the capacity of the channel uses it spent) and ``capacity_bits`` = channel uses spent x
:math:`\log_2(1+\gamma)`, so the bound is on *delivered bits* and is drawn only against
them. No bound on task success is drawn: agents also find victims by their own sensing,
so the bits exchanged in a step do not bound the success rate.
"""

from __future__ import annotations

import numpy as np

from agentcomm.channels.capacity import awgn_capacity, rayleigh_ergodic_capacity

__all__ = ["capacity_bits_per_use"]


def capacity_bits_per_use(snr_db: float | np.ndarray, channel: str) -> float | np.ndarray:
    """Bits per complex channel use at mean SNR ``snr_db`` for ``channel``.

    Rayleigh channels (block or fast) get the ergodic capacity; every other channel the
    AWGN capacity, which upper-bounds any unit-power fading.
    """
    if channel.startswith("rayleigh"):
        return rayleigh_ergodic_capacity(snr_db)
    return awgn_capacity(snr_db)
