r"""Link budgets between agents (and to a fusion centre) and the thresholded link graph.

Shape legend: ``B`` worlds, ``N`` agents. Positions are in metres, ``[B, N, 2]``.

Every agent pair's SNR comes from a path-loss model (duck-typed: any object with
``snr_db(distance, tx_power_dbm, noise_floor_dbm, generator=None)``, e.g.
:class:`agentcomm.channels.pathloss.LogDistancePathLoss`):

.. math:: \mathrm{SNR}_{ij}\,[\mathrm{dB}] = P_{tx,i} - \mathrm{PL}(d_{ij}) - P_{\mathrm{noise}}.

**Reciprocity.** The shadowing draw of each *unordered* pair ``i < j`` serves both
directions: the propagation channel is reciprocal, so shadowing must not differ between
``i -> j`` and ``j -> i``. The SNR matrix is symmetric whenever every agent transmits at the
same power. The batched world computes its links with the same function
(:func:`_link_snr_db`, the unvalidated core of :func:`link_snr_db`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from agentcomm._checks import check_range, check_tensor

__all__ = ["LinkBudget", "PathLossModel", "adjacency", "link_snr_db", "pairwise_distance"]

_FLOAT_DTYPES = (torch.float32, torch.float64)


class PathLossModel(Protocol):
    """What :func:`link_snr_db` needs from a path-loss model."""

    def snr_db(
        self,
        distance: torch.Tensor,
        tx_power_dbm: float | torch.Tensor,
        noise_floor_dbm: float | torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Received SNR in dB for each distance (metres), any shape."""
        ...


@dataclass
class LinkBudget:
    """SNR of every link in a batch of worlds.

    Attributes:
        peer_snr_db: float ``[B, N, N]``, dB; ``[b, i, j]`` is the SNR at receiver ``j`` of a
            transmission from ``i``; the diagonal is ``-inf`` (no self links).
        distance: float ``[B, N, N]`` pairwise distances, metres.
        fc_snr_db: float ``[B, N]``, dB, the uplink SNR agent ``i`` -> fusion centre (the
            shadowing draw is shared with the downlink, which has the same SNR when the centre
            transmits at the agent's power); ``None`` without a fusion centre.
        fc_distance: float ``[B, N]`` agent-to-centre distances, metres; ``None`` without one.
    """

    peer_snr_db: torch.Tensor
    distance: torch.Tensor
    fc_snr_db: torch.Tensor | None = None
    fc_distance: torch.Tensor | None = None


