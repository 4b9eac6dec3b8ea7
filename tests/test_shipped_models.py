"""Every shipped model loads and reproduces the figures recorded beside it
(``expected.json``, written by ``python experiments/recipes/record_shipped.py``)."""

from __future__ import annotations

import json

import pytest

from agentcomm.decoders.bundle import load_bundle, shipped_bundles

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
    worlds with a tolerance of three standard errors at that n; it must hold."""
    from agentcomm.experiments.recipes.record_shipped import measure

    assert fig["episodes"] >= 1000, "a figure recorded on few episodes locks in noise"
    assert fig["tolerance"] <= 0.05
    got = measure(fig["policy"], fig["overrides"], fig["episodes"])
    assert abs(got - fig["success"]) <= fig["tolerance"], (model, key, got, fig)


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
