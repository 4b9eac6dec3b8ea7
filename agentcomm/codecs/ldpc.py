r"""The quantized codec sent over a real coded link: 5G NR LDPC + QAM, by link abstraction.

:class:`LDPCQAMCodec` encodes exactly as :class:`~agentcomm.codecs.quantized.QuantizedCodec`
(same cells, same bits and channel uses), but a digital message is delivered with the
probability a 5G NR LDPC code on 16-QAM decodes it, instead of by the capacity rule.
Running the LDPC decoder per message inside a world is far too slow, so the codec uses the
standard system-level *link abstraction*: a table of the block error rate (BLER) measured
with the Sionna chain (:class:`~agentcomm.channels.sionna_chain.LDPCQAMChain`) over AWGN,
versus :math:`E_s/N_0` and the information block length :math:`k`
(``experiments/benchmarks/ldpc_bler_table.py`` builds it; Sionna is needed only there).

MCS: LDPC code rate 1/2 on Gray-labelled 16-QAM, 2 information bits per complex channel
use (the quantized codec's default ``rate=2.0``); 20 belief-propagation iterations, exact
APP demapping. A message of ``b`` bits on ``c = ceil(b / 2)`` uses is one LDPC block of
``k = b`` information bits.

Delivery of ``M`` messages (:meth:`LDPCQAMCodec.deliver_digital`):

1. The capacity :math:`C = \sum_{i \le c} \log_2(1 + |h_i|^2 \mathrm{SNR})` of the uses, on
   the fade(s) each message sees: under block fading and AWGN one coefficient per message,
   the very one the capacity rule uses (:func:`~agentcomm.codecs.base.capacity_delivery`).
2. The effective SNR :math:`\mathrm{SNR}_\mathrm{eff} = 2^{C/c} - 1`: the AWGN SNR with the
   same capacity per use. Under block fading it is the instantaneous SNR
   :math:`|h|^2\,\mathrm{SNR}` itself; under fast fading it is the capacity-equivalent
   effective SNR mapping (MIESM with the Gaussian-input mutual information; Brueninghaus
   et al., PIMRC 2005), which maps the fades of one block to the AWGN SNR of the table.
3. :math:`\mathrm{BLER}(k, \mathrm{SNR}_\mathrm{eff})`, interpolated from the table
   (:class:`BLERTable`): linear in dB of :math:`\log_{10}\mathrm{BLER}` along the SNR, and
   linear in :math:`\log k` between the table's block lengths; clamped to the table's end
   values outside it (below the lowest SNR every block of the table failed; above the
   highest none did), and to its shortest and longest block: payloads under 12 bits (the
   5G NR LDPC minimum) take the 12-bit row.
4. One uniform draw :math:`u_m` per message from the ``generator`` passed in (``M`` draws
   every call, so the same seed gives the same outcome): delivered iff ``b > 0``,
   :math:`u_m \ge \mathrm{BLER}` and :math:`b \le C`.

The last condition keeps the accounting exact (``bits_delivered <= capacity_bits``): a
short block sometimes decodes on a fade whose capacity is below its rate (at the 4.77 dB
threshold of 2 bits per use the table's BLER is 0.63 for 12 bits, 0.96 for 128 bits and
>= 0.99 from 256 bits on), and such a delivery is refused. Under Rayleigh block fading at
5 to 15 dB mean SNR the cap removes under 0.2% of the deliveries of 116-bit payloads (the
default budget's) and 1 to 6% of those of 12-bit ones. A message therefore never arrives where the capacity rule
refuses it, and an LDPC block needs more SNR than the capacity rule: at equal bits, uses and
fades ``ldpc_qam`` delivers a subset of what ``quantized`` delivers.

A message's header (:mod:`envs.comm`) stays under the capacity rule; only the codec's
payload is judged by the LDPC abstraction. Payloads whose bits do not fill their last
use (odd ``b``) are looked up at rate 2 all the same (a slightly pessimistic BLER).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agentcomm.channels.base import Channel
from agentcomm.codecs.base import capacity_delivery
from agentcomm.codecs.quantized import QuantizedCodec

__all__ = ["BLER_TABLE_PATH", "BLERTable", "LDPCQAMCodec", "bler_at", "monotone_bler"]

#: The shipped table (package data).
BLER_TABLE_PATH = Path(__file__).parent / "data" / "ldpc_qam_bler.json"
#: BLERs are interpolated in the log domain; 0 (no block error measured) is stored as this
#: floor, and an interpolated value at the floor is returned as 0.
BLER_FLOOR = 1e-6
#: SNR step (dB) of the regular grid the table's rows are resampled on.
GRID_STEP_DB = 0.05


def monotone_bler(errors: Sequence[int] | np.ndarray, blocks: Sequence[int] | np.ndarray):
    """The block error rates ``errors / blocks`` fitted non-increasing along the points.

    Pool-adjacent-violators (the least-squares isotonic fit weighted by ``blocks``): a run of
    points whose measured rate increases with the SNR is replaced by its pooled rate.

    Args:
        errors, blocks: ``[P]`` counts per SNR point, in increasing SNR; ``blocks >= 1``.
    Returns:
        float64 ``[P]``, non-increasing.
    """
    errors = np.asarray(errors, dtype=np.float64)
    blocks = np.asarray(blocks, dtype=np.float64)
    if errors.shape != blocks.shape or errors.ndim != 1:
        raise ValueError(
            f"errors and blocks have shapes {errors.shape} and {blocks.shape}; expected equal [P]"
        )
    if (blocks < 1).any() or (errors < 0).any() or (errors > blocks).any():
        raise ValueError("expected 0 <= errors <= blocks and blocks >= 1 at every point")
    values: list[float] = []
    weights: list[float] = []
    sizes: list[int] = []
    for e, b in zip(errors, blocks, strict=True):
        values.append(e / b)
        weights.append(b)
        sizes.append(1)
        while len(values) > 1 and values[-2] < values[-1]:
            w = weights[-2] + weights[-1]
            v = (values[-2] * weights[-2] + values[-1] * weights[-1]) / w
            s = sizes[-2] + sizes[-1]
            del values[-1], weights[-1], sizes[-1]
            values[-1], weights[-1], sizes[-1] = v, w, s
    return np.repeat(np.asarray(values, dtype=np.float64), sizes)


def bler_at(snr_db: Sequence[float], bler: Sequence[float], target: float) -> float:
    """The SNR (dB) where a non-increasing BLER row first reaches ``target``, linear in dB of
    ``log10 BLER`` between points (the table's interpolation); NaN if it never does."""
    log_b = np.log10(np.maximum(np.asarray(bler, dtype=np.float64), BLER_FLOOR))
    snr = np.asarray(snr_db, dtype=np.float64)
    reached = np.nonzero(log_b <= math.log10(target))[0]
    if reached.size == 0:
        return float("nan")
    i = int(reached[0])
    if i == 0:
        return float(snr[0])
    x0, x1, y0, y1 = snr[i - 1], snr[i], log_b[i - 1], log_b[i]
    return float(x0 + (math.log10(target) - y0) * (x1 - x0) / (y1 - y0))


class BLERTable:
    r"""The measured BLER of the LDPC + QAM link, interpolated (module docstring).

    Rows (one per block length ``k``, each on its own SNR points) are resampled once onto
    a regular grid of :data:`GRID_STEP_DB` in :math:`\log_{10}\mathrm{BLER}`, holding the
    end values outside each row; :meth:`bler` interpolates bilinearly on that grid in
    (:math:`\log k`, SNR dB).

    Args:
        table: the parsed JSON table (``rows`` with ``k_info``, ``snr_db``, ``bler``, and
            ``mcs.rate_bits_per_use``).
    Raises:
        ValueError: a malformed table, or a row not non-increasing in SNR.
    """

    def __init__(self, table: dict[str, Any]) -> None:
        try:
            rows = sorted(table["rows"], key=lambda r: r["k_info"])
            self.rate = float(table["mcs"]["rate_bits_per_use"])
            ks = np.array([int(r["k_info"]) for r in rows], dtype=np.float64)
            snrs = [np.asarray(r["snr_db"], dtype=np.float64) for r in rows]
            blers = [np.asarray(r["bler"], dtype=np.float64) for r in rows]
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"malformed BLER table: {err!r}") from None
        if len(rows) < 2 or len(set(ks.tolist())) != len(ks):
            raise ValueError(f"a BLER table needs >= 2 distinct block lengths; got {ks.tolist()}")
        for k, s, b in zip(ks, snrs, blers, strict=True):
            if s.ndim != 1 or s.shape != b.shape or s.size < 2 or (np.diff(s) <= 0).any():
                raise ValueError(f"row k_info={k:g}: expected >= 2 points in increasing SNR")
            if (np.diff(b) > 0).any() or (b < 0).any() or (b > 1).any():
                raise ValueError(f"row k_info={k:g}: BLER must lie in [0, 1], non-increasing")
        self.meta = {key: value for key, value in table.items() if key != "rows"}
        #: The rows as stored (``k_info``, ``snr_db``, ``errors``, ``blocks``, ``bler``).
        self.rows = rows
        self.k_info = ks.astype(np.int64)
        lo = min(float(s[0]) for s in snrs)
        hi = max(float(s[-1]) for s in snrs)
        steps = math.ceil((hi - lo) / GRID_STEP_DB - 1e-9)
        self.snr_db = lo + GRID_STEP_DB * np.arange(steps + 1)
        floor = math.log10(BLER_FLOOR)
        self.log_bler = np.stack(
            [
                np.interp(self.snr_db, s, np.log10(np.maximum(b, BLER_FLOOR)))
                for s, b in zip(snrs, blers, strict=True)
            ]
        )
        self._floor = floor
        self._log_k = np.log(ks)
        self._tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def load(cls, path: str | Path | None = None) -> BLERTable:
        """The table at ``path`` (default: the shipped :data:`BLER_TABLE_PATH`), cached."""
        return _load(str(BLER_TABLE_PATH if path is None else Path(path).resolve()))

    def bler(self, k_info: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
        """float64 ``[M]``: the BLER of blocks of ``k_info [M]`` information bits at the AWGN
        SNR ``snr_db [M]`` (dB; ``-inf`` allowed), interpolated (class docstring)."""
        device = snr_db.device
        key = str(device)
        if key not in self._tensors:
            self._tensors[key] = (
                torch.as_tensor(self._log_k, dtype=torch.float64, device=device),
                torch.as_tensor(self.log_bler, dtype=torch.float64, device=device),
            )
        log_k_grid, table = self._tensors[key]
        n_k, n_s = table.shape
        log_k = torch.log(
            k_info.to(torch.float64).clamp(float(self.k_info[0]), float(self.k_info[-1]))
        )
        i_k = (torch.searchsorted(log_k_grid, log_k, right=True) - 1).clamp(0, n_k - 2)
        w_k = (log_k - log_k_grid[i_k]) / (log_k_grid[i_k + 1] - log_k_grid[i_k])
        pos = (snr_db.to(torch.float64) - float(self.snr_db[0])) / GRID_STEP_DB
        pos = pos.clamp(0.0, float(n_s - 1))
        i_s = pos.floor().long().clamp(max=n_s - 2)
        w_s = pos - i_s
        flat = table.reshape(-1)
        base = i_k * n_s + i_s

        def at(offset: int) -> torch.Tensor:
            return flat.take(base + offset)

        low = at(0) * (1 - w_s) + at(1) * w_s
        high = at(n_s) * (1 - w_s) + at(n_s + 1) * w_s
        log_bler = low * (1 - w_k) + high * w_k
        bler = torch.pow(10.0, log_bler)
        return torch.where(log_bler <= self._floor + 1e-9, 0.0, bler)

    def snr_at(self, k_info: int, target: float) -> float:
        """The SNR (dB) where the interpolated BLER of ``k_info``-bit blocks reaches
        ``target`` (within :data:`GRID_STEP_DB` / 100), NaN if never on the grid."""
        grid = torch.as_tensor(
            np.arange(self.snr_db[0], self.snr_db[-1] + 1e-9, GRID_STEP_DB / 100)
        )
        b = self.bler(torch.full_like(grid, float(k_info)), grid)
        reached = torch.nonzero(b <= target)
        return float(grid[int(reached[0])]) if reached.numel() else float("nan")


@functools.lru_cache(maxsize=8)
def _load(path: str) -> BLERTable:
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ValueError(f"table={path!r} cannot be read: {err}") from None
    try:
        table = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"table={path!r} is not JSON: {err}") from None
    if not isinstance(table, dict):
        raise ValueError(f"table={path!r} is not a BLER table (a JSON object with rows)")
    return BLERTable(table)


