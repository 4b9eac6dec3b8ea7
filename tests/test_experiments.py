"""The main job and its pieces: statistics against hand-computed cases, bounds,
experiment configs, and ``agentcomm run --quick`` end to end."""

from __future__ import annotations

import csv
import json
import math

import pytest

from agentcomm.cli import main as cli_main
from agentcomm.experiments.bounds import capacity_bits_per_use
from agentcomm.experiments.study import ExperimentConfig, expand_points, load_experiment, nest


def test_bounds():
    assert capacity_bits_per_use(0.0, "awgn") == pytest.approx(1.0)
    assert capacity_bits_per_use(10.0, "rayleigh_block") == pytest.approx(2.91, abs=0.01)
    # Shannon at 10 dB over AWGN: log2(1 + 10) bits per use.
    assert capacity_bits_per_use(10.0, "awgn") == pytest.approx(math.log2(11))


def test_experiment_config_composes_and_expands(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "env_id: IntentCoverage-v0\nepisodes: 8\noverrides: {comm.mode: centralized}\n"
    )
    (tmp_path / "child.yaml").write_text(
        "extends: base.yaml\nname: c\nseeds: [4]\naxes: {comm.budget: [0, 2]}\npoints: [{comm.codec: raw}]\n"
    )
    cfg = load_experiment(tmp_path / "child.yaml")
    assert (cfg.env_id, cfg.episodes, cfg.seeds) == ("IntentCoverage-v0", 8, (4,))
    pts = expand_points(cfg)
    assert pts == [
        {"comm.mode": "centralized", "comm.budget": 0},
        {"comm.mode": "centralized", "comm.budget": 2},
        {"comm.mode": "centralized", "comm.codec": "raw"},
    ]
    assert nest(pts[0]) == {"comm": {"mode": "centralized", "budget": 0}}
    (tmp_path / "bad.yaml").write_text("extends: base.yaml\nepisode: 3\n")
    with pytest.raises(ValueError, match="episode"):
        load_experiment(tmp_path / "bad.yaml")
    with pytest.raises(ValueError, match="seeds is empty"):
        ExperimentConfig(seeds=())


def test_shipped_experiment_configs_load():
    from importlib import resources

    root = resources.files("agentcomm.experiments") / "configs"
    names = sorted(p.name for p in root.iterdir() if p.name.endswith(".yaml"))
    assert "bandwidth.yaml" in names and "snr.yaml" in names
    for name in names:
        with resources.as_file(root / name) as path:
            cfg = load_experiment(path)
        assert expand_points(cfg)


def test_sweep_is_reproducible(tmp_path):
    (tmp_path / "s.yaml").write_text(
        "name: s\nenv_id: IntentCoverage-v0\nepisodes: 4\nseeds: [0, 1]\naxes: {comm.budget: [0, 2]}\n"
    )
    for out in ("a", "b"):
        assert (
            cli_main(
                [
                    "sweep",
                    "--config",
                    str(tmp_path / "s.yaml"),
                    "--out",
                    str(tmp_path / out),
                    "--workers",
                    "1",
                    "--no-progress",
                ]
            )
            == 0
        )
    assert (tmp_path / "a" / "points.csv").read_text() == (
        tmp_path / "b" / "points.csv"
    ).read_text()


