"""The README's Python code runs as written.

Every fenced ``python`` block of README.md is executed, top to bottom, in a namespace of
its own. The block that trains with RLlib (it calls ``build_algo``) runs on the shared
Ray instance and must complete a training iteration; RLlib refuses a multi-agent
environment without ``.multi_agent(...)`` ("action space ... NoneType"), which this
catches.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(first line number, source)`` of every fenced ``python`` block of ``text``."""
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in _FENCE.finditer(text)]


def _run(line: int, source: str) -> dict:
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(source, f"{README.name}:{line}", "exec"), namespace)
    return namespace


_BLOCKS = python_blocks(README.read_text())
_PLAIN = [(line, src) for line, src in _BLOCKS if "build_algo" not in src]
_RLLIB = [(line, src) for line, src in _BLOCKS if "build_algo" in src]


def test_the_fence_parser_finds_blocks_and_their_lines():
    text = "# t\n\n```python\nx = 1\n```\n\n```\nnot python\n```\n```python\ny = 2\n```\n"
    assert python_blocks(text) == [(4, "x = 1\n"), (11, "y = 2\n")]
    assert _PLAIN, "README.md has no python block"


@pytest.mark.parametrize(("line", "source"), _PLAIN, ids=[f"line{b[0]}" for b in _PLAIN])
def test_readme_python_block_runs(line, source):
    _run(line, source)


_NO_RLLIB_BLOCK = pytest.param(
    0, "", marks=pytest.mark.skip(reason="README.md has no python block that calls build_algo")
)


@pytest.mark.ray
@pytest.mark.parametrize(
    ("line", "source"),
    [pytest.param(*b, id=f"line{b[0]}") for b in _RLLIB] or [_NO_RLLIB_BLOCK],
)
def test_readme_rllib_block_trains(ray_session, line, source, capsys):
    namespace = _run(line, source)
    algo = namespace.get("algo")
    assert algo is not None, "the RLlib block names its algorithm `algo`"
    assert algo.iteration >= 1  # trained at least one iteration
    printed = capsys.readouterr().out.split()
    assert printed and math.isfinite(float(printed[-1])), printed
