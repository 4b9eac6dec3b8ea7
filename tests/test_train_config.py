"""TrainConfig: a common part and one section per group of algorithms.

A setting lives in the section of the algorithms that read it (``bc``, ``ppo``, ``rllib``,
``dppo``, ``gaussian``); a key set in the wrong section is refused naming where it belongs;
``--set section.key=VALUE`` overrides one; the flat keys of earlier versions (and the run
directories they recorded) still load, with a ``FutureWarning`` naming each new key.
"""

from __future__ import annotations

import json
import warnings
from functools import partial
from pathlib import Path

import pytest
import yaml
from cli_args import parse_cli

#: A ``train_config.yaml`` as the flat TrainConfig of earlier versions wrote it (every
#: field, flat), for a Gaussian PPO run with a few non-default settings.
FLAT_RUN_CONFIG = """\
algo: ppo
env: SearchRescue-v0
env_config: {}
out: OUT
seed: 0
device: cpu
progress: true
demo_steps: 64
demo_envs: 64
bc_epochs: 50
bc_batch_size: 1024
bc_lr: 0.001
bc_ema_decay: 0.99
policy: {}
sampler: ddim
pretrained: null
iterations: 4
runner: batched
multi_agent: shared
critic_input: obs
num_envs: 32
num_env_runners: 0
num_learners: 0
num_gpus_per_learner: 0.0
train_batch_size: 4096
minibatch_size: 1024
num_epochs: 5
lr: 0.0003
lr_anneal_fraction: 0.0
critic_lr: 0.001
vf_clip_param: 10000.0
gamma: 0.99
lambda_: 0.95
clip_param: null
clip_param_min: null
gamma_denoise: 0.99
critic_warmup_iterations: 0
logprob_reduction: sum
logprob_min: null
logprob_max: null
time_budget_s: null
entropy_coeff: 0.01
hidden:
- 16
critic_hidden:
- 256
- 256
eval_episodes: 0
eval_split: selection
"""


_args = partial(parse_cli, "agentcomm.policies.train")


@pytest.fixture
def captured(monkeypatch):
    """The config each training loop would have run with (no training runs)."""
    from agentcomm.policies import bc_run, rllib_run, sb3_run
    from agentcomm.policies.run_dir import TrainResult

    calls: list = []

    def capture(config, out, *rest):
        calls.append((config, rest))
        return TrainResult(str(out), str(out / "policy"), [], None)

    for module, name in (
        (rllib_run, "train_rllib_run"),
        (sb3_run, "train_sb3_run"),
        (bc_run, "train_bc_run"),
    ):
        monkeypatch.setattr(module, name, capture)
    return calls


def test_each_setting_lives_in_its_section_and_round_trips(tmp_path):
    from agentcomm.policies.train_config import SECTIONS, TrainConfig

    config = TrainConfig.from_dict(
        {
            "algo": "dppo",
            "ppo": {"lr": 3e-5, "iterations": 7},
            "dppo": {"critic_lr": 2e-3, "critic_input": "obs+state"},
            "rllib": {"time_budget_s": 60.0},
        }
    )
    assert (config.ppo.lr, config.ppo.iterations) == (3e-5, 7)
    assert (config.dppo.critic_lr, config.rllib.time_budget_s) == (2e-3, 60.0)
    assert config.bc.epochs == 50 and config.gaussian.hidden == [256, 256]  # defaults
    written = yaml.safe_load(config.to_yaml())
    assert set(SECTIONS) <= set(written) and not set(written) & {"lr", "critic_lr", "bc_epochs"}
    config.save(tmp_path / "c.yaml")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        assert TrainConfig.load(tmp_path / "c.yaml") == config
    # A section the algorithm does not read may be set (a BC stage, a shared file).
    assert TrainConfig.from_dict({"algo": "ppo", "bc": {"epochs": 3}}).bc.epochs == 3


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (
            {"algo": "dppo", "dppo": {"entropy_coeff": 0.1}},
            r"\['dppo\.entropy_coeff'\] in dppo \(entropy_coeff belongs in "
            r"gaussian\.entropy_coeff\)",
        ),
        ({"ppo": {"critic_lr": 1e-3}}, r"\['ppo\.critic_lr'\].*belongs in dppo\.critic_lr"),
        ({"dppo": {"lr": 1e-3}}, r"\['dppo\.lr'\].*belongs in ppo\.lr"),
        ({"bc": {"bc_epochs": 3}}, r"\['bc\.bc_epochs'\].*belongs in bc\.epochs"),
        ({"rllib": {"seed": 3}}, r"\['rllib\.seed'\].*seed is a top-level key"),
        ({"gaussian": {"widths": [8]}}, r"\['gaussian\.widths'\] in gaussian; allowed"),
    ],
)
def test_a_key_in_the_wrong_section_is_refused_naming_where_it_belongs(data, match):
    from agentcomm.policies.train_config import TrainConfig

    with pytest.raises(ValueError, match=match):
        TrainConfig.from_dict(data)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"ppo": {"lr": 0.0}}, r"^ppo\.lr=0\.0"),
        ({"bc": {"epochs": 0}}, r"^bc\.epochs=0"),
        ({"rllib": {"runner": "fast"}}, r"^rllib\.runner='fast'"),
        ({"dppo": {"critic_hidden": [0]}}, r"^dppo\.critic_hidden=\[0\]"),
        ({"gaussian": {"hidden": [True, 8]}}, r"^gaussian\.hidden\[0\]=True is not allowed"),
        ({"ppo": 3}, r"^ppo=3 is not allowed; expected a mapping of PPOSettings fields"),
        # Asked of an algorithm that does not implement it.
        (
            {"algo": "sb3-ppo", "gaussian": {"entropy_coeff": 0.01}},
            r"^gaussian\.entropy_coeff=0\.01 is implemented for algo='ppo' only",
        ),
    ],
)
def test_bad_section_values_are_named_by_their_dotted_key(data, match):
    from agentcomm.policies.train_config import TrainConfig

    with pytest.raises(ValueError, match=match):
        TrainConfig.from_dict(data)


