"""Gymnasium (centralized controller, batched vector env) and stable-baselines3 adapters."""

from __future__ import annotations

import pickle
import warnings

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import agentcomm
import agentcomm.envs  # noqa: F401  (registers the Gymnasium ids)
from agentcomm.envs.adapters.gymnasium import BatchedGymVectorEnv, CentralizedGymEnv
from agentcomm.envs.adapters.sb3 import SB3ParameterSharingVecEnv
from agentcomm.envs.render import render_frame
from agentcomm.envs.world import ACTION_DIM, INFO_KEYS

ENV_IDS = agentcomm.list_envs()


# ---------------------------------------------------------------- centralized Gymnasium env
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_and_sb3_checkers(env_id: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any checker warning is a failure
        env = gymnasium.make(f"agentcomm/{env_id}", render_mode="rgb_array")
        gym_check_env(env.unwrapped)
        sb3_check_env(gymnasium.make(f"agentcomm/{env_id}").unwrapped)
    assert env.unwrapped.render().shape == (400, 400, 3)


def test_centralized_view_is_the_joint_world_step() -> None:
    env = gymnasium.make("agentcomm/SearchRescue-v0").unwrapped
    world = agentcomm.make_vec("SearchRescue-v0", num_envs=1)
    n, do = world.num_agents, world.obs_dim
    assert env.observation_space.shape == (n * do,) and env.action_space.shape == (n * 6,)
    obs, info = env.reset(seed=2)
    assert set(info) == set(INFO_KEYS) and info["bits"].shape == (n,)
    w_obs = world.reset(seed=2)
    rng = np.random.default_rng(0)
    for _ in range(5):
        # Agent i's observation sits at [Do i, Do i + Do).
        assert np.array_equal(obs.reshape(n, do), w_obs[0].numpy())
        action = rng.uniform(-1, 1, n * ACTION_DIM).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        # ... and agent i's action at [6 i, 6 i + 6).
        w_obs, w_rew, w_term, w_trunc, w_info = world.step(
            torch.from_numpy(action.reshape(1, n, ACTION_DIM))
        )
        assert reward == float(w_rew[0, 0])
        assert (terminated, truncated) == (bool(w_term[0]), bool(w_trunc[0]))
        assert np.array_equal(info["channel_uses"], w_info["channel_uses"][0].numpy())


def test_centralized_bad_action_and_finished_episode_raise() -> None:
    env = CentralizedGymEnv("IntentCoverage-v0", max_steps=1)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action has shape \(6,\); expected \(24,\)"):
        env.step(np.zeros(6))
    with pytest.raises(ValueError, match="non-finite"):
        env.step(np.full(24, np.nan))
    env.step(np.zeros(24))
    with pytest.raises(ValueError, match="finished worlds"):
        env.step(np.zeros(24))


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gym_env_pickle_round_trip(env_id: str) -> None:
    env = CentralizedGymEnv(env_id)
    env.reset(seed=9)
    rng = np.random.default_rng(9)
    env.step(env.action_space.sample())
    clone = pickle.loads(pickle.dumps(env))
    for _ in range(3):
        action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
        (o1, r1, te1, tr1, i1), (o2, r2, te2, tr2, i2) = env.step(action), clone.step(action)
        assert np.array_equal(o1, o2) and (r1, te1, tr1) == (r2, te2, tr2)
        assert all(np.array_equal(i1[k], i2[k]) for k in INFO_KEYS)


# ---------------------------------------------------------------- batched vector env
def test_make_vec_builds_the_batched_vector_env() -> None:
    envs = gymnasium.make_vec(
        "agentcomm/SearchRescue-v0", num_envs=8, vectorization_mode="vector_entry_point"
    )
    assert isinstance(envs, BatchedGymVectorEnv) and envs.num_envs == 8
    single = CentralizedGymEnv("SearchRescue-v0")
    assert envs.single_observation_space == single.observation_space
    assert envs.single_action_space == single.action_space
    obs, info = envs.reset(seed=0)
    assert obs.shape == (8, single.observation_space.shape[0]) and obs.dtype == np.float32
    assert info["bits"].shape == (8, 4) and info["_bits"].all()
    obs, rew, term, trunc, info = envs.step(envs.action_space.sample())
    assert obs in envs.observation_space
    assert rew.shape == term.shape == trunc.shape == (8,) and rew.dtype == np.float32
    assert info["success"].shape == (8,)


def test_vector_env_same_step_autoreset() -> None:
    envs = BatchedGymVectorEnv("IntentCoverage-v0", num_envs=3, max_steps=3)
    assert envs.metadata["autoreset_mode"] == gymnasium.vector.AutoresetMode.SAME_STEP
    envs.reset(seed=1)
    zeros = np.zeros((3, 24), np.float32)
    for _ in range(2):
        *_, trunc, info = envs.step(zeros)
        assert not trunc.any() and "final_obs" not in info
    obs, rew, term, trunc, info = envs.step(zeros)
    assert trunc.all() and not term.any()
    # The returned observation starts the next episode; the final one is in info.
    assert (envs.world.t == 0).all()
    assert np.array_equal(obs, envs.world.observation().reshape(3, -1).numpy())
    assert info["_final_obs"].all() and info["_final_info"].all()
    for b in range(3):
        assert info["final_obs"][b].shape == (24 // 6 * envs.world.obs_dim,)
        assert not np.array_equal(info["final_obs"][b], obs[b])
    # Accounting restarts with the new episode; the final step's is in final_info.
    assert (info["channel_uses"] == 0).all()
    assert set(info["final_info"]) >= set(INFO_KEYS)
    envs.step(zeros)  # no ValueError: the finished worlds were reset


def test_vector_env_disabled_autoreset_needs_reset_mask() -> None:
    envs = BatchedGymVectorEnv(
        "IntentCoverage-v0", num_envs=2, max_steps=1, autoreset_mode="disabled"
    )
    envs.reset(seed=0)
    *_, trunc, _ = envs.step(np.zeros((2, 24), np.float32))
    assert trunc.all()
    with pytest.raises(ValueError, match="finished worlds"):
        envs.step(np.zeros((2, 24), np.float32))
    obs, info = envs.reset(options={"reset_mask": np.array([True, False])})
    assert info["_bits"].tolist() == [True, False]
    with pytest.raises(ValueError, match="finished worlds \\[1\\]"):
        envs.step(np.zeros((2, 24), np.float32))
    with pytest.raises(ValueError, match="reset_mask"):
        envs.reset(options={"reset_mask": np.array([1, 0])})
    with pytest.raises(ValueError, match="autoreset_mode='next_step'"):
        BatchedGymVectorEnv("IntentCoverage-v0", autoreset_mode="next_step")


def test_vector_env_seeding_and_render() -> None:
    a = BatchedGymVectorEnv("TargetTracking-v0", num_envs=2, render_mode="rgb_array")
    b = BatchedGymVectorEnv("TargetTracking-v0", num_envs=2)
    oa, _ = a.reset(seed=3)
    ob, _ = b.reset(seed=3)
    assert np.array_equal(oa, ob)
    act = np.random.default_rng(0).uniform(-1, 1, (2, 24)).astype(np.float32)
    assert np.array_equal(a.step(act)[0], b.step(act)[0])
    frames = a.render()
    assert len(frames) == 2 and np.array_equal(frames[1], render_frame(a.world, 1))
    with pytest.raises(ValueError, match="one int"):
        a.reset(seed=[1, 2])


# ---------------------------------------------------------------- stable-baselines3
def test_sb3_vec_env_slots_rewards_and_autoreset() -> None:
    venv = SB3ParameterSharingVecEnv("IntentCoverage-v0", num_worlds=2, max_steps=2)
    world = agentcomm.make_vec("IntentCoverage-v0", num_envs=2, max_steps=2)
    n, do = 4, venv.world.obs_dim
    assert venv.num_envs == 8
    assert venv.observation_space.shape == (do,) and venv.action_space.shape == (ACTION_DIM,)
    venv.seed(3)
    obs = venv.reset()
    # Slot k = b * N + i is agent i of world b.
    assert np.array_equal(obs, world.reset(seed=3).reshape(8, do).numpy())
    assert set(venv.reset_infos[5]) == set(INFO_KEYS)
    actions = np.random.default_rng(0).uniform(-1, 1, (8, ACTION_DIM)).astype(np.float32)
    obs, rew, done, infos = venv.step(actions)
    w_obs, w_rew, _, _, w_info = world.step(torch.from_numpy(actions.reshape(2, n, ACTION_DIM)))
    assert not done.any() and len(infos) == 8
    assert np.array_equal(obs, w_obs.reshape(8, do).numpy())
    # One team reward per world, repeated over its N slots.
    assert np.array_equal(rew, w_rew.reshape(-1).numpy())
    assert np.array_equal(rew[:n], np.full(n, rew[0]))
    for k in range(8):
        assert infos[k]["bits"] == w_info["bits"][k // n, k % n]
        assert infos[k]["success"] == w_info["success"][k // n]
    before = venv.world.observation().reshape(8, do).numpy()
    obs, rew, done, infos = venv.step(actions)
    assert done.all()
    for k in range(8):
        assert infos[k]["TimeLimit.truncated"] is True
        assert infos[k]["terminal_observation"].shape == (do,)
    assert (venv.world.t == 0).all()
    assert np.array_equal(obs, venv.world.observation().reshape(8, do).numpy())
    assert not np.array_equal(obs, before)
    with pytest.raises(ValueError, match=r"actions has shape \(4, 6\); expected \(8, 6\)"):
        venv.step(np.zeros((4, ACTION_DIM)))


def test_sb3_vec_env_seed_attrs_and_images() -> None:
    a = SB3ParameterSharingVecEnv("SearchRescue-v0", num_worlds=2, render_mode="rgb_array")
    b = SB3ParameterSharingVecEnv("SearchRescue-v0", num_worlds=2)
    assert a.seed(4) == [4] * 8
    b.seed(4)
    assert np.array_equal(a.reset(), b.reset())
    assert a.get_attr("env_id") == ["SearchRescue-v0"] * 8
    assert a.get_attr("num_agents", indices=[0, 3]) == [4, 4]
    assert a.get_attr("render_mode") == ["rgb_array"] * 8
    assert a.env_method("state")[0].shape == (2, a.world.state_dim)
    assert a.env_is_wrapped(gymnasium.Wrapper) == [False] * 8
    with pytest.raises(ValueError, match="indices=\\[0\\] must be None"):
        a.env_method("state", indices=[0])
    with pytest.raises(ValueError, match="must be None"):
        a.set_attr("env_id", "x", indices=[1, 2])
    images = a.get_images()
    assert len(images) == 8 and np.array_equal(images[5], render_frame(a.world, 1, agent=1))
    with pytest.raises(ValueError, match="render_mode='rgb_array'"):
        b.get_images()


def test_sb3_ppo_learns_on_the_parameter_sharing_vec_env() -> None:
    venv = SB3ParameterSharingVecEnv("IntentCoverage-v0", num_worlds=2)
    model = PPO("MlpPolicy", venv, n_steps=32, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=256)
    assert model.num_timesteps == 256
    action, _ = model.predict(venv.reset(), deterministic=True)
    assert action.shape == (8, ACTION_DIM)
