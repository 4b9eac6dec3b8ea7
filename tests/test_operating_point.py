"""Per-episode operating points: budget caps and transmit powers drawn per world at reset,
shown in the observation, bounding what each world sends; the channel-use cost."""

from __future__ import annotations

import math

import pytest
import torch

import agentcomm
from agentcomm.envs.observe import BUDGET_REFERENCE, OPERATING_POINT_DIM

SR = "SearchRescue-v0"
LEVELS = [0, 4, 16, 64, 256]
DRAWN = {
    "comm": {"budget": 256, "budget_levels": LEVELS},
    "channel": {"tx_power_dbm_range": [0.0, 30.0]},
}


def _world(num_envs: int = 16, seed: int = 0, **extra) -> agentcomm.envs.world.CommWorld:
    cfg = {**DRAWN, "observe_operating_point": True, **extra}
    return agentcomm.make_vec(SR, num_envs=num_envs, seed=seed, **cfg)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"comm": {"budget_levels": [0, 128]}}, r"comm\.budget_levels=\[0, 128\].*comm\.budget=64"),
        ({"comm": {"budget_levels": []}}, r"comm\.budget_levels=\[\] is not allowed"),
        ({"comm": {"budget_levels": [4, 4]}}, r"comm\.budget_levels=\[4, 4\].*once"),
        ({"comm": {"budget_levels": [-1, 4]}}, r"comm\.budget_levels=\[-1, 4\]"),
        ({"comm": {"budget_levels": [2.5]}}, r"comm\.budget_levels\[0\]=2\.5"),
        ({"channel": {"tx_power_dbm_range": [20.0, 10.0]}}, r"channel\.tx_power_dbm_range"),
        ({"channel": {"tx_power_dbm_range": [0.0, 90.0]}}, r"channel\.tx_power_dbm_range"),
        ({"channel": {"tx_power_dbm_range": [0.0]}}, r"channel\.tx_power_dbm_range"),
        ({"observe_operating_point": 1}, r"observe_operating_point=1"),
    ],
)
def test_config_refuses_bad_operating_points(overrides, match):
    with pytest.raises(ValueError, match=match):
        agentcomm.make_vec(SR, num_envs=1, **overrides)


def test_config_takes_operating_points_from_yaml_and_set_overrides():
    from agentcomm.config import load_yaml
    from agentcomm.envs.scenarios.search_rescue import SearchRescueConfig

    cfg = SearchRescueConfig.from_dict(
        load_yaml(
            "comm: {budget: 256, budget_levels: [0, 4, 256]}\n"
            "channel: {tx_power_dbm_range: [0, 1e1]}\nobserve_operating_point: true\n"
        )
    )
    assert cfg.comm.budget_levels == (0, 4, 256)
    assert cfg.channel.tx_power_dbm_range == (0.0, 10.0)
    assert SearchRescueConfig.from_dict(cfg.to_dict()) == cfg


def test_train_set_values_reach_the_scenario_config():
    """``agentcomm train --set env_config.comm.budget_levels=[...]`` values, parsed as the
    command parses them, build the scenario config; a bad one is refused naming the key."""
    from agentcomm.config import load_yaml
    from agentcomm.envs.scenarios.search_rescue import SearchRescueConfig
    from agentcomm.policies.train_config import TrainConfig, scenario_overrides

    env = {
        "comm": {"budget": 16, "budget_levels": load_yaml("[0, 4, 16]")},
        "channel": {"tx_power_dbm_range": load_yaml("[5, 25]")},
    }
    config = TrainConfig().replace(env_config=env)
    cfg = SearchRescueConfig.from_dict(scenario_overrides(config.env_config))
    assert cfg.comm.budget_levels == (0, 4, 16)
    assert cfg.channel.tx_power_dbm_range == (5.0, 25.0)
    with pytest.raises(ValueError, match=r"comm\.budget_levels=\[0, 32\]"):
        SearchRescueConfig.from_dict(
            {"comm": {"budget": 16, "budget_levels": load_yaml("[0, 32]")}}
        )


def test_draws_differ_across_worlds_and_repeat_by_seed():
    a, b, c = _world(seed=1), _world(seed=1), _world(seed=2)
    for w in (a, b, c):
        w.reset(seed=2 if w is c else 1)
    assert torch.equal(a.budget_cap, b.budget_cap) and torch.equal(a.tx_power, b.tx_power)
    assert len(set(a.budget_cap.tolist())) > 1 and len(set(a.tx_power.tolist())) > 1
    assert set(a.budget_cap.tolist()) <= set(LEVELS)
    assert bool(((a.tx_power >= 0.0) & (a.tx_power <= 30.0)).all())
    assert not torch.equal(a.tx_power, c.tx_power)


def test_fixed_operating_point_draws_nothing():
    """Without levels or a range, every world keeps the config's values and the generator
    stream is the one of a world without the feature."""
    w = agentcomm.make_vec(SR, num_envs=4, seed=0)
    before = w.generator.get_state()
    w2 = agentcomm.make_vec(SR, num_envs=4, seed=0)
    assert torch.equal(before, w2.generator.get_state())
    w.reset(seed=0)
    assert w.budget_cap.tolist() == [64] * 4 and w.tx_power.tolist() == [20.0] * 4


