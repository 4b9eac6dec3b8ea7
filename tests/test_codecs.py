"""Specification of the belief codecs: accounting, delivery rules, reconstruction."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from agentcomm.channels import (
    AWGN,
    RayleighBlockFading,
    RayleighFastFading,
    rayleigh_ergodic_capacity,
    rayleigh_outage_probability,
)
from agentcomm.codecs import (
    Codec,
    DCTCodec,
    LinearAnalogCodec,
    QuantizedCodec,
    RawCodec,
    TopKCodec,
    available_codecs,
    dct_matrix,
    diagonal_order,
    intent_order,
    make_codec,
    quantize_scale,
    register_codec,
    transmit,
)
from agentcomm.codecs import registry as codec_registry

ALL = ("raw", "quantized", "topk", "dct", "linear")


def smooth_maps(m: int, h: int, w: int, generator: torch.Generator) -> torch.Tensor:
    """``[M, H, W]`` log-odds maps made of two Gaussian blobs each, values in about [-6, 6]."""
    rows = torch.arange(h, dtype=torch.float32).view(1, h, 1)
    cols = torch.arange(w, dtype=torch.float32).view(1, 1, w)
    out = torch.zeros(m, h, w)
    for _ in range(2):
        centre = torch.rand(m, 2, generator=generator) * torch.tensor([h - 1.0, w - 1.0])
        amp = (torch.rand(m, generator=generator) * 12 - 6).view(m, 1, 1)
        width = (1.5 + 2 * torch.rand(m, generator=generator)).view(m, 1, 1)
        d2 = (rows - centre[:, 0].view(m, 1, 1)) ** 2 + (cols - centre[:, 1].view(m, 1, 1)) ** 2
        out = out + amp * torch.exp(-d2 / (2 * width**2))
    return out


def mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).square().mean())


# --------------------------------------------------------------------------- accounting
BUDGETS = torch.tensor([1, 2, 3, 5, 7, 8, 13, 31, 32, 33, 100])


@pytest.mark.parametrize("rate", [2.0, 0.7, 1.5, 0.29])
@pytest.mark.parametrize("bpv", [1, 4, 7])
def test_quantized_accounting(rate, bpv, generator):
    codec = QuantizedCodec((8, 8), bits_per_value=bpv, rate=rate)
    belief = torch.randn(len(BUDGETS), 8, 8, generator=generator)
    msg = codec.encode(belief, BUDGETS)
    r = Fraction(str(rate))
    for k, bits, uses in zip(BUDGETS.tolist(), msg.bits.tolist(), msg.channel_uses.tolist()):
        sent = min(64, math.floor(r * k) // bpv)
        assert bits == sent * bpv <= r * k
        assert uses == math.ceil(Fraction(sent * bpv) / r) <= k
    assert msg.side_bits.eq(0).all()


@pytest.mark.parametrize("rate", [2.0, 0.7, 3.0])
@pytest.mark.parametrize(("shape", "index_bits"), [((8, 8), 6), ((5, 5), 5), ((1,), 0)])
def test_topk_accounting(rate, shape, index_bits, generator):
    codec = TopKCodec(shape, value_bits=4, rate=rate)
    assert codec.index_bits == index_bits == math.ceil(math.log2(math.prod(shape)))
    belief = torch.randn(len(BUDGETS), *shape, generator=generator)
    msg = codec.encode(belief, BUDGETS)
    r, n = Fraction(str(rate)), math.prod(shape)
    for k, bits, uses in zip(BUDGETS.tolist(), msg.bits.tolist(), msg.channel_uses.tolist()):
        big_k = min(n, math.floor(r * k) // (index_bits + 4))
        assert bits == big_k * (index_bits + 4) <= r * k
        assert uses == math.ceil(Fraction(bits) / r) <= k


@pytest.mark.parametrize("name", ["linear", "dct"])
@pytest.mark.parametrize("shape", [(8, 8), (5, 5), (7,)])
def test_analog_accounting_and_power(name, shape, generator):
    codec = make_codec(name, shape, scale_bits=12)
    n = math.prod(shape)
    belief = 3 * torch.randn(len(BUDGETS), *shape, generator=generator)
    msg = codec.encode(belief, BUDGETS, prior=0.5)
    # 12 side bits at 2 bits/use take 6 uses of the budget; the symbols get the rest, and a
    # budget of 6 or less sends nothing at all.
    symbol_uses = [math.ceil(min(n, 2 * max(k - 6, 0)) / 2) for k in BUDGETS.tolist()]
    expected = [u + 6 if u > 0 else 0 for u in symbol_uses]
    assert msg.channel_uses.tolist() == expected
    assert (msg.channel_uses <= BUDGETS).all()
    sent = msg.channel_uses > 0
    assert msg.bits.eq(0).all()
    assert msg.side_bits[sent].eq(12).all() and msg.side_bits[~sent].eq(0).all()
    assert msg.side_uses[sent].eq(6).all() and msg.side_uses[~sent].eq(0).all()
    # Unit average energy over the symbols' uses, up to the scale quantizer's round-up
    # (grid factor 2**(48/4095) for 12 bits), never above 1; symbols past the end are zero.
    energy = msg.symbols.abs().square()
    uses = msg.channel_uses - msg.side_uses
    used = torch.arange(msg.symbols.shape[1]) < uses.unsqueeze(1)
    per_use = (energy * used).sum(1)[sent] / uses[sent]
    assert (per_use <= 1 + 1e-6).all()
    assert (per_use >= 2 ** (-2 * 48 / 4095) - 1e-6).all()
    assert energy[~used].eq(0).all()


def test_raw_accounting_and_exact_round_trip(generator):
    codec = RawCodec((5, 5))
    belief = torch.randn(4, 5, 5, generator=generator)
    state = generator.get_state()
    tx = transmit(codec, belief, 1, RayleighBlockFading(), -20.0, generator, prior=3.0)
    assert torch.equal(generator.get_state(), state), "the raw codec must not draw randomness"
    assert torch.equal(tx.estimate, belief)
    assert tx.delivered.all()
    assert tx.bits.eq(32 * 25).all() and tx.channel_uses.eq(13).all()  # ignores the budget of 1
    assert torch.allclose(tx.bandwidth_ratio, torch.full((4,), 13 / 25, dtype=torch.float64))


def test_quantize_scale_rounds_up_on_the_log_grid():
    rms = torch.tensor([0.0, 1e-9, 0.3, 1.0, 7.0, 1e6], dtype=torch.float64)
    scale = quantize_scale(rms, 16)
    step = 48 / (2**16 - 1)
    assert (scale >= rms).all()
    assert (scale[2:] <= rms[2:] * 2**step * (1 + 1e-12)).all()
    index = (torch.log2(scale) + 24) / step
    assert torch.allclose(index, index.round(), atol=1e-6)
    with pytest.raises(ValueError, match="rms"):
        quantize_scale(torch.tensor([2.0**25]), 16)


# --------------------------------------------------------------------------- digital
def test_quantized_error_within_half_step_and_unsent_is_prior(generator):
    codec = QuantizedCodec((6, 6), bits_per_value=5, rate=2.0, range=(-4.0, 4.0))
    belief = (torch.rand(3, 6, 6, generator=generator) * 8 - 4).clamp(-4, 4)
    prior = torch.randn(3, 6, 6, generator=generator)
    tx = transmit(codec, belief, 20, AWGN(), 40.0, generator, prior=prior)
    sent = 2 * 20 // 5  # 8 cells, row-major
    assert tx.delivered.all()
    err = (tx.estimate - belief).reshape(3, -1)
    assert (err[:, :sent].abs() <= codec.quantizer.step / 2 + 1e-6).all()
    assert torch.equal(tx.estimate.reshape(3, -1)[:, sent:], prior.reshape(3, -1)[:, sent:])


def test_topk_sends_largest_deviations(generator):
    codec = TopKCodec((4, 4), value_bits=8, rate=3.0, range=(-8.0, 8.0))
    prior = torch.full((1, 4, 4), 1.0)
    belief = prior.clone()
    belief[0, 0, 3], belief[0, 2, 1], belief[0, 3, 3] = -5.0, 6.0, 1.5  # deviations 6, 5, 0.5
    tx = transmit(codec, belief, 8, AWGN(), 40.0, generator, prior=prior)  # K = 24 // 12 = 2
    changed = (tx.estimate != prior).reshape(-1).nonzero().flatten().tolist()
    assert changed == [3, 9]
    assert tx.bits.item() == 24 and tx.channel_uses.item() == 8
    assert torch.allclose(tx.estimate[0, 0, 3], torch.tensor(-5.0), atol=codec.quantizer.step / 2)


def _threshold_codec(name: str, rate: float) -> Codec:
    # (4, 4) grid, 4-bit values: with k = 8 both codecs fill exactly rate * k bits.
    if name == "quantized":
        return QuantizedCodec((4, 4), bits_per_value=4, rate=rate)
    return TopKCodec((4, 4), value_bits=4, rate=rate)


@pytest.mark.parametrize("name", ["quantized", "topk"])
@pytest.mark.parametrize("rate", [1.0, 2.0, 3.0])
def test_digital_awgn_delivers_iff_rate_below_capacity(name, rate, generator):
    codec = _threshold_codec(name, rate)
    belief = torch.randn(2, 4, 4, generator=generator)
    threshold_db = 10 * math.log10(2**rate - 1)
    for offset, expected in ((-0.01, False), (0.01, True)):
        tx = transmit(codec, belief, 8, AWGN(), threshold_db + offset, generator, prior=-1.0)
        assert tx.bits.eq(int(rate * 8)).all() and tx.channel_uses.eq(8).all()
        assert tx.delivered.eq(expected).all()
        if not expected:
            assert tx.estimate.eq(-1.0).all()
            assert tx.bits.gt(0).all(), "bits put on the channel count even in outage"


@pytest.mark.parametrize("name", ["quantized", "topk"])
def test_rayleigh_block_delivery_matches_outage_probability(name, generator):
    # 20000 messages at 10 dB, rate 2: P_out = 1 - exp(-3/10) = 0.259; the delivered fraction
    # must match 1 - P_out within 4 binomial standard deviations (0.0124).
    m, snr_db, rate = 20_000, 10.0, 2.0
    codec = _threshold_codec(name, rate)
    belief = torch.randn(m, 4, 4, generator=generator)
    tx = transmit(codec, belief, 8, RayleighBlockFading(), snr_db, generator)
    p = 1 - rayleigh_outage_probability(rate, snr_db)
    tol = 4 * math.sqrt(p * (1 - p) / m)
    assert abs(tx.delivered.double().mean().item() - p) < tol


def test_rayleigh_fast_fading_codeword_sees_mean_mutual_information(generator):
    # A 128-use codeword over fast fading averages log2(1 + |h|^2 SNR) over its uses: rates
    # below the ergodic capacity (2.90 bits at 10 dB) almost always arrive, rates above
    # almost never. The per-use information has std ~1.4 bits, i.e. 0.12 over 128 uses.
    snr_db = 10.0
    capacity = rayleigh_ergodic_capacity(snr_db)
    assert 2.85 < capacity < 2.95
    codec_lo = QuantizedCodec((16, 16), bits_per_value=4, rate=2.4)
    codec_hi = QuantizedCodec((16, 16), bits_per_value=4, rate=3.4)
    belief = torch.randn(400, 16, 16, generator=generator)
    lo = transmit(codec_lo, belief, 128, RayleighFastFading(), snr_db, generator)
    hi = transmit(codec_hi, belief, 128, RayleighFastFading(), snr_db, generator)
    assert lo.delivered.double().mean() > 0.99
    assert hi.delivered.double().mean() < 0.01


def test_budget_too_small_sends_nothing(generator):
    codec = TopKCodec((8, 8), value_bits=4, rate=2.0)  # 10 bits a cell, 2 bits a use
    prior = torch.randn(3, 8, 8, generator=generator)
    tx = transmit(codec, prior + 1, torch.tensor([1, 4, 5]), AWGN(), 30.0, generator, prior=prior)
    assert tx.bits.tolist() == [0, 0, 10] and tx.channel_uses.tolist() == [0, 0, 5]
    assert tx.delivered.tolist() == [False, False, True]
    assert torch.equal(tx.estimate[:2], prior[:2])


# --------------------------------------------------------------------------- analog
def _analog_mse(name: str, belief: torch.Tensor, k: int, channel, snr_db: float) -> float:
    # Common random numbers: every point of a sweep draws from the same seed (h first), so
    # a comparison is not swamped by which messages hit a deep fade.
    codec = make_codec(name, tuple(belief.shape[1:]))
    tx = transmit(codec, belief, k, channel, snr_db, torch.Generator().manual_seed(3))
    return mse(tx.estimate, belief)


@pytest.mark.parametrize("name", ["linear", "dct"])
@pytest.mark.parametrize("channel", [AWGN(), RayleighBlockFading()])
def test_analog_mse_falls_with_snr(name, channel, generator):
    belief = smooth_maps(128, 8, 8, generator)
    by_snr = [_analog_mse(name, belief, 16, channel, s) for s in (-5.0, 5.0, 15.0, 25.0)]
    assert all(a > b for a, b in zip(by_snr, by_snr[1:])), by_snr


@pytest.mark.parametrize("name", ["linear", "dct"])
def test_analog_mse_falls_with_budget(name, generator):
    # With unit average power the noise adds about E_residual * N0 / (|h|^2 + N0) whatever k
    # is, so k only buys truncation error. On AWGN at 40 dB that term dominates the noise
    # even for the DCT's small high-frequency coefficients (at 20 dB its curve is flat past
    # k = 16; over block fading a few deep fades, whose noise draws change with k, dominate
    # the sample mean and hide those small gains).
    belief = smooth_maps(128, 8, 8, generator)
    by_k = [_analog_mse(name, belief, k, AWGN(), 40.0) for k in (4, 8, 16, 32)]
    assert all(a > b for a, b in zip(by_k, by_k[1:])), by_k


@pytest.mark.parametrize("name", ["linear", "dct"])
@pytest.mark.parametrize("channel", [AWGN(), RayleighBlockFading(), RayleighFastFading()])
def test_analog_full_budget_high_snr_reconstructs(name, channel, generator):
    codec = make_codec(name, (5, 5))
    belief = smooth_maps(16, 5, 5, generator)
    prior = torch.randn(16, 5, 5, generator=generator)
    # 13 uses carry the 25 values, 4 more the 8-bit scale at 2 bits/use.
    tx = transmit(codec, belief, 17, channel, 80.0, generator, prior=prior)
    assert tx.channel_uses.eq(17).all()
    rel = (tx.estimate - belief).norm() / belief.norm()
    assert rel < 1e-3, rel


@pytest.mark.parametrize("name", ["linear", "dct"])
def test_analog_estimate_falls_back_to_prior_at_low_snr(name, generator):
    codec = make_codec(name, (8, 8))
    belief = smooth_maps(32, 8, 8, generator)
    prior = torch.randn(32, 8, 8, generator=generator)
    tx = transmit(codec, belief, 32, AWGN(), -60.0, generator, prior=prior)
    # MMSE shrinks each symbol by 1/(1 + N0) = 1e-6; what remains is ~1e-3 of the residual.
    assert (tx.estimate - prior).norm() < 0.01 * (belief - prior).norm()


def test_dct_matrix_and_order():
    d = dct_matrix(6)
    assert torch.allclose(d @ d.T, torch.eye(6, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(d[0], torch.full((6,), 1 / math.sqrt(6), dtype=torch.float64))
    order = diagonal_order(3, 4)
    # (u, v) by u + v, then u: (0,0) (0,1) (1,0) (0,2) (1,1) (2,0) (0,3) (1,2) (2,1) ...
    assert order.tolist()[:9] == [0, 1, 4, 2, 5, 8, 3, 6, 9]
    assert sorted(order.tolist()) == list(range(12))


def test_dct_beats_linear_on_smooth_maps_at_low_bandwidth(generator):
    belief = smooth_maps(128, 16, 16, generator)
    errors = {
        name: mse(
            transmit(make_codec(name, (16, 16)), belief, 16, AWGN(), 20.0, generator).estimate,
            belief,
        )
        for name in ("linear", "dct")
    }
    # At k/n = 1/16, 32 low-frequency coefficients hold most of a blob map's energy,
    # while 32 row-major cells cover an eighth of the grid.
    assert errors["dct"] < 0.5 * errors["linear"], errors


def test_float64_beliefs_keep_their_dtype(generator):
    belief = torch.randn(3, 7, dtype=torch.float64, generator=generator)
    for name in ALL:
        tx = transmit(make_codec(name, (7,)), belief, 4, AWGN(), 10.0, generator)
        assert tx.estimate.dtype == torch.float64 and tx.estimate.shape == (3, 7)


# --------------------------------------------------------------------------- intent
def test_intent_order_goal_first_permutation_and_row_major_ties():
    intent = torch.tensor([[2.0, 2.0], [0.0, 4.0], [-3.0, 1.2]])
    order = intent_order((5, 5), intent)
    assert order.shape == (3, 25)
    for row in order:
        assert sorted(row.tolist()) == list(range(25))
    assert order[0, :5].tolist() == [12, 7, 11, 13, 17]  # four ties at distance 1, row-major
    assert order[1, 0].item() == 4  # the corner (0, 4)
    assert order[2, 0].item() == 1  # off the grid: nearest cell is (0, 1)


def test_quantized_with_intent_sends_the_goal_region_first(generator):
    codec = QuantizedCodec((5, 5), bits_per_value=4, rate=2.0)
    belief = torch.rand(1, 5, 5, generator=generator) * 4 - 2
    intent = torch.tensor([[4.0, 0.0]])
    tx = transmit(codec, belief, 10, AWGN(), 30.0, generator, intent=intent)  # 5 values
    changed = (tx.estimate != 0).reshape(-1).nonzero().flatten().tolist()
    assert changed == sorted(intent_order((5, 5), intent)[0, :5].tolist())
    assert 20 in changed  # the goal cell (4, 0)


def test_topk_intent_weight_prefers_cells_near_the_goal(generator):
    codec = TopKCodec((8, 8), value_bits=4, rate=2.0, intent_scale=1.0)
    belief = torch.full((1, 8, 8), 2.0)
    belief[0, 0, 0] = 3.0  # largest deviation, far from the goal
    tx = transmit(codec, belief, 5, AWGN(), 30.0, generator, intent=torch.tensor([[7.0, 7.0]]))
    assert tx.bits.item() == 10  # K = 1
    changed = (tx.estimate != 0).reshape(-1).nonzero().flatten().tolist()
    assert changed == [63]
    without = transmit(codec, belief, 5, AWGN(), 30.0, generator)
    assert (without.estimate != 0).reshape(-1).nonzero().flatten().tolist() == [0]


def test_linear_with_intent_sends_the_cells_nearest_the_goal(generator):
    codec = LinearAnalogCodec((8, 8))
    belief = smooth_maps(64, 8, 8, generator)
    intent = torch.tensor([[6.0, 1.0]]).expand(64, 2)
    # 4 uses for the 8-bit scale, 8 for 16 cells.
    tx = transmit(codec, belief, 12, AWGN(), 30.0, generator, intent=intent)
    order = intent_order((8, 8), intent)
    err = (tx.estimate - belief).reshape(64, -1)
    estimate = tx.estimate.reshape(64, -1)
    assert estimate.gather(1, order[:, 16:]).eq(0).all()  # the prior, untouched
    near, far = err.gather(1, order[:, :16]), err.gather(1, order[:, 16:])
    assert near.square().mean() < 0.01 * far.square().mean()


# --------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("channel", [AWGN(), RayleighBlockFading(), RayleighFastFading()])
def test_same_seed_same_transmission(name, channel):
    belief = smooth_maps(8, 6, 6, torch.Generator().manual_seed(5))
    budget = torch.tensor([3, 5, 7, 9, 11, 13, 18, 40])
    codec = make_codec(name, (6, 6))
    runs = [
        transmit(codec, belief, budget, channel, 6.0, torch.Generator().manual_seed(seed))
        for seed in (7, 7, 8)
    ]
    for field in ("estimate", "delivered", "channel_uses", "bits", "side_bits"):
        assert torch.equal(getattr(runs[0], field), getattr(runs[1], field)), field
    random = name in ("linear", "dct") or (name != "raw" and not isinstance(channel, AWGN))
    differs = not torch.equal(runs[0].estimate, runs[2].estimate)
    assert differs == random, "only noise or fading may change the outcome"


def test_per_message_snr(generator):
    codec = QuantizedCodec((4, 4), bits_per_value=4, rate=2.0)
    snr = torch.tensor([4.70, 4.85, 30.0, -10.0])  # threshold 4.771 dB
    tx = transmit(codec, torch.zeros(4, 4, 4), 8, AWGN(), snr, generator)
    assert tx.delivered.tolist() == [False, True, True, False]


# --------------------------------------------------------------------------- registry
def test_make_codec_builds_every_registered_codec():
    assert set(ALL) <= set(available_codecs())
    for name in ALL:
        codec = make_codec(name, (4, 4))
        assert codec.name == name and codec.source_shape == (4, 4) and codec.n == 16
    assert isinstance(make_codec("quantized", (4,), bits_per_value=3), QuantizedCodec)
    assert make_codec("quantized", (4,), bits_per_value=3).quantizer.bits == 3


def test_register_codec(monkeypatch):
    monkeypatch.setattr(codec_registry, "_REGISTRY", dict(codec_registry._REGISTRY))

    class Scaled(LinearAnalogCodec):
        name = "scaled"

    register_codec("scaled", Scaled)
    assert isinstance(make_codec("scaled", (3, 3)), Scaled)
    register_codec("lazy-dct", "agentcomm.codecs.dct:DCTCodec")
    assert isinstance(make_codec("lazy-dct", (3, 3)), DCTCodec)
    with pytest.raises(ValueError, match="already registered"):
        register_codec("scaled", Scaled)
    register_codec("scaled", DCTCodec, overwrite=True)
    assert isinstance(make_codec("scaled", (3, 3)), DCTCodec)
    with pytest.raises(ValueError, match="Codec subclass"):
        register_codec("bad", int)
    with pytest.raises(ValueError, match="module.path:ClassName"):
        register_codec("bad", "no_colon")
    register_codec("not-a-codec", "agentcomm.channels.awgn:AWGN")
    with pytest.raises(ValueError, match="not a Codec subclass"):
        make_codec("not-a-codec", (3,))
    with pytest.raises(ValueError, match="name"):
        register_codec("", Scaled)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: make_codec("jpeg", (4, 4)), r"codec='jpeg'.*'dct'.*'linear'.*'quantized'"),
        (lambda: make_codec("topk", (4, 4), bits_per_value=4), r"unknown parameter.*value_bits"),
        (lambda: make_codec("raw", (4, 0)), "source_shape"),
        (lambda: make_codec("raw", 16), "source_shape"),
        (lambda: QuantizedCodec((4,), bits_per_value=0), r"bits_per_value=0.*\[1, 32\]"),
        (lambda: QuantizedCodec((4,), bits_per_value=2.5), "bits_per_value=2.5"),
        (lambda: QuantizedCodec((4,), rate=0.0), "rate=0.0"),
        (lambda: QuantizedCodec((4,), range=(1.0, 1.0)), "range=.*lo < hi"),
        (lambda: QuantizedCodec((4,), range=3.0), "range=3.0"),
        (lambda: TopKCodec((4,), value_bits=0), "value_bits=0"),
        (lambda: TopKCodec((4,), intent_scale=-1.0), "intent_scale=-1.0"),
        (lambda: LinearAnalogCodec((4,), scale_bits=4), r"scale_bits=4.*\[8, 32\]"),
        (lambda: DCTCodec((2, 2, 2)), "source_shape=.*DCT"),
    ],
)
def test_bad_construction_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"belief": torch.zeros(2, 4, 5)}, r"belief has shape \(2, 4, 5\)"),
        ({"belief": torch.zeros(2, 4, 4, dtype=torch.int64)}, "belief has dtype torch.int64"),
        ({"belief": torch.full((2, 4, 4), float("nan"))}, "belief holds 32 non-finite"),
        ({"channel_uses": 0}, r"channel_uses=0 is out of range"),
        ({"channel_uses": -3}, r"channel_uses=-3"),
        ({"channel_uses": 2.5}, r"channel_uses=2.5"),
        ({"channel_uses": torch.tensor([4, 0])}, r"channel_uses holds 1 value\(s\) <= 0"),
        ({"channel_uses": torch.tensor([4, 4, 4])}, r"channel_uses has shape \(3,\)"),
        ({"channel_uses": torch.tensor([4.0, 4.0])}, "channel_uses has dtype torch.float32"),
        ({"intent": torch.zeros(2, 3)}, r"intent has shape \(2, 3\)"),
        ({"intent": torch.tensor([[0.0, float("nan")], [0, 0]])}, "intent holds 1 non-finite"),
        ({"prior": torch.zeros(3, 4, 4)}, r"prior has shape \(3, 4, 4\)"),
        ({"prior": float("nan")}, "prior=nan"),
        ({"snr_db": float("nan")}, "snr_db holds 1 non-finite"),
        ({"snr_db": torch.zeros(5)}, r"snr_db has shape \(5,\)"),
    ],
)
@pytest.mark.parametrize("name", ALL)
def test_bad_transmit_input_raises(name, kwargs, match, generator):
    args = {
        "belief": torch.zeros(2, 4, 4),
        "channel_uses": 4,
        "snr_db": 10.0,
        "intent": None,
        "prior": 0.0,
    } | kwargs
    with pytest.raises(ValueError, match=match):
        transmit(make_codec(name, (4, 4)), channel=AWGN(), generator=generator, **args)


def test_intent_needs_a_grid(generator):
    with pytest.raises(ValueError, match="intent.*source_shape=\\(8,\\)"):
        QuantizedCodec((8,)).encode(torch.zeros(1, 8), 4, intent=torch.zeros(1, 2))
    with pytest.raises(ValueError, match="source_shape"):
        intent_order((8,), torch.zeros(1, 2))
