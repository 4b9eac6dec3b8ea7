"""Specifications of the diffusion receivers' posterior-mean belief (shipped 16x16 bundle)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from agentcomm.channels.awgn import AWGN
from agentcomm.channels.rayleigh import RayleighBlockFading
from agentcomm.codecs.base import transmit
from agentcomm.codecs.registry import make_codec
from agentcomm.decoders import default_bundle_dir, load_bundle
from agentcomm.decoders.posterior import cross_entropy_bits, posterior_belief, reliability

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (16, 16)
PRIOR = math.log(3 / 253)
K = 32


@pytest.fixture(scope="module")
def bundle():
    return load_bundle(default_bundle_dir(SHAPE))


@pytest.fixture(scope="module")
def beliefs(bundle) -> torch.Tensor:
    """Prior samples as stand-in beliefs: 12 maps ``[12, 16, 16]`` of log-odds."""
    return bundle.prior.sample(12, steps=10, generator=torch.Generator().manual_seed(3))


def _send(codec, beliefs, seed: int, channel=None):
    g = torch.Generator().manual_seed(seed)
    channel = AWGN() if channel is None else channel
    msg = codec.encode(beliefs, K, prior=PRIOR)
    received = codec.deliver(msg, channel, 2.0, g)
    return received, g


# --- hand examples ---------------------------------------------------------------------


def test_cross_entropy_bits_hand_example():
    # p = 1/2 on an occupied cell: 1 bit; p = 3/4 on an empty cell: -log2(1/4) = 2 bits.
    logodds = torch.tensor([0.0, math.log(3.0)])
    truth = torch.tensor([True, False])
    assert float(cross_entropy_bits(logodds, truth)) == pytest.approx(1.5, abs=1e-6)
    with pytest.raises(ValueError, match="truth has shape"):
        cross_entropy_bits(logodds, truth[:1])


def test_posterior_belief_averages_probabilities_not_logodds():
    samples = torch.tensor([0.0, math.log(3.0)]).view(1, 2, 1)  # p = 1/2 and 3/4
    post = posterior_belief(samples, clip=6.0)
    assert float(post.prob) == pytest.approx(0.625, abs=1e-6)
    assert float(post.logodds) == pytest.approx(math.log(5 / 3), abs=1e-5)
    assert float(post.variance) == pytest.approx(2 * 0.125**2, abs=1e-6)
    # Confident samples are clipped to the bound.
    assert float(posterior_belief(torch.full((1, 3, 1), 50.0), clip=6.0).logodds) == 6.0
    with pytest.raises(ValueError, match="clip"):
        posterior_belief(samples, clip=0.0)


def test_reliability_bins_hand_example():
    prob = torch.tensor([0.05, 0.05, 0.95, 0.95, 0.55])
    truth = torch.tensor([False, True, True, True, False])
    r = reliability(prob, truth, bins=2)
    assert r["count"].tolist() == [2.0, 3.0]
    assert r["observed"].tolist() == pytest.approx([0.5, 2 / 3])
    assert r["predicted"].tolist() == pytest.approx([0.05, (0.95 + 0.95 + 0.55) / 3])


def test_reliability_log_edges_hand_example():
    # Cells near a small prior, where equal-width bins would lump them all together.
    prob = torch.tensor([0.002, 0.004, 0.02, 0.03, 0.5, 1.0])
    truth = torch.tensor([False, False, True, False, True, True])
    r = reliability(prob, truth, edges=torch.tensor([0.0, 0.01, 0.1, 1.0]))
    assert r["count"].tolist() == [2.0, 2.0, 2.0]
    assert r["observed"].tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert r["predicted"].tolist() == pytest.approx([0.003, 0.025, 0.75])
    for bad in ([0.0, 0.5], [0.1, 1.0], [0.0, 0.5, 0.5, 1.0], [[0.0, 1.0]]):
        with pytest.raises(ValueError, match="edges"):
            reliability(prob, truth, edges=torch.tensor(bad))


# --- codecs -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["jscc+cddm", "jscc+diffcom"])
def test_one_sample_is_the_deterministic_receiver_bit_for_bit(bundle, beliefs, name):
    one = make_codec(name, SHAPE, encoder_snr_db=2.0, posterior_samples=1)
    received, g = _send(one, beliefs, 5, RayleighBlockFading())
    state = g.get_state()
    est = one.decode(received).reshape(-1, *SHAPE)
    # The receiver called directly, as the codec did before it had posterior samples.
    out = received.channel
    with torch.no_grad():
        if name == "jscc+cddm":
            ref = bundle.cddm[K].decode(out)
        else:
            ref = bundle.diffcom(K).decode(out, 2.0)
    assert torch.equal(est, ref)
    assert torch.equal(g.get_state(), state)  # S = 1 draws nothing more
    assert "posterior_seed" not in received.message.context
    post = one.decode_posterior(received)
    assert torch.equal(post.logodds, one.decode(received)) and post.samples == 1
    assert torch.equal(post.variance, torch.zeros_like(post.variance))


@pytest.mark.parametrize("name", ["jscc+cddm", "jscc+diffcom"])
def test_many_samples_are_one_batched_pass_per_step(bundle, beliefs, name):
    s, m = 6, beliefs.shape[0]
    codec = make_codec(name, SHAPE, encoder_snr_db=2.0, posterior_samples=s, steps=3)
    received, _ = _send(codec, beliefs, 7)
    rx = codec.receivers[K].args[0]  # the receiver behind the partial
    calls: dict[str, list[int]] = {"prior": [], "decoder": []}
    hooks = [
        rx.prior.net.register_forward_hook(lambda mod, a, o: calls["prior"].append(a[0].shape[0])),
        rx.jscc.decoder.register_forward_hook(
            lambda mod, a, o: calls["decoder"].append(a[0].shape[0])
        ),
    ]
    try:
        codec.decode(received)
    finally:
        for h in hooks:
            h.remove()
    assert calls["decoder"] == [m]  # the JSCC decoder once, on the messages
    assert calls["prior"] == [m * s] * 3  # one call per step on every sample at once


@pytest.mark.parametrize("name", ["jscc+cddm", "jscc+diffcom"])
def test_posterior_belief_seeded_bounded_and_uncertain(beliefs, name):
    codec = make_codec(name, SHAPE, encoder_snr_db=2.0, posterior_samples=8, steps=3)
    a = codec.decode_posterior(_send(codec, beliefs, 11)[0])
    b = codec.decode_posterior(_send(codec, beliefs, 11)[0])
    c = codec.decode_posterior(_send(codec, beliefs, 12)[0])
    assert torch.equal(a.logodds, b.logodds) and torch.equal(a.variance, b.variance)
    assert not torch.equal(a.logodds, c.logodds)
    clip = codec.model.config.clip
    assert bool((a.prob >= 0).all() and (a.prob <= 1).all())
    assert bool((a.logodds.abs() <= clip).all())
    assert torch.allclose(torch.sigmoid(a.logodds), a.prob.float(), atol=1e-4)
    assert bool((a.variance >= 0).all()) and float(a.variance.max()) > 0
    # The posterior mean is not any one sample: it differs from the deterministic map.
    det = make_codec(name, SHAPE, encoder_snr_db=2.0, steps=3)
    assert not torch.equal(a.logodds, det.decode(_send(det, beliefs, 11)[0]))


def test_undelivered_messages_decode_to_the_prior_without_variance(beliefs):
    codec = make_codec("jscc+cddm", SHAPE, encoder_snr_db=2.0, posterior_samples=4, steps=2)
    budget = torch.tensor([K] * 6 + [4] * 6)  # below the smallest k: not sent
    g = torch.Generator().manual_seed(0)
    t = transmit(codec, beliefs, budget, AWGN(), 2.0, g, prior=PRIOR)
    assert torch.allclose(t.estimate[6:], torch.full_like(t.estimate[6:], PRIOR))
    msg = codec.encode(beliefs, budget, prior=PRIOR)
    post = codec.decode_posterior(codec.deliver(msg, AWGN(), 2.0, g))
    assert float(post.variance[6:].abs().max()) == 0.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"posterior_samples": 0}, "posterior_samples"),
        ({"posterior_samples": 2.5}, "posterior_samples"),
        ({"eta": 0.0}, "eta"),
        ({"eta": 1.5}, "eta"),
        ({"seed": "x"}, "seed"),
    ],
)
def test_bad_posterior_parameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_codec("jscc+cddm", SHAPE, **kwargs)


def test_eval_decoders_quick_prints_every_result_key(tmp_path):
    keys = (
        "xent_jscc_low xent_diffusion_low mse_jscc_low mse_diffusion_mean_low "
        "mse_send_nothing calls_per_message latency_ms_b1 latency_ms_b64 "
        "task_success_jscc_low task_success_jscc_low_ci_low task_success_jscc_low_ci_high "
        "task_success_diffusion_low task_success_diffusion_low_ci_low "
        "task_success_diffusion_low_ci_high xent_diff_low xent_diff_low_ci_low "
        "xent_diff_low_ci_high xent_fused_jscc_low xent_fused_diffusion_low "
        "xent_fused_diff_low xent_fused_diff_low_ci_low xent_fused_diff_low_ci_high"
    ).split()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "experiments/eval_decoders.py", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("RESULT ")
    found = dict(kv.split("=", 1) for kv in last.split()[1:])
    missing = [k for k in keys if k not in found]
    assert not missing, missing
    for k in keys:
        assert math.isfinite(float(found[k]))
    assert (tmp_path / "reliability.png").is_file()
    assert float(found["xent_diff_low_ci_low"]) <= float(found["xent_diff_low_ci_high"])
    assert (tmp_path / "fused.csv").is_file()


def test_xent_difference_counts_world_slots_not_maps():
    from agentcomm.experiments.eval_decoders import per_map_xent_bits, xent_difference

    g = torch.Generator().manual_seed(0)
    truth = torch.rand(24, 4, 4, generator=g) < 0.1
    jscc = torch.rand(24, 4, 4, generator=g).clamp(0.01, 0.99)
    per_map = per_map_xent_bits(jscc, truth)
    assert float(per_map.mean()) == pytest.approx(
        float(cross_entropy_bits(torch.logit(jscc), truth)), rel=1e-6
    )
    # Two settings of 12 maps from 3 world slots; the diffusion maps are better by a
    # constant only in slot 0, so the slot means are (d, 0, 0) and the interval is Student's
    # t over 3 values, not over 24 maps.
    slots = torch.arange(12) % 3
    better = torch.where((slots == 0).repeat(2)[:, None, None], jscc.sqrt(), jscc)
    r = xent_difference({"jscc": jscc, "diffusion": better, "truth": truth}, slots)
    d = per_map_xent_bits(better, truth) - per_map
    assert r["xent_diff_slots"] == 3
    assert r["xent_diff_low"] == pytest.approx(float(d.mean()))
    means = torch.stack([d[(slots == k).repeat(2)].mean() for k in range(3)])
    half = 4.302653 * float(means.std()) / math.sqrt(3)  # t(0.975, 2 dof)
    assert r["xent_diff_low_ci_high"] - r["xent_diff_low_ci_low"] == pytest.approx(
        2 * half, rel=1e-4
    )
