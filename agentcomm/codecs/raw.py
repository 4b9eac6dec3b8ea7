"""The ideal reference: the belief arrives exactly, whatever the channel."""

from __future__ import annotations

import torch

from agentcomm.channels.base import Channel
from agentcomm.codecs.base import Codec, Message, Received

__all__ = ["RawCodec"]


class RawCodec(Codec):
    r"""Raw float32 values, delivered exactly: the upper bound every scheme is compared to.

    Not a feasible scheme: it ignores both the channel (no noise, no fading, no outage,
    and no random draws from the generator) and the budget ``k``.

    Accounting, per message of ``n`` values:

    * bits :math:`= 32 n` (one float32 per value);
    * channel uses :math:`= \lceil n / 2 \rceil` (two reals per complex use, as an ideal
      analog scheme would occupy), reported even when this exceeds the budget;
    * side bits :math:`= 0`.

    Receiver: every message is delivered; the estimate is the belief rounded to float32
    (exact for float32 beliefs). Intent and prior are accepted and have no effect.

    Args:
        source_shape: ``S``.
    """

    name = "raw"
    digital = False

    def _encode(
        self,
        values: torch.Tensor,
        budget: torch.Tensor,
        intent: torch.Tensor | None,
        prior: torch.Tensor,
    ) -> Message:
        m = values.shape[0]
        full = torch.full((m,), 1, dtype=torch.int64, device=values.device)
        return Message(
            channel_uses=full * ((self.n + 1) // 2),
            bits=full * (32 * self.n),
            side_bits=full * 0,
            prior=prior,
            payload={"values": values.to(torch.float32)},
        )

    def deliver(
        self,
        message: Message,
        channel: Channel,
        snr_db: float | torch.Tensor,
        generator: torch.Generator | None,
        h: torch.Tensor | None = None,
    ) -> Received:
        """Deliver every message exactly; the channel is not used (``snr_db`` is only
        validated). An ideal noiseless link: its capacity is the bits it carries."""
        m = message.channel_uses.shape[0]
        self._check_snr(snr_db, m, message.prior.device)
        bits = message.bits.to(torch.float64)
        ok = torch.ones(m, dtype=torch.bool, device=message.prior.device)
        return Received(message, ok, bits=bits, capacity_bits=bits)

    def _decode(self, received: Received, prior: torch.Tensor) -> torch.Tensor:
        return received.message.payload["values"].to(prior.dtype)