def test_flat_keys_of_earlier_versions_map_to_their_sections_with_a_warning():
    from agentcomm.policies.train_config import LEGACY_KEYS, SECTIONS, TrainConfig

    with pytest.warns(FutureWarning) as record:
        config = TrainConfig.from_dict(
            {"algo": "dppo", "bc_epochs": 3, "critic_lr": 2e-3, "entropy_coeff": 0.1}
        )
    text = " ".join(str(w.message) for w in record)
    assert "bc_epochs -> bc.epochs" in text and "critic_lr -> dppo.critic_lr" in text
    assert "entropy_coeff -> gaussian.entropy_coeff" in text
    assert (config.bc.epochs, config.dppo.critic_lr, config.gaussian.entropy_coeff) == (
        3,
        2e-3,
        0.1,
    )
    # Every old key names a field that exists, in the section it names.
    for old, new in LEGACY_KEYS.items():
        section, name = new.split(".")
        assert name in SECTIONS[section].__dataclass_fields__, (old, new)
    # The same value under both names is one setting; different values are refused.
    with pytest.warns(FutureWarning):
        assert TrainConfig.from_dict({"lr": 1e-3, "ppo": {"lr": 1e-3}}).ppo.lr == 1e-3
    with pytest.raises(ValueError, match=r"lr=0\.001 \(the old name of ppo\.lr\) conflicts "):
        TrainConfig.from_dict({"lr": 1e-3, "ppo": {"lr": 2e-3}})
    # replace() takes them too, and merges into the section's other settings.
    base = TrainConfig.from_dict({"ppo": {"lr": 3e-5, "num_epochs": 2}})
    with pytest.warns(FutureWarning, match=r"iterations -> ppo\.iterations"):
        moved = base.replace(iterations=9)
    assert (moved.ppo.iterations, moved.ppo.lr, moved.ppo.num_epochs) == (9, 3e-5, 2)


def test_a_flat_config_file_of_an_earlier_version_loads(tmp_path):
    from agentcomm.policies.train_config import TrainConfig

    path = tmp_path / "train_config.yaml"
    path.write_text(FLAT_RUN_CONFIG)
    with pytest.warns(FutureWarning, match=r"hidden -> gaussian\.hidden"):
        config = TrainConfig.load(path)
    assert config.algo == "ppo" and config.out == "OUT"
    assert (config.ppo.iterations, config.ppo.lr) == (4, 3e-4)
    assert config.gaussian == type(config.gaussian)(hidden=[16], entropy_coeff=0.01)
    assert config.dppo == type(config.dppo)()  # every dppo key at its default


def test_cli_sets_section_keys_by_their_dotted_path(tmp_path, captured):
    from agentcomm.policies.train import main

    out = tmp_path / "run"
    argv = ["--algo", "dppo", "--out", str(out), "--iterations", "3", "--quiet"]
    argv += ["--pretrained", "shipped:searchrescue-bc"]
    for item in (
        "dppo.critic_lr=1e-3",
        "dppo.critic_input=obs+state",
        "ppo.lr=2e-5",
        "rllib.time_budget_s=30",
        "env_config.comm.budget=16",
    ):
        argv += ["--set", item]
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        assert main(_args(argv)) == 0
    ((config, (resume, pretrained)),) = captured
    assert (config.dppo.critic_lr, config.dppo.critic_input) == (1e-3, "obs+state")
    assert (config.ppo.lr, config.ppo.iterations, config.rllib.time_budget_s) == (2e-5, 3, 30)
    assert config.dppo.pretrained == "shipped:searchrescue-bc" and not resume
    assert pretrained.endswith("searchrescue-bc")
    assert config.env_config == {"comm": {"budget": 16}}
    recorded = yaml.safe_load((out / "train_config.yaml").read_text())
    assert recorded["dppo"]["critic_lr"] == 1e-3 and "critic_lr" not in recorded


