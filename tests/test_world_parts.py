"""The parts the batched world is built from, each held to its rule: the payload range a
codec quantizes, the centre's map with an agent's own evidence, what an uplink carries
first, and the stores behind one protocol."""

from __future__ import annotations

import pickle

import pytest
import torch

import agentcomm
from agentcomm.beliefs import cell_centres
from agentcomm.beliefs.store import LogOddsGridStore, NoBeliefs
from agentcomm.beliefs.tracks import GaussianTrackStore
from agentcomm.topology import message_plan


def _still(world) -> torch.Tensor:
    """Actions that keep every agent in place and transmit the whole budget."""
    a = torch.zeros(world.num_envs, world.num_agents, 6)
    a[..., 4] = 1.0
    return a


def test_each_scenario_has_its_store():
    kinds = {
        "SearchRescue-v0": LogOddsGridStore,
        "IntentCoverage-v0": NoBeliefs,
        "TargetTracking-v0": GaussianTrackStore,
    }
    for env_id, kind in kinds.items():
        world = agentcomm.make_vec(env_id, num_envs=2, seed=0)
        assert isinstance(world.beliefs, kind), env_id


def test_track_payload_is_quantized_over_its_own_range():
    # Track messages are normalized to [-1, 1]; quantizing them over the log-odds clip
    # would spend most levels on values that never occur.
    world = agentcomm.make_vec("TargetTracking-v0", num_envs=1, seed=0)
    q = world.comm.codec.quantizer
    assert (q.lo, q.hi) == (-1.0, 1.0)
    t = world.config.num_targets
    payload = torch.linspace(-0.95, 0.95, t * 8).view(1, t, 8)
    one = torch.zeros(1, dtype=torch.long)
    ex = world.comm.send(
        one,
        one,
        one,
        torch.full_like(one, world.config.comm.budget),
        torch.full((1,), 60.0),
        payload,
        0.0,
        torch.Generator().manual_seed(0),
    )
    assert bool(ex.payload_ok.all())
    err = (ex.estimate - payload).abs().max()
    assert float(err) <= q.step / 2 + 1e-6
    assert q.step == pytest.approx(2.0 / 2**q.bits)


def test_own_evidence_the_centre_did_not_send_back_is_kept():
    # A small budget: the centre's downlinks carry part of its map. Where an agent holds
    # no cell of the centre's map yet, its belief is its own evidence, whatever the centre
    # holds of it.
    world = agentcomm.make_vec(
        "SearchRescue-v0", num_envs=8, seed=3, comm={"mode": "centralized", "budget": 24}
    )
    world.reset(seed=3)
    store = world.beliefs
    gen = torch.Generator().manual_seed(1)
    held = 0
    for _ in range(12):
        a = torch.rand(world.num_envs, world.num_agents, 6, generator=gen) * 2 - 1
        a[..., 4] = 1.0
        _, _, term, trunc, _ = world.step(a)
        unseen = store.fc_view == store.prior
        held += int((unseen & (store.fc_store != store.prior)).sum())
        torch.testing.assert_close(world.belief[unseen], store.local[unseen])
        if bool((term | trunc).any()):
            world.reset_at(term | trunc)
    assert held > 0  # the case arose: the centre held evidence it had not sent back


def test_uplinks_send_the_cells_around_the_sender_first():
    # Centralized, one step in place: each agent's uplink carries the cells nearest to
    # it (where its fresh evidence is), so the centre learns something from every agent
    # (no fading: every uplink in range arrives).
    world = agentcomm.make_vec(
        "SearchRescue-v0",
        num_envs=4,
        seed=5,
        comm={"mode": "centralized", "budget": 24},
        channel={"name": "awgn"},
    )
    world.reset(seed=5)
    g = world.grid
    world.pos = torch.tensor([[g - 2.5, g - 2.5], [g / 2, 1.5], [g - 1.5, g / 2], [g / 2, g / 2]])
    world.pos = world.pos.expand(world.num_envs, -1, -1).clone()
    world._update_links()
    world.step(_still(world))
    store = world.beliefs
    learned = store.fc_store != store.prior  # [B, N, H, W]
    rows = torch.arange(g).view(g, 1).expand(g, g)
    cols = torch.arange(g).view(1, g).expand(g, g)
    centre_cells = torch.stack([rows, cols], -1).float() + 0.5
    dist = (centre_cells.view(1, 1, g, g, 2) - world.pos.view(4, -1, 1, 1, 2)).norm(dim=-1)
    in_range = world.fc_ok.view(4, -1, 1, 1)
    assert bool(learned.flatten(2).any(-1)[world.fc_ok].all())
    assert bool((dist[learned & in_range] <= world.config.sensing.radius + 2.0).all())


