r"""Coordination modes: who sends what to whom in one step, and consensus weights.

Shape legend: ``B`` worlds, ``N`` agents, ``K`` consensus rounds.

Each agent grants itself ``k_i = floor(f_i K_max)`` channel uses per step (``f_i`` its
transmit fraction, ``K_max`` the budget); the mode says where they go
(:data:`COORDINATION_MODES`):

* ``"centralized"``: a star around a fusion centre (edge server). Every agent with a working
  link to the centre and ``k_i > 0`` sends its own evidence up (``k_i`` uses); the centre
  sends the fused belief back down to every agent in range (``K_max`` uses each).
  Messages per step: :math:`|\{i : k_i > 0,\ \text{fc link up}\}| + |\{i : \text{fc link
  up}\}|` (``2N`` with every link up and everyone transmitting).
* ``"distributed"``: no centre; ``K`` rounds in which every agent with ``k_i > 0`` sends
  ``k_i`` uses to each neighbour of the link graph. Messages per step:
  :math:`K \cdot |E_{\to}|`, :math:`|E_{\to}| = \sum_{ij} A_{ij}` the directed edges of
  the transmitting agents (twice the undirected ones when all transmit).
* ``"hybrid"``: both, each agent splitting its own ``k_i`` by its uplink share ``s_i``:
  :math:`k^{\uparrow}_i = \lfloor s_i k_i \rfloor` to the centre,
  :math:`k_i - k^{\uparrow}_i` to each neighbour in each round; the centre's downlinks as
  in ``centralized``. The split is the agent's own choice, the balance a policy learns.

:func:`message_plan` returns these transmissions as budgets and boolean masks; the batched
world delivers and accounts every message of the plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch

from agentcomm._checks import check_choice, check_tensor

__all__ = [
    "COORDINATION_MODES",
    "MessagePlan",
    "message_plan",
    "metropolis_weights",
    "second_largest_eigenvalue_modulus",
]

CoordinationMode = Literal["centralized", "distributed", "hybrid"]
COORDINATION_MODES: tuple[str, ...] = get_args(CoordinationMode)


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


# --------------------------------------------------------------------------- message plans


@dataclass
class MessagePlan:
    """Every transmission of one step under a coordination mode.

    Attributes:
        mode: the coordination mode.
        rounds: consensus rounds ``K`` (``peer`` is sent once per round).
        uplink_budget: long ``[B, N]``, channel uses of agent ``i``'s uplink.
        peer_budget: long ``[B, N]``, channel uses of each of agent ``i``'s peer messages.
        downlink_budget: channel uses of each downlink (the budget ``K_max``; long ``[B, 1]``
            when each world has its own).
        uplink: bool ``[B, N]``, agent ``i`` -> fusion centre.
        downlink: bool ``[B, N]``, fusion centre -> agent ``i``.
        peer: bool ``[B, N, N]``, ``i -> j`` in each of the ``K`` rounds.
    """

    mode: str
    rounds: int
    uplink_budget: torch.Tensor
    peer_budget: torch.Tensor
    downlink_budget: int | torch.Tensor
    uplink: torch.Tensor
    downlink: torch.Tensor
    peer: torch.Tensor

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
        """long ``[B]``: peer messages over all ``K`` rounds."""
        return self.rounds * self.peer.sum(dim=(-2, -1))

    @property
    def total(self) -> torch.Tensor:
        """long ``[B]``: every message of the step."""
        return self.num_uplink + self.num_downlink + self.num_peer

    @property
    def sent_by_agent(self) -> torch.Tensor:
        """long ``[B, N]``: messages each agent transmits (the centre's downlinks excluded)."""
        return self.uplink.long() + self.rounds * self.peer.sum(dim=-1)


def message_plan(
    mode: CoordinationMode,
    adj: torch.Tensor,
    fc_link_ok: torch.Tensor,
    rounds: int = 1,
    *,
    budget: int = 1,
    transmit: torch.Tensor | None = None,
    uplink_share: torch.Tensor | None = None,
) -> MessagePlan:
    """The transmissions of one step (the module docstring gives the rules and counts).

    Messages are scheduled only over links that exist: agent pairs joined in ``adj`` and
    agent-centre links marked in ``fc_link_ok``. Whether a scheduled message then gets
    through (fading, erasure, outage) is the channel's business.

    Args:
        mode: ``"centralized"``, ``"distributed"`` or ``"hybrid"``.
        adj: bool ``[B, N, N]`` symmetric link graph without self loops.
        fc_link_ok: bool ``[B, N]``, True where agent ``i``'s link to the centre is usable.
        rounds: peer rounds ``K >= 0``.
        budget: ``K_max`` channel uses per agent and step (``>= 0``).
        transmit: float ``[B, N]`` fractions ``f_i`` in ``[0, 1]`` of the budget each agent
            uses; ``None``: all of it.
        uplink_share: float ``[B, N]`` fractions ``s_i`` in ``[0, 1]`` going to the uplink
            (``hybrid``); ``None``: half.
    Returns:
        :class:`MessagePlan`.
    """
    check_choice("mode", mode, COORDINATION_MODES)
    _check_adj(adj)
    b, n = adj.shape[:2]
    check_tensor("fc_link_ok", fc_link_ok, shape=(b, n), dtypes=(torch.bool,))
    _check_int("rounds", rounds, 0)
    _check_int("budget", budget, 0)
    fractions = []
    for name, value, default in (("transmit", transmit, 1.0), ("uplink_share", uplink_share, 0.5)):
        if value is None:
            value = torch.full((b, n), default, device=adj.device)
        check_tensor(name, value, shape=(b, n), dtypes=(torch.float32, torch.float64))
        if not bool(((value >= 0) & (value <= 1)).all()):
            raise ValueError(f"{name} holds values outside [0, 1]; allowed: fractions in [0, 1]")
        fractions.append(value)
    return _message_plan(mode, adj, fc_link_ok, rounds, budget, *fractions)


def _message_plan(
    mode: str,
    adj: torch.Tensor,
    fc_link_ok: torch.Tensor,
    rounds: int,
    budget: int | torch.Tensor,
    transmit: torch.Tensor,
    uplink_share: torch.Tensor,
) -> MessagePlan:
    """:func:`message_plan` without validation (the batched world's schedule; its inputs
    are valid by construction; ``budget`` may be a long ``[B, 1]`` cap per world). ``+ 1e-6``
    keeps a fraction that is a whole number of uses in float32 (e.g. ``0.75 * 8``) from
    flooring one below."""
    k_total = torch.floor(transmit * budget + 1e-6).long()
    none = torch.zeros_like(k_total)
    if mode == "centralized":
        k_up, k_peer = k_total, none
    elif mode == "distributed":
        k_up, k_peer = none, k_total
    else:
        k_up = torch.floor(uplink_share * k_total + 1e-6).long()
        k_peer = k_total - k_up
    if mode == "distributed":
        downlink = torch.zeros_like(fc_link_ok)
    elif isinstance(budget, torch.Tensor):  # per-world budgets [B, 1]
        downlink = fc_link_ok & (budget > 0)
    else:
        downlink = fc_link_ok if budget > 0 else torch.zeros_like(fc_link_ok)
    return MessagePlan(
        mode=mode,
        rounds=rounds,
        uplink_budget=k_up,
        peer_budget=k_peer,
        downlink_budget=budget,
        uplink=fc_link_ok & (k_up > 0),
        downlink=downlink,
        peer=adj & (k_peer > 0).unsqueeze(2),
    )
