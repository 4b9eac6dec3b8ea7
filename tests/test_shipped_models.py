"""Every shipped model loads and reproduces the figures recorded beside it
(``expected.json``, written by ``python experiments/recipes/record_shipped.py``)."""

from __future__ import annotations

import json

import pytest

from agentcomm.decoders.bundle import load_bundle, shipped_bundles
from agentcomm.experiments.recipes.record_shipped import ENV_ID

BUNDLES = shipped_bundles()


def _figures() -> list:
    """Every recorded figure of every shipped model, slow ones marked."""
    from agentcomm.experiments.recipes.record_shipped import shipped_figures

    params = []
    for model, (folder, _) in sorted(shipped_figures().items()):
        rec = json.loads((folder / "expected.json").read_text())
        for key, fig in sorted(rec["figures"].items()):
            marks = [pytest.mark.slow] if fig["slow"] else []
            params.append(pytest.param(model, key, fig, id=f"{model}-{key}", marks=marks))
    return params


def test_something_is_shipped():
    assert BUNDLES, "no decoder bundle ships with the package"
    assert sorted(load_bundle(BUNDLES["searchrescue-16x16"]).jscc) == [16, 32, 64]


@pytest.mark.parametrize(("model", "key", "fig"), _figures())
def test_shipped_model_reproduces_its_recorded_success(model, key, fig):
    """Each figure was recorded by ``experiments/recipes/record_shipped.py`` at ``episodes`` evaluation
    worlds with a tolerance of three standard errors at that n (a conditioned policy's: 0.03,
    re-measured on exactly its recorded worlds); it must hold."""
    from agentcomm.experiments.recipes.record_shipped import measure

    assert fig["episodes"] >= 1000, "a figure recorded on few episodes locks in noise"
    assert fig["tolerance"] <= 0.05
    got = measure(fig["policy"], fig["overrides"], fig["episodes"], fig.get("env_id", ENV_ID))
    assert abs(got - fig["success"]) <= fig["tolerance"], (model, key, got, fig)


CONDITIONED = (
    "searchrescue-conditioned-dppo",
    "targettracking-conditioned-dppo",
    "intentcoverage-conditioned-dppo",
)


@pytest.mark.parametrize("name", CONDITIONED)
def test_shipped_conditioned_policy_is_small_loads_and_records_its_figures(name):
    """Each conditioned policy loads by its ``shipped:`` name, fits its scenario's
    observation, records how to reproduce it, and its ``config.json`` holds the same
    evaluation-world figures per budget as ``expected.json`` (what the test above checks),
    at a tolerance of 0.03 on 1,000 worlds."""
    import agentcomm
    from agentcomm.experiments.recipes.record_shipped import CONDITIONED_BUDGETS
    from agentcomm.policies import shipped_policy_dir
    from agentcomm.policies.evaluate import load_actor

    path = shipped_policy_dir(name)
    # 256 wide: the frozen base and the fine-tuned copy, 3.4-3.6 MB with the records.
    assert sum(f.stat().st_size for f in path.iterdir()) < 4 * 1024**2
    _, meta = load_actor(f"shipped:{name}")
    env = meta["env_config"]
    assert env["observe_operating_point"] and meta["command"].startswith("agentcomm train")
    world = agentcomm.make_vec(meta["env_id"], num_envs=1, **env)
    assert json.loads((path / "config.json").read_text())["policy"]["obs_dim"] == world.obs_dim
    rec = json.loads((path / "expected.json").read_text())
    assert rec["env_id"] == meta["env_id"]
    evaluation = meta["evaluation"]
    assert evaluation["episodes"] == 1000 and evaluation["split"] == "evaluation"
    for k in CONDITIONED_BUDGETS:
        fig = rec["figures"][f"policy_b{k}"]
        assert (fig["episodes"], fig["tolerance"]) == (1000, 0.03)
        assert fig["overrides"]["comm"] == {**env["comm"], "budget": k, "budget_levels": None}
        assert evaluation["success"][str(k)] == fig["success"]
        assert evaluation["expert_success"][str(k)] == rec["figures"][f"expert_b{k}"]["success"]


