"""Specifications of the rectified-flow prior, its sampler step and the ``jscc+flow`` receiver."""

from __future__ import annotations

import math

import pytest
import torch

from agentcomm.channels.awgn import AWGN
from agentcomm.codecs.registry import make_codec
from agentcomm.decoders import (
    JSCC,
    BeliefMapConfig,
    DecoderBundle,
    DiffusionPrior,
    FlowConfig,
    FlowPrior,
    FlowReceiver,
    JSCCConfig,
    PriorConfig,
    load_bundle,
    simulate_belief_maps,
    train_flow,
)
from agentcomm.decoders.cddm import CDDMReceiver
from agentcomm.diffusion import (
    flow_interpolate,
    flow_sigma,
    flow_start,
    flow_step,
    flow_timesteps,
)

H = W = 8
CLIP = 6.0
K = 8
PRIOR = math.log(2 / 62)
DATA = BeliefMapConfig(
    height=H, width=W, n_victims=2, n_agents=2, max_steps=12, sensing_radius=1.5, clip=CLIP
)


@pytest.fixture(scope="module")
def maps() -> torch.Tensor:
    return simulate_belief_maps(1500, DATA, torch.Generator().manual_seed(0)).logodds


def _receiver(steps: int = 2) -> FlowReceiver:
    """An untrained receiver (weights from seed 0): enough for counting calls and seeds."""
    torch.manual_seed(0)
    jscc = JSCC(JSCCConfig(height=H, width=W, channel_uses=K, clip=CLIP, hidden=32, depth=1))
    flow = FlowPrior(FlowConfig(height=H, width=W, clip=CLIP, hidden=32, depth=1))
    grid = torch.tensor([-5.0, 5.0, 25.0])
    return FlowReceiver(jscc, flow, grid, torch.tensor([0.02, 0.005, 0.0005]), steps=steps)


# --- path and step equations ---------------------------------------------------------


def test_flow_path_and_velocity_hand_example():
    x0, eps = torch.tensor([[0.5, -1.0]]), torch.tensor([[2.0, 0.0]])
    x, v = flow_interpolate(x0, eps, torch.tensor([0.25]))
    assert torch.allclose(x, torch.tensor([[0.875, -0.75]]))
    assert torch.allclose(v, torch.tensor([[1.5, 1.0]]))


def test_euler_step_is_the_written_equation():
    g = torch.Generator().manual_seed(1)
    x = 0.15 * torch.randn(5, 4, 4, generator=g)
    v = 0.15 * torch.randn(5, 4, 4, generator=g)
    tau = torch.tensor([0.9, 0.5, 0.3, 0.2, 0.05])
    tau_next = tau / 3
    got, x0 = flow_step(x, v, tau, tau_next)
    t, tn = tau.view(-1, 1, 1), tau_next.view(-1, 1, 1)
    assert bool((x - t * v).abs().max() < 1)  # nothing clipped: the plain Euler step
    assert torch.allclose(got, x + (tn - t) * v, atol=1e-6)
    assert torch.allclose(x0, x - t * v, atol=1e-6)
    # A clipped x0 re-derives the velocity: the step lands on (1 - tau') x0 + tau' eps.
    big, _ = flow_step(x, v + 50.0, tau, tau_next)
    eps = (x + 1.0 - t) / t  # x0 = -1 everywhere
    assert torch.allclose(big, (1 - tn) * -1.0 + tn * eps, atol=1e-5)


def test_noisy_step_is_the_written_equation_and_keeps_the_marginal_variance():
    g = torch.Generator().manual_seed(2)
    x = 0.2 * torch.randn(3, 6, generator=g)
    v = 0.2 * torch.randn(3, 6, generator=g)
    tau, tau_next = torch.tensor([0.6, 0.4, 0.1]), torch.tensor([0.3, 0.1, 0.0])
    got, x0 = flow_step(x, v, tau, tau_next, eta=1.0, generator=torch.Generator().manual_seed(7))
    z = torch.randn(3, 6, generator=torch.Generator().manual_seed(7))
    t, tn = tau.view(-1, 1), tau_next.view(-1, 1)
    eps = (x - (1 - t) * x0) / t
    s = tn * (1 - (((1 - t) * tn) / ((1 - tn) * t)) ** 2).sqrt()
    assert torch.allclose(got, (1 - tn) * x0 + (tn**2 - s**2).sqrt() * eps + s * z, atol=1e-6)
    assert torch.allclose(flow_sigma(t, tn, 1.0), s)
    # The last step (tau' = 0) adds no noise; eta = 0 is the Euler step.
    assert torch.allclose(got[2], x0[2], atol=1e-6)
    det, _ = flow_step(x, v, tau, tau_next, eta=0.0)
    assert torch.allclose(det, x + (tn - t) * v, atol=1e-6)
    # With the exact x0 and eps, the step is the posterior q(x_tau' | x_tau, x0): its
    # draws have the path's marginal variance tau'^2 around (1 - tau') x0.
    n = 20000
    x0s, e = torch.zeros(n, 1), torch.randn(n, 1, generator=g)
    tt, tn1 = torch.full((n,), 0.5), torch.full((n,), 0.2)
    xs, _ = flow_interpolate(x0s, e, tt)
    nxt, _ = flow_step(xs, e - x0s, tt, tn1, eta=1.0, generator=g)
    assert float(nxt.var()) == pytest.approx(0.04, rel=0.05)


