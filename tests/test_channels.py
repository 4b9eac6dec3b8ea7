"""Channel models against their closed forms.

Statistics use >= 10^6 samples from fixed seeds. Unless a test says otherwise, a
tolerance is ``Z`` standard errors of the estimate (``Z = 5``), with the standard
error derived from the sample size, so a correct implementation fails with
probability < 1e-6 and an error of a few percent is caught.
"""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch

from agentcomm.channels import (
    AWGN,
    CHANNELS,
    RayleighBlockFading,
    RayleighFastFading,
    Rician,
    coefficient_shape,
    equalize,
    make_channel,
    power_normalize,
)

Z = 5.0
N_SAMPLES = 10**6


def q_function(x: float) -> float:
    """Gaussian tail probability Q(x)."""
    return 0.5 * math.erfc(x / math.sqrt(2.0))


def bpsk(n: int, generator: torch.Generator, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Random bits ``[n, k]`` and their BPSK symbols (+1 for 0, -1 for 1; Es = Eb = 1)."""
    bits = torch.randint(0, 2, (n, k), generator=generator, dtype=torch.bool)
    x = torch.where(bits, -1.0, 1.0).to(torch.complex64)
    return bits, x


def qpsk(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Unit-energy QPSK symbols of ``shape``."""
    re = torch.randint(0, 2, shape, generator=generator) * 2 - 1
    im = torch.randint(0, 2, shape, generator=generator) * 2 - 1
    return torch.complex(re.float(), im.float()) / math.sqrt(2.0)


def bpsk_errors(channel, n: int, k: int, snr_db: float, generator, chunk: int = 2_000_000):
    """Per-message bit-error fractions ``[n]`` of coherent BPSK (perfect CSI, ZF)."""
    fractions = []
    rows = max(1, chunk // k)
    for start in range(0, n, rows):
        bits, x = bpsk(min(rows, n - start), generator, k)
        out = channel.apply(x, snr_db, generator)
        decided = out.equalized("zf").real < 0
        fractions.append((decided != bits).float().mean(dim=-1))
    return torch.cat(fractions)


def samples_for(p: float, rel_tol: float, z: float = 4.5) -> int:
    """Bits needed so that ``rel_tol`` is ``z`` standard errors of a Bernoulli(p) mean."""
    return math.ceil((z / rel_tol) ** 2 * (1.0 - p) / p)


# --- noise convention --------------------------------------------------------------------


def test_noise_variance_per_real_dimension_is_n0_over_2(generator):
    snr_db = 3.0
    n0 = 10 ** (-snr_db / 10)
    x = torch.zeros(1000, 1000, dtype=torch.complex64)
    out = AWGN().apply(x, snr_db, generator)
    noise = out.y.to(torch.complex128)
    # Sample variance of n Gaussians has relative standard error sqrt(2/n).
    rel_tol = Z * math.sqrt(2.0 / N_SAMPLES)
    for part in (noise.real, noise.imag):
        assert part.var().item() == pytest.approx(n0 / 2, rel=rel_tol)
        assert abs(part.mean().item()) < Z * math.sqrt(n0 / 2 / N_SAMPLES)
    corr = (noise.real * noise.imag).mean().item() / (n0 / 2)
    assert abs(corr) < Z / math.sqrt(N_SAMPLES)
    assert torch.allclose(out.noise_var, torch.full((1000, 1), n0))
    assert out.h.shape == (1000, 1) and torch.equal(out.h, torch.ones(1000, 1, dtype=out.h.dtype))


def test_per_message_snr_tensor_sets_per_message_noise(generator):
    snr_db = torch.tensor([[0.0, 10.0], [20.0, 30.0]])
    x = torch.zeros(2, 2, 250_000, dtype=torch.complex64)
    out = RayleighBlockFading().apply(x, snr_db, generator)
    n0 = 10 ** (-snr_db / 10)
    assert out.noise_var.shape == (2, 2, 1)
    assert torch.allclose(out.noise_var[..., 0], n0)
    measured = out.y.abs().square().mean(dim=-1)
    assert torch.allclose(measured, n0, rtol=Z / math.sqrt(250_000))


# --- bit error rates against closed forms ------------------------------------------------


@pytest.mark.parametrize("ebn0_db", [0.0, 5.0])
def test_bpsk_ber_awgn_matches_q_function(ebn0_db, generator):
    # BPSK uses only the in-phase noise: BER = Q(sqrt(2 Eb/N0)) with noise N0/2 per real dim.
    # 10 dB (BER 3.9e-6) needs ~10^10 bits for a 2% check: see the slow test below.
    gamma = 10 ** (ebn0_db / 10)
    expected = q_function(math.sqrt(2 * gamma))
    n = samples_for(expected, 0.02)
    ber = bpsk_errors(AWGN(), n, 1, ebn0_db, generator).mean().item()
    assert ber == pytest.approx(expected, rel=0.02)


@pytest.mark.slow
def test_ber_awgn_10db_slow():
    # QPSK carries two independent BPSK streams (I and Q), each with BER Q(sqrt(2 Eb/N0)),
    # at Es/N0 = Eb/N0 + 3 dB: half the noise samples per bit. 2e9 bits give ~7,700 errors
    # (relative standard error 1.1%), so the tolerance is 5% (~4.4 standard errors).
    generator = torch.Generator().manual_seed(10)
    ebn0_db = 10.0
    expected = q_function(math.sqrt(2 * 10 ** (ebn0_db / 10)))
    errors, bits_sent = 0, 0
    # Chunks stay well below glibc's 32 MB mmap threshold so buffers are reused, not remapped.
    for _ in range(500):
        bits = torch.randint(0, 2, (2, 2_000_000), generator=generator, dtype=torch.bool)
        sym = torch.where(bits, -1.0, 1.0) / math.sqrt(2.0)
        x = torch.complex(sym[0], sym[1]).unsqueeze(0)
        y = AWGN().apply(x, ebn0_db + 10 * math.log10(2), generator).y[0]
        errors += int(((y.real < 0) != bits[0]).sum() + ((y.imag < 0) != bits[1]).sum())
        bits_sent += 2 * bits.shape[1]
    assert bits_sent == 2_000_000_000
    assert errors / bits_sent == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize("snr_db", [0.0, 5.0, 10.0])
def test_bpsk_ber_rayleigh_fast_fading(snr_db, generator):
    # Coherent BPSK with perfect CSI over Rayleigh: BER = (1 - sqrt(g/(1+g)))/2
    # (Proakis, Digital Communications, eq. 14.3-7).
    g = 10 ** (snr_db / 10)
    expected = 0.5 * (1 - math.sqrt(g / (1 + g)))
    n = samples_for(expected, 0.02)
    ber = bpsk_errors(RayleighFastFading(), n, 1, snr_db, generator).mean().item()
    assert ber == pytest.approx(expected, rel=0.02)


@pytest.mark.parametrize("snr_db", [0.0, 5.0, 10.0])
def test_bpsk_ber_rayleigh_block_fading(snr_db, generator):
    # Errors inside one message share a fade, so the standard error is measured from the
    # per-message error fractions; the test first checks it has the power to resolve 2%.
    g = 10 ** (snr_db / 10)
    expected = 0.5 * (1 - math.sqrt(g / (1 + g)))
    per_message = bpsk_errors(RayleighBlockFading(), 1_000_000, 4, snr_db, generator)
    std_err = per_message.std().item() / math.sqrt(per_message.numel())
    assert 4 * std_err < 0.02 * expected
    assert per_message.mean().item() == pytest.approx(expected, rel=0.02)


# --- fading statistics -------------------------------------------------------------------


@pytest.mark.parametrize("cls", [RayleighFastFading, RayleighBlockFading])
def test_rayleigh_power_is_exponential_with_mean_one(cls, generator):
    k = 4
    h = cls().generate((N_SAMPLES, k), generator)
    assert h.shape == ((N_SAMPLES, k) if cls is RayleighFastFading else (N_SAMPLES, 1))
    power = (h.abs().square()).flatten()[:N_SAMPLES].double()
    assert power.mean().item() == pytest.approx(1.0, abs=Z / math.sqrt(N_SAMPLES))
    assert scipy.stats.kstest(power.numpy(), "expon").pvalue > 1e-3
    # The phase of a circularly symmetric coefficient is uniform.
    phase = torch.angle(h.flatten()[:N_SAMPLES]).double().numpy()
    assert scipy.stats.kstest(phase, scipy.stats.uniform(-math.pi, 2 * math.pi).cdf).pvalue > 1e-3


def test_block_fading_is_constant_within_a_message_and_fast_fading_is_not(generator):
    x = qpsk((2000, 16), generator)
    block = RayleighBlockFading().apply(x, 200.0, generator)
    ratio = block.y / x
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), atol=1e-5)
    fast = RayleighFastFading().apply(x, 200.0, generator)
    assert fast.h.shape == x.shape
    assert not torch.allclose(fast.h, fast.h[:, :1].expand_as(fast.h))
    # Independent across symbols: sample correlation of neighbours ~ 0.
    corr = (fast.h[:, 1:] * fast.h[:, :-1].conj()).mean().abs().item()
    assert corr < Z / math.sqrt(fast.h[:, 1:].numel())


