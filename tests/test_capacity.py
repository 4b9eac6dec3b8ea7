"""Shannon limits, outage and the digital delivery rule.

Monte Carlo checks use 10^6 fixed-seed samples and a tolerance of 5 standard
errors estimated from the samples themselves.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.integrate
import torch

from agentcomm.channels import (
    RayleighBlockFading,
    RayleighFastFading,
    awgn_capacity,
    digital_delivery,
    rayleigh_ergodic_capacity,
    rayleigh_outage_probability,
    snr_inst,
)

Z = 5.0
N_SAMPLES = 10**6
SNRS_DB = [0.0, 5.0, 10.0, 20.0]


def test_awgn_capacity_table():
    assert [round(awgn_capacity(s), 2) for s in SNRS_DB] == [1.00, 2.06, 3.46, 6.66]


def test_rayleigh_ergodic_capacity_table():
    # Tse & Viswanath (2005), fig. 5.19 / eq. 5.92.
    assert [round(rayleigh_ergodic_capacity(s), 2) for s in SNRS_DB] == [0.86, 1.72, 2.91, 5.88]


def test_capacities_keep_the_input_kind():
    out_t = rayleigh_ergodic_capacity(torch.tensor([0.0, 10.0], dtype=torch.float32))
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32
    assert isinstance(awgn_capacity(torch.tensor([0.0])), torch.Tensor)
    assert torch.allclose(
        awgn_capacity(torch.tensor([0.0, 20.0], dtype=torch.float64)),
        torch.tensor([1.0, math.log2(101)], dtype=torch.float64),
    )
    out_np = rayleigh_ergodic_capacity(np.array([0.0, 10.0], dtype=np.float32))
    assert isinstance(out_np, np.ndarray) and out_np.dtype == np.float32
    assert isinstance(awgn_capacity(3.0), float)
    assert isinstance(rayleigh_ergodic_capacity(3), float)
    assert isinstance(rayleigh_outage_probability(1.0, torch.tensor(10.0)), torch.Tensor)
    assert isinstance(rayleigh_outage_probability(np.array([1.0, 2.0]), 10.0), np.ndarray)


def _ergodic_by_quadrature(snr_db: float) -> float:
    g = 10 ** (snr_db / 10)
    value, _ = scipy.integrate.quad(
        lambda t: math.log2(1 + g * t) * math.exp(-t), 0, math.inf, epsabs=0, epsrel=1e-12
    )
    return value


@pytest.mark.parametrize("snr_db", [-40.0, -17.5, -16.9, -10.0, 0.0, 30.0, 60.0])
def test_ergodic_capacity_matches_quadrature_on_both_sides_of_the_series_switch(snr_db):
    # 1/SNR = 50 (-17 dB) is where e^x E1(x) switches to its asymptotic series.
    assert rayleigh_ergodic_capacity(snr_db) == pytest.approx(
        _ergodic_by_quadrature(snr_db), rel=1e-9
    )


def test_ergodic_capacity_high_and_low_snr_asymptotes():
    # High SNR: log2(SNR) - gamma_Euler log2(e); low SNR: SNR log2(e).
    g = 10 ** (80 / 10)
    assert rayleigh_ergodic_capacity(80.0) == pytest.approx(
        math.log2(g) - np.euler_gamma / math.log(2), rel=1e-6
    )
    g = 10 ** (-60 / 10)
    assert rayleigh_ergodic_capacity(-60.0) == pytest.approx(g / math.log(2), rel=1e-5)
    assert np.isfinite(rayleigh_ergodic_capacity(np.array([-300.0, 300.0]))).all()


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
def test_ergodic_capacity_matches_monte_carlo(snr_db, generator):
    h = RayleighFastFading().generate((N_SAMPLES,), generator, dtype=torch.complex128)
    rate = torch.log2(1 + snr_inst(h.unsqueeze(-1), snr_db)).flatten()
    tol = Z * rate.std().item() / math.sqrt(N_SAMPLES)
    assert rate.mean().item() == pytest.approx(rayleigh_ergodic_capacity(snr_db), abs=tol)


@pytest.mark.parametrize(("rate", "snr_db"), [(1.0, 10.0), (2.0, 10.0), (3.0, 20.0), (0.5, 0.0)])
def test_outage_matches_monte_carlo(rate, snr_db, generator):
    h = RayleighBlockFading().generate((N_SAMPLES, 1), generator)
    p_mc = (torch.log2(1 + snr_inst(h, snr_db)) < rate).double().mean().item()
    p = rayleigh_outage_probability(rate, snr_db)
    assert p_mc == pytest.approx(p, abs=Z * math.sqrt(p * (1 - p) / N_SAMPLES))


def test_outage_closed_form_values():
    assert rayleigh_outage_probability(0.0, 10.0) == 0.0
    assert rayleigh_outage_probability(2.0, 10.0) == pytest.approx(1 - math.exp(-0.3), rel=1e-12)
    # Tiny threshold keeps full relative precision (expm1).
    assert rayleigh_outage_probability(1e-12, 0.0) == pytest.approx(1e-12 * math.log(2), rel=1e-6)


def test_snr_inst_shapes_and_values():
    h = torch.tensor([[[1 + 1j]], [[0.5 + 0j]]], dtype=torch.complex64)  # [2, 1, 1]
    out = snr_inst(h, torch.tensor([[10.0], [0.0]]))
    assert out.shape == (2, 1, 1)
    assert torch.allclose(out.flatten(), torch.tensor([20.0, 0.25]))
    assert torch.allclose(snr_inst(h, 10.0).flatten(), torch.tensor([20.0, 2.5]))


def test_digital_delivery_edge_cases_and_boundary():
    snr = torch.tensor([[3.0], [3.0], [0.0], [3.0]])  # C = log2(1+3) = 2 bits per use
    bits = torch.tensor([0, 0, 5, 7])
    uses = torch.tensor([0, 4, 8, 0])
    # bits = 0 always delivered (even with k = 0); k = 0 with bits > 0 never; SNR 0 fails.
    assert digital_delivery(bits, uses, snr).tolist() == [True, True, False, False]
    k = 100
    below = digital_delivery(math.floor(2 * k * (1 - 1e-3)), k, snr[:1])
    above = digital_delivery(math.ceil(2 * k * (1 + 1e-3)), k, snr[:1])
    assert below.tolist() == [True] and above.tolist() == [False]


def test_digital_delivery_fast_fading_averages_mutual_information():
    # Two fades, SNR 3 (2 bits) and 0 (0 bits): 1 bit per channel use on average.
    snr = torch.tensor([[3.0, 0.0]])
    assert digital_delivery(10, 10, snr).tolist() == [True]
    assert digital_delivery(11, 10, snr).tolist() == [False]


def test_digital_delivery_rate_equals_one_minus_outage(generator):
    # One symbol per message is enough to draw the block fade; the message is k uses long.
    snr_db, rate, k = 10.0, 2.0, 64
    out = RayleighBlockFading().apply(
        torch.ones(N_SAMPLES, 1, dtype=torch.complex64), snr_db, generator
    )
    delivered = digital_delivery(int(rate * k), k, snr_inst(out.h, snr_db))
    assert delivered.shape == (N_SAMPLES,)
    p = rayleigh_outage_probability(rate, snr_db)
    assert 1 - delivered.double().mean().item() == pytest.approx(
        p, abs=Z * math.sqrt(p * (1 - p) / N_SAMPLES)
    )


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: awgn_capacity(float("nan")), "snr_db"),
        (lambda: awgn_capacity(torch.tensor([0.0, float("nan")])), "snr_db"),
        (lambda: rayleigh_ergodic_capacity(np.array([np.inf])), "snr_db"),
        (lambda: rayleigh_ergodic_capacity("10"), "snr_db"),
        (lambda: rayleigh_outage_probability(-1.0, 10.0), "rate"),
        (lambda: rayleigh_outage_probability(1.0, float("nan")), "snr_db"),
        (lambda: digital_delivery(-1, 4, torch.ones(1, 1)), "bits"),
        (lambda: digital_delivery(1, -4, torch.ones(1, 1)), "channel_uses"),
        (lambda: digital_delivery(1, 4, -torch.ones(1, 1)), "snr_inst_linear"),
        (lambda: digital_delivery(1, 4, torch.ones(1, 1, dtype=torch.complex64)), "snr_inst"),
        (lambda: snr_inst(torch.ones(2, 1), 10.0), "dtype"),
        (lambda: snr_inst(torch.ones(2, 1, dtype=torch.complex64), float("nan")), "snr_db"),
    ],
)
def test_bad_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()
