r"""The codec contract: encode a belief under a channel-use budget, pass it over a
channel, decode the receiver's estimate, and account for every bit and channel use.

Shape legend
------------
``M``: messages (the environment flattens its ``[B, N, N]`` links into ``M``);
``S``: the source shape, e.g. ``(H, W)`` for a log-odds grid or ``(d,)`` for a
Gaussian's mean and covariance entries; ``n = prod(S)``: source dimensions;
``k``: the budget in complex channel uses; ``K``: the longest message in a batch.

Two kinds of codec
------------------
*Digital* codecs (``digital = True``) turn the belief into ``b`` information
bits sent on ``c <= k`` complex channel uses. The physical layer is abstracted
by the capacity rule: the message arrives intact iff its rate ``b / c`` does not
exceed what the link supports,

.. math:: \frac{b}{c} \le \frac1c \sum_{i=1}^{c} \log_2\!\left(1 + |h_i|^2\,\mathrm{SNR}\right),

(for block fading and AWGN all :math:`h_i` are equal and this is the outage rule
:math:`b/c \le \log_2(1 + |h|^2 \mathrm{SNR})`, Ozarow, Shamai & Wyner, IEEE TVT
1994); otherwise nothing arrives (outage) and the receiver keeps its prior.

*Analog* codecs (``digital = False``) map the belief to complex symbols of unit
average energy that pass :meth:`Channel.apply` (``y = h x + n``, noise variance
``N_0/2`` per real dimension); they degrade gracefully with the SNR. A codec that
needs a per-message amplitude scale sends it as ``side_bits`` of digital side
information on ``side_uses`` of its ``c <= k`` channel uses, judged by the capacity
rule like any digital message: if the side information is lost the symbols cannot be
rescaled and the message is not delivered (:func:`quantize_scale`).

Accounting (:class:`Transmission`), per message:

* ``channel_uses``: every use the message occupied (side information included);
* ``capacity_bits``: :math:`C = \sum_{i \le c} \log_2(1 + |h_i|^2 \mathrm{SNR})`, what
  those uses could carry on the fade they saw (:func:`~agentcomm.channels.capacity.capacity_of_uses`);
* ``bits``: the information put on the channel. A digital message's bits are the bits it
  carries; an analog message's information is measured as the capacity of the uses its
  symbols spent (plus its side bits), since its symbols carry no countable bits;
* ``bits_delivered``: ``bits`` when delivered, else 0; never more than ``capacity_bits``.

Under block fading one message sees one fade: the side information and the symbols share
it, and a caller that sends a header on the same packet passes its coefficient in
(:meth:`Codec.deliver`'s ``h``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from agentcomm._checks import check_range, check_tensor
from agentcomm.channels.base import Channel, ChannelOutput
from agentcomm.channels.capacity import capacity_of_uses

__all__ = [
    "Codec",
    "Message",
    "Received",
    "Transmission",
    "capacity_delivery",
    "quantize_scale",
    "transmit",
]

REAL_DTYPES = (torch.float32, torch.float64)
INT_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)
# Guards float round-off in floor(rate * k) and ceil(bits / rate): 0.29 * 100 is
# 28.999999999999996 in binary floating point but means 29 bits.
_RATE_EPS = 1e-9


@dataclass
class Message:
    """What an encoder produces for ``M`` messages.

    Attributes:
        channel_uses: int64 ``[M]``, complex channel uses the message occupies (``<=`` budget,
            except for :class:`~agentcomm.codecs.raw.RawCodec`).
        bits: int64 ``[M]``, information bits put on the channel, counted in outage too
            (0 for the analog linear and DCT codecs; ``32 n`` for the raw reference).
        side_bits: int64 ``[M]``, digital side information bits (analog amplitude scale; 0
            otherwise), sent on ``side_uses`` of the ``channel_uses``.
        prior: ``[M, *S]`` real, what the receiver believes without the message.
        symbols: complex ``[M, K]`` (analog codecs), ``K`` the most symbol uses of a message
            (``channel_uses - side_uses``); entries past a message's own symbol uses are zero
            and ignored by the decoder. ``None`` for digital codecs and the raw reference.
        payload: content that reaches the receiver exactly iff the message is delivered (the
            digital data, or the analog side information), keyed by name, each ``[M, ...]``.
        context: what both ends know without spending channel uses (e.g. the selection order
            derived from the receiver's own announced intent), each ``[M, ...]``.
    """

    channel_uses: torch.Tensor
    bits: torch.Tensor
    side_bits: torch.Tensor
    prior: torch.Tensor
    symbols: torch.Tensor | None = None
    payload: dict[str, torch.Tensor] = field(default_factory=dict)
    context: dict[str, torch.Tensor] = field(default_factory=dict)
    side_uses: torch.Tensor | None = None
    """int64 ``[M]``, channel uses of the side information (``None``: none)."""


@dataclass
class Received:
    """What the receiver holds after the channel.

    Attributes:
        message: the :class:`Message` that was sent; a decoder reads only ``payload`` and
            ``context`` of delivered messages, ``prior``, and ``channel``.
        delivered: bool ``[M]``; False means outage (digital) and the estimate is the prior.
        channel: the :class:`ChannelOutput` for analog codecs (``y [M, K]``, CSI, ``N_0``),
            ``None`` for digital codecs and the raw codec.
        bits: float64 ``[M]``, the information put on the channel (module docstring).
        capacity_bits: float64 ``[M]``, the capacity of the uses occupied on their fade.
    """

    message: Message
    delivered: torch.Tensor
    channel: ChannelOutput | None = None
    bits: torch.Tensor | None = None
    capacity_bits: torch.Tensor | None = None


@dataclass
class Transmission:
    """The outcome and exact accounting of sending ``M`` beliefs.

    Attributes:
        estimate: ``[M, *S]``, the receiver's reconstruction (the prior where not delivered).
        delivered: bool ``[M]``.
        channel_uses: int64 ``[M]``, complex channel uses actually occupied (side
            information included).
        bits: float64 ``[M]``, information put on the channel, delivered or not: a digital
            message's bits; for analog codecs the capacity of the uses their symbols spent
            plus the side bits (module docstring); ``32 n`` for the raw reference.
        side_bits: int64 ``[M]``, of ``bits``, the digital side information (the analog
            codecs' amplitude scale).
        bits_delivered: float64 ``[M]``, ``bits`` of delivered messages, else 0.
        capacity_bits: float64 ``[M]``, what the occupied uses could carry on their fade;
            ``bits_delivered <= capacity_bits`` (the raw reference is an ideal noiseless
            link: its capacity is its ``bits``).
        source_dim: ``n``, real dimensions of one belief.
    """

    estimate: torch.Tensor
    delivered: torch.Tensor
    channel_uses: torch.Tensor
    bits: torch.Tensor
    side_bits: torch.Tensor
    bits_delivered: torch.Tensor
    capacity_bits: torch.Tensor
    source_dim: int

    @property
    def bandwidth_ratio(self) -> torch.Tensor:
        """float ``[M]``: channel uses per source dimension, ``c / n``."""
        return self.channel_uses.to(torch.float64) / self.source_dim


def quantize_scale(rms: torch.Tensor, bits: int) -> torch.Tensor:
    r"""The amplitude scale an analog codec divides by, as the receiver will know it.

    The scale :math:`g` is quantized in the log domain on a grid of :math:`2^b` points
    spanning :math:`[2^{-24}, 2^{24}]` and rounded *up*, so the symbols
    :math:`x = v / g` have mean energy :math:`\le 1` (the power constraint holds after
    quantization) and the decoder's :math:`g` equals the encoder's exactly. With
    ``b = 16`` the grid step is a factor :math:`2^{48/65535} \approx 1.0005`
    (at most 0.0044 dB of power left unused).

    Args:
        rms: real ``[M]``, the root mean energy per complex symbol of the unnormalized message.
        bits: ``b``, the side-information size.
    Returns:
        real ``[M]``, :math:`g \ge \mathrm{rms}` (``2^{-24}`` for all-zero messages).
    Raises:
        ValueError: an ``rms`` above :math:`2^{24}` (the scale cannot be represented).
    """
    log2_lo, log2_hi = -24.0, 24.0
    if bool((rms > 2.0**log2_hi).any()):
        raise ValueError(
            f"message rms={float(rms.max()):.6g} exceeds the largest scale 2**{log2_hi:g} "
            "the side information can carry; allowed rms <= 2**24"
        )
    levels = 2**bits - 1
    step = (log2_hi - log2_lo) / levels
    log2_rms = torch.log2(rms.to(torch.float64).clamp_min(2.0**log2_lo))
    index = torch.ceil((log2_rms - log2_lo) / step - _RATE_EPS).clamp(0, levels)
    return torch.exp2(log2_lo + index * step).to(rms.dtype)


def _prod(shape: Sequence[int]) -> int:
    return math.prod(shape)


class Codec(ABC):
    """A belief codec: encode ``[M, *S]`` beliefs under a budget, decode the estimate.

    Subclasses set ``name`` and ``digital`` and implement :meth:`_encode` and
    :meth:`_decode` on flattened ``[M, n]`` tensors; this class validates input, and
    :meth:`decode` returns the prior for every undelivered message.

    Args:
        source_shape: the shape ``S`` of one belief, e.g. ``(H, W)`` or ``(d,)``.
    """

    name: ClassVar[str]
    digital: ClassVar[bool]
    #: Digital codecs that send a subset of cells at quantized levels (quantized, top-k) also
    #: offer :meth:`cell_plan` and :meth:`encode_cells`, a sparse form of encode + decode
    #: that the batched world's exchange uses instead of ``[M, n]`` estimates. They set
    #: ``rate`` (information bits per channel use) and ``bits_per_cell``, from which
    #: :meth:`cell_plan` counts every message.
    cell_codec: ClassVar[bool] = False
    rate: float
    bits_per_cell: int

    def __init__(self, source_shape: Sequence[int]) -> None:
        if (
            isinstance(source_shape, (str, bytes))
            or not isinstance(source_shape, Sequence)
            or len(source_shape) == 0
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in source_shape)
        ):
            raise ValueError(
                f"source_shape={source_shape!r} is not allowed; "
                "expected a non-empty tuple of positive ints such as (H, W) or (d,)"
            )
        self.source_shape: tuple[int, ...] = tuple(source_shape)
        self.n: int = _prod(self.source_shape)
        self._params: dict[str, Any] = {}

    def __repr__(self) -> str:
        params = "".join(f", {k}={v!r}" for k, v in self._params.items())
        return f"{type(self).__name__}(source_shape={self.source_shape}{params})"

    # ------------------------------------------------------------------ public API
    def encode(
        self,
        belief: torch.Tensor,
        channel_uses: int | torch.Tensor,
        intent: torch.Tensor | None = None,
        *,
        prior: torch.Tensor | float = 0.0,
    ) -> Message:
        """Encode ``M`` beliefs.

        Args:
            belief: float32/float64 ``[M, *S]``, finite.
            channel_uses: the budget ``k`` in complex channel uses, a positive int or int
                ``[M]``.
            intent: float ``[M, 2]``, the receiver's announced goal point in cell coordinates
                ``(row, col)`` (see :mod:`agentcomm.codecs.intent`); grids only.
            prior: ``[M, *S]`` (or broadcastable) or a float: what the receiver believes without
                the message; selection scores and unsent values refer to it.
        Returns:
            :class:`Message`.
        """
        belief = check_tensor(
            "belief", belief, shape=(None, *self.source_shape), dtypes=REAL_DTYPES, finite=True
        )
        m = belief.shape[0]
        budget = self._check_budget(channel_uses, m, belief.device)
        prior_t = self._check_prior(prior, belief)
        if intent is not None:
            if len(self.source_shape) != 2:
                raise ValueError(
                    f"intent is given but source_shape={self.source_shape} is not a 2-D grid; "
                    "intent-aware selection needs source_shape=(H, W)"
                )
            check_tensor("intent", intent, shape=(m, 2), dtypes=REAL_DTYPES, finite=True)
        return self._encode(belief.reshape(m, self.n), budget, intent, prior_t)

    def decode(self, received: Received) -> torch.Tensor:
        """Reconstruct the beliefs; undelivered messages decode to the prior.

        Returns:
            ``[M, *S]``, the dtype of the prior.
        """
        prior = received.message.prior
        m = prior.shape[0]
        flat_prior = prior.reshape(m, self.n)
        estimate = self._decode(received, flat_prior)
        estimate = torch.where(received.delivered.unsqueeze(1), estimate, flat_prior)
        return estimate.reshape(prior.shape)

    def deliver(
        self,
        message: Message,
        channel: Channel,
        snr_db: float | torch.Tensor,
        generator: torch.Generator | None,
        h: torch.Tensor | None = None,
    ) -> Received:
        """Pass a message over ``channel`` at ``snr_db`` (dB, scalar or ``[M]``).

        Digital messages are judged by :meth:`deliver_digital` (the capacity rule of the
        module docstring unless a codec overrides it), analog side information by the
        capacity rule; analog symbols go through :meth:`Channel.apply`. Messages with
        nothing on the air are not delivered.

        Args:
            h: complex ``[M, 1]``, the block-fading coefficient each message sees, when the
                caller drew it (a packet's header shares it); ``None`` draws one here. Ignored
                by fast-fading channels, whose every use fades independently.
        """
        m = message.channel_uses.shape[0]
        device = message.prior.device
        snr = self._check_snr(snr_db, m, device).expand(m)
        if channel.block and h is None:
            h = channel.generate((m, 1), generator, dtype=torch.complex128, device=device)
        if self.digital:
            delivered, capacity = self.deliver_digital(
                message.bits, message.channel_uses, channel, snr, generator, h
            )
            bits = message.bits.to(torch.float64)
            return Received(message, delivered, bits=bits, capacity_bits=capacity)
        if message.symbols is None:
            raise ValueError(f"analog codec {self.name!r} produced a message without symbols")
        side_uses = (
            message.side_uses
            if message.side_uses is not None
            else torch.zeros_like(message.channel_uses)
        )
        side_ok, side_capacity = capacity_delivery(
            message.side_bits, side_uses, channel, snr, generator, h
        )
        symbols = message.symbols
        out = channel.apply(
            symbols,
            snr.to(symbols.real.dtype),
            generator,
            h=None if h is None else h.to(symbols.dtype),
        )
        symbol_uses = message.channel_uses - side_uses
        capacity = capacity_of_uses(out.h, snr, symbol_uses)
        on_air = symbol_uses > 0
        delivered = on_air & (side_ok | (message.side_bits == 0))
        bits = capacity + message.side_bits.to(torch.float64)
        return Received(message, delivered, out, bits=bits, capacity_bits=capacity + side_capacity)

    def deliver_digital(
        self,
        bits: torch.Tensor,
        channel_uses: torch.Tensor,
        channel: Channel,
        snr_db: torch.Tensor,
        generator: torch.Generator | None,
        h: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The delivery rule of a digital codec's messages: the capacity rule
        (:func:`capacity_delivery`, same arguments and returns). A codec with another
        physical layer overrides it (e.g. :class:`~agentcomm.codecs.ldpc.LDPCQAMCodec`); it
        must return the same capacity and deliver only messages with ``0 < bits <=
        capacity``, so the accounting stays exact."""
        return capacity_delivery(bits, channel_uses, channel, snr_db, generator, h)

    @property
    def capacity_rule(self) -> bool:
        """Whether digital messages are delivered by the capacity rule itself (the default
        :meth:`deliver_digital`), which callers may then apply inline."""
        return type(self).deliver_digital is Codec.deliver_digital

    # ------------------------------------------------------------------ subclass hooks
    @abstractmethod
    def _encode(
        self,
        values: torch.Tensor,
        budget: torch.Tensor,
        intent: torch.Tensor | None,
        prior: torch.Tensor,
    ) -> Message:
        """``values``: ``[M, n]``; ``budget``: int64 ``[M]`` (>= 1); ``intent``: ``[M, 2]`` or
        ``None``; ``prior``: ``[M, *S]`` (already broadcast, the belief's dtype)."""

    @abstractmethod
    def _decode(self, received: Received, prior: torch.Tensor) -> torch.Tensor:
        """Return the ``[M, n]`` estimate assuming delivery; ``prior`` is ``[M, n]``."""

    # ------------------------------------------------------------------ sparse cell codecs
    def cell_plan(self, budget: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r"""Cell codecs (:attr:`cell_codec`): int64 ``[K]`` each, for budgets ``[K]`` (>= 1):
        the cells sent, the bits and the channel uses, as :meth:`encode` counts them.

        With ``k`` uses at ``r`` bits per use and ``b`` bits per cell: cells
        :math:`v = \min(n, \lfloor \lfloor r k \rfloor / b \rfloor)`, bits :math:`v b`,
        channel uses :math:`\lceil v b / r \rceil \le k`."""
        if not self.cell_codec:
            raise NotImplementedError(f"{self.name!r} is not a cell codec")
        count = torch.clamp(self._bit_budget(budget, self.rate) // self.bits_per_cell, max=self.n)
        bits = count * self.bits_per_cell
        return count, bits, self._uses_for_bits(bits, self.rate)

    def encode_cells(
        self,
        source: torch.Tensor,
        rows: torch.Tensor,
        width: int,
        goal: torch.Tensor | None,
        prior: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cell codecs: the first ``width`` cells each message would send and the levels its
        receiver decodes there, without validation or ``[M, n]`` estimates.

        Message ``m`` carries ``source[rows[m]]``; where :meth:`encode` sends ``v`` cells, they
        are the first ``v`` of the returned ones (``width`` must be at least the largest
        ``v``), and a delivered message decodes to those levels there and to ``prior``
        elsewhere, bit for bit what :meth:`decode` gives.

        Args:
            source: float ``[R, *S]``, contiguous.
            rows: int64 ``[M]``, rows of ``source``.
            width: ``W``, cells per message to return.
            goal: float ``[M, 2]`` receivers' goals on cell centres (integer coordinates
                inside the grid, as the world sends them), or ``None``.
            prior: the receivers' prior value of every cell.
        Returns:
            ``cells`` int64 ``[M, W]`` (distinct per row) and ``levels`` ``[M, W]`` (the
            dtype of ``source``).
        """
        raise NotImplementedError(f"{self.name!r} is not a cell codec")

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _check_budget(
        channel_uses: int | torch.Tensor, m: int, device: torch.device
    ) -> torch.Tensor:
        if isinstance(channel_uses, torch.Tensor):
            check_tensor("channel_uses", channel_uses, dtypes=INT_DTYPES)
            if channel_uses.ndim > 1 or (channel_uses.ndim == 1 and channel_uses.shape[0] != m):
                raise ValueError(
                    f"channel_uses has shape {tuple(channel_uses.shape)}; expected () or ({m},)"
                )
            budget = channel_uses.to(device=device, dtype=torch.int64).expand(m)
            if bool((budget <= 0).any()):
                raise ValueError(
                    f"channel_uses holds {int((budget <= 0).sum())} value(s) <= 0 "
                    f"(min {int(budget.min())}); allowed: integers >= 1"
                )
            return budget.clone()
        if isinstance(channel_uses, bool) or not isinstance(channel_uses, int):
            raise ValueError(
                f"channel_uses={channel_uses!r} is not allowed; expected an int >= 1 or int [M]"
            )
        check_range("channel_uses", channel_uses, 1, None)
        return torch.full((m,), channel_uses, dtype=torch.int64, device=device)

    @staticmethod
    def _check_snr(snr_db: float | torch.Tensor, m: int, device: torch.device) -> torch.Tensor:
        """float64 ``[]`` or ``[M]`` SNR in dB, finite."""
        if isinstance(snr_db, bool) or not isinstance(snr_db, (int, float, torch.Tensor)):
            raise ValueError(f"snr_db={snr_db!r} is not allowed; expected a float or a tensor")
        snr = torch.as_tensor(snr_db, dtype=torch.float64, device=device)
        if snr.ndim > 1 or (snr.ndim == 1 and snr.shape[0] != m):
            raise ValueError(f"snr_db has shape {tuple(snr.shape)}; expected a scalar or ({m},)")
        return check_tensor("snr_db", snr, finite=True)

    def _check_prior(self, prior: torch.Tensor | float, belief: torch.Tensor) -> torch.Tensor:
        if isinstance(prior, torch.Tensor):
            check_tensor("prior", prior, dtypes=REAL_DTYPES, finite=True)
            try:
                return torch.broadcast_to(prior.to(belief.dtype), belief.shape).clone()
            except RuntimeError:
                raise ValueError(
                    f"prior has shape {tuple(prior.shape)}; expected one broadcastable to "
                    f"{tuple(belief.shape)}"
                ) from None
        check_range("prior", prior)
        return torch.full_like(belief, float(prior))

    @staticmethod
    def _bit_budget(budget: torch.Tensor, rate: float) -> torch.Tensor:
        r"""int64 ``[M]``: :math:`\lfloor r k \rfloor` information bits fit in ``k`` uses."""
        return torch.floor(budget.to(torch.float64) * rate + _RATE_EPS).to(torch.int64)

    @staticmethod
    def _uses_for_bits(bits: torch.Tensor, rate: float) -> torch.Tensor:
        r"""int64 ``[M]``: :math:`\lceil b / r \rceil` channel uses carry ``b`` bits at rate r."""
        uses = torch.ceil(bits.to(torch.float64) / rate - _RATE_EPS).clamp_min(0)
        return uses.to(torch.int64)


def capacity_delivery(
    bits: torch.Tensor,
    channel_uses: torch.Tensor,
    channel: Channel,
    snr_db: torch.Tensor,
    generator: torch.Generator | None,
    h: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The capacity rule over the occupied channel uses (module docstring), per message.

    Args:
        bits, channel_uses: int64 ``[M]``.
        snr_db: float64 ``[M]``, mean SNR of each message's link.
        h: complex ``[M, 1]`` block coefficients to use; ``None`` draws them (for fast fading
            ``[M, K]``, ``K`` the longest message, a message of ``c < K`` uses seeing its first
            ``c``).
    Returns:
        bool ``[M]`` delivered (``bits > 0`` and :math:`b \le C`), and float64 ``[M]`` the
        capacity :math:`C` of the uses (:func:`~agentcomm.channels.capacity.capacity_of_uses`).
    """
    m = bits.shape[0]
    if h is None or not channel.block:
        longest = int(channel_uses.max()) if m > 0 else 0
        if longest == 0:
            zero = torch.zeros(m, dtype=torch.float64, device=bits.device)
            return torch.zeros(m, dtype=torch.bool, device=bits.device), zero
        h = channel.generate((m, longest), generator, dtype=torch.complex128, device=bits.device)
    capacity = capacity_of_uses(h, snr_db, channel_uses)
    # digital_delivery's rule b <= k * (mean mutual information per use), written on the
    # total C so that one float64 sum serves block and fast fading alike.
    return (bits.to(torch.float64) <= capacity) & (bits > 0), capacity


def transmit(
    codec: Codec,
    belief: torch.Tensor,
    channel_uses: int | torch.Tensor,
    channel: Channel,
    snr_db: float | torch.Tensor,
    generator: torch.Generator | None,
    intent: torch.Tensor | None = None,
    prior: torch.Tensor | float = 0.0,
    h: torch.Tensor | None = None,
) -> Transmission:
    """Encode, send and decode ``M`` beliefs, with exact accounting.

    Args:
        codec: the :class:`Codec`.
        belief: float ``[M, *S]``.
        channel_uses: budget ``k`` per message in complex channel uses, int or int ``[M]``.
        channel: a :class:`~agentcomm.channels.base.Channel`.
        snr_db: :math:`E_s/N_0` in dB, scalar or ``[M]``.
        generator: the only source of randomness.
        intent: float ``[M, 2]`` goal points ``(row, col)`` announced by the receivers, or
            ``None``.
        prior: ``[M, *S]`` or float, the receiver's belief without the message.
        h: complex ``[M, 1]``, the block-fading coefficients the messages see (see
            :meth:`Codec.deliver`); ``None`` draws them.
    Returns:
        :class:`Transmission`.
    """
    message = codec.encode(belief, channel_uses, intent, prior=prior)
    received = codec.deliver(message, channel, snr_db, generator, h)
    return Transmission(
        estimate=codec.decode(received),
        delivered=received.delivered,
        channel_uses=message.channel_uses,
        bits=received.bits,
        side_bits=message.side_bits,
        bits_delivered=torch.where(received.delivered, received.bits, 0.0),
        capacity_bits=received.capacity_bits,
        source_dim=codec.n,
    )
