"""The batched world: configuration, input checks, seeding, pickling, partial resets,
exact communication accounting, and expert success against bandwidth."""

from __future__ import annotations

import pickle

import pytest
import torch
from episodes import first_episode_successes

import agentcomm
from agentcomm.beliefs import cell_centres
from agentcomm.envs.experts import expert_actions, random_actions
from agentcomm.envs.world import ACTION_DIM, INFO_KEYS
from agentcomm.topology import message_plan

ENV_IDS = agentcomm.list_envs()


def _rollout(world, steps: int, action_seed: int):
    """Random-action rollout with partial resets; returns every output, stacked."""
    gen = torch.Generator().manual_seed(action_seed)
    out = []
    for _ in range(steps):
        obs, rew, term, trunc, info = world.step(random_actions(world, gen))
        out.append((obs, rew, term, trunc, {k: v.clone() for k, v in info.items()}))
        done = term | trunc
        if bool(done.any()):
            world.reset_at(done)
    return out


def _assert_same(a, b) -> None:
    for (o1, r1, t1, u1, i1), (o2, r2, t2, u2, i2) in zip(a, b, strict=True):
        assert torch.equal(o1, o2) and torch.equal(r1, r2)
        assert torch.equal(t1, t2) and torch.equal(u1, u2)
        assert i1.keys() == i2.keys()
        for k in i1:
            assert torch.equal(i1[k], i2[k]), k


# --------------------------------------------------------------------------- config


def test_list_envs():
    assert ENV_IDS == ["IntentCoverage-v0", "SearchRescue-v0", "TargetTracking-v0"]


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"bogus": 1}, r"bogus"),
        ({"comm": {"budget": -1}}, r"comm\.budget=-1"),
        ({"comm": {"mode": "mesh"}}, r"mode='mesh'"),
        ({"comm": {"nope": 1}}, r"comm\.nope"),
        ({"sensing": {"pd": 0.1, "pfa": 0.2}}, r"pfa"),
        ({"num_agents": 0}, r"num_agents=0"),
        ({"obs_map_size": 5}, r"obs_map_size=5"),
        ({"channel": {"name": "wifi"}}, r"name='wifi'"),
        ({"comm": {"fusion": "ci"}}, r"comm\.fusion='ci'"),
    ],
)
def test_bad_config_names_the_key(overrides, match):
    with pytest.raises(ValueError, match=match):
        agentcomm.make_vec("SearchRescue-v0", **overrides)


def test_config_round_trip(tmp_path):
    world = agentcomm.make_vec("TargetTracking-v0", comm={"budget": 8})
    path = tmp_path / "cfg.yaml"
    world.config.save(path)
    again = type(world.config).load(path)
    assert again == world.config
    assert again.comm.fusion == "ci"  # the scenario's nested default survives an override


def test_bad_num_envs():
    with pytest.raises(ValueError, match="num_envs"):
        agentcomm.make_vec("SearchRescue-v0", num_envs=0)


# --------------------------------------------------------------------------- step input


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_bad_actions(env_id):
    world = agentcomm.make_vec(env_id, num_envs=2, seed=0)
    world.reset()
    good = torch.zeros(2, world.num_agents, ACTION_DIM)
    with pytest.raises(ValueError, match="actions has shape"):
        world.step(good[:, :, :4])
    with pytest.raises(ValueError, match="actions has dtype"):
        world.step(good.long())
    bad = good.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        world.step(bad)


def test_stepping_a_finished_world_raises():
    world = agentcomm.make_vec("SearchRescue-v0", num_envs=2, seed=0, max_steps=2)
    world.reset()
    a = torch.zeros(2, world.num_agents, ACTION_DIM)
    world.step(a)
    _, _, _, trunc, _ = world.step(a)
    assert bool(trunc.all())
    with pytest.raises(ValueError, match="finished worlds"):
        world.step(a)
    world.reset_at(trunc)
    world.step(a)


def test_out_of_range_actions_are_clipped_by_rule():
    world = agentcomm.make_vec("IntentCoverage-v0", num_envs=1, seed=0)
    world.reset()
    start = world.pos.clone()
    a = torch.zeros(1, world.num_agents, ACTION_DIM)
    a[..., 0] = 5.0  # clipped to 1: one max_speed step
    world.step(a)
    moved = (world.pos - start)[..., 0]
    limit = world.config.max_speed + 1e-5
    assert bool((moved <= limit).all())


