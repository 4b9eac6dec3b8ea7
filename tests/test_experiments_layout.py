"""The layout of ``agentcomm.experiments``: the library the main job imports, the recipes and
the benchmarks as subpackages, and no work at import.

Every module under ``agentcomm.experiments`` is imported alone in a fresh interpreter, from
an empty working directory, with an unknown flag in ``sys.argv``: the import must print
nothing, write nothing, leave torch's thread count and the environment as they were, and
start no Ray instance. The check is first run on a bad module, which it must catch.
"""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKER = "IMPORT-REPORT "
#: Prefixes of the environment variables an import must leave alone.
WATCHED = ("OMP_", "MKL_", "OPENBLAS_", "RAY_")

#: What the child runs: torch at a thread count no script would choose, then the import,
#: then one line of report on the real stdout.
CHILD = textwrap.dedent(
    f"""
    import importlib, json, os, sys
    import torch
    torch.set_num_threads(3)
    env = dict(os.environ)
    name = sys.argv[1]
    sys.argv = [name, "--not-a-flag-of-any-script"]
    importlib.import_module(name)
    ray = sys.modules.get("ray")
    report = {{
        "threads": torch.get_num_threads(),
        "env": sorted(k for k in set(env) | set(os.environ) if env.get(k) != os.environ.get(k)),
        "ray": bool(ray is not None and hasattr(ray, "is_initialized") and ray.is_initialized()),
    }}
    sys.stdout.write({MARKER!r} + json.dumps(report) + "\\n")
    """
)


def experiment_modules() -> list[str]:
    """Every module and package under ``agentcomm.experiments``, found without importing
    any of its modules (the packages' ``__init__`` only)."""
    import agentcomm.experiments

    found = pkgutil.walk_packages(agentcomm.experiments.__path__, "agentcomm.experiments.")
    return ["agentcomm.experiments", *sorted(m.name for m in found)]


def import_side_effects(module: str, workdir: Path, extra_path: Path | None = None) -> list[str]:
    """What importing ``module`` in a fresh interpreter did besides defining it: output,
    files in ``workdir`` (its working directory), a changed torch thread count or
    environment variable, a started Ray instance, a failed import. Empty: nothing."""
    workdir.mkdir(parents=True, exist_ok=True)
    before = sorted(p.name for p in workdir.iterdir())
    # The thread and Ray variables are unset, so a script that sets one is seen.
    env = {k: v for k, v in os.environ.items() if not k.startswith(WATCHED)}
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, module],
        capture_output=True,
        text=True,
        cwd=workdir,
        env=env,
        timeout=240,
    )
    problems = []
    if proc.returncode != 0:
        return [f"import failed (exit {proc.returncode}): {proc.stderr[-800:]}"]
    head, _, tail = proc.stdout.rpartition(MARKER)
    if head:
        problems.append(f"printed {head[:200]!r}")
    if proc.stderr.strip():
        problems.append(f"wrote to stderr {proc.stderr[-300:]!r}")
    report = json.loads(tail)
    if report["threads"] != 3:
        problems.append(f"set torch threads to {report['threads']}")
    # Libraries may set their own variables at import (pygame's prompt); the scripts' are
    # the thread pools' and Ray's.
    changed = [k for k in report["env"] if k.startswith(WATCHED)]
    if changed:
        problems.append(f"changed environment variables {changed}")
    if report["ray"]:
        problems.append("started Ray")
    written = sorted(set(p.name for p in workdir.iterdir()) - set(before))
    if written:
        problems.append(f"wrote {written}")
    return problems


def test_the_check_catches_a_script_that_works_at_import(tmp_path):
    """A module that pins threads, sets a variable, prints and writes a file at import is
    reported for each; a clean one is not."""
    pkg = tmp_path / "src" / "scratch_experiments"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "bad.py").write_text(
        "import os\n"
        "import torch\n"
        "os.environ['OMP_NUM_THREADS'] = '1'\n"
        "torch.set_num_threads(1)\n"
        "print('starting')\n"
        "open('out.csv', 'w').close()\n"
    )
    (pkg / "argv.py").write_text("import argparse\nargparse.ArgumentParser().parse_args()\n")
    (pkg / "good.py").write_text(
        "import torch\n\n\ndef main():\n    torch.set_num_threads(1)\n    print('ran')\n\n\n"
        "if __name__ == '__main__':\n    main()\n"
    )
    src = tmp_path / "src"
    bad = import_side_effects("scratch_experiments.bad", tmp_path / "bad", src)
    assert len(bad) == 4, bad
    assert any("printed 'starting" in p for p in bad)
    assert any("threads to 1" in p for p in bad)
    assert any("OMP_NUM_THREADS" in p for p in bad)
    assert any("out.csv" in p for p in bad)
    argv = import_side_effects("scratch_experiments.argv", tmp_path / "argv", src)
    assert len(argv) == 1 and "import failed" in argv[0], argv
    assert import_side_effects("scratch_experiments.good", tmp_path / "good", src) == []


@pytest.mark.parametrize("module", experiment_modules())
def test_importing_an_experiment_module_does_no_work(module, tmp_path):
    assert import_side_effects(module, tmp_path) == []


def test_the_experiments_split_into_library_recipes_and_benchmarks():
    """The main job's library stays at the top; the scripts sit in their subpackages."""
    modules = set(experiment_modules())
    for name in ("run", "sweep", "stats", "bounds", "plots", "execute", "metrics", "study"):
        assert f"agentcomm.experiments.{name}" in modules
    for name in (
        "train_search_rescue",
        "train_shipped_policy",
        "train_decoders",
        "sweep_dppo",
        "record_shipped",
    ):
        assert f"agentcomm.experiments.recipes.{name}" in modules
        assert f"agentcomm.experiments.{name}" not in modules
    for name in (
        "bench_env",
        "bench_channels",
        "bench_policy",
        "profile_step",
        "gpu_check",
        "fuzz_configs",
    ):
        assert f"agentcomm.experiments.benchmarks.{name}" in modules
        assert f"agentcomm.experiments.{name}" not in modules
    assert (ROOT / "experiments" / "recipes" / "configs" / "dppo_searchrescue.yaml").is_file()
