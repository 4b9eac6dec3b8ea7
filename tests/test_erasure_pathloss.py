"""Erasure models and log-distance path loss against their closed forms.

Statistics use 10^6 fixed-seed samples; tolerances are 5 standard errors, with
the standard error of Markov-chain averages inflated by the chain's correlation.
"""

from __future__ import annotations

import math

import pytest
import torch

from agentcomm.channels import GilbertElliott, IIDErasure, LogDistancePathLoss

Z = 5.0
N_SAMPLES = 10**6


# --- i.i.d. erasure ---------------------------------------------------------------------


def test_iid_erasure_rate_and_independence(generator):
    p = 0.2
    lost = IIDErasure(p).sample((1000, 1000), generator)
    assert lost.dtype == torch.bool and lost.shape == (1000, 1000)
    assert lost.double().mean().item() == pytest.approx(
        p, abs=Z * math.sqrt(p * (1 - p) / N_SAMPLES)
    )
    both = (lost[:, 1:] & lost[:, :-1]).double().mean().item()
    assert both == pytest.approx(p * p, abs=Z * math.sqrt(p * p / lost[:, 1:].numel()))
    assert IIDErasure(p).loss_rate == p
    assert not IIDErasure(0.0).sample((100,), generator).any()
    assert IIDErasure(1.0).sample((100,), generator).all()


# --- Gilbert-Elliott ------------------------------------------------------------------------


def test_gilbert_closed_forms():
    ge = GilbertElliott(p_gb=0.05, p_bg=0.25)
    assert ge.stationary_bad == pytest.approx(0.05 / 0.30)
    assert ge.stationary_loss_rate == pytest.approx(0.05 / 0.30)
    assert ge.mean_burst_length == pytest.approx(4.0)
    assert GilbertElliott(0.0, 0.5).mean_burst_length == 0.0
    assert GilbertElliott(0.1, 0.5, loss_good=1.0, loss_bad=1.0).mean_burst_length == math.inf


def _chain_std_err(ge: GilbertElliott, n: int) -> float:
    # Loss indicator of the Gilbert chain is the state itself: its asymptotic variance is
    # pi_B pi_G (1 + lam) / (1 - lam) with lam = 1 - p_gb - p_bg (second eigenvalue).
    lam = 1 - ge.p_gb - ge.p_bg
    pi_b = ge.stationary_bad
    return math.sqrt(pi_b * (1 - pi_b) * (1 + lam) / (1 - lam) / n)


@pytest.mark.parametrize(
    ("p_gb", "p_bg", "loss_good", "loss_bad"),
    [(0.05, 0.25, 0.0, 1.0), (0.02, 0.1, 0.01, 0.8)],
)
def test_gilbert_elliott_loss_rate_and_burst_length(p_gb, p_bg, loss_good, loss_bad, generator):
    ge = GilbertElliott(p_gb, p_bg, loss_good, loss_bad)
    lost = ge.sample_sequence((1000,), 1000, generator)
    assert lost.shape == (1000, 1000) and lost.dtype == torch.bool
    # The standard error of a loss-rate average is at most that of the state average plus
    # that of the Bernoulli loss draws.
    p_loss = ge.stationary_loss_rate
    tol = Z * (_chain_std_err(ge, N_SAMPLES) + math.sqrt(p_loss / N_SAMPLES))
    assert lost.double().mean().item() == pytest.approx(p_loss, abs=tol)
    # Mean burst length = P(L_t) / P(L_t, not L_{t+1}), estimated over consecutive pairs.
    # The 1000 chains are independent: the ratio estimator's standard error comes from the
    # per-chain counts by the delta method, Var(R) ~ Var(L_i - R E_i) / (n mean(E)^2).
    now, nxt = lost[:, :-1], lost[:, 1:]
    losses = now.sum(dim=1).double()
    ends = (now & ~nxt).sum(dim=1).double()
    measured = (losses.sum() / ends.sum()).item()
    std_err = ((losses - measured * ends).std() / (math.sqrt(ends.numel()) * ends.mean())).item()
    assert measured == pytest.approx(ge.mean_burst_length, abs=Z * std_err)
    if (loss_good, loss_bad) == (0.0, 1.0):
        assert ge.mean_burst_length == pytest.approx(1 / p_bg)


