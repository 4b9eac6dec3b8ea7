"""Kalman filter, covariance intersection, log-odds fusion and consensus as specifications."""

from __future__ import annotations

import math

import pytest
import torch

from agentcomm.beliefs import (
    GaussianBelief,
    bayes_update,
    consensus_average,
    constant_velocity_model,
    covariance_intersection,
    fusion_centre_logodds,
    independent_gaussian_fusion,
    independent_logodds_sum,
    kalman_predict,
    kalman_update,
    position_measurement_model,
    weighted_logodds_average,
)
from agentcomm.beliefs.fusion import _ci_objective
from agentcomm.topology import metropolis_weights
from agentcomm.topology.coordination import second_largest_eigenvalue_modulus
from agentcomm.topology.graph import is_connected

F64 = torch.float64

# --------------------------------------------------------------------------- Kalman


def test_kalman_matches_hand_computed_scalar_case() -> None:
    # x ~ N(0, 4); predict with F=1, Q=1 -> var 5; z=2 with R=5: S=10, K=1/2,
    # mean 1, Joseph var (1/2)^2 * 5 + (1/2)^2 * 5 = 2.5.
    one = torch.ones(1, 1, dtype=F64)
    belief = GaussianBelief(torch.zeros(1, dtype=F64), 4 * one)
    pred = kalman_predict(belief, one, one)
    assert float(pred.cov) == 5.0
    post = kalman_update(pred, torch.tensor([2.0], dtype=F64), one, 5 * one)
    assert float(post.mean) == pytest.approx(1.0, abs=1e-15)
    assert float(post.cov) == pytest.approx(2.5, abs=1e-15)


