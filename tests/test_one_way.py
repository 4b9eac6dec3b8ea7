"""One way to do each thing: one schedule module, one persistence module, one config
system, names read from their registries, one reading of RLlib's env_config, one
multi-agent vocabulary and one set of PPO settings for both RLlib builders."""

from __future__ import annotations

import dataclasses
import json
import warnings

import pytest
import torch
from diffusers import DDIMScheduler

from agentcomm import diffusion
from agentcomm.config import Config
from agentcomm.io import (
    ConfigMismatchError,
    atomic_write,
    atomic_write_text,
    check_config_match,
    load_model_tensors,
    read_model_config,
    save_model_files,
)

# --------------------------------------------------------------------------- diffusion


def test_both_ddim_forms_equal_diffusers_step():
    """The per-sample step (receivers) and the folded coefficients (policies) are the same
    DDIM step as ``DDIMScheduler.step`` with clipping (eta = 0), at several timesteps."""
    t_train, steps = 100, 10
    sched = DDIMScheduler(
        num_train_timesteps=t_train,
        beta_schedule="squaredcos_cap_v2",
        clip_sample=True,
        set_alpha_to_one=True,
    )
    sched.set_timesteps(steps)
    acp = diffusion.ddpm_scheduler(t_train, "squaredcos_cap_v2").alphas_cumprod
    ts, prev = diffusion.ddim_uniform_timesteps(t_train, steps)
    assert torch.equal(ts, sched.timesteps.long())
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, generator=g) * 2.0  # some x0 estimates fall outside [-1, 1]
    eps = torch.randn(4, 3, generator=g)
    for t, tp in zip(ts.tolist(), prev.tolist(), strict=True):
        want = sched.step(eps, t, x, eta=0.0, use_clipped_model_output=True).prev_sample
        a_t = acp[t].expand(4)
        a_p = (acp[tp] if tp >= 0 else torch.tensor(1.0)).expand(4)
        got, _ = diffusion.ddim_step(x, eps, a_t, a_p, clip_x0=True)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        c = diffusion.ddim_coefficients(a_t[0].double(), a_p[0].double(), torch.tensor(0.0))
        c = {k: v.float() for k, v in c.items()}
        x0 = (c["x0_from_xt"] * x + c["x0_from_eps"] * eps).clamp(-1, 1)
        folded = c["coef_x0"] * x0 + c["coef_xt"] * x
        torch.testing.assert_close(folded, want, rtol=1e-5, atol=1e-5)


def test_ddim_sigma_at_eta_one_is_the_ddpm_posterior_std():
    sched = diffusion.ddpm_scheduler(50, "linear")
    acp, betas = sched.alphas_cumprod.double(), sched.betas.double()
    post = diffusion.ddpm_posterior(betas, acp)
    t = torch.arange(1, 50)
    sigma = diffusion.ddim_sigma(acp[t], acp[t - 1], 1.0)
    torch.testing.assert_close(sigma.square(), post["variance"][t])


@pytest.mark.parametrize("prediction", diffusion.PREDICTIONS)
def test_eps_from_prediction_inverts_each_target(prediction):
    sched = diffusion.ddpm_scheduler(100, "squaredcos_cap_v2", prediction)
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(5, 2, 2, generator=g) * 2 - 1
    eps = torch.randn(5, 2, 2, generator=g)
    t = torch.tensor([0, 10, 50, 90, 99])
    x_t = sched.add_noise(x0, eps, t)
    target = {"epsilon": eps, "sample": x0, "v_prediction": sched.get_velocity(x0, eps, t)}
    got = diffusion.eps_from_prediction(
        target[prediction], x_t, sched.alphas_cumprod[t], prediction
    )
    torch.testing.assert_close(got, eps, rtol=1e-3, atol=1e-3)


def test_policy_and_prior_use_the_core_schedule_module():
    import agentcomm.decoders.prior as prior
    import agentcomm.policies.diffusion as policy

    assert prior.ddim_step is diffusion.ddim_step
    assert prior.ddim_timesteps is diffusion.ddim_timesteps
    assert policy.BetaSchedule is diffusion.BetaSchedule


# --------------------------------------------------------------------------- persistence


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "sub" / "f.txt"
    atomic_write_text(path, "old")

    def fail(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, fail)
    assert path.read_text() == "old"
    assert [p.name for p in path.parent.iterdir()] == ["f.txt"]


