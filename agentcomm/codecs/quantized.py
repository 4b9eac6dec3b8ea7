"""Uniform scalar quantization sent digitally under the capacity rule."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from agentcomm._checks import check_positive, check_range
from agentcomm.beliefs.grid import _take
from agentcomm.codecs.base import Codec, Message, Received
from agentcomm.codecs.intent import intent_order, selection_order

__all__ = ["QuantizedCodec", "UniformQuantizer", "scatter_sent_levels"]


class UniformQuantizer:
    r"""Midrise uniform quantizer with :math:`L = 2^b` levels on ``[lo, hi]``.

    Step :math:`\Delta = (hi - lo) / L`; index :math:`q = \mathrm{clip}(\lfloor (v - lo)/\Delta
    \rfloor, 0, L-1)`; reconstruction :math:`\hat v = lo + (q + \tfrac12)\Delta`, so
    :math:`|v - \hat v| \le \Delta/2` for :math:`v \in [lo, hi]`; values outside are clipped
    to the outermost level.

    Args:
        bits: ``b``, 1 to 32.
        value_range: ``(lo, hi)`` with ``lo < hi``.
        bits_name: the parameter name error messages use for ``bits``.
    """

    def __init__(
        self, bits: int, value_range: Sequence[float], *, bits_name: str = "bits_per_value"
    ) -> None:
        if isinstance(bits, bool) or not isinstance(bits, int):
            raise ValueError(f"{bits_name}={bits!r} is not allowed; expected an int in [1, 32]")
        check_range(bits_name, bits, 1, 32)
        if (
            not isinstance(value_range, Sequence)
            or isinstance(value_range, (str, bytes))
            or len(value_range) != 2
        ):
            raise ValueError(f"range={value_range!r} is not allowed; expected (lo, hi)")
        lo = check_range("range[0]", float(value_range[0]))
        hi = check_range("range[1]", float(value_range[1]))
        if not lo < hi:
            raise ValueError(f"range={value_range!r} is not allowed; expected lo < hi")
        self.bits = bits
        self.levels = 2**bits
        self.lo, self.hi = lo, hi
        self.step = (hi - lo) / self.levels

    def quantize(self, values: torch.Tensor) -> torch.Tensor:
        """int64 indices in ``[0, 2^b)``, same shape as ``values``."""
        q = torch.floor((values.to(torch.float64) - self.lo) / self.step)
        return q.clamp(0, self.levels - 1).to(torch.int64)

    def dequantize(self, indices: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Reconstruction levels (cell midpoints) of ``indices``, in ``dtype``."""
        return (self.lo + (indices.to(torch.float64) + 0.5) * self.step).to(dtype)

    def reconstruct(self, values: torch.Tensor) -> torch.Tensor:
        """``dequantize(quantize(values), values.dtype)``, the same values bit for bit: the
        quantization's float64 arithmetic in place on one copy, and the levels from a
        table (up to 2**16 levels), which is several times faster on large batches."""
        if self.bits > _TABLE_MAX_BITS:
            return self.dequantize(self.quantize(values), values.dtype)
        x = values.to(torch.float64, copy=True)
        index = x.sub_(self.lo).div_(self.step).floor_().clamp_(0, self.levels - 1).long()
        key = (str(values.device), values.dtype)
        tables = self.__dict__.setdefault("_levels", {})
        if key not in tables:
            tables[key] = self.dequantize(
                torch.arange(self.levels, device=values.device), values.dtype
            )
        return _take(tables[key], index)


#: :meth:`UniformQuantizer.reconstruct` tables the levels of up to 2**16.
_TABLE_MAX_BITS = 16


def scatter_sent_levels(
    prior: torch.Tensor,
    cells: torch.Tensor,
    count: torch.Tensor,
    indices: torch.Tensor,
    quantizer: UniformQuantizer,
) -> torch.Tensor:
    """What the digital cell codecs' receivers decode: ``prior [M, n]`` with, per row, the
    first ``count [M]`` of ``cells [M, K]`` set to the reconstruction levels of their
    ``indices [M, K]`` (the rest of ``cells`` is padding and keeps the prior)."""
    sent = torch.arange(cells.shape[1], device=cells.device) < count.unsqueeze(1)
    levels = quantizer.dequantize(indices, prior.dtype)
    return prior.scatter(1, cells, torch.where(sent, levels, prior.gather(1, cells)))


