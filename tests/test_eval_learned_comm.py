"""``experiments/eval_learned_comm.py``: the shipped conditioned policies are its defaults,
and a policy's point runs on the expert's worlds."""

from __future__ import annotations

import math

import pytest

SCENARIOS = ("SearchRescue-v0", "TargetTracking-v0")


def test_shipped_conditioned_policies_are_found_for_search_rescue_and_tracking():
    from agentcomm.experiments.eval_learned_comm import conditioned_policies

    found = conditioned_policies()
    assert found["SearchRescue-v0"].name == "searchrescue-conditioned-dppo"
    assert found["TargetTracking-v0"].name == "targettracking-conditioned-dppo"


def test_quick_run_evaluates_the_shipped_policies(tmp_path, capsys):
    """Without ``--policy`` the script picks the shipped conditioned policies up: no ``nan``
    among their keys."""
    from agentcomm.experiments.eval_learned_comm import main

    argv = ["--quick", "--episodes", "4", "--budgets", "0", "16", "--scenarios", *SCENARIOS]
    result = main([*argv, "--csv", str(tmp_path / "points.csv")])
    lines = capsys.readouterr().out.strip().splitlines()
    assert not any("no conditioned policy found" in line for line in lines)
    assert lines[-1].startswith("RESULT ")
    for s in ("searchrescue", "targettracking"):
        for k in (0, 16):
            assert 0.0 <= result[f"{s}_dppo_success_b{k}"] <= 1.0
            assert math.isfinite(result[f"{s}_dppo_bits_b{k}"])
        assert result[f"{s}_dppo_bits_b0"] == 0.0 < result[f"{s}_dppo_bits_b16"]


def test_point_config_runs_the_policy_on_the_experts_worlds():
    """A conditioned policy's point (its training config with drawn caps and power) must
    not draw from the world's generator: the expert scores the same on it as on its own
    point, episode for episode."""
    from agentcomm.config import merged
    from agentcomm.experiments.eval_learned_comm import point_config
    from agentcomm.policies.evaluate import evaluate, load_actor

    trained_on = {
        "observe_operating_point": True,
        "observe_agent_index": True,
        "comm": {"budget": 256, "budget_levels": [0, 4, 16, 64, 256], "mode": "distributed"},
        "channel": {"tx_power_dbm_range": [10.0, 30.0]},
    }
    cfg = point_config(trained_on, 16, "distributed")
    assert cfg["comm"]["budget"] == 16 and cfg["observe_agent_index"]
    assert merged(trained_on, {})["comm"]["budget_levels"] == [0, 4, 16, 64, 256]
    expert, _ = load_actor("expert")
    own = evaluate(expert, "SearchRescue-v0", 128, 128, env_config={"comm": {"budget": 16}})
    on_point = evaluate(expert, "SearchRescue-v0", 128, 128, env_config=cfg)
    assert (on_point.successes, on_point.length_mean) == (own.successes, own.length_mean)
    assert on_point.bits_per_agent_step == own.bits_per_agent_step


@pytest.mark.parametrize("budget", [-1, 1.5, True])
def test_point_config_refuses_a_bad_budget(budget):
    from agentcomm.experiments.eval_learned_comm import point_config

    with pytest.raises(ValueError, match=r"budget=.*integer >= 0"):
        point_config({}, budget, "distributed")


def test_uplink_share_plot_runs_and_sees_the_experts_constant_half(tmp_path, capsys):
    """``experiments/plot_uplink_share.py`` end to end on a few worlds, with the expert as the
    hybrid policy: every share it records is the expert's 0.5, so the correlation is
    undefined; it writes its CSV and PNG and ends with the RESULT line."""
    from agentcomm.experiments.plot_uplink_share import main

    result = main(["--policy", "expert", "--episodes", "8", "--out", str(tmp_path)])
    assert result["pairs"] > 0 and (result["share_mean"], result["share_std"]) == (0.5, 0.0)
    assert math.isnan(result["share_snr_corr"])
    for who, mode in [("policy", "hybrid"), ("reference", "centralized"), ("expert", "hybrid")]:
        key = f"success_{who}_{mode}"
        assert result[f"{key}_low"] <= result[key] <= result[f"{key}_high"]
    assert (tmp_path / "uplink_share.png").stat().st_size > 0
    assert (tmp_path / "uplink_share.csv").read_text().startswith("snr_low_db,")
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("RESULT share_snr_corr=nan")


def test_uplink_share_pairs_refuse_a_mode_without_the_share():
    from agentcomm.experiments.plot_uplink_share import share_pairs
    from agentcomm.policies.evaluate import load_actor

    expert, _ = load_actor("expert")
    with pytest.raises(ValueError, match=r"comm.mode='distributed'.*'hybrid'"):
        share_pairs(expert, "SearchRescue-v0", 2, {"comm": {"mode": "distributed"}})


def test_pareto_ratio_takes_the_smallest_budget_that_reaches_the_experts_top():
    from agentcomm.experiments.eval_learned_comm import pareto_bits_ratio

    budgets = [0, 4, 16]
    expert = [(0.1, 0.0), (1.0, 24.0), (1.0, 36.0)]
    policy = [(0.1, 0.0), (0.997, 12.0), (1.0, 30.0)]
    assert pareto_bits_ratio(budgets, policy, expert) == 30.0 / 36.0
    # Within the goal's tolerance, 0.997 reaches 1.0 at 4 uses.
    assert pareto_bits_ratio(budgets, policy, expert, 0.02) == 12.0 / 36.0
    assert math.isnan(pareto_bits_ratio(budgets, policy[:2] + [(0.9, 30.0)], expert))
    # The budgets' order is the budgets' own, not the lists'.
    assert pareto_bits_ratio(budgets[::-1], policy[::-1], expert[::-1], 0.02) == 12.0 / 36.0