def test_constant_velocity_model_matrices() -> None:
    f, q = constant_velocity_model(0.5, 2.0, dtype=F64)
    expected_f = torch.tensor(
        [[1, 0, 0.5, 0], [0, 1, 0, 0.5], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=F64
    )
    a, c, v = 2.0 * 0.5**3 / 3, 2.0 * 0.5**2 / 2, 2.0 * 0.5
    expected_q = torch.tensor([[a, 0, c, 0], [0, a, 0, c], [c, 0, v, 0], [0, c, 0, v]], dtype=F64)
    torch.testing.assert_close(f, expected_f)
    torch.testing.assert_close(q, expected_q)


def test_kalman_is_consistent_and_keeps_covariance_symmetric_psd(
    generator: torch.Generator,
) -> None:
    """Simulated CV tracks: the normalized estimation error squared averages d = 4."""
    tracks, steps, dt = 2000, 30, 0.5
    f, q = constant_velocity_model(dt, 0.5, dtype=F64)
    h, r = position_measurement_model(1.5, dtype=F64)
    chol_q, chol_r = torch.linalg.cholesky(q), torch.linalg.cholesky(r)
    p0 = torch.diag(torch.tensor([25.0, 25.0, 4.0, 4.0], dtype=F64))
    truth = torch.randn(tracks, 4, generator=generator, dtype=F64) @ torch.linalg.cholesky(p0).T
    belief = GaussianBelief(torch.zeros(tracks, 4, dtype=F64), p0.expand(tracks, 4, 4))
    for _ in range(steps):
        truth = truth @ f.T + torch.randn(tracks, 4, generator=generator, dtype=F64) @ chol_q.T
        z = truth @ h.T + torch.randn(tracks, 2, generator=generator, dtype=F64) @ chol_r.T
        valid = torch.rand(tracks, generator=generator) < 0.7
        belief = kalman_update(kalman_predict(belief, f, q), z, h, r, valid_mask=valid)
        assert torch.equal(belief.cov, belief.cov.transpose(-1, -2))
        assert float(torch.linalg.eigvalsh(belief.cov).min()) > 0
    err = (truth - belief.mean).unsqueeze(-1)
    nees = (err.transpose(-1, -2) @ torch.linalg.solve(belief.cov, err)).flatten()
    # NEES ~ chi^2_4: mean 4, std of the average sqrt(8 / tracks) = 0.063; 4 sigma.
    assert abs(float(nees.mean()) - 4.0) < 4 * math.sqrt(8 / tracks)


def test_kalman_update_without_measurement_returns_prior() -> None:
    belief = GaussianBelief(
        torch.randn(3, 4, dtype=F64), 2 * torch.eye(4, dtype=F64).repeat(3, 1, 1)
    )
    h, r = position_measurement_model(1.0, dtype=F64)
    valid = torch.tensor([True, False, True])
    post = kalman_update(belief, torch.zeros(3, 2, dtype=F64), h, r, valid_mask=valid)
    assert torch.equal(post.mean[1], belief.mean[1])
    assert torch.equal(post.cov[1], belief.cov[1])
    assert not torch.equal(post.cov[0], belief.cov[0])


def test_kalman_float32_covariance_stays_symmetric_psd_over_many_steps(
    generator: torch.Generator,
) -> None:
    f, q = constant_velocity_model(0.1, 1e-3)
    h, r = position_measurement_model(0.01)
    belief = GaussianBelief(torch.zeros(64, 4), 100 * torch.eye(4).repeat(64, 1, 1))
    for _ in range(500):
        belief = kalman_update(
            kalman_predict(belief, f, q), torch.randn(64, 2, generator=generator), h, r
        )
    assert torch.equal(belief.cov, belief.cov.transpose(-1, -2))
    eig = torch.linalg.eigvalsh(belief.cov.double())
    assert float(eig.min()) > -1e-6 * float(eig.max())


# --------------------------------------------------------------------------- covariance intersection


def _correlated_pair(n: int, generator: torch.Generator):
    """Two 2-D estimates e_m = c + u_m sharing the error c: Cov(e_1, e_2) = P_c."""
    pc = torch.tensor([[1.0, 0.3], [0.3, 0.6]], dtype=F64)
    u1 = torch.tensor([[0.3, 0.0], [0.0, 1.2]], dtype=F64)
    u2 = torch.tensor([[1.0, -0.2], [-0.2, 0.2]], dtype=F64)
    covs = torch.stack([pc + u1, pc + u2])
    common = torch.randn(n, 2, generator=generator, dtype=F64) @ torch.linalg.cholesky(pc).T
    own1 = torch.randn(n, 2, generator=generator, dtype=F64) @ torch.linalg.cholesky(u1).T
    own2 = torch.randn(n, 2, generator=generator, dtype=F64) @ torch.linalg.cholesky(u2).T
    errors = torch.stack([common + own1, common + own2], dim=1)  # [n, 2, 2]: truth is 0
    return errors, covs


@pytest.mark.parametrize("criterion", ["trace", "det"])
def test_ci_is_never_overconfident_while_naive_fusion_is(
    criterion: str, generator: torch.Generator
) -> None:
    n = 200_000
    errors, covs = _correlated_pair(n, generator)
    # One covariance set [M, d, d] broadcast against n pairs of estimates [n, M, d].
    ci, omega = covariance_intersection(errors, covs, criterion)  # type: ignore[arg-type]
    assert omega.shape == (n, 2) and ci.cov.shape == (n, 2, 2)
    assert 0.01 < float(omega[0, 0]) < 0.99  # a genuine mixture, not one estimate alone
    empirical = ci.mean.T @ ci.mean / n
    # Sampling error of a covariance entry is ~sqrt(2/n) = 0.3% of its scale: allow 2%.
    tol = 0.02 * float(ci.cov[0].trace())
    assert float(torch.linalg.eigvalsh(ci.cov[0] - empirical).min()) > -tol
    naive = independent_gaussian_fusion(errors, covs)
    empirical_naive = naive.mean.T @ naive.mean / n
    # The naive covariance claims far less error than there is.
    assert float(torch.linalg.eigvalsh(naive.cov[0] - empirical_naive).min()) < -0.1
    assert float(empirical_naive.trace()) > 1.3 * float(naive.cov[0].trace())


@pytest.mark.parametrize("criterion", ["trace", "det"])
def test_ci_weights_are_optimal(criterion: str, generator: torch.Generator) -> None:
    b, d = 6, 3
    a = torch.randn(b, 3, d, d, generator=generator, dtype=F64)
    covs = a @ a.transpose(-1, -2) + 0.1 * torch.eye(d, dtype=F64)
    means = torch.randn(b, 3, d, generator=generator, dtype=F64)
    info = torch.linalg.inv(covs)
    # M = 2: golden section reaches the minimum over a fine grid of omega.
    _, w2 = covariance_intersection(means[:, :2], covs[:, :2], criterion)  # type: ignore[arg-type]
    grid = torch.linspace(0, 1, 2001, dtype=F64)
    cand = torch.stack([grid, 1 - grid], -1)[:, None].expand(-1, b, 2)
    f_grid = _ci_objective(info[:, :2].expand(2001, -1, -1, -1, -1), cand, criterion).amin(0)
    f_gold = _ci_objective(info[:, :2], w2, criterion)
    assert bool((f_gold <= f_grid + 1e-9 * f_grid.abs()).all())
    # M = 3: mirror descent is within 0.1% of a simplex grid search (step 0.01) and never
    # worse than Niehsen's closed form.
    _, w3 = covariance_intersection(means, covs, criterion)  # type: ignore[arg-type]
    assert torch.allclose(w3.sum(-1), torch.ones(b, dtype=F64))
    assert bool((w3 >= 0).all())
    s = torch.linspace(0, 1, 101, dtype=F64)
    w1, w2g = torch.meshgrid(s, s, indexing="ij")
    keep = w1 + w2g <= 1 + 1e-12
    simplex = torch.stack([w1[keep], w2g[keep], (1 - w1 - w2g)[keep].clamp_min(0)], -1)
    f_simplex = _ci_objective(
        info.expand(simplex.shape[0], -1, -1, -1, -1), simplex[:, None].expand(-1, b, 3), criterion
    ).amin(0)
    f_mirror = _ci_objective(info, w3, criterion)
    assert bool((f_mirror <= f_simplex + 1e-3 * f_simplex.abs()).all())
    inv_tr = 1 / covs.diagonal(dim1=-2, dim2=-1).sum(-1)
    f_niehsen = _ci_objective(info, inv_tr / inv_tr.sum(-1, keepdim=True), criterion)
    assert bool((f_mirror <= f_niehsen).all())


def test_ci_of_identical_estimates_is_that_estimate(generator: torch.Generator) -> None:
    a = torch.randn(4, 4, generator=generator, dtype=F64)
    p = a @ a.T + torch.eye(4, dtype=F64)
    x = torch.randn(4, dtype=F64)
    for m in (1, 2, 4):
        fused, omega = covariance_intersection(x.expand(m, 4), p.expand(m, 4, 4))
        torch.testing.assert_close(fused.cov, p)
        torch.testing.assert_close(fused.mean, x)
        assert omega.shape == (m,)


_AXES = ((0, 2), (1, 3))


def _block_diagonal(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Covariances ``[*shape, 4, 4]``, block diagonal over the index pairs of ``_AXES``."""
    covs = torch.zeros(*shape, 4, 4, dtype=F64)
    for axis in _AXES:
        a = torch.randn(*shape, 2, 2, generator=generator, dtype=F64)
        idx = torch.tensor(axis)
        covs[..., idx[:, None], idx] = a @ a.transpose(-1, -2) + 0.1 * torch.eye(2, dtype=F64)
    return covs


@pytest.mark.parametrize("criterion", ["trace", "det"])
@pytest.mark.parametrize("m", [1, 2, 3, 5])
def test_blockwise_ci_is_the_dense_ci(criterion: str, m: int, generator: torch.Generator) -> None:
    covs = _block_diagonal((6, 3, m), generator)
    means = torch.randn(6, 3, m, 4, generator=generator, dtype=F64)
    dense, w_dense = covariance_intersection(means, covs, criterion, 30)  # type: ignore[arg-type]
    fused, w = covariance_intersection(means, covs, criterion, 30, blocks=_AXES)  # type: ignore[arg-type]
    assert w.shape == w_dense.shape and fused.cov.shape == dense.cov.shape
    # Golden section stops within 0.618^30 ~ 5e-7 of the minimum; rounding picks the side.
    torch.testing.assert_close(w, w_dense, rtol=0, atol=1e-5)
    torch.testing.assert_close(fused.mean, dense.mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused.cov, dense.cov, rtol=1e-5, atol=1e-5)
    # One covariance set broadcast against many means, as with a dense set.
    set_fused, set_w = covariance_intersection(means, covs[0, 0], criterion, 30, blocks=_AXES)  # type: ignore[arg-type]
    one, _ = covariance_intersection(means[0, 0], covs[0, 0], criterion, 30, blocks=_AXES)  # type: ignore[arg-type]
    assert set_fused.mean.shape == (6, 3, 4) and set_w.shape == (6, 3, m)
    torch.testing.assert_close(set_fused.mean[0, 0], one.mean)
    torch.testing.assert_close(set_fused.cov[0, 0], one.cov)


def test_blockwise_ci_reads_only_the_blocks(generator: torch.Generator) -> None:
    covs = _block_diagonal((4, 3), generator)
    means = torch.randn(4, 3, 4, generator=generator, dtype=F64)
    coupled = covs.clone()
    coupled[..., 0, 1] = coupled[..., 1, 0] = 0.05  # an entry outside the blocks
    fused, _ = covariance_intersection(means, covs, blocks=_AXES)
    same, _ = covariance_intersection(means, coupled, blocks=_AXES)
    assert torch.equal(fused.cov, same.cov) and torch.equal(fused.mean, same.mean)
    assert bool((fused.cov[..., 0, 1] == 0).all()) and bool((fused.cov[..., 0, 3] == 0).all())


def test_independent_gaussian_fusion_scalar() -> None:
    means = torch.tensor([[1.0], [4.0]], dtype=F64)
    covs = torch.tensor([[[2.0]], [[6.0]]], dtype=F64)
    fused = independent_gaussian_fusion(means, covs)
    assert float(fused.cov) == pytest.approx(1 / (1 / 2 + 1 / 6))
    assert float(fused.mean) == pytest.approx((1 / 2 + 4 / 6) * 1.5)


# --------------------------------------------------------------------------- log-odds fusion


def test_independent_sum_is_bayes_and_double_counts_shared_information() -> None:
    prior = -1.0
    own = torch.tensor([[0.5, -2.0]])
    received = torch.tensor([[[1.5, -1.0]], [[0.0, 3.0]]])[None]  # [1, M=2, H=1, W=2]
    fused = independent_logodds_sum(own[None], received, prior)
    torch.testing.assert_close(fused[0], own + (received[0] - prior).sum(0))
    # One shared observation, fused from two agents that both hold it: counted twice.
    shared = bayes_update(
        torch.full((1, 1, 1, 1), prior),
        torch.ones(1, 1, 1, 1, dtype=torch.bool),
        torch.ones(1, 1, 1, 1, dtype=torch.bool),
        0.8,
        0.1,
    )[0, 0]
    twice = independent_logodds_sum(shared, shared.unsqueeze(0), prior)
    torch.testing.assert_close(twice - prior, 2 * (shared - prior))
    conservative = weighted_logodds_average(torch.stack([shared, shared]), torch.ones(2))
    torch.testing.assert_close(conservative, shared)


def test_weighted_average_is_the_normalized_geometric_mean(generator: torch.Generator) -> None:
    logodds = torch.randn(5, 3, 4, 4, generator=generator, dtype=F64) * 3
    weights = torch.rand(5, 3, generator=generator, dtype=F64)
    fused = weighted_logodds_average(logodds, weights)
    w = (weights / weights.sum(-1, keepdim=True))[..., None, None]
    p = torch.sigmoid(logodds)
    occ = (w * torch.log(p)).sum(-3).exp()
    emp = (w * torch.log1p(-p)).sum(-3).exp()
    torch.testing.assert_close(torch.sigmoid(fused), occ / (occ + emp))
    assert bool((fused <= logodds.amax(-3) + 1e-12).all())
    assert bool((fused >= logodds.amin(-3) - 1e-12).all())


def test_fusion_centre_product_equals_one_agent_seeing_everything(
    generator: torch.Generator,
) -> None:
    b, n, h, w, prior = 8, 3, 4, 4, -2.0
    lo = torch.full((b, n, h, w), prior, dtype=F64)
    det = torch.rand(b, n, h, w, generator=generator) < 0.3
    rng = torch.rand(b, n, h, w, generator=generator) < 0.6
    agents = bayes_update(lo, det & rng, rng, 0.8, 0.1)
    delivered = torch.rand(b, n, generator=generator) < 0.6
    delivered[0] = False
    centre = fusion_centre_logodds(agents, delivered, prior)
    # Reference: one belief updated with every delivered agent's scan in turn.
    ref = torch.full((b, h, w), prior, dtype=F64)
    for i in range(n):
        upd = bayes_update(ref, (det & rng)[:, i], rng[:, i], 0.8, 0.1)
        ref = torch.where(delivered[:, i, None, None], upd, ref)
    torch.testing.assert_close(centre, ref)
    avg = fusion_centre_logodds(agents, delivered, prior, method="average")
    assert torch.equal(avg[0], torch.full((h, w), prior, dtype=F64))
    d = delivered[1:, :, None, None].to(F64)
    torch.testing.assert_close(avg[1:], (d * agents[1:]).sum(1) / d.sum(1).clamp_min(1))


# --------------------------------------------------------------------------- consensus


def test_consensus_preserves_the_average_and_converges_at_the_slem_rate() -> None:
    g = torch.Generator().manual_seed(3)
    b, n = 4, 10
    # A ring (connected) plus random chords, different per world.
    ring = torch.roll(torch.eye(n, dtype=torch.bool), 1, dims=1).expand(b, n, n)
    chords = (torch.rand(b, n, n, generator=g) < 0.15).triu(1)
    adj = ring | ring.transpose(1, 2) | chords | chords.transpose(1, 2)
    assert bool(is_connected(adj).all())
    w = metropolis_weights(adj, dtype=F64)
    rho = second_largest_eigenvalue_modulus(w)
    assert bool((rho < 1).all())
    x0 = torch.randn(b, n, 3, generator=g, dtype=F64)
    mean = x0.mean(dim=1, keepdim=True)
    e0 = (x0 - mean).flatten(1).norm(dim=-1)
    errs = []
    for t in range(0, 61):
        xt = consensus_average(x0, w, t)
        torch.testing.assert_close(xt.mean(dim=1, keepdim=True), mean, atol=1e-12, rtol=0)
        et = (xt - mean).flatten(1).norm(dim=-1)
        assert bool((et <= rho**t * e0 * (1 + 1e-9) + 1e-14).all())  # Xiao & Boyd bound
        errs.append(et)
    # Asymptotic rate: (e_60 / e_30)^(1/30) approaches rho; tolerance 2%.
    measured = (errs[60] / errs[30]) ** (1 / 30)
    torch.testing.assert_close(measured, rho, rtol=0.02, atol=0)


def test_consensus_zero_rounds_is_identity(generator: torch.Generator) -> None:
    x = torch.randn(2, 3, 4, 4, generator=generator)
    w = torch.full((2, 3, 3), 1 / 3)
    assert torch.equal(consensus_average(x, w, 0), x)
    torch.testing.assert_close(consensus_average(x, w, 1), x.mean(1, keepdim=True).expand_as(x))


# --------------------------------------------------------------------------- bad inputs


def test_bad_inputs_raise_value_errors() -> None:
    x = torch.zeros(2, 3, 4)
    w = torch.eye(3).repeat(2, 1, 1)
    with pytest.raises(ValueError, match="rounds=-1"):
        consensus_average(x, w, -1)
    with pytest.raises(ValueError, match="rounds=1.5"):
        consensus_average(x, w, 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="W has shape"):
        consensus_average(x, w[:, :2], 1)
    with pytest.raises(ValueError, match="negative"):
        weighted_logodds_average(torch.zeros(2, 4, 4), torch.tensor([1.0, -0.5]))
    with pytest.raises(ValueError, match="sums to 0"):
        weighted_logodds_average(torch.zeros(2, 4, 4), torch.zeros(2))
    means, covs = torch.zeros(2, 2), torch.eye(2).repeat(2, 1, 1)
    with pytest.raises(ValueError, match="criterion"):
        covariance_intersection(means, covs, "max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="iterations"):
        covariance_intersection(means, covs, iterations=0)
    with pytest.raises(ValueError, match="covs"):
        covariance_intersection(means, covs[:, :1])
    for blocks in (((0, 0),), ((0, 1), (1, 0)), ((0, 2),), ((0, 1, 2),), "01", ((0, True),)):
        with pytest.raises(ValueError, match=r"blocks=.*partition range\(2\)"):
            covariance_intersection(means, covs, blocks=blocks)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="method"):
        fusion_centre_logodds(
            torch.zeros(1, 2, 3, 3), torch.ones(1, 2, dtype=torch.bool), 0.0, "max"
        )  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="delivered"):
        fusion_centre_logodds(torch.zeros(1, 2, 3, 3), torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="received"):
        independent_logodds_sum(torch.zeros(3, 3), torch.zeros(2, 4, 3))
    with pytest.raises(ValueError, match="cov"):
        GaussianBelief(torch.zeros(3, 4), torch.zeros(3, 4, 3))
    with pytest.raises(ValueError, match="H has shape"):
        kalman_update(
            GaussianBelief(torch.zeros(4), torch.eye(4)),
            torch.zeros(2),
            torch.zeros(2, 3),
            torch.eye(2),
        )
    with pytest.raises(ValueError, match="dt"):
        constant_velocity_model(0.0, 1.0)
