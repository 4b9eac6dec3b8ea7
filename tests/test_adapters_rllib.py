"""The RLlib MultiAgentEnv adapter: API, seeding, render, the centralized-critic Dict
observation, Tune registration, and one PPO iteration per registered id."""

from __future__ import annotations

import numpy as np
import pytest

import agentcomm
from agentcomm.envs.adapters.rllib import CommMultiAgentEnv, register_rllib_envs
from agentcomm.envs.render import render_frame
from agentcomm.envs.world import ACTION_DIM, INFO_KEYS

ENV_IDS = agentcomm.list_envs()


def _actions(env: CommMultiAgentEnv, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {a: rng.uniform(-1, 1, ACTION_DIM).astype(np.float32) for a in env.agents}


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_episode_api_matches_the_pettingzoo_view(env_id: str) -> None:
    env = CommMultiAgentEnv({"env_id": env_id, "max_steps": 4})
    ref = agentcomm.make(env_id, max_steps=4)
    assert env.possible_agents == ref.possible_agents == env.agents
    obs, infos = env.reset(seed=1)
    ref_obs, _ = ref.reset(seed=1)
    assert set(infos["agent_0"]) == set(INFO_KEYS)
    rng = np.random.default_rng(1)
    for _ in range(4):
        for a in env.possible_agents:
            assert obs[a] in env.observation_spaces[a]
            assert np.array_equal(obs[a], ref_obs[a])
        act = _actions(env, rng)
        obs, rew, term, trunc, infos = env.step(act)
        ref_obs, ref_rew, *_ = ref.step(act)
        assert rew == ref_rew
        assert set(term) == set(trunc) == {*env.possible_agents, "__all__"}
    assert trunc["__all__"] and all(trunc.values()) and env.agents == []
    with pytest.raises(ValueError, match="call reset"):
        env.step({a: np.zeros(ACTION_DIM) for a in env.possible_agents})


def test_centralized_critic_observation_is_obs_plus_state() -> None:
    env = CommMultiAgentEnv({"env_id": "SearchRescue-v0", "centralized_critic": True})
    space = env.observation_spaces["agent_2"]
    assert set(space.spaces) == {"obs", "state"}
    assert space["state"].shape == (env.world.state_dim,)
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(_actions(env, np.random.default_rng(0)))
    state = env.world.state()[0].numpy()
    for a in env.possible_agents:
        assert obs[a] in env.observation_spaces[a]
        assert np.array_equal(obs[a]["state"], state)
    assert np.array_equal(obs["agent_1"]["obs"], env.world.observation()[0, 1].numpy())


def test_seeded_reset_and_render() -> None:
    a = CommMultiAgentEnv({"env_id": "TargetTracking-v0", "render_mode": "rgb_array"})
    b = CommMultiAgentEnv({"env_id": "TargetTracking-v0"})
    oa, _ = a.reset(seed=12)
    ob, _ = b.reset(seed=12)
    assert all(np.array_equal(oa[k], ob[k]) for k in oa)
    oc, _ = b.reset(seed=13)
    assert not np.array_equal(oa["agent_0"], oc["agent_0"])
    frame = a.render()
    assert frame.shape == (400, 400, 3) and np.array_equal(frame, render_frame(a.world, 0))
    assert b.render() is None


def test_bad_config_raises() -> None:
    with pytest.raises(ValueError, match="config\\['env_id'\\] is required"):
        CommMultiAgentEnv({})
    with pytest.raises(ValueError, match="centralized_critic"):
        CommMultiAgentEnv({"env_id": "IntentCoverage-v0", "centralized_critic": "yes"})
    with pytest.raises(ValueError, match="render_mode='human'"):
        CommMultiAgentEnv({"env_id": "IntentCoverage-v0", "render_mode": "human"})
    env = CommMultiAgentEnv({"env_id": "IntentCoverage-v0"})
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"missing \['agent_1'\]"):
        env.step({"agent_0": np.zeros(6), "agent_2": np.zeros(6), "agent_3": np.zeros(6)})


def test_register_rllib_envs_names_and_creators() -> None:
    from ray.tune.registry import ENV_CREATOR, _global_registry

    names = register_rllib_envs()
    assert names == [f"agentcomm/{e}" for e in ENV_IDS]
    creator = _global_registry.get(ENV_CREATOR, "agentcomm/SearchRescue-v0")
    env = creator({"num_agents": 2, "centralized_critic": True})
    assert env.env_id == "SearchRescue-v0" and env.possible_agents == ["agent_0", "agent_1"]
    with pytest.raises(ValueError, match="contradicts"):
        creator({"env_id": "IntentCoverage-v0"})


@pytest.mark.ray
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_rllib_ppo_trains_one_iteration(ray_session, env_id: str) -> None:
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    register_rllib_envs()
    config = (
        PPOConfig()
        .environment(f"agentcomm/{env_id}", env_config={"max_steps": 16})
        .env_runners(num_env_runners=0, rollout_fragment_length=32)
        .multi_agent(
            policies={"shared"},
            policy_mapping_fn=lambda agent_id, episode, **kwargs: "shared",
        )
        .rl_module(
            rl_module_spec=MultiRLModuleSpec(
                rl_module_specs={"shared": RLModuleSpec(model_config={"fcnet_hiddens": [32]})}
            )
        )
        .training(train_batch_size_per_learner=32, minibatch_size=32, num_epochs=1)
        .debugging(seed=0)
    )
    algo = config.build_algo()
    try:
        result = algo.train()
    finally:
        algo.stop()
    runner = result["env_runners"]
    assert runner["num_env_steps_sampled_lifetime"] >= 32
    assert runner["num_agent_steps_sampled_lifetime"]["agent_0"] >= 32
    assert "shared" in result["learners"]
