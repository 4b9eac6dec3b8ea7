"""The PettingZoo adapter: PettingZoo's own checkers over every registered id, seeding,
pickling, bad input, and exact agreement with the batched world it wraps."""

from __future__ import annotations

import pickle
import types

import numpy as np
import pytest
import torch
from pettingzoo.test import (
    api_test,
    max_cycles_test,
    parallel_api_test,
    parallel_seed_test,
    render_test,
    seed_test,
    state_test,
)

import agentcomm
from agentcomm.envs.adapters import reset_info
from agentcomm.envs.adapters.pettingzoo import ParallelCommEnv
from agentcomm.envs.render import render_frame
from agentcomm.envs.world import ACTION_DIM, INFO_KEYS

ENV_IDS = agentcomm.list_envs()
# The checkers test the API, not the task: short episodes keep each id to a few seconds.
SHORT = {"max_steps": 10}


def _actions(env: ParallelCommEnv, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {a: rng.uniform(-1, 1, ACTION_DIM).astype(np.float32) for a in env.agents}


def _same(a, b) -> bool:
    """Exact equality of nested dicts of numpy arrays / scalars."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return (
        np.array_equal(np.asarray(a), np.asarray(b)) and np.asarray(a).dtype == np.asarray(b).dtype
    )


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_pettingzoo_checkers(env_id: str) -> None:
    parallel_api_test(agentcomm.make(env_id, **SHORT), num_cycles=100)
    api_test(agentcomm.make_aec(env_id, **SHORT), num_cycles=100)
    parallel_seed_test(lambda: agentcomm.make(env_id, **SHORT))
    seed_test(lambda: agentcomm.make_aec(env_id, **SHORT))
    state_test(agentcomm.make_aec(env_id, **SHORT), agentcomm.make(env_id, **SHORT))
    # max_cycles_test builds envs from a module's factories with PettingZoo's
    # `max_cycles` argument, which is our episode length `max_steps`.
    module = types.SimpleNamespace(
        parallel_env=lambda max_cycles: agentcomm.make(env_id, max_steps=max_cycles),
        env=lambda max_cycles: agentcomm.make_aec(env_id, max_steps=max_cycles),
    )
    max_cycles_test(module)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_render_test_and_frame(env_id: str) -> None:
    def env_fn(render_mode: str):
        # render_test first builds an env with render_mode="human" only to read its
        # metadata; "human" needs a display (unsupported), so that probe gets rgb_array.
        return agentcomm.make_aec(env_id, render_mode="rgb_array", **SHORT)

    render_test(env_fn)
    env = agentcomm.make(env_id, render_mode="rgb_array")
    env.reset(seed=3)
    frame = env.render()
    assert frame.shape == (400, 400, 3) and frame.dtype == np.uint8
    assert np.array_equal(frame, render_frame(env.world, 0))
    assert agentcomm.make(env_id).render() is None


def test_human_render_mode_is_rejected_clearly() -> None:
    with pytest.raises(ValueError, match="render_mode='human'.*rgb_array"):
        agentcomm.make("IntentCoverage-v0", render_mode="human")


def test_spaces_are_cached_and_match_the_world() -> None:
    env = agentcomm.make("SearchRescue-v0")
    world = env.world
    assert env.possible_agents == [f"agent_{i}" for i in range(world.num_agents)]
    assert env.agents == []  # until reset
    for a in env.possible_agents:
        assert env.observation_space(a) is env.observation_space(a)
        assert env.action_space(a) is env.action_space(a)
        assert env.observation_space(a).shape == (world.obs_dim,)
        assert env.observation_space(a).dtype == np.float32
        assert env.action_space(a).shape == (ACTION_DIM,)
        assert (env.action_space(a).low == -1).all() and (env.action_space(a).high == 1).all()
    assert env.state_space.shape == (world.state_dim,)
    assert env.metadata["name"] == "SearchRescue-v0" and env.metadata["is_parallelizable"]
    with pytest.raises(ValueError, match="agent='agent_9'"):
        env.observation_space("agent_9")


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_reset_info_matches_step_info_keys_shapes_dtypes(env_id: str) -> None:
    # TorchRL builds info specs from reset(): every key a step reports must be there, with
    # the step's shape and dtype.
    world = agentcomm.make_vec(env_id, num_envs=3, seed=0)
    world.reset()
    at_reset = reset_info(world)
    *_, info = world.step(torch.zeros(3, world.num_agents, ACTION_DIM))
    assert set(at_reset) == set(info) == set(INFO_KEYS)
    for k in INFO_KEYS:
        assert at_reset[k].shape == info[k].shape, k
        assert at_reset[k].dtype == info[k].dtype, k

    env = agentcomm.make(env_id)
    _, infos = env.reset(seed=0)
    *_, step_infos = env.step(_actions(env, np.random.default_rng(0)))
    for a in env.possible_agents:
        assert infos[a].keys() == step_infos[a].keys() == set(INFO_KEYS)
        for k in INFO_KEYS:
            assert np.asarray(infos[a][k]).dtype == np.asarray(step_infos[a][k]).dtype, k


def test_adapter_reproduces_the_batched_world_exactly() -> None:
    # Adapters hold no logic: the same seed and actions through the adapter and through
    # the world give the same observations, rewards, flags and infos.
    env = agentcomm.make("SearchRescue-v0")
    world = agentcomm.make_vec("SearchRescue-v0", num_envs=1)
    obs, _ = env.reset(seed=11)
    w_obs = world.reset(seed=11)
    rng = np.random.default_rng(1)
    for _ in range(12):
        for i, a in enumerate(env.possible_agents):
            assert np.array_equal(obs[a], w_obs[0, i].numpy())
        act = _actions(env, rng)
        stacked = torch.from_numpy(np.stack([act[a] for a in env.possible_agents]))[None]
        obs, rew, term, trunc, infos = env.step(act)
        w_obs, w_rew, w_term, w_trunc, w_info = world.step(stacked)
        for i, a in enumerate(env.possible_agents):
            assert rew[a] == float(w_rew[0, i])
            assert term[a] == bool(w_term[0]) and trunc[a] == bool(w_trunc[0])
            assert infos[a]["bits"] == int(w_info["bits"][0, i])
            assert infos[a]["success"] == bool(w_info["success"][0])
        assert np.array_equal(env.state(), world.state()[0].numpy())


def test_episode_end_empties_agents_and_further_steps_raise() -> None:
    env = agentcomm.make("IntentCoverage-v0", max_steps=3)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(3):
        assert env.agents == env.possible_agents
        _, _, term, trunc, _ = env.step(_actions(env, rng))
    assert all(trunc.values()) and not any(term.values())
    assert env.agents == []
    with pytest.raises(ValueError, match="call reset"):
        env.step({a: np.zeros(ACTION_DIM) for a in env.possible_agents})
    env.reset()
    assert env.agents == env.possible_agents


def test_bad_actions_raise_naming_the_agent() -> None:
    env = agentcomm.make("IntentCoverage-v0")
    env.reset(seed=0)
    good = {a: np.zeros(ACTION_DIM, np.float32) for a in env.agents}
    with pytest.raises(ValueError, match=r"missing \['agent_3'\]"):
        env.step({a: v for a, v in good.items() if a != "agent_3"})
    with pytest.raises(ValueError, match=r"unknown \['intruder'\]"):
        env.step({**good, "intruder": np.zeros(ACTION_DIM)})
    with pytest.raises(ValueError, match=r"actions\['agent_1'\] has shape \(5,\)"):
        env.step({**good, "agent_1": np.zeros(5)})
    with pytest.raises(ValueError, match=r"actions\['agent_2'\].*NaN"):
        env.step({**good, "agent_2": np.array([0, 0, np.nan, 0, 0, 0])})
    with pytest.raises(ValueError, match=r"actions\['agent_0'\].*not a numeric"):
        env.step({**good, "agent_0": "fast"})
    with pytest.raises(ValueError, match="must be a dict"):
        env.step(np.zeros((4, ACTION_DIM)))
    # Nothing above advanced the world.
    assert int(env.world.t[0]) == 0


def test_out_of_range_actions_are_clipped_like_the_world() -> None:
    a, b = agentcomm.make("IntentCoverage-v0"), agentcomm.make("IntentCoverage-v0")
    a.reset(seed=4)
    b.reset(seed=4)
    big = {ag: np.full(ACTION_DIM, 5.0) for ag in a.agents}
    one = {ag: np.ones(ACTION_DIM) for ag in a.agents}
    assert _same(a.step(big), b.step(one))


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_pickle_round_trip_continues_identically(env_id: str) -> None:
    env = agentcomm.make(env_id)
    env.reset(seed=5)
    rng = np.random.default_rng(5)
    env.step(_actions(env, rng))
    clone = pickle.loads(pickle.dumps(env))
    assert clone.agents == env.agents
    for _ in range(3):
        act = _actions(env, rng)
        assert _same(env.step(act), clone.step(act))


def _trajectory(env_id: str, seed: int, steps: int, config: dict) -> list:
    env = agentcomm.make(env_id, **config)
    rng = np.random.default_rng(seed)
    out = [env.reset(seed=seed)]
    for _ in range(steps):
        if not env.agents:
            out.append(env.reset())  # later episodes continue the generator's stream
        step = env.step(_actions(env, rng))
        out.append(step)
    return out


@pytest.mark.parametrize(
    ("env_id", "steps", "config"),
    [
        # Fast by default (several episodes each); the 1,000-step runs are marked slow.
        ("IntentCoverage-v0", 150, {}),
        ("SearchRescue-v0", 60, {"max_steps": 15}),
        ("TargetTracking-v0", 40, {"max_steps": 15}),
        pytest.param("IntentCoverage-v0", 1000, {}, marks=pytest.mark.slow),
        pytest.param("SearchRescue-v0", 1000, {}, marks=pytest.mark.slow),
        pytest.param("TargetTracking-v0", 1000, {}, marks=pytest.mark.slow),
    ],
)
def test_same_seed_same_trajectory_across_episodes(env_id: str, steps: int, config) -> None:
    first = _trajectory(env_id, 7, steps, config)
    second = _trajectory(env_id, 7, steps, config)
    resets = sum(len(x) == 2 for x in first)
    assert resets >= 2  # the comparison spans episode boundaries
    for x, y in zip(first, second):
        assert _same(x, y)
    # And the seed matters: another seed gives other observations.
    other = _trajectory(env_id, 8, 3, config)
    assert not _same(first[0][0], other[0][0])
