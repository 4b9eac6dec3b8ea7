r"""Information-theoretic bounds drawn beside the measured points.

* Shannon: a link of mean SNR :math:`\gamma` carries at most
  :math:`\log_2(1+\gamma)` bits per complex channel use (AWGN; by Jensen's
  inequality also an upper bound on the ergodic capacity of unit-power fading),
  and :math:`\log_2(e)\,e^{1/\gamma}E_1(1/\gamma)` with Rayleigh fading and
  receiver CSI. The environments report, per agent and step, the bits delivered
  and ``capacity_bits`` = channel uses spent x :math:`\log_2(1+\gamma)`.
* Fano: to name one of :math:`M` equally likely hypotheses from :math:`b` bits,
  any receiver errs with probability :math:`P_e \ge 1 - \frac{b + 1}{\log_2 M}`
  (Fano's inequality with :math:`I \le b`), so the probability of getting it
  right is at most :math:`\min(1, (b+1)/\log_2 M)`. Applied to what a message
  can tell a receiver about the victims' cells (``M = C(H W, V)``) or a
  teammate's chosen site (``M = S``).
"""

from __future__ import annotations

import math

import numpy as np

from agentcomm.channels.capacity import awgn_capacity, rayleigh_ergodic_capacity

__all__ = ["capacity_bits_per_use", "fano_success_bound", "log2_hypotheses"]


def capacity_bits_per_use(snr_db: float | np.ndarray, channel: str) -> float | np.ndarray:
    """Bits per complex channel use at mean SNR ``snr_db`` for ``channel``.

    Rayleigh channels (block or fast) get the ergodic capacity; every other channel the
    AWGN capacity, which upper-bounds any unit-power fading.
    """
    if channel.startswith("rayleigh"):
        return rayleigh_ergodic_capacity(snr_db)
    return awgn_capacity(snr_db)


def log2_hypotheses(cells: int, items: int) -> float:
    """:math:`\\log_2 \\binom{cells}{items}`: bits to name ``items`` distinct cells."""
    if not 0 < items <= cells:
        raise ValueError(f"items={items} must be in [1, cells={cells}]")
    return (
        math.lgamma(cells + 1) - math.lgamma(items + 1) - math.lgamma(cells - items + 1)
    ) / math.log(2)


def fano_success_bound(bits: float | np.ndarray, log2_m: float) -> float | np.ndarray:
    """Fano: the best probability of identifying one of :math:`2^{\\log_2 M}` hypotheses
    from ``bits`` bits, :math:`\\min(1, (b + 1)/\\log_2 M)`."""
    if log2_m <= 0:
        raise ValueError(f"log2_m={log2_m} must be > 0")
    return np.minimum(1.0, (np.asarray(bits, dtype=np.float64) + 1.0) / log2_m)