@pytest.mark.parametrize("critic_input", ["obs+state", "state"])
def test_a_dppo_run_without_pretrained_trains_its_bc_stage_with_any_critic_input(
    tmp_path, captured, critic_input
):
    """The BC stage runs the run's config with algo="bc": the DPPO critic's settings come
    along and must not stop it (BC trains no critic)."""
    from agentcomm.policies.train import TrainConfig, train

    config = TrainConfig.from_dict(
        {"algo": "dppo", "out": str(tmp_path / "run"), "dppo": {"critic_input": critic_input}}
    )
    train(config)
    (bc_config, _), (dppo_config, (_, pretrained)) = captured
    assert bc_config.algo == "bc" and bc_config.dppo.critic_input == critic_input
    assert dppo_config.algo == "dppo" and pretrained.endswith(str(Path("run", "bc", "policy")))


def test_cli_maps_an_old_set_key_and_refuses_a_key_given_twice(tmp_path, captured):
    from agentcomm.policies.train import main

    argv = ["--algo", "ppo", "--out", str(tmp_path / "a"), "--quiet", "--set", "hidden=[8]"]
    with pytest.warns(FutureWarning, match=r"hidden -> gaussian\.hidden"):
        assert main(_args(argv)) == 0
    assert captured[-1][0].gaussian.hidden == [8]
    argv = ["--out", str(tmp_path / "b"), "--iterations", "3", "--set", "ppo.iterations=5"]
    with pytest.raises(ValueError, match=r"ppo\.iterations is already set"):
        main(_args(argv))
    argv = ["--out", str(tmp_path / "c"), "--iterations", "3", "--set", "iterations=5"]
    with pytest.raises(ValueError, match=r"iterations=5 \(the old name of ppo\.iterations\)"):
        main(_args(argv))
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def _flat_run_dir(tmp_path: Path) -> Path:
    """A Gaussian PPO run directory as an earlier version left it: flat config, two
    checkpoints, the second named complete."""
    run = tmp_path / "run"
    (run / "rllib" / "iter_00002").mkdir(parents=True)
    (run / "rllib" / "iter_00001").mkdir(parents=True)
    (run / "train_config.yaml").write_text(FLAT_RUN_CONFIG.replace("out: OUT", f"out: {run}"))
    (run / "progress.csv").write_text("iteration,episode_return_mean\n1,1.0\n2,2.0\n")
    (run / "rllib" / "LATEST.json").write_text(json.dumps({"iteration": 2, "path": "iter_00002"}))
    return run


def test_a_run_directory_of_an_earlier_version_resumes(tmp_path, captured):
    from agentcomm.policies.train import main
    from agentcomm.policies.train_config import TrainConfig

    run = _flat_run_dir(tmp_path)
    with pytest.warns(FutureWarning, match=r"lr -> ppo\.lr"):
        assert main(_args(["--resume", str(run), "--iterations", "6", "--quiet"])) == 0
    ((config, (resume, pretrained)),) = captured
    assert resume is True and pretrained is None
    assert (config.ppo.iterations, config.ppo.lr, config.gaussian.hidden) == (6, 3e-4, [16])
    assert config.gaussian.entropy_coeff == 0.01 and not config.progress
    # The resumed run records its config with the sections; it loads without a warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        recorded = TrainConfig.load(run / "train_config.yaml")
    assert recorded == config and "lr" not in yaml.safe_load(
        (run / "train_config.yaml").read_text()
    )


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--set", "ppo.lr=0.5"], r"ppo\.lr: run has 0\.0003, given 0\.5"),
        (["--set", "lr=0.5"], r"ppo\.lr: run has 0\.0003, given 0\.5"),
        (["--set", "gaussian.hidden=[32]"], r"gaussian\.hidden: run has \[16\], given \[32\]"),
    ],
)
def test_an_earlier_run_refuses_a_conflicting_override_by_its_new_name(
    tmp_path, captured, argv, match
):
    from agentcomm.policies.train import main

    run = _flat_run_dir(tmp_path)
    before = (run / "train_config.yaml").read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        with pytest.raises(ValueError, match=match):
            main(_args(["--resume", str(run), *argv]))
    assert (run / "train_config.yaml").read_text() == before and not captured
