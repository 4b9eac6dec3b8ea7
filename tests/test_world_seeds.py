"""World-seed splits (agentcomm.worlds): disjoint ranges, no collisions, and the evaluators
and the training runner drawing their worlds through them."""

from __future__ import annotations

import itertools

import pytest
import torch

import agentcomm
from agentcomm.worlds import MAX_ROUNDS, MAX_SEED, SPLITS, split_range, world_seed

ENV = "SearchRescue-v0"
TINY = {"max_steps": 2, "comm": {"budget": 0}}


def test_split_ranges_are_disjoint_ordered_and_fit_int64():
    ranges = [split_range(s) for s in SPLITS]
    assert SPLITS == ("train", "selection", "evaluation")
    for a, b in itertools.pairwise(ranges):
        assert a.stop <= b.start
    assert ranges[0].start > 2**31  # any directly given small seed is outside every split
    assert ranges[-1].stop <= 2**63
    torch.Generator().manual_seed(world_seed("evaluation", MAX_SEED - 1, MAX_ROUNDS - 1))


def test_world_seeds_never_collide_and_stay_in_their_split():
    grid = [0, 1, 2, 3, 7, 63, 64, 999, MAX_SEED - 1]
    rounds = [0, 1, 2, 7, 8, 63, MAX_ROUNDS - 1]
    seen: dict[int, tuple] = {}
    for split, seed, r in itertools.product(SPLITS, grid, rounds):
        ws = world_seed(split, seed, r)
        assert ws in split_range(split), (split, seed, r)
        assert ws not in seen, ((split, seed, r), seen.get(ws))
        seen[ws] = (split, seed, r)
    # Seed s's rounds never reach seed s + 1's first round (the old seed + r scheme did).
    assert world_seed("selection", 0, MAX_ROUNDS - 1) < world_seed("selection", 1, 0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"split": "test", "seed": 0}, r"split='test'.*'train', 'selection', 'evaluation'"),
        (
            {"split": "evaluation", "seed": -1},
            r"seed=-1 is out of range; allowed \[0, 2147483648\)",
        ),
        ({"split": "evaluation", "seed": MAX_SEED}, r"seed=2147483648 is out of range"),
        ({"split": "evaluation", "seed": 1.0}, r"seed=1.0 must be an int"),
        ({"split": "evaluation", "seed": True}, r"seed=True must be an int"),
        ({"split": "train", "seed": 0, "round": MAX_ROUNDS}, r"round=1000000 is out of range"),
        ({"split": "train", "seed": 0, "round": -1}, r"round=-1 is out of range"),
    ],
)
def test_world_seed_rejects_bad_input_naming_it(kwargs, match):
    with pytest.raises(ValueError, match=match):
        world_seed(**kwargs)


def _recording_make_vec(monkeypatch) -> list[tuple[int, torch.Tensor]]:
    """Patch ``agentcomm.make_vec`` so that every seeded reset records its seed and
    observation ``[B, N, Do]``."""
    calls: list[tuple[int, torch.Tensor]] = []
    make_vec = agentcomm.make_vec

    def recording(*args, **kwargs):
        world = make_vec(*args, **kwargs)
        reset = world.reset

        def logged(seed=None):
            obs = reset(seed=seed)
            if seed is not None:
                calls.append((seed, obs.clone()))
            return obs

        world.reset = logged
        return world

    monkeypatch.setattr(agentcomm, "make_vec", recording)
    return calls


def _policy_eval_resets(monkeypatch, **kwargs) -> list[tuple[int, torch.Tensor]]:
    from agentcomm.policies.evaluate import evaluate, load_actor

    calls = _recording_make_vec(monkeypatch)
    actor, _ = load_actor("expert")
    # 4 episodes on 2 worlds: 2 rounds, each one seeded reset.
    evaluate(actor, ENV, 4, num_envs=2, env_config=TINY, **kwargs)
    monkeypatch.undo()
    return calls


def test_policy_evaluate_seeds_0_and_1_use_disjoint_worlds(monkeypatch):
    """Before the splits, round r of seed s reset with s + r: seed 0's round 1 was seed 1's
    round 0. Without ``split=`` this test runs on either version of ``evaluate``."""
    zero = _policy_eval_resets(monkeypatch, seed=0)
    one = _policy_eval_resets(monkeypatch, seed=1)
    assert len(zero) == len(one) == 2
    assert not {s for s, _ in zero} & {s for s, _ in one}
    for (_, a), (_, b) in itertools.product(zero, one):
        assert not torch.equal(a, b)


def test_policy_evaluate_draws_every_round_from_its_split(monkeypatch):
    for split in ("selection", "evaluation"):
        for seed in (0, 5):
            calls = _policy_eval_resets(monkeypatch, seed=seed, split=split)
            assert [s for s, _ in calls] == [world_seed(split, seed, r) for r in range(2)]
    assert _policy_eval_resets(monkeypatch, seed=3)[0][0] == world_seed("evaluation", 3, 0)