# --------------------------------------------------------------------------- outputs


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_shapes_and_bounds(env_id):
    world = agentcomm.make_vec(env_id, num_envs=3, seed=0)
    obs = world.reset(seed=1)
    n = world.num_agents
    assert obs.shape == (3, n, world.obs_dim) and obs.dtype == torch.float32
    assert world.state().shape == (3, world.state_dim)
    obs, rew, term, trunc, info = world.step(
        random_actions(world, torch.Generator().manual_seed(0))
    )
    assert rew.shape == (3, n) and term.shape == trunc.shape == (3,)
    assert bool((obs.abs() <= 1).all())
    assert set(info) == set(INFO_KEYS)
    for key in ("channel_uses", "bits", "bits_delivered", "capacity_bits", "messages_sent"):
        assert info[key].shape == (3, n), key
    assert bool((rew == rew[:, :1]).all()), "the team reward is shared"


# --------------------------------------------------------------------------- seeding


@pytest.mark.parametrize(
    "steps", [200, pytest.param(1000, marks=pytest.mark.slow)], ids=["200", "1000"]
)
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seed_same_trajectory(env_id, steps):
    runs = []
    for _ in range(2):
        world = agentcomm.make_vec(env_id, num_envs=2, seed=7)
        world.reset(seed=7)
        runs.append(_rollout(world, steps, action_seed=3))
    _assert_same(*runs)
    other = agentcomm.make_vec(env_id, num_envs=2, seed=8)
    other.reset(seed=8)
    diff = _rollout(other, 5, action_seed=3)
    assert not torch.equal(diff[-1][0], runs[0][4][0])


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_pickle_round_trip_continues_identically(env_id):
    world = agentcomm.make_vec(env_id, num_envs=2, seed=3)
    world.reset(seed=3)
    _rollout(world, 5, action_seed=1)
    clone = pickle.loads(pickle.dumps(world))
    _assert_same(_rollout(world, 20, action_seed=2), _rollout(clone, 20, action_seed=2))


def test_reset_at_touches_only_masked_worlds():
    world = agentcomm.make_vec("SearchRescue-v0", num_envs=3, seed=0)
    world.reset()
    _rollout(world, 4, action_seed=0)
    before = {k: getattr(world, k).clone() for k in ("pos", "belief", "victim_pos", "t")}
    world.reset_at(torch.tensor([False, True, False]))
    for k, v in before.items():
        now = getattr(world, k)
        assert torch.equal(now[0], v[0]) and torch.equal(now[2], v[2]), k
    assert int(world.t[1]) == 0
    assert bool((world.belief[1] == world.prior).all())


# --------------------------------------------------------------------------- accounting


@pytest.mark.parametrize("mode", ["centralized", "distributed", "hybrid"])
@pytest.mark.parametrize("env_id", ["SearchRescue-v0", "TargetTracking-v0"])
def test_channel_uses_never_exceed_the_budget(mode, env_id):
    budget = 40
    world = agentcomm.make_vec(env_id, num_envs=16, seed=0, comm={"mode": mode, "budget": budget})
    world.reset(seed=0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):
        a = random_actions(world, gen)
        k = torch.floor((a[..., 4] + 1) * 0.5 * budget + 1e-6)
        _, _, term, trunc, info = world.step(a)
        links = world.adj.sum(-1) * world.config.comm.consensus_rounds
        uplink = world.fc_ok.long() if mode != "distributed" else 0
        # Per agent: at most its granted uses on each of its links (uplink included), plus
        # the fusion centre's downlink to it (at most the budget).
        sent = info["peer_channel_uses"] + info["uplink_channel_uses"]
        assert bool((sent <= k * (links + uplink)).all())
        assert bool((info["downlink_channel_uses"] <= budget * world.fc_ok.long()).all())
        assert bool((info["fc_channel_uses"] <= budget * world.fc_ok.sum(1)).all())
        assert bool((info["messages_delivered"] <= info["messages_sent"]).all())
        assert bool((info["bits_delivered"] <= info["bits"]).all())
        assert bool((info["messages_lost"] >= 0).all())
        if bool((term | trunc).any()):
            world.reset_at(term | trunc)