def test_model_files_round_trip_and_refuse_another_config(tmp_path):
    tensors = {"w": torch.arange(6.0).view(2, 3)}
    save_model_files(tmp_path, tensors, {"kind": "toy", "config": {"width": 3}})
    doc = read_model_config(tmp_path)
    assert doc["kind"] == "toy" and len(doc["weights_sha256"]) == 64
    assert torch.equal(load_model_tensors(tmp_path, doc)["w"], tensors["w"])
    check_config_match(tmp_path, doc["config"], {"width": 3})
    with pytest.raises(ConfigMismatchError, match=r"width: expected 4, checkpoint has 3"):
        check_config_match(tmp_path, doc["config"], {"width": 4})
    with pytest.raises(ConfigMismatchError, match="depth: expected 2, checkpoint has no such"):
        check_config_match(tmp_path, doc["config"], {"depth": 2})
    with pytest.raises(ValueError, match="weights_sha256"):
        save_model_files(tmp_path, tensors, {"weights_sha256": "x"})
    with pytest.raises(ValueError, match="holds no model.safetensors and no config.json"):
        read_model_config(tmp_path / "missing")


def test_every_loader_raises_the_one_mismatch_error(tmp_path):
    from agentcomm.decoders.jscc import JSCC, JSCCConfig, load_checkpoint, save_checkpoint
    from agentcomm.policies.checkpoint import load_policy, save_policy
    from agentcomm.policies.diffusion import DiffusionPolicy

    cfg = JSCCConfig(height=4, width=4, channel_uses=4, hidden=8, depth=1)
    save_checkpoint(JSCC(cfg), tmp_path / "j")
    with pytest.raises(ConfigMismatchError, match="channel_uses: expected 2, checkpoint has 4"):
        load_checkpoint(JSCC, JSCCConfig, tmp_path / "j", config=cfg.replace(channel_uses=2))
    policy = DiffusionPolicy(3, 6, denoising_steps=4, ddim_steps=2, ft_denoising_steps=2, hidden=8)
    save_policy(tmp_path / "p", policy)
    with pytest.raises(ConfigMismatchError, match="obs_dim: expected 5, checkpoint has 3"):
        load_policy(tmp_path / "p", expected_config={"obs_dim": 5})


# --------------------------------------------------------------------------- configs

CONFIGS = [
    ("agentcomm.policies.diffusion", "DiffusionConfig", {"obs_dim": 3, "action_dim": 2}),
    ("agentcomm.decoders.prior", "PriorConfig", {}),
    ("agentcomm.decoders.jscc", "JSCCConfig", {}),
    ("agentcomm.decoders.data", "BeliefMapConfig", {}),
]


@pytest.mark.parametrize(("module", "name", "required"), CONFIGS)
def test_model_configs_are_validated_configs(module, name, required, tmp_path):
    import importlib

    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, Config) and dataclasses.is_dataclass(cls)
    cfg = cls(**required)
    assert cls.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    cfg.save(tmp_path / "c.yaml")
    assert cls.load(tmp_path / "c.yaml") == cfg
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['hieght'\]"):
        cls.from_dict({**required, "hieght": 3})
    field = next(f for f in dataclasses.fields(cls) if f.type in ("int", int))
    with pytest.raises(
        ValueError, match=rf"^{field.name}=True is not allowed; expected an integer"
    ):
        cls(**{**required, field.name: True})
    hash(cfg)  # frozen: usable as a key


def test_cross_field_rules_name_their_keys():
    from agentcomm.decoders.data import BeliefMapConfig
    from agentcomm.decoders.prior import PriorConfig
    from agentcomm.policies.diffusion import DiffusionConfig

    with pytest.raises(ValueError, match="ddim_steps=9"):
        DiffusionConfig(obs_dim=3, action_dim=2, denoising_steps=8, ddim_steps=9)
    with pytest.raises(ValueError, match="time_embed_dim=5"):
        DiffusionConfig(obs_dim=3, action_dim=2, time_embed_dim=5)
    with pytest.raises(ValueError, match="prediction='x0'"):
        PriorConfig(prediction="x0")
    with pytest.raises(ValueError, match="divisible by 4"):
        PriorConfig(height=6, backbone="unet", unet_channels=(8, 8, 8))
    with pytest.raises(ValueError, match="pfa=0.95"):
        BeliefMapConfig(pd=0.9, pfa=0.95)


