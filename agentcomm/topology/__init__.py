"""Who can talk to whom: link budgets, the link graph, coordination modes and their messages.

* :mod:`~agentcomm.topology.links`: link SNR from a path-loss model (reciprocal
  shadowing), the thresholded adjacency ``[B, N, N]``.
* :mod:`~agentcomm.topology.coordination`: the message plan of each coordination mode
  (centralized, distributed, hybrid), Metropolis consensus weights.
* :mod:`~agentcomm.topology.graph`: networkx export, Laplacian, algebraic connectivity, for
  analysing and drawing a world's link graph.

The batched world computes its links, schedule and consensus weights with these functions.
"""

from __future__ import annotations

from agentcomm.topology.coordination import (
    COORDINATION_MODES,
    MessagePlan,
    message_plan,
    metropolis_weights,
)
from agentcomm.topology.links import LinkBudget, PathLossModel, adjacency, link_snr_db

__all__ = [
    "COORDINATION_MODES",
    "LinkBudget",
    "MessagePlan",
    "PathLossModel",
    "adjacency",
    "link_snr_db",
    "message_plan",
    "metropolis_weights",
]
