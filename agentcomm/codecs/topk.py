"""Send only the most informative cells, with their indices, digitally."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from agentcomm._checks import check_positive
from agentcomm.codecs.base import Codec, Message, Received
from agentcomm.codecs.intent import intent_weight
from agentcomm.codecs.quantized import UniformQuantizer, scatter_sent_levels

__all__ = ["TopKCodec"]


class TopKCodec(Codec):
    r"""The ``K`` cells that differ most from the receiver's prior, as (index, value) pairs.

    Encoder, for a budget of ``k`` complex channel uses at ``r`` bits per use:

    * each cell costs :math:`i + b` bits: an index of :math:`i = \lceil \log_2 n \rceil` bits
      and a value quantized to ``b`` bits (:class:`~agentcomm.codecs.quantized.UniformQuantizer`
      on ``range``);
    * :math:`K = \min(n, \lfloor \lfloor r k \rfloor / (i + b) \rfloor)`;
    * the score of cell ``j`` is :math:`|v_j - p_j|` (``p`` the prior), or, when the receiver
      announced an intent, :math:`|v_j - p_j| / (1 + d_j / s)` with ``d_j`` the distance from
      its goal (:func:`~agentcomm.codecs.intent.intent_weight`); the ``K`` highest scores are
      sent, ties broken by the smaller row-major index (stable sort);
    * bits :math:`= K (i + b) \le r k`; channel uses :math:`c = \lceil K (i+b) / r \rceil
      \le k`; side bits :math:`= 0` (``K`` follows from ``k``, known to both ends).

    Channel: the capacity rule (:mod:`agentcomm.codecs.base`); ``K = 0`` sends nothing and is
    not delivered.

    Receiver: the ``K`` sent cells take their quantized values, all others the prior;
    undelivered messages give the prior.

    Args:
        source_shape: ``S``.
        value_bits: ``b``, 1 to 32.
        rate: ``r``, information bits per complex channel use, > 0.
        range: ``(lo, hi)``, the value quantizer's range.
        intent_scale: ``s`` in cells, the distance at which the intent weight halves, > 0.
    """

    name = "topk"
    digital = True
    cell_codec = True

    def __init__(
        self,
        source_shape: Sequence[int],
        value_bits: int = 4,
        rate: float = 2.0,
        range: Sequence[float] = (-8.0, 8.0),
        intent_scale: float = 4.0,
    ) -> None:
        super().__init__(source_shape)
        self.quantizer = UniformQuantizer(value_bits, range, bits_name="value_bits")
        self.rate = float(check_positive("rate", rate))
        self.intent_scale = float(check_positive("intent_scale", intent_scale))
        self.index_bits = (self.n - 1).bit_length()
        self._params = {
            "value_bits": value_bits,
            "rate": self.rate,
            "range": range,
            "intent_scale": self.intent_scale,
        }

    @property
    def bits_per_cell(self) -> int:
        """``i + b``: index bits plus value bits."""
        return self.index_bits + self.quantizer.bits

    def _encode(
        self,
        values: torch.Tensor,
        budget: torch.Tensor,
        intent: torch.Tensor | None,
        prior: torch.Tensor,
    ) -> Message:
        flat_prior = prior.reshape(values.shape)
        score = (values - flat_prior).abs()
        if intent is not None:
            score = score * intent_weight(self.source_shape, intent, self.intent_scale).to(
                score.dtype
            )
        count, bits, uses = self.cell_plan(budget)
        longest = int(count.max())
        cells = torch.sort(score, dim=1, descending=True, stable=True).indices[:, :longest]
        return Message(
            channel_uses=uses,
            bits=bits,
            side_bits=torch.zeros_like(bits),
            prior=prior,
            payload={"cells": cells, "indices": self.quantizer.quantize(values.gather(1, cells))},
            context={"count": count},
        )

    def encode_cells(
        self,
        source: torch.Tensor,
        rows: torch.Tensor,
        width: int,
        goal: torch.Tensor | None,
        prior: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # The scores need every cell: the rows are gathered whole ([M, n]).
        values = source.reshape(source.shape[0], self.n)[rows]
        score = (values - prior).abs()
        if goal is not None:
            score = score * intent_weight(self.source_shape, goal, self.intent_scale).to(
                score.dtype
            )
        cells = torch.sort(score, dim=1, descending=True, stable=True).indices[:, :width]
        return cells, self.quantizer.reconstruct(values.gather(1, cells))

    def _decode(self, received: Received, prior: torch.Tensor) -> torch.Tensor:
        msg = received.message
        return scatter_sent_levels(
            prior,
            msg.payload["cells"],
            msg.context["count"],
            msg.payload["indices"],
            self.quantizer,
        )
