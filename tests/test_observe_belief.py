"""The belief map in the observation: as probabilities (default) or as log-odds."""

from __future__ import annotations

import pytest
import torch

import agentcomm
from agentcomm.envs.experts import expert_actions

SR = "SearchRescue-v0"


def _searched_world(**overrides):
    world = agentcomm.make_vec(SR, num_envs=4, seed=3, **overrides)
    world.reset(seed=3)
    for _ in range(6):
        world.step(expert_actions(world))
    return world


def _belief_columns(world) -> torch.Tensor:
    m = world.config.obs_map_size
    start = 6 if world.config.observe_own_velocity else 4
    return world.observation()[..., start : start + m * m]


def test_logodds_columns_are_the_pooled_log_odds_over_the_clip():
    world = _searched_world(observe_belief_as="logodds")
    cols = _belief_columns(world)
    pooled = world.beliefs.pooled_probability(world.config.obs_map_size)
    expected = (torch.logit(pooled) / world.config.comm.logodds_clip).clamp(-1, 1)
    torch.testing.assert_close(cols, expected)
    # The same world as probabilities: the default layout, unchanged.
    plain = _searched_world()
    torch.testing.assert_close(_belief_columns(plain), pooled * 2 - 1)


def test_logodds_columns_show_where_the_agents_have_searched():
    """Searched (cleared) and unsearched blocks are far apart as log-odds, not as
    probabilities; a policy network must be able to tell them apart."""
    world = _searched_world(observe_belief_as="logodds", obs_map_size=16)
    cols = _belief_columns(world)
    assert bool((cols.min(-1).values <= -0.99).all())  # every agent has cleared cells by now
    # Median cell (unsearched, at the prior) minus the most searched one, per agent.
    gap_logodds = float((cols.median(-1).values - cols.min(-1).values).min())
    probs = _belief_columns(_searched_world(obs_map_size=16))
    gap_prob = float((probs.median(-1).values - probs.min(-1).values).max())
    assert gap_logodds > 0.2 and gap_prob < 0.05


@pytest.mark.parametrize("value", ["log", "prob", 1])
def test_bad_observe_belief_as_is_refused_naming_the_key(value):
    with pytest.raises(ValueError, match="observe_belief_as"):
        agentcomm.make_vec(SR, num_envs=1, observe_belief_as=value)


def test_observe_belief_as_from_yaml_and_train_set():
    from agentcomm.config import load_yaml
    from agentcomm.envs.scenarios.search_rescue import SearchRescueConfig
    from agentcomm.policies.train_config import TrainConfig, scenario_overrides

    cfg = SearchRescueConfig.from_dict(load_yaml("observe_belief_as: logodds\n"))
    assert cfg.observe_belief_as == "logodds"
    config = TrainConfig().replace(env_config={"observe_belief_as": "logits"})
    with pytest.raises(ValueError, match="observe_belief_as='logits'"):
        SearchRescueConfig.from_dict(scenario_overrides(config.env_config))
