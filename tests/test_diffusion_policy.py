"""Diffusion policy: step likelihoods against closed forms, golden diffusers steps, checkpoints."""

from __future__ import annotations

import json
import os

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.models.embeddings import get_timestep_embedding

from agentcomm.policies.checkpoint import load_policy, read_config, save_policy
from agentcomm.policies.diffusion import (
    DiffusionConfig,
    DiffusionPolicy,
    DPPOPolicy,
    gaussian_logprob,
)

OBS, ACT = 4, 3


def _policy(generator: torch.Generator, **kw) -> DiffusionPolicy:
    args = dict(denoising_steps=10, ddim_steps=5, ft_denoising_steps=4, hidden=32, depth=2)
    args.update(kw)
    return DiffusionPolicy(OBS, ACT, generator=generator, **args)


def _obs(generator: torch.Generator, batch: int = 16) -> torch.Tensor:
    return torch.rand(batch, OBS, generator=generator) * 2 - 1


def test_sample_shapes_and_action_range(generator):
    policy = _policy(generator)
    out = policy.sample(_obs(generator), generator=generator)
    assert out.action.shape == (16, ACT)
    assert out.chain.shape == (16, 5, ACT)
    assert out.logprob.shape == (16, 4)
    assert float(out.action.abs().max()) <= 1.0
    assert torch.equal(out.action, out.chain[:, -1].clamp(-1, 1))


def test_step_logprob_matches_gaussian_closed_form(generator):
    """Each recorded step is N(mu, max(sqrt(beta_tilde_t), floor)^2) of Ho et al. (2020) Eq. 7."""
    floor = 0.05
    policy = _policy(generator, min_logprob_std=floor)
    _assert_ddpm_logprob_closed_form(policy, _obs(generator), floor, generator)


def _assert_ddpm_logprob_closed_form(policy, obs, floor, generator):
    k, kp = policy.config.denoising_steps, policy.config.ft_denoising_steps
    out = policy.sample(obs, generator=generator)
    sched = DDPMScheduler(num_train_timesteps=k, beta_schedule="squaredcos_cap_v2")
    acp = sched.alphas_cumprod.double()
    betas = sched.betas.double()
    for j in range(kp):
        t = kp - 1 - j  # chain step k-kp+j denoises diffusers timestep k-1-(k-kp+j)
        a_t = acp[t]
        a_prev = acp[t - 1] if t > 0 else torch.tensor(1.0, dtype=torch.float64)
        x = out.chain[:, j].double()
        with torch.no_grad():
            eps = policy.denoiser(out.chain[:, j], torch.full((obs.shape[0],), t), obs).double()
        x0 = ((x - (1 - a_t).sqrt() * eps) / a_t.sqrt()).clamp(-1, 1)
        mean = (
            a_prev.sqrt() * betas[t] / (1 - a_t) * x0
            + (1 - betas[t]).sqrt() * (1 - a_prev) / (1 - a_t) * x
        )
        std = (betas[t] * (1 - a_prev) / (1 - a_t)).sqrt().clamp(min=floor)
        want = torch.distributions.Normal(mean, std).log_prob(out.chain[:, j + 1].double()).sum(-1)
        torch.testing.assert_close(out.logprob[:, j].double(), want, atol=2e-4, rtol=1e-5)


def test_ddpm_step_matches_diffusers_step(generator):
    """Without std floor or noise clip, one step equals DDPMScheduler.step for the same noise."""
    policy = _policy(generator, min_sampling_std=0.0, noise_clip=100.0)
    sched = DDPMScheduler(num_train_timesteps=10, beta_schedule="squaredcos_cap_v2")
    obs = _obs(generator)
    x = torch.randn(16, ACT, generator=generator)
    for step in (0, 4, 8):
        t = 9 - step
        with torch.no_grad():
            mean, std, _ = policy.step_distribution(obs, x, step, "ddpm")
            eps = policy.denoiser(x, torch.full((16,), t), obs)
        ours = mean + std * torch.randn(16, ACT, generator=torch.Generator().manual_seed(step))
        ref = sched.step(eps, t, x, generator=torch.Generator().manual_seed(step)).prev_sample
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_ddim_eta0_is_deterministic_and_matches_diffusers(generator):
    """eta=0 and no std floor: the chain is a fixed map of the initial noise (Song et al. 2021)."""
    policy = _policy(generator, ddim_eta=0.0, min_sampling_std=0.0, ft_denoising_steps=5)
    obs = _obs(generator)
    out_a = policy.sample(obs, generator=torch.Generator().manual_seed(7), mode="ddim")
    out_b = policy.sample(obs, generator=torch.Generator().manual_seed(7), mode="ddim")
    assert torch.equal(out_a.action, out_b.action)
    x = torch.randn(16, ACT, generator=torch.Generator().manual_seed(7))
    sched = DDIMScheduler(
        num_train_timesteps=10, beta_schedule="squaredcos_cap_v2", set_alpha_to_one=True
    )
    sched.set_timesteps(5)
    for t in sched.timesteps:
        with torch.no_grad():
            eps = policy.denoiser(x, torch.full((16,), int(t)), obs)
        x = sched.step(eps, t, x, eta=0.0, use_clipped_model_output=True).prev_sample
    torch.testing.assert_close(out_a.chain[:, -1], x, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["ddpm", "ddim"])