@pytest.mark.parametrize("env_id", ["SearchRescue-v0", "TargetTracking-v0"])
def test_stores_pickle_with_their_world(env_id):
    world = agentcomm.make_vec(env_id, num_envs=2, seed=1)
    world.reset(seed=1)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        world.step(torch.rand(2, world.num_agents, 6, generator=gen) * 2 - 1)
    copy = pickle.loads(pickle.dumps(world))
    a = torch.rand(2, world.num_agents, 6, generator=gen) * 2 - 1
    out, out_copy = world.step(a), copy.step(a)
    assert torch.equal(out[0], out_copy[0]) and torch.equal(out[1], out_copy[1])


@pytest.mark.parametrize("mode", ["centralized", "distributed", "hybrid"])
def test_the_world_sends_its_message_plan(mode):
    # Whole budgets and uplink shares of 0, 1/2 or 1 (every planned message carries a
    # header): the messages the world accounts are exactly the plan's.
    world = agentcomm.make_vec(
        "SearchRescue-v0", num_envs=16, seed=2, comm={"mode": mode, "consensus_rounds": 2}
    )
    world.reset(seed=2)
    gen = torch.Generator().manual_seed(4)
    for _ in range(3):
        a = torch.rand(16, world.num_agents, 6, generator=gen) * 2 - 1
        a[..., 4] = 1.0
        a[..., 5] = torch.randint(-1, 2, (16, world.num_agents), generator=gen).float()
        _, _, _, _, info = world.step(a)
        plan = message_plan(
            mode,
            world.adj,
            world.fc_ok,
            rounds=2,
            budget=world.config.comm.budget,
            transmit=(a[..., 4] + 1) * 0.5,
            uplink_share=(a[..., 5] + 1) * 0.5,
        )
        assert torch.equal(info["messages_sent"], plan.sent_by_agent)
        assert torch.equal(info["fc_messages_sent"], plan.num_downlink)
        assert bool((info["uplink_channel_uses"] <= plan.uplink_budget).all())


