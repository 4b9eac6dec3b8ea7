"""``agentcomm sweep`` refuses what it cannot do, at once and by name, before writing anything:
a worker count below 1, a name that points outside ``results/``, seeds that are not
integers, and a Ray address with nothing listening (instead of hanging)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agentcomm.cli import main

CONFIG = "name: guard\nenv_id: IntentCoverage-v0\nepisodes: 2\nseeds: [0]\n"


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """An empty working directory: ``results/`` would be created here."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def _config(path: Path, text: str = CONFIG) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("workers", ["0", "-3"])
def test_workers_below_one_are_refused(workdir, capsys, workers):
    cfg = _config(workdir.parent / "c.yaml")
    with pytest.raises(SystemExit) as info:
        main(["sweep", "--config", cfg, "--workers", workers, "--no-progress"])
    assert info.value.code == 2
    assert "--workers" in capsys.readouterr().err
    assert not (workdir / "results").exists()


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", "/tmp/x", ""])
def test_a_name_that_leaves_results_is_refused(workdir, name):
    from agentcomm.experiments.study import load_experiment

    cfg = _config(workdir.parent / "c.yaml", CONFIG.replace("name: guard", f"name: '{name}'"))
    with pytest.raises(ValueError, match=r"^name=.* is not allowed; it names the folder"):
        load_experiment(cfg)
    with pytest.raises(ValueError, match=r"^name="):
        main(["sweep", "--config", cfg, "--workers", "1", "--no-progress"])
    assert list(workdir.parent.rglob("x")) == [] and not (workdir / "results").exists()


@pytest.mark.parametrize(
    ("seeds", "match"),
    [
        ('["zero"]', r"^seeds\[0\]='zero' is not allowed; expected an integer"),
        ("[0, 1.5]", r"^seeds\[1\]=1\.5 is not allowed; expected an integer"),
        ("[true]", r"^seeds\[0\]=True is not allowed; expected an integer"),
        ("[-1]", r"^seeds\[0\]=-1 is out of range"),
        ("zero", r"^seeds='zero' is not allowed; expected a list of integers"),
    ],
)
def test_seeds_that_are_not_integers_are_refused(workdir, seeds, match):
    cfg = _config(workdir.parent / "c.yaml", CONFIG.replace("seeds: [0]", f"seeds: {seeds}"))
    with pytest.raises(ValueError, match=match):
        main(["sweep", "--config", cfg, "--workers", "1", "--no-progress"])
    assert not (workdir / "results").exists()


@pytest.mark.timeout(60)
def test_an_address_with_nothing_listening_fails_fast(workdir):
    cfg = _config(workdir.parent / "c.yaml")
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"cannot reach a Ray cluster there"):
        main(["sweep", "--config", cfg, "--address", "127.0.0.1:1", "--no-progress"])
    assert time.monotonic() - start < 30
    assert not (workdir / "results").exists()
    with pytest.raises(ValueError, match=r"expected HOST:PORT"):
        main(["sweep", "--config", cfg, "--address", "nonsense", "--no-progress"])


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--cpus", "0"], "--cpus"),
        (["--cpus", "-2"], "--cpus"),
        (["--minutes", "0"], "--minutes"),
        (["--minutes", "nan"], "--minutes"),
        (["--minutes", "-1"], "--minutes"),
        (["--eval-episodes", "0"], "--eval-episodes"),
        (["--seed", "-1"], "--seed"),
    ],
)
def test_the_dppo_sweep_refuses_counts_and_budgets_it_cannot_run(workdir, capsys, argv, flag):
    """``--cpus 0`` would start Ray with no CPU and wait forever for the first trial."""
    from agentcomm.experiments.recipes.sweep_dppo import main as sweep_dppo

    with pytest.raises(SystemExit) as info:
        sweep_dppo([*argv, "--out", str(workdir / "out")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}:" in err and "is not allowed" in err
    assert not (workdir / "out").exists()
