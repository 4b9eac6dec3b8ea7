"""Gaussian PPO with MAPPO's centralized critic: the module, its export, its config."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import torch

gym = pytest.importorskip("gymnasium")
pytest.importorskip("ray.rllib")

from ray.rllib.core.columns import Columns  # noqa: E402
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig  # noqa: E402

from agentcomm.policies.central_critic import CentralCriticPPOModule, actor_state_dict  # noqa: E402
from agentcomm.policies.gaussian_ppo import _rllib_module  # noqa: E402
from agentcomm.policies.train_config import TrainConfig  # noqa: E402

ENV = "SearchRescue-v0"
SPACE = gym.spaces.Dict(
    {
        "obs": gym.spaces.Box(-1, 1, (5,), np.float32),
        "state": gym.spaces.Box(-1, 1, (3,), np.float32),
    }
)
ACTIONS = gym.spaces.Box(-1, 1, (6,), np.float32)


def _module(critic_input: str, inference_only: bool = False) -> CentralCriticPPOModule:
    torch.manual_seed(0)
    model = DefaultModelConfig(fcnet_hiddens=[8], fcnet_activation="tanh", vf_share_layers=False)
    return CentralCriticPPOModule(
        observation_space=SPACE,
        action_space=ACTIONS,
        inference_only=inference_only,
        model_config={**asdict(model), "critic_input": critic_input},
    )


@pytest.mark.parametrize("critic_input", ["state", "obs+state"])
def test_values_read_the_state_and_actions_read_only_the_observation(critic_input):
    m = _module(critic_input)
    g = torch.Generator().manual_seed(1)
    obs = {"obs": torch.randn(4, 5, generator=g), "state": torch.randn(4, 3, generator=g)}
    other_obs = {**obs, "obs": torch.randn(4, 5, generator=g)}
    other_state = {**obs, "state": torch.randn(4, 3, generator=g)}
    v = m.compute_values({Columns.OBS: obs})
    assert v.shape == (4,)
    assert not torch.allclose(v, m.compute_values({Columns.OBS: other_state}))
    same = torch.allclose(v, m.compute_values({Columns.OBS: other_obs}))
    assert same == (critic_input == "state")
    act = m.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
    act_state = m.forward_inference({Columns.OBS: other_state})[Columns.ACTION_DIST_INPUTS]
    assert act.shape == (4, 12) and torch.equal(act, act_state)
    # The train pass gives the actor's outputs only: the value comes from the state.
    train = m.forward_train({Columns.OBS: obs})
    assert Columns.EMBEDDINGS not in train
    assert torch.equal(train[Columns.ACTION_DIST_INPUTS], act)


def test_exported_actor_is_rllib_default_actor_with_the_same_actions():
    m = _module("state")
    inference = _module("state", inference_only=True)
    assert not hasattr(inference, "central_vf")
    actor = _rllib_module(5, 6, [8])
    actor.load_state_dict(actor_state_dict(m), strict=True)
    obs = {"obs": torch.randn(7, 5), "state": torch.randn(7, 3)}
    want = m.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
    got = actor.forward_inference({Columns.OBS: obs["obs"]})[Columns.ACTION_DIST_INPUTS]
    assert torch.equal(want, got)


@pytest.mark.parametrize(
    "space, match",
    [
        (gym.spaces.Box(-1, 1, (5,), np.float32), "observation_space"),
        (gym.spaces.Dict({"obs": SPACE["obs"]}), "observation_space"),
    ],
)
def test_module_refuses_observations_without_the_state(space, match):
    model = DefaultModelConfig(fcnet_hiddens=[8], fcnet_activation="tanh", vf_share_layers=False)
    with pytest.raises(ValueError, match=match):
        CentralCriticPPOModule(
            observation_space=space,
            action_space=ACTIONS,
            model_config={**asdict(model), "critic_input": "state"},
        )
    with pytest.raises(ValueError, match="critic_input"):
        CentralCriticPPOModule(
            observation_space=SPACE,
            action_space=ACTIONS,
            model_config={**asdict(model), "critic_input": "global"},
        )


@pytest.mark.parametrize(
    "changes, match",
    [
        (
            {"algo": "dppo", "gaussian": {"critic_input": "state"}},
            r"gaussian\.critic_input='state'",
        ),
        ({"algo": "sb3-ppo", "gaussian": {"critic_input": "state"}}, r"gaussian\.critic_input"),
        ({"algo": "ppo", "gaussian": {"critic_input": "global"}}, r"gaussian\.critic_input"),
        (
            {
                "algo": "ppo",
                "gaussian": {"critic_input": "state"},
                "env_config": {"team_reward_weight": 0.5},
            },
            r"gaussian\.critic_input='state' needs the shared team reward",
        ),
    ],
)
def test_train_config_refuses_critics_it_cannot_build(changes, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig.from_dict({"env": ENV, **changes})
    ok = TrainConfig.from_dict(
        {"env": ENV, "algo": "ppo", "gaussian": {"critic_input": "obs+state"}}
    )
    assert ok.gaussian.critic_input == "obs+state"


@pytest.mark.ray
def test_batched_runner_trains_ppo_with_a_central_critic(ray_session):
    from agentcomm.policies.env_runner import BatchedCommEnvRunner
    from agentcomm.policies.gaussian_ppo import gaussian_ppo_config

    config = gaussian_ppo_config(
        f"agentcomm/{ENV}",
        hidden=(16,),
        critic_input="state",
        env_config={"max_steps": 6},
        num_envs_per_env_runner=2,
        train_batch_size=64,
        minibatch_size=32,
        num_epochs=1,
    ).env_runners(env_runner_cls=BatchedCommEnvRunner)
    assert config.env_config["centralized_critic"] is True
    algo = config.build_algo()
    try:
        # The env runners hold the inference-only module (no critic); the learner the full one.
        assert not hasattr(algo.get_module("default_policy"), "central_vf")
        learner = algo.learner_group._learner.module["default_policy"]
        assert isinstance(learner, CentralCriticPPOModule)
        before = {k: v.clone() for k, v in learner.central_vf.state_dict().items()}
        result = algo.train()
        assert result["env_runners"]["num_env_steps_sampled"] == 64
        assert "vf_loss" in result["learners"]["default_policy"]
        after = learner.central_vf.state_dict()
        assert any(not torch.equal(before[k], after[k]) for k in before)
    finally:
        algo.stop()