def test_observation_lists_each_teammate_in_index_order():
    # Five agents at distinct places with distinct held intents, ages and links: the block of
    # each teammate must be that teammate's, in index order, the agent itself left out.
    world = agentcomm.make_vec("IntentCoverage-v0", num_envs=2, seed=3, num_agents=5)
    world.reset(seed=3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        world.step(torch.rand(2, 5, 6, generator=gen) * 2 - 1)
    obs = world.observation()
    cfg, g, n = world.config, float(world.grid), 5
    snr = ((world.peer_snr.clamp(-20.0, 40.0) + 20.0) / 30.0 - 1.0).nan_to_num(-1.0)
    age = world.intent_age.clamp_max(cfg.intent_max_age).float() / cfg.intent_max_age * 2 - 1
    for b in range(2):
        for i in range(n):
            expected = []
            for j in range(n):
                if j != i:
                    rel = (world.known_intent[b, i, j] - world.pos[b, i]) / g
                    expected += [*rel.tolist(), age[b, i, j].item(), snr[b, i, j].item()]
            block = obs[b, i, 6 : 6 + 4 * (n - 1)]
            assert block.tolist() == torch.tensor(expected).clamp(-1, 1).tolist()


@pytest.mark.parametrize("radius", [0.3, 1.0, 1.5, 2.7, 7.0])
@pytest.mark.parametrize("grid", [8, 16])
def test_reset_exclusion_window_matches_the_whole_grid(radius, grid):
    # SearchRescue keeps victims away from the starts by checking only the cells around each
    # agent; the cells it excludes must be exactly those the whole-grid distance excludes.
    world = agentcomm.make_vec(
        "SearchRescue-v0", num_envs=64, grid_size=grid, rescue_radius=radius, seed=3
    )
    gen = torch.Generator().manual_seed(int(radius * 10) + grid)
    pos = (torch.rand(64, world.num_agents, 2, generator=gen) * grid).clamp(0.0, grid - 1e-4)
    gap = (cell_centres(world.grid).view(1, -1, 1, 2) - pos.unsqueeze(1)).norm(dim=-1)
    expected = (gap <= radius + 0.5).any(-1)
    assert torch.equal(world._near_cells(pos), expected)


@pytest.mark.parametrize("count", [7, 4096, 50_000])
def test_large_gathers_equal_take(count):
    # Above a size the grid stores gather by index_select on the flat view instead of take;
    # the golden trajectories run too few worlds to reach that path.
    from agentcomm.beliefs.grid import _take

    gen = torch.Generator().manual_seed(count)
    source = torch.randn(64, 4, 16, 16, generator=gen)[:, :3]  # not contiguous
    index = torch.randint(0, source.numel(), (count // 7 + 1, 7), generator=gen)
    assert torch.equal(_take(source, index), source.take(index))
    assert torch.equal(_take(source.contiguous(), index), source.contiguous().take(index))


def test_site_occupancy_follows_resets_and_moves():
    # IntentCoverage computes its agent-site distances where positions or sites change (reset,
    # move); what the reward, success and observation read must be those of the current state.
    world = agentcomm.make_vec("IntentCoverage-v0", num_envs=8, seed=2)
    world.reset(seed=2)
    gen = torch.Generator().manual_seed(2)

    def fresh():
        dist = (world.pos.unsqueeze(2) - world.sites.unsqueeze(1)).norm(dim=-1)
        return (dist <= world.config.site_radius).sum(1)

    for t in range(12):
        world.step(torch.rand(8, world.num_agents, 6, generator=gen) * 2 - 1)
        assert torch.equal(world._occupancy(), fresh())
        world.reset_at(world.done | (torch.arange(8) % 3 == t % 3))
        assert torch.equal(world._occupancy(), fresh())
        # Agents parked on the sites of half the worlds: the next step sees them there.
        park = (torch.arange(8) % 2 == t % 2).view(8, 1, 1)
        world.pos = torch.where(park, world.sites, world.pos)
        world.step(torch.zeros(8, world.num_agents, 6))
        assert torch.equal(world._occupancy(), fresh())
        assert bool(world._success()[park.view(8)].all())
        world.reset_at(world.done)
        assert torch.equal(world._occupancy(), fresh())


@pytest.mark.parametrize("fusion", ["ci", "average", "sum"])
@pytest.mark.parametrize("mode", ["centralized", "distributed", "hybrid"])
def test_tracks_keep_their_axes_independent(mode, fusion):
    # Track fusion by covariance intersection reads only the (row, v_row) and (col, v_col)
    # blocks of each covariance: the filters, the messages and every fusion rule must leave
    # the entries that couple the axes exactly zero.
    world = agentcomm.make_vec(
        "TargetTracking-v0", num_envs=8, seed=3, comm={"mode": mode, "fusion": fusion}
    )
    world.reset(seed=3)
    gen = torch.Generator().manual_seed(1)
    coupling = torch.tensor([[0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0]]).bool()
    for _ in range(40):
        world.step(torch.rand(8, world.num_agents, 6, generator=gen) * 2 - 1)
        tracks = world.beliefs
        assert bool((tracks.track_cov[..., coupling] == 0).all())
        assert bool((tracks.fc_cov[..., coupling] == 0).all())
        assert bool((tracks.track_cov[..., ~coupling] != 0).any())


def _tracking_run(world, steps: int = 6) -> list[torch.Tensor]:
    world.reset(seed=4)
    gen = torch.Generator().manual_seed(2)
    out = []
    for _ in range(steps):
        world.step(torch.rand(world.num_envs, world.num_agents, 6, generator=gen) * 2 - 1)
        out += [world.beliefs.track_mean.clone(), world.beliefs.track_cov.clone()]
    return out


def test_compiled_fusion_falls_back_to_eager_with_a_warning(monkeypatch):
    def no_compiler(fn, **kwargs):
        def fail(*args, **kw):
            raise RuntimeError("no C++ compiler found")

        return fail

    eager = _tracking_run(agentcomm.make_vec("TargetTracking-v0", num_envs=3, seed=4))
    monkeypatch.setattr(torch, "compile", no_compiler)
    world = agentcomm.make_vec("TargetTracking-v0", num_envs=3, seed=4, compile_fusion=True)
    with pytest.warns(RuntimeWarning, match="track fusion failed .*no C\\+\\+ compiler"):
        fallback = _tracking_run(world)
    assert all(torch.equal(a, b) for a, b in zip(eager, fallback, strict=True))
    copy = pickle.loads(pickle.dumps(world))
    assert torch.equal(copy.beliefs.track_cov, world.beliefs.track_cov)


@pytest.mark.slow
def test_compiled_fusion_tracks_the_eager_one():
    eager = _tracking_run(agentcomm.make_vec("TargetTracking-v0", num_envs=3, seed=4))
    world = agentcomm.make_vec("TargetTracking-v0", num_envs=3, seed=4, compile_fusion=True)
    compiled = _tracking_run(world)
    assert world.beliefs.fusion_compiled  # it compiled, it did not fall back
    for a, b in zip(eager, compiled, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-3)  # float32, fused differently
    copy = pickle.loads(pickle.dumps(world))  # the compiled function is not pickled
    assert not copy.beliefs.fusion_compiled and copy.beliefs._ci.enabled
