"""The main job (``agentcomm run``): one evaluation path shared with ``agentcomm eval``, the
``summary.csv`` schema, the three scenarios' figures, and the monotonicity check."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import pytest
import torch

import agentcomm
from agentcomm.cli import main as cli_main
from agentcomm.experiments.execute import (
    SUMMARY_COLUMNS,
    check_monotone,
    run_experiments,
    summarize,
    summary_table,
)
from agentcomm.experiments.study import ExperimentConfig, load_experiment

SCENARIOS = ("SearchRescue-v0", "TargetTracking-v0", "IntentCoverage-v0")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert cli_main(["run", "--quick", "--out", str(out), "--no-progress"]) == 0
    return out, buf.getvalue()


def test_summary_csv_has_exactly_the_schema(quick_run):
    out, printed = quick_run
    with open(out / "summary.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        assert tuple(reader.fieldnames or ()) == SUMMARY_COLUMNS
    assert {r["scenario"] for r in rows} == set(SCENARIOS)
    keys = [
        (r["scenario"], r["policy"], r["mode"], r["codec"], r["budget"], r["snr_db"]) for r in rows
    ]
    assert len(keys) == len(set(keys)), "one row per point"
    for r in rows:
        n = int(r["episodes"])
        p, lo, hi = float(r["success"]), float(r["ci_low"]), float(r["ci_high"])
        assert n >= 1 and 0.0 <= lo <= p <= hi <= 1.0, r
        assert abs(p * n - round(p * n)) < 1e-9, "success is a count of episodes over n"
        assert int(r["budget"]) >= 0 and r["mode"] in ("centralized", "distributed", "hybrid")
        uses, bits = float(r["channel_uses_per_agent_step"]), float(r["bits_per_agent_step"])
        if int(r["budget"]) == 0 and r["codec"] != "raw":
            assert uses == 0.0 and bits == 0.0, r  # no communication
        else:
            assert uses > 0.0, r
    assert any(r["codec"] == "raw" for r in rows), "perfect communication is codec raw"
    for env_id in SCENARIOS:
        assert (out / f"success_{env_id}.png").stat().st_size > 0
    last = printed.strip().splitlines()[-1]
    assert last.startswith("RESULT ") and "scenarios=3" in last and "violations=" in last
    results = json.loads((out / "results.json").read_text())
    assert isinstance(results["monotonicity_violations"], list)


def test_quick_changes_come_from_the_yaml_and_replace_axes_whole(tmp_path):
    (tmp_path / "a.yaml").write_text(
        "name: a\nepisodes: 100\naxes: {comm.mode: [centralized, hybrid], comm.budget: [0, 4]}\n"
        "quick: {episodes: 3, axes: {comm.budget: [4]}}\n"
    )
    cfg = load_experiment(tmp_path / "a.yaml")
    smoke = cfg.smoke()
    assert (smoke.episodes, smoke.axes, smoke.quick) == (3, {"comm.budget": [4]}, {})
    assert cfg.episodes == 100
    with pytest.raises(ValueError, match=r"quick=.*unknown field\(s\) \['episode'\]"):
        ExperimentConfig(quick={"episode": 3})


def _run_one_point(env_id: str, episodes: int, seed: int, point: dict) -> dict:
    cfg = ExperimentConfig(
        name="same", env_id=env_id, episodes=episodes, seeds=(seed,), points=[point]
    )
    (row,) = run_experiments([cfg], workers=1, progress=False)
    return row


def test_main_job_and_agentcomm_eval_agree_on_the_same_worlds(tmp_path, capsys):
    """The main job's runner and ``agentcomm eval`` (its defaults) evaluate one policy on the
    same worlds (seed index 1 of the evaluation split, one batch) with one function: the same
    success, return and accounting, to the last bit. The credit mix makes agents' rewards differ, so
    a return read from one agent would not match."""
    point = {"team_reward_weight": 0.5, "max_steps": 12, "comm.budget": 16}
    row = _run_one_point("SearchRescue-v0", 24, 1, point)
    out = tmp_path / "eval.json"
    config = json.dumps({"team_reward_weight": 0.5, "max_steps": 12, "comm": {"budget": 16}})
    argv = [
        "eval", "--checkpoint", "expert", "--env", "SearchRescue-v0", "--episodes", "24",
        "--seed", "1", "--env-config", config, "--json", str(out),
    ]  # fmt: skip
    assert cli_main(argv) == 0
    capsys.readouterr()
    ev = json.loads(out.read_text())
    assert ev["episodes"] == row["episodes"] == 24
    assert ev["success_rate"] == row["success"]
    assert ev["successes"] == row["successes"]
    assert ev["return_mean"] == row["return"]
    assert ev["channel_uses_per_agent_step"] == row["channel_uses"]
    assert ev["bits_per_agent_step"] == row["bits"]


class _ScriptedWorld:
    """Two worlds of two agents, episodes of 3 steps. World 0 succeeds at step 1 only
    (solved, then lost), world 1 at its last step; agent 0 earns 1 per step, agent 1 earns
    3; world 0 spends 2 channel uses per agent per step, world 1 spends 4 in its first
    step only."""

    num_agents = 2

    def __init__(self, *args, num_envs: int = 2, **kwargs):
        self.num_envs = num_envs
        self.device = torch.device("cpu")
        self.config = SimpleNamespace(max_steps=3)
        self.peer_snr = torch.zeros(num_envs, 2, 2)
        self.fc_snr = torch.zeros(num_envs, 2)
        self.t = 0

    def observation(self) -> torch.Tensor:
        return torch.zeros(self.num_envs, 2, 3)

    def reset(self, seed=None) -> torch.Tensor:
        self.t = 0
        return self.observation()

    def reset_at(self, mask) -> None:
        self.t = 0

    def step(self, actions):
        self.t += 1
        b, t = self.num_envs, self.t
        success = torch.tensor([t == 1, t == 3])
        uses = torch.tensor([[2.0, 2.0], [4.0 if t == 1 else 0.0] * 2])
        info = {
            k: torch.zeros(b, 2)
            for k in (
                "bits_delivered",
                "capacity_bits",
                "messages_sent",
                "messages_delivered",
                "belief_error",
            )
        }
        info |= {
            "channel_uses": uses,
            "bits": 2 * uses,
            "fc_channel_uses": torch.zeros(b),
            "success": success,
        }
        reward = torch.tensor([[1.0, 3.0]]).expand(b, 2)
        done = torch.full((b,), t >= 3)
        return self.observation(), reward, torch.zeros(b, dtype=torch.bool), done, info


def test_one_definition_of_success_return_and_accounting(monkeypatch):
    """Success is read on the step the episode ends, the return is the agents' mean reward
    summed, and per-agent-step quantities are totals over agent-steps: the same through the
    experiments' entry point as through ``agentcomm.policies.evaluate``."""
    from agentcomm.experiments.metrics import evaluate as run_evaluate
    from agentcomm.policies.evaluate import evaluate

    monkeypatch.setattr(agentcomm, "make_vec", lambda *a, **k: _ScriptedWorld(*a, **k))
    got = run_evaluate("SearchRescue-v0", lambda world: torch.zeros(2, 2, 6), 2, 0)
    assert got["success"] == 0.5 and got["successes"] == 1
    assert got["return"] == pytest.approx(6.0)
    # World 0: 2 uses x 3 steps, world 1: 4 uses x 1 step, over 2 worlds x 3 steps.
    assert got["channel_uses"] == pytest.approx((6 + 4) / 6)
    assert got["bits"] == pytest.approx(2 * (6 + 4) / 6)
    res = evaluate(lambda world, obs: torch.zeros(2, 2, 6), "SearchRescue-v0", 2, num_envs=2)
    assert (res.success_rate, res.return_mean) == (got["success"], got["return"])
    assert res.channel_uses_per_agent_step == got["channel_uses"]