def test_snr_matched_start_and_grid():
    var = torch.tensor([0.01, 0.25, 4.0])
    tau = flow_start(var)
    assert torch.allclose(tau / (1 - tau), var.sqrt())
    grid = flow_timesteps(tau, 2)
    assert grid.shape == (3, 3)
    assert torch.allclose(grid[0], tau) and torch.allclose(grid[1], tau / 2)
    assert float(grid[2].abs().max()) == 0.0
    assert float(flow_start(torch.tensor([100.0]), tau_max=0.5)) == 0.5


# --- training ------------------------------------------------------------------------


@pytest.mark.parametrize("prediction", ["skip", "sample", "velocity"])
def test_flow_training_loss_falls_and_it_learns_to_denoise(maps, prediction):
    train, held_out = maps[:-300], maps[-300:] / CLIP

    def denoise_error(flow: FlowPrior) -> float:
        """MSE of two Euler steps from tau = 0.2 on held-out maps (normalized)."""
        noise = torch.randn(held_out.shape, generator=torch.Generator().manual_seed(3))
        x, _ = flow_interpolate(held_out, noise, torch.full((300,), 0.2))
        with torch.no_grad():
            est = flow.denoise(x, torch.full((300,), 0.2), 2)
        return float((est - held_out).square().mean())

    u = train / CLIP
    torch.manual_seed(0)
    config = FlowConfig(
        height=H,
        width=W,
        clip=CLIP,
        hidden=128,
        depth=2,
        prediction=prediction,
        data_mean=float(u.mean()),
        data_std=float(u.std()),
    )
    flow = FlowPrior(config)
    before = denoise_error(flow)
    losses = train_flow(flow, train, torch.Generator().manual_seed(1), steps=1000, batch_size=128)
    assert all(math.isfinite(x) for x in losses)
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < 0.95 * first, (first, last)
    after = denoise_error(flow)
    assert after < 0.85 * before, (before, after)
    samples = flow.sample(50, steps=3, generator=torch.Generator().manual_seed(2))
    assert samples.shape == (50, H, W) and bool((samples.abs() <= CLIP).all())


def test_skip_form_passes_the_map_through_near_tau_zero_and_reads_as_a_velocity():
    torch.manual_seed(0)
    flow = FlowPrior(
        FlowConfig(height=H, width=W, clip=CLIP, hidden=16, depth=1, data_mean=-0.7, data_std=0.1)
    )
    x = -0.7 + 0.1 * torch.randn(4, H, W, generator=torch.Generator().manual_seed(1))
    tau = torch.tensor([1e-4, 0.1, 0.5, 1.0])
    with torch.no_grad():
        v = flow.velocity(x, tau)
        x0, _, c_out = flow._x0(x, tau)
        # The sampler's x0 = x - tau v is the network's clean-map estimate.
        assert torch.allclose(x - tau.view(-1, 1, 1) * v, x0, atol=1e-5)
        flow.net.out[-1].weight.zero_()
        flow.net.out[-1].bias.zero_()
        x0, _, _ = flow._x0(x, tau)
    # With F = 0 the estimate is the linear one: the map itself at tau -> 0, the mean at 1.
    assert torch.allclose(x0[0], x[0], atol=1e-3)
    assert torch.allclose(x0[3], torch.full((H, W), -0.7))
    assert float(c_out[0]) < 1e-3 and float(c_out[3]) == pytest.approx(0.1, rel=1e-5)


# --- receiver and codec --------------------------------------------------------------


def _deliver(codec, beliefs, seed):
    g = torch.Generator().manual_seed(seed)
    msg = codec.encode(beliefs, K, prior=PRIOR)
    return codec.deliver(msg, AWGN(), 2.0, g)


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_receiver_makes_at_most_four_network_calls(maps, steps):
    rx = _receiver(steps)
    calls = []
    hooks = [
        m.register_forward_hook(lambda mod, inp, out: calls.append(inp[0].shape[0]))
        for m in (rx.jscc.decoder, rx.flow.net)
    ]
    try:
        codec = make_codec(
            "jscc+flow", (H, W), receiver=rx, encoder_snr_db=2.0, posterior_samples=8
        )
        codec.decode_posterior(_deliver(codec, maps[:5], 0))
    finally:
        for hook in hooks:
            hook.remove()
    assert len(calls) == 1 + steps <= 4
    # One batched call per step over every message and sample.
    assert calls == [5] + [5 * 8] * steps


