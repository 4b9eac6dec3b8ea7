"""Bit-identical replay of the golden trajectories (``tests/data/make_goldens.py``).

Every scenario under every coordination mode, plus configurations that take the other
fusion rules, codecs and channels, is run again from the same seeds and random actions
and compared with ``torch.equal`` on the platform that recorded them (elsewhere within
:data:`CROSS_PLATFORM_TOL`; ``make_goldens.py`` says why): speed work on the world must not
change what it computes. A change that is meant to alter the trajectories (a new random draw, another
float order) regenerates the goldens with ``python tests/data/make_goldens.py`` and says
why in its commit.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

_SPEC = importlib.util.spec_from_file_location(
    "make_goldens", Path(__file__).resolve().parent / "data" / "make_goldens.py"
)
goldens = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(goldens)


def test_goldens_are_small():
    total = sum(path.stat().st_size for path in goldens.GOLDEN_DIR.glob("*.safetensors"))
    assert total < 5_000_000


#: Tolerance of the comparison on another platform than the recording one (relative and
#: absolute, on floats; counts, flags and every other discrete value must match exactly).
CROSS_PLATFORM_TOL = 1e-4


@pytest.mark.parametrize("name", list(goldens.cases()))
def test_replay_is_bit_identical(name):
    expected = goldens.load(name)
    here = goldens.platform_fingerprint()
    same_platform = goldens.recorded_on(name) == here
    if not same_platform and name in goldens.CHAOTIC:
        pytest.skip(f"{name} is compared only where it was recorded ({goldens.recorded_on(name)})")
    actual = goldens.record(name)
    assert sorted(actual) == sorted(expected)
    for key, want in expected.items():
        got = actual[key]
        assert got.dtype == want.dtype and got.shape == want.shape, (key, got.dtype, want.dtype)
        if not same_platform and got.dtype.is_floating_point:
            close = torch.isclose(
                got.double(), want.double(), rtol=CROSS_PLATFORM_TOL, atol=CROSS_PLATFORM_TOL
            )
            assert bool(close.all()), (
                f"{name}: {key} differs beyond the cross-platform tolerance "
                f"(recorded on {goldens.recorded_on(name)!r}, replayed on {here!r})"
            )
            continue
        if not torch.equal(got, want):
            # The first step that differs, for the report (obs rows are every OBS_EVERY-th).
            rows = (got != want).reshape(got.shape[0], -1).any(1).nonzero().flatten()
            first = int(rows[0]) if key not in ("obs0",) else 0
            diff = (got.double() - want.double()).abs().max().item()
            pytest.fail(f"{name}: {key} differs first at row {first} (max |diff| {diff:.3g})")


def test_replay_is_bit_identical_under_deterministic_algorithms():
    # Training code may switch torch to deterministic algorithms, which refuses some
    # in-place scatters; the world must run and compute the same there.
    name = "SearchRescue-v0__hybrid"
    expected = goldens.record(name)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        actual = goldens.record(name)
    finally:
        torch.use_deterministic_algorithms(previous)
    for key, want in expected.items():
        assert torch.equal(actual[key], want), key