def _srow(codec: str, budget: int, p: float, lo: float, hi: float, **kw) -> dict:
    return {
        "env_id": "SearchRescue-v0",
        "policy": kw.get("policy", "expert"),
        "mode": kw.get("mode", "distributed"),
        "codec": codec,
        "budget": budget,
        "setting_id": kw.get("setting", "s"),
        "config_id": f"{codec}{budget}{kw.get('setting', 's')}{kw.get('mode', '')}",
        "point": "{}",
        "success": p,
        "ci_low": lo,
        "ci_high": hi,
    }


def test_check_monotone_flags_only_drops_beyond_the_intervals():
    ok = [
        _srow("quantized", 0, 0.40, 0.37, 0.43),
        _srow("quantized", 4, 0.50, 0.47, 0.53),
        _srow("quantized", 16, 0.48, 0.45, 0.51),  # a dip inside the intervals
        _srow("raw", 64, 0.52, 0.49, 0.55),
        _srow("jscc", 38, 0.51, 0.48, 0.54),
    ]
    assert check_monotone(ok) == []
    drop = [*ok, _srow("quantized", 64, 0.44, 0.41, 0.465)]
    (line,) = check_monotone(drop)
    assert "quantized@64" in line and "quantized@4" in line
    below_floor = [*ok, _srow("jscc", 70, 0.30, 0.27, 0.33)]
    lines = check_monotone(below_floor)
    assert any("jscc@70" in s and "quantized@0" in s for s in lines), lines
    raw_low = [r for r in ok if r["codec"] != "raw"] + [_srow("raw", 64, 0.40, 0.37, 0.46)]
    lines = check_monotone(raw_low)
    assert len(lines) == 2 and all(s.split(": ", 1)[1].startswith("raw raw@64") for s in lines)
    assert "quantized@4" in lines[0] and "jscc@38" in lines[1]
    # Another transmit power (setting) or mode is another curve.
    other = [*ok, _srow("quantized", 64, 0.10, 0.08, 0.12, setting="low-power")]
    other += [_srow("quantized", 64, 0.10, 0.08, 0.12, mode="hybrid")]
    assert check_monotone(other) == []


