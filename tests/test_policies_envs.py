"""Policies on agentcomm's worlds: demonstrations, BC, the batched EnvRunner, train/eval CLIs."""

from __future__ import annotations

import json
import math
import types
import warnings
from functools import partial

import numpy as np
import pytest
import torch
from cli_args import parse_cli

import agentcomm
from agentcomm.envs.experts import expert_actions
from agentcomm.policies.demos import collect_demos, load_demos, save_demos

ENV = "SearchRescue-v0"
TINY_POLICY = {"hidden": 64, "depth": 1, "denoising_steps": 10, "ddim_steps": 5}


# ---------------------------------------------------------------- demonstrations


def test_demos_shapes_determinism_and_expert_rows(tmp_path):
    a = collect_demos(ENV, num_steps=5, num_envs=3, seed=7)
    b = collect_demos(ENV, num_steps=5, num_envs=3, seed=7)
    c = collect_demos(ENV, num_steps=5, num_envs=3, seed=8)
    world = agentcomm.make_vec(ENV, num_envs=3, seed=7)
    assert a.obs.shape == (5 * 3 * 4, world.obs_dim) and a.actions.shape == (60, 6)
    assert a.obs.dtype == torch.float32 and bool((a.actions.abs() <= 1).all())
    assert torch.equal(a.obs, b.obs) and torch.equal(a.actions, b.actions)
    assert not torch.equal(a.obs, c.obs)
    # Row order (t, b, n): the first B*N rows are the reset state and the expert's answer.
    obs0 = world.reset(seed=7)
    assert torch.equal(a.obs[:12], obs0.reshape(12, -1))
    assert torch.equal(a.actions[:12], expert_actions(world).reshape(12, 6).clamp(-1, 1))
    path = save_demos(tmp_path / "d.safetensors", a)
    back = load_demos(path)
    assert torch.equal(back.obs, a.obs) and torch.equal(back.actions, a.actions)
    assert (back.env_id, back.seed, back.episodes) == (ENV, 7, a.episodes)


def test_demos_count_episodes_and_accept_comm_overrides():
    """max_steps=4 and 9 steps: every world ends exactly twice (t=4, t=8) unless it succeeds
    earlier, so at least 2 * B episodes end; a silent comm config sends nothing."""
    demos = collect_demos(
        ENV, num_steps=9, num_envs=4, seed=0, env_config={"max_steps": 4, "comm": {"budget": 0}}
    )
    assert demos.episodes >= 8 and demos.returns.shape == (demos.episodes,)
    assert 0 <= demos.successes <= demos.episodes
    with pytest.raises(ValueError, match="num_steps"):
        collect_demos(ENV, num_steps=0)


# ---------------------------------------------------------------- behaviour cloning


def test_bc_actions_are_closer_to_the_expert_than_random():
    """1,024 expert pairs (16 steps x 16 worlds x 4 agents), 30 epochs of a 64-wide
    denoiser. On held-out states (another seed) the deterministic DDIM action's mean squared
    error to the expert's is below half that of uniform random actions (measured with 60
    epochs: BC 0.11, random 0.69)."""
    from agentcomm.policies.bc import train_bc
    from agentcomm.policies.diffusion import DiffusionPolicy

    train = collect_demos(ENV, num_steps=16, num_envs=16, seed=0)
    test = collect_demos(ENV, num_steps=8, num_envs=16, seed=1)
    gen = torch.Generator().manual_seed(0)
    policy = DiffusionPolicy(train.obs.shape[1], 6, **TINY_POLICY, generator=gen)
    train_bc(policy, train.obs, train.actions, 30, 256, 3e-3, 0.9, gen, progress=False)
    bc = policy.sample(test.obs, deterministic=True, mode="ddim").action
    rand = torch.rand(test.actions.shape, generator=gen) * 2 - 1
    mse_bc = float((bc - test.actions).square().mean())
    mse_rand = float((rand - test.actions).square().mean())
    assert mse_bc < 0.5 * mse_rand, (mse_bc, mse_rand)


# ---------------------------------------------------------------- train / eval CLI


