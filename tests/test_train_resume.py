"""No run is lost: ``agentcomm train --resume DIR`` refuses what would overwrite a run.

A resume without a complete checkpoint would restart from iteration 0 and overwrite
``progress.csv`` and the checkpoints; a resume whose overrides contradict the run's
``train_config.yaml`` would rewrite it to describe a run that never happened. Both are
refused before anything in ``DIR`` is written. The run directories here are laid out by
hand (no training), and the training functions are replaced by ones that fail the test
if they are reached.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from cli_args import parse_cli

_args = partial(parse_cli, "agentcomm.policies.train")


@pytest.fixture
def no_training(monkeypatch):
    """Reaching a training loop fails the test (it would start over / rewrite the run)."""
    from agentcomm.policies import bc_run, rllib_run, sb3_run

    def reached(*args, **kwargs):
        raise AssertionError("training started: the run would be overwritten")

    monkeypatch.setattr(rllib_run, "train_rllib_run", reached)
    monkeypatch.setattr(sb3_run, "train_sb3_run", reached)
    monkeypatch.setattr(bc_run, "train_bc_run", reached)


def _run_dir(tmp_path: Path, algo: str = "ppo", latest: bool = False) -> Path:
    from agentcomm.policies.train import TrainConfig

    run = tmp_path / "run"
    run.mkdir()
    TrainConfig.from_dict(
        {"algo": algo, "out": str(run), "ppo": {"iterations": 4}, "eval_episodes": 0}
    ).save(run / "train_config.yaml")
    (run / "progress.csv").write_text("iteration,episode_return_mean\n1,1.0\n2,2.0\n")
    for it in (1, 2):
        ckpt = run / "rllib" / f"iter_{it:05d}"
        ckpt.mkdir(parents=True)
        (ckpt / "state.pkl").write_bytes(b"checkpoint %d" % it)
    if latest:
        (run / "rllib" / "LATEST.json").write_text(
            json.dumps({"iteration": 2, "path": "iter_00002"})
        )
    return run


def _snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def test_resume_without_latest_refuses_and_says_how_to_recover(tmp_path, no_training):
    from agentcomm.policies.train import main

    run = _run_dir(tmp_path)
    before = _snapshot(run)
    with pytest.raises(ValueError) as info:
        main(_args(["--resume", str(run), "--quiet"]))
    msg = str(info.value)
    assert "LATEST.json is missing" in msg and "refusing to restart from iteration 0" in msg
    assert "['iter_00001', 'iter_00002']" in msg
    assert '{"iteration": 2, "path": "iter_00002"}' in msg  # how to recover
    assert _snapshot(run) == before  # progress.csv, config and checkpoints untouched


def test_sb3_resume_without_its_checkpoint_refuses(tmp_path, no_training):
    from agentcomm.policies.train import main

    run = _run_dir(tmp_path, algo="sb3-ppo")
    (run / "sb3").mkdir()
    (run / "sb3" / "progress.csv").write_text("time/total_timesteps\n64\n")
    before = _snapshot(run)
    with pytest.raises(ValueError, match=r"sb3/model\.zip does not exist"):
        main(_args(["--resume", str(run), "--quiet"]))
    assert _snapshot(run) == before


def test_a_damaged_latest_pointer_is_named(tmp_path, no_training):
    from agentcomm.policies.train import main

    run = _run_dir(tmp_path)
    (run / "rllib" / "LATEST.json").write_text('{"iteration": 2, "pa')
    before = _snapshot(run)
    with pytest.raises(ValueError, match=r"LATEST\.json is damaged"):
        main(_args(["--resume", str(run)]))
    assert _snapshot(run) == before


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--set", "ppo.lr=0.5"], r"ppo\.lr: run has 0\.0001, given 0\.5"),
        (["--set", "dppo.critic_hidden=[8]"], r"dppo\.critic_hidden: run has \[256, 256\]"),
        (["--algo", "dppo"], r"algo: run has 'ppo', given 'dppo'"),
        (["--seed", "3"], r"seed: run has 0, given 3"),
        (["--set", "env_config={comm: {budget: 4}}"], r"env_config: run has \{\}"),
    ],
)
def test_a_conflicting_override_fails_before_rewriting_the_config(
    tmp_path, no_training, argv, match
):
    from agentcomm.policies.train import main

    run = _run_dir(tmp_path, latest=True)
    before = _snapshot(run)
    with pytest.raises(ValueError, match=match):
        main(_args(["--resume", str(run), *argv]))
    assert _snapshot(run) == before  # train_config.yaml was not rewritten


def test_resume_refuses_another_out_or_a_config_file(tmp_path, no_training):
    from agentcomm.policies.train import main

    run = _run_dir(tmp_path, latest=True)
    with pytest.raises(ValueError, match=r"--out=.* conflicts with --resume"):
        main(_args(["--resume", str(run), "--out", str(tmp_path / "elsewhere")]))
    with pytest.raises(ValueError, match=r"--config and --resume exclude each other"):
        main(_args(["--resume", str(run), "--config", str(run / "train_config.yaml")]))
    with pytest.raises(ValueError, match=r"train_config\.yaml does not exist"):
        main(_args(["--resume", str(tmp_path / "nothing")]))
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path / "nothing").exists()


def test_a_resume_may_extend_the_run(tmp_path, monkeypatch):
    """``--iterations`` and ``--quiet`` are what a resume is for: it reaches training with
    ``resume=True``, and the recorded config then says how long the run is."""
    from agentcomm.policies import rllib_run
    from agentcomm.policies.train import TrainConfig, TrainResult, main

    calls = []

    def fake(config, out, resume, pretrained):
        calls.append((config.ppo.iterations, config.progress, resume))
        return TrainResult(str(out), str(out / "policy"), [], None)

    monkeypatch.setattr(rllib_run, "train_rllib_run", fake)
    run = _run_dir(tmp_path, latest=True)
    assert main(_args(["--resume", str(run), "--iterations", "6", "--quiet"])) == 0
    assert calls == [(6, False, True)]
    assert TrainConfig.load(run / "train_config.yaml").ppo.iterations == 6


def _tiny(algo: str, out: Path, **extra) -> dict:
    config = {
        "algo": algo,
        "env": "SearchRescue-v0",
        "out": str(out),
        "seed": 3,
        "ppo": {
            "iterations": 4,
            "num_envs": 2,
            "train_batch_size": 64,
            "minibatch_size": 32,
            "num_epochs": 2,
        },
        "gaussian": {"hidden": [16]},
        "dppo": {"critic_hidden": [16]},
        "eval_episodes": 0,
        "progress": False,
        # 8 world steps per iteration, 6-step episodes: the kill falls inside episodes.
        "env_config": {"max_steps": 6},
    }
    if algo == "dppo":
        config["dppo"]["pretrained"] = "shipped:searchrescue-bc"
        config["policy"] = {"ft_denoising_steps": 2}
    return {**config, **extra}


def _rows_without_time(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


@pytest.mark.ray
@pytest.mark.parametrize(
    ("algo", "runners"),
    [("ppo", 0), ("dppo", 0), pytest.param("ppo", 1, marks=pytest.mark.slow)],
)
def test_a_killed_and_resumed_run_equals_the_uninterrupted_one(
    ray_session, tmp_path, monkeypatch, algo, runners
):
    """Killed right after iteration 2's checkpoint, then resumed: every progress.csv row
    (but the wall-clock seconds) and every exported weight equal the uninterrupted run's,
    bit for bit: the worlds, ongoing episodes and generators are in the checkpoint, and a
    remote env runner samples the first resumed iteration with the restored weights."""
    from safetensors.torch import load_file

    import agentcomm.policies.run_dir as run_dir
    from agentcomm.policies.train import TrainConfig, train

    extra = {"rllib": {"num_env_runners": runners}}
    train(TrainConfig.from_dict(_tiny(algo, tmp_path / "straight", **extra)))

    class Killed(BaseException):
        pass

    save = run_dir.save_checkpoint

    def save_then_die(algo_, out, iteration):
        save(algo_, out, iteration)
        if iteration == 2:
            raise Killed

    monkeypatch.setattr(run_dir, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        train(TrainConfig.from_dict(_tiny(algo, tmp_path / "killed", **extra)))
    monkeypatch.setattr(run_dir, "save_checkpoint", save)
    assert len(_rows_without_time(tmp_path / "killed" / "progress.csv")) == 2
    train(TrainConfig.from_dict(_tiny(algo, tmp_path / "killed", **extra)), resume=True)

    straight = _rows_without_time(tmp_path / "straight" / "progress.csv")
    resumed = _rows_without_time(tmp_path / "killed" / "progress.csv")
    assert len(straight) == 4 and resumed == straight
    a = load_file(tmp_path / "straight" / "policy" / "model.safetensors")
    b = load_file(tmp_path / "killed" / "policy" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_damaged_resume_state_is_named(tmp_path):
    from agentcomm.policies.resume_state import STATE_FILE, restore_resume_state

    # An algorithm without remote env runners: nothing to wait for before the file is read.
    algo = SimpleNamespace(env_runner_group=SimpleNamespace(num_remote_env_runners=lambda: 0))
    (tmp_path / STATE_FILE).write_bytes(b"\x80\x05 not a pickle")
    with pytest.raises(ValueError, match=STATE_FILE.replace(".", r"\.") + " is damaged"):
        restore_resume_state(algo, tmp_path)
