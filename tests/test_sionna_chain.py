"""The Sionna LDPC + QAM chain over agentcomm channels (skipped without Sionna)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

pytest.importorskip("sionna.phy")

from agentcomm.channels import (  # noqa: E402
    AWGN,
    RayleighBlockFading,
    rayleigh_outage_probability,
    sionna_chain,
)
from agentcomm.channels.sionna_chain import LDPCQAMChain  # noqa: E402

M = 64  # blocks per call: BP decoding of k=256, n=512 costs ~6 ms per block on one thread


@pytest.fixture(scope="module")
def chain() -> LDPCQAMChain:
    # Rate-1/2 code on 16-QAM: 2 information bits per channel use, 128 channel uses.
    return LDPCQAMChain(k_info=256, n_coded=512, bits_per_symbol=4)


def _bits(generator: torch.Generator, m: int = M) -> torch.Tensor:
    return torch.randint(0, 2, (m, 256), generator=generator).float()


def test_high_snr_awgn_delivers_every_block(chain, generator):
    bits = _bits(generator)
    bits_hat, bit_errors, delivered, uses = chain.transmit(bits, AWGN(), 15.0, generator)
    assert uses == 128 and chain.bits_per_channel_use == 2.0 and chain.code_rate == 0.5
    assert bits_hat.shape == bits.shape and bits_hat.dtype == bits.dtype
    assert bit_errors.shape == (M,) and delivered.dtype == torch.bool
    assert int(bit_errors.sum()) == 0 and bool(delivered.all())
    assert torch.equal(bits_hat, bits)


def test_low_snr_awgn_fails_every_block(chain, generator):
    # 2 bits per use need SNR >= 3 (4.8 dB) even with an ideal code; at -5 dB nothing decodes.
    bits = _bits(generator)
    out = chain.transmit(bits, AWGN(), -5.0, generator)
    assert not bool(out.block_delivered.any())
    assert float(out.bit_errors.float().mean()) > 0.2 * 256
    assert torch.equal(out.block_delivered, out.bit_errors == 0)


def test_rayleigh_block_fading_uses_our_channel_and_csi(chain, generator):
    # 30 dB, rate 2: outage probability 0.3%, so with perfect CSI almost every block decodes.
    bits = _bits(generator)
    assert rayleigh_outage_probability(2.0, 30.0) < 0.004
    good = chain.transmit(bits, RayleighBlockFading(csi="perfect"), 30.0, generator)
    assert float(good.block_delivered.float().mean()) >= 0.95
    # Without CSI the random phase of h scrambles 16-QAM: almost every block fails.
    blind = chain.transmit(bits, RayleighBlockFading(csi="none"), 30.0, generator)
    assert float(blind.block_delivered.float().mean()) < 0.3


def test_same_generator_seed_same_result(chain):
    bits = _bits(torch.Generator().manual_seed(0), 16)
    channel = RayleighBlockFading(csi="estimated", pilot_snr_db=15.0)
    a = chain.transmit(bits, channel, 6.0, torch.Generator().manual_seed(11))
    b = chain.transmit(bits, channel, 6.0, torch.Generator().manual_seed(11))
    assert torch.equal(a.bits_hat, b.bits_hat) and torch.equal(a.bit_errors, b.bit_errors)


def test_transmit_leaves_global_rng_alone(chain):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    chain.transmit(_bits(torch.Generator().manual_seed(1), 4), AWGN(), 10.0, torch.Generator())
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.slow
def test_importing_sionna_through_the_chain_keeps_global_rng_state():
    # Sionna re-seeds torch's default generator when imported; the chain restores it.
    # A fresh interpreter is needed because Sionna is already imported here (~10 s).
    code = (
        "import torch; torch.manual_seed(0); expected = torch.rand(3); torch.manual_seed(0);"
        "from agentcomm.channels.sionna_chain import LDPCQAMChain;"
        "LDPCQAMChain(k_info=64, n_coded=128, bits_per_symbol=2);"
        "assert torch.equal(torch.rand(3), expected)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_missing_sionna_raises_import_error_with_install_hint(monkeypatch):
    monkeypatch.setattr(sionna_chain, "_SIONNA", None)
    monkeypatch.setitem(sys.modules, "sionna.phy.fec.ldpc", None)
    with pytest.raises(ImportError, match=r"pip install agentcomm\[sionna\]"):
        LDPCQAMChain(k_info=64, n_coded=128, bits_per_symbol=2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k_info": 256, "n_coded": 510, "bits_per_symbol": 4}, "multiple"),
        ({"k_info": 256, "n_coded": 260, "bits_per_symbol": 4}, "n_coded"),
        ({"k_info": 8, "n_coded": 64, "bits_per_symbol": 2}, "k_info"),
        ({"k_info": 64, "n_coded": 128, "bits_per_symbol": 3}, "bits_per_symbol"),
        ({"k_info": 64, "n_coded": 128, "bits_per_symbol": 2, "demapping": "exact"}, "demapping"),
    ],
)
def test_bad_construction_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LDPCQAMChain(**kwargs)


def test_bad_transmit_inputs_raise(chain, generator):
    bits = _bits(generator, 2)
    with pytest.raises(ValueError, match="k_info"):
        chain.transmit(bits[:, :100], AWGN(), 10.0, generator)
    with pytest.raises(ValueError, match="0 and 1"):
        chain.transmit(bits * 2, AWGN(), 10.0, generator)
    with pytest.raises(ValueError, match="snr_db"):
        chain.transmit(bits, AWGN(), float("nan"), generator)
    with pytest.raises(ValueError, match="Channel"):
        chain.transmit(bits, "awgn", 10.0, generator)
