"""Every shipped model loads and reproduces the figure recorded beside it
(``expected.json``, written by ``python experiments/record_shipped.py``)."""

from __future__ import annotations

import json

import pytest

from agentcomm.decoders.bundle import load_bundle, shipped_bundles
from agentcomm.experiments.evaluate import evaluate, make_policy

BUNDLES = shipped_bundles()


def test_something_is_shipped():
    assert BUNDLES, "no decoder bundle ships with the package"


@pytest.mark.parametrize("name", sorted(BUNDLES))
def test_shipped_bundle_reproduces_its_recorded_success(name):
    path = BUNDLES[name]
    bundle = load_bundle(path)
    assert sorted(bundle.jscc) == [16, 32, 64]
    rec = json.loads((path / "expected.json").read_text())
    for codec, want in rec["success"].items():
        got = evaluate(
            rec["env_id"],
            make_policy("expert"),
            rec["episodes"],
            rec["seed"],
            {"comm": {"budget": rec["budget"], "codec": codec}},
        )["success"]
        assert abs(got - want) <= rec["tolerance"], (codec, got, want)
