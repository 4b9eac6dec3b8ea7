"""A short DPPO run on a scenario improves over the policy it starts from (``-m slow``).

Each case trains with ``agentcomm.policies.train`` as a user would, then evaluates the start
and the fine-tuned policy deterministically on the same selection worlds (seed index 0),
through the run's own scenario config. Improvement is judged on the mean episode return, the
quantity DPPO maximises: the fine-tuned policy's must exceed the start's by more than three
standard errors of the difference (the two means are over the same worlds, so treating them
as independent overstates the error: the test is conservative).

SearchRescue-v0 and TargetTracking-v0 have no case: no short run found improves them by
three standard errors (docs/training.md, "A short DPPO run").
"""

from __future__ import annotations

import math

import pytest

#: Per scenario: the run (train config keys beyond ``out``) and the episodes evaluated.
CASES = {
    # From a weak BC start (a few demonstrations, 3 epochs: success 0, return about -22):
    # 150 iterations of 1,024 agent-steps, measured -22.05 +- 0.26 -> -18.95 +- 0.24
    # (256 episodes each), about 40 s on one core.
    "IntentCoverage-v0": (
        {
            "algo": "dppo",
            "env": "IntentCoverage-v0",
            "seed": 0,
            "bc": {"demo_envs": 16, "demo_steps": 16, "epochs": 3, "batch_size": 256},
            "policy": {
                "hidden": 64,
                "depth": 2,
                "ft_denoising_steps": 2,
                "exploration": "around_eval",
            },
            "ppo": {
                "iterations": 150,
                "num_envs": 16,
                "train_batch_size": 1024,
                "minibatch_size": 256,
                "num_epochs": 3,
                "lr": 3e-4,
                "clip_param": 0.05,
            },
            "dppo": {"critic_hidden": [64, 64], "critic_warmup_iterations": 2},
        },
        256,
    ),
}


def _start(config, out):
    from agentcomm.policies.checkpoint import policy_path

    pretrained = config.dppo.pretrained
    return out / "bc" / "policy" if pretrained is None else policy_path(pretrained)


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("env_id", sorted(CASES))
def test_a_short_dppo_run_improves_over_its_start(ray_session, tmp_path, env_id):
    from agentcomm.policies.checkpoint import load_policy
    from agentcomm.policies.evaluate import evaluate, policy_actor
    from agentcomm.policies.train import TrainConfig, train

    settings, episodes = CASES[env_id]
    out = tmp_path / "run"
    config = TrainConfig.from_dict(
        {**settings, "out": str(out), "eval_episodes": 0, "progress": False}
    )
    train(config)
    results = [
        evaluate(
            policy_actor(load_policy(path)),
            env_id,
            episodes,
            num_envs=episodes,
            env_config=config.env_config,
            split="selection",
        )
        for path in (_start(config, out), out / "policy")
    ]
    before, after = results
    stderr = math.hypot(*(r.return_std / math.sqrt(r.episodes) for r in results))
    assert after.return_mean > before.return_mean + 3 * stderr, (before, after)
