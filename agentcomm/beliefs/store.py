r"""Belief stores: what each agent of a batched world believes, how it is sent and fused.

Shape legend: ``B`` worlds, ``N`` agents, ``H = W`` grid side, ``M`` messages of one
exchange, ``W_c`` the most cells a cell codec sends in one message, ``S`` the shape of one
belief payload.

A store holds every belief of a batch of worlds (each agent's, and the fusion centre's)
behind one small protocol (:class:`BeliefStore`), so the world's step does not depend on
the kind of belief: it asks the store for payloads, hands it what arrived, and asks for the
fused result. Two kinds exist:

* :class:`LogOddsGridStore`: occupancy grids in log-odds (:mod:`agentcomm.beliefs.grid`),
  fused by the rules of :mod:`agentcomm.beliefs.fusion`;
* Gaussian tracks (a scenario's Kalman filters), built on
  :mod:`agentcomm.beliefs.gaussian` and :func:`~agentcomm.beliefs.fusion.covariance_intersection`
  by the scenario that owns them.

What arrives is an exchange (:class:`Deliveries`): per message its world, sender and
receiver, whether the payload arrived, and the decoded payload, dense ``[M, *S]``
(``estimate``, ``informative``) and, for cell codecs, sparse ``[M, W_c]`` (``cells``,
``values``, ``informative_cells``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import torch

from agentcomm.beliefs.fusion import (
    _add_increments,
    _fuse_received_logodds,
    _logodds_product,
    _most_confident,
    _rebase_logodds,
)
from agentcomm.beliefs.grid import (
    _LN2,
    WindowObservation,
    _add_window_increment,
    _constant,
    _take,
    entropy,
    kl_to_truth,
    sensor_increments,
)

__all__ = ["BeliefStore", "Deliveries", "LogOddsGridStore", "NoBeliefs", "Payload"]

#: What a store sends: ``[M, *S]``, or ``(source [R, *S], rows [M])`` for message ``m``
#: carrying ``source[rows[m]]`` (no ``[M, *S]`` copy), or ``None`` (intents only).
Payload = torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None


class Deliveries(Protocol):
    """The messages of one exchange, as a store reads them (fields documented above)."""

    env: torch.Tensor
    src: torch.Tensor
    dst: torch.Tensor
    payload_ok: torch.Tensor
    cells: torch.Tensor | None
    values: torch.Tensor | None
    informative_cells: torch.Tensor | None

    @property
    def estimate(self) -> torch.Tensor: ...

    @property
    def informative(self) -> torch.Tensor: ...


class BeliefStore(Protocol):
    """The beliefs of a batched world: the protocol the world's step uses.

    Attributes:
        prior: the value a cell or entry decodes to when nothing about it arrived.
        payload_shape: ``S``, the shape of one message's payload, or ``None``.
        payload_range: ``(low, high)`` of every payload value (a quantizer's range).
        needs_weights: whether peer fusion takes consensus weights ``[B, N, N]``.
    """

    prior: float
    payload_shape: tuple[int, ...] | None
    payload_range: tuple[float, float]
    needs_weights: bool

    def peer_payload(self, env: torch.Tensor, src: torch.Tensor) -> Payload:
        """What agent ``src [M]`` of world ``env [M]`` sends each neighbour."""
        ...

    def uplink_payload(self, env: torch.Tensor, src: torch.Tensor) -> Payload:
        """What agent ``src [M]`` sends the fusion centre."""
        ...

    def centre_payload(self) -> torch.Tensor | None:
        """``[B, *S]``: what the fusion centre sends down."""
        ...

    def codec_goal(self, goal: torch.Tensor) -> torch.Tensor | None:
        """Receivers' goals ``[M, 2]`` as an intent-aware codec takes them, or ``None``."""
        ...

    def receive_peer(self, ex: Deliveries, weights: torch.Tensor | None) -> None:
        """Fuse peer messages into their receivers' beliefs."""
        ...

    def receive_uplink(self, ex: Deliveries) -> None:
        """Store the uplinks that reached the fusion centre."""
        ...

    def receive_downlink(self, ex: Deliveries) -> None:
        """Fuse the centre's downlinks into their receivers' beliefs."""
        ...

    def reset(self, mask: torch.Tensor) -> None:
        """Back to the prior in the worlds where ``mask [B]`` (bool) holds."""
        ...

    def refresh(self) -> None:
        """After the exchange: rebuild the fused beliefs from what each agent holds."""
        ...


class NoBeliefs:
    """The store of a world whose agents share intents only: nothing to send or fuse."""

    prior = 0.0
    payload_shape = None
    payload_range = (-1.0, 1.0)
    needs_weights = False

    def peer_payload(self, env: torch.Tensor, src: torch.Tensor) -> Payload:
        return None

    uplink_payload = peer_payload

    def centre_payload(self) -> torch.Tensor | None:
        return None

    def codec_goal(self, goal: torch.Tensor) -> None:
        return None

    def receive_peer(self, ex: Deliveries, weights: torch.Tensor | None) -> None:
        pass

    def receive_uplink(self, ex: Deliveries) -> None:
        pass

    receive_downlink = receive_uplink

    def reset(self, mask: torch.Tensor) -> None:
        pass

    def refresh(self) -> None:
        pass


# --------------------------------------------------------------------------- grid primitives


def _cell_entropy(value: float, device: torch.device) -> float:
    """Entropy (bits) of one cell at log-odds ``value`` (float32) on ``device``, evaluated
    inside whole vector blocks of torch's elementwise loop, as every cell of a belief grid
    is (see :func:`_blocked_softplus`)."""
    cells = torch.full((8, 64), value, device=device)
    return float(entropy(cells, reduction="none")[0, 0])


def _put(grid: torch.Tensor, index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``grid.put_(index, values)`` (flat indices into a contiguous ``grid``, in place):
    ``index_put_`` under ``torch.use_deterministic_algorithms(True)``, which refuses
    ``put_`` (the same values where indices are distinct; only a scratch element is
    written twice), ``put_`` otherwise, as it is about twice as fast on CPU."""
    if torch.are_deterministic_algorithms_enabled():
        grid.view(-1).index_put_((index.reshape(-1),), values.reshape(-1))
        return grid
    return grid.put_(index, values)


def _with_scratch(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """An uninitialized float32 tensor of ``shape`` with one scratch element after it in
    the same buffer (held as its ``_scratch`` attribute), for :func:`_put_where`."""
    buffer = torch.empty(math.prod(shape) + 1, device=device)
    # The leading cells as one contiguous view (one op, not a slice and a view).
    strides = [math.prod(shape[i + 1 :]) for i in range(len(shape))]
    grid = buffer.as_strided(shape, strides)
    grid._scratch = buffer
    return grid


def _put_where(
    grid: torch.Tensor,
    index: torch.Tensor,
    where: torch.Tensor,
    values: torch.Tensor | float,
    targets: dict[int, torch.Tensor] | None = None,
) -> torch.Tensor:
    """In place: ``grid``'s flat entries ``index`` (distinct) take ``values`` where
    ``where`` holds and keep their value elsewhere. On a :func:`_with_scratch` grid the
    other writes go to the scratch element (one cached address), so nothing is read back;
    otherwise the kept values are read and written again. ``targets``: a dict that keeps
    the scratch path's write addresses by grid size, for several grids of one size that take
    the same ``index`` and ``where``."""
    buffer = getattr(grid, "_scratch", None)
    if buffer is not None and buffer.data_ptr() == grid.data_ptr():
        target = None if targets is None else targets.get(grid.numel())
        if target is None:
            # Flat (index_fill_ takes it as it is; put_ needs only its element count).
            sink = _constant(grid.numel(), torch.long, grid.device)
            target = torch.where(where, index, sink).view(-1)
            if targets is not None:
                targets[grid.numel()] = target
        if torch.is_tensor(values):
            _put(buffer, target, values)
        else:
            buffer.index_fill_(0, target, values)
        return grid
    return _put(grid, index, torch.where(where, values, _take(grid, index)))


def _blocked_softplus(x: torch.Tensor) -> torch.Tensor:
    """``softplus(x)`` evaluated as the cells of a belief grid are. Torch's CPU elementwise
    kernels compute the entries past the last whole vector block of a tensor (up to 31
    float32 entries with AVX-512) by a scalar routine that can differ from the vector one
    in the last bit; a ``[B, N, H, W]`` grid has no such tail, so ``x`` is padded to whole
    blocks of 64 first and every entry gets the grid's value bit for bit."""
    flat = x.reshape(-1)
    pad = -flat.numel() % 64
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    return torch.nn.functional.softplus(flat)[: x.numel()].view(x.shape)


# --------------------------------------------------------------------------- log-odds grids


class LogOddsGridStore:
    r"""Log-odds occupancy grids of ``B`` worlds with ``N`` agents, and their exchange.

    State (float32, ``[B, N, H, W]`` unless noted; every grid clipped to
    :math:`\pm` ``clip``):

    * ``local``: each agent's own evidence (its sensing only), what it sends when nothing
      must be counted twice;
    * ``belief``: its fused belief, what it acts on;
    * ``fc_store`` (centralized, hybrid): the centre's latest copy of each agent's evidence;
    * ``fc_view``: the centre's fused map as each agent last received it, cell by cell;
    * ``fc_echo``: per cell, the copy of the agent's own evidence the centre held when it
      sent that cell of ``fc_view`` (the own evidence already inside ``fc_view``);
    * ``peer_evidence`` ``[B, N(sender), N(receiver), H, W]`` (``fusion="latest"``): the
      latest copy of each neighbour's evidence, kept as its difference from the prior
      (sender-major: :meth:`refresh` sums over the senders, and torch's reduction over a
      dimension above contiguous ``N x H x W`` blocks is about twice as fast as over one
      above ``H x W`` blocks; the same sums in the same order).

    Fusion (``mode``, ``fusion``):

    * centralized: the centre fuses its copies by the independent log-odds product
      (:func:`~agentcomm.beliefs.fusion.fusion_centre_logodds`); an agent's belief is the
      centre's view with its own evidence brought up to date,
      :math:`\ell = \ell_{FC} + (\ell_{own} - \ell_{own \in FC})`;
    * ``latest`` (distributed): own evidence plus the latest copy of each neighbour's,
      :math:`\ell_0 + \sum_i (\ell_i - \ell_0)`: exact, never double counted;
    * hybrid with ``latest``: per cell the more confident of those two views (both hold the
      same agents' evidence, so adding them would double count);
    * other rules keep ``belief`` as a state fused in place on arrival
      (:func:`~agentcomm.beliefs.fusion.fuse_received_logodds`).

    Args:
        num_envs, num_agents, grid: ``B``, ``N``, ``H``.
        device: where the grids live.
        prior: :math:`\ell_0` of every cell.
        clip: the log-odds clip.
        pd, pfa: the sensor's detection and false-alarm probabilities.
        mode: the coordination mode.
        fusion: the peer fusion rule (``"latest"``, ``"average"``, ``"sum"``, ``"max"``).
    """

    def __init__(
        self,
        num_envs: int,
        num_agents: int,
        grid: int,
        device: torch.device,
        prior: float,
        clip: float,
        pd: float,
        pfa: float,
        mode: str,
        fusion: str,
    ) -> None:
        b, n, g, dev = num_envs, num_agents, grid, device
        self.num_envs, self.num_agents, self.grid, self.device = b, n, g, dev
        self.prior, self.clip, self.mode, self.fusion = prior, clip, mode, fusion
        self.payload_shape = (g, g)
        self.payload_range = (-clip, clip)
        self.keeps_copies = fusion == "latest" and mode != "centralized"
        #: Whether :meth:`refresh` rebuilds ``belief`` every step (so updating it in place
        #: before would be wasted work).
        self.derived = mode == "centralized" or self.keeps_copies
        self.needs_weights = not self.keeps_copies
        #: The grids of the state (the evidence copies, kept relative to the prior, are
        #: handled beside them); the centre's are left out in ``distributed`` mode.
        self.names = (
            ("belief", "local")
            if mode == "distributed"
            else ("belief", "local", "fc_store", "fc_view", "fc_echo")
        )
        # Grids that messages and public facts update cell by cell carry one scratch element
        # after their cells (_put_where); they are changed in place only.
        for name in ("belief", "local", "fc_store", "fc_view", "fc_echo"):
            setattr(self, name, _with_scratch((b, n, g, g), dev).fill_(prior))
        if self.keeps_copies:
            self.peer_evidence = _with_scratch((b, n, n, g, g), dev).fill_(0.0)
        hit, miss = sensor_increments(pd, pfa)
        self._hit = torch.tensor(hit, device=dev)
        self._miss = torch.tensor(miss, device=dev)
        low = torch.tensor(-clip)
        # A cleared cell of the evidence copies: its log-odds (-clip) less the prior.
        self._cleared_evidence = float(low - prior)
        # Entropy (bits) of one cell at -clip and at the prior, evaluated in a full vector
        # block as a [B, N, H, W] belief's cells are (see summary()).
        self._cleared_entropy = _cell_entropy(-clip, dev)
        self._prior_entropy = _cell_entropy(prior, dev)
        self._summaries: list[tuple[torch.Tensor, int, dict[str, torch.Tensor]]] = []
        self._row_start_cache: dict[int, torch.Tensor] = {}

    # ------------------------------------------------------------------ reset, sense, facts
    def reset(self, mask: torch.Tensor) -> None:
        """Refill the worlds where ``mask [B]`` holds with the prior, in place, world by world:
        a reset is called for the few worlds that finished (one host sync lists them; the
        caller has just synced to know there are any), where a masked pass would rewrite
        every world's grids."""
        rows = mask.nonzero().squeeze(1)
        old, version = self.belief, self.belief._version
        for name in self.names:
            getattr(self, name).index_fill_(0, rows, self.prior)
        self.patch_summary(
            old, version, old, lambda cells: cells.index_fill_(0, rows, self._prior_entropy)
        )
        if self.keeps_copies:
            self.peer_evidence.index_fill_(0, rows, 0.0)

    def sense(self, obs: WindowObservation) -> None:
        """Bayes' rule for one sensing scan (:func:`~agentcomm.beliefs.grid.sense_window`):
        the increments are computed once for the own evidence (in place: nothing holds its
        previous values) and, when it is a state of its own, the fused belief."""
        hit_or_miss = torch.where(obs.detections, self._hit, self._miss)
        inc = torch.where(obs.in_range, hit_or_miss, _constant(0.0, hit_or_miss.dtype, self.device))
        self.local = _add_window_increment(self.local, obs, inc, self.clip, inplace=True)
        if not self.derived:
            self.belief = _add_window_increment(self.belief, obs, inc, self.clip)

    def row_starts(self, rows: int) -> torch.Tensor:
        """long ``[B, rows, 1]``: the flat index of the first cell of each row of a
        ``[B, rows, H, W]`` grid (cached per ``rows``)."""
        starts = self._row_start_cache
        if rows not in starts:
            b, hw = self.num_envs, self.grid * self.grid
            starts[rows] = torch.arange(b * rows, device=self.device).view(b, rows, 1) * hw
        return starts[rows]

    def clear_cells(self, env: torch.Tensor, cell: torch.Tensor) -> None:
        """Mark flat cells ``cell [M]`` of worlds ``env [M]`` certainly empty in every agent's
        belief and every stored copy (a fact the scenario made public)."""
        hw = self.grid * self.grid
        for name in self.names:
            getattr(self, name).view(self.num_envs, -1, hw)[env, :, cell] = -self.clip
        if self.keeps_copies:
            self.peer_evidence.view(self.num_envs, -1, hw)[env, :, cell] = self._cleared_evidence

    def clear_where(self, cells: torch.Tensor, mask: torch.Tensor) -> None:
        """:meth:`clear_cells` for the flat cells ``cells [B, K]`` (distinct per world)
        where ``mask [B, K]`` is True, in place: fixed shapes, no host sync."""
        b, hw = self.num_envs, self.grid * self.grid
        grids = [(getattr(self, name), -self.clip) for name in self.names]
        if self.keeps_copies:
            grids.append((self.peer_evidence, self._cleared_evidence))
        old, version = self.belief, self.belief._version
        where = mask.unsqueeze(1)
        positions: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        targets: dict[int, torch.Tensor] = {}  # grids of one size share their write addresses

        def clear(grid: torch.Tensor, value: float) -> torch.Tensor:
            rows = grid.numel() // (b * hw)
            if rows not in positions:  # flat index of (world, row, cell): [B, rows, K]
                pos = self.row_starts(rows) + cells.unsqueeze(1)
                positions[rows] = (pos, where.expand(pos.shape))
            return _put_where(grid, *positions[rows], value, targets)

        for grid, value in grids:
            clear(grid, value)
        self.patch_summary(old, version, old, lambda c: clear(c, self._cleared_entropy))

    def clear_own(self, cells: torch.Tensor, mask: torch.Tensor) -> None:
        """Mark flat cells ``cells [B, N, K]`` certainly empty where ``mask [B, N, K]`` holds,
        in agent ``n``'s own evidence and fused belief only: a fact only that agent knows
        (others learn it from its next message). In place, fixed shapes, no host sync.

        ``cells`` may repeat where ``mask`` is False (a window clamped onto the grid), so the
        cells are scattered into one dense mask (False entries into a sink column) rather
        than written by index, where a repeated index could keep its old value."""
        b, n, hw = self.num_envs, self.num_agents, self.grid * self.grid
        dense = torch.zeros(b * n, hw + 1, dtype=torch.bool, device=self.device)
        dense.scatter_(1, torch.where(mask, cells, hw).view(b * n, -1), True)
        dense = dense[:, :hw].view(b, n, self.grid, self.grid)
        self.local.masked_fill_(dense, -self.clip)
        self.belief.masked_fill_(dense, -self.clip)

    # ------------------------------------------------------------------ exchange
    def _flat(self, grid: torch.Tensor, env: torch.Tensor, src: torch.Tensor) -> Payload:
        return grid.view(-1, self.grid, self.grid), env * self.num_agents + src

    def peer_payload(self, env: torch.Tensor, src: torch.Tensor) -> Payload:
        """Own evidence under ``latest`` (receivers keep copies, so nothing is counted twice),
        else the fused belief."""
        return self._flat(self.local if self.keeps_copies else self.belief, env, src)

    def uplink_payload(self, env: torch.Tensor, src: torch.Tensor) -> Payload:
        """Own evidence only: the centre multiplies independent likelihoods."""
        return self._flat(self.local, env, src)

    def centre_payload(self) -> torch.Tensor:
        """``[B, H, W]``: the centre's fused map, the log-odds product of its copies."""
        return _logodds_product(self.fc_store, self.prior, self.prior).clamp_(-self.clip, self.clip)

    def _put_cells(
        self, grid: torch.Tensor, row: torch.Tensor, ex: Deliveries, value: torch.Tensor
    ) -> None:
        """Row ``row[m]`` of ``grid [..., H, W]`` (contiguous) takes ``value [M, W_c]`` on
        the informative cells of sparse message ``m``, in place; every other cell is kept."""
        pos = (row * (self.grid * self.grid)).unsqueeze(1) + ex.cells
        _put_where(grid, pos, ex.informative_cells, value)

    def receive_peer(self, ex: Deliveries, weights: torch.Tensor | None) -> None:
        if self.keeps_copies:
            n = self.num_agents
            if ex.cells is not None:
                row = (ex.env * n + ex.src) * n + ex.dst
                self._put_cells(self.peer_evidence, row, ex, ex.values - self.prior)
                return
            store = self.peer_evidence[ex.env, ex.src, ex.dst]
            self.peer_evidence[ex.env, ex.src, ex.dst] = torch.where(
                ex.informative, ex.estimate - self.prior, store
            )
            return
        self.belief = _fuse_received_logodds(
            self.belief,
            ex.env,
            ex.dst,
            ex.src,
            ex.estimate,
            ex.informative,
            self.fusion,
            self.prior,
            weights,
        ).clamp_(-self.clip, self.clip)

    def receive_uplink(self, ex: Deliveries) -> None:
        if ex.cells is not None:
            self._put_cells(self.fc_store, ex.env * self.num_agents + ex.src, ex, ex.values)
            return
        store = self.fc_store[ex.env, ex.src]
        self.fc_store[ex.env, ex.src] = torch.where(ex.informative, ex.estimate, store)

    def receive_downlink(self, ex: Deliveries) -> None:
        """The centre's map, cell by cell where informative, with the copy of the receiver's
        own evidence it held (``fc_echo``); a belief fused in place adopts it there."""
        env, dst = ex.env, ex.dst
        clip = self.clip
        if ex.cells is not None:
            row = env * self.num_agents + dst
            pos = (row * (self.grid * self.grid)).unsqueeze(1) + ex.cells
            echo = _take(self.fc_store, pos)
            self._put_cells(self.fc_view, row, ex, ex.values)
            self._put_cells(self.fc_echo, row, ex, echo)
            if not self.derived:
                fused = _rebase_logodds(ex.values, _take(self.local, pos), echo).clamp_(-clip, clip)
                self._put_cells(self.belief, row, ex, fused)
            return
        take = ex.informative
        echo = self.fc_store[env, dst]
        self.fc_view[env, dst] = torch.where(take, ex.estimate, self.fc_view[env, dst])
        self.fc_echo[env, dst] = torch.where(take, echo, self.fc_echo[env, dst])
        if not self.derived:
            fused = _rebase_logodds(ex.estimate, self.local[env, dst], echo).clamp_(-clip, clip)
            self.belief[env, dst] = torch.where(take, fused, self.belief[env, dst])

    def refresh(self) -> None:
        """Rebuild a derived belief (class docstring) in a fresh scratch-backed grid."""
        if not self.derived:
            return
        clip = self.clip
        fresh = _with_scratch(tuple(self.local.shape), self.device)
        if self.mode == "centralized":
            part = _rebase_logodds(self.fc_view, self.local, self.fc_echo, out=fresh)
            self.belief = part.clamp_(-clip, clip)
            return
        peer_part = _add_increments(self.local, self.peer_evidence, out=fresh, dim=1)
        if self.mode == "hybrid":
            fc_part = _rebase_logodds(self.fc_view, self.local, self.fc_echo)
            peer_part = _most_confident(fc_part, peer_part, self.prior)
        self.belief = peer_part.clamp_(-clip, clip)

    # ------------------------------------------------------------------ summaries
    def summary(self, belief: torch.Tensor, key: str = "prob") -> dict[str, torch.Tensor]:
        """Per-cell terms of a belief state ``[B, N, H, W]``, each computed once per state:
        ``"prob"`` (its sigmoid), ``"softplus"`` and ``"entropy"`` (bits per cell, by
        :func:`~agentcomm.beliefs.entropy`'s arithmetic), and ``"entropy_sum"`` ``[B, N]``.

        Two states are kept (the step's belief before sensing and after fusion), keyed by
        the tensor and its version counter, so any in-place change that does not patch the
        terms (:meth:`patch_summary`) drops them; a state whose terms lack ``key`` (a
        patched one keeps only its entropy) gets them all anew. Transcendentals give the same
        bits wherever torch's vectorized loop evaluates them, which a ``[B, N, H, W]`` tensor
        always fills (its size is a multiple of the vector width), so a term computed for a
        state equals the one a fresh computation would give.
        """
        for entry in self._summaries:
            if entry[0] is belief and entry[1] == belief._version and key in entry[2]:
                return entry[2]
        prob = torch.sigmoid(belief)
        softplus = torch.nn.functional.softplus(belief)
        # entropy(): softplus(l) - sigmoid(l) * l nats, in bits (in place on one new,
        # scratch-backed tensor: resets and public facts patch it).
        cells = torch.mul(prob, belief, out=_with_scratch(tuple(belief.shape), belief.device))
        cells = torch.sub(softplus, cells, out=cells).div_(_LN2)
        terms = {"prob": prob, "softplus": softplus, "entropy": cells}
        kept = [entry for entry in self._summaries if entry[0] is not belief][-1:]
        self._summaries = [*kept, (belief, belief._version, terms)]
        return terms

    def entropy(self, belief: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` total entropy (bits) of a belief state, as ``entropy(belief, "sum")``."""
        terms = self.summary(belief, "entropy")
        if "entropy_sum" not in terms:
            terms["entropy_sum"] = terms["entropy"].sum(dim=(-2, -1))
        return terms["entropy_sum"]

    def patch_summary(
        self,
        old: torch.Tensor,
        version: int,
        new: torch.Tensor,
        patch: Callable[[torch.Tensor], torch.Tensor],
    ) -> None:
        """After state ``old`` (at ``version``) became ``new`` (maybe the same tensor,
        changed in place), carry its per-cell entropy over: ``patch`` maps the old entropy
        cells to the new ones; the other terms are dropped."""
        for i, entry in enumerate(self._summaries):
            if entry[0] is old and entry[1] == version:
                cells = patch(entry[2]["entropy"])
                self._summaries[i] = (new, new._version, {"entropy": cells})
                return

    def pooled_probability(self, size: int) -> torch.Tensor:
        """``[B, N, size**2]``: the belief's probabilities max-pooled over ``k x k`` blocks,
        as ``max_pool2d`` gives them (a max is exact) but by elementwise maxima of strided
        views, several times faster on CPU."""
        b, n, g = self.num_envs, self.num_agents, self.grid
        k = g // size
        prob = self.summary(self.belief)["prob"]
        rows = prob.view(b * n, size, k, g)
        pooled = rows[:, :, 0]
        for i in range(1, k):
            pooled = torch.maximum(pooled, rows[:, :, i])
        cols = pooled.view(b * n, size, size, k)
        pooled = cols[..., 0]
        for j in range(1, k):
            pooled = torch.maximum(pooled, cols[..., j])
        return pooled.reshape(b, n, size * size)

    def error(self, truth: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` KL divergence (bits per cell) of each fused belief from the true map
        ``truth`` bool ``[B, H, W]``."""
        return kl_to_truth(self.belief, truth.unsqueeze(1), reduction="mean")

    def codec_goal(self, goal: torch.Tensor) -> torch.Tensor:
        """Receivers' goals ``[M, 2]`` as intent-aware codecs take them: the goal's cell in
        integer cell coordinates (:mod:`agentcomm.codecs.intent`)."""
        return goal.floor().clamp(0, self.grid - 1)

    # ------------------------------------------------------------------ pickling
    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        # A pickle keeps a grid's values but not the scratch element after it: restore it.
        for name in ("belief", "local", "fc_store", "fc_view", "fc_echo", "peer_evidence"):
            grid = self.__dict__.get(name)
            scratch = getattr(grid, "_scratch", None)
            if grid is not None and (scratch is None or scratch.data_ptr() != grid.data_ptr()):
                setattr(self, name, _with_scratch(tuple(grid.shape), grid.device).copy_(grid))