def test_a_learned_policy_that_does_worse_with_more_communication_is_not_a_violation():
    """The check is of the simulator (scripted policies); a learned policy's drop is listed
    apart, as a finding about that policy."""
    learned = "shipped:some-policy"
    rows = [
        _srow("quantized", 0, 0.32, 0.29, 0.35, policy=learned),
        _srow("quantized", 16, 0.22, 0.20, 0.25, policy=learned),
        _srow("quantized", 0, 0.40, 0.37, 0.43),
        _srow("quantized", 16, 0.50, 0.47, 0.53),
    ]
    assert check_monotone(rows) == []
    (line,) = check_monotone(rows, learned=True)
    assert learned in line and "quantized@16" in line and "quantized@0" in line
    # The same drop of the expert is a violation.
    expert = [
        _srow(c, b, p, lo, hi)
        for c, b, p, lo, hi in [
            ("quantized", 0, 0.32, 0.29, 0.35),
            ("quantized", 16, 0.22, 0.20, 0.25),
        ]
    ]
    assert len(check_monotone(expert)) == 1 and check_monotone(expert, learned=True) == []


def test_summary_table_resolves_defaults_and_lists_shared_points_once():
    a = ExperimentConfig(name="a", env_id="IntentCoverage-v0", episodes=4, seeds=(0,))
    a = a.replace(axes={"comm.budget": [0, 2]})
    b = ExperimentConfig(
        name="b", env_id="IntentCoverage-v0", episodes=4, seeds=(0,),
        points=[{"comm.budget": 2, "comm.mode": "distributed"}],
    )  # fmt: skip
    rows = run_experiments([a, b], workers=1, progress=False)
    assert [r["experiment"] for r in rows] == ["a", "a", "b"]
    assert rows[1]["success"] == rows[2]["success"] and rows[1]["config_id"] == rows[2]["config_id"]
    table = summary_table(summarize(rows))
    assert [(r["mode"], r["codec"], r["budget"]) for r in table] == [
        ("distributed", "quantized", 0),
        ("distributed", "quantized", 2),
    ]
    assert all(tuple(r) == SUMMARY_COLUMNS for r in table)


@pytest.mark.slow
def test_default_main_job_is_monotone_with_narrow_intervals(tmp_path):
    """The default ``agentcomm run``: every point on >= 1,000 episodes with a Wilson
    half-width <= 0.03, and no point where more communication scores worse beyond the
    intervals (nor one above perfect communication)."""
    out = tmp_path / "run"
    assert cli_main(["run", "--out", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["monotonicity_violations"] == []
    with open(out / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["scenario"] for r in rows} == set(SCENARIOS)
    for r in rows:
        assert int(r["episodes"]) >= 1000, r
        assert (float(r["ci_high"]) - float(r["ci_low"])) / 2 <= 0.03, r