@pytest.mark.parametrize("block", [True, False])
def test_rician_mean_power_and_k_by_moments(block, generator):
    k_factor, phase = 4.0, 0.7
    shape = (N_SAMPLES, 3) if block else (N_SAMPLES // 4, 4)
    h = Rician(k_factor, block=block, los_phase=phase).generate(shape, generator).flatten()
    h = h.to(torch.complex128)
    power = h.abs().square()
    # Var|h|^2 = (1+2K)/(1+K)^2 = 0.36 for K = 4.
    power_std = math.sqrt((1 + 2 * k_factor) / (1 + k_factor) ** 2)
    assert power.mean().item() == pytest.approx(1.0, abs=Z * power_std / math.sqrt(h.numel()))
    # Method of moments: gamma = Var|h|^2 / (E|h|^2)^2 = (1+2K)/(1+K)^2 -> K = r/(1-r),
    # r = sqrt(1-gamma). Over 20 seeds at 10^6 samples K_hat had std 0.006: 0.05 is ~9 std.
    gamma = power.var() / power.mean().square()
    r = torch.sqrt(1 - gamma).item()
    assert r / (1 - r) == pytest.approx(k_factor, abs=0.05)
    los = math.sqrt(k_factor / (k_factor + 1))
    mean_tol = Z * math.sqrt(1 / (k_factor + 1) / h.numel())
    assert h.mean().real.item() == pytest.approx(los * math.cos(phase), abs=mean_tol)
    assert h.mean().imag.item() == pytest.approx(los * math.sin(phase), abs=mean_tol)


def test_rician_k0_is_rayleigh(generator):
    h = Rician(0.0, block=False).generate((N_SAMPLES,), generator)
    assert scipy.stats.kstest(h.abs().square().double().numpy(), "expon").pvalue > 1e-3


# --- equalization and CSI ----------------------------------------------------------------


@pytest.mark.parametrize("name", CHANNELS)
def test_zero_forcing_inverts_the_channel(name, generator):
    x = qpsk((256, 32), generator)
    out = make_channel(name).apply(x, 250.0, generator)
    assert torch.allclose(out.equalized("zf"), x, atol=1e-4)


def test_mmse_formula_and_conditional_mse(generator):
    snr_db = 0.0
    n0 = 10 ** (-snr_db / 10)
    x = qpsk((N_SAMPLES,), generator)
    out = RayleighFastFading().apply(x, snr_db, generator)
    h, y = out.h, out.y
    x_mmse = out.equalized("mmse")
    assert torch.allclose(x_mmse, h.conj() * y / (h.abs().square() + n0), atol=1e-6)
    assert torch.allclose(equalize(y, h, out.noise_var, "zf"), y / h, atol=1e-4, rtol=1e-4)
    # Given h and |x| = 1: E|x_mmse - x|^2 = N0 / (|h|^2 + N0).
    err = (x_mmse - x).abs().square().double()
    expected = n0 / (h.abs().square().double() + n0)
    tol = Z * (err - expected).std().item() / math.sqrt(N_SAMPLES)
    assert err.mean().item() == pytest.approx(expected.mean().item(), abs=tol)


def test_no_csi_returns_received_symbols(generator):
    x = qpsk((8, 16), generator)
    out = RayleighBlockFading(csi="none").apply(x, 10.0, generator)
    assert out.h_hat is None
    assert torch.equal(out.equalized("mmse"), out.y)


@pytest.mark.parametrize("cls", [RayleighBlockFading, RayleighFastFading])
def test_estimated_csi_error_variance(cls, generator):
    pilot_snr_db = 10.0
    channel = cls(csi="estimated", pilot_snr_db=pilot_snr_db)
    assert channel.csi_error_var == pytest.approx(0.1)
    assert cls(csi="perfect").csi_error_var == 0.0
    x = qpsk((N_SAMPLES, 1), generator)
    out = channel.apply(x, 20.0, generator)
    err = (out.h_hat - out.h).flatten().to(torch.complex128)
    rel_tol = Z * math.sqrt(2.0 / err.numel())
    assert err.real.var().item() == pytest.approx(0.05, rel=rel_tol)
    assert err.imag.var().item() == pytest.approx(0.05, rel=rel_tol)
    assert abs(err.mean().real.item()) < Z * math.sqrt(0.05 / err.numel())


def test_power_normalize(generator):
    x = torch.randn(1000, 64, dtype=torch.complex64, generator=generator) * 3.0
    x.requires_grad_(True)
    xn = power_normalize(x)
    assert torch.allclose(xn.abs().square().mean(dim=-1), torch.ones(1000), atol=1e-5)
    xn.real.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    zero = power_normalize(torch.zeros(2, 8, dtype=torch.complex64))
    assert torch.equal(zero, torch.zeros(2, 8, dtype=torch.complex64))


# --- registry, determinism, validation ---------------------------------------------------


def test_registry_builds_each_channel_with_its_parameters():
    assert CHANNELS == ("awgn", "rayleigh_fast", "rayleigh_block", "rician")
    assert isinstance(make_channel("awgn"), AWGN)
    assert isinstance(make_channel("rayleigh_fast"), RayleighFastFading)
    assert isinstance(make_channel("rayleigh_block", csi="none"), RayleighBlockFading)
    rician = make_channel("rician", k_factor=2.0, block=False, csi="estimated", pilot_snr_db=5.0)
    assert (rician.k_factor, rician.block, rician.csi, rician.pilot_snr_db) == (
        2.0,
        False,
        "estimated",
        5.0,
    )
    assert RayleighFastFading.block is False and RayleighBlockFading.block is True


@pytest.mark.parametrize("name", CHANNELS)
@pytest.mark.parametrize("csi", ["perfect", "estimated", "none"])
def test_same_seed_same_output(name, csi):
    channel = make_channel(name, csi=csi)
    x = qpsk((4, 3, 16), torch.Generator().manual_seed(0))
    a = channel.apply(x, 5.0, torch.Generator().manual_seed(7))
    b = channel.apply(x, 5.0, torch.Generator().manual_seed(7))
    c = channel.apply(x, 5.0, torch.Generator().manual_seed(8))
    assert torch.equal(a.y, b.y) and torch.equal(a.h, b.h)
    assert (a.h_hat is None and b.h_hat is None) or torch.equal(a.h_hat, b.h_hat)
    assert not torch.equal(a.y, c.y)


@pytest.mark.parametrize("name", CHANNELS)
def test_generate_checks_every_channel_and_shapes_by_block(name, generator):
    """Every channel validates a coefficient request the same way and returns ``[..., 1]``
    (block) or ``[..., k]`` (per symbol) in the requested dtype."""
    channel = make_channel(name)
    h = channel.generate((3, 5, 8), generator, dtype=torch.complex128)
    assert h.shape == ((3, 5, 1) if channel.block else (3, 5, 8))
    assert h.dtype == torch.complex128
    with pytest.raises(ValueError, match="shape"):
        channel.generate((), generator)
    with pytest.raises(ValueError, match="shape"):
        channel.generate((4, -1), generator)
    with pytest.raises(ValueError, match="dtype"):
        channel.generate((4, 8), generator, dtype=torch.float32)


def test_complex128_is_kept(generator):
    x = qpsk((4, 8), generator).to(torch.complex128)
    out = Rician(2.0).apply(x, 5.0, generator)
    assert out.y.dtype == torch.complex128 and out.h.dtype == torch.complex128
    assert out.noise_var.dtype == torch.float64


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: make_channel("rayleigh"), "rayleigh_block"),
        (lambda: make_channel("rician", k=2.0), r"\['k'\]"),
        (lambda: make_channel("awgn", k_factor=1.0), "k_factor"),
        (lambda: AWGN(csi="partial"), "csi"),
        (lambda: AWGN(pilot_snr_db=float("nan")), "pilot_snr_db"),
        (lambda: Rician(k_factor=-1.0), "k_factor"),
        (lambda: Rician(block="yes"), "block"),
        (lambda: Rician(los_phase=10.0), "los_phase"),
    ],
)
def test_bad_construction_raises(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_apply_inputs_raise(generator):
    x = qpsk((4, 8), generator)
    channel = RayleighBlockFading()
    with pytest.raises(ValueError, match="snr_db"):
        channel.apply(x, float("nan"), generator)
    with pytest.raises(ValueError, match="dtype"):
        channel.apply(x.real, 10.0, generator)
    with pytest.raises(ValueError, match="non-finite"):
        channel.apply(x * float("inf"), 10.0, generator)
    with pytest.raises(ValueError, match="shape"):
        channel.generate((), generator)
    with pytest.raises(ValueError, match="dtype"):
        channel.generate((4, 8), generator, dtype=torch.float32)
    with pytest.raises(ValueError, match="method"):
        equalize(x, x, torch.ones(4, 1), "lmmse")
    with pytest.raises(ValueError, match="shape"):
        coefficient_shape((4, -1), True, torch.complex64)
