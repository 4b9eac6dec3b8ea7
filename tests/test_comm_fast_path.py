"""The exchange's fast path (:meth:`CommStack.send` on block fading with a cell codec)
against the general one (:meth:`CommStack._send_general`): the same outcomes, accounting
and estimates bit for bit, and the same random draws, for the cell codecs on block-fading
channels; and the codec helpers it relies on against the codecs' own encode and decode."""

from __future__ import annotations

import pytest
import torch

from agentcomm.codecs import make_codec
from agentcomm.codecs.base import Received
from agentcomm.codecs.quantized import UniformQuantizer
from agentcomm.envs.comm import CommStack
from agentcomm.envs.config import WorldConfig
from agentcomm.topology.links import _link_snr_db

_FIELDS = (
    "header_ok",
    "payload_ok",
    "channel_uses",
    "bits",
    "intent_bits",
    "bits_delivered",
    "capacity_bits",
    "estimate",
    "informative",
)


def _messages(m: int, budget: int, seed: int, goal: bool, shape: tuple[int, ...]):
    gen = torch.Generator().manual_seed(seed)
    k = torch.randint(1, budget + 1, (m,), generator=gen)
    snr = torch.rand(m, generator=gen) * 40 - 10
    source = (torch.rand((m + 3, *shape), generator=gen) * 14 - 7).clamp(-6, 6)
    rows = torch.randint(0, m + 3, (m,), generator=gen)
    cells = None
    if goal:
        h, w = shape
        cells = torch.stack(
            [torch.randint(0, h, (m,), generator=gen), torch.randint(0, w, (m,), generator=gen)],
            1,
        ).float()
    return k, snr, source, rows, cells


@pytest.mark.parametrize("codec", ["quantized", "topk"])
@pytest.mark.parametrize("channel", ["rayleigh_block", "awgn", "rician"])
@pytest.mark.parametrize("erasure", [0.0, 0.3])
@pytest.mark.parametrize("intents", [1, 4])
def test_fast_exchange_is_send_bit_for_bit(codec, channel, erasure, intents):
    cfg = WorldConfig.from_dict(
        {
            "comm": {"codec": codec, "budget": 40, "intent_bits": 5},
            "channel": {"name": channel, "erasure_prob": erasure},
        }
    )
    stack = CommStack(cfg, (16, 16), torch.device("cpu"))
    assert stack.fast
    for seed, m, goal in [(0, 1, True), (1, 7, False), (2, 300, True), (3, 33, True)]:
        k, snr, source, rows, goals = _messages(m, 40, seed, goal, (16, 16))
        idx = torch.arange(m)
        prior = -1.25
        g_fast, g_ref = (torch.Generator().manual_seed(seed + 100) for _ in range(2))
        fast = stack.send(
            idx, idx, idx, k, snr, (source, rows), prior, g_fast, intents=intents, goal=goals
        )
        ref = stack._send_general(
            idx, idx, idx, k, snr, source[rows], prior, g_ref, intents=intents, intent=goals
        )
        assert fast.cells is not None
        for name in _FIELDS:
            assert torch.equal(getattr(fast, name), getattr(ref, name)), (name, seed)
        assert torch.equal(g_fast.get_state(), g_ref.get_state())


@pytest.mark.parametrize("shape", [None, (16, 16)])
def test_fast_exchange_without_payload_is_send(shape):
    # Intents only: no codec at all, or a codec and no payload this time.
    cfg = WorldConfig.from_dict({"comm": {"budget": 9, "header_rate": 1.5}})
    stack = CommStack(cfg, shape, torch.device("cpu"))
    k = torch.arange(1, 10).repeat(5)
    snr = torch.linspace(-5, 25, k.shape[0])
    idx = torch.arange(k.shape[0])
    fast = stack.send(idx, idx, idx, k, snr, None, 0.0, torch.Generator().manual_seed(1))
    ref = stack._send_general(idx, idx, idx, k, snr, None, 0.0, torch.Generator().manual_seed(1))
    for name in _FIELDS:
        assert torch.equal(getattr(fast, name), getattr(ref, name)), name


def test_vector_payloads_take_the_fast_path_too():
    # Target tracking's [T, 8] payloads in [-1, 1], no goals.
    cfg = WorldConfig.from_dict({"comm": {"budget": 64, "fusion": "ci"}})
    stack = CommStack(cfg, (2, 8), torch.device("cpu"))
    k, snr, source, rows, _ = _messages(50, 64, 5, False, (2, 8))
    source = source / 7
    idx = torch.arange(50)
    fast = stack.send(idx, idx, idx, k, snr, source[rows], 0.0, torch.Generator())
    ref = stack._send_general(idx, idx, idx, k, snr, source[rows], 0.0, torch.Generator())
    for name in _FIELDS:
        assert torch.equal(getattr(fast, name), getattr(ref, name)), name


