"""Occupancy-grid beliefs: Bayes' rule against enumeration, sensor statistics, fast == dense."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from agentcomm.beliefs import (
    bayes_update,
    bayes_update_window,
    cell_centres,
    cell_index,
    entropy,
    kl_to_truth,
    mse_to_truth,
    prior_logodds,
    probability,
    sense,
    sense_window,
    sensor_increments,
    window_cells,
    window_offsets,
    window_table,
)

PD, PFA = 0.8, 0.1


def _logit(p: torch.Tensor) -> torch.Tensor:
    return torch.log(p) - torch.log1p(-p)


def _posterior_by_enumeration(
    prior: torch.Tensor, scans: list[tuple[torch.Tensor, torch.Tensor]], pd: float, pfa: float
) -> torch.Tensor:
    """Exact marginals P(cell occupied | all scans) by summing over all 2^C worlds."""
    cells = prior.numel()
    p = prior.flatten().tolist()
    marg = [0.0] * cells
    total = 0.0
    for world in itertools.product((0, 1), repeat=cells):
        w = math.prod(p[c] if x else 1 - p[c] for c, x in enumerate(world))
        for det, rng in scans:
            for c, x in enumerate(world):
                if not rng.flatten()[c]:
                    continue
                fired = bool(det.flatten()[c])
                like = pd if x else pfa
                w *= like if fired else 1 - like
        total += w
        for c, x in enumerate(world):
            if x:
                marg[c] += w
    return torch.tensor(marg, dtype=torch.float64).reshape(prior.shape) / total


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bayes_update_equals_enumeration_of_all_worlds(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    prior = torch.rand(2, 2, generator=g, dtype=torch.float64) * 0.8 + 0.1
    scans = [
        (torch.rand(2, 2, generator=g) < 0.5, torch.rand(2, 2, generator=g) < 0.75)
        for _ in range(3)
    ]
    logodds = _logit(prior)[None, None]
    for det, rng in scans:
        det = det & rng
        logodds = bayes_update(logodds, det[None, None], rng[None, None], PD, PFA)
    exact = _posterior_by_enumeration(prior, [(d & r, r) for d, r in scans], PD, PFA)
    torch.testing.assert_close(probability(logodds)[0, 0], exact, atol=1e-6, rtol=0)


@pytest.mark.parametrize("method", ["window", "dense"])
def test_sensor_detects_with_pd_and_false_alarms_with_pfa_only_in_range(
    method: str, generator: torch.Generator
) -> None:
    b, n, h, w, radius = 400, 3, 12, 12, 2.5
    true_map = torch.rand(b, h, w, generator=generator) < 0.3
    pos = torch.rand(b, n, 2, generator=generator) * torch.tensor([h, w])
    det, in_range = sense(true_map, pos, radius, PD, PFA, generator, method=method)
    assert det.shape == in_range.shape == (b, n, h, w)
    assert not bool((det & ~in_range).any())
    occupied = true_map.unsqueeze(1).expand_as(det)
    for mask, p in ((in_range & occupied, PD), (in_range & ~occupied, PFA)):
        trials = int(mask.sum())
        rate = int((det & mask).sum()) / trials
        # 4 binomial standard deviations: fails by chance with probability ~6e-5.
        assert abs(rate - p) < 4 * math.sqrt(p * (1 - p) / trials), (rate, p, trials)


def test_in_range_is_the_disk_of_cell_centres() -> None:
    g = torch.Generator().manual_seed(5)
    b, n, h, w, radius = 50, 2, 9, 7, 1.7
    pos = torch.rand(b, n, 2, generator=g, dtype=torch.float64) * torch.tensor([h, w])
    true_map = torch.zeros(b, h, w, dtype=torch.bool)
    _, in_range = sense(true_map, pos, radius, PD, PFA, g)
    rows = torch.arange(h, dtype=torch.float64) + 0.5
    cols = torch.arange(w, dtype=torch.float64) + 0.5
    dist = torch.hypot(
        pos[..., 0, None, None] - rows[:, None], pos[..., 1, None, None] - cols[None, :]
    )
    assert torch.equal(in_range, dist <= radius)
    # pos[..., 0] is the row: an agent at the centre of cell (2, 5) sees that cell.
    one = torch.tensor([[[2.5, 5.5]]], dtype=torch.float64)
    _, rng = sense(torch.zeros(1, h, w, dtype=torch.bool), one, 0.4, PD, PFA, g)
    assert rng[0, 0].nonzero().tolist() == [[2, 5]]


def _positions_with_border_cases(b: int, n: int, h: int, w: int, g: torch.Generator):
    pos = torch.rand(b, n, 2, generator=g) * torch.tensor([h + 6.0, w + 6.0]) - 3.0
    pos[0, 0] = torch.tensor([float(h), float(w)])  # exactly on the far corner
    pos[0, 1] = torch.tensor([0.0, 0.0])
    pos[1, 0] = torch.tensor([-2.2, 4.5])  # off the grid, still sees row 0
    pos[1, 1] = torch.tensor([3.0, float(w) + 1.9])
    return pos


@pytest.mark.parametrize("radius", [0.4, 1.0, 2.0, 2.5, 3.3])
@pytest.mark.parametrize("clamp", [None, 3.0])
def test_window_path_equals_dense_path_exactly(radius: float, clamp: float | None) -> None:
    g = torch.Generator().manual_seed(7)
    b, n, h, w = 64, 2, 10, 13
    true_map = torch.rand(b, h, w, generator=g) < 0.4
    pos = _positions_with_border_cases(b, n, h, w, g)
    # pd=1, pfa=0 makes the sensor deterministic, so the two paths must agree cell by cell.
    det_d, rng_d = sense(true_map, pos, radius, 1.0, 0.0, g, method="dense")
    obs = sense_window(true_map, pos, radius, 1.0, 0.0, g)
    det_w, rng_w = obs.to_dense()
    assert torch.equal(rng_w, rng_d)
    assert torch.equal(det_w, det_d)
    assert torch.equal(det_d, true_map.unsqueeze(1) & rng_d)
    # Random sensor readings, random beliefs (beyond the clamp too): identical updates.
    obs = sense_window(true_map, pos, radius, PD, PFA, g)
    logodds = torch.randn(b, n, h, w, generator=g) * 4
    dense = bayes_update(logodds, *obs.to_dense(), PD, PFA, clamp=clamp)
    fast = bayes_update_window(logodds, obs, PD, PFA, clamp=clamp)
    assert torch.equal(fast, dense)
    assert not torch.equal(fast, logodds)


def test_window_offsets_cover_the_disk_from_any_point_of_the_cell() -> None:
    radius = 2.0
    offsets = window_offsets(radius)
    assert offsets.shape == (21, 2)
    # Brute force: cells within range of some point on a fine lattice of the unit cell.
    f = torch.linspace(0, 1, 41, dtype=torch.float64)
    fi, fj = torch.meshgrid(f, f, indexing="ij")
    d = torch.arange(-4, 5, dtype=torch.float64)
    di, dj = torch.meshgrid(d, d, indexing="ij")
    dist = torch.hypot(
        di[..., None, None] + 0.5 - fi, dj[..., None, None] + 0.5 - fj
    )  # [9, 9, 41, 41]
    reachable = (dist <= radius).flatten(-2).any(-1)
    brute = {(int(a), int(c)) for a, c in zip(di[reachable], dj[reachable])}
    assert {tuple(o) for o in offsets.tolist()} == brute


@pytest.mark.parametrize("radius", [0.4, 1.0, 2.0, 2.5])
def test_window_disk_is_the_square_masked(radius: float) -> None:
    # One window: the square crop of reach floor(r + 1/2), the disk the rows of it that pass
    # the distance test, in the same row-major order.
    square = window_offsets(radius, shape="square")
    reach = math.floor(radius + 0.5)
    assert square.shape == ((2 * reach + 1) ** 2, 2)
    assert square.tolist() == [
        [i, j] for i in range(-reach, reach + 1) for j in range(-reach, reach + 1)
    ]
    gap = (square.abs().double() - 0.5).clamp_min(0.0)
    assert torch.equal(window_offsets(radius), square[gap.square().sum(-1) <= radius * radius])
    assert window_offsets(0, shape="square").tolist() == [[0, 0]]
    with pytest.raises(ValueError, match="shape"):
        window_offsets(1.0, shape="ring")
    with pytest.raises(ValueError, match="radius"):
        window_offsets(-1.0, shape="square")


@pytest.mark.parametrize(("radius", "shape"), [(1, "square"), (2, "square"), (1.5, "disk")])
def test_window_cells_index_and_clip_onto_the_grid(radius: float, shape: str) -> None:
    size = 5
    offsets = window_offsets(radius, shape=shape)
    centres = cell_centres(size)
    assert centres.shape == (size * size, 2)
    assert torch.equal(centres[7], torch.tensor([1.5, 2.5]))
    # A point anywhere in a cell (or off the grid) is in the cell cell_index names.
    jitter = torch.rand(size * size, 2, generator=torch.Generator().manual_seed(0)) - 0.5
    assert torch.equal(cell_index(centres + 0.999 * jitter, size), torch.arange(size * size))
    assert cell_index(torch.tensor([[-3.0, 2.5], [9.0, 9.0]]), size).tolist() == [2, 24]
    # Every cell as a centre, batched [size, size]: compare with a per-cell loop over the
    # offsets of window_offsets.
    home = torch.arange(size * size).view(size, size)
    flat, inside = window_cells(home, radius, size, shape)
    assert flat.shape == inside.shape == (size, size, offsets.shape[0])
    table = window_table(size, radius, shape)
    assert torch.equal(table[0].view(size, size, -1), flat)
    assert torch.equal(table[1].view(size, size, -1), inside)
    for r, c in itertools.product(range(size), repeat=2):
        for k, (dr, dc) in enumerate(offsets.tolist()):
            row, col = r + dr, c + dc
            assert bool(inside[r, c, k]) == (0 <= row < size and 0 <= col < size)
            clipped = min(max(row, 0), size - 1) * size + min(max(col, 0), size - 1)
            assert int(flat[r, c, k]) == clipped


def test_clamp_bounds_the_belief_and_keeps_it_revisable() -> None:
    b, n, h, w = 1, 1, 5, 5
    logodds = torch.zeros(b, n, h, w)
    logodds[0, 0, 4, 4] = 50.0  # out of range, e.g. from fusion: the clamp bounds it too
    true_map = torch.zeros(b, h, w, dtype=torch.bool)
    true_map[0, 1, 1] = True
    pos = torch.tensor([[[1.5, 1.5]]])
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        obs = sense_window(true_map, pos, 1.0, 0.99, 0.01, g)
        logodds = bayes_update_window(logodds, obs, 0.99, 0.01, clamp=5.0)
    assert float(logodds.abs().max()) <= 5.0
    assert float(logodds[0, 0, 1, 1]) == pytest.approx(5.0)
    assert float(logodds[0, 0, 4, 4]) == 5.0
    # The target leaves: from +L, ceil(L / |miss|) misses overturn the belief; without the
    # clamp the 40 hits (+184 nats) would take ~40 misses.
    _, miss = sensor_increments(0.99, 0.01)
    looked = torch.ones(b, n, h, w, dtype=torch.bool)
    nothing = torch.zeros(b, n, h, w, dtype=torch.bool)
    for _ in range(math.ceil(5.0 / -miss)):
        logodds = bayes_update(logodds, nothing, looked, 0.99, 0.01, clamp=5.0)
    assert float(logodds[0, 0, 1, 1]) < 0


def test_increments_and_summaries_match_closed_forms() -> None:
    hit, miss = sensor_increments(PD, PFA)
    assert hit == pytest.approx(math.log(8.0))
    assert miss == pytest.approx(math.log(0.2 / 0.9))
    prior = prior_logodds((2, 3, 4, 5), 0.2, dtype=torch.float64)
    assert prior.shape == (2, 3, 4, 5)
    torch.testing.assert_close(probability(prior), torch.full_like(prior, 0.2))
    h2 = -(0.2 * math.log2(0.2) + 0.8 * math.log2(0.8))
    torch.testing.assert_close(entropy(prior), torch.full_like(prior, h2))
    torch.testing.assert_close(
        entropy(prior, "sum"), torch.full((2, 3), 20 * h2, dtype=torch.float64)
    )
    # Certain beliefs have ~0 entropy, and the stable formula gives no NaN at large |l|.
    sure = torch.tensor([[-80.0, 80.0]], dtype=torch.float64)
    assert float(entropy(sure).max()) < 1e-30
    truth = torch.zeros(2, 4, 5, dtype=torch.bool)
    truth[:, 0, :] = True  # 5 occupied cells of 20
    kl = kl_to_truth(prior, truth)
    expected = 5 * -math.log2(0.2) + 15 * -math.log2(0.8)
    torch.testing.assert_close(kl, torch.full((2, 3), expected, dtype=torch.float64))
    assert float(kl_to_truth(sure, torch.tensor([[False, True]]), "none").max()) < 1e-30
    mse = mse_to_truth(prior, truth)
    torch.testing.assert_close(
        mse, torch.full((2, 3), (5 * 0.64 + 15 * 0.04) / 20, dtype=torch.float64)
    )


def test_bad_inputs_raise_value_errors(generator: torch.Generator) -> None:
    tm = torch.zeros(2, 4, 4, dtype=torch.bool)
    pos = torch.ones(2, 3, 2)
    lo = torch.zeros(2, 3, 4, 4)
    mask = torch.zeros(2, 3, 4, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="pd=0.1 must exceed pfa=0.2"):
        sense(tm, pos, 1.0, 0.1, 0.2, generator)
    with pytest.raises(ValueError, match="pd=1.0"):
        bayes_update(lo, mask, mask, 1.0, 0.1)
    with pytest.raises(ValueError, match="pfa=0.0"):
        sensor_increments(0.9, 0.0)
    with pytest.raises(ValueError, match="radius"):
        sense(tm, pos, 0.0, PD, PFA, generator)
    with pytest.raises(ValueError, match="true_map"):
        sense(tm.float(), pos, 1.0, PD, PFA, generator)
    with pytest.raises(ValueError, match="pos"):
        sense(tm, torch.ones(2, 3, 3), 1.0, PD, PFA, generator)
    with pytest.raises(ValueError, match="pos"):
        sense(tm, torch.full((2, 3, 2), math.nan), 1.0, PD, PFA, generator)
    with pytest.raises(ValueError, match="method"):
        sense(tm, pos, 1.0, PD, PFA, generator, method="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="detections"):
        bayes_update(lo, mask[..., :3], mask, PD, PFA)
    with pytest.raises(ValueError, match="clamp"):
        bayes_update(lo, mask, mask, PD, PFA, clamp=-1.0)
    obs = sense_window(tm, pos, 1.0, PD, PFA, generator)
    with pytest.raises(ValueError, match="logodds"):
        bayes_update_window(lo[:, :2], obs, PD, PFA)
    with pytest.raises(ValueError, match="p0"):
        prior_logodds((1, 1, 2, 2), 1.0)
    with pytest.raises(ValueError, match="reduction"):
        entropy(lo, "max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="true_map"):
        kl_to_truth(lo, torch.zeros(2, 5, 5, dtype=torch.bool))