def test_reset_at_leaves_other_worlds_untouched():
    w = _world(num_envs=32, seed=3)
    w.reset(seed=3)
    cap, power = w.budget_cap.clone(), w.tx_power.clone()
    mask = torch.zeros(32, dtype=torch.bool)
    mask[::2] = True
    w.reset_at(mask)
    assert torch.equal(w.budget_cap[~mask], cap[~mask])
    assert torch.equal(w.tx_power[~mask], power[~mask])
    assert not torch.equal(w.tx_power[mask], power[mask])


def test_power_moves_every_link_snr_of_the_world():
    """Same positions, two powers: every link SNR differs by the power difference."""
    w = _world(num_envs=2, seed=0)
    w.reset(seed=0)
    w.pos[1] = w.pos[0]
    w._update_links()
    gap = float(w.tx_power[1] - w.tx_power[0])
    off = ~torch.eye(w.num_agents, dtype=torch.bool)
    assert torch.allclose(w.peer_snr[1][off] - w.peer_snr[0][off], torch.tensor(gap), atol=1e-3)
    assert torch.allclose(w.fc_snr[1] - w.fc_snr[0], torch.tensor(gap), atol=1e-3)


def test_observation_columns_match_the_drawn_values():
    w = _world(seed=4, comm={**DRAWN["comm"], "mode": "hybrid", "cost_per_channel_use": 0.5})
    obs = w.reset(seed=4)
    off = agentcomm.make_vec(SR, num_envs=16, seed=4, **DRAWN)
    assert obs.shape[-1] == off.obs_dim + OPERATING_POINT_DIM == w.obs_dim
    torch.testing.assert_close(obs[..., : off.obs_dim], off.reset(seed=4), rtol=0, atol=0)
    cols = obs[..., off.obs_dim :]
    want = torch.log2(1.0 + w.budget_cap.float()) / math.log2(1 + BUDGET_REFERENCE) * 2 - 1
    torch.testing.assert_close(cols[..., 0], want.view(-1, 1).expand(16, w.num_agents))
    assert bool((cols[w.budget_cap == 0, :, 0] == -1.0).all())
    assert cols[..., 1:4].tolist() == [[[-1.0, -1.0, 1.0]] * w.num_agents] * 16
    torch.testing.assert_close(cols[..., 4], torch.full((16, w.num_agents), 2 * 0.5 / 1.5 - 1))
    _, _, _, _, info = w.step(torch.zeros(16, w.num_agents, 6))
    assert torch.equal(info["budget_cap"], w.budget_cap)
    assert torch.equal(info["tx_power_dbm"], w.tx_power)


@pytest.mark.parametrize("mode", ["distributed", "centralized", "hybrid"])
def test_budget_cap_bounds_each_world(mode):
    """A world with cap 0 sends nothing while its neighbours in the batch send; no agent
    spends more than its world's cap per link and round."""
    w = agentcomm.make_vec(
        SR,
        num_envs=4,
        seed=0,
        comm={"budget": 64, "budget_levels": [0, 8, 64], "mode": mode},
        channel={"tx_power_dbm": 40.0},
    )
    w.reset(seed=0)
    w.budget_cap = torch.tensor([0, 8, 64, 0])
    full = torch.ones(4, w.num_agents, 6)
    for _ in range(3):
        _, _, _, _, info = w.step(full)
        assert info["bits"][[0, 3]].sum() == 0 and info["channel_uses"][[0, 3]].sum() == 0
        assert info["fc_channel_uses"][[0, 3]].sum() == 0
        assert bool((info["bits"][1:3].sum(1) > 0).all())
        links = w.num_agents - 1 if mode != "centralized" else 1
        per_agent = info["peer_channel_uses"] + info["uplink_channel_uses"]
        assert bool((per_agent <= w.budget_cap.view(-1, 1) * links).all())
    assert int(per_agent[1].max()) <= 8 * links and int(per_agent[2].max()) > 8 * links


@pytest.mark.parametrize("mode", ["distributed", "centralized"])
def test_cost_charges_the_channel_uses_each_agent_spent(mode):
    """The reward with a cost is the reward without it minus the cost of the peer and
    uplink channel uses spent (per agent with own credit, summed for the team)."""
    c = 0.01
    kw = {"comm": {"mode": mode, "budget": 16}, "team_reward_weight": 0.0}
    free = agentcomm.make_vec(SR, num_envs=8, seed=5, **kw)
    paid = agentcomm.make_vec(
        SR, num_envs=8, seed=5, **{**kw, "comm": {**kw["comm"], "cost_per_channel_use": c}}
    )
    free.reset(seed=5)
    paid.reset(seed=5)
    gen = torch.Generator().manual_seed(0)
    n = free.num_agents
    for _ in range(4):
        act = torch.rand(8, n, 6, generator=gen) * 2 - 1
        _, r0, *_ = free.step(act)
        _, r1, *_, info = paid.step(act)
        spent = (info["peer_channel_uses"] + info["uplink_channel_uses"]).float()
        assert float(spent.sum()) > 0
        torch.testing.assert_close(r0 - r1, n * c * spent, rtol=1e-4, atol=1e-5)