_train_args = partial(parse_cli, "agentcomm.policies.train")
_eval_args = partial(parse_cli, "agentcomm.policies.evaluate")


def _train_bc(out, *settings: str) -> None:
    """A tiny BC run (seed 3) through the train CLI into ``out``, with ``--set`` items."""
    from agentcomm.policies.train import main

    argv = ["--algo", "bc", "--out", str(out), "--seed", "3", "--quiet"]
    for item in ("bc.batch_size=16", "eval_episodes=2", *settings):
        argv += ["--set", item]
    assert main(_train_args(argv)) == 0


@pytest.fixture(scope="module")
def bc_run(tmp_path_factory):
    """A tiny BC run through the train CLI (2 x 4 worlds x 4 agents, 3 epochs)."""
    out = tmp_path_factory.mktemp("bc_run")
    _train_bc(
        out,
        "bc.demo_steps=2",
        "bc.demo_envs=4",
        "bc.epochs=3",
        f"policy={json.dumps(TINY_POLICY)}",
        "env_config={comm: {budget: 16}}",
    )
    return out


def test_train_cli_bc_writes_policy_config_and_logs(bc_run):
    from agentcomm.policies.checkpoint import load_policy, read_config
    from agentcomm.policies.train import TrainConfig

    assert (bc_run / "policy" / "model.safetensors").is_file()
    meta = read_config(bc_run / "policy")
    assert meta["kind"] == "diffusion" and meta["policy"]["hidden"] == 64
    assert meta["metadata"]["env_id"] == ENV
    assert meta["metadata"]["env_config"] == {"comm": {"budget": 16}}
    assert meta["metadata"]["demos"] == 2 * 4 * 4
    assert load_policy(bc_run / "policy").config.obs_dim == meta["policy"]["obs_dim"]
    rows = (bc_run / "bc_loss.csv").read_text().splitlines()
    assert rows[0] == "epoch,loss" and len(rows) == 1 + 3
    assert (bc_run / "bc_loss.png").stat().st_size > 0
    config = TrainConfig.load(bc_run / "train_config.yaml")
    assert config.algo == "bc" and config.seed == 3 and config.env_config["comm"]["budget"] == 16
    assert json.loads((bc_run / "eval.json").read_text())["episodes"] == 2


def test_train_cli_bc_with_action_chunks_learns_chunks_and_evaluates(tmp_path):
    """``policy.action_horizon > 1`` through the train CLI: the demonstrations are the expert's
    action chunks (with DAgger too), the policy predicts chunks and the run evaluates it."""
    from agentcomm.policies.checkpoint import load_policy

    _train_bc(
        tmp_path,
        "bc.demo_steps=3",
        "bc.demo_envs=2",
        "bc.epochs=2",
        "bc.dagger_rounds=1",
        "bc.dagger_epochs=1",
        f"policy={json.dumps({**TINY_POLICY, 'action_horizon': 3})}",
    )
    policy = load_policy(tmp_path / "policy")
    assert policy.config.action_horizon == 3 and policy.config.action_dim == 6
    assert json.loads((tmp_path / "eval.json").read_text())["episodes"] == 2


def test_eval_cli_runs_checkpoint_and_named_policies(bc_run, capsys):
    from agentcomm.policies.evaluate import main

    out = bc_run / "eval_cli.json"
    assert (
        main(_eval_args(["--checkpoint", str(bc_run), "--episodes", "3", "--json", str(out)])) == 0
    )
    assert main(_eval_args(["--checkpoint", "expert", "--env", ENV, "--episodes", "2"])) == 0
    assert main(_eval_args(["--checkpoint", "random", "--env", ENV, "--episodes", "2"])) == 0
    assert main(_eval_args(["--checkpoint", str(bc_run), "--episodes", "2", "--stochastic"])) == 0
    text = capsys.readouterr().out
    assert text.count("success_rate:") == 4 and "channel_uses_per_agent_step:" in text
    assert text.count("(deterministic)") == 3 and text.count("(stochastic)") == 1
    result = json.loads(out.read_text())
    assert result["episodes"] == 3 and 0.0 <= result["success_rate"] <= 1.0
    # The checkpoint's own env config (budget 16) is used: at most 16 uses per link.
    assert result["channel_uses_per_agent_step"] <= 16 * 3


