"""The built wheel maps envs/, policies/ and experiments/ into agentcomm and installs
no top-level ``envs``/``policies``/``experiments`` package; the console script exists."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # No build isolation: the build backend is already installed, and nothing is downloaded.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        cwd=out,
    )
    (path,) = out.glob("agentcomm-*.whl")
    return path


def test_wheel_layout(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.startswith("agentcomm-")}
    assert tops == {"agentcomm"}, tops
    for expected in (
        "agentcomm/envs/world.py",
        "agentcomm/envs/scenarios/search_rescue.py",
        "agentcomm/envs/adapters/pettingzoo.py",
        "agentcomm/policies/diffusion.py",
        "agentcomm/experiments/run.py",
        "agentcomm/experiments/configs/bandwidth.yaml",
        "agentcomm/experiments/recipes/configs/dppo_searchrescue.yaml",
        "agentcomm/experiments/recipes/train_search_rescue.py",
        "agentcomm/experiments/benchmarks/bench_env.py",
        "agentcomm/channels/awgn.py",
    ):
        assert expected in names, expected
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "agentcomm = agentcomm.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_cli_help_lists_subcommands():
    out = subprocess.run(
        [sys.executable, "-m", "agentcomm.cli", "--help"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for cmd in ("run", "sweep", "train", "eval", "train-decoder", "render"):
        assert cmd in out


def test_sources_cite_no_file_outside_the_project():
    """Comments and docstrings cite files of this repository only (a note kept outside
    it is not there for the reader)."""
    cited = [
        f"{path.relative_to(ROOT)}"
        for folder in ("agentcomm", "envs", "policies", "experiments")
        for path in (ROOT / folder).rglob("*.py")
        if any(name in path.read_text() for name in ("NOTES.md", "DESIGN.md", "STYLE.md"))
    ]
    assert not cited, cited