def test_policy_evaluate_same_seed_same_result_other_split_other_worlds():
    from agentcomm.policies.evaluate import evaluate, load_actor

    actor, _ = load_actor("expert")
    kw = {"num_envs": 8, "env_config": {"max_steps": 6}}
    a = evaluate(actor, ENV, 16, seed=2, **kw)
    b = evaluate(actor, ENV, 16, seed=2, **kw)
    c = evaluate(actor, ENV, 16, seed=2, split="selection", **kw)
    assert a == b
    assert a.return_mean != c.return_mean


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"split": "train"}, r"split='train' is not allowed; choose one of \['evaluation', "),
        ({"split": None}, r"split=None is not allowed"),
        ({"seed": -1}, r"seed=-1 is out of range; allowed \[0, "),
        ({"seed": 2**31}, r"seed=2147483648 is out of range"),
    ],
)
def test_policy_evaluate_rejects_bad_split_and_seed(kwargs, match):
    from agentcomm.policies.evaluate import evaluate, load_actor

    actor, _ = load_actor("expert")
    with pytest.raises(ValueError, match=match):
        evaluate(actor, ENV, 2, num_envs=2, env_config=TINY, **kwargs)


def test_policy_evaluate_rejects_more_rounds_than_a_seed_holds():
    from agentcomm.policies.evaluate import evaluate, load_actor

    actor, _ = load_actor("expert")
    with pytest.raises(ValueError, match=r"round=1000000 is out of range"):
        evaluate(actor, ENV, MAX_ROUNDS + 1, num_envs=1, env_config=TINY)


def test_eval_cli_split_option():
    import argparse

    from agentcomm.policies.evaluate import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(["--checkpoint", "expert"]).split == "evaluation"
    args = parser.parse_args(["--checkpoint", "expert", "--split", "selection"])
    assert args.split == "selection"
    with pytest.raises(SystemExit):
        parser.parse_args(["--checkpoint", "expert", "--split", "train"])


def test_main_job_evaluator_uses_evaluation_worlds(monkeypatch):
    from agentcomm.experiments.metrics import evaluate, make_policy

    calls = _recording_make_vec(monkeypatch)
    kw = {"overrides": TINY}
    evaluate(ENV, make_policy("expert"), 3, 0, **kw)
    evaluate(ENV, make_policy("expert"), 3, 1, **kw)
    assert [s for s, _ in calls] == [world_seed("evaluation", s, 0) for s in (0, 1)]
    assert not torch.equal(calls[0][1], calls[1][1])
    with pytest.raises(ValueError, match=r"seed=-1 is out of range"):
        evaluate(ENV, make_policy("expert"), 3, -1, **kw)


def test_train_config_eval_split_defaults_to_selection_and_is_checked():
    from agentcomm.policies.train import TrainConfig

    assert TrainConfig().eval_split == "selection"
    assert TrainConfig.from_dict({"eval_split": "evaluation"}).eval_split == "evaluation"
    with pytest.raises(ValueError, match=r"eval_split='train'"):
        TrainConfig.from_dict({"eval_split": "train"})


def test_sweep_evaluates_on_selection_and_the_experiment_on_evaluation_worlds():
    from agentcomm.experiments.recipes.sweep_dppo import BASE
    from agentcomm.experiments.recipes.train_search_rescue import FULL, QUICK

    assert BASE["eval_split"] == "selection"
    assert FULL["rl"]["eval_split"] == QUICK["rl"]["eval_split"] == "evaluation"


def _runner(seed: int | None, worker_index: int = 0):
    from agentcomm.policies.dppo import dppo_config
    from agentcomm.policies.env_runner import BatchedCommEnvRunner

    policy = {"denoising_steps": 5, "ddim_steps": 5, "ft_denoising_steps": 3, "hidden": 16}
    config = dppo_config(
        f"agentcomm/{ENV}",
        env_config=TINY,
        policy={**policy, "depth": 1},
        sampler="ddim",
        critic_hidden=(16,),
        num_envs_per_env_runner=2,
        train_batch_size=16,
        minibatch_size=8,
        num_epochs=1,
    )
    config = config.env_runners(env_runner_cls=BatchedCommEnvRunner).debugging(seed=seed)
    return BatchedCommEnvRunner(config=config, worker_index=worker_index)


def test_batched_runner_trains_on_train_worlds_one_per_seed_and_runner():
    """RLlib's own per-runner seed is ``seed + worker_index``; the runner's worlds are
    indexed by the pair instead, in the train split."""
    seeds = {(s, i): _runner(s, i)._world_seed for s, i in ((0, 0), (0, 1), (1, 0), (1, 1))}
    assert seeds == {(s, i): world_seed("train", s, i) for s, i in seeds}
    assert len(set(seeds.values())) == 4
    assert _runner(None)._world_seed in split_range("train")
