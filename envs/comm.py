r"""The communication step of the batched world: links, messages, fusion.

Shape legend: ``B`` worlds, ``N`` agents, ``S`` the shape of one belief payload
(``(H, W)`` for grid log-odds, ``n`` cells), ``M`` messages actually put on the air in
one exchange (only linked pairs with a positive budget, gathered with ``nonzero``: the
random draws of an exchange are one per message, so their number must be known), ``W``
the most cells a cell codec sends in one message.

Every message has two parts, coded separately:

* a **header** with the sender's announced intent (its goal point, two
  coordinates of up to ``intent_bits`` bits each, fewer when the budget is
  small: :meth:`CommStack.header_bits`), sent digitally at ``header_rate``
  bits per channel use and judged per message by the capacity rule
  :math:`b \le \sum_{i \le c} \log_2(1 + |h_i|^2 \mathrm{SNR})`;
* a **payload**: the belief, encoded by the configured codec in the channel uses
  that remain, :math:`k - \lceil b_\text{hdr} / r_\text{hdr} \rceil`.

Under block fading a packet sees one fade: header and payload share the message's
coefficient :math:`h`, so their outcomes are decided on the same channel realisation
(under fast fading every use fades on its own). Each message's outcome depends on its
own draws only, never on the other messages of the batch.

A packet erased by the erasure model (i.i.d., probability ``erasure_prob``)
loses both parts. Accounting is exact (:mod:`agentcomm.codecs.base`): the channel uses
of a message are the header's plus what the codec occupied, never more than the budget;
its capacity is what those uses could carry on their fade, and what it delivers never
exceeds it.

:meth:`CommStack.send` is the one exchange path. For block fading with a cell codec
(quantized, top-k) or no payload it takes a fast path: per-budget tables replace the
header and codec arithmetic, the capacity is computed once per fade for header and
payload, and payloads stay sparse (``[M, W]`` cells and levels instead of ``[M, n]``
estimates, which the fusion rules that need them materialize on demand). Other codecs and
channels (analog payloads, fast fading) go through each codec's own ``transmit``
(:meth:`CommStack._send_general`), with the same draws. Inputs come from the world itself,
so nothing is re-validated.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field

import torch

from agentcomm.beliefs.grid import _constant
from agentcomm.channels import IIDErasure, LogDistancePathLoss, make_channel
from agentcomm.codecs import make_codec, transmit
from agentcomm.codecs.base import capacity_delivery
from agentcomm.codecs.registry import codec_class

from .config import WorldConfig

__all__ = ["CommStack", "Exchange"]


@dataclass
class Exchange:
    r"""``M`` directed messages of one exchange, flattened.

    Attributes:
        env, src, dst: long ``[M]``; world index, sender, receiver (``dst = -1`` for the
            fusion centre on an uplink, ``src = -1`` on a downlink).
        header_ok: bool ``[M]``, the intent header arrived.
        payload_ok: bool ``[M]``, the payload arrived.
        channel_uses: long ``[M]``, complex channel uses (header + payload).
        bits: float64 ``[M]``, information put on the channel: header bits plus the payload's
            (a digital payload's bits; an analog payload's capacity of the uses its symbols
            spent plus its side bits; :mod:`agentcomm.codecs.base`).
        intent_bits: long ``[M]``, bits per intent coordinate in the header (0: not sent).
        bits_delivered: float64 ``[M]``, the part of ``bits`` that arrived (header and/or
            payload).
        capacity_bits: float64 ``[M]``, what the occupied channel uses could carry on the
            fade the message saw, :math:`\sum_{i \le c} \log_2(1 + |h_i|^2 \mathrm{SNR})`;
            ``bits_delivered <= capacity_bits`` per message, and its mean over fades is the
            ergodic capacity of the uses.
        cells, values, carried, informative_cells: the sparse payload of a cell codec
            (:meth:`CommStack.send`'s fast path), ``None`` otherwise: long ``[M, W]`` cells, their
            decoded levels ``[M, W]``, bool ``[M, W]`` the cell arrived (sent and the
            payload delivered), and bool ``[M, W]`` it arrived and differs from the prior by
            more than half a quantization step. Every other cell decodes to ``prior``.
        prior: the receivers' prior value of a cell (sparse payloads).
        source_shape: ``S`` (sparse payloads).

    :attr:`estimate` and :attr:`informative` are the dense views, built on first use from
    the sparse payload when there is one.
    """

    env: torch.Tensor
    src: torch.Tensor
    dst: torch.Tensor
    header_ok: torch.Tensor
    payload_ok: torch.Tensor
    channel_uses: torch.Tensor
    bits: torch.Tensor
    intent_bits: torch.Tensor
    bits_delivered: torch.Tensor
    capacity_bits: torch.Tensor
    dense_estimate: torch.Tensor | None = None
    dense_informative: torch.Tensor | None = None
    cells: torch.Tensor | None = None
    values: torch.Tensor | None = None
    carried: torch.Tensor | None = None
    informative_cells: torch.Tensor | None = None
    prior: float = 0.0
    source_shape: tuple[int, ...] = field(default=())

    @property
    def estimate(self) -> torch.Tensor:
        """``[M, *S]``, the decoded payload (the prior where nothing arrived); ``[M, 0]``
        when no payload was sent."""
        if self.dense_estimate is None:
            m = self.env.shape[0]
            if self.cells is None:
                self.dense_estimate = torch.zeros((m, 0), device=self.env.device)
            else:
                n = math.prod(self.source_shape)
                full = torch.full((m, n), self.prior, dtype=self.values.dtype, device=self.device)
                full.scatter_(1, self.cells, torch.where(self.carried, self.values, self.prior))
                self.dense_estimate = full.view(m, *self.source_shape)
        return self.dense_estimate

    @property
    def informative(self) -> torch.Tensor:
        """bool ``[M, *S]``, cells that arrived and differ from the prior by more than half
        the codec's quantization step
        (:func:`agentcomm.beliefs.fusion.fuse_received_logodds`)."""
        if self.dense_informative is None:
            if self.cells is None:
                self.dense_informative = self.estimate.bool()
            else:
                m, n = self.env.shape[0], math.prod(self.source_shape)
                full = torch.zeros((m, n), dtype=torch.bool, device=self.device)
                full.scatter_(1, self.cells, self.informative_cells)
                self.dense_informative = full.view(m, *self.source_shape)
        return self.dense_informative

    @property
    def device(self) -> torch.device:
        return self.env.device


class CommStack:
    """Channel, path loss, erasure and codec of one world, built once from its config.

    Args:
        config: the world's config.
        source_shape: the belief payload shape ``S``, or ``None`` when only intents are sent.
        device: where tensors live.
        value_range: ``(low, high)`` of every payload value, the range a quantizing codec
            covers unless ``comm.codec_params`` names one; ``None``: the log-odds clip
            ``(-logodds_clip, logodds_clip)`` of a grid belief.
    """

    def __init__(
        self,
        config: WorldConfig,
        source_shape: tuple[int, ...] | None,
        device: torch.device,
        value_range: tuple[float, float] | None = None,
    ) -> None:
        ch, cm = config.channel, config.comm
        self.config = config
        self.device = device
        params = {"k_factor": ch.k_factor} if ch.name == "rician" else {}
        self.channel = make_channel(ch.name, csi=ch.csi, pilot_snr_db=ch.pilot_snr_db, **params)
        self.pathloss = LogDistancePathLoss(
            exponent=ch.pathloss_exponent,
            ref_distance=ch.ref_distance_m,
            ref_loss_db=ch.ref_loss_db,
            shadowing_std_db=ch.shadowing_std_db,
        )
        self.erasure = IIDErasure(ch.erasure_prob) if ch.erasure_prob > 0 else None
        self.source_shape = source_shape
        self.codec = None
        if source_shape:
            params = dict(cm.codec_params)
            takes_range = "range" in inspect.signature(codec_class(cm.codec)).parameters
            if takes_range and "range" not in params:
                # A quantizing codec quantizes exactly the values that can occur: the
                # payload's own range.
                if value_range is None:
                    value_range = (-cm.logodds_clip, cm.logodds_clip)
                params["range"] = (float(value_range[0]), float(value_range[1]))
            self.codec = make_codec(cm.codec, source_shape, **params)
        # A decoded value within half a quantization step of the prior is what an agent
        # with no evidence about the cell would send: fusion must not count it as evidence.
        quantizer = getattr(self.codec, "quantizer", None)
        self.resolution = 0.5 * quantizer.step if quantizer is not None else 0.0
        # The exchange's fast path (module docstring): one coefficient per packet, so no
        # draw depends on how many uses a message occupies, and a cell codec or none.
        # The fast path applies the capacity rule inline: a codec with its own delivery rule
        # (ldpc_qam) goes through _send_general.
        self.fast = self.channel.block and (
            self.codec is None or (self.codec.cell_codec and self.codec.capacity_rule)
        )
        self._plans: dict[int, _Plan] = {}
        # Per-step constants, built once.
        self._p_tx = torch.tensor(ch.tx_power_dbm, dtype=torch.float32, device=device)
        self._noise = torch.tensor(ch.noise_floor_dbm, dtype=torch.float32, device=device)
        bits = torch.arange(cm.intent_bits + 1, device=device)
        levels = torch.exp2(bits.to(torch.float32))
        #: ``[intent_bits + 1]`` float32 each: per header resolution, the quantization step of
        #: :meth:`quantize_intent` and its highest cell index (its own arithmetic, tabled).
        self._intent_step = float(config.grid_size) / levels
        self._intent_top = levels - 1

    # ------------------------------------------------------------------ messages
    def header_bits(self, budget: torch.Tensor, intents: int) -> torch.Tensor:
        """Bits per intent coordinate a header can use: ``min(intent_bits, floor(r k / 2m))``.

        A small budget coarsens the announced intents instead of dropping them; below one
        bit per coordinate no header (and so no message) is sent.

        Args:
            budget: long ``[M]`` channel uses.
            intents: ``m``, intents carried by one header (1, or ``N`` on a downlink).
        Returns:
            long ``[M]``.
        """
        cm = self.config.comm
        fit = torch.floor(budget.to(torch.float64) * cm.header_rate / (2 * intents) + 1e-9)
        return fit.to(torch.long).clamp(0, cm.intent_bits)

    def quantize_intent(self, intent: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
        """What a receiver learns of intents sent with ``bits [M]`` bits per coordinate.

        Uniform quantization of ``[0, grid_size]`` into ``2^bits`` cells, reconstructed at the
        cell midpoint. ``intent``: ``[M, ..., 2]`` in cells.
        """
        g = float(self.config.grid_size)
        levels = torch.exp2(bits.to(intent.dtype)).view(-1, *([1] * (intent.ndim - 1)))
        step = g / levels
        idx = torch.floor(intent / step).clamp(max=levels - 1)
        return (idx + 0.5) * step

    def _quantize_intent(self, intent: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
        """:meth:`quantize_intent` for float32 ``intent [..., 2]`` and ``bits`` of the shape
        ``[...]`` in ``[0, intent_bits]``: the step and top index come from a table, the rest
        is the same arithmetic (the same values bit for bit)."""
        step = self._intent_step.take(bits).unsqueeze(-1)
        top = self._intent_top.take(bits).unsqueeze(-1)
        return (torch.floor(intent / step).clamp(max=top) + 0.5) * step

    def send(
        self,
        env: torch.Tensor,
        src: torch.Tensor,
        dst: torch.Tensor,
        budget: torch.Tensor,
        snr_db: torch.Tensor,
        payload: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None,
        prior: float,
        generator: torch.Generator,
        *,
        intents: int = 1,
        goal: torch.Tensor | None = None,
    ) -> Exchange:
        """Send ``M`` messages (header + payload) and decode them: the one exchange path.

        Under block fading with a cell codec (or no payload) it takes the fast path of the
        module docstring; otherwise every message goes through the codec's own
        :func:`~agentcomm.codecs.transmit` (:meth:`_send_general`). Both make the same random
        draws and give the same outcomes bit for bit where both apply.

        Inputs are trusted (they come from the world): ``budget`` in
        ``[0, comm.budget]`` (0 sends nothing), ``snr_db`` finite float32, ``prior`` a float.

        Args:
            env, src, dst: long ``[M]`` (bookkeeping, returned as they are).
            budget: long ``[M]``, channel uses granted to each message.
            snr_db: ``[M]`` mean link SNR in dB.
            payload: ``[M, *S]``, or ``(source [R, *S], rows [M])`` for message ``m`` carrying
                ``source[rows[m]]`` (no ``[M, *S]`` copy is made), or ``None`` to send
                headers only.
            prior: the receivers' prior for undelivered values.
            generator: the world's random stream.
            intents: intents carried by each header (1, or ``N`` on a downlink).
            goal: float ``[M, 2]`` receivers' goals on cell centres (integer coordinates
                inside the grid) for intent-aware codecs, or ``None``.
        Returns:
            :class:`Exchange`; sparse (``cells`` set) on the fast path with a payload.
        """
        if not self.fast:
            if isinstance(payload, tuple):
                payload = payload[0][payload[1]]
            return self._send_general(
                env,
                src,
                dst,
                budget,
                snr_db,
                payload,
                prior,
                generator,
                intents=intents,
                intent=goal,
            )
        plan = self._plan(intents)
        # index_select: a plain gather, without a tensor subscript's Python overhead.
        q, hdr_uses, uses, count, pay = plan.counts.index_select(0, budget).unbind(1)
        hdr_bits64, hdr_uses64, hdr_need, pay_bits64, pay_uses64, pay_need = plan.bits.index_select(
            0, budget
        ).unbind(1)
        m = budget.shape[0]
        dev = budget.device
        f64 = torch.float64
        # The draws of _send_general(): one block coefficient per packet, then the erasures.
        h = self.channel.generate((m, 1), generator, dtype=torch.complex128, device=dev)
        gain = torch.view_as_real(h).square().sum(-1)  # |h|^2 as re^2 + im^2, exactly
        snr64 = snr_db.to(f64)
        # log2(1 + |h|^2 SNR) per use (capacity_of_uses' arithmetic), shared by header and
        # payload, which see one fade.
        per_use = torch.log2(1.0 + gain * torch.pow(10.0, snr64.unsqueeze(-1) / 10.0))[:, 0]
        capacity = hdr_uses64 * per_use
        # b <= C and b > 0 (capacity_delivery) as one comparison: need = inf where b = 0.
        header_ok = hdr_need <= capacity
        if self.erasure is not None:
            erased = self.erasure.sample((m,), generator, device=dev)
            header_ok = header_ok & ~erased
        zero = _constant(0.0, f64, dev)
        delivered_bits = torch.where(header_ok, hdr_bits64, zero)
        if payload is None or self.codec is None:
            payload_ok, uses, bits, sparse = torch.zeros_like(header_ok), hdr_uses, hdr_bits64, {}
        else:
            # _send_general() evaluates the payload's capacity on the messages that carry one,
            # as their own [M'] batch: torch's vectorized pow differs from its scalar tail in
            # the last bit, so the same batch is formed here unless it is every message.
            idx = pay.nonzero().squeeze(1)
            if idx.numel() == m:
                pay_cap = pay_uses64 * per_use
            else:
                sub = torch.pow(10.0, snr64[idx].unsqueeze(-1) / 10.0)
                sub = torch.log2(1.0 + gain[idx] * sub)[:, 0]
                pay_cap = torch.zeros(m, dtype=f64, device=dev).index_put_(
                    (idx,), pay_uses64[idx] * sub
                )
            payload_ok = pay_need <= pay_cap
            if self.erasure is not None:
                payload_ok = payload_ok & ~erased
            source, rows = (
                payload if isinstance(payload, tuple) else (payload, torch.arange(m, device=dev))
            )
            cells, levels = self.codec.encode_cells(source, rows, plan.width, goal, prior)
            # The first ``count`` cells of a payload that arrived (none of a lost one): the
            # delivery folded into the count, one [M, W] pass instead of two.
            sent = torch.where(payload_ok, count, _constant(0, count.dtype, dev))
            carried = plan.cols < sent.unsqueeze(1)
            bits = hdr_bits64 + pay_bits64
            delivered_bits = delivered_bits + torch.where(payload_ok, pay_bits64, zero)
            capacity = capacity + pay_cap
            sparse = {
                "cells": cells,
                "values": levels,
                "carried": carried,
                "informative_cells": carried & ((levels - prior).abs() > self.resolution),
                "prior": prior,
                "source_shape": tuple(source.shape[1:]),
            }
        return Exchange(
            env,
            src,
            dst,
            header_ok,
            payload_ok,
            uses,
            bits,
            q,
            delivered_bits,
            capacity,
            **sparse,
        )

    def _send_general(
        self,
        env: torch.Tensor,
        src: torch.Tensor,
        dst: torch.Tensor,
        budget: torch.Tensor,
        snr_db: torch.Tensor,
        payload: torch.Tensor | None,
        prior: torch.Tensor | float,
        generator: torch.Generator,
        *,
        intents: int = 1,
        intent: torch.Tensor | None = None,
    ) -> Exchange:
        """:meth:`send` for any codec and channel: every message through
        :func:`~agentcomm.codecs.transmit`, dense ``[M, *S]`` estimates (``intent``: the
        receivers' goals, as :meth:`send`'s ``goal``)."""
        m = budget.shape[0]
        dev = budget.device
        rate = self.config.comm.header_rate
        q = self.header_bits(budget, intents)
        sent = q > 0
        hdr_bits = 2 * intents * q
        hdr_uses = torch.ceil(hdr_bits.to(torch.float64) / rate - 1e-9).to(torch.long)
        snr64 = snr_db.to(torch.float64)
        # One coefficient per packet under block fading, shared by header and payload.
        h = (
            self.channel.generate((m, 1), generator, dtype=torch.complex128, device=dev)
            if self.channel.block
            else None
        )
        header_ok, capacity = capacity_delivery(
            hdr_bits, hdr_uses, self.channel, snr64, generator, h
        )
        erased = (
            self.erasure.sample((m,), generator, device=dev)
            if self.erasure is not None
            else torch.zeros(m, dtype=torch.bool, device=dev)
        )
        header_ok &= sent & ~erased
        uses = hdr_uses.clone()
        bits = hdr_bits.to(torch.float64)
        delivered_bits = torch.where(header_ok, bits, 0.0)
        payload_ok = torch.zeros_like(sent)
        estimate, informative = torch.zeros((m, 0), device=dev), None
        if payload is not None and self.codec is not None:
            prior_t = torch.as_tensor(prior, dtype=payload.dtype, device=payload.device)
            prior_full = torch.broadcast_to(prior_t, payload.shape)
            estimate = prior_full.clone()
            room = budget - hdr_uses
            idx = (sent & (room > 0)).nonzero().squeeze(1)
            view = (-1,) + (1,) * (payload.ndim - 1)
            if idx.numel() > 0:
                tx = transmit(
                    self.codec,
                    payload[idx],
                    room[idx],
                    self.channel,
                    snr_db[idx],
                    generator,
                    intent=None if intent is None else intent[idx],
                    prior=prior_full[idx],
                    h=None if h is None else h[idx],
                )
                ok = tx.delivered & ~erased[idx]
                estimate[idx] = torch.where(ok.view(view), tx.estimate, prior_full[idx])
                payload_ok[idx] = ok
                uses[idx] += tx.channel_uses
                bits[idx] += tx.bits
                delivered_bits[idx] += torch.where(ok, tx.bits, 0.0)
                capacity[idx] += tx.capacity_bits
            informative = payload_ok.view(view) & ((estimate - prior_full).abs() > self.resolution)
        return Exchange(
            env,
            src,
            dst,
            header_ok,
            payload_ok,
            uses,
            bits,
            q,
            delivered_bits,
            capacity,
            dense_estimate=estimate,
            dense_informative=informative,
        )

    def _plan(self, intents: int) -> _Plan:
        """The per-budget message plan of :meth:`_send_general`'s arithmetic, tabled once per
        ``intents`` for budgets ``0..K`` (:class:`_Plan`)."""
        plan = self._plans.get(intents)
        if plan is not None:
            return plan
        rate = self.config.comm.header_rate
        k = torch.arange(self.config.comm.budget + 1, device=self.device)
        q = self.header_bits(k, intents)
        hdr_bits = 2 * intents * q
        hdr_uses = torch.ceil(hdr_bits.to(torch.float64) / rate - 1e-9).to(torch.long)
        room = k - hdr_uses
        pay = (q > 0) & (room > 0)
        if self.codec is not None:
            count, bits, uses = self.codec.cell_plan(room.clamp_min(1))
        else:
            count = bits = uses = torch.zeros_like(k)
        count, bits, uses = (torch.where(pay, x, 0) for x in (count, bits, uses))
        f64 = [x.to(torch.float64) for x in (hdr_bits, hdr_uses, bits, uses)]
        inf = torch.tensor(torch.inf, dtype=torch.float64, device=self.device)
        hdr_need = torch.where(hdr_bits > 0, f64[0], inf)
        pay_need = torch.where(bits > 0, f64[2], inf)
        width = max(int(count.max()), 1)
        plan = _Plan(
            counts=torch.stack([q, hdr_uses, hdr_uses + uses, count, pay.long()], 1),
            bits=torch.stack([f64[0], f64[1], hdr_need, f64[2], f64[3], pay_need], 1),
            width=width,
            cols=torch.arange(width, device=self.device),
        )
        self._plans[intents] = plan
        return plan


@dataclass
class _Plan:
    """What a message of each budget ``k = 0..K`` puts on the air (:meth:`CommStack._plan`).

    Attributes:
        counts: long ``[K + 1, 5]``: header bits per intent coordinate, header channel uses,
            channel uses (header + payload), payload cells, whether a payload is sent (0/1).
        bits: float64 ``[K + 1, 6]``: header bits, header uses, header bits needed (``inf``
            for no header, so ``need <= C`` is the capacity rule's ``0 < b <= C``), payload
            bits, payload uses, payload bits needed (``inf`` for none).
        width: ``W``, the most payload cells of any budget.
        cols: ``arange(W)``.
    """

    counts: torch.Tensor
    bits: torch.Tensor
    width: int
    cols: torch.Tensor