def test_run_quick_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli_main(["run", "--quick", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert printed.strip().splitlines()[-1].startswith("RESULT ")
    for name in (
        "points.csv",
        "summary.csv",
        "results.json",
        "success_vs_bits.png",
        "success_vs_snr.png",
        "modes.png",
    ):
        assert (out / name).stat().st_size > 0, name
    with open(out / "points.csv") as f:
        rows = list(csv.DictReader(f))
    required = {
        "experiment",
        "env_id",
        "policy",
        "seed",
        "episodes",
        "comm.mode",
        "comm.budget",
        "comm.codec",
        "success",
        "return",
        "bits",
        "bits_delivered",
        "capacity_bits",
        "channel_uses",
        "fc_channel_uses",
        "peer_snr_db",
        "belief_error",
    }
    assert required <= set(rows[0])
    for r in rows:
        assert 0.0 <= float(r["success"]) <= 1.0
        if r["comm.codec"] != "raw":
            # Every plotted point lies under its Shannon bound (delivered <= capacity of uses).
            assert float(r["bits_delivered"]) <= float(r["capacity_bits"]) + 1e-6, r
        if r["comm.budget"] == "0":
            assert float(r["channel_uses"]) == 0.0
    summary = json.loads((out / "results.json").read_text())["summary"]
    pooled: dict[tuple[str, str, str], list[int]] = {}
    for r in rows:
        pooled.setdefault((r["experiment"], r["policy"], r["point"]), []).append(int(r["episodes"]))
    for s in summary:
        # Success is a rate of the episodes pooled over seeds, inside its interval.
        assert s["ci_low"] <= s["success"] <= s["ci_high"]
        n = pooled[(s["experiment"], s["policy"], s["point"])]
        assert (s["episodes"], s["seeds"]) == (sum(n), len(n))
    header = next(line for line in printed.splitlines() if line.startswith("experiment"))
    assert "n" in header.split()


def test_dppo_sweep_runs_one_trial_and_reports_its_lift(tmp_path):
    """experiments/recipes/sweep_dppo.py in its own process (it starts its own Ray instance): one
    trial from the shipped BC policy, stopped after its first iteration by the budget; the
    lift is the trial's success minus its start's, in points, on the same episodes."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "experiments" / "recipes" / "sweep_dppo.py"
    out = tmp_path / "sweep"
    argv = [sys.executable, str(script), "--cpus", "1", "--minutes", "0.001"]
    argv += ["--trials", "s_lr1e-5", "--eval-episodes", "4", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("RESULT trials=1 ")
    with open(out / "trials.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert row["name"] == "s_lr1e-5" and int(row["iterations"]) == 1
    lift = 100 * (float(row["success"]) - float(row["start_success"]))
    assert math.isclose(float(row["lift_points"]), lift, abs_tol=1e-9)


def test_learning_curve_script_quick_run_writes_every_output(tmp_path):
    """experiments/recipes/train_search_rescue.py --quick in its own process: expert, random, the
    shipped BC start, DPPO and PPO are evaluated on the same seed's worlds, the curves hold
    both RL methods' iterations, and the RESULT line's lift is DPPO minus BC in points."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = (
        Path(__file__).resolve().parents[1] / "experiments" / "recipes" / "train_search_rescue.py"
    )
    out = tmp_path / "curves"
    argv = [sys.executable, str(script), "--quick", "--cpus", "1", "--iterations", "2"]
    argv += ["--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("RESULT expert_success=") and "seeds=1" in last
    with open(out / "summary.csv") as f:
        summary = list(csv.DictReader(f))
    methods = ["bc", "dppo", "dppo_stochastic", "expert", "ppo", "ppo_stochastic", "random"]
    assert sorted(r["method"] for r in summary) == methods
    assert {int(r["episodes"]) for r in summary} == {32}
    with open(out / "curves.csv") as f:
        curves = list(csv.DictReader(f))
    for method in ("dppo", "ppo"):
        steps = [int(r["agent_steps"]) for r in curves if r["method"] == method]
        assert len(steps) == 2 and steps[0] < steps[1]
    result = json.loads((out / "result.json").read_text())
    rate = {r["method"]: float(r["success_rate"]) for r in summary}
    assert math.isclose(result["lift_points"], 100 * (rate["dppo"] - rate["bc"]), abs_tol=1e-9)
    assert f"dppo_lift_points={result['lift_points']:.1f}" in last
    assert f"ppo_stochastic_success={rate['ppo_stochastic']:.3f}" in last
    assert (out / "learning_curves.png").stat().st_size > 10_000


def test_make_policy_acts_with_a_shipped_policy():
    """``shipped:NAME`` resolves to the packaged policy, which acts on a batch of worlds."""
    import agentcomm
    from agentcomm.experiments.metrics import make_policy

    world = agentcomm.make_vec("SearchRescue-v0", num_envs=3, seed=0)
    world.reset(seed=0)
    actions = make_policy("shipped:searchrescue-bc")(world)
    assert actions.shape == (3, world.num_agents, 6) and bool(actions.abs().le(1).all())
    with pytest.raises(ValueError, match="nope"):
        make_policy("shipped:nope")


@pytest.mark.parametrize(
    ("override", "expected"), [(True, "1"), (False, "3")], ids=["override", "keep"]
)
def test_use_one_thread_pins_torch_before_import(override, expected):
    """A fresh interpreter with OMP_NUM_THREADS=3 in its environment: the experiment
    scripts' preamble sets one torch thread, and replaces or keeps the inherited count."""
    import os
    import subprocess
    import sys

    code = (
        "import os, sys\n"
        "from agentcomm.experiments.threads import use_one_thread\n"
        f"use_one_thread(override={override})\n"
        "import torch\n"
        "print(torch.get_num_threads(), os.environ['OMP_NUM_THREADS'], "
        "os.environ['RAY_USAGE_STATS_ENABLED'])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(OMP_NUM_THREADS="3", MKL_NUM_THREADS="3", OPENBLAS_NUM_THREADS="3")
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", expected, "0"]