def test_recomputed_logprob_equals_sampling_logprob_exactly(generator, mode):
    pre = _policy(generator)
    policy = DPPOPolicy.from_pretrained(pre, ft_denoising_steps=3, min_logprob_std=0.08)
    obs = _obs(generator, batch=33)
    out = policy.sample(obs, generator=generator, mode=mode)
    assert torch.equal(policy.chain_logprob(obs, out.chain, mode=mode), out.logprob)


def test_deterministic_eval_repeats_and_survives_save_load(generator, tmp_path):
    policy = _policy(generator)
    obs = _obs(generator)
    a1 = policy.sample(obs, deterministic=True).action
    a2 = policy.sample(obs, generator=torch.Generator().manual_seed(99), deterministic=True).action
    assert torch.equal(a1, a2)
    assert not torch.equal(a1, policy.sample(obs, generator=generator).action)
    save_policy(tmp_path / "ckpt", policy, {"note": "unit test"})
    loaded = load_policy(tmp_path / "ckpt")
    assert torch.equal(loaded.sample(obs, deterministic=True).action, a1)
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["config.json", "model.safetensors"]
    assert read_config(tmp_path / "ckpt")["metadata"] == {"note": "unit test"}


@pytest.mark.parametrize("mode", ["ddpm", "ddim"])
def test_exploration_around_eval_perturbs_the_deterministic_chain(generator, mode):
    """``exploration="around_eval"``: the chain up to the fine-tuned steps is the
    deterministic one, the fine-tuned steps add noise (their log-probs are those of the
    recorded chain), and without a noise floor and with eta 0 the sample is the
    deterministic action."""
    policy = _policy(generator, ft_denoising_steps=2, exploration="around_eval", ddim_eta=0.0)
    obs = _obs(generator)
    det = policy.sample(obs, deterministic=True, mode=mode)
    out = policy.sample(obs, generator=generator, mode=mode)
    assert torch.equal(out.chain[:, 0], det.chain[:, 0])
    assert not torch.equal(out.chain[:, 1], det.chain[:, 1])
    torch.testing.assert_close(out.logprob, policy.chain_logprob(obs, out.chain, mode))
    chain = policy.sample(obs, generator=generator, mode=mode)
    assert torch.equal(chain.chain[:, 0], det.chain[:, 0])  # the same start every call
    fresh = _policy(generator, ft_denoising_steps=2, ddim_eta=0.0)
    fresh.load_state_dict(policy.state_dict())
    assert not torch.equal(
        fresh.sample(obs, generator=generator, mode=mode).chain[:, 0], det.chain[:, 0]
    )
    if mode == "ddim":
        quiet = _policy(
            generator,
            ft_denoising_steps=2,
            exploration="around_eval",
            ddim_eta=0.0,
            min_sampling_std=0.0,
        )
        quiet.load_state_dict(policy.state_dict())
        torch.testing.assert_close(
            quiet.sample(obs, generator=generator, mode=mode).action, det.action, rtol=0, atol=0
        )
    with pytest.raises(ValueError, match="exploration"):
        _policy(generator, exploration="everywhere")


def test_dppo_export_keeps_base_and_finetuned_copy(generator, tmp_path):
    policy = DPPOPolicy.from_pretrained(_policy(generator))
    with torch.no_grad():
        for p in policy.actor_ft.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    obs = _obs(generator)
    save_policy(tmp_path, policy)
    loaded = load_policy(tmp_path, expected_config={"kind": "dppo", "obs_dim": OBS})
    assert isinstance(loaded, DPPOPolicy)
    for key, value in policy.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    for mode in ("ddpm", "ddim"):
        assert torch.equal(
            loaded.sample(obs, deterministic=True, mode=mode).action,
            policy.sample(obs, deterministic=True, mode=mode).action,
        )
    assert not any(p.requires_grad for p in loaded.base.parameters())
    keys = json.loads((tmp_path / "config.json").read_text())
    assert keys["kind"] == "dppo"