def test_train_cli_sb3_ppo_exports_safetensors_that_evaluate(tmp_path):
    """2 iterations of 64 agent-steps (4 worlds x 4 agents x 4 steps): SB3 counts 128
    timesteps; the exported Gaussian actor reloads without pickle and gives mean actions."""
    from agentcomm.policies.gaussian_ppo import load_gaussian_actor
    from agentcomm.policies.train import main

    out = tmp_path / "sb3"
    argv = ["--algo", "sb3-ppo", "--out", str(out), "--iterations", "2", "--quiet"]
    for item in (
        "ppo.num_envs=4",
        "ppo.train_batch_size=64",
        "ppo.minibatch_size=32",
        "ppo.num_epochs=1",
        "gaussian.hidden=[16]",
        "eval_episodes=1",
    ):
        argv += ["--set", item]
    assert main(_train_args(argv)) == 0
    rows = (out / "sb3" / "progress.csv").read_text().splitlines()
    header = rows[0].split(",")
    steps = [int(float(r.split(",")[header.index("time/total_timesteps")])) for r in rows[1:]]
    assert steps[-1] == 128
    # Resume to 3 iterations: SB3's step count continues from the checkpoint (the resumed
    # run logs one row, 192), the rows of the first run are kept.
    assert (out / "sb3" / "model.zip").is_file()
    assert main(_train_args(["--resume", str(out), "--iterations", "3", "--quiet"])) == 0
    rows = (out / "sb3" / "progress.csv").read_text().splitlines()
    header = rows[0].split(",")
    steps = [int(float(r.split(",")[header.index("time/total_timesteps")])) for r in rows[1:]]
    assert steps == [64, 128, 192], steps
    actor = load_gaussian_actor(out / "policy")
    obs = torch.zeros(3, agentcomm.make_vec(ENV).obs_dim)
    actions = actor(obs)
    assert actions.shape == (3, 6) and torch.equal(actions, actor(obs))
    assert bool((actions.abs() <= 1).all())


def test_gaussian_actor_samples_its_distribution():
    """sample() draws mean + std z from the exported Gaussian, clipped to [-1, 1]: exactly
    that formula with the same generator (RLlib: std = exp of the second half of the
    distribution inputs), and N(0, 0.1^2) statistics for an SB3 policy with zero mean
    and log-std log(0.1) (20,000 draws: tolerances >= 4 standard errors)."""
    from ray.rllib.core.columns import Columns

    from agentcomm.policies.gaussian_ppo import GaussianActor, _rllib_module, _sb3_policy

    gen = torch.Generator().manual_seed(0)
    obs = torch.rand(5, 4, generator=gen) * 2 - 1
    actor = GaussianActor("rllib", _rllib_module(4, 3, [8])).eval()
    mean, std = actor.distribution(obs)
    inputs = actor.net.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
    assert torch.equal(mean, inputs[:, :3]) and torch.equal(std, inputs[:, 3:].exp())
    assert torch.equal(actor(obs), mean.clamp(-1, 1))
    draws = actor.sample(obs, torch.Generator().manual_seed(7))
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(draws, (mean + std * z).clamp(-1, 1))
    assert not torch.equal(draws, actor.sample(obs, torch.Generator().manual_seed(8)))

    net = _sb3_policy(4, 3, [8])
    with torch.no_grad():
        net.action_net.weight.zero_()
        net.action_net.bias.zero_()
        net.log_std.fill_(math.log(0.1))
    actor = GaussianActor("sb3", net).eval()
    draws = actor.sample(torch.zeros(20_000, 4), torch.Generator().manual_seed(1))
    assert float(draws.mean().abs()) < 4 * 0.1 / math.sqrt(draws.numel())
    assert abs(float(draws.std()) / 0.1 - 1) < 0.02
    assert torch.equal(actor(torch.zeros(2, 4)), torch.zeros(2, 3))