def test_shipped_bc_policy_is_small_and_fits_the_scenario():
    from pathlib import Path

    import agentcomm
    from agentcomm.policies import load_policy

    path = Path(agentcomm.__file__).parent / "models" / "policies" / "searchrescue-bc"
    policy = load_policy(path, expected_config={"kind": "diffusion", "action_dim": 6})
    assert sum(f.stat().st_size for f in path.iterdir()) < 2 * 1024**2
    assert policy.config.obs_dim == agentcomm.make_vec("SearchRescue-v0", num_envs=1).obs_dim


def test_shipped_policy_dir_finds_the_shipped_and_names_them_when_missing():
    from agentcomm.policies import shipped_policy_dir

    assert (shipped_policy_dir("searchrescue-bc") / "model.safetensors").is_file()
    with pytest.raises(ValueError, match=r"name='nope'.*searchrescue-bc"):
        shipped_policy_dir("nope")


@pytest.mark.parametrize(
    ("config", "name"),
    [
        ("policies_conditioned.yaml", "searchrescue-conditioned-dppo"),
        ("policies_conditioned_tracking.yaml", "targettracking-conditioned-dppo"),
        ("policies_conditioned_coverage.yaml", "intentcoverage-conditioned-dppo"),
    ],
)
def test_main_job_runs_each_conditioned_policy_on_its_recorded_points(config, name):
    """The main job's experiment of a conditioned policy is in the default job, and each of
    its points is the scenario its figures were recorded on (``point_config``: the training
    config with the budget fixed)."""
    from importlib import resources

    from agentcomm.config import merged
    from agentcomm.experiments.eval_learned_comm import point_config
    from agentcomm.experiments.run import DEFAULT_EXPERIMENTS
    from agentcomm.experiments.study import expand_points, load_experiment, nest
    from agentcomm.policies.evaluate import checkpoint_env, load_actor

    assert config in DEFAULT_EXPERIMENTS
    with resources.as_file(resources.files("agentcomm.experiments") / "configs" / config) as p:
        cfg = load_experiment(p)
    assert cfg.policies == (f"shipped:{name}",)
    env_id, trained_on = checkpoint_env(load_actor(f"shipped:{name}")[1])
    assert cfg.env_id == env_id
    for flat in expand_points(cfg):
        point = nest(flat)
        want = point_config(trained_on, point["comm"]["budget"], point["comm"]["mode"])
        got = merged(want, point)
        assert got == want, (config, flat)


@pytest.mark.parametrize(
    ("config", "expert_config"),
    [
        ("policies_conditioned.yaml", "policies_run.yaml"),
        ("policies_conditioned_tracking.yaml", "target_tracking.yaml"),
        ("policies_conditioned_coverage.yaml", "intent_coverage.yaml"),
    ],
)
def test_conditioned_policy_points_share_the_experts_setting(config, expert_config):
    """Its observation switches and reward mix do not make another setting, so the headline
    figure (the main setting's rows only) draws the conditioned policy beside the expert."""
    from importlib import resources

    from agentcomm.experiments.execute import _jobs
    from agentcomm.experiments.study import load_experiment

    root = resources.files("agentcomm.experiments") / "configs"
    cfgs = []
    for name in (config, expert_config):
        with resources.as_file(root / name) as p:
            cfgs.append(load_experiment(p))
    jobs = _jobs(cfgs)
    expert = {
        (j["budget"], j["mode"]): j["setting_id"]
        for j in jobs
        if j["policy"] == "expert" and j["codec"] == "quantized"
    }
    learned = [j for j in jobs if j["policy"] != "expert"]
    assert learned and {j["setting_id"] for j in learned} <= set(expert.values())
    for j in learned:
        assert j["setting_id"] == expert[(j["budget"], j["mode"])], j["point"]
