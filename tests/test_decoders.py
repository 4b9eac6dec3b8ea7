"""Specifications of the learned JSCC codec and the diffusion receivers (tiny 8x8 grids)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from diffusers import DDIMScheduler

from agentcomm.channels.awgn import AWGN
from agentcomm.channels.rayleigh import RayleighBlockFading
from agentcomm.codecs.base import transmit
from agentcomm.codecs.registry import make_codec
from agentcomm.decoders import (
    JSCC,
    BeliefMapConfig,
    CDDMReceiver,
    DecoderBundle,
    DiffComReceiver,
    DiffusionPrior,
    JSCCConfig,
    PriorConfig,
    ddim_step,
    ddim_timesteps,
    evaluate_jscc,
    load_bundle,
    load_checkpoint,
    prior_logodds,
    save_checkpoint,
    simulate_belief_maps,
    to_unit,
    train_jscc,
    train_prior,
)

H = W = 8
CLIP = 6.0
DATA = BeliefMapConfig(
    height=H, width=W, n_victims=2, n_agents=2, max_steps=12, sensing_radius=1.5, clip=CLIP
)
JCFG = JSCCConfig(height=H, width=W, channel_uses=8, clip=CLIP, hidden=128, depth=2)
PCFG = PriorConfig(height=H, width=W, clip=CLIP, hidden=256, depth=2)


@pytest.fixture(scope="module")
def maps() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    train = simulate_belief_maps(4000, DATA, g).logodds
    val = simulate_belief_maps(1000, DATA, g).logodds
    return train, val


def _trained(build: Callable[[], Any], train: Callable[..., list[float]], *args, **kwargs):
    """A model built after ``torch.manual_seed(0)`` (its initial weights) and its losses
    from ``train(model, *args, **kwargs)``."""
    torch.manual_seed(0)
    model = build()
    return model, train(model, *args, **kwargs)


@pytest.fixture(scope="module")
def jscc(maps) -> tuple[JSCC, list[float]]:
    g = torch.Generator().manual_seed(1)
    return _trained(lambda: JSCC(JCFG), train_jscc, maps[0], AWGN(), g, steps=400, batch_size=128)


@pytest.fixture(scope="module")
def prior(maps) -> tuple[DiffusionPrior, list[float]]:
    g = torch.Generator().manual_seed(2)
    return _trained(
        lambda: DiffusionPrior(PCFG), train_prior, maps[0], g, steps=600, batch_size=128
    )


# --- data ----------------------------------------------------------------------------


def test_belief_maps_shapes_range_and_victim_count():
    g = torch.Generator().manual_seed(3)
    out = simulate_belief_maps(50, DATA, g)
    assert out.logodds.shape == (50, H, W) and out.logodds.dtype == torch.float32
    assert out.truth.shape == (50, H, W) and out.truth.dtype == torch.bool
    assert bool((out.logodds.abs() <= CLIP).all())
    assert out.truth.sum(dim=(1, 2)).eq(DATA.n_victims).all()


def test_belief_maps_seeded():
    a = simulate_belief_maps(20, DATA, torch.Generator().manual_seed(5))
    b = simulate_belief_maps(20, DATA, torch.Generator().manual_seed(5))
    assert torch.equal(a.logodds, b.logodds) and torch.equal(a.truth, b.truth)


def test_one_look_bayes_update_matches_detection_probabilities():
    """One agent, one step, a disk covering the grid: every cell gets one observation, so
    the posterior log-odds is prior + log(pd/pfa) with probability pd on victims and pfa
    elsewhere (binomial; tolerance 4 standard errors)."""
    cfg = BeliefMapConfig(
        height=H,
        width=W,
        n_victims=4,
        n_agents=1,
        max_steps=1,
        sensing_radius=20.0,
        pd=0.8,
        pfa=0.2,
    )
    out = simulate_belief_maps(4000, cfg, torch.Generator().manual_seed(7))
    hit = prior_logodds(cfg) + math.log(cfg.pd / cfg.pfa)
    miss = prior_logodds(cfg) + math.log((1 - cfg.pd) / (1 - cfg.pfa))
    is_hit = (out.logodds - hit).abs() < 1e-4
    assert bool((is_hit | ((out.logodds - miss).abs() < 1e-4)).all())
    for mask, p in ((out.truth, cfg.pd), (~out.truth, cfg.pfa)):
        n = int(mask.sum())
        assert abs(is_hit[mask].float().mean().item() - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_bad_data_config_raises():
    with pytest.raises(ValueError, match="pfa"):
        BeliefMapConfig(pd=0.3, pfa=0.5)
    with pytest.raises(ValueError, match="n_victims"):
        BeliefMapConfig(height=2, width=2, n_victims=4)


# --- JSCC ----------------------------------------------------------------------------


def test_jscc_shapes_and_unit_power():
    model = JSCC(JCFG)
    g = torch.Generator().manual_seed(0)
    x = model.encode(torch.randn(5, H, W, generator=g), 3.0)
    assert x.shape == (5, JCFG.channel_uses) and x.dtype == torch.complex64
    torch.testing.assert_close(x.abs().square().mean(1), torch.ones(5), rtol=1e-5, atol=1e-5)
    est, out = model.transmit(torch.zeros(5, H, W), RayleighBlockFading(), 10.0, g)
    assert est.shape == (5, H, W) and out.y.shape == (5, JCFG.channel_uses)
    assert bool((est.abs() <= CLIP).all())


def test_jscc_beats_trivial_baseline_and_improves_with_snr(jscc, maps):
    model, losses = jscc
    val = maps[1]
    u = to_unit(val, CLIP)
    trivial = (u - to_unit(maps[0], CLIP).mean(0)).square().mean().item()
    g = torch.Generator().manual_seed(11)
    mse = {s: evaluate_jscc(model, val, AWGN(), s, g) for s in (0.0, 10.0, 20.0)}
    assert sum(losses[-50:]) / 50 < 0.8 * sum(losses[:50]) / 50, mse
    assert mse[20.0] < 0.6 * trivial, (mse, trivial)
    assert mse[20.0] < mse[10.0] < mse[0.0] < trivial


def test_jscc_seeded_and_checkpoint_round_trip(jscc, maps, tmp_path):
    model, _ = jscc
    x = maps[1][:16]
    a, _ = model.transmit(x, AWGN(), 5.0, torch.Generator().manual_seed(4))
    b, _ = model.transmit(x, AWGN(), 5.0, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    save_checkpoint(model, tmp_path / "jscc")
    loaded = load_checkpoint(JSCC, JSCCConfig, tmp_path / "jscc", config=JCFG)
    c, _ = loaded.transmit(x, AWGN(), 5.0, torch.Generator().manual_seed(4))
    assert torch.equal(a, c)
    assert not list((tmp_path / "jscc").glob("*.tmp"))


def test_checkpoint_mismatch_raises(tmp_path):
    save_checkpoint(JSCC(JCFG), tmp_path / "j")
    other = JSCCConfig(height=H, width=W, channel_uses=4, clip=CLIP, hidden=128, depth=2)
    with pytest.raises(ValueError, match="channel_uses"):
        load_checkpoint(JSCC, JSCCConfig, tmp_path / "j", config=other)
    with pytest.raises(ValueError, match="JSCC"):
        load_checkpoint(DiffusionPrior, PriorConfig, tmp_path / "j")
    with pytest.raises(ValueError, match="model.safetensors"):
        load_checkpoint(JSCC, JSCCConfig, tmp_path / "missing")


def test_jscc_bad_input_raises():
    model = JSCC(JCFG)
    with pytest.raises(ValueError, match="logodds"):
        model.encode(torch.zeros(2, H + 1, W), 0.0)
    with pytest.raises(ValueError, match="snr_db"):
        model.encode(torch.zeros(2, H, W), float("nan"))
    with pytest.raises(ValueError, match="channel_uses"):
        JSCCConfig(channel_uses=0)
    out = AWGN(csi="none").apply(model.encode(torch.zeros(2, H, W), 0.0), 0.0)
    with pytest.raises(ValueError, match="h_hat"):
        model.decode(out)


# --- prior ---------------------------------------------------------------------------


def test_ddim_step_matches_diffusers():
    prior = DiffusionPrior(PCFG)
    sched = DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        clip_sample=False,
        set_alpha_to_one=True,
        steps_offset=0,
    )
    sched.set_timesteps(10)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, H, W, generator=g)
    eps = torch.randn(3, H, W, generator=g)
    a = prior.alphas_cumprod
    for t in (900, 500, 0):
        want = sched.step(eps, t, x, eta=0.0).prev_sample
        prev = a[t - 100] if t >= 100 else torch.tensor(1.0)
        got, _ = ddim_step(x, eps, a[t].expand(3), prev.expand(3), clip_x0=False)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_ddim_timesteps_grid():
    grid = ddim_timesteps(torch.tensor([999, 40, 0]), 4)
    assert grid.tolist() == [[999, 40, 0], [749, 30, 0], [499, 20, 0], [249, 10, 0]]


def test_prior_loss_falls_and_samples_match_data_statistics(prior, maps):
    """Tolerances (10 DDIM steps, 1000 samples): mean occupancy probability within 25%
    relative, per-pixel mean of the normalized map within 0.06 on average."""
    model, losses = prior
    assert sum(losses[-100:]) / 100 < 0.5 * sum(losses[:20]) / 20
    val = maps[1]
    s = model.sample(1000, steps=10, generator=torch.Generator().manual_seed(9))
    assert s.shape == (1000, H, W) and bool((s.abs() <= CLIP).all())
    occ_s, occ_d = torch.sigmoid(s).mean().item(), torch.sigmoid(val).mean().item()
    assert abs(occ_s - occ_d) < 0.25 * occ_d
    pix = (to_unit(s, CLIP).mean(0) - to_unit(val, CLIP).mean(0)).abs().mean().item()
    assert pix < 0.06


def test_prior_sampling_seeded_and_checkpoint_round_trip(prior, tmp_path):
    model, _ = prior
    a = model.sample(4, 5, torch.Generator().manual_seed(1))
    assert torch.equal(a, model.sample(4, 5, torch.Generator().manual_seed(1)))
    save_checkpoint(model, tmp_path / "p")
    loaded = load_checkpoint(DiffusionPrior, PriorConfig, tmp_path / "p", config=PCFG)
    assert torch.equal(a, loaded.sample(4, 5, torch.Generator().manual_seed(1)))


def test_unet_prior_shapes():
    cfg = PriorConfig(height=H, width=W, clip=CLIP, backbone="unet", unet_channels=(8, 16))
    s = DiffusionPrior(cfg).sample(2, 2, torch.Generator().manual_seed(0))
    assert s.shape == (2, H, W)
    with pytest.raises(ValueError, match="divisible"):
        PriorConfig(height=6, width=W, backbone="unet", unet_channels=(8, 16, 32))


# --- receivers -----------------------------------------------------------------------


def _cddm(jscc_model, prior_model, maps) -> CDDMReceiver:
    return CDDMReceiver.calibrate(
        jscc_model,
        prior_model,
        maps[1][:500],
        AWGN(),
        torch.Generator().manual_seed(3),
        snr_grid_db=torch.arange(0.0, 21.0, 5.0),
        steps=4,
    )


def test_start_step_matches_cosine_schedule_closed_form():
    """For the cosine schedule (Nichol & Dhariwal 2021, diffusers' squaredcos_cap_v2)
    abar_t = f(t + 1) / f(0), f(s) = cos^2(((s / T) + 0.008) / 1.008 * pi / 2), so the
    step with (1 - abar_t) / abar_t = r solves
    t + 1 = T ((1.008) (2 / pi) arccos(sqrt(f(0) / (1 + r))) - 0.008)."""
    prior = DiffusionPrior(PCFG)
    err = torch.ones(3)
    rx = CDDMReceiver(JSCC(JCFG), prior, torch.tensor([0.0, 10.0, 20.0]), err)
    snr_db = torch.tensor([0.0, 5.0, 10.0, 20.0])
    r = 10.0 ** (-snr_db / 10.0)
    s, T = 0.008, 1000
    f0 = math.cos(s / (1 + s) * math.pi / 2) ** 2
    t_exact = T * ((1 + s) * (2 / math.pi) * torch.arccos(torch.sqrt(f0 / (1 + r))) - s) - 1
    t_star = rx.start_step(r)
    assert (t_star.double() - t_exact.double()).abs().max() <= 1.0
    nsr = prior.noise_to_signal()
    # It is the nearest step in log ratio: its neighbours are no closer.
    for ts, ri in zip(t_star.tolist(), r.tolist()):
        d = abs(math.log(nsr[ts]) - math.log(ri))
        assert all(
            d <= abs(math.log(nsr[n]) - math.log(ri)) for n in (ts - 1, ts + 1) if 0 <= n < T
        )
    assert t_star.tolist() == sorted(t_star.tolist(), reverse=True)


def test_cddm_decodes_shapes_calibration_and_determinism(jscc, prior, maps):
    rx = _cddm(jscc[0], prior[0], maps)
    # The calibrated error variance falls with SNR.
    assert bool((rx.error_var_table.diff() < 0).all())
    x = maps[1][:8]
    out = AWGN().apply(jscc[0].encode(x, 5.0), 5.0, torch.Generator().manual_seed(2))
    a = rx.decode(out)
    assert a.shape == (8, H, W) and bool((a.abs() <= CLIP).all())
    assert torch.equal(a, rx.decode(out))
    mse = (to_unit(a, CLIP) - to_unit(x, CLIP)).square().mean().item()
    trivial = (to_unit(x, CLIP) - to_unit(maps[0], CLIP).mean(0)).square().mean().item()
    assert mse < trivial


def test_dps_guidance_lowers_measurement_residual(jscc, prior, maps):
    model, pr = jscc[0], prior[0]
    x = maps[1][:64]
    snr = 10.0
    out = AWGN().apply(model.encode(x, snr), snr, torch.Generator().manual_seed(5))
    snr_v = torch.full((64,), snr)
    res = {}
    for zeta in (0.0, 1.0):
        rx = DiffComReceiver(model, pr, steps=10, zeta=zeta)
        est = rx.decode(out, snr, torch.Generator().manual_seed(6))
        with torch.no_grad():
            res[zeta] = rx.residual(to_unit(est, CLIP), out, snr_v).mean().item()
    assert res[1.0] < 0.8 * res[0.0]


def test_diffcom_seeded_and_bad_input(jscc, prior, maps):
    model, pr = jscc[0], prior[0]
    out = AWGN().apply(model.encode(maps[1][:4], 5.0), 5.0, torch.Generator().manual_seed(0))
    rx = DiffComReceiver(model, pr, steps=3, zeta=0.5)
    a = rx.decode(out, 5.0, torch.Generator().manual_seed(1))
    assert a.shape == (4, H, W)
    assert torch.equal(a, rx.decode(out, 5.0, torch.Generator().manual_seed(1)))
    with pytest.raises(ValueError, match="generator"):
        rx.decode(out, 5.0)
    with pytest.raises(ValueError, match="zeta"):
        DiffComReceiver(model, pr, zeta=-1.0)
    bad = DiffusionPrior(PriorConfig(height=H, width=W, clip=3.0, hidden=8, depth=1))
    with pytest.raises(ValueError, match="clip"):
        DiffComReceiver(model, bad)


# --- codecs --------------------------------------------------------------------------


def test_codecs_account_and_fall_back_to_prior(jscc, prior, maps):
    model, pr = jscc[0], prior[0]
    cddm = _cddm(model, pr, maps)
    codecs = [
        make_codec("jscc", (H, W), model=model, encoder_snr_db=10.0),
        make_codec("jscc+cddm", (H, W), receiver=cddm),
        make_codec("jscc+diffcom", (H, W), receiver=DiffComReceiver(model, pr, 4, 0.5, cddm)),
    ]
    x = maps[1][:6]
    k = JCFG.channel_uses
    budget = torch.tensor([k, k + 5, k - 1, k, 2 * k, 1])
    prior_map = torch.full((6, H, W), -4.0)
    for codec in codecs:
        t = transmit(
            codec, x, budget, AWGN(), 10.0, torch.Generator().manual_seed(0), prior=prior_map
        )
        assert t.channel_uses.tolist() == [k, k, 0, k, k, 0]
        # An analog message's information is the capacity of its uses (AWGN, 10 dB).
        per_use = math.log2(1 + 10.0)
        torch.testing.assert_close(t.bits, t.channel_uses.double() * per_use)
        assert t.side_bits.eq(0).all()
        assert t.delivered.tolist() == [True, True, False, True, True, False]
        assert torch.equal(t.estimate[2], prior_map[2]) and torch.equal(t.estimate[5], prior_map[5])
        assert not torch.equal(t.estimate[0], prior_map[0])
    direct, _ = model.transmit(x, AWGN(), 10.0, torch.Generator().manual_seed(0))
    t = transmit(codecs[0], x, k, AWGN(), 10.0, torch.Generator().manual_seed(0))
    torch.testing.assert_close(t.estimate, direct)
    with pytest.raises(ValueError, match="source_shape"):
        make_codec("jscc", (H, W + 1), model=model)
    with pytest.raises(ValueError, match="start"):
        make_codec("jscc+diffcom", (H, W), receiver=DiffComReceiver(model, pr))
    with pytest.raises(ValueError, match="model must be a JSCC, got CDDMReceiver"):
        make_codec("jscc", (H, W), model=cddm)
    with pytest.raises(ValueError, match="receiver must be a CDDMReceiver, got JSCC"):
        make_codec("jscc+cddm", (H, W), receiver=model)
    with pytest.raises(ValueError, match="receiver must be a DiffComReceiver, got CDDMReceiver"):
        make_codec("jscc+diffcom", (H, W), receiver=cddm)


# --- bundles: several budgets, saved calibration, shipped default ---------------------


def _bundle(jscc, prior, maps) -> DecoderBundle:
    model, pr = jscc[0], prior[0]
    torch.manual_seed(5)
    small = JSCC(JSCCConfig(height=H, width=W, channel_uses=4, clip=CLIP, hidden=32, depth=1))
    train_jscc(small, maps[0], AWGN(), torch.Generator().manual_seed(6), steps=50, batch_size=64)
    models = {4: small, JCFG.channel_uses: model}
    cddm = {k: _cddm(m, pr, maps) for k, m in models.items()}
    return DecoderBundle(pr, models, cddm, {4: 0.0, JCFG.channel_uses: 0.1}, diffcom_steps=3)


def test_bundle_round_trip_gives_identical_receivers(jscc, prior, maps, tmp_path):
    bundle = _bundle(jscc, prior, maps)
    bundle.save(tmp_path / "b")
    loaded = load_bundle(tmp_path / "b")
    assert loaded.channel_uses == (4, 8) and loaded.zeta == bundle.zeta
    for k in loaded.channel_uses:
        # The calibration table is read back, not re-measured.
        torch.testing.assert_close(loaded.cddm[k].error_var_table, bundle.cddm[k].error_var_table)
        assert loaded.cddm[k].steps == bundle.cddm[k].steps
    x = maps[1][:5]
    direct = {
        "jscc": {"model": bundle.jscc[8]},
        "jscc+cddm": {"receiver": bundle.cddm[8]},
        "jscc+diffcom": {"receiver": bundle.diffcom(8)},
    }
    for name, params in direct.items():
        a = make_codec(name, (H, W), checkpoint=tmp_path / "b")
        b = make_codec(name, (H, W), **params)
        ta, tb = (
            transmit(c, x, 8, RayleighBlockFading(), 5.0, torch.Generator().manual_seed(1))
            for c in (a, b)
        )
        torch.testing.assert_close(ta.estimate, tb.estimate)


def test_float16_storage_halves_the_file_and_stays_close(jscc, maps, tmp_path):
    model = jscc[0]
    save_checkpoint(model, tmp_path / "f32")
    save_checkpoint(model, tmp_path / "f16", dtype="float16")
    size = [(tmp_path / d / "model.safetensors").stat().st_size for d in ("f32", "f16")]
    assert size[1] < 0.55 * size[0]
    half = load_checkpoint(JSCC, JSCCConfig, tmp_path / "f16")
    assert all(p.dtype == torch.float32 for p in half.parameters())
    g = [torch.Generator().manual_seed(0) for _ in range(2)]
    with torch.no_grad():
        a, _ = model.transmit(maps[1][:200], AWGN(), 10.0, g[0])
        b, _ = half.transmit(maps[1][:200], AWGN(), 10.0, g[1])
    # fp16 keeps ~3 significant digits: decoded maps move by well under 1% of the range.
    assert float((to_unit(a, CLIP) - to_unit(b, CLIP)).abs().mean()) < 5e-3
    with pytest.raises(ValueError, match="dtype"):
        save_checkpoint(model, tmp_path / "x", dtype="int8")


def test_codec_uses_largest_model_that_fits_the_budget(jscc, prior, maps, tmp_path):
    bundle = _bundle(jscc, prior, maps)
    bundle.save(tmp_path / "b")
    budget = torch.tensor([3, 4, 7, 8, 100, 1])
    assert bundle.select_channel_uses(budget).tolist() == [0, 4, 4, 8, 8, 0]
    prior_map = torch.full((6, H, W), -4.0)
    for name in ("jscc", "jscc+cddm", "jscc+diffcom"):
        codec = make_codec(name, (H, W), checkpoint=tmp_path / "b")
        t = transmit(
            codec,
            maps[1][:6],
            budget,
            AWGN(),
            10.0,
            torch.Generator().manual_seed(0),
            prior=prior_map,
        )
        assert t.channel_uses.tolist() == [0, 4, 4, 8, 8, 0]
        assert torch.equal(t.estimate[0], prior_map[0]) and torch.equal(t.estimate[5], prior_map[5])
        assert not torch.equal(t.estimate[1], prior_map[1])


def test_bundle_errors_are_clear(jscc, prior, maps, tmp_path):
    bundle = _bundle(jscc, prior, maps)
    with pytest.raises(ValueError, match="bundle.json"):
        make_codec("jscc", (H, W), checkpoint=tmp_path)
    with pytest.raises(ValueError, match="no shipped decoder model for source_shape=\\(5, 7\\)"):
        make_codec("jscc", (5, 7))
    with pytest.raises(ValueError, match="cddm has keys"):
        DecoderBundle(bundle.prior, bundle.jscc, {8: bundle.cddm[8]}, bundle.zeta)
    bundle.cddm[8].save_calibration(tmp_path / "c")
    with pytest.raises(ValueError, match="calibrated for channel_uses=8"):
        CDDMReceiver.from_calibration(bundle.jscc[4], bundle.prior, tmp_path / "c")


class _CountingWrapper(torch.nn.Module):
    """Stands in for DistributedDataParallel: every step's loss must pass its forward."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, step: int) -> torch.Tensor:
        self.calls += 1
        return self.inner(step)


@pytest.mark.parametrize("kind", ["jscc", "prior"])
def test_data_parallel_wrapper_carries_every_step(maps, kind):
    """The wrapper gets a module holding exactly the model's parameters, every step's loss
    passes through its forward, every parameter gets a gradient (DDP needs that), and an
    identity wrapper changes nothing."""

    def train(parallel=None):
        torch.manual_seed(0)
        g = torch.Generator().manual_seed(0)
        if kind == "jscc":
            model = JSCC(JSCCConfig(height=H, width=W, channel_uses=4, hidden=16, depth=1))
            losses = train_jscc(model, maps[0], AWGN(), g, steps=3, batch_size=8, parallel=parallel)
        else:
            model = DiffusionPrior(PriorConfig(height=H, width=W, hidden=16, depth=1))
            losses = train_prior(model, maps[0], g, steps=3, batch_size=8, parallel=parallel)
        return model, losses

    wrappers = []

    def wrap(module):
        wrappers.append(_CountingWrapper(module))
        return wrappers[-1]

    model, losses = train(wrap)
    (wrapper,) = wrappers
    assert wrapper.calls == 3
    assert {id(p) for p in wrapper.parameters()} == {id(p) for p in model.parameters()}
    assert all(p.grad is not None for p in model.parameters())
    plain, plain_losses = train()
    assert losses == plain_losses
    for a, b in zip(model.state_dict().values(), plain.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_shipped_bundle_is_the_default_small_and_better_than_the_prior():
    from agentcomm.decoders import default_bundle_dir
    from agentcomm.policies.receiver_training import collect_env_beliefs

    path = default_bundle_dir((16, 16))
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    assert size < 5 * 1024**2
    codec = make_codec("jscc+cddm", (16, 16))
    assert tuple(codec.models) == (16, 32, 64)
    # On maps of the scenario the bundle was trained on (the earlier start: every agent at
    # the centre, 30 steps).
    maps = collect_env_beliefs(
        "SearchRescue-v0", num_envs=4, steps=15, seed=99, start="base", max_steps=30
    ).logodds
    u = to_unit(maps, 6.0)
    baseline = float((u - u.mean(0)).square().mean())  # the best constant map
    for name in ("jscc", "jscc+cddm"):
        c = make_codec(name, (16, 16), encoder_snr_db=20.0)
        t = transmit(c, maps, 64, AWGN(), 20.0, torch.Generator().manual_seed(0))
        assert t.channel_uses.eq(64).all()
        # The shipped receivers beat the best constant map (the prior) at 20 dB.
        assert float((to_unit(t.estimate, 6.0) - u).square().mean()) < baseline
