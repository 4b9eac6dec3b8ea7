r"""Wireless channels: :math:`y = h x + n` with :math:`n \sim \mathcal{CN}(0, N_0)`
(variance :math:`N_0/2` per real dimension), packet erasure, path loss and the
Shannon limits.

The LDPC + QAM chain (:class:`~agentcomm.channels.sionna_chain.LDPCQAMChain`)
needs the optional Sionna dependency and is imported from
:mod:`agentcomm.channels.sionna_chain` directly, so importing this package never
imports Sionna.
"""

from __future__ import annotations

from agentcomm.channels.awgn import AWGN
from agentcomm.channels.base import (
    CSI_MODES,
    Channel,
    ChannelOutput,
    coefficient_shape,
    complex_normal,
    equalize,
    noise_var_from_snr_db,
    power_normalize,
)
from agentcomm.channels.capacity import (
    awgn_capacity,
    capacity_of_uses,
    digital_delivery,
    rayleigh_ergodic_capacity,
    rayleigh_outage_probability,
    snr_inst,
)
from agentcomm.channels.erasure import GilbertElliott, IIDErasure
from agentcomm.channels.pathloss import LogDistancePathLoss
from agentcomm.channels.rayleigh import RayleighBlockFading, RayleighFastFading
from agentcomm.channels.registry import CHANNELS, make_channel
from agentcomm.channels.rician import Rician

__all__ = [
    "AWGN",
    "CHANNELS",
    "CSI_MODES",
    "Channel",
    "ChannelOutput",
    "GilbertElliott",
    "IIDErasure",
    "LogDistancePathLoss",
    "RayleighBlockFading",
    "RayleighFastFading",
    "Rician",
    "awgn_capacity",
    "capacity_of_uses",
    "coefficient_shape",
    "complex_normal",
    "digital_delivery",
    "equalize",
    "make_channel",
    "noise_var_from_snr_db",
    "power_normalize",
    "rayleigh_ergodic_capacity",
    "rayleigh_outage_probability",
    "snr_inst",
]