def test_load_rejects_mismatched_config(generator, tmp_path):
    save_policy(tmp_path, _policy(generator))
    with pytest.raises(ValueError, match="obs_dim.*denoising_steps|denoising_steps.*obs_dim"):
        load_policy(tmp_path, expected_config={"obs_dim": OBS + 1, "denoising_steps": 20})
    with pytest.raises(ValueError, match="kind"):
        load_policy(tmp_path, expected_config={"kind": "dppo"})
    with pytest.raises(ValueError, match="unknown"):
        load_policy(tmp_path, expected_config={"bogus": 1})
    with pytest.raises(ValueError, match="no config.json"):
        load_policy(tmp_path / "missing")


def test_gradients_reach_only_the_finetuned_copy(generator):
    policy = DPPOPolicy.from_pretrained(_policy(generator), ft_denoising_steps=3)
    base_before = {k: v.clone() for k, v in policy.base.state_dict().items()}
    obs = _obs(generator)
    out = policy.sample(obs, generator=generator)
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.1)
    (-policy.chain_logprob(obs, out.chain).sum()).backward()
    assert all(p.grad is None for p in policy.base.parameters())
    assert all(p.grad is not None for p in policy.actor_ft.parameters())
    assert sum(float(p.grad.abs().sum()) for p in policy.actor_ft.parameters()) > 0
    optimizer.step()
    for key, value in policy.base.state_dict().items():
        assert torch.equal(value, base_before[key]), key


