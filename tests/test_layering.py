"""The dependency direction holds: ``agentcomm`` core <- ``envs`` <- ``policies`` <- ``experiments``.

The core is every module under ``agentcomm/`` in the source tree (``agentcomm.envs``,
``agentcomm.policies`` and ``agentcomm.experiments`` live in the top-level ``envs/``,
``policies/`` and ``experiments/`` folders). No core module may import the environments,
the policies, the experiments, Ray or stable-baselines3, at module level or inside a
function, except the documented lazy front doors, which load the environments inside a function
on first use: ``agentcomm.make``, ``make_aec``, ``make_vec`` and ``list_envs`` in
``agentcomm/__init__.py``, and the ``agentcomm render`` command (``agentcomm/render_cli.py``),
which plays an environment. Other command-line modules dispatch to a subcommand above the
core by module name (``importlib``), never by an import statement.

A second check imports every core module in a fresh interpreter and asserts that none
of the forbidden packages was loaded.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "agentcomm"
FORBIDDEN = (
    "agentcomm.envs",
    "agentcomm.policies",
    "agentcomm.experiments",
    "envs",
    "policies",
    "experiments",
    "ray",
    "stable_baselines3",
)
#: Core modules allowed to import ``agentcomm.envs`` inside a function (never at module level).
FRONT_DOOR = {"agentcomm/__init__.py", "agentcomm/render_cli.py"}


def _is_forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


def _imported_names(tree: ast.AST, package: str) -> list[tuple[int, str, bool]]:
    """Every module an ``import`` / ``from ... import`` statement names, with its line and
    whether the statement sits inside a function (a lazy import)."""
    lazy_lines = {
        inner.lineno
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        for inner in ast.walk(node)
        if isinstance(inner, (ast.Import, ast.ImportFrom))
    }
    return [(line, name, line in lazy_lines) for line, name in _statements(tree, package)]


def _statements(tree: ast.AST, package: str) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.append((node.lineno, module))
            # ``from agentcomm import envs`` names the subpackage as an attribute.
            out.extend((node.lineno, f"{module}.{alias.name}") for alias in node.names)
    return out


def _core_files() -> list[Path]:
    return sorted(p for p in CORE.rglob("*.py") if "models" not in p.relative_to(CORE).parts)


def violations(rel: str, text: str) -> list[str]:
    """``rel:line imports name`` for every forbidden import in the source ``text`` of the
    core module at ``rel`` (a path relative to the repository)."""
    parts = Path(rel).with_suffix("").parts
    package = ".".join(parts[:-1])
    found = []
    for line, name, lazy in _imported_names(ast.parse(text, filename=rel), package):
        allowed = rel in FRONT_DOOR and lazy and name.startswith("agentcomm.envs")
        if _is_forbidden(name) and not allowed:
            found.append(f"{rel}:{line} imports {name}")
    return found


def test_core_source_imports_no_environment_or_rl_code():
    files = _core_files()
    assert len(files) > 20, "the core modules were not found"
    found = [
        v for path in files for v in violations(path.relative_to(ROOT).as_posix(), path.read_text())
    ]
    assert found == []


@pytest.mark.parametrize(
    "text",
    [
        "import ray\n",
        "import ray.train.torch as rt\n",
        "def f():\n    from agentcomm.envs.experts import expert_actions\n",
        "from agentcomm import policies\n",
        "import stable_baselines3.common\n",
        "from ..experiments import run\n",
        "from agentcomm.envs import make_vec\n",
    ],
)
def test_the_check_catches_forbidden_imports(text):
    """Module-level, function-level, relative and attribute imports are all seen, and the
    front door is allowed only where it is documented."""
    assert violations("agentcomm/decoders/probe.py", text)


def test_the_front_door_is_allowed():
    text = "def make():\n    from agentcomm.envs import make as _make\n"
    assert violations("agentcomm/__init__.py", text) == []
    assert violations("agentcomm/__init__.py", "import ray\n")
    assert violations("agentcomm/__init__.py", "from agentcomm.envs import make\n")


def test_importing_every_core_module_loads_no_environment_or_rl_package():
    modules = []
    for path in _core_files():
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name.endswith("sionna_chain"):
            continue  # optional dependency, imported by its codec on demand
        modules.append(name)
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        f"bad = sorted(m for m in sys.modules if any(m == f or m.startswith(f + '.') "
        f"for f in {FORBIDDEN!r}))\n"
        "print(json.dumps(bad))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("module", ["agentcomm.decoders.cli"])
def test_cli_dispatch_targets_exist(module):
    """The command-line modules name their trainers by string: the names must resolve."""
    import importlib
    import importlib.util

    target = importlib.import_module(module).TRAINER
    assert importlib.util.find_spec(target) is not None
