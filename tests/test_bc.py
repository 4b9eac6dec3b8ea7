"""Behaviour cloning: the loss falls and a diffusion policy recovers a known expert map."""

from __future__ import annotations

import pytest
import torch

from agentcomm.policies.bc import train_bc
from agentcomm.policies.checkpoint import load_policy, read_config
from agentcomm.policies.diffusion import DiffusionPolicy

W = torch.tensor([[1.5, -1.0, 0.5], [0.3, 0.8, -1.2]])


def _expert(obs: torch.Tensor) -> torch.Tensor:
    return torch.tanh(obs @ W.T)


def _data(generator: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    obs = torch.rand(n, 3, generator=generator) * 2 - 1
    return obs, _expert(obs)


def _policy(generator: torch.Generator) -> DiffusionPolicy:
    return DiffusionPolicy(
        3, 2, denoising_steps=10, ddim_steps=5, hidden=64, depth=2, generator=generator
    )


def test_bc_recovers_tanh_map_and_saves_ema(generator, tmp_path):
    """Seed 1234: the epoch loss falls below 30% of the first epoch's and deterministic DDPM
    and DDIM actions are within MSE 2e-3 of tanh(W o) on held-out observations (measured
    ~1.2e-4; the action variance is ~0.4)."""
    policy = _policy(generator)
    obs, act = _data(generator, 1024)
    result = train_bc(
        policy,
        obs,
        act,
        epochs=40,
        batch_size=128,
        lr=3e-3,
        ema_decay=0.9,
        generator=generator,
        progress=False,
        save_dir=tmp_path / "bc",
        save_metadata={"dataset": "tanh"},
    )
    assert len(result.losses) == 40
    assert result.losses[-1] < 0.3 * result.losses[0]
    test_obs, test_act = _data(generator, 512)
    for mode in ("ddpm", "ddim"):
        pred = policy.sample(test_obs, deterministic=True, mode=mode).action
        assert float((pred - test_act).square().mean()) < 2e-3, mode
    loaded = load_policy(result.checkpoint, expected_config={"kind": "diffusion"})
    assert torch.equal(
        loaded.sample(test_obs, deterministic=True).action,
        policy.sample(test_obs, deterministic=True).action,
    )
    meta = read_config(result.checkpoint)["metadata"]
    assert meta["dataset"] == "tanh" and meta["ema_decay"] == 0.9


def test_bc_keeps_the_ema_of_the_iterates():
    """One step per epoch; the kept weights equal e_n = d e_{n-1} + (1 - d) w_n, e_1 = w_1,
    where w_n (the n-th iterate) is what training for n epochs with decay 0 returns."""
    decay, epochs = 0.7, 4
    obs, act = _data(torch.Generator().manual_seed(0), 16)

    def trained(n: int, d: float) -> dict[str, torch.Tensor]:
        policy = _policy(torch.Generator().manual_seed(1))
        train_bc(policy, obs, act, n, 16, 1e-2, d, torch.Generator().manual_seed(2), progress=False)
        return policy.denoiser.state_dict()

    ema = trained(1, 0.0)
    for n in range(2, epochs + 1):
        w_n = trained(n, 0.0)
        ema = {k: decay * v + (1 - decay) * w_n[k] for k, v in ema.items()}
    got = trained(epochs, decay)
    assert any(not torch.equal(got[k], w_n[k]) for k in got)
    for key, value in got.items():
        torch.testing.assert_close(value, ema[key], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": 0.0}, "lr"),
        ({"ema_decay": 1.0}, "ema_decay"),
    ],
)
def test_bc_bad_arguments_raise(generator, kwargs, match):
    obs, act = _data(generator, 8)
    args = dict(epochs=1, batch_size=4, lr=1e-3, ema_decay=0.5, generator=generator)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        train_bc(_policy(generator), obs, act, progress=False, **args)


def test_bc_rejects_bad_data(generator):
    obs, act = _data(generator, 8)
    with pytest.raises(ValueError, match="actions"):
        train_bc(_policy(generator), obs, act * 3, 1, 4, 1e-3, 0.5, generator, progress=False)
    with pytest.raises(ValueError, match="obs"):
        train_bc(_policy(generator), obs[:, :2], act, 1, 4, 1e-3, 0.5, generator, progress=False)


def test_dagger_demos_follow_the_behaviour_and_carry_the_experts_labels():
    import agentcomm
    from agentcomm.envs.experts import expert_actions, random_actions
    from agentcomm.policies.demos import collect_demos

    gen = torch.Generator().manual_seed(3)
    drive = lambda world, obs: random_actions(world, gen)  # noqa: E731
    demos = collect_demos("IntentCoverage-v0", 6, num_envs=4, seed=1, behaviour=drive)
    expert = collect_demos("IntentCoverage-v0", 6, num_envs=4, seed=1)
    # The same first states; then the worlds followed the random actions, not the expert's.
    n = 4 * 4
    assert torch.equal(demos.obs[:n], expert.obs[:n])
    assert not torch.equal(demos.obs[n:], expert.obs[n:])
    # Every row is labelled with the expert's action in the state the behaviour reached.
    world = agentcomm.make_vec("IntentCoverage-v0", num_envs=4, seed=1)
    obs = world.reset(seed=1)
    gen.manual_seed(3)
    for t in range(6):
        label = expert_actions(world)
        rows = slice(t * n, (t + 1) * n)
        assert torch.equal(demos.obs[rows], obs.reshape(n, -1))
        assert torch.equal(demos.actions[rows], label.reshape(n, -1).clamp(-1, 1))
        obs, _, term, trunc, _ = world.step(random_actions(world, gen))
        if bool((term | trunc).any()):
            world.reset_at(term | trunc)
            obs = world.observation()


