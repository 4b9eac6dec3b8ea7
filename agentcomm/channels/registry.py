"""Build a channel from its name and keyword parameters (for configs and CLIs)."""

from __future__ import annotations

import inspect

from agentcomm._checks import check_choice
from agentcomm.channels.awgn import AWGN
from agentcomm.channels.base import Channel
from agentcomm.channels.rayleigh import RayleighBlockFading, RayleighFastFading
from agentcomm.channels.rician import Rician

__all__ = ["CHANNELS", "make_channel"]

_CLASSES: dict[str, type[Channel]] = {
    "awgn": AWGN,
    "rayleigh_fast": RayleighFastFading,
    "rayleigh_block": RayleighBlockFading,
    "rician": Rician,
}

#: Names accepted by :func:`make_channel`.
CHANNELS: tuple[str, ...] = tuple(_CLASSES)


def make_channel(name: str, **params: object) -> Channel:
    """Instantiate the channel registered as ``name``.

    Args:
        name: one of :data:`CHANNELS` (``"awgn"``, ``"rayleigh_fast"``,
            ``"rayleigh_block"``, ``"rician"``).
        **params: constructor arguments of that channel (e.g. ``csi="estimated"``,
            ``pilot_snr_db=10.0``, ``k_factor=4.0`` for ``"rician"``).
    Returns:
        the channel.
    Raises:
        ValueError: unknown ``name``, unknown parameter names, or out-of-range values.
    """
    cls = _CLASSES[check_choice("name", name, CHANNELS)]
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {unknown} for channel {name!r}; allowed {sorted(allowed)}"
        )
    return cls(**params)