def test_stochastic_policy_actor_samples_the_chain_reproducibly():
    """policy_actor(stochastic=True) acts with DiffusionPolicy.sample's stochastic chain,
    drawn from the given generator: same seed, same actions; the deterministic actor is the
    fixed-noise chain."""
    from agentcomm.policies.diffusion import DiffusionPolicy
    from agentcomm.policies.evaluate import policy_actor

    policy = DiffusionPolicy(7, 6, generator=torch.Generator().manual_seed(0), **TINY_POLICY)
    obs = torch.rand(2, 3, 7, generator=torch.Generator().manual_seed(1))
    world = types.SimpleNamespace(device=torch.device("cpu"))

    def act(stochastic: bool, seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return policy_actor(policy, "ddim", stochastic, gen)(world, obs)

    want = policy.sample(
        obs.reshape(6, 7), generator=torch.Generator().manual_seed(5), mode="ddim"
    ).action.reshape(2, 3, 6)
    assert torch.equal(act(True, 5), want)
    assert not torch.equal(act(True, 6), want)
    fixed = policy.sample(obs.reshape(6, 7), deterministic=True, mode="ddim").action
    assert torch.equal(act(False, 5), fixed.reshape(2, 3, 6))
    assert torch.equal(act(False, 6), act(False, 5))
    with pytest.raises(ValueError, match="stochastic"):
        policy_actor(policy, "ddim", stochastic="yes")


def test_evaluate_counts_exactly_the_requested_episodes():
    """Silent worlds (budget 0) of 3 steps: every episode lasts 3 steps unless it succeeds,
    5 episodes over rounds of 2 worlds, and no channel use is counted."""
    from agentcomm.policies.evaluate import evaluate, load_actor

    actor, _ = load_actor("random", generator=torch.Generator().manual_seed(0))
    res = evaluate(actor, ENV, 5, num_envs=2, env_config={"max_steps": 3, "comm": {"budget": 0}})
    assert res.episodes == 5 and res.length_mean <= 3.0
    assert res.channel_uses_per_agent_step == 0.0 and res.bits_per_agent_step == 0.0
    with pytest.raises(ValueError, match="checkpoint"):
        load_actor("/nonexistent/dir")
    _, meta = load_actor("shipped:searchrescue-bc")
    assert meta["env_id"] == ENV


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"algo": "a2c"}, "algo"),
        ({"bogus": 1}, "bogus"),
        ({"env": "Nope-v0"}, "env"),
        ({"rllib": {"runner": "batched", "multi_agent": "per_agent"}}, r"rllib\.multi_agent"),
        ({"algo": "ppo", "dppo": {"critic_input": "state"}}, r"dppo\.critic_input"),
        ({"algo": "dppo", "dppo": {"critic_input": "both"}}, r"dppo\.critic_input"),
        (
            {
                "algo": "dppo",
                "dppo": {"critic_input": "state"},
                "env_config": {"team_reward_weight": 0.5},
            },
            "team_reward_weight",
        ),
        ({"policy": {"obs_dim": 3}}, "obs_dim"),
        ({"ppo": {"minibatch_size": 10, "train_batch_size": 5}}, r"ppo\.minibatch_size"),
        ({"bc": {"ema_decay": 1.0}}, r"bc\.ema_decay"),
        ({"ppo": {"lr_anneal_fraction": 1.5}}, r"ppo\.lr_anneal_fraction"),
        ({"gaussian": {"hidden": []}}, r"gaussian\.hidden"),
    ],
)
def test_train_config_rejects_bad_values(changes, match):
    from agentcomm.policies.train import TrainConfig

    with pytest.raises(ValueError, match=match):
        TrainConfig.from_dict(changes)