def test_non_block_channels_and_analog_codecs_take_the_general_path():
    for comm, channel in [({"codec": "quantized"}, "rayleigh_fast"), ({"codec": "dct"}, "awgn")]:
        cfg = WorldConfig.from_dict({"comm": comm, "channel": {"name": channel}})
        assert not CommStack(cfg, (16, 16), torch.device("cpu")).fast


@pytest.mark.parametrize(
    ("bits", "value_range"), [(1, (-1.0, 1.0)), (4, (-6.0, 6.0)), (7, (-4.4, 3.3)), (16, (-9, 2))]
)
def test_reconstruct_is_quantize_then_dequantize(bits, value_range):
    q = UniformQuantizer(bits, value_range)
    lo, hi = value_range
    gen = torch.Generator().manual_seed(bits)
    values = torch.rand(100_000, generator=gen, dtype=torch.float64) * 1.4 * (hi - lo) + lo
    values = values - 0.2 * (hi - lo)
    # Every cell boundary and its float32 neighbours, the range ends, zero and infinities.
    edges = (lo + torch.arange(q.levels + 1, dtype=torch.float64) * q.step).float()
    near = torch.cat([edges, edges.nextafter(edges - 1), edges.nextafter(edges + 1)])
    special = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), 1e30, -1e30])
    for v in (torch.cat([values.float(), near, special]), values):
        assert torch.equal(q.reconstruct(v), q.dequantize(q.quantize(v), v.dtype))


@pytest.mark.parametrize("codec", ["quantized", "topk"])
def test_encode_cells_matches_encode_and_decode(codec):
    c = make_codec(codec, (8, 8), range=(-4.0, 4.0))
    gen = torch.Generator().manual_seed(0)
    belief = (torch.randn(40, 8, 8, generator=gen) * 2).clamp(-4, 4)
    goal = torch.randint(0, 8, (40, 2), generator=gen).float()
    budget = torch.randint(1, 40, (40,), generator=gen)
    prior = 0.5
    msg = c.encode(belief, budget, goal, prior=prior)
    count, bits, uses = c.cell_plan(budget)
    assert torch.equal(count, msg.context["count"])
    assert torch.equal(bits, msg.bits) and torch.equal(uses, msg.channel_uses)
    cells, levels = c.encode_cells(belief, torch.arange(40), int(count.max()), goal, prior)
    # A delivered message decodes to the levels on its first `count` cells, the prior elsewhere.
    delivered = torch.ones(40, dtype=torch.bool)
    decoded = c.decode(Received(msg, delivered)).reshape(40, -1)
    expected = torch.full((40, 64), prior)
    sent = torch.arange(cells.shape[1]) < count.unsqueeze(1)
    expected.scatter_(1, cells, torch.where(sent, levels, prior))
    assert torch.equal(decoded, expected)


@pytest.mark.parametrize("codec", ["raw", "linear", "dct"])
def test_cell_plan_only_for_cell_codecs(codec):
    c = make_codec(codec, (8, 8))
    assert not c.cell_codec
    with pytest.raises(NotImplementedError, match="not a cell codec"):
        c.cell_plan(torch.tensor([8]))


@pytest.mark.parametrize("n", [2, 4, 7, 16])
@pytest.mark.parametrize("b", [1, 3, 1024])
def test_one_pass_links_are_the_path_loss_of_each_link(n, b):
    # Without shadowing, peers and the fusion centre share one path-loss pass.
    cfg = WorldConfig.from_dict({"num_agents": n})
    stack = CommStack(cfg, (16, 16), torch.device("cpu"))
    pos = torch.rand(b, n, 2, generator=torch.Generator().manual_seed(b + n)) * 16
    fc = torch.tensor([8.0, 8.0])
    ch, scale = cfg.channel, cfg.channel.cell_size_m
    peer, fc_snr = _link_snr_db(
        pos, fc, stack.pathloss._snr_db, stack._p_tx, stack._noise, None, False, scale
    )
    dist = (pos.unsqueeze(2) - pos.unsqueeze(1)).norm(dim=-1) * scale
    expected = stack.pathloss.snr_db(dist, ch.tx_power_dbm, ch.noise_floor_dbm)
    expected = expected.masked_fill(torch.eye(n, dtype=torch.bool), -torch.inf)
    fc_dist = (pos - fc).norm(dim=-1) * scale
    assert torch.equal(peer, expected)
    assert torch.equal(fc_snr, stack.pathloss.snr_db(fc_dist, ch.tx_power_dbm, ch.noise_floor_dbm))
