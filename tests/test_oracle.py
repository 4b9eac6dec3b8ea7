"""The oracle reference: the expert deciding on the true state, the world left as it was."""

from __future__ import annotations

import pytest
import torch

import agentcomm
from agentcomm.envs.experts import expert_actions, oracle_actions
from agentcomm.policies.evaluate import evaluate, load_actor

SCENARIOS = ("SearchRescue-v0", "TargetTracking-v0", "IntentCoverage-v0")


def _state(world) -> dict[str, torch.Tensor]:
    names = ("known_intent", "intent_age", "intent_bits", "pos")
    out = {name: getattr(world, name).clone() for name in names}
    store = world.beliefs
    for name in ("belief", "local", "track_mean", "track_cov"):
        if hasattr(store, name):
            out[name] = getattr(store, name).clone()
    return out


@pytest.mark.parametrize("env_id", SCENARIOS)
def test_oracle_leaves_every_belief_as_it_was(env_id):
    env = agentcomm.make_vec(env_id, num_envs=8, comm={"mode": "distributed"})
    env.reset(seed=3)
    world = env
    for _ in range(3):
        env.step(expert_actions(world))
    before = _state(world)
    oracle_actions(world)
    after = _state(world)
    for name, value in before.items():
        assert torch.equal(value, after[name]), name


def test_oracle_decides_on_the_truth_the_expert_cannot_see():
    # The same SearchRescue-v0 worlds, 6 steps: deciding on the true map, the team walks
    # straight to the victims; the expert must find them first.
    rescued = {}
    for who, act in (("expert", expert_actions), ("oracle", oracle_actions)):
        world = agentcomm.make_vec("SearchRescue-v0", num_envs=64, comm={"mode": "distributed"})
        world.reset(seed=0)
        for _ in range(6):
            world.step(act(world))
            world.reset_at(world.done)  # a finished world starts over; its count is lost
        rescued[who] = int(world.rescued.sum())
    assert rescued["oracle"] > 1.5 * rescued["expert"], rescued


@pytest.mark.parametrize("env_id", ["SearchRescue-v0", "TargetTracking-v0"])
def test_oracle_scores_above_perfect_communication(env_id):
    cfg = {"comm": {"mode": "distributed", "codec": "raw"}}
    episodes = 96 if env_id == "SearchRescue-v0" else 64
    scores = {
        who: evaluate(load_actor(who)[0], env_id, episodes, num_envs=episodes, env_config=cfg)
        for who in ("expert", "oracle")
    }
    assert scores["oracle"].successes > scores["expert"].successes
