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


def test_shipped_bc_policy_reproduces_its_recorded_success():
    """The behaviour-cloned diffusion policy (``experiments/train_shipped_policy.py``) loads
    from the installed package and, sampled as the main job samples it (deterministic 5-step
    DDIM), reaches the success recorded beside it."""
    from pathlib import Path

    import agentcomm
    from agentcomm.policies import load_policy

    path = Path(agentcomm.__file__).parent / "models" / "policies" / "searchrescue-bc"
    policy = load_policy(path, expected_config={"kind": "diffusion", "action_dim": 6})
    assert sum(f.stat().st_size for f in path.iterdir()) < 2 * 1024**2
    rec = json.loads((path / "expected.json").read_text())
    assert rec["env_id"] == "SearchRescue-v0"
    assert policy.config.obs_dim == agentcomm.make_vec(rec["env_id"], num_envs=1).obs_dim
    got = evaluate(rec["env_id"], make_policy(str(path)), rec["episodes"], rec["seed"])["success"]
    assert abs(got - rec["success"]["policy"]) <= rec["tolerance"], (got, rec)


def test_shipped_dppo_policy_reproduces_its_recorded_success():
    """The DPPO export (frozen base + fine-tuned copy) of ``experiments/train_search_rescue.py``
    loads from the installed package and reaches the success recorded beside it."""
    from pathlib import Path

    import agentcomm

    path = Path(agentcomm.__file__).parent / "models" / "policies" / "searchrescue-dppo"
    rec = json.loads((path / "expected.json").read_text())
    got = evaluate(rec["env_id"], make_policy(str(path)), rec["episodes"], rec["seed"])["success"]
    assert abs(got - rec["success"]["policy"]) <= rec["tolerance"], (got, rec)


def test_shipped_policy_dir_finds_the_shipped_and_names_them_when_missing():
    from agentcomm.policies import shipped_policy_dir

    assert (shipped_policy_dir("searchrescue-bc") / "model.safetensors").is_file()
    with pytest.raises(ValueError, match=r"name='nope'.*searchrescue-bc"):
        shipped_policy_dir("nope")
