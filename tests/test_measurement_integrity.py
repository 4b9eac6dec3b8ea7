"""Measurement integrity of one exchange: delivery is decided per message on that
message's own fade, header and payload share one fade under block fading, and the
accounting holds every channel use and never delivers more than the uses could carry."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import agentcomm
from agentcomm.channels import make_channel
from agentcomm.channels.capacity import rayleigh_outage_probability
from agentcomm.codecs import make_codec, transmit
from agentcomm.envs.comm import CommStack
from agentcomm.envs.config import WorldConfig
from agentcomm.envs.experts import expert_actions


def _stack(**comm) -> CommStack:
    cfg = WorldConfig.from_dict({"comm": comm})
    return CommStack(cfg, (16, 16), torch.device("cpu"))


def _header_only(stack: CommStack, snr_db: torch.Tensor, budget: int, seed: int):
    m = snr_db.shape[0]
    idx = torch.arange(m)
    return stack.send(
        idx,
        idx * 0,
        idx * 0 + 1,
        torch.full((m,), budget, dtype=torch.long),
        snr_db,
        None,
        0.0,
        torch.Generator().manual_seed(seed),
    )


# --------------------------------------------------------------------------- delivery


@pytest.mark.parametrize("snr_db", [6.0, 8.0, 12.0])
def test_header_delivery_matches_the_outage_rule_per_message(snr_db: float) -> None:
    # Budget 4 at 2 bits/use: two 4-bit intent coordinates, 8 bits on 4 uses (rate 2).
    stack = _stack(header_rate=2.0, intent_bits=6)
    m = 20_000
    ex = _header_only(stack, torch.full((m,), snr_db), budget=4, seed=1)
    assert int(ex.channel_uses[0]) == 4 and int(ex.bits[0]) == 8
    expected = 1.0 - rayleigh_outage_probability(2.0, snr_db)
    got = ex.header_ok.double().mean().item()
    # 5 binomial standard errors.
    assert abs(got - expected) < 5 * math.sqrt(expected * (1 - expected) / m), (got, expected)


def test_a_message_outcome_does_not_depend_on_the_rest_of_the_batch() -> None:
    stack = _stack(header_rate=2.0)
    m = 10_000
    alone = _header_only(stack, torch.full((m,), -5.0), budget=4, seed=2).header_ok
    mixed_snr = torch.cat([torch.full((m,), -5.0), torch.full((m,), 30.0)])
    mixed = _header_only(stack, mixed_snr, budget=4, seed=2).header_ok[:m]
    expected = 1.0 - rayleigh_outage_probability(2.0, -5.0)  # ~1e-4
    assert alone.double().mean().item() < expected + 0.002
    assert mixed.double().mean().item() < expected + 0.002
    # Same generator, same draws for the first m messages: identical outcomes.
    assert torch.equal(alone, mixed)


def test_header_and_payload_share_one_fade_under_block_fading() -> None:
    # On one fade, a payload at a lower rate than its header cannot fail while the header
    # arrives (with independent fades it does, in about a fifth of the messages here).
    stack = _stack(header_rate=2.0, codec="quantized", codec_params={"rate": 1.0})
    m = 4_000
    belief = torch.randn(m, 16, 16).clamp(-4, 4)
    idx = torch.arange(m)
    ex = stack.send(
        idx,
        idx * 0,
        idx * 0 + 1,
        torch.full((m,), 40, dtype=torch.long),
        torch.full((m,), 3.0),
        belief,
        0.0,
        torch.Generator().manual_seed(3),
    )
    # Header rate 2 > payload rate 1 on one fade: header ok => payload ok.
    assert bool(ex.header_ok.any()) and bool((~ex.payload_ok).any())
    assert not bool((ex.header_ok & ~ex.payload_ok).any())


# --------------------------------------------------------------------------- accounting

_CODECS = ["quantized", "topk", "linear", "dct"]


@settings(max_examples=60, deadline=None)
@given(
    codec=st.sampled_from(_CODECS),
    budget=st.integers(1, 300),
    snr_db=st.floats(-10.0, 30.0),
    channel=st.sampled_from(["awgn", "rayleigh_block", "rayleigh_fast", "rician"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_delivered_bits_never_exceed_the_capacity_of_the_uses_spent(
    codec: str, budget: int, snr_db: float, channel: str, seed: int
) -> None:
    params = {"range": (-4.0, 4.0)} if codec in ("quantized", "topk") else {}
    c = make_codec(codec, (8, 8), **params)
    ch = make_channel(channel, **({"k_factor": 4.0} if channel == "rician" else {}))
    belief = torch.randn(16, 8, 8, generator=torch.Generator().manual_seed(seed)).clamp(-4, 4)
    tx = transmit(c, belief, budget, ch, snr_db, torch.Generator().manual_seed(seed))
    assert bool((tx.channel_uses <= budget).all())
    assert bool((tx.bits_delivered <= tx.capacity_bits + 1e-9).all()), (
        tx.bits_delivered,
        tx.capacity_bits,
    )
    assert bool((tx.bits_delivered <= tx.bits + 1e-9).all())


def test_side_information_costs_channel_uses() -> None:
    # Budget 7 at 3 dB: 16 free side bits used to count as delivered against ~11 bits of
    # capacity.
    c = make_codec("linear", (8, 8))
    tx = transmit(c, torch.randn(512, 8, 8), 7, make_channel("awgn"), 3.0, torch.Generator())
    assert bool((tx.bits_delivered <= tx.capacity_bits + 1e-9).all())
    assert bool((tx.channel_uses <= 7).all())


def test_analog_messages_report_the_capacity_of_the_uses_they_spent() -> None:
    c = make_codec("linear", (8, 8))
    tx = transmit(c, torch.randn(64, 8, 8), 32, make_channel("awgn"), 10.0, torch.Generator())
    assert bool((tx.bits > 0).all())
    # AWGN: capacity log2(1 + 10) per use, over every use the message occupied.
    per_use = math.log2(1 + 10.0)
    assert torch.allclose(tx.capacity_bits, tx.channel_uses.double() * per_use)


def test_every_channel_use_is_on_the_axis_including_downlinks() -> None:
    world = agentcomm.make_vec(
        "SearchRescue-v0", num_envs=16, seed=0, comm={"mode": "centralized", "budget": 64}
    )
    world.reset(seed=0)
    parts = ("peer", "uplink", "downlink")
    for _ in range(5):
        _, _, term, trunc, info = world.step(expert_actions(world))
        for key in ("channel_uses", "bits"):
            total = sum(info[f"{p}_{key}"] for p in parts)
            assert torch.allclose(info[key].double(), total.double()), key
        assert bool((info["downlink_channel_uses"].sum(1) == info["fc_channel_uses"]).all())
        done = term | trunc
        if bool(done.any()):
            world.reset_at(done)
    assert int(info["downlink_channel_uses"].sum()) > 0
    assert bool((info["bits_delivered"] <= info["capacity_bits"] + 1e-3).all())
