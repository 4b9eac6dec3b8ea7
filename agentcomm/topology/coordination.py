r"""Coordination modes: who sends what to whom in one step, consensus weights, cluster heads.

Shape legend: ``B`` worlds, ``N`` agents, ``K`` consensus rounds.

Modes (:data:`COORDINATION_MODES`):

* ``"centralized"``: a star around a fusion centre (edge server). Every agent with a working
  link to the centre sends its belief up; the centre sends the fused belief back down.
  Messages per step: :math:`2\,|\{i : \text{fc link up}\}|` (``2N`` with every link up).
* ``"distributed"``: no centre; ``K`` rounds of consensus in which every agent sends to each
  neighbour of the link graph. Messages per step: :math:`K \cdot |E_{\to}|`, with
  :math:`|E_{\to}| = \sum_{ij} A_{ij}` the number of directed edges (twice the undirected
  ones).
* ``"hybrid"``: cluster heads (:func:`cluster_heads`). Members send to their head, heads
  with a working centre link exchange with the centre (uplink + downlink), heads send the
  result back to their members. Messages per step:
  :math:`2\,|\text{attached members}| + 2\,|\{h : \text{fc link up}\}|`.

:func:`message_plan` returns these transmissions as boolean masks so that the environment
can account every message (channel uses, bits) and deliver it through the channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from agentcomm._checks import check_choice, check_tensor
from agentcomm.topology.links import pairwise_distance

__all__ = [
    "CLUSTER_RULES",
    "COORDINATION_MODES",
    "ClusterAssignment",
    "MessagePlan",
    "cluster_heads",
    "message_plan",
    "metropolis_weights",
    "second_largest_eigenvalue_modulus",
]

CoordinationMode = Literal["centralized", "distributed", "hybrid"]
COORDINATION_MODES: tuple[str, ...] = ("centralized", "distributed", "hybrid")
ClusterRule = Literal["degree", "kmeans"]
CLUSTER_RULES: tuple[str, ...] = ("degree", "kmeans")


def _check_adj(adj: torch.Tensor) -> torch.Tensor:
    check_tensor("adj", adj, ndim=3, dtypes=(torch.bool,))
    n = adj.shape[-1]
    if adj.shape[-2] != n:
        raise ValueError(f"adj has shape {tuple(adj.shape)}; expected [B, N, N]")
    if bool(adj.diagonal(dim1=-2, dim2=-1).any()):
        raise ValueError("adj has self loops (True on the diagonal); expected none")
    if not bool((adj == adj.transpose(-1, -2)).all()):
        raise ValueError("adj is not symmetric; expected an undirected link graph")
    return adj


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    bad = isinstance(value, bool) or not isinstance(value, int)
    if bad or value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name}={value!r} must be an integer {allowed}")
    return value


# --------------------------------------------------------------------------- consensus weights


def metropolis_weights(adj: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    r"""Metropolis-Hastings consensus weights of a link graph.

    .. math::

        W_{ij} = \frac{1}{1 + \max(d_i, d_j)}\ \ (ij \in E),\qquad
        W_{ii} = 1 - \sum_{j \ne i} W_{ij},\qquad W_{ij} = 0 \ \text{otherwise},

    with :math:`d_i` the degree of agent ``i`` (Xiao, Boyd & Lall, IPSN 2005). ``W`` is
    symmetric and doubly stochastic with non-negative entries, needs only neighbour degrees
    (computable locally), and on a connected graph :math:`W^t \to \frac1N \mathbf 1\mathbf 1^\top`.

    Args:
        adj: bool ``[B, N, N]`` symmetric adjacency without self loops.
        dtype: float dtype of the result.
    Returns:
        float ``[B, N, N]``.
    """
    return _metropolis_weights(_check_adj(adj), dtype)


def _metropolis_weights(adj: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """:func:`metropolis_weights` without validation, for a graph that is a valid link graph
    by construction (the batched world's reciprocal SNR-threshold graph)."""
    a = adj.to(dtype)
    deg = a.sum(dim=-1)
    w = a / (1.0 + torch.maximum(deg.unsqueeze(-1), deg.unsqueeze(-2)))
    return w + torch.diag_embed(1.0 - w.sum(dim=-1))


def second_largest_eigenvalue_modulus(W: torch.Tensor) -> torch.Tensor:
    r"""The consensus rate :math:`\rho(W) = \max(|\lambda_2|, |\lambda_N|)` of a symmetric ``W``.

    For doubly stochastic symmetric ``W``, :math:`\|x_t - \bar x\| \le \rho^t \|x_0 - \bar x\|`
    (Xiao & Boyd 2004); :math:`\rho = 1` when the graph is disconnected.

    Args:
        W: float ``[B, N, N]`` symmetric, with eigenvalue 1 (e.g. :func:`metropolis_weights`).
    Returns:
        float64 ``[B]``.
    """
    check_tensor("W", W, ndim=3, dtypes=(torch.float32, torch.float64))
    lam = torch.linalg.eigvalsh(W.double())  # ascending; lam[..., -1] == 1
    if W.shape[-1] < 2:
        return torch.zeros(W.shape[0], dtype=torch.float64, device=W.device)
    return torch.maximum(lam[..., -2].abs(), lam[..., 0].abs())


# --------------------------------------------------------------------------- clusters


@dataclass
class ClusterAssignment:
    """Cluster heads and who belongs to which.

    Attributes:
        is_head: bool ``[B, N]``.
        head_of: long ``[B, N]`` index of each agent's head (a head's is itself), ``-1`` for
            an agent with no link to any head (it is left out of the cluster exchange).
    """

    is_head: torch.Tensor
    head_of: torch.Tensor

    @property
    def attached(self) -> torch.Tensor:
        """bool ``[B, N]``: non-head agents linked to a head."""
        return ~self.is_head & (self.head_of >= 0)


def cluster_heads(
    pos: torch.Tensor,
    adj: torch.Tensor,
    num_heads: int,
    rule: ClusterRule = "degree",
    snr_db: torch.Tensor | None = None,
    iterations: int = 10,
) -> ClusterAssignment:
    r"""Choose ``num_heads`` cluster heads per world and attach every other agent to one.

    Rules:

    * ``"degree"``: greedy dominating set (Guha & Khuller, Algorithmica 1998): repeatedly make
      head the agent whose closed neighbourhood holds the most agents not yet covered by a
      head; ties go to the higher degree, then the lower index. Heads end up where they
      reach many members over working links.
    * ``"kmeans"``: Lloyd's k-means on the positions, ``iterations`` steps, initialized by
      farthest-point traversal from the agent nearest the centroid (deterministic, no
      generator needed); each cluster's head is the agent nearest its centroid (distinct
      agents, assigned in cluster order). Heads are geographic centres, ignoring links.

    Members attach to the head with the strongest SNR among the heads they have a link to
    (``snr_db``; the nearest when ``snr_db`` is ``None``); with no such link, ``head_of = -1``.

    The Python loops run over ``num_heads`` greedy picks and ``iterations`` Lloyd steps, a
    handful of configured constants; each step is a batched ``[B, N, ...]`` operation.

    Args:
        pos: float ``[B, N, 2]`` positions, metres.
        adj: bool ``[B, N, N]`` link graph (:func:`agentcomm.topology.links.adjacency`).
        num_heads: heads per world, ``1 <= num_heads <= N``.
        rule: ``"degree"`` or ``"kmeans"``.
        snr_db: float ``[B, N, N]`` link SNR in dB used to attach members; optional.
        iterations: Lloyd iterations for ``"kmeans"``, >= 0.
    Returns:
        :class:`ClusterAssignment`.
    """
    check_choice("rule", rule, CLUSTER_RULES)
    _check_adj(adj)
    b, n = adj.shape[:2]
    check_tensor("pos", pos, shape=(b, n, 2), dtypes=(torch.float32, torch.float64), finite=True)
    _check_int("num_heads", num_heads, 1, n)
    _check_int("iterations", iterations, 0)
    dist = pairwise_distance(pos)
    if snr_db is None:
        strength = -dist
    else:
        check_tensor("snr_db", snr_db, shape=(b, n, n), dtypes=(torch.float32, torch.float64))
        strength = snr_db
    if rule == "degree":
        is_head = _greedy_degree_heads(adj, num_heads)
    else:
        is_head = _kmeans_heads(pos, dist, num_heads, iterations)
    arange = torch.arange(n, device=adj.device)
    candidate = adj & is_head.unsqueeze(1)  # [B, i, h]: i linked to head h
    score = torch.where(candidate, strength, -torch.inf)
    best = score.argmax(dim=-1)
    head_of = torch.where(candidate.any(dim=-1), best, -1)
    head_of = torch.where(is_head, arange, head_of)
    return ClusterAssignment(is_head=is_head, head_of=head_of)


def _greedy_degree_heads(adj: torch.Tensor, num_heads: int) -> torch.Tensor:
    b, n = adj.shape[:2]
    eye = torch.eye(n, dtype=torch.bool, device=adj.device)
    closed = adj | eye
    degree = adj.sum(dim=-1)
    is_head = torch.zeros(b, n, dtype=torch.bool, device=adj.device)
    covered = torch.zeros(b, n, dtype=torch.bool, device=adj.device)
    batch = torch.arange(b, device=adj.device)
    for _ in range(num_heads):
        gain = (closed & ~covered.unsqueeze(1)).sum(dim=-1)
        # Lexicographic (gain, degree); argmax returns the first maximum, i.e. the lower index.
        score = torch.where(is_head, -1, gain * (n + 1) + degree)
        pick = score.argmax(dim=-1)
        is_head[batch, pick] = True
        covered |= closed[batch, pick]
    return is_head


def _kmeans_heads(
    pos: torch.Tensor, dist: torch.Tensor, num_heads: int, iterations: int
) -> torch.Tensor:
    b, n = pos.shape[:2]
    batch = torch.arange(b, device=pos.device)
    # Farthest-point initialization from the agent nearest the centroid of all agents.
    first = (pos - pos.mean(dim=1, keepdim=True)).norm(dim=-1).argmin(dim=-1)
    seeds = [first]
    nearest = dist[batch, first]
    for _ in range(num_heads - 1):
        nxt = nearest.argmax(dim=-1)
        seeds.append(nxt)
        nearest = torch.minimum(nearest, dist[batch, nxt])
    centres = pos[batch.unsqueeze(1), torch.stack(seeds, dim=1)]  # [B, k, 2]
    for _ in range(iterations):
        label = torch.cdist(pos, centres).argmin(dim=-1)  # [B, N]
        onehot = torch.nn.functional.one_hot(label, num_heads).to(pos.dtype)  # [B, N, k]
        count = onehot.sum(dim=1).unsqueeze(-1)  # [B, k, 1]
        mean = onehot.transpose(1, 2) @ pos / count.clamp_min(1.0)
        centres = torch.where(count > 0, mean, centres)  # an empty cluster keeps its centre
    to_centre = torch.cdist(centres, pos)  # [B, k, N]
    is_head = torch.zeros(b, n, dtype=torch.bool, device=pos.device)
    for c in range(num_heads):
        pick = torch.where(is_head, torch.inf, to_centre[:, c]).argmin(dim=-1)
        is_head[batch, pick] = True
    return is_head


# --------------------------------------------------------------------------- message plans


@dataclass
class MessagePlan:
    """Every transmission of one step under a coordination mode.

    Attributes:
        mode: the coordination mode.
        rounds: consensus rounds ``K`` (``peer`` is sent once per round).
        uplink: bool ``[B, N]``, agent ``i`` -> fusion centre (for ``"hybrid"``: heads only).
        downlink: bool ``[B, N]``, fusion centre -> agent ``i``.
        peer: bool ``[B, N, N]``, ``i -> j`` in each of the ``K`` consensus rounds.
        to_head: bool ``[B, N, N]``, member ``i`` -> its head ``j`` (``"hybrid"``).
        from_head: bool ``[B, N, N]``, head ``i`` -> member ``j`` (``"hybrid"``).
    """

    mode: str
    rounds: int
    uplink: torch.Tensor
    downlink: torch.Tensor
    peer: torch.Tensor
    to_head: torch.Tensor
    from_head: torch.Tensor

    @property
    def num_uplink(self) -> torch.Tensor:
        """long ``[B]``: messages agent -> centre."""
        return self.uplink.sum(dim=-1)

    @property
    def num_downlink(self) -> torch.Tensor:
        """long ``[B]``: messages centre -> agent."""
        return self.downlink.sum(dim=-1)

    @property
    def num_peer(self) -> torch.Tensor:
        """long ``[B]``: consensus messages over all ``K`` rounds."""
        return self.rounds * self.peer.sum(dim=(-2, -1))

    @property
    def num_cluster(self) -> torch.Tensor:
        """long ``[B]``: member -> head plus head -> member messages."""
        return self.to_head.sum(dim=(-2, -1)) + self.from_head.sum(dim=(-2, -1))

    @property
    def total(self) -> torch.Tensor:
        """long ``[B]``: every message of the step."""
        return self.num_uplink + self.num_downlink + self.num_peer + self.num_cluster

    @property
    def sent_by_agent(self) -> torch.Tensor:
        """long ``[B, N]``: messages each agent transmits (the centre's downlink excluded)."""
        return (
            self.uplink.long()
            + self.rounds * self.peer.sum(dim=-1)
            + self.to_head.sum(dim=-1)
            + self.from_head.sum(dim=-1)
        )


def message_plan(
    mode: CoordinationMode,
    adj: torch.Tensor,
    fc_link_ok: torch.Tensor,
    rounds: int = 1,
    clusters: ClusterAssignment | None = None,
) -> MessagePlan:
    """The transmissions of one step (module docstring gives the counts).

    Messages are scheduled only over links that exist: agent pairs joined in ``adj`` and
    agent-centre links marked in ``fc_link_ok``. Whether a scheduled message then gets
    through (fading, erasure, outage) is the channel's business.

    Args:
        mode: ``"centralized"``, ``"distributed"`` or ``"hybrid"``.
        adj: bool ``[B, N, N]`` symmetric link graph without self loops.
        fc_link_ok: bool ``[B, N]``, True where agent ``i``'s link to the centre is usable.
        rounds: consensus rounds ``K >= 0`` (used by ``"distributed"``).
        clusters: required for ``"hybrid"`` (:func:`cluster_heads`).
    Returns:
        :class:`MessagePlan`.
    """
    check_choice("mode", mode, COORDINATION_MODES)
    _check_adj(adj)
    b, n = adj.shape[:2]
    check_tensor("fc_link_ok", fc_link_ok, shape=(b, n), dtypes=(torch.bool,))
    _check_int("rounds", rounds, 0)
    none_n = torch.zeros(b, n, dtype=torch.bool, device=adj.device)
    none_nn = torch.zeros(b, n, n, dtype=torch.bool, device=adj.device)
    if mode == "centralized":
        return MessagePlan(mode, rounds, fc_link_ok, fc_link_ok, none_nn, none_nn, none_nn)
    if mode == "distributed":
        return MessagePlan(mode, rounds, none_n, none_n, adj, none_nn, none_nn)
    if clusters is None:
        raise ValueError("mode='hybrid' needs clusters=cluster_heads(...); got clusters=None")
    check_tensor("clusters.is_head", clusters.is_head, shape=(b, n), dtypes=(torch.bool,))
    check_tensor("clusters.head_of", clusters.head_of, shape=(b, n), dtypes=(torch.long,))
    attached = clusters.attached
    to_head = (
        attached.unsqueeze(-1)
        & torch.nn.functional.one_hot(clusters.head_of.clamp_min(0), n).bool()
    )
    head_up = clusters.is_head & fc_link_ok
    return MessagePlan(mode, rounds, head_up, head_up, none_nn, to_head, to_head.transpose(-1, -2))