def test_eval_learned_comm_quick_run(tmp_path, capsys, monkeypatch):
    """The evaluation script runs a scenario end to end; without a conditioned policy its
    policy keys are nan and it says so; the last line is the RESULT line."""
    from agentcomm.experiments import eval_learned_comm
    from agentcomm.experiments.eval_learned_comm import main

    # Every scenario ships one: the run without a policy is that of a package without them.
    monkeypatch.setattr(eval_learned_comm, "conditioned_policies", dict)
    out = tmp_path / "points.csv"
    argv = ["--quick", "--episodes", "4", "--scenarios", "IntentCoverage-v0"]
    result = main([*argv, "--budgets", "0", "4", "--csv", str(out)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert "no conditioned policy found" in lines[0]
    assert lines[-1].startswith("RESULT intentcoverage_expert_success_b0=")
    assert result["intentcoverage_expert_bits_b0"] == 0.0
    assert result["intentcoverage_expert_bits_b4"] > 0.0
    assert math.isnan(result["intentcoverage_dppo_success_b4"])
    assert math.isnan(result["intentcoverage_pareto_bits_ratio"])
    assert math.isnan(result["intentcoverage_pareto_bits_ratio_tol"])
    assert len(out.read_text().strip().splitlines()) == 1 + 2 * 2


def test_agent_index_columns_are_each_agents_one_hot():
    plain = agentcomm.make_vec("IntentCoverage-v0", num_envs=3, seed=0)
    indexed = agentcomm.make_vec("IntentCoverage-v0", num_envs=3, seed=0, observe_agent_index=True)
    a, b = plain.reset(seed=0), indexed.reset(seed=0)
    n = plain.num_agents
    assert indexed.obs_dim == plain.obs_dim + n
    assert torch.equal(b[..., :-n], a)
    want = torch.eye(n) * 2 - 1
    assert torch.equal(b[..., -n:], want.expand(3, n, n))


def test_dropping_own_velocity_removes_exactly_its_two_columns():
    full = agentcomm.make_vec("SearchRescue-v0", num_envs=2, seed=0)
    lean = agentcomm.make_vec("SearchRescue-v0", num_envs=2, seed=0, observe_own_velocity=False)
    full.reset(seed=0), lean.reset(seed=0)
    actions = torch.rand(2, 4, 6, generator=torch.Generator().manual_seed(0)) * 2 - 1
    a, b = full.step(actions)[0], lean.step(actions)[0]
    assert lean.obs_dim == full.obs_dim - 2 == b.shape[-1]
    assert torch.equal(b, torch.cat([a[..., :2], a[..., 4:]], dim=-1))
    assert not torch.equal(a[..., 2:4], torch.zeros_like(a[..., 2:4]))


def _site_columns(obs: torch.Tensor, n: int) -> torch.Tensor:
    """``[B, N, S, 3]``: the site block (the last scenario columns of IntentCoverage)."""
    return obs[..., -3 * n :].reshape(*obs.shape[:-1], n, 3)


def test_site_order_distance_lists_each_agents_sites_nearest_first():
    worlds = [
        agentcomm.make_vec("IntentCoverage-v0", num_envs=16, seed=4, observe_site_order=order)
        for order in ("index", "distance")
    ]
    actions = torch.rand(16, 4, 6, generator=torch.Generator().manual_seed(1)) * 2 - 1
    for world in worlds:
        world.reset(seed=4)
        world.step(actions)
    plain, nearest = (w.observation() for w in worlds)
    n = worlds[0].num_agents
    # The layout before the sites is the same; the site block is a permutation of rows.
    assert torch.equal(plain[..., : -3 * n], nearest[..., : -3 * n])
    a, b = _site_columns(plain, n), _site_columns(nearest, n)
    dist = b[..., :2].norm(dim=-1)
    assert bool((dist[..., 1:] >= dist[..., :-1]).all())
    assert not torch.equal(a, b)  # some agent's nearest site is not the world's first
    want = a.gather(
        2, torch.argsort(a[..., :2].norm(dim=-1), dim=-1, stable=True).unsqueeze(-1).expand_as(a)
    )
    assert torch.equal(b, want)
    # The occupancy column moves with its site: the nearest site of an agent standing on a
    # site is marked occupied.
    on_site = worlds[1]._site_dist.min(-1).values <= worlds[1].config.site_radius
    assert bool((b[..., 0, 2][on_site] == 1.0).all())


@pytest.mark.parametrize("value", ["nearest", "", 1])
def test_bad_site_order_is_refused_naming_the_key(value):
    with pytest.raises(ValueError, match="observe_site_order"):
        agentcomm.make_vec("IntentCoverage-v0", num_envs=1, observe_site_order=value)