class QuantizedCodec(Codec):
    r"""Uniform ``b``-bit quantization of the values, sent digitally at ``r`` bits per use.

    Encoder, for a budget of ``k`` complex channel uses:

    * bit budget :math:`\lfloor r k \rfloor`;
    * values sent :math:`v = \min(n, \lfloor \lfloor r k \rfloor / b \rfloor)`, the first
      ``v`` cells in row-major order, or in :func:`~agentcomm.codecs.intent.intent_order`
      (nearest the receiver's goal first) when an intent is given;
    * bits :math:`= v b \le r k`; channel uses :math:`c = \lceil v b / r \rceil \le k`;
      side bits :math:`= 0`. Sender and receiver both know ``k``, ``r``, ``b`` and the
      order, so no header is needed.

    Channel: the capacity rule (:mod:`agentcomm.codecs.base`): delivered iff
    :math:`v b / c \le \log_2(1 + \mathrm{SNR}_\mathrm{inst})`. A budget too small for
    one value sends nothing (``v = 0``, ``c = 0``, not delivered).

    Receiver: delivered messages give the ``v`` sent cells at their quantization level
    (error :math:`\le \Delta/2` inside the range) and the prior elsewhere; undelivered
    messages give the prior.

    Args:
        source_shape: ``S``.
        bits_per_value: ``b``, 1 to 32.
        rate: ``r``, information bits per complex channel use (the code rate times the bits
            per symbol of the modulation), > 0.
        range: ``(lo, hi)``, the quantizer range (e.g. the environment's log-odds clip).
    """

    name = "quantized"
    digital = True
    cell_codec = True

    def __init__(
        self,
        source_shape: Sequence[int],
        bits_per_value: int = 4,
        rate: float = 2.0,
        range: Sequence[float] = (-8.0, 8.0),
    ) -> None:
        super().__init__(source_shape)
        self.quantizer = UniformQuantizer(bits_per_value, range)
        self.rate = float(check_positive("rate", rate))
        self._params = {"bits_per_value": bits_per_value, "rate": self.rate, "range": range}
        self._goal_tables: dict[tuple[int, str], torch.Tensor] = {}

    @property
    def bits_per_cell(self) -> int:
        """``b``: the value bits of one cell."""
        return self.quantizer.bits

    def _encode(
        self,
        values: torch.Tensor,
        budget: torch.Tensor,
        intent: torch.Tensor | None,
        prior: torch.Tensor,
    ) -> Message:
        m = values.shape[0]
        count, bits, uses = self.cell_plan(budget)
        longest = int(count.max())
        order = selection_order(self.source_shape, intent, m, values.device)[:, :longest]
        indices = self.quantizer.quantize(values.gather(1, order))
        return Message(
            channel_uses=uses,
            bits=bits,
            side_bits=torch.zeros_like(bits),
            prior=prior,
            payload={"indices": indices},
            context={"order": order, "count": count},
        )

    def _decode(self, received: Received, prior: torch.Tensor) -> torch.Tensor:
        msg = received.message
        return scatter_sent_levels(
            prior,
            msg.context["order"],
            msg.context["count"],
            msg.payload["indices"],
            self.quantizer,
        )

    def encode_cells(
        self,
        source: torch.Tensor,
        rows: torch.Tensor,
        width: int,
        goal: torch.Tensor | None,
        prior: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        order = self._goal_order(goal, rows.shape[0], width, source.device)
        values = _take(source, (rows * self.n).unsqueeze(1) + order)
        return order, self.quantizer.reconstruct(values)

    def _goal_order(
        self, goal: torch.Tensor | None, m: int, width: int, device: torch.device
    ) -> torch.Tensor:
        """int64 ``[M, W]``: the first ``W`` cells of :func:`selection_order` (goals on cell
        centres), from a table of every goal cell's first ``W`` cells, per width and device,
        built once by :func:`~agentcomm.codecs.intent.intent_order` itself (one gather per
        exchange, an ``index_select`` by the goal's flat cell)."""
        if goal is None:
            return torch.arange(width, device=device).expand(m, width)
        h, w = self.source_shape
        if h * w > _GOAL_TABLE_MAX_CELLS:
            return intent_order(self.source_shape, goal)[:, :width]
        key = (width, str(device))
        table = self._goal_tables.get(key)
        if table is None:
            rows, cols = torch.meshgrid(
                torch.arange(h, dtype=goal.dtype, device=device),
                torch.arange(w, dtype=goal.dtype, device=device),
                indexing="ij",
            )
            goals = torch.stack([rows.reshape(-1), cols.reshape(-1)], 1)
            table = intent_order(self.source_shape, goals)[:, :width].contiguous()
            self._goal_tables[key] = table
        row, col = goal.long().unbind(1)
        return table.index_select(0, row * w + col)


#: Grids above this many cells sort per message instead of keeping a goal table
#: (:meth:`QuantizedCodec._goal_order`; the order is the same stable sort either way).
_GOAL_TABLE_MAX_CELLS = 64 * 64
