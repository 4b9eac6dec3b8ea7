"""Receivers without CSI (blind gain estimate) and with an assumed SNR (shipped 16x16 bundle)."""

from __future__ import annotations

import math

import pytest
import torch

import agentcomm
from agentcomm.channels.awgn import AWGN
from agentcomm.channels.base import ChannelOutput
from agentcomm.channels.rayleigh import RayleighBlockFading
from agentcomm.decoders import default_bundle_dir, load_bundle
from agentcomm.decoders.cddm import CDDMReceiver
from agentcomm.decoders.diffcom import DiffComReceiver
from agentcomm.decoders.flow import FlowReceiver
from agentcomm.decoders.jscc import (
    assume_snr,
    estimate_gain,
    ls_gain,
    mean_symbols,
    residual_snr_db,
)
from agentcomm.envs import env_class

K = 64


@pytest.fixture(scope="module")
def bundle():
    torch.set_num_threads(1)
    return load_bundle(default_bundle_dir((16, 16)))


@pytest.fixture(scope="module")
def maps(bundle) -> torch.Tensor:
    """Prior samples as stand-in beliefs: ``[48, 16, 16]`` log-odds."""
    return bundle.prior.sample(48, steps=10, generator=torch.Generator().manual_seed(11))


def _rotated(z: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A random block gain ``[M, 1]`` per message (amplitude 0.3-2, any phase)."""
    g = torch.Generator().manual_seed(seed)
    amp = 0.3 + 1.7 * torch.rand(z.shape[0], 1, generator=g)
    phase = 2 * math.pi * torch.rand(z.shape[0], 1, generator=g)
    return torch.polar(amp, phase), g


# --- the gain estimate -----------------------------------------------------------------


def test_ls_gain_recovers_known_gain_on_noiseless_input():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, 16, dtype=torch.complex64, generator=g)
    h, _ = _rotated(z, 1)
    torch.testing.assert_close(ls_gain(h * z, z), h, rtol=1e-5, atol=1e-5)


def test_blind_residual_is_zero_at_the_sent_map_on_noiseless_input(bundle, maps):
    """Noiseless y = h f(x): DiffCom's blind forward operator fits the sent map exactly."""
    model = bundle.jscc[K]
    rx = DiffComReceiver(model, bundle.prior, steps=2, zeta=0.1)
    snr = torch.full((maps.shape[0],), 10.0)
    with torch.no_grad():
        z = model.encode(maps, snr)
        h, _ = _rotated(z, 2)
        out = ChannelOutput(y=h * z, h=h, h_hat=None, noise_var=torch.full((48, 1), 1e-6))
        u = maps.clamp(-6, 6) / 6
        res = rx.residual(u, out, snr)
        wrong = rx.residual(u.roll(1, dims=0), out, snr)
    assert float(res.max()) < 1e-3 * math.sqrt(K)
    assert float(wrong.min()) > 0.1


def test_estimate_gain_recovers_gain_at_high_snr(bundle, maps):
    model = bundle.jscc[K]
    with torch.no_grad():
        z = model.encode(maps, 30.0)
        h, g = _rotated(z, 3)
        out = AWGN(csi="none").apply(z, 30.0, g, h=h)
        ref = bundle.cddm[K].reference_maps()
        est = estimate_gain(model, out, 30.0, ref, iters=2)
    assert est.shape == (48, 1)
    rel = ((est - h).abs() / h.abs()).squeeze(1)
    # Most messages get the gain within 25 % (a random phase would give about 1/12); prior
    # draws are more varied than the maps the codec was trained on, which makes the mean
    # symbols a weaker pilot than on the held-out environment maps.
    assert float((rel < 0.25).float().mean()) >= 0.6
    assert float(rel.median()) < 0.2
    # The alternation refines the start from the mean symbols.
    est0 = estimate_gain(model, out, 30.0, ref, iters=0)
    rel0 = ((est0 - h).abs() / h.abs()).squeeze(1)
    assert float(rel.median()) < 0.5 * float(rel0.median())


def test_estimate_gain_uses_pilots_when_given(bundle, maps):
    model = bundle.jscc[K]
    with torch.no_grad():
        out = RayleighBlockFading(csi="perfect").apply(
            model.encode(maps, 10.0), 10.0, torch.Generator().manual_seed(4)
        )
        est = estimate_gain(model, out, 10.0, iters=0)
    torch.testing.assert_close(est, out.h_hat)


def test_mean_symbols_are_per_encoder_snr(bundle, maps):
    model = bundle.jscc[K]
    with torch.no_grad():
        zbar = mean_symbols(model, maps, torch.tensor([0.0, 20.0, 0.0]))
        direct = model.encode(maps, 20.0).mean(dim=0)
    assert zbar.shape == (3, K)
    torch.testing.assert_close(zbar[1], direct, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(zbar[0], zbar[2])
    assert not torch.allclose(zbar[0], zbar[1])


def test_residual_snr_is_near_the_true_snr_whatever_was_assumed(bundle, maps):
    model = bundle.jscc[K]
    with torch.no_grad():
        out = AWGN().apply(model.encode(maps, 3.0), 3.0, torch.Generator().manual_seed(5))
        low = residual_snr_db(model, assume_snr(out, -2.0), 3.0)
        high = residual_snr_db(model, assume_snr(out, 8.0), 3.0)
    assert low.shape == (48,)
    for est in (low, high):
        assert abs(float(est.mean()) - 3.0) < 1.5


# --- blind receivers -------------------------------------------------------------------


def _nocsi_output(bundle, maps, snr: float, seed: int) -> ChannelOutput:
    with torch.no_grad():
        z = bundle.jscc[K].encode(maps, snr)
        return RayleighBlockFading(csi="none").apply(z, snr, torch.Generator().manual_seed(seed))


def test_blind_diffcom_is_batched_and_deterministic(bundle, maps):
    out = _nocsi_output(bundle, maps, 5.0, 6)
    assert out.h_hat is None
    rx = DiffComReceiver(bundle.jscc[K], bundle.prior, steps=3, zeta=0.05)
    a = rx.decode(out, 5.0, generator=torch.Generator().manual_seed(1))
    b = rx.decode(out, 5.0, generator=torch.Generator().manual_seed(1))
    c = rx.decode(out, 5.0, generator=torch.Generator().manual_seed(2))
    assert a.shape == (48, 16, 16) and bool(torch.isfinite(a).all())
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    # With the CDDM start (no generator needed) one message alone decodes as in the batch.
    started = bundle.diffcom(K, steps=3, zeta=0.05)
    full = started.decode(out, 5.0)
    one = ChannelOutput(y=out.y[3:4], h=out.h[3:4], h_hat=None, noise_var=out.noise_var[3:4])
    torch.testing.assert_close(started.decode(one, 5.0), full[3:4], rtol=1e-4, atol=1e-4)
    samples = started.sample(out, 5.0, 2, torch.Generator().manual_seed(0))
    assert samples.shape == (48, 2, 16, 16)


def test_blind_cddm_beats_the_unequalised_jscc_decoder(bundle, maps):
    out = _nocsi_output(bundle, maps, 10.0, 7)
    u = maps.clamp(-6, 6) / 6
    with torch.no_grad():
        unequalised = bundle.jscc[K].decode(out, 10.0)
        blind = bundle.cddm[K].decode(out, encoder_snr_db=10.0)
    mse_unequalised = float((unequalised / 6 - u).square().mean())
    mse_blind = float((blind / 6 - u).square().mean())
    # Decoding the unequalised symbols is what a receiver without the estimate does; the
    # blind gain must be clearly better (ratio 0.67-0.82 on the bundles trained so far).
    assert mse_blind < 0.9 * mse_unequalised


def test_blind_flow_is_batched_deterministic_and_beats_the_unequalised_decoder(bundle, maps):
    out = _nocsi_output(bundle, maps, 10.0, 7)
    assert out.h_hat is None
    rx = bundle.flow_receiver(K)
    u = maps.clamp(-6, 6) / 6
    with torch.no_grad():
        unequalised = bundle.jscc[K].decode(out, 10.0)
        blind = rx.decode(out, encoder_snr_db=10.0)
        again = rx.decode(out, encoder_snr_db=10.0)
        one = ChannelOutput(y=out.y[3:4], h=out.h[3:4], h_hat=None, noise_var=out.noise_var[3:4])
        alone = rx.decode(one, encoder_snr_db=10.0)
        samples = rx.sample(out, 3, torch.Generator().manual_seed(0), encoder_snr_db=10.0)
        resampled = rx.sample(out, 3, torch.Generator().manual_seed(0), encoder_snr_db=10.0)
    assert blind.shape == (48, 16, 16) and bool(torch.isfinite(blind).all())
    torch.testing.assert_close(blind, again)
    torch.testing.assert_close(alone, blind[3:4], rtol=1e-4, atol=1e-4)
    assert samples.shape == (48, 3, 16, 16)
    torch.testing.assert_close(samples, resampled)
    mse_unequalised = float((unequalised / 6 - u).square().mean())
    mse_blind = float((blind / 6 - u).square().mean())
    assert mse_blind < 0.9 * mse_unequalised


def test_cddm_and_flow_share_one_receiver_output(bundle, maps):
    """Given the same reference maps the two receivers see the same blind estimate."""
    out = _nocsi_output(bundle, maps, 5.0, 12)
    cddm = bundle.cddm[K]
    flow = bundle.flow_receiver(K)
    flow._reference = cddm.reference_maps()
    with torch.no_grad():
        a = cddm.receiver_output(out, encoder_snr_db=5.0)
        b = flow.receiver_output(out, encoder_snr_db=5.0)
    assert a.h_hat is not None and a.h_hat.shape == (48, 1)
    torch.testing.assert_close(a.h_hat, b.h_hat)
    # The flow's own reference maps are drawn from the flow, once.
    flow = bundle.flow_receiver(K)
    assert flow.reference_maps().shape == (flow.reference_samples, 16, 16)
    assert flow.reference_maps() is flow.reference_maps()
    assert isinstance(cddm, CDDMReceiver) and isinstance(flow, FlowReceiver)
    assert flow.blind_iters == cddm.blind_iters
    with pytest.raises(ValueError, match="blind_iters"):
        flow.options(blind_iters=-1)
    with pytest.raises(ValueError, match="unknown options"):
        flow.options(zeta=1.0)


# --- the environment without CSI -------------------------------------------------------

BLIND = ("jscc+cddm", "jscc+diffcom", "jscc+flow")


@pytest.mark.parametrize("codec", BLIND)
def test_config_accepts_no_csi_for_the_blind_codecs(codec):
    cfg = env_class("SearchRescue-v0").config_cls.from_dict(
        {"comm": {"codec": codec}, "channel": {"name": "rayleigh_block", "csi": "none"}}
    )
    assert cfg.channel.csi == "none" and cfg.comm.codec == codec


def test_config_refuses_no_csi_for_jscc_naming_parameter_value_and_codecs():
    cls = env_class("SearchRescue-v0").config_cls
    with pytest.raises(ValueError, match=r"channel\.csi='none' is not allowed") as info:
        cls.from_dict({"comm": {"codec": "jscc"}, "channel": {"csi": "none"}})
    msg = str(info.value)
    assert "comm.codec='jscc'" in msg
    for codec in BLIND:
        assert repr(codec) in msg
    with pytest.raises(ValueError, match=r"channel\.name='rayleigh_fast' is not allowed"):
        cls.from_dict(
            {"comm": {"codec": "jscc+flow"}, "channel": {"name": "rayleigh_fast", "csi": "none"}}
        )


def test_env_without_csi_steps_with_the_flow_codec():
    torch.set_num_threads(1)
    world = agentcomm.make_vec(
        "SearchRescue-v0",
        num_envs=4,
        seed=0,
        comm={"codec": "jscc+flow"},
        channel={"name": "rayleigh_block", "csi": "none"},
    )
    gen = torch.Generator().manual_seed(0)
    obs = world.reset()
    sent = 0
    for _ in range(3):
        actions = torch.rand(world.num_envs, world.num_agents, 6, generator=gen) * 2 - 1
        obs, rew, term, trunc, info = world.step(actions)
        assert bool(torch.isfinite(obs).all()) and bool(torch.isfinite(rew).all())
        sent += int(info["peer_channel_uses"].sum())
    assert sent > 0


# --- assumed SNR -----------------------------------------------------------------------


def test_assume_snr_replaces_only_the_noise_level(bundle, maps):
    with torch.no_grad():
        out = AWGN().apply(bundle.jscc[K].encode(maps, 5.0), 5.0, torch.Generator())
    rx = assume_snr(out, 10.0)
    torch.testing.assert_close(rx.noise_var, torch.full((48, 1), 0.1))
    assert rx.y is out.y and rx.h_hat is out.h_hat


def test_assumed_snr_reaches_every_receiver(bundle, maps):
    model, cddm = bundle.jscc[K], bundle.cddm[K]
    with torch.no_grad():
        out = AWGN().apply(model.encode(maps, 2.0), 2.0, torch.Generator().manual_seed(8))
        # The assumption equal to the truth changes nothing ...
        torch.testing.assert_close(model.decode(out, 2.0), model.decode(out))
        assert cddm.receiver_output(out) is out
        # ... a wrong one changes the JSCC input, the start step and the maps.
        assert not torch.allclose(model.decode(out, 7.0), model.decode(out))
        _, t_true = cddm.initial_state(out)
        _, t_high = cddm.initial_state(out, 7.0)
        _, t_low = cddm.initial_state(out, -3.0)
        assert bool((t_high < t_true).all()) and bool((t_low > t_true).all())
        assert not torch.allclose(cddm.decode(out, 7.0), cddm.decode(out))
    diffcom = bundle.diffcom(K)
    assert not torch.allclose(
        diffcom.decode(out, 2.0, assumed_snr_db=7.0), diffcom.decode(out, 2.0)
    )


def test_estimate_snr_undoes_most_of_a_wrong_assumption(bundle, maps):
    cddm = bundle.cddm[K]
    robust = cddm.options(estimate_snr=True)
    with torch.no_grad():
        out = AWGN().apply(bundle.jscc[K].encode(maps, 2.0), 2.0, torch.Generator().manual_seed(9))
        _, t_true = cddm.initial_state(out)
        _, t_wrong = cddm.initial_state(out, 7.0)
        _, t_robust = robust.initial_state(out, 7.0)
    err_wrong = float((t_wrong - t_true).abs().float().mean())
    err_robust = float((t_robust - t_true).abs().float().mean())
    assert err_robust < 0.5 * err_wrong


# --- bad input -------------------------------------------------------------------------


def test_bad_input_names_parameter_and_value(bundle, maps):
    model, cddm = bundle.jscc[K], bundle.cddm[K]
    with torch.no_grad():
        out = AWGN().apply(model.encode(maps, 2.0), 2.0, torch.Generator())
    with pytest.raises(ValueError, match="assumed_snr_db=nan must be finite"):
        assume_snr(out, float("nan"))
    with pytest.raises(ValueError, match="snr_db=inf must be finite"):
        model.decode(out, float("inf"))
    with pytest.raises(ValueError, match="assumed_snr_db=.*must be finite"):
        bundle.diffcom(K).decode(out, 2.0, assumed_snr_db=float("nan"))
    with pytest.raises(ValueError, match=r"snr_db='high' must be a number"):
        cddm.decode(out, "high")
    with pytest.raises(ValueError, match="assumed_snr_db has shape"):
        assume_snr(out, torch.zeros(3))
    with pytest.raises(ValueError, match="estimate_snr='yes' must be a bool"):
        cddm.options(estimate_snr="yes")
    with pytest.raises(ValueError, match="unknown options"):
        cddm.options(zeta=1.0)
    with pytest.raises(ValueError, match="blind_iters"):
        cddm.options(blind_iters=-1)
    nocsi = _nocsi_output(bundle, maps, 5.0, 10)
    with pytest.raises(ValueError, match="reference_maps is None"):
        estimate_gain(model, nocsi, 5.0)
    fast = ChannelOutput(nocsi.y, nocsi.y, torch.ones_like(nocsi.y), nocsi.noise_var)
    with pytest.raises(ValueError, match=r"out.h_hat has shape \(48, 64\)"):
        estimate_gain(model, fast, 5.0)
    # Without CSI and without an assumed SNR the JSCC decoder still refuses.
    with pytest.raises(ValueError, match="h_hat"):
        model.decode(nocsi)
