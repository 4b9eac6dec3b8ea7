r"""Graph views of the link topology: networkx export, Laplacian, algebraic connectivity.

Shape legend: ``B`` worlds, ``N`` agents.

The batched functions here work on ``[B, N, N]`` adjacency tensors (the hot path);
:func:`to_networkx` turns one world into a :class:`networkx.Graph` for analysis and drawing.

The graph Laplacian :math:`L = D - A` has eigenvalues
:math:`0 = \lambda_1 \le \lambda_2 \le \dots \le \lambda_N`; the algebraic connectivity
:math:`\lambda_2` is positive exactly when the graph is connected (Fiedler, Czech. Math. J.
1973) and bounds how fast consensus can mix.
"""

from __future__ import annotations

import networkx as nx
import torch

from agentcomm._checks import check_range, check_tensor

__all__ = ["algebraic_connectivity", "is_connected", "laplacian", "to_networkx"]


def _check_adj(adj: torch.Tensor) -> None:
    check_tensor("adj", adj, ndim=3, dtypes=(torch.bool,))
    if adj.shape[-2] != adj.shape[-1]:
        raise ValueError(f"adj has shape {tuple(adj.shape)}; expected [B, N, N]")
    if not bool((adj == adj.transpose(-1, -2)).all()):
        raise ValueError("adj is not symmetric; expected an undirected link graph")


def to_networkx(
    adj: torch.Tensor,
    snr_db: torch.Tensor | None = None,
    pos: torch.Tensor | None = None,
    batch_index: int = 0,
) -> nx.Graph:
    """One world's link graph as a :class:`networkx.Graph` (for analysis and drawing).

    Args:
        adj: bool ``[B, N, N]`` symmetric adjacency (self loops ignored).
        snr_db: float ``[B, N, N]`` link SNR, dB; stored as edge attribute ``snr_db`` (the
            weaker of the two directions, the one that limits a two-way exchange).
        pos: float ``[B, N, 2]`` positions; stored as node attribute ``pos`` (a tuple, the form
            ``networkx.draw`` expects via ``nx.get_node_attributes(g, "pos")``).
        batch_index: which world, ``0 <= batch_index < B``.
    Returns:
        an undirected graph with nodes ``0..N-1``.
    """
    _check_adj(adj)
    b, n = adj.shape[:2]
    if isinstance(batch_index, bool) or not isinstance(batch_index, int):
        raise ValueError(f"batch_index={batch_index!r} must be an integer")
    check_range("batch_index", batch_index, 0, b - 1)
    g = nx.Graph()
    if pos is not None:
        check_tensor("pos", pos, shape=(b, n, 2), dtypes=(torch.float32, torch.float64))
        coords = pos[batch_index].detach().cpu().tolist()
        g.add_nodes_from((i, {"pos": tuple(coords[i])}) for i in range(n))
    else:
        g.add_nodes_from(range(n))
    a = adj[batch_index].triu(diagonal=1)
    src, dst = a.nonzero(as_tuple=True)
    if snr_db is not None:
        check_tensor("snr_db", snr_db, shape=(b, n, n), dtypes=(torch.float32, torch.float64))
        s = snr_db[batch_index]
        weakest = torch.minimum(s, s.T)[src, dst].detach().cpu().tolist()
        g.add_edges_from(
            (i, j, {"snr_db": w}) for i, j, w in zip(src.tolist(), dst.tolist(), weakest)
        )
    else:
        g.add_edges_from(zip(src.tolist(), dst.tolist()))
    return g


def laplacian(adj: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Graph Laplacian :math:`L = D - A` of each world.

    Args:
        adj: bool ``[B, N, N]`` symmetric adjacency (self loops ignored).
        dtype: float dtype of the result.
    Returns:
        float ``[B, N, N]``, symmetric, rows summing to 0.
    """
    _check_adj(adj)
    n = adj.shape[-1]
    eye = torch.eye(n, dtype=torch.bool, device=adj.device)
    a = (adj & ~eye).to(dtype)
    return torch.diag_embed(a.sum(dim=-1)) - a


def algebraic_connectivity(adj: torch.Tensor) -> torch.Tensor:
    r"""Second smallest Laplacian eigenvalue :math:`\lambda_2` of each world.

    Batched ``torch.linalg.eigvalsh`` in float64 (networkx's ``algebraic_connectivity`` does
    one graph at a time through an iterative sparse solver).

    Args:
        adj: bool ``[B, N, N]`` symmetric adjacency, ``N >= 2``.
    Returns:
        float64 ``[B]``, >= 0 up to rounding; 0 for a disconnected graph.
    """
    _check_adj(adj)
    if adj.shape[-1] < 2:
        raise ValueError(f"adj has N={adj.shape[-1]} agents; algebraic connectivity needs N >= 2")
    return torch.linalg.eigvalsh(laplacian(adj))[..., 1]


def is_connected(adj: torch.Tensor, tol: float = 1e-9) -> torch.Tensor:
    r"""Whether each world's link graph is connected: :math:`\lambda_2 > \text{tol}`.

    A connected graph on ``N`` nodes has :math:`\lambda_2 \ge 4 / (N\,\mathrm{diam}) \ge 4/N^2`
    (Mohar 1991), far above float64 rounding of the eigen-solver (~1e-15 N) for any
    realistic ``N``; the default ``tol`` sits between the two.

    Args:
        adj: bool ``[B, N, N]`` symmetric adjacency.
        tol: threshold on :math:`\lambda_2`, > 0.
    Returns:
        bool ``[B]``. A single agent counts as connected.
    """
    check_range("tol", tol, 0.0, None, low_inclusive=False)
    _check_adj(adj)
    if adj.shape[-1] < 2:
        return torch.ones(adj.shape[0], dtype=torch.bool, device=adj.device)
    return algebraic_connectivity(adj) > tol