def test_dppo_recipe_config_is_the_learning_curve_experiments():
    """experiments/recipes/configs/dppo_searchrescue.yaml is the DPPO run of
    experiments/recipes/train_search_rescue.py, starting from the shipped BC policy."""
    from pathlib import Path

    import agentcomm.experiments
    from agentcomm.experiments.recipes.train_search_rescue import FULL, run_config
    from agentcomm.policies.checkpoint import policy_path, shipped_policy_dir
    from agentcomm.policies.train import TrainConfig

    root = Path(agentcomm.experiments.__file__).parent
    path = root / "recipes" / "configs" / "dppo_searchrescue.yaml"
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # written with the sections' keys
        config = TrainConfig.load(path)
    first = {
        "algo": "dppo",
        "sampler": "ddim",
        "eval_episodes": FULL["eval_episodes"],
        "dppo": {"pretrained": "shipped:searchrescue-bc"},
    }
    expected = run_config(config.seed, first, FULL["rl"], FULL["dppo"])
    assert config.replace(out=expected.out, progress=expected.progress) == expected
    assert policy_path(config.dppo.pretrained) == shipped_policy_dir("searchrescue-bc")
    with pytest.raises(ValueError, match="nope"):
        policy_path("shipped:nope")


# ---------------------------------------------------------------- batched EnvRunner (Ray)

SMALL_DPPO = {"denoising_steps": 5, "ddim_steps": 5, "ft_denoising_steps": 3, "hidden": 32}


def _dppo_batched_config(num_worlds: int, batch: int, **env_config):
    from agentcomm.policies.dppo import dppo_config
    from agentcomm.policies.env_runner import BatchedCommEnvRunner

    config = dppo_config(
        f"agentcomm/{ENV}",
        env_config=env_config,
        policy={**SMALL_DPPO, "depth": 1},
        sampler="ddim",
        critic_hidden=(32,),
        critic_input="state" if env_config.get("centralized_critic") else "obs",
        num_envs_per_env_runner=num_worlds,
        train_batch_size=batch,
        minibatch_size=batch // 2,
        num_epochs=1,
    )
    return config.env_runners(env_runner_cls=BatchedCommEnvRunner)


@pytest.mark.ray
def test_batched_runner_exact_steps_chunks_and_one_dppo_iteration(ray_session):
    from agentcomm.policies.dppo_module import DPPO_CHAIN, DPPO_LOGP_STEPS

    # B=3 worlds x N=4 agents, 3-step episodes: 100 agent-steps -> ceil(100/12) = 9 world
    # steps -> exactly 108 agent-steps, 3 complete episodes per (world, agent).
    algo = _dppo_batched_config(3, 96, max_steps=3, centralized_critic=True).build_algo()
    try:
        runner = algo.env_runner
        episodes = runner.sample(num_timesteps=100)
        assert sum(len(e) for e in episodes) == 108
        assert len(episodes) == 3 * 4 * 3 and all(e.is_done for e in episodes)
        ep = episodes[0]
        assert ep.get_extra_model_outputs(DPPO_CHAIN).shape == (len(ep), 4, 6)
        assert ep.get_extra_model_outputs(DPPO_LOGP_STEPS).shape == (len(ep), 3)
        assert set(ep.get_observations(0)) == {"obs", "state"}
        # Team reward: the 4 agents of a world see the same rewards.
        by_world = [episodes[i : i + 3] for i in range(0, len(episodes), 3)]
        for w in range(3):
            agents = by_world[w * 4 : w * 4 + 4]
            for k in range(3):
                ref = agents[0][k].get_rewards()
                assert all(np.array_equal(a[k].get_rewards(), ref) for a in agents)
        # 5 agent-steps -> one world step; the chunk continues in the next call with the
        # same id, t_started = 1, and its first observation = the previous last one.
        first = runner.sample(num_timesteps=5, force_reset=True)
        second = runner.sample(num_timesteps=5)
        assert [len(e) for e in first] == [1] * 12 and not any(e.is_done for e in first)
        assert [e.id_ for e in first] == [e.id_ for e in second]
        assert all(e.t_started == 1 for e in second)
        for a, b in zip(first, second):
            np.testing.assert_array_equal(
                a.get_observations(-1)["obs"], b.get_observations(0)["obs"]
            )
        # Episode mode: fresh worlds, only completed episodes, N per finished world.
        done = runner.sample(num_episodes=10, random_actions=True)
        assert len(done) >= 10 and len(done) % 4 == 0 and all(e.is_done for e in done)
        assert all(e.t_started == 0 and len(e) <= 3 for e in done)
        manual = runner.get_metrics()
        manual_steps = 108 + 12 + 12 + sum(len(e) for e in done)
        assert manual["num_env_steps_sampled"] == manual_steps
        assert manual["world_steps_sampled"] == manual_steps // 4
        result = algo.train()
        assert result["env_runners"]["num_env_steps_sampled"] == 96  # 8 world steps x 12
        assert result["env_runners"]["world_steps_sampled"] == 24
        stats = result["learners"]["default_policy"]
        assert 0.0 < stats["dppo_ratio_min_k2"] <= 1.0 <= stats["dppo_ratio_max_k2"]
    finally:
        algo.stop()