def _tiny_bc_config(env_config: dict | None = None, **bc: object):
    """A BC run on IntentCoverage small enough for the default suite (one DAgger epoch a
    round); ``bc``: the ``bc`` section's settings."""
    from agentcomm.policies.train_config import TrainConfig

    return TrainConfig.from_dict(
        {
            "algo": "bc",
            "env": "IntentCoverage-v0",
            "progress": False,
            "eval_episodes": 0,
            "env_config": env_config or {},
            "policy": {
                "hidden": 16,
                "depth": 1,
                "denoising_steps": 4,
                "ddim_steps": 2,
                "ft_denoising_steps": 2,
            },
            "bc": {"dagger_epochs": 1, **bc},
        }
    )


def test_bc_run_with_dagger_aggregates_the_policys_states(tmp_path):
    from agentcomm.policies.bc_run import train_bc_run
    from agentcomm.policies.checkpoint import read_config

    config = _tiny_bc_config(demo_steps=4, demo_envs=2, epochs=2, dagger_rounds=2)
    result = train_bc_run(config, tmp_path)
    meta = read_config(tmp_path / "policy")["metadata"]
    assert meta["dagger_rounds"] == 2
    assert meta["demos"] == 3 * 4 * 2 * 4  # the expert's rows and two rounds of the policy's
    assert len(result.history) == 2 + 2 * 1


def test_bc_modes_demonstrate_in_every_mode_with_its_one_hot(tmp_path, monkeypatch):
    """``bc.modes`` splits the demonstration worlds between the modes, each mode's worlds
    run in that mode (the operating point's one-hot shows it), the first collection and
    every DAgger round alike."""
    from agentcomm.envs.observe import OPERATING_POINT_DIM
    from agentcomm.policies import bc_run, demos

    calls = []
    real = demos.collect_demos

    def spy(env_id, steps, **kwargs):
        calls.append((kwargs["num_envs"], kwargs["env_config"]["comm"]["mode"]))
        out = real(env_id, steps, **kwargs)
        calls[-1] += (out.obs,)
        return out

    monkeypatch.setattr(demos, "collect_demos", spy)
    config = _tiny_bc_config(
        {"observe_operating_point": True},
        demo_steps=3,
        demo_envs=3,
        epochs=1,
        dagger_rounds=1,
        modes=["distributed", "centralized"],
    )
    result = bc_run.train_bc_run(config, tmp_path)
    assert [c[:2] for c in calls] == [(2, "distributed"), (1, "centralized")] * 2
    for _, mode, obs in calls:
        # The mode one-hot (centralized, distributed, hybrid) of the operating point.
        one_hot = obs[:, -OPERATING_POINT_DIM + 1 : -1]
        want = torch.tensor([mode == m for m in ("centralized", "distributed", "hybrid")])
        assert torch.equal(one_hot, (want.float() * 2 - 1).expand_as(one_hot))
    from agentcomm.policies.checkpoint import read_config

    assert read_config(tmp_path / "policy")["metadata"]["demos"] == 2 * 3 * 3 * 4
    assert len(result.history) == 2


def test_bc_expert_variant_demonstrates_and_labels_every_round(tmp_path, monkeypatch):
    """``bc.expert`` picks the teacher of the first collection and of every DAgger round;
    its rows carry the variant's actions (``on_demand``: silent agents, transmit -1)."""
    from agentcomm.policies import bc_run, demos

    experts, silent = [], []
    real = demos.collect_demos

    def spy(env_id, steps, **kwargs):
        experts.append(kwargs["expert"])
        out = real(env_id, steps, **kwargs)
        silent.append(int((out.actions[:, 4] == -1).sum()))
        return out

    monkeypatch.setattr(demos, "collect_demos", spy)
    config = _tiny_bc_config(
        demo_steps=12, demo_envs=4, epochs=1, dagger_rounds=1, expert="on_demand"
    )
    bc_run.train_bc_run(config, tmp_path)
    assert experts == ["on_demand", "on_demand"]
    assert silent[0] > 0


@pytest.mark.parametrize(
    ("env", "expert", "match"),
    [
        ("SearchRescue-v0", "on_demand", r"bc.expert='on_demand'.*SearchRescue-v0.*\['default'\]"),
        ("IntentCoverage-v0", "quiet", r"bc.expert='quiet'.*\['default', 'on_demand'\]"),
    ],
)
def test_bad_bc_expert_is_refused_naming_the_scenarios_variants(env, expert, match):
    from agentcomm.policies.train_config import TrainConfig

    with pytest.raises(ValueError, match=match):
        TrainConfig.from_dict({"algo": "bc", "env": env, "bc": {"expert": expert}})


@pytest.mark.parametrize(
    ("modes", "match"),
    [
        ([], r"bc.modes=\[\]"),
        (["distributed", "distributed"], "distinct"),
        (["peer"], r"bc.modes=\['peer'\].*centralized"),
    ],
)
def test_bad_bc_modes_are_refused_naming_the_key(modes, match):
    from agentcomm.policies.train_config import TrainConfig

    with pytest.raises(ValueError, match=match):
        TrainConfig.from_dict({"algo": "bc", "bc": {"modes": modes}})
    with pytest.raises(ValueError, match="demo_envs=1"):
        TrainConfig.from_dict(
            {"algo": "bc", "bc": {"demo_envs": 1, "modes": ["distributed", "centralized"]}}
        )