def test_early_steps_use_the_frozen_base(generator):
    """Changing actor_ft leaves x^(K') (produced by the base's S-K' steps) unchanged."""
    pre = _policy(generator)
    policy = DPPOPolicy.from_pretrained(pre, ft_denoising_steps=3)
    with torch.no_grad():
        for p in policy.actor_ft.parameters():
            p.mul_(1.5)
    obs = _obs(generator)
    ours = policy.sample(obs, generator=torch.Generator().manual_seed(3))
    ref = DPPOPolicy.from_pretrained(pre, ft_denoising_steps=3).sample(
        obs, generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(ours.chain[:, 0], ref.chain[:, 0])
    assert not torch.equal(ours.chain[:, -1], ref.chain[:, -1])


def test_gaussian_logprob_matches_torch_normal(generator):
    x, mean = torch.randn(2, 8, 3, generator=generator)
    std = torch.tensor(0.3)
    want = torch.distributions.Normal(mean, std).log_prob(x).sum(-1)
    torch.testing.assert_close(gaussian_logprob(x, mean, std), want)


def _reference_chain(policy, obs, generator, mode):
    """The chain step by step through the public per-step API: ``step_distribution`` runs each
    denoiser's ``forward(x, t [B], obs)`` (step embedding looked up per call) and the noise is
    drawn in ``sample``'s order (initial latent, then one draw per step)."""
    num_steps, kp = policy.num_steps(mode), policy.config.ft_denoising_steps
    clip = policy.config.noise_clip
    latents = [torch.randn(obs.shape[0], policy.config.chunk_dim, generator=generator)]
    logprobs = []
    with torch.no_grad():
        for step in range(num_steps):
            mean, std, lp_std = policy.step_distribution(obs, latents[-1], step, mode)
            z = torch.randn(mean.shape, generator=generator)
            # mean + std * clip(z) as one fused multiply-add, as sample() computes it.
            latents.append(torch.addcmul(mean, z.clamp(-clip, clip), std))
            logprobs.append(gaussian_logprob(latents[-1], mean, lp_std))
    return torch.stack(latents[-kp - 1 :], dim=1), torch.stack(logprobs[-kp:], dim=1)


@pytest.mark.parametrize("network", ["mlp", "unet1d"])
@pytest.mark.parametrize("mode", ["ddpm", "ddim"])
@pytest.mark.parametrize("batch", [1, 16])
def test_sample_equals_the_step_by_step_chain_exactly(generator, network, mode, batch):
    """``sample`` binds each denoiser once and looks its step embeddings up in a table
    computed once per call; a step-by-step chain through ``forward`` gives the same bits, for
    the plain policy and for the base / fine-tuned split of a DPPO policy."""
    kw = {"network": "unet1d", "hidden": 16, "action_horizon": 2} if network == "unet1d" else {}
    pre = _policy(generator, **kw)
    dppo = DPPOPolicy.from_pretrained(pre, ft_denoising_steps=3)
    with torch.no_grad():
        for p in dppo.actor_ft.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    obs = _obs(generator, batch)
    for policy in (pre, dppo):
        out = policy.sample(obs, generator=torch.Generator().manual_seed(5), mode=mode)
        chain, logprob = _reference_chain(policy, obs, torch.Generator().manual_seed(5), mode)
        assert torch.equal(out.chain, chain)
        assert torch.equal(out.logprob, logprob)
        assert torch.equal(out.action_chunk, chain[:, -1].clamp(-1, 1).view(out.action_chunk.shape))


@pytest.mark.parametrize("mode", ["ddpm", "ddim"])
@pytest.mark.parametrize("deterministic", [False, True])
def test_sampling_without_logprob_gives_the_same_actions_and_draws(generator, mode, deterministic):
    policy = DPPOPolicy.from_pretrained(_policy(generator), ft_denoising_steps=3)
    obs = _obs(generator, batch=5)
    gen_a, gen_b = torch.Generator().manual_seed(8), torch.Generator().manual_seed(8)
    full = policy.sample(obs, generator=gen_a, deterministic=deterministic, mode=mode)
    fast = policy.sample(
        obs, generator=gen_b, deterministic=deterministic, mode=mode, with_logprob=False
    )
    assert fast.logprob is None
    assert torch.equal(fast.action, full.action)
    assert torch.equal(fast.chain, full.chain)
    assert torch.equal(gen_a.get_state(), gen_b.get_state())


def test_mlp_bound_predictor_is_the_module_layers(generator):
    """The bound predictor that ``forward`` and the sampler use is the composition of the
    ``nn.Linear``/``nn.LayerNorm``/``Mish`` submodules, with the step embedding
    ``time_mlp(e(t))`` of diffusers' sinusoids: up to float32 rounding, since its input layer
    is split into step, observation and action columns (a sum in another order)."""
    net = _policy(generator).denoiser
    k = net.step_sinusoids.shape[0]
    obs = _obs(generator, batch=6)
    x = torch.randn(6, ACT, generator=generator)
    t = torch.tensor([0, 9, 3, 3, 7, 1])
    sinusoids = get_timestep_embedding(torch.arange(k), net.time_embed_dim, flip_sin_to_cos=True)
    temb = net.time_mlp(sinusoids)[t]
    h = net.input(torch.cat([x, temb, obs], dim=-1))
    for block in net.blocks:
        h = block(h)
    want = net.output(net.act(net.out_norm(h)))
    got = net(x, t, obs)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert not torch.equal(net.step_embeddings(), torch.zeros(k, net.time_embed_dim))
    # forward is the bound form exactly, for [B] rows and for one broadcast [1, C] row.
    bound = net.bind()
    assert bound.step_table.shape == (k, net.input.out_features)
    assert torch.equal(bound.predict(x, bound.step_table[t], bound.prepare(obs)), got)
    row = bound.step_table[4:5]
    assert torch.equal(bound.predict(x, row, bound.prepare(obs)), net(x, torch.full((6,), 4), obs))
    # Gradients flow through the bound parameters as through the modules, the step-embedding
    # MLP and the input layer's three column blocks included.
    net.zero_grad()
    bound = net.bind()
    bound.predict(x, bound.step_table[t], bound.prepare(obs)).square().sum().backward()
    grads = {n: p.grad for n, p in net.named_parameters()}
    assert all(g is not None and bool(g.abs().sum() > 0) for g in grads.values()), [
        n for n, g in grads.items() if g is None or not bool(g.abs().sum() > 0)
    ]
    # ... and equal autograd's through the nn.Module composition.
    net.zero_grad()
    want.square().sum().backward()
    for n, p in net.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, rtol=1e-4, atol=1e-5, msg=n)


def test_unet_bound_predictor_is_forward_exactly(generator):
    policy = DiffusionPolicy(
        OBS,
        ACT,
        denoising_steps=10,
        hidden=16,
        network="unet1d",
        action_horizon=3,
        generator=generator,
    )
    net = policy.denoiser
    obs, x = _obs(generator, batch=4), torch.randn(4, 3 * ACT, generator=generator)
    t = torch.tensor([0, 9, 3, 5])
    bound = net.bind()
    assert torch.equal(bound.prepare(obs), obs)
    assert torch.equal(bound.predict(x, bound.step_table[t], bound.prepare(obs)), net(x, t, obs))
    # One [1, E] row serves the whole batch.
    got = bound.predict(x, bound.step_table[2:3], obs)
    assert torch.equal(got, net(x, torch.full((4,), 2), obs))


