"""What the science reads from the world stays put: each expert's success and bits per
agent-step, every scenario under every coordination mode, at 2,000 episodes, inside the 95%
interval of the recorded reference (``tests/data/make_expert_reference.py``).

Goldens pin trajectories bit for bit; a change meant to alter floating-point order
regenerates them, and must then still pass this. Success: the measured rate lies in the
reference's Wilson 95% interval. Bits: within 2% of the reference (the accounting is
deterministic given the trajectories, so only the trajectories' drift moves it).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from agentcomm.experiments.stats import wilson_interval

_SPEC = importlib.util.spec_from_file_location(
    "make_expert_reference", Path(__file__).resolve().parent / "data" / "make_expert_reference.py"
)
reference = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(reference)
RECORDED = json.loads(reference.REFERENCE.read_text())


def test_the_reference_covers_every_scenario_and_mode():
    assert sorted(RECORDED) == sorted(f"{e}__{m}" for e, m in reference.cases())
    assert all(row["episodes"] >= 2000 for row in RECORDED.values())


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(RECORDED))
def test_expert_success_and_bits_stay_inside_the_reference_interval(case):
    env_id, mode = case.split("__")
    want = RECORDED[case]
    got = reference.measure(env_id, mode, want["episodes"])
    _, low, high = wilson_interval(want["successes"], want["episodes"])
    rate = got["successes"] / got["episodes"]
    assert low <= rate <= high, (case, rate, (low, high))
    assert got["bits_per_agent_step"] == pytest.approx(want["bits_per_agent_step"], rel=0.02)