def test_gilbert_state_stays_stationary_and_step_shapes(generator):
    ge = GilbertElliott(0.1, 0.3)
    state = ge.init_state((1000, 1000), generator)
    assert state.dtype == torch.bool and state.shape == (1000, 1000)
    tol = Z * math.sqrt(0.25 * 0.75 / N_SAMPLES)
    assert state.double().mean().item() == pytest.approx(0.25, abs=tol)
    new_state, lost = ge.step(state, generator)
    assert new_state.shape == lost.shape == (1000, 1000)
    assert new_state.double().mean().item() == pytest.approx(0.25, abs=tol)
    assert torch.equal(lost, new_state)  # loss_good=0, loss_bad=1: lost iff bad
    # Transition frequencies match p_gb and p_bg.
    went_bad = (new_state & ~state).sum().item() / (~state).sum().item()
    went_good = (~new_state & state).sum().item() / state.sum().item()
    assert went_bad == pytest.approx(0.1, abs=Z * math.sqrt(0.1 * 0.9 / 7.5e5))
    assert went_good == pytest.approx(0.3, abs=Z * math.sqrt(0.3 * 0.7 / 2.5e5))


def test_erasure_is_seeded():
    ge = GilbertElliott(0.1, 0.3, 0.05, 0.9)
    a = ge.sample_sequence((4, 5), 50, torch.Generator().manual_seed(3))
    b = ge.sample_sequence((4, 5), 50, torch.Generator().manual_seed(3))
    assert a.shape == (4, 5, 50) and torch.equal(a, b)
    iid = IIDErasure(0.5)
    assert torch.equal(
        iid.sample((64,), torch.Generator().manual_seed(1)),
        iid.sample((64,), torch.Generator().manual_seed(1)),
    )


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: IIDErasure(-0.1), "p"),
        (lambda: IIDErasure(float("nan")), "p"),
        (lambda: GilbertElliott(1.5, 0.5), "p_gb"),
        (lambda: GilbertElliott(0.1, 0.0), "p_bg"),
        (lambda: GilbertElliott(0.1, 0.5, loss_bad=2.0), "loss_bad"),
        (lambda: GilbertElliott(0.1, 0.5).step(torch.zeros(3), None), "state"),
        (lambda: GilbertElliott(0.1, 0.5).sample_sequence((3,), -1, None), "steps"),
        (lambda: IIDErasure(0.1).sample((3, -2), None), "shape"),
    ],
)
def test_erasure_bad_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- path loss ------------------------------------------------------------------------------


def test_log_distance_values_and_clamp():
    pl = LogDistancePathLoss(exponent=3.0, ref_distance=1.0, ref_loss_db=40.0)
    d = torch.tensor([0.0, 0.5, 1.0, 10.0, 100.0])
    assert torch.allclose(pl.loss_db(d), torch.tensor([40.0, 40.0, 40.0, 70.0, 100.0]))
    snr = pl.snr_db(d, tx_power_dbm=20.0, noise_floor_dbm=-90.0)
    assert torch.allclose(snr, torch.tensor([70.0, 70.0, 70.0, 40.0, 10.0]))
    pl2 = LogDistancePathLoss(exponent=2.0, ref_distance=10.0, ref_loss_db=60.0)
    assert pl2.loss_db(torch.tensor([1000.0], dtype=torch.float64)).item() == pytest.approx(100.0)


def test_path_loss_is_batched_over_link_matrices(generator):
    pos = torch.rand(8, 5, 2, generator=generator) * 100  # [B, N, 2] positions in metres
    dist = torch.cdist(pos, pos)  # [B, N, N]
    pl = LogDistancePathLoss()
    snr = pl.snr_db(dist, torch.full((8, 5, 1), 20.0), -90.0)
    assert snr.shape == (8, 5, 5)
    expected = 20.0 - (40.0 + 30.0 * torch.log10(dist.clamp_min(1.0))) + 90.0
    assert torch.allclose(snr, expected, atol=1e-4)


def test_shadowing_statistics(generator):
    sigma = 8.0
    pl = LogDistancePathLoss(shadowing_std_db=sigma)
    d = torch.full((1000, 1000), 10.0, dtype=torch.float64)
    shadow = pl.loss_db(d, generator) - 70.0
    assert shadow.mean().item() == pytest.approx(0.0, abs=Z * sigma / math.sqrt(N_SAMPLES))
    assert shadow.std().item() == pytest.approx(sigma, rel=Z * math.sqrt(0.5 / N_SAMPLES))
    a = pl.loss_db(d[:3], torch.Generator().manual_seed(5))
    b = pl.loss_db(d[:3], torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: LogDistancePathLoss(shadowing_std_db=4.0).loss_db(torch.ones(3)), "generator"),
        (lambda: LogDistancePathLoss().loss_db(torch.tensor([1.0, -1.0])), "negative"),
        (lambda: LogDistancePathLoss().loss_db(torch.tensor([float("nan")])), "non-finite"),
        (lambda: LogDistancePathLoss().loss_db(torch.tensor([1, 2])), "dtype"),
        (lambda: LogDistancePathLoss(ref_distance=0.0), "ref_distance"),
        (lambda: LogDistancePathLoss(exponent=-2.0), "exponent"),
        (lambda: LogDistancePathLoss().snr_db(torch.ones(2), float("nan"), -90.0), "tx_power"),
    ],
)
def test_path_loss_bad_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()