class LDPCQAMCodec(QuantizedCodec):
    r"""The quantized codec's encoder, delivered by 5G NR LDPC + 16-QAM (module docstring).

    Encoder and receiver: :class:`~agentcomm.codecs.quantized.QuantizedCodec` (``v`` cells
    of ``b`` bits, ``v b`` bits on ``ceil(v b / r)`` channel uses). Channel: a message is
    delivered with probability :math:`1 - \mathrm{BLER}(vb, \mathrm{SNR}_\mathrm{eff})`
    from the measured table, and never above the capacity of its uses.

    Args:
        source_shape: ``S``.
        bits_per_value: ``b``, 1 to 32.
        rate: ``r``, information bits per channel use; must be the table's MCS rate (2.0:
            code rate 1/2 on 16-QAM).
        range: ``(lo, hi)``, the quantizer range.
        table: path of a BLER table JSON (``None``: the shipped one).
    Raises:
        ValueError: a ``rate`` other than the table's, or an unreadable or malformed table.
    """

    name = "ldpc_qam"

    def __init__(
        self,
        source_shape: Sequence[int],
        bits_per_value: int = 4,
        rate: float = 2.0,
        range: Sequence[float] = (-8.0, 8.0),
        table: str | None = None,
    ) -> None:
        if table is not None and not isinstance(table, (str, Path)):
            raise ValueError(f"table={table!r} is not allowed; expected a path or None")
        super().__init__(source_shape, bits_per_value=bits_per_value, rate=rate, range=range)
        self.table = BLERTable.load(table)
        if abs(self.rate - self.table.rate) > 1e-9:
            raise ValueError(
                f"rate={rate!r} is not allowed: the LDPC BLER table is measured at "
                f"{self.table.rate:g} bits per channel use ({self.table.meta['mcs']['code']}, "
                f"code rate {self.table.meta['mcs']['code_rate']:g}, "
                f"{self.table.meta['mcs']['modulation']}); allowed rate={self.table.rate:g}"
            )
        if table is not None:
            self._params["table"] = str(table)

    def deliver_digital(
        self,
        bits: torch.Tensor,
        channel_uses: torch.Tensor,
        channel: Channel,
        snr_db: torch.Tensor,
        generator: torch.Generator | None,
        h: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The LDPC link abstraction (module docstring, steps 1-4); arguments and returns as
        :meth:`Codec.deliver_digital <agentcomm.codecs.base.Codec.deliver_digital>`."""
        within_capacity, capacity = capacity_delivery(
            bits, channel_uses, channel, snr_db, generator, h
        )
        uses = channel_uses.to(torch.float64)
        per_use = torch.where(uses > 0, capacity / uses.clamp_min(1.0), 0.0)
        snr_eff_db = 10.0 * torch.log10(torch.expm1(per_use * math.log(2.0)))
        bler = self.table.bler(bits, snr_eff_db)
        u = torch.rand(bits.shape[0], generator=generator, dtype=torch.float64, device=bits.device)
        return within_capacity & (u >= bler), capacity