@pytest.mark.parametrize("rounds", [1, 3])
def test_message_counts_match_the_formulas(rounds):
    """Everyone transmits: distributed sends K |E| messages, centralized 2 N (in range)."""
    full = torch.zeros(32, 4, ACTION_DIM)
    full[..., 4] = 1.0
    for mode in ("distributed", "centralized"):
        world = agentcomm.make_vec(
            "SearchRescue-v0", num_envs=32, seed=1, comm={"mode": mode, "consensus_rounds": rounds}
        )
        world.reset(seed=1)
        _, _, _, _, info = world.step(full)
        plan = message_plan(mode, world.adj, world.fc_ok, rounds=rounds)
        sent = info["messages_sent"].sum(1) + info["fc_messages_sent"]
        if mode == "distributed":
            assert torch.equal(sent, rounds * world.adj.sum(dim=(1, 2)))
        else:
            assert torch.equal(sent, 2 * world.fc_ok.sum(1))
        assert torch.equal(sent, plan.total)


def test_no_budget_means_no_messages():
    world = agentcomm.make_vec("SearchRescue-v0", num_envs=4, seed=0, comm={"budget": 0})
    world.reset()
    _, _, _, _, info = world.step(random_actions(world, torch.Generator().manual_seed(0)))
    for key in ("channel_uses", "bits", "messages_sent"):
        assert int(info[key].sum()) == 0


# --------------------------------------------------------------------------- experts


def _expert_success(env_id: str, episodes: int, device: str = "cpu", **overrides) -> float:
    """Fraction of ``episodes`` parallel first episodes the expert solves."""
    world = agentcomm.make_vec(env_id, num_envs=episodes, seed=11, device=device, **overrides)
    world.reset(seed=11)
    return float(first_episode_successes(world, expert_actions).float().mean())


def test_intent_coverage_expert_degrades_with_bandwidth():
    """Budgets of 1 and 2 channel uses carry 1- and 2-bit intents (module docstring)."""
    s = {b: _expert_success("IntentCoverage-v0", 256, comm={"budget": b}) for b in (0, 1, 2, 64)}
    assert s[64] >= 0.95, s
    assert s[64] > s[2] > s[1] > s[0], s


def test_search_rescue_expert_needs_communication():
    none = _expert_success("SearchRescue-v0", 512, comm={"budget": 0})
    full = _expert_success("SearchRescue-v0", 512, comm={"codec": "raw"})
    assert full > none + 0.08, (full, none)


@pytest.mark.slow
def test_search_rescue_expert_full_beats_partial_beats_none():
    """Any communication lifts the expert above silence beyond the 95% intervals, and
    perfect communication is not below a finite budget beyond them (n = 2,048 each)."""
    from agentcomm.experiments.stats import wilson_interval

    n = 2048
    budgets = {"none": {"budget": 0}, "12": {"budget": 12}, "32": {"budget": 32}}
    s = {k: _expert_success("SearchRescue-v0", n, comm=c) for k, c in budgets.items()}
    s["full"] = _expert_success("SearchRescue-v0", n, comm={"codec": "raw"})
    ci = {k: wilson_interval(round(p * n), n) for k, p in s.items()}
    for k in ("12", "32", "full"):
        assert ci[k][1] > ci["none"][2], (k, s)
    assert ci["full"][2] >= ci["32"][1] and ci["full"][2] >= ci["12"][1], s


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@CUDA
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_runs_unchanged_on_cuda(env_id):
    """Same seed, same trajectory on CUDA too; every output stays on the world's device."""

    def rollout():
        world = agentcomm.make_vec(env_id, num_envs=8, device="cuda", seed=0)
        obs = [world.reset(seed=0)]
        rewards = []
        for _ in range(40):
            o, r, term, trunc, info = world.step(expert_actions(world))
            assert all(v.device.type == "cuda" for v in info.values())
            obs.append(o)
            rewards.append(r)
            if bool((term | trunc).any()):
                world.reset_at(term | trunc)
        return torch.stack(obs), torch.stack(rewards)

    (obs_a, rew_a), (obs_b, rew_b) = rollout(), rollout()
    assert obs_a.device.type == "cuda"
    assert torch.equal(obs_a, obs_b) and torch.equal(rew_a, rew_b)


