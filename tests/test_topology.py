"""Link budgets, link graphs, coordination message plans, graph spectra."""

from __future__ import annotations

import math

import networkx as nx
import pytest
import torch
from scipy.spatial.distance import cdist

from agentcomm.channels.pathloss import LogDistancePathLoss
from agentcomm.topology import (
    COORDINATION_MODES,
    adjacency,
    link_snr_db,
    message_plan,
    metropolis_weights,
)
from agentcomm.topology.coordination import second_largest_eigenvalue_modulus
from agentcomm.topology.graph import algebraic_connectivity, is_connected, laplacian, to_networkx
from agentcomm.topology.links import pairwise_distance

F64 = torch.float64


def _random_graphs(b: int, n: int, p: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    upper = (torch.rand(b, n, n, generator=g) < p).triu(1)
    return upper | upper.transpose(1, 2)


class _LinearLoss:
    """A duck-typed path-loss stand-in: SNR = P_tx - distance - noise (dB)."""

    def snr_db(self, distance, tx_power_dbm, noise_floor_dbm, generator=None):
        return tx_power_dbm - distance - noise_floor_dbm


# --------------------------------------------------------------------------- links


def test_pairwise_distance_matches_scipy(generator: torch.Generator) -> None:
    pos = torch.rand(3, 7, 2, generator=generator, dtype=F64) * 100
    d = pairwise_distance(pos)
    for b in range(3):
        torch.testing.assert_close(d[b], torch.from_numpy(cdist(pos[b].numpy(), pos[b].numpy())))
    assert torch.equal(d, d.transpose(1, 2))
    assert bool((d.diagonal(dim1=1, dim2=2) == 0).all())


def test_link_snr_follows_log_distance_path_loss(generator: torch.Generator) -> None:
    pos = torch.rand(4, 5, 2, generator=generator, dtype=F64) * 200
    fc = torch.tensor([100.0, 100.0], dtype=F64)
    pl = LogDistancePathLoss(exponent=3.0, ref_distance=1.0, ref_loss_db=40.0)
    lb = link_snr_db(pos, pl, 20.0, -90.0, fc_pos=fc)
    d = pairwise_distance(pos)
    expected = 20.0 - (40.0 + 30.0 * torch.log10(d.clamp_min(1.0))) + 90.0
    off = ~torch.eye(5, dtype=torch.bool)
    torch.testing.assert_close(lb.peer_snr_db[:, off], expected[:, off])
    assert bool((lb.peer_snr_db.diagonal(dim1=1, dim2=2) == -math.inf).all())
    fd = (pos - fc).norm(dim=-1)
    torch.testing.assert_close(lb.fc_snr_db, 70.0 - 30.0 * torch.log10(fd.clamp_min(1.0)))
    per_world = link_snr_db(pos, pl, 20.0, -90.0, fc_pos=fc.expand(4, 2))
    torch.testing.assert_close(per_world.fc_snr_db, lb.fc_snr_db)
    assert link_snr_db(pos, pl, 20.0, -90.0).fc_snr_db is None


def test_shadowing_is_reciprocal_and_has_the_stated_spread(generator: torch.Generator) -> None:
    b, n, sigma = 200, 8, 6.0
    pos = torch.rand(b, n, 2, generator=generator, dtype=F64) * 300
    shadowed = LogDistancePathLoss(shadowing_std_db=sigma)
    lb = link_snr_db(pos, shadowed, 10.0, -95.0, generator)
    assert torch.equal(lb.peer_snr_db, lb.peer_snr_db.transpose(1, 2))
    mean = link_snr_db(pos, LogDistancePathLoss(), 10.0, -95.0).peer_snr_db
    iu = torch.triu_indices(n, n, 1)
    resid = (lb.peer_snr_db - mean)[:, iu[0], iu[1]].flatten()
    k = resid.numel()  # one independent draw per unordered pair
    # Sample std of k Gaussians: relative std 1/sqrt(2k); 4 sigma.
    assert abs(float(resid.std()) / sigma - 1) < 4 / math.sqrt(2 * k)
    assert abs(float(resid.mean())) < 4 * sigma / math.sqrt(k)


def test_per_transmitter_power_sets_rows_and_adjacency_needs_both_directions() -> None:
    pos = torch.tensor([[[0.0, 0.0], [10.0, 0.0], [0.0, 30.0]]])
    power = torch.tensor([[30.0, 0.0, 30.0]])
    lb = link_snr_db(pos, _LinearLoss(), power, -10.0)
    d = pairwise_distance(pos)
    off = ~torch.eye(3, dtype=torch.bool)
    torch.testing.assert_close(lb.peer_snr_db[:, off], (power[..., None] + 10.0 - d)[:, off])
    adj = adjacency(lb.peer_snr_db, 15.0)
    # 0 <-> 1: 30 dB one way, 0 dB back -> no link. 0 <-> 2: 10 dB both ways -> no link at 15.
    assert adj.tolist() == [[[False, False, False], [False, False, False], [False, False, False]]]
    adj = adjacency(lb.peer_snr_db, -5.0)
    assert adj.tolist() == [[[False, True, True], [True, False, False], [True, False, False]]]


# --------------------------------------------------------------------------- consensus weights


def test_metropolis_weights_hand_example_and_double_stochasticity() -> None:
    path = torch.tensor([[[False, True, False], [True, False, True], [False, True, False]]])
    w = metropolis_weights(path, dtype=F64)
    third = 1 / 3
    expected = torch.tensor(
        [[2 * third, third, 0], [third, third, third], [0, third, 2 * third]], dtype=F64
    )
    torch.testing.assert_close(w[0], expected)
    adj = _random_graphs(50, 9, 0.35, seed=1)
    w = metropolis_weights(adj, dtype=F64)
    torch.testing.assert_close(w.sum(-1), torch.ones(50, 9, dtype=F64))
    torch.testing.assert_close(w.sum(-2), torch.ones(50, 9, dtype=F64))
    assert torch.equal(w, w.transpose(1, 2))
    assert bool((w >= 0).all())
    assert torch.equal(w > 0, adj | torch.eye(9, dtype=torch.bool))
    lam = torch.linalg.eigvalsh(w)
    slem = second_largest_eigenvalue_modulus(w)
    torch.testing.assert_close(slem, torch.maximum(lam[:, -2].abs(), lam[:, 0].abs()))
    # SLEM < 1 exactly for the connected graphs (Metropolis weights have positive diagonals).
    assert torch.equal(slem < 1 - 1e-9, is_connected(adj))


# --------------------------------------------------------------------------- message plans


def _world(generator: torch.Generator, b: int = 16, n: int = 7):
    pos = torch.rand(b, n, 2, generator=generator) * 150
    lb = link_snr_db(
        pos, LogDistancePathLoss(shadowing_std_db=4.0), 20.0, -90.0, generator, torch.zeros(2)
    )
    return pos, lb, adjacency(lb.peer_snr_db, 18.0), lb.fc_snr_db >= 18.0


def test_message_counts_equal_their_formulas(generator: torch.Generator) -> None:
    pos, lb, adj, fc_ok = _world(generator)
    b, n = fc_ok.shape
    assert 0 < int(fc_ok.sum()) < b * n  # some centre links up, some down
    k = 3
    plans = {m: message_plan(m, adj, fc_ok, rounds=k, budget=8) for m in COORDINATION_MODES}
    cen, dis, hyb = plans["centralized"], plans["distributed"], plans["hybrid"]
    assert torch.equal(cen.total, 2 * fc_ok.sum(-1))
    all_up = message_plan("centralized", adj, torch.ones(b, n, dtype=torch.bool))
    assert torch.equal(all_up.total, torch.full((b,), 2 * n))
    assert torch.equal(dis.total, k * adj.sum(dim=(1, 2)))
    assert torch.equal(
        dis.total,
        2
        * k
        * torch.tensor([nx.number_of_edges(to_networkx(adj, batch_index=i)) for i in range(b)]),
    )
    # Hybrid with half of 8 uses each way: the star and the mesh together.
    assert torch.equal(hyb.total, cen.total + dis.total)
    assert bool((hyb.uplink_budget[hyb.uplink] == 4).all())
    assert bool((hyb.peer_budget == 4).all())
    for plan in plans.values():
        # Every transmission is counted once: by its agent, or as the centre's downlink.
        assert torch.equal(plan.sent_by_agent.sum(-1) + plan.num_downlink, plan.total)
        assert not bool((plan.peer & ~adj).any())
        assert not bool(((plan.uplink | plan.downlink) & ~fc_ok).any())


def test_hybrid_splits_each_agents_own_budget_by_its_share() -> None:
    adj = torch.ones(1, 3, 3, dtype=torch.bool) & ~torch.eye(3, dtype=torch.bool)
    fc_ok = torch.ones(1, 3, dtype=torch.bool)
    transmit = torch.tensor([[1.0, 0.5, 0.0]])
    share = torch.tensor([[0.25, 1.0, 0.5]])
    plan = message_plan(
        "hybrid", adj, fc_ok, rounds=2, budget=8, transmit=transmit, uplink_share=share
    )
    # k = floor(f * 8) = 8, 4, 0; uplink floor(s * k) = 2, 4, 0; the rest to each peer.
    assert plan.uplink_budget.tolist() == [[2, 4, 0]]
    assert plan.peer_budget.tolist() == [[6, 0, 0]]
    assert plan.uplink.tolist() == [[True, True, False]]
    assert plan.downlink.tolist() == [[True, True, True]]  # the centre serves everyone in range
    assert plan.peer[0].tolist() == [[False, True, True], [False] * 3, [False] * 3]
    assert plan.sent_by_agent.tolist() == [[1 + 2 * 2, 1, 0]]
    cen = message_plan("centralized", adj, fc_ok, budget=8, transmit=transmit)
    assert cen.uplink_budget.tolist() == [[8, 4, 0]] and not bool(cen.peer.any())
    dis = message_plan("distributed", adj, fc_ok, budget=8, transmit=transmit)
    assert dis.peer_budget.tolist() == [[8, 4, 0]] and not bool(dis.downlink.any())
    silent = message_plan("hybrid", adj, fc_ok, budget=0)
    assert int(silent.total.sum()) == 0


# --------------------------------------------------------------------------- graph analysis


def test_algebraic_connectivity_and_connectedness_match_networkx() -> None:
    adj = _random_graphs(40, 8, 0.3, seed=2)
    lam2 = algebraic_connectivity(adj)
    conn = is_connected(adj)
    assert 0 < int(conn.sum()) < 40  # both kinds present
    for b in range(40):
        g = to_networkx(adj, batch_index=b)
        assert bool(conn[b]) == nx.is_connected(g)
        ref = (
            nx.algebraic_connectivity(g, method="tracemin_lu", tol=1e-12)
            if nx.is_connected(g)
            else 0.0
        )
        assert float(lam2[b]) == pytest.approx(ref, abs=1e-6)
    lap = laplacian(adj)
    assert bool((lap.sum(-1).abs() < 1e-12).all())
    ref_lap = torch.from_numpy(
        nx.laplacian_matrix(to_networkx(adj, batch_index=3), nodelist=range(8)).toarray()
    ).to(F64)
    assert torch.equal(lap[3], ref_lap)


def test_to_networkx_carries_edges_and_attributes(generator: torch.Generator) -> None:
    pos, lb, adj, _ = _world(generator, b=3, n=6)
    g = to_networkx(adj, lb.peer_snr_db, pos, batch_index=2)
    assert sorted(g.nodes) == list(range(6))
    assert {tuple(sorted(e)) for e in g.edges} == {
        (i, j) for i, j in adj[2].triu(1).nonzero().tolist()
    }
    for i, j, data in g.edges(data=True):
        assert data["snr_db"] == pytest.approx(float(lb.peer_snr_db[2, i, j]))
    assert g.nodes[4]["pos"] == pytest.approx(tuple(pos[2, 4].tolist()))


# --------------------------------------------------------------------------- bad inputs


def test_bad_inputs_raise_value_errors(generator: torch.Generator) -> None:
    pos, lb, adj, fc_ok = _world(generator, b=2, n=4)
    with pytest.raises(ValueError, match="mode='mesh'"):
        message_plan("mesh", adj, fc_ok)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rounds=-1"):
        message_plan("distributed", adj, fc_ok, rounds=-1)
    with pytest.raises(ValueError, match="transmit"):
        message_plan("hybrid", adj, fc_ok, transmit=torch.full((2, 4), 1.5))
    with pytest.raises(ValueError, match="budget=-1"):
        message_plan("hybrid", adj, fc_ok, budget=-1)
    with pytest.raises(ValueError, match="fc_link_ok"):
        message_plan("centralized", adj, fc_ok[:, :3])
    directed = adj.clone()
    directed[0, 0, 1], directed[0, 1, 0] = True, False
    with pytest.raises(ValueError, match="not symmetric"):
        metropolis_weights(directed)
    with pytest.raises(ValueError, match="self loops"):
        metropolis_weights(adj | torch.eye(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="fc_pos"):
        link_snr_db(pos, LogDistancePathLoss(), 20.0, -90.0, fc_pos=torch.zeros(3))
    with pytest.raises(ValueError, match="pos"):
        link_snr_db(pos[..., :1], LogDistancePathLoss(), 20.0, -90.0)
    with pytest.raises(ValueError, match="tx_power_dbm"):
        link_snr_db(pos, LogDistancePathLoss(), torch.zeros(3), -90.0)
    with pytest.raises(ValueError, match="snr_db"):
        adjacency(lb.peer_snr_db[:, :3], 10.0)
    with pytest.raises(ValueError, match="N=1"):
        algebraic_connectivity(torch.zeros(1, 1, 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="batch_index"):
        to_networkx(adj, batch_index=2)