@pytest.mark.parametrize("update", ["in_place", "load_state_dict", "optimizer"])
def test_sampling_sees_every_weight_update(generator, update):
    """sample() keeps its bound denoisers between calls; after the weights change (in place,
    by load_state_dict, or by an optimizer step) it must act like a fresh copy with those
    weights: the step-embedding MLP is changed too, so a stale table would show."""
    policy = _policy(generator)
    obs = _obs(generator, batch=3)
    before = policy.sample(obs, generator=torch.Generator().manual_seed(5), mode="ddim").action
    other = _policy(torch.Generator().manual_seed(99))
    if update == "in_place":
        with torch.no_grad():
            for p in policy.denoiser.time_mlp.parameters():
                p.add_(0.5)
    elif update == "load_state_dict":
        policy.load_state_dict(other.state_dict())
    else:
        opt = torch.optim.SGD(policy.parameters(), lr=0.5)
        policy.loss_bc(obs, torch.zeros(3, ACT), generator=generator).backward()
        opt.step()
    fresh = _policy(torch.Generator().manual_seed(7))
    fresh.load_state_dict(policy.state_dict())
    after = policy.sample(obs, generator=torch.Generator().manual_seed(5), mode="ddim").action
    expected = fresh.sample(obs, generator=torch.Generator().manual_seed(5), mode="ddim").action
    assert not torch.equal(after, before)
    assert torch.equal(after, expected)


def test_sample_outputs_are_ordinary_tensors(generator):
    """``sample`` runs under inference mode but returns tensors callers may update in place."""
    policy = _policy(generator)
    out = policy.sample(_obs(generator), generator=generator)
    assert not any(t.is_inference() for t in (out.action, out.chain, out.logprob))
    out.action.clamp_(-0.5, 0.5)
    assert float(out.action_chunk[:, 0].abs().max()) <= 0.5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ft_denoising_steps": 11}, "ft_denoising_steps"),
        ({"ddim_steps": 0}, "ddim_steps"),
        ({"min_logprob_std": 0.0}, "min_logprob_std"),
        ({"min_sampling_std": -0.1}, "min_sampling_std"),
        ({"beta_schedule": "cosine"}, "beta_schedule"),
        ({"ddim_eta": 1.5}, "ddim_eta"),
        ({"time_embed_dim": 7}, "time_embed_dim"),
        ({"network": "transformer"}, "network"),
        ({"network": "unet1d", "hidden": 12}, "hidden"),
        ({"action_horizon": 0}, "action_horizon"),
    ],
)
def test_bad_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DiffusionConfig(obs_dim=OBS, action_dim=ACT, denoising_steps=10, **kwargs)


def test_bad_inputs_raise(generator):
    policy = _policy(generator, ddim_steps=2)
    with pytest.raises(ValueError, match="obs"):
        policy.sample(torch.zeros(4, OBS + 1))
    with pytest.raises(ValueError, match="mode"):
        policy.sample(torch.zeros(4, OBS), mode="euler")
    with pytest.raises(ValueError, match="ft_denoising_steps"):
        policy.sample(torch.zeros(4, OBS), mode="ddim")
    with pytest.raises(ValueError, match="chain"):
        policy.chain_logprob(torch.zeros(4, OBS), torch.zeros(4, 2, ACT))
    with pytest.raises(ValueError, match="step"):
        policy.step_distribution(torch.zeros(4, OBS), torch.zeros(4, ACT), 10, "ddpm")
    with pytest.raises(ValueError, match="unknown"):
        DiffusionConfig.from_dict({"obs_dim": 1, "action_dim": 1, "steps": 3})
    with pytest.raises(ValueError, match="architecture"):
        DPPOPolicy.from_pretrained(policy, hidden=64)


# --- action chunks and the 1-D U-Net -------------------------------------------------------

HORIZON = 4


def _unet(generator: torch.Generator, horizon: int = HORIZON, **kw) -> DiffusionPolicy:
    return _policy(generator, network="unet1d", action_horizon=horizon, hidden=16, **kw)