def test_same_seed_same_belief_and_samples_differ(maps):
    codec = make_codec("jscc+flow", (H, W), receiver=_receiver(), posterior_samples=6)
    a = codec.decode_posterior(_deliver(codec, maps[:4], 3))
    b = codec.decode_posterior(_deliver(codec, maps[:4], 3))
    c = codec.decode_posterior(_deliver(codec, maps[:4], 4))
    assert torch.equal(a.logodds, b.logodds) and torch.equal(a.variance, b.variance)
    assert not torch.equal(a.logodds, c.logodds)
    assert float(a.variance.max()) > 0
    # One sample is the deterministic reconstruction, without variance.
    det = make_codec("jscc+flow", (H, W), receiver=_receiver(), posterior_samples=1)
    post = det.decode_posterior(_deliver(det, maps[:4], 3))
    assert float(post.variance.abs().max()) == 0.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"steps": 0}, r"steps=0 .*\[1, 3\]"),
        ({"steps": 4}, r"steps=4 .*\[1, 3\]"),
        ({"steps": 2.0}, "steps"),
        ({"steps": True}, "steps"),
        ({"posterior_samples": 0}, "posterior_samples"),
        ({"posterior_samples": 2.5}, "posterior_samples"),
        ({"eta": 0.0}, "eta"),
    ],
)
def test_bad_codec_parameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_codec("jscc+flow", (H, W), receiver=_receiver(), **kwargs)


def test_bad_receiver_and_step_arguments_raise():
    rx = _receiver()
    with pytest.raises(ValueError, match="steps"):
        FlowReceiver(rx.jscc, rx.flow, rx.snr_grid_db, rx.error_var_table, steps=4)
    other = FlowPrior(FlowConfig(height=H, width=W, clip=3.0, hidden=8, depth=1))
    with pytest.raises(ValueError, match="clip"):
        FlowReceiver(rx.jscc, other, rx.snr_grid_db, rx.error_var_table)
    with pytest.raises(ValueError, match="generator"):
        flow_step(torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1), torch.zeros(1), eta=1.0)
    with pytest.raises(ValueError, match="focus_tau"):
        FlowConfig(focus_tau=0.0)
    with pytest.raises(ValueError, match="config"):
        FlowPrior(PriorConfig())


def test_bundle_saves_and_loads_the_flow(tmp_path):
    rx = _receiver()
    prior = DiffusionPrior(PriorConfig(height=H, width=W, clip=CLIP, hidden=16, depth=1))
    cddm = CDDMReceiver(rx.jscc, prior, rx.snr_grid_db, rx.error_var_table, steps=2)
    bundle = DecoderBundle(prior, {K: rx.jscc}, {K: cddm}, {K: 0.0}, flow=rx.flow, flow_steps=3)
    bundle.save(tmp_path / "b")
    back = load_bundle(tmp_path / "b")
    assert back.flow is not None and back.flow_steps == 3
    for name, p in rx.flow.state_dict().items():
        assert torch.equal(back.flow.state_dict()[name], p)
    codec = make_codec("jscc+flow", (H, W), checkpoint=tmp_path / "b")
    assert codec.receiver.steps == 3
    # A bundle without a flow loads for the other receivers and names what is missing.
    DecoderBundle(prior, {K: rx.jscc}, {K: cddm}, {K: 0.0}).save(tmp_path / "c")
    with pytest.raises(ValueError, match="no flow prior"):
        make_codec("jscc+flow", (H, W), checkpoint=tmp_path / "c")
    make_codec("jscc+cddm", (H, W), checkpoint=tmp_path / "c")


# --- training data -------------------------------------------------------------------


@pytest.mark.parametrize("mode, per_world", [("distributed", 4), ("centralized", 5), ("hybrid", 5)])
def test_payload_maps_are_what_each_mode_puts_on_the_air(mode, per_world):
    from agentcomm.envs import make_vec
    from agentcomm.policies.receiver_training import _payloads, collect_payload_maps

    data = collect_payload_maps(
        "SearchRescue-v0", 3, 5, seed=1, actor="expert", comm={"mode": mode}
    )
    assert data.logodds.shape == (5 * 3 * per_world, 16, 16) == data.truth.shape
    # Every map holds the true victims of its world (at most 3, none after all rescues).
    assert int(data.truth.flatten(1).sum(1).max()) <= 3
    world = make_vec("SearchRescue-v0", num_envs=3, seed=1, comm={"mode": mode})
    world.reset(seed=1)
    from agentcomm.envs.experts import expert_actions

    world.step(expert_actions(world))
    maps, worlds = _payloads(world)
    store = world.beliefs
    # Peers under "latest" fusion and uplinks send the own evidence; the centre its map.
    assert torch.equal(maps[:12], store.local.reshape(12, 16, 16).float())
    assert worlds[:12].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    if mode != "distributed":
        assert torch.equal(maps[12:], store.centre_payload().float())
        assert worlds[12:].tolist() == [0, 1, 2]