def pairwise_distance(pos: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between all agent pairs.

    Args:
        pos: float ``[B, N, 2]`` positions (metres).
    Returns:
        float ``[B, N, N]``, symmetric, exactly 0 on the diagonal.
    """
    check_tensor("pos", pos, shape=(None, None, 2), dtypes=_FLOAT_DTYPES, finite=True)
    # Explicit differences rather than torch.cdist: above 25 points cdist switches to a matmul
    # formulation that is not exactly symmetric and, in float32 at 1 km scale, leaves up to
    # ~0.5 m on the diagonal.
    return torch.linalg.vector_norm(pos.unsqueeze(2) - pos.unsqueeze(1), dim=-1)


def _tx_power(
    tx_power_dbm: float | torch.Tensor, b: int, n: int, like: torch.Tensor
) -> torch.Tensor:
    if isinstance(tx_power_dbm, torch.Tensor):
        check_tensor("tx_power_dbm", tx_power_dbm, dtypes=_FLOAT_DTYPES, finite=True)
        try:
            return torch.broadcast_to(tx_power_dbm.to(like.dtype), (b, n))
        except RuntimeError as err:
            raise ValueError(
                f"tx_power_dbm has shape {tuple(tx_power_dbm.shape)}; expected a scalar or a "
                f"tensor broadcastable to [B, N] = {[b, n]}"
            ) from err
    check_range("tx_power_dbm", tx_power_dbm, -100.0, 100.0)
    return torch.full((b, n), float(tx_power_dbm), dtype=like.dtype, device=like.device)


def link_snr_db(
    pos: torch.Tensor,
    pathloss: PathLossModel,
    tx_power_dbm: float | torch.Tensor,
    noise_floor_dbm: float,
    generator: torch.Generator | None = None,
    fc_pos: torch.Tensor | None = None,
) -> LinkBudget:
    """SNR of every agent-to-agent link, and of each agent's link to a fusion centre.

    Args:
        pos: float ``[B, N, 2]`` agent positions, metres.
        pathloss: a path-loss model with ``snr_db`` (see the module docstring).
        tx_power_dbm: transmit power in dBm, a float (all agents) or a tensor broadcastable to
            ``[B, N]`` (per transmitter: power control breaks the SNR symmetry, not the
            shadowing reciprocity).
        noise_floor_dbm: receiver noise power over the signal bandwidth, dBm.
        generator: source of the shadowing draws (required by models with shadowing).
        fc_pos: float ``[2]`` or ``[B, 2]`` fusion-centre position, metres; ``None`` for none.
    Returns:
        :class:`LinkBudget`.
    """
    dist = pairwise_distance(pos)
    b, n = pos.shape[:2]
    check_range("noise_floor_dbm", noise_floor_dbm, -250.0, 100.0)
    power = _tx_power(tx_power_dbm, b, n, pos)
    if fc_pos is not None:
        check_tensor("fc_pos", fc_pos, dtypes=_FLOAT_DTYPES, finite=True)
        if fc_pos.shape not in ((2,), (b, 2)):
            raise ValueError(
                f"fc_pos has shape {tuple(fc_pos.shape)}; expected [2] or [B, 2] = {[b, 2]}"
            )
        fc_pos = fc_pos.to(pos.dtype)
    noise = torch.tensor(float(noise_floor_dbm), dtype=pos.dtype, device=pos.device)
    shadowed = getattr(pathloss, "shadowing_std_db", 1.0) != 0
    peer, fc = _link_snr_db(pos, fc_pos, pathloss.snr_db, power, noise, generator, shadowed)
    fc_dist = (
        None
        if fc_pos is None
        else torch.linalg.vector_norm(pos - fc_pos.expand(b, 2).unsqueeze(1), dim=-1)
    )
    return LinkBudget(peer_snr_db=peer, distance=dist, fc_snr_db=fc, fc_distance=fc_dist)


def _link_snr_db(
    pos: torch.Tensor,
    fc_pos: torch.Tensor | None,
    snr_db: Callable[..., torch.Tensor],
    tx_power_dbm: torch.Tensor,
    noise_floor_dbm: torch.Tensor,
    generator: torch.Generator | None,
    shadowed: bool,
    scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    r"""The link SNRs of :func:`link_snr_db` without validation (the batched world calls it
    every step with inputs valid by construction).

    Args:
        pos: float ``[B, N, 2]`` positions, in units of ``scale`` metres.
        fc_pos: float ``[2]`` or ``[B, 2]`` fusion centre in the same units, or ``None``.
        snr_db: ``snr_db(distance_m, tx_power_dbm, noise_floor_dbm, generator)`` of a path-loss
            model.
        tx_power_dbm: a 0-d tensor (every agent), ``[B, 1]`` (one per world, every agent of
            the world) or ``[B, N]`` (per transmitter), dBm.
        noise_floor_dbm: a 0-d tensor, dBm.
        shadowed: whether the model draws shadowing (without it, one pass with no draws
            serves the peers and the centre, ``[B, N, N + 1]``: the same elementwise
            arithmetic as two).
        scale: metres per unit of ``pos``.
    Returns:
        ``peer [B, N, N]`` dB (row: transmitter; diagonal ``-inf``) and ``fc [B, N]`` dB (or
        ``None`` without a centre). Shadowing is drawn for every ordered pair and the draw
        of ``i < j`` serves both directions (reciprocity); the centre's links draw after.
    """
    b, n = pos.shape[:2]
    eye = _eye(n, pos.device)
    per_tx = tx_power_dbm.ndim > 0
    row_power = tx_power_dbm.unsqueeze(-1) if per_tx else tx_power_dbm
    if not shadowed and fc_pos is not None:
        ends = torch.cat([pos, fc_pos.expand(b, 2).unsqueeze(1)], dim=1)
        dist = torch.linalg.vector_norm(pos.unsqueeze(2) - ends.unsqueeze(1), dim=-1) * scale
        snr = snr_db(dist, row_power, noise_floor_dbm, generator)
        return snr[..., :n].masked_fill(eye, -math.inf), snr[..., n]
    dist = torch.linalg.vector_norm(pos.unsqueeze(2) - pos.unsqueeze(1), dim=-1) * scale
    zero = torch.zeros((), dtype=pos.dtype, device=pos.device)
    # With per-transmitter powers the (reciprocal) loss is made symmetric before each
    # row's power is added.
    peer = snr_db(dist, zero if per_tx else tx_power_dbm, noise_floor_dbm, generator)
    if shadowed:
        peer = torch.triu(peer, 1)
        peer = peer + peer.transpose(1, 2)
    if per_tx:
        peer = peer + row_power
    peer = peer.masked_fill(eye, -math.inf)
    if fc_pos is None:
        return peer, None
    fc_dist = torch.linalg.vector_norm(pos - fc_pos.expand(b, 2).unsqueeze(1), dim=-1) * scale
    return peer, snr_db(fc_dist, tx_power_dbm, noise_floor_dbm, generator)


@functools.lru_cache(maxsize=32)
def _eye(n: int, device: torch.device) -> torch.Tensor:
    """bool ``[n, n]`` identity, built once per size and device (read only)."""
    return torch.eye(n, dtype=torch.bool, device=device)


def adjacency(snr_db: torch.Tensor, threshold_db: float) -> torch.Tensor:
    """The link graph: an edge where the SNR reaches the threshold in *both* directions.

    Requiring both directions makes the graph undirected (a link that cannot carry the
    reply, acknowledgement or consensus exchange back is no link); with reciprocal SNR
    (:func:`link_snr_db` at equal powers) the two conditions coincide.

    Args:
        snr_db: float ``[B, N, N]``, dB (diagonal ignored).
        threshold_db: the minimum SNR for a usable link, dB.
    Returns:
        bool ``[B, N, N]``: symmetric, False on the diagonal.
    """
    check_tensor("snr_db", snr_db, ndim=3, dtypes=_FLOAT_DTYPES)
    n = snr_db.shape[-1]
    if snr_db.shape[-2] != n:
        raise ValueError(f"snr_db has shape {tuple(snr_db.shape)}; expected [B, N, N]")
    check_range("threshold_db", threshold_db, None, None)
    eye = torch.eye(n, dtype=torch.bool, device=snr_db.device)
    return _adjacency(snr_db, threshold_db) & ~eye


def _adjacency(snr_db: torch.Tensor, threshold_db: float) -> torch.Tensor:
    """:func:`adjacency` without validation, for an SNR matrix whose diagonal is ``-inf``
    (:func:`_link_snr_db`), so no self loop can pass the threshold."""
    ok = snr_db >= threshold_db
    return ok & ok.transpose(-1, -2)
