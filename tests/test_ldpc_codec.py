"""The ``ldpc_qam`` codec: the quantized encoder delivered by the 5G LDPC + 16-QAM link
abstraction (a BLER table measured with the Sionna chain)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import agentcomm
from agentcomm.channels import AWGN, RayleighBlockFading, RayleighFastFading
from agentcomm.codecs import make_codec
from agentcomm.codecs.base import Codec
from agentcomm.codecs.ldpc import BLER_TABLE_PATH, BLERTable, LDPCQAMCodec, monotone_bler
from agentcomm.envs.config import WorldConfig
from agentcomm.envs.experts import expert_actions

SHAPE = (16, 16)
#: 2 bits per use: the capacity rule's AWGN threshold 10 log10(2^2 - 1).
THRESHOLD_DB = 10 * math.log10(3.0)


@pytest.fixture(scope="module")
def table() -> BLERTable:
    return BLERTable.load()


def _message(codec: Codec, m: int, budget: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    belief = torch.rand((m, *SHAPE), generator=gen) * 16 - 8
    return codec.encode(belief, budget)


def _within(delivered: int, m: int, p: float, z: float = 4.5) -> bool:
    """``delivered`` of ``m`` Bernoulli(``p``) draws lies within ``z`` standard errors."""
    return abs(delivered - m * p) <= z * math.sqrt(m * p * (1 - p)) + 1


def test_table_is_monotone_sane_and_documented(table):
    raw = BLERTable.load(BLER_TABLE_PATH).meta
    for key in ("mcs", "seed", "blocks_per_point", "sionna_version", "command", "wall_s"):
        assert key in raw
    assert raw["mcs"]["rate_bits_per_use"] == 2.0 and raw["mcs"]["num_iter"] >= 1
    # Every payload of budgets up to 256 uses at 2 bits per use (<= 512 bits) is in range.
    assert table.k_info[0] == 12 and table.k_info[-1] >= 512
    assert (np.diff(table.log_bler, axis=1) <= 1e-12).all()  # non-increasing in SNR
    snr01 = [table.snr_at(int(k), 0.1) for k in table.k_info]
    # No code of rate 2 beats the capacity threshold at BLER 0.1 at these lengths, and longer
    # blocks need less SNR (within the table's measurement noise).
    assert all(s > THRESHOLD_DB for s in snr01)
    assert all(b <= a + 0.3 for a, b in zip(snr01, snr01[1:]))
    assert snr01[-1] < snr01[0] - 1.0
    # Far below the threshold every block fails; far above every block decodes.
    k = torch.tensor(table.k_info, dtype=torch.float64)
    assert bool((table.bler(k, torch.full_like(k, -3.0)) > 0.99).all())
    assert bool((table.bler(k, torch.full_like(k, 25.0)) == 0).all())


def test_table_interpolates_log_bler_between_points(table):
    # On a stored k, the value at an SNR between two grid points is the geometric mean
    # of its neighbours at the midpoint (linear in dB of log BLER).
    k = torch.tensor([float(table.k_info[5])] * 3, dtype=torch.float64)
    i = int(np.argmin(np.abs(table.log_bler[5] - math.log10(0.3))))
    s = torch.tensor([table.snr_db[i], table.snr_db[i] + 0.025, table.snr_db[i + 1]])
    b = table.bler(k, s).tolist()
    assert b[1] == pytest.approx(math.sqrt(b[0] * b[2]), rel=1e-9)
    # Between two stored k, linear in log k: the geometric mean k gets the mean log BLER.
    k0, k1 = float(table.k_info[5]), float(table.k_info[6])
    snr = torch.full((3,), float(table.snr_db[i]), dtype=torch.float64)
    b = table.bler(torch.tensor([k0, math.sqrt(k0 * k1), k1], dtype=torch.float64), snr)
    assert float(b[1]) == pytest.approx(math.sqrt(float(b[0]) * float(b[2])), rel=1e-9)


def test_monotone_fit_pools_violators():
    fit = monotone_bler([10, 8, 9, 3, 0, 1], [10, 10, 10, 10, 10, 10])
    assert fit.tolist() == pytest.approx([1.0, 0.85, 0.85, 0.3, 0.05, 0.05])
    with pytest.raises(ValueError, match="errors <= blocks"):
        monotone_bler([3], [2])


def test_awgn_delivery_rate_matches_table(table):
    codec = make_codec("ldpc_qam", SHAPE)
    m, budget = 4000, 58  # 116 bits on 58 uses: between the table's 96- and 128-bit rows
    msg = _message(codec, m, budget)
    assert int(msg.bits[0]) == 116 and int(msg.channel_uses[0]) == 58
    for p_target in (0.5, 0.1):
        snr = table.snr_at(116, p_target)
        bler = float(table.bler(torch.tensor([116.0]), torch.tensor([snr])))
        rec = codec.deliver(msg, AWGN(), snr, torch.Generator().manual_seed(1))
        assert _within(int(rec.delivered.sum()), m, 1 - bler)
        assert bool((rec.bits <= rec.capacity_bits).all())


def test_delivers_a_subset_of_the_capacity_rule_on_the_same_fades(table):
    ldpc = make_codec("ldpc_qam", SHAPE)
    quant = make_codec("quantized", SHAPE)
    m = 3000
    gen = torch.Generator().manual_seed(3)
    budget = torch.randint(1, 129, (m,), generator=gen)
    belief = torch.rand((m, *SHAPE), generator=gen) * 16 - 8
    a, b = ldpc.encode(belief, budget), quant.encode(belief, budget)
    assert torch.equal(a.bits, b.bits) and torch.equal(a.channel_uses, b.channel_uses)
    assert torch.equal(a.payload["indices"], b.payload["indices"])
    channel = RayleighBlockFading()
    snr = torch.rand(m, generator=gen, dtype=torch.float64) * 30
    h = channel.generate((m, 1), gen, dtype=torch.complex128)
    ra = ldpc.deliver(a, channel, snr, torch.Generator().manual_seed(4), h)
    rb = quant.deliver(b, channel, snr, torch.Generator().manual_seed(4), h)
    assert torch.equal(ra.capacity_bits, rb.capacity_bits)
    assert not bool((ra.delivered & ~rb.delivered).any())
    assert int(ra.delivered.sum()) < int(rb.delivered.sum())  # it needs more SNR


def test_capacity_cap_refuses_short_blocks_below_the_threshold(table):
    # 12 bits on 6 uses at 4.5 dB: the table says a 12-bit block decodes often there, but
    # the uses cannot carry 12 bits; the accounting refuses every such delivery.
    assert float(table.bler(torch.tensor([12.0]), torch.tensor([4.5]))) < 0.95
    codec = make_codec("ldpc_qam", SHAPE)
    msg = _message(codec, 500, 6)
    assert int(msg.bits[0]) == 12
    rec = codec.deliver(msg, AWGN(), 4.5, torch.Generator().manual_seed(0))
    assert not bool(rec.delivered.any())
    rec = codec.deliver(msg, AWGN(), 15.0, torch.Generator().manual_seed(0))
    assert bool(rec.delivered.float().mean() > 0.9)


def test_fast_fading_uses_the_capacity_equivalent_snr():
    codec = make_codec("ldpc_qam", SHAPE)
    quant = make_codec("quantized", SHAPE)
    msg = _message(codec, 2000, 64)
    ra = codec.deliver(msg, RayleighFastFading(), 10.0, torch.Generator().manual_seed(5))
    rb = quant.deliver(msg, RayleighFastFading(), 10.0, torch.Generator().manual_seed(5))
    # The same fades (the first draws of the generator), so the same capacity.
    assert torch.equal(ra.capacity_bits, rb.capacity_bits)
    assert not bool((ra.delivered & ~rb.delivered).any())
    # At 10 dB a 128-bit block's effective SNR is a few dB above its waterfall: most arrive.
    assert 0.5 < float(ra.delivered.float().mean()) <= float(rb.delivered.float().mean())


def test_same_generator_seed_same_outcome():
    codec = make_codec("ldpc_qam", SHAPE)
    msg = _message(codec, 1000, 40)
    snr = torch.linspace(4.0, 12.0, 1000, dtype=torch.float64)
    runs = [
        codec.deliver(msg, RayleighBlockFading(), snr, torch.Generator().manual_seed(s)).delivered
        for s in (7, 7, 8)
    ]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_parameters_are_checked():
    assert isinstance(make_codec("ldpc_qam", SHAPE, bits_per_value=6), LDPCQAMCodec)
    with pytest.raises(ValueError, match="rate=3.0 is not allowed"):
        make_codec("ldpc_qam", SHAPE, rate=3.0)
    with pytest.raises(ValueError, match="cannot be read"):
        make_codec("ldpc_qam", SHAPE, table="/nonexistent/table.json")
    with pytest.raises(ValueError, match="comm.codec_params"):
        WorldConfig.from_dict({"comm": {"codec": "ldpc_qam", "codec_params": {"rate": 1.0}}})
    with pytest.raises(ValueError, match="comm.codec_params"):
        WorldConfig.from_dict({"comm": {"codec": "ldpc_qam", "codec_params": {"bits": 4}}})


def test_env_step_goes_through_the_codec_and_accounting_holds():
    world = agentcomm.make_vec("SearchRescue-v0", num_envs=8, seed=0, comm={"codec": "ldpc_qam"})
    assert isinstance(world.comm.codec, LDPCQAMCodec) and not world.comm.fast
    assert world.comm.codec.quantizer.hi == world.config.comm.logodds_clip
    world.reset(seed=0)
    sent = delivered = 0
    for _ in range(5):
        _, _, _, _, info = world.step(expert_actions(world))
        assert bool((info["bits_delivered"] <= info["capacity_bits"] + 1e-3).all())
        assert bool((info["bits_delivered"] <= info["bits"]).all())
        sent += int(info["messages_sent"].sum())
        delivered += int(info["messages_delivered"].sum())
    assert sent > 0 and 0 < delivered <= sent


def test_capacity_rule_codecs_keep_the_fast_path():
    assert make_codec("quantized", SHAPE).capacity_rule
    assert make_codec("topk", SHAPE).capacity_rule
    assert not make_codec("ldpc_qam", SHAPE).capacity_rule


def test_sionna_chain_agrees_with_the_table(table):
    """Re-measure the table at one waterfall point of two rows with the real chain."""
    pytest.importorskip("sionna.phy")
    from agentcomm.channels.sionna_chain import LDPCQAMChain

    torch.set_num_threads(1)
    raw = {r["k_info"]: r for r in table.rows}
    for k, blocks in ((32, 1500), (128, 800)):
        row = raw[k]
        i = int(np.argmin(np.abs(np.asarray(row["bler"]) - 0.4)))
        snr, p = row["snr_db"][i], row["errors"][i] / row["blocks"][i]
        n_table = row["blocks"][i]
        chain = LDPCQAMChain(k, 2 * k, 4, num_iter=table.meta["mcs"]["num_iter"])
        gen = torch.Generator().manual_seed(12345)
        bits = torch.randint(0, 2, (blocks, k), generator=gen).float()
        errors = int((~chain.transmit(bits, AWGN(), snr, gen).block_delivered).sum())
        pooled = (errors + p * n_table) / (blocks + n_table)
        se = math.sqrt(pooled * (1 - pooled) * (1 / blocks + 1 / n_table))
        assert abs(errors / blocks - p) <= 4 * se, (k, snr, errors / blocks, p)
        # The codec's interpolated (monotone-fitted) BLER there agrees as well.
        fitted = float(table.bler(torch.tensor([float(k)]), torch.tensor([snr])))
        assert abs(errors / blocks - fitted) <= 4 * se, (k, snr, errors / blocks, fitted)