@pytest.mark.ray
def test_batched_runner_trains_gaussian_ppo_and_stock_runner_still_works(ray_session):
    from agentcomm.envs.adapters.rllib import register_rllib_envs
    from agentcomm.policies.dppo import dppo_config
    from agentcomm.policies.env_runner import BatchedCommEnvRunner
    from agentcomm.policies.gaussian_ppo import gaussian_ppo_config

    config = gaussian_ppo_config(
        f"agentcomm/{ENV}",
        hidden=(16,),
        num_envs_per_env_runner=2,
        train_batch_size=64,
        minibatch_size=32,
        num_epochs=1,
    ).env_runners(env_runner_cls=BatchedCommEnvRunner)
    algo = config.build_algo()
    try:
        # The benchmarks' clock times every update and sample call of an iteration.
        from agentcomm.experiments.timing import IterationClock

        clock = IterationClock(algo)
        result, timing = clock.train(algo)
        assert result["env_runners"]["num_env_steps_sampled"] == 64
        assert "vf_loss" in result["learners"]["default_policy"]
        assert len(clock.updates) == 1 and timing["update_agent_steps"] == 64
        assert timing["sample_agent_steps"] == 64 and len(clock.samples) >= 1
        assert 0 < timing["update_seconds"] and 0 < timing["sample_seconds"]
        us = timing["update_seconds"] / 64 * 1e6
        assert timing["update_us_per_agent_step"] == pytest.approx(us)
        _, second = clock.train(algo)
        assert len(clock.updates) == 2 and second["update_agent_steps"] == 64
    finally:
        algo.stop()
    register_rllib_envs()
    stock = dppo_config(
        f"agentcomm/{ENV}",
        env_config={"max_steps": 4},
        policy={**SMALL_DPPO, "depth": 1},
        sampler="ddim",
        critic_hidden=(16,),
        multi_agent="shared",
        train_batch_size=32,
        minibatch_size=32,
        num_epochs=1,
    ).build_algo()
    try:
        assert "dppo_ratio_max_k2" in stock.train()["learners"]["shared"]
    finally:
        stock.stop()


@pytest.mark.ray
def test_train_dppo_checkpoints_resume_and_export(ray_session, bc_run, tmp_path):
    from agentcomm.policies.checkpoint import load_policy
    from agentcomm.policies.train import main

    out = tmp_path / "dppo"
    argv = ["--algo", "dppo", "--out", str(out), "--iterations", "1", "--quiet"]
    argv += ["--pretrained", str(bc_run / "policy")]
    for item in (
        "ppo.num_envs=2",
        "ppo.train_batch_size=32",
        "ppo.minibatch_size=32",
        "ppo.num_epochs=1",
        "dppo.critic_hidden=[16]",
        "eval_episodes=1",
        "env_config={comm: {budget: 16}}",
        "policy={ft_denoising_steps: 2}",
    ):
        argv += ["--set", item]
    assert main(_train_args(argv)) == 0
    assert json.loads((out / "rllib" / "LATEST.json").read_text())["iteration"] == 1
    assert main(_train_args(["--resume", str(out), "--iterations", "2", "--quiet"])) == 0
    assert json.loads((out / "rllib" / "LATEST.json").read_text())["iteration"] == 2
    rows = (out / "progress.csv").read_text().splitlines()
    steps = [float(r.split(",")[1]) for r in rows[1:]]
    assert len(rows) == 3 and steps == [32.0, 64.0]
    lr = rows[0].split(",").index("lr")
    assert [float(r.split(",")[lr]) for r in rows[1:]] == [1e-4, 1e-4]
    exported = load_policy(out / "policy")
    base = load_policy(bc_run / "policy")
    assert exported.config.ft_denoising_steps == 2
    for key, value in base.denoiser.state_dict().items():
        assert torch.equal(exported.base.state_dict()[key], value), key
    assert any(
        not torch.equal(exported.actor_ft.state_dict()[k], v)
        for k, v in base.denoiser.state_dict().items()
    )
    assert math.isfinite(json.loads((out / "eval.json").read_text())["return_mean"])