@pytest.mark.parametrize("horizon", [1, 3, HORIZON])
def test_unet_chunk_shapes_and_first_action_is_executed(generator, horizon):
    policy = _unet(generator, horizon)
    obs = _obs(generator)
    out = policy.sample(obs, generator=generator)
    assert out.action_chunk.shape == (16, horizon, ACT)
    assert out.action.shape == (16, ACT)
    assert out.chain.shape == (16, 5, horizon * ACT)
    assert out.logprob.shape == (16, 4)
    assert torch.equal(out.action_chunk, out.chain[:, -1].clamp(-1, 1).reshape(16, horizon, ACT))
    assert torch.equal(out.action, out.action_chunk[:, 0])
    eps = policy.denoiser(out.chain[:, 0], torch.full((16,), 3), obs)
    assert eps.shape == (16, horizon * ACT)
    # FiLM conditioning: the prediction depends on the observation and on the step.
    assert not torch.allclose(eps, policy.denoiser(out.chain[:, 0], torch.full((16,), 3), -obs))
    assert not torch.allclose(eps, policy.denoiser(out.chain[:, 0], torch.full((16,), 7), obs))


def test_unet_rows_are_independent(generator):
    """GroupNorm normalises within a row: a row's prediction does not depend on its batch."""
    policy = _unet(generator)
    obs = _obs(generator, batch=8)
    x = torch.randn(8, HORIZON * ACT, generator=generator)
    t = torch.arange(8)
    with torch.no_grad():
        full = policy.denoiser(x, t, obs)
        half = policy.denoiser(x[:3], t[:3], obs[:3])
    torch.testing.assert_close(full[:3], half, atol=1e-6, rtol=1e-5)


def test_unet_step_logprob_matches_gaussian_closed_form(generator):
    floor = 0.05
    policy = _unet(generator, min_logprob_std=floor)
    _assert_ddpm_logprob_closed_form(policy, _obs(generator), floor, generator)


@pytest.mark.parametrize("mode", ["ddpm", "ddim"])
def test_unet_recomputed_logprob_equals_sampling_logprob_exactly(generator, mode):
    policy = DPPOPolicy.from_pretrained(_unet(generator), ft_denoising_steps=3)
    obs = _obs(generator, batch=9)
    out = policy.sample(obs, generator=generator, mode=mode)
    assert torch.equal(policy.chain_logprob(obs, out.chain, mode=mode), out.logprob)


def test_unet_init_is_reproducible_from_the_generator():
    a = _unet(torch.Generator().manual_seed(5))
    b = _unet(torch.Generator().manual_seed(5))
    c = _unet(torch.Generator().manual_seed(6))
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert not torch.equal(a.denoiser.down.weight, c.denoiser.down.weight)


def test_bc_loss_falls_on_toy_chunked_dataset(generator):
    """A chunk that is a smooth function of the observation is learnable: the eps-MSE on
    fixed held-out (step, noise) draws drops below half its initial value in 40 steps."""
    policy = _unet(generator)
    k = torch.arange(HORIZON).view(1, HORIZON, 1)
    d = torch.arange(ACT).view(1, 1, ACT)

    def chunks(obs: torch.Tensor) -> torch.Tensor:
        return 0.8 * torch.sin(2.0 * obs[:, :1, None] + 0.5 * k + d) * obs[:, 1:2, None]

    held_obs = _obs(torch.Generator().manual_seed(1), batch=128)

    def held_loss() -> float:
        with torch.no_grad():
            return float(
                policy.loss_bc(held_obs, chunks(held_obs), torch.Generator().manual_seed(2))
            )

    before = held_loss()
    optimizer = torch.optim.Adam(policy.denoiser.parameters(), lr=3e-3)
    for _ in range(40):
        obs = _obs(generator, batch=32)
        loss = policy.loss_bc(obs, chunks(obs), generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = held_loss()
    assert after < 0.5 * before, (before, after)


def test_unet_chunk_policy_save_load_identity(generator, tmp_path):
    policy = _unet(generator)
    obs = _obs(generator)
    save_policy(tmp_path, policy)
    loaded = load_policy(tmp_path, expected_config={"network": "unet1d", "action_horizon": HORIZON})
    assert loaded.config == policy.config
    for key, value in policy.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    for mode in ("ddpm", "ddim"):
        want = policy.sample(obs, deterministic=True, mode=mode)
        got = loaded.sample(obs, deterministic=True, mode=mode)
        assert torch.equal(got.action_chunk, want.action_chunk)


def test_chunk_policy_rejects_single_actions(generator):
    policy = _unet(generator)
    with pytest.raises(ValueError, match="action"):
        policy.loss_bc(_obs(generator, batch=4), torch.zeros(4, ACT))