@CUDA
def test_cuda_statistics_match_cpu():
    """The random streams differ between devices, the model does not: the expert's success
    on SearchRescue-v0 over 1,024 episodes agrees between CPU and CUDA within 5 standard
    errors of the difference (binomial, pooled p)."""
    cpu = _expert_success("SearchRescue-v0", 1024)
    cuda = _expert_success("SearchRescue-v0", 1024, device="cuda")
    p = (cpu + cuda) / 2
    se = (2 * p * (1 - p) / 1024) ** 0.5
    assert abs(cpu - cuda) < 5 * se, (cpu, cuda, se)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_reward_shares_mix_to_the_team_reward(env_id):
    """With ``team_reward_weight = w`` the agents' mean reward is the team reward (the
    default world's, same seed and actions), each agent's reward is ``w r + (1 - w) N r_i``
    and the own shares are not all equal (credit is attributed, not split)."""
    steps, b = 12, 64
    cost = {"comm": {"cost_per_channel_use": 0.01}}
    team = agentcomm.make_vec(env_id, num_envs=b, seed=3, **cost)
    mixes = {
        w: agentcomm.make_vec(env_id, num_envs=b, seed=3, team_reward_weight=w, **cost)
        for w in (0.0, 0.5)
    }
    for world in (team, *mixes.values()):
        world.reset(seed=3)
    gen = torch.Generator().manual_seed(0)
    unequal = 0
    for _ in range(steps):
        acts = expert_actions(team)
        acts = (acts + 0.3 * torch.randn(acts.shape, generator=gen)).clamp(-1, 1)
        _, r_team, term, trunc, _ = team.step(acts)
        own = {w: world.step(acts)[1] for w, world in mixes.items()}
        assert torch.equal(r_team[:, 0:1].expand_as(r_team), r_team)
        for w, r in own.items():
            torch.testing.assert_close(r.mean(1), r_team[:, 0], atol=1e-5, rtol=1e-5)
            share = (r - w * r_team) / ((1 - w) * team.num_agents)
            torch.testing.assert_close(share.sum(1), r_team[:, 0], atol=1e-5, rtol=1e-5)
        unequal += int(((own[0.0] - own[0.0][:, :1]).abs() > 1e-6).any(1).sum())
        done = term | trunc
        if bool(done.any()):
            for world in (team, *mixes.values()):
                world.reset_at(done)
    assert unequal > 0


def test_search_rescue_credits_a_rescue_to_the_agents_that_made_it():
    """``team_reward_weight=0``, no information term: an agent alone on a victim gets
    ``N * rescue_reward``, the others nothing; two agents on it split it."""
    n, r = 4, 10.0
    world = agentcomm.make_vec(
        "SearchRescue-v0", num_envs=2, seed=0, team_reward_weight=0.0, info_gain_weight=0.0
    )
    world.reset(seed=0)
    cells = cell_centres(world.grid)
    far = (cells.unsqueeze(0) - world.victim_pos.unsqueeze(2)).norm(dim=-1).min(1).values
    pos = cells[far.argmax(1)].unsqueeze(1).expand(-1, n, -1).clone()  # [2, N, 2]
    pos[:, 0] = world.victim_pos[:, 0]
    pos[1, 2] = world.victim_pos[1, 0]  # world 1: agents 0 and 2 share the rescue
    world.pos = pos
    stay = torch.zeros(2, n, ACTION_DIM)
    _, reward, *_ = world.step(stay)
    torch.testing.assert_close(reward[0], torch.tensor([n * r, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(reward[1], torch.tensor([n * r / 2, 0.0, n * r / 2, 0.0]))


def test_true_map_is_the_ground_truth_of_grid_scenarios_only():
    world = agentcomm.make_vec("SearchRescue-v0", num_envs=3, seed=1)
    world.reset(seed=1)
    truth = world.true_map()
    assert truth.dtype == torch.bool and truth.shape == (3, world.grid, world.grid)
    assert torch.equal(truth.sum((1, 2)), torch.full((3,), world.config.num_victims))
    with pytest.raises(ValueError, match="belief_kind"):
        agentcomm.make_vec("IntentCoverage-v0", num_envs=1).true_map()