def test_shipped_model_configs_still_load():
    from agentcomm.decoders.bundle import load_bundle, shipped_bundles
    from agentcomm.policies.checkpoint import load_policy, policy_path

    for name in ("searchrescue-bc", "searchrescue-dppo"):
        assert load_policy(policy_path(f"shipped:{name}")).config.obs_dim > 0
    bundle = load_bundle(shipped_bundles()["searchrescue-16x16"])
    assert bundle.prior.config.height == 16


# --------------------------------------------------------------------------- registries


def test_world_config_reads_codec_and_channel_names_from_the_registries():
    from agentcomm.channels.registry import CHANNELS
    from agentcomm.codecs.registry import available_codecs
    from agentcomm.envs.config import CODECS, LEARNED_CODECS, ChannelConfig, CommConfig

    def allowed(cls, name):
        return set(next(f for f in dataclasses.fields(cls) if f.name == name).metadata["choices"])

    assert allowed(CommConfig, "codec") == set(available_codecs()) == set(CODECS)
    assert set(LEARNED_CODECS) <= set(CODECS)
    assert allowed(ChannelConfig, "name") == set(CHANNELS)


def test_env_config_is_read_by_one_rule():
    from agentcomm.envs.adapters.rllib import CommMultiAgentEnv, parse_env_config
    from agentcomm.policies.env_runner import parse_env

    spec = parse_env_config(
        {"env_id": "SearchRescue-v0", "render_mode": None, "device": "cpu", "max_steps": 7}
    )
    assert spec.env_id == "SearchRescue-v0" and spec.overrides == {"max_steps": 7}
    # The batched runner reads the same keys the same way (render_mode included).
    got = parse_env("agentcomm/SearchRescue-v0", {"render_mode": None, "centralized_critic": True})
    assert got == ("SearchRescue-v0", {}, True, "cpu")
    for bad, match in (
        ({"env_id": "SearchRescue-v0", "centralized_critic": 1}, "centralized_critic"),
        ({"env_id": "SearchRescue-v0", "device": "tpu"}, "device"),
        ({"env_id": "Nope-v0"}, "env_id"),
        ({}, "env_id"),
    ):
        with pytest.raises(ValueError, match=match):
            parse_env_config(bad)
        with pytest.raises(ValueError, match=match):
            CommMultiAgentEnv(bad)
    with pytest.raises(ValueError, match="centralized_critic"):
        parse_env("SearchRescue-v0", {"centralized_critic": 1})
    with pytest.raises(ValueError, match="contradicts"):
        parse_env("SearchRescue-v0", {"env_id": "TargetTracking-v0"})


def test_multi_agent_has_one_vocabulary():
    from agentcomm.policies.dppo import dppo_config
    from agentcomm.policies.gaussian_ppo import gaussian_ppo_config
    from agentcomm.policies.ppo_config import MULTI_AGENT_MODES

    assert MULTI_AGENT_MODES == ("shared", "per_agent")
    ids = ["agent_0", "agent_1"]
    for build in (gaussian_ppo_config, dppo_config):
        config = build("my-env", multi_agent="per_agent", agent_ids=ids)
        assert set(config.policies) == set(ids)
        with pytest.raises(ValueError, match="multi_agent='teams'"):
            build("my-env", multi_agent="teams")
        with pytest.warns(FutureWarning, match="use multi_agent='per_agent'"):
            old = build("my-env", multi_agent="independent", agent_ids=ids)
        assert set(old.policies) == set(ids)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gaussian_ppo_config("my-env", multi_agent="shared")


def test_both_rllib_builders_take_the_same_ppo_settings():
    from agentcomm.policies.dppo import dppo_config
    from agentcomm.policies.gaussian_ppo import gaussian_ppo_config

    settings = {"train_batch_size": 512, "minibatch_size": 64, "gamma": 0.9, "seed": 3}
    for build in (gaussian_ppo_config, dppo_config):
        config = build("my-env", **settings)
        assert config.train_batch_size_per_learner == 512 and config.gamma == 0.9
        assert config.seed == 3 and config.minibatch_size == 64
        with pytest.raises(ValueError, match=r"unknown PPO setting\(s\) \['gamam'\]"):
            build("my-env", gamam=0.9)
        with pytest.raises(ValueError, match="minibatch_size"):
            build("my-env", train_batch_size=64, minibatch_size=128)
    assert gaussian_ppo_config("my-env").lr == 3e-4 and dppo_config("my-env").lr == 1e-4
