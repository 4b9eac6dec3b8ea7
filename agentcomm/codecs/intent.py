r"""Intent-aware selection: send first the part of a belief the receiver cares about.

A receiver announces its intent as a goal point; the sender ranks the cells of its
belief grid by their distance from that point. Cell ``(i, j)`` of an ``(H, W)`` grid
sits at coordinates ``(i, j)`` (row, column; integer cell centres), and the goal
``g = (g_row, g_col)`` is a real point in the same coordinates (it may lie off the
grid). The distance is Euclidean in cells,

.. math:: d_{ij} = \sqrt{(i - g_\mathrm{row})^2 + (j - g_\mathrm{col})^2}.

Codecs use it as an order (quantized and linear codecs send cells nearest the goal
first) or as a weight on informativeness (top-k scores
:math:`|v - v_\mathrm{prior}| / (1 + d / s)`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch

from agentcomm._checks import check_positive, check_tensor

__all__ = ["intent_distance", "intent_order", "intent_weight", "selection_order"]


def _squared_distance(source_shape: Sequence[int], intent: torch.Tensor) -> torch.Tensor:
    if len(source_shape) != 2 or any(int(s) < 1 for s in source_shape):
        raise ValueError(
            f"source_shape={tuple(source_shape)!r} is not allowed; intent needs a grid (H, W)"
        )
    check_tensor("intent", intent, shape=(None, 2), finite=True)
    if not intent.is_floating_point():
        raise ValueError(f"intent has dtype {intent.dtype}; expected a floating dtype")
    h, w = (int(s) for s in source_shape)
    rows = torch.arange(h, dtype=intent.dtype, device=intent.device)
    cols = torch.arange(w, dtype=intent.dtype, device=intent.device)
    d_row = (rows.unsqueeze(0) - intent[:, :1]).square()  # [M, H]
    d_col = (cols.unsqueeze(0) - intent[:, 1:]).square()  # [M, W]
    return (d_row.unsqueeze(2) + d_col.unsqueeze(1)).reshape(intent.shape[0], h * w)


def intent_distance(source_shape: Sequence[int], intent: torch.Tensor) -> torch.Tensor:
    """Distance of every cell from the announced goal.

    Args:
        source_shape: ``(H, W)``.
        intent: float ``[M, 2]``, goal points ``(row, col)`` in cell coordinates.
    Returns:
        ``[M, H*W]`` (row-major cells), distances in cells, the dtype of ``intent``.
    """
    return _squared_distance(source_shape, intent).sqrt()


def intent_order(source_shape: Sequence[int], intent: torch.Tensor) -> torch.Tensor:
    """Cells ranked by distance from the goal, nearest first.

    Ties (cells at the same distance) are broken by the row-major index, smaller first:
    the sort is stable and runs on squared distances, which are exact for goals on the
    grid, so the order does not depend on square-root round-off.

    Args:
        source_shape: ``(H, W)``.
        intent: float ``[M, 2]``, goal points ``(row, col)``.
    Returns:
        int64 ``[M, H*W]``: a permutation of ``range(H*W)`` per message.
    """
    squared = _squared_distance(source_shape, intent)
    h, w = (int(s) for s in source_shape)
    on_cell = (
        (intent == intent.round()).all()
        & (intent[:, 0] >= 0).all()
        & (intent[:, 0] < h).all()
        & (intent[:, 1] >= 0).all()
        & (intent[:, 1] < w).all()
    )
    if bool(on_cell) and intent.shape[0] > 0 and (h * w) ** 2 <= _TABLE_MAX_ENTRIES:
        # Goals at cell centres (what the environments send) take their order from a table
        # built by the very same sort, once per grid: a gather instead of an [M, H*W] sort.
        # The table is quadratic in the cells, so large grids sort per message instead
        # (memory linear in the cells; the same stable sort, so the same order).
        table = _cell_order_table(h, w, intent.dtype, str(intent.device))
        cell = intent[:, 0].long() * w + intent[:, 1].long()
        return table[cell]
    return torch.sort(squared, dim=1, stable=True).indices


#: Largest table of :func:`_cell_order_table` (entries, int64): 64 x 64 grids (128 MiB).
#: A 256 x 256 grid would need 34 GB.
_TABLE_MAX_ENTRIES = (64 * 64) ** 2


@functools.lru_cache(maxsize=8)
def _cell_order_table(h: int, w: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    """int64 ``[H*W, H*W]``: :func:`intent_order` for a goal at each cell centre."""
    rows, cols = torch.meshgrid(
        torch.arange(h, dtype=dtype, device=device),
        torch.arange(w, dtype=dtype, device=device),
        indexing="ij",
    )
    goals = torch.stack([rows.reshape(-1), cols.reshape(-1)], 1)
    return torch.sort(_squared_distance((h, w), goals), dim=1, stable=True).indices


def intent_weight(source_shape: Sequence[int], intent: torch.Tensor, scale: float) -> torch.Tensor:
    r"""Relevance weight :math:`1 / (1 + d_{ij} / s)` of every cell.

    Args:
        source_shape: ``(H, W)``.
        intent: float ``[M, 2]``, goal points ``(row, col)``.
        scale: ``s`` in cells, the distance at which the weight halves.
    Returns:
        ``[M, H*W]`` in ``(0, 1]``, 1 at the goal.
    """
    check_positive("scale", scale)
    return 1.0 / (1.0 + intent_distance(source_shape, intent) / scale)


def selection_order(
    source_shape: Sequence[int],
    intent: torch.Tensor | None,
    batch: int,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The order in which codecs send cells: :func:`intent_order` when an intent is given,
    row-major otherwise.

    Args:
        source_shape: ``S`` (a grid ``(H, W)`` when ``intent`` is given).
        intent: float ``[M, 2]`` goal points ``(row, col)``, or ``None``.
        batch: ``M``.
        device: where the row-major order lives.
    Returns:
        int64 ``[M, n]``, ``n = prod(S)``, a permutation per message.
    """
    if intent is not None:
        return intent_order(source_shape, intent)
    n = math.prod(source_shape)
    return torch.arange(n, device=device).expand(batch, n)
