"""Who can talk to whom: link budgets, the link graph, coordination modes and their messages.

* :mod:`~agentcomm.topology.links`: pairwise distances, link SNR from a path-loss model
  (reciprocal shadowing), the thresholded adjacency ``[B, N, N]``.
* :mod:`~agentcomm.topology.coordination`: centralized / distributed / hybrid message plans,
  Metropolis consensus weights, cluster heads.
* :mod:`~agentcomm.topology.graph`: networkx export, Laplacian, algebraic connectivity.
"""

from __future__ import annotations

from agentcomm.topology.coordination import (
    CLUSTER_RULES,
    COORDINATION_MODES,
    ClusterAssignment,
    MessagePlan,
    cluster_heads,
    message_plan,
    metropolis_weights,
    second_largest_eigenvalue_modulus,
)
from agentcomm.topology.graph import algebraic_connectivity, is_connected, laplacian, to_networkx
from agentcomm.topology.links import (
    LinkBudget,
    PathLossModel,
    adjacency,
    link_snr_db,
    pairwise_distance,
)

__all__ = [
    "CLUSTER_RULES",
    "COORDINATION_MODES",
    "ClusterAssignment",
    "LinkBudget",
    "MessagePlan",
    "PathLossModel",
    "adjacency",
    "algebraic_connectivity",
    "cluster_heads",
    "is_connected",
    "laplacian",
    "link_snr_db",
    "message_plan",
    "metropolis_weights",
    "pairwise_distance",
    "second_largest_eigenvalue_modulus",
    "to_networkx",
]