def test_chunked_demonstrations_and_bc():
    """Chunks hold the next Ta expert actions (offset 0 = the single-step demos), repeat the
    last action past an episode's end, and train a U-Net chunk policy by BC."""
    import torch

    from agentcomm.policies import DiffusionPolicy, train_bc
    from agentcomm.policies.demos import collect_demos

    kw = dict(num_steps=12, num_envs=3, seed=5, env_config={"max_steps": 5})
    one = collect_demos("IntentCoverage-v0", **kw)
    chunk = collect_demos("IntentCoverage-v0", horizon=3, **kw)
    assert chunk.actions.shape == (one.actions.shape[0], 3, 6)
    assert torch.equal(chunk.actions[:, 0], one.actions)
    t, b, n = 12, 3, chunk.actions.shape[0] // 36
    acts = one.actions.view(t, b, n, 6)
    ch = chunk.actions.view(t, b, n, 3, 6)
    # Step 0 of a fresh 5-step episode: offsets 1 and 2 are steps 1 and 2.
    assert torch.equal(ch[0, :, :, 1], acts[1]) and torch.equal(ch[0, :, :, 2], acts[2])
    # The last recorded step can only repeat itself.
    assert torch.equal(ch[-1, :, :, 2], acts[-1])
    policy = DiffusionPolicy(
        obs_dim=chunk.obs.shape[1],
        action_dim=6,
        network="unet1d",
        action_horizon=3,
        hidden=16,
        denoising_steps=5,
        ft_denoising_steps=2,
        ddim_steps=2,
        generator=torch.Generator().manual_seed(0),
    )
    result = train_bc(
        policy,
        chunk.obs,
        chunk.actions,
        epochs=2,
        batch_size=64,
        lr=1e-3,
        ema_decay=0.9,
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    assert all(math.isfinite(x) for x in result.losses)
    out = policy.sample(chunk.obs[:4], deterministic=True, mode="ddim")
    assert out.action.shape == (4, 6) and out.action_chunk.shape == (4, 3, 6)


@pytest.mark.ray
def test_time_budget_stops_after_the_iteration_that_crosses_it(ray_session, tmp_path):
    from agentcomm.policies.train import TrainConfig, train

    config = TrainConfig.from_dict(
        {
            "algo": "ppo",
            "env": ENV,
            "out": str(tmp_path / "ppo"),
            "ppo": {
                "iterations": 50,
                "num_envs": 2,
                "train_batch_size": 32,
                "minibatch_size": 32,
                "num_epochs": 1,
            },
            "rllib": {"time_budget_s": 1e-3},
            "gaussian": {"hidden": [16]},
            "eval_episodes": 0,
            "progress": False,
        }
    )
    result = train(config)
    assert [row["iteration"] for row in result.history] == [1.0]


def test_policy_path_takes_a_training_run_directory(tmp_path):
    from agentcomm.policies.checkpoint import policy_path

    # A BC run's directory is what a user passes to dppo.pretrained or --checkpoint.
    run = tmp_path / "bc"
    (run / "policy").mkdir(parents=True)
    (run / "train_config.yaml").write_text("algo: bc\n")
    assert policy_path(run) == run / "policy"
    assert policy_path(run / "policy") == run / "policy"
    assert policy_path(tmp_path / "elsewhere") == tmp_path / "elsewhere"
